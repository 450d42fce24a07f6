package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// admConns sums ActiveConn and InActConn over the real servers of service svc ("TCP" or
// "UDP", "addr:port") in `xlvsadm -L -n`'s text.
func (e *env) admConns(proto, svc string) (active, inact int, found bool) {
	e.t.Helper()
	in := false
	for _, l := range strings.Split(e.adm("-L", "-n"), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP"):
			in = f[0] == proto && f[1] == svc
			found = found || in
		case in && len(f) >= 6 && f[0] == "->":
			a, err1 := strconv.Atoi(f[4])
			i, err2 := strconv.Atoi(f[5])
			if err1 != nil || err2 != nil {
				e.t.Fatalf("-L -n line %q: counts not numbers", l)
			}
			active += a
			inact += i
		}
	}
	return active, inact, found
}

// TestHalfOpenIsActiveConn: a TCP connection that never gets past the client's SYN (the
// real servers drop it) is in SYN_RECV on the director, which IPVS counts as active:
// `xlvsadm -L -n` shows ActiveConn 1, InActConn 0. A UDP flow is inactive: 0 and 1.
func TestHalfOpenIsActiveConn(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	const port = 83 // nothing listens: the drop keeps the kernel from answering RST
	for _, rs := range e.bed.Reals {
		for _, args := range [][]string{
			{"add", "table", "inet", "e2e_halfopen"},
			{"add", "chain", "inet", "e2e_halfopen", "in", "{ type filter hook input priority 0; }"},
			{"add", "rule", "inet", "e2e_halfopen", "in", "tcp", "dport", strconv.Itoa(port), "drop"},
		} {
			if _, err := rs.NS.Run(e.ctx, "nft", args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	svc := e.natService("-t", e.bed.VIP, port, "rr")

	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	done := make(chan error, 1)
	go func() {
		c, err := e.bed.Client.NS.DialContext(ctx, "tcp", svc)
		if err == nil {
			c.Close()
			err = fmt.Errorf("connected to %s through a real server that drops SYNs", svc)
		}
		done <- err
	}()
	defer func() {
		cancel()
		<-done
	}()
	var a, i int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var found bool
		if a, i, found = e.admConns("TCP", svc); !found {
			t.Fatalf("service %s not in -L -n", svc)
		}
		if a+i > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a != 1 || i != 0 {
		t.Fatalf("half-open connection: ActiveConn %d InActConn %d, want 1 0", a, i)
	}
	// The client retransmits its SYN meanwhile: still one active connection, in SYN_RECV.
	var row string
	for _, l := range strings.Split(e.adm("-L", "-n", "-c"), "\n") {
		if strings.Contains(l, svc) {
			row = l
		}
	}
	if !strings.Contains(row, "SYN_RECV") {
		t.Fatalf("connection row %q, want SYN_RECV", row)
	}
	select {
	case err := <-done:
		t.Fatalf("dial ended before the check: %v", err)
	default:
	}
	if a, i, _ := e.admConns("TCP", svc); a != 1 || i != 0 {
		t.Fatalf("after the listing: ActiveConn %d InActConn %d, want 1 0", a, i)
	}

	usvc := e.natService("-u", e.bed.VIP, echoPort, "rr")
	c, err := e.bed.Client.NS.DialContext(e.ctx, "udp", usvc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 512)); err != nil {
		t.Fatalf("UDP echo through %s: %v", usvc, err)
	}
	if a, i, _ := e.admConns("UDP", usvc); a != 0 || i != 1 {
		t.Fatalf("UDP flow: ActiveConn %d InActConn %d, want 0 1", a, i)
	}
}
