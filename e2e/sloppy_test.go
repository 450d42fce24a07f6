package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// TestSloppyTCPAdoptsConnections: a director restarted with an empty connection table
// (as after a fail-over) adopts an established TCP connection mid-stream only with
// --sloppy-tcp; without it the packet is not a connection opener and is dropped.
func TestSloppyTCPAdoptsConnections(t *testing.T) {
	for _, sloppy := range []bool{true, false} {
		t.Run(fmt.Sprintf("sloppy=%v", sloppy), func(t *testing.T) {
			e := setup(t, testbed.NATTwoArm)
			state := filepath.Join(t.TempDir(), "state.json")
			args := []string{"-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--state", state}
			if sloppy {
				args = append(args, "--sloppy-tcp")
			}
			e.restart(args...)
			// One real server: without connection sync, an adopted connection reaches the
			// right server only if scheduling picks it again (as with IPVS).
			vip := netip.AddrPortFrom(e.bed.VIP, httpPort).String()
			e.adm("-A", "-t", vip, "-s", "rr")
			e.adm("-a", "-t", vip, "-r", netip.AddrPortFrom(e.bed.Reals[0].Addr, httpPort).String(), "-m")
			conn, err := e.bed.Client.NS.DialContext(e.ctx, "tcp", vip)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			get := func(timeout time.Duration) error {
				conn.SetDeadline(time.Now().Add(timeout))
				if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					return err
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return err
				}
				resp.Body.Close()
				return nil
			}
			if err := get(5 * time.Second); err != nil {
				t.Fatalf("before the restart: %v", err)
			}
			e.restart(args...)
			err = get(2 * time.Second)
			if sloppy && err != nil {
				t.Fatalf("mid-stream request after the restart with --sloppy-tcp: %v", err)
			}
			if !sloppy {
				if err == nil {
					t.Fatal("mid-stream request after the restart went through without --sloppy-tcp")
				}
				if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
					t.Fatalf("without --sloppy-tcp: %v, want a timeout (packets dropped)", err)
				}
				if e.dataplaneCounters()["drop_no_conn"] == 0 {
					t.Fatal("mid-stream packets not counted as drop_no_conn")
				}
			}
		})
	}
}
