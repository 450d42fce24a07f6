package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// TestConnectionStates follows one TCP connection through the table: ESTABLISHED and
// ActiveConn 1 while it is open; after both sides close, a closing state (TIME_WAIT or
// CLOSE) and ActiveConn 0 / InActConn 1, as ipvsadm shows under IPVS.
func TestConnectionStates(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	vip := e.natService("-t", e.bed.VIP, httpPort, "rr")
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "tcp", vip)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr)
	client := fmt.Sprintf("%s:%d", local.IP, local.Port)
	row := func() string {
		for _, l := range strings.Split(e.adm("-L", "-n", "-c"), "\n") {
			if strings.Contains(l, client) {
				return l
			}
		}
		return ""
	}
	counts := func() (active, inact uint32) {
		for _, d := range e.service("tcp", e.bed.VIP, httpPort).Dests {
			active += d.ActiveConns
			inact += d.InactConns
		}
		return
	}
	if r := row(); !strings.Contains(r, "ESTABLISHED") || !strings.Contains(r, vip) {
		t.Fatalf("open connection: row %q", r)
	}
	if a, i := counts(); a != 1 || i != 0 {
		t.Fatalf("open connection: ActiveConn %d InActConn %d, want 1 0", a, i)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	var r string
	for time.Now().Before(deadline) {
		r = row()
		if strings.Contains(r, "TIME_WAIT") || strings.Contains(r, "CLOSE ") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(r, "TIME_WAIT") && !strings.Contains(r, "CLOSE ") {
		t.Fatalf("closed connection: row %q, want TIME_WAIT or CLOSE", r)
	}
	if a, i := counts(); a != 0 || i != 1 {
		t.Fatalf("closed connection: ActiveConn %d InActConn %d, want 0 1", a, i)
	}
	// The listing's expire column counts down from the state's timeout (TIME_WAIT 2:00,
	// CLOSE 0:10), as mm:ss.
	f := strings.Fields(r)
	if len(f) < 6 || !strings.Contains(f[1], ":") {
		t.Fatalf("row %q: no mm:ss expire column", r)
	}
	if _, err := netip.ParseAddrPort(f[5]); err != nil {
		t.Fatalf("row %q: destination column %q: %v", r, f[5], err)
	}
}
