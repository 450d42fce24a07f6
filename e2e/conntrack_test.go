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
	closed := time.Now()
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
	elapsed := time.Since(closed) // the state was entered after closed, the row read before now
	if !strings.Contains(r, "TIME_WAIT") && !strings.Contains(r, "CLOSE ") {
		t.Fatalf("closed connection: row %q, want TIME_WAIT or CLOSE", r)
	}
	if a, i := counts(); a != 0 || i != 1 {
		t.Fatalf("closed connection: ActiveConn %d InActConn %d, want 0 1", a, i)
	}
	// The listing's expire column (mm:ss, whole seconds left, rounded down) counts down
	// from the state's timeout, IPVS's tcp_timeouts (net/netfilter/ipvs/ip_vs_proto_tcp.c,
	// torvalds/linux 5a2dd72abdae): TIME_WAIT 2*60 s, CLOSE 10 s. The state was entered
	// between the close and the read, so at most elapsed (rounded up) has run off, and one
	// more second for the rounding down.
	f := strings.Fields(r)
	if len(f) < 6 {
		t.Fatalf("row %q: want pro expire state source virtual destination", r)
	}
	timeout := map[string]int{"TIME_WAIT": 2 * 60, "CLOSE": 10}[f[2]]
	var mm, ss int
	if n, err := fmt.Sscanf(f[1], "%d:%d", &mm, &ss); n != 2 || err != nil || len(f[1]) != 5 || ss >= 60 {
		t.Fatalf("row %q: expire column %q is not mm:ss", r, f[1])
	}
	left := mm*60 + ss
	if lo := timeout - int((elapsed+time.Second-1)/time.Second) - 1; left < lo || left > timeout {
		t.Fatalf("row %q: %s expires in %ds, want within [%d, %d] (timeout %ds, %v since the close)", r, f[2], left, lo, timeout, timeout, elapsed)
	}
	t.Logf("%s expires in %ds, %v after the close", f[2], left, elapsed)
	if _, err := netip.ParseAddrPort(f[5]); err != nil {
		t.Fatalf("row %q: destination column %q: %v", r, f[5], err)
	}
}
