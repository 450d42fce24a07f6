package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// TestPersistence: with -p, every connection of a client goes to one real server even
// under rr; -L -n shows "persistent N" and --persistent-conn counts the template.
func TestPersistence(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	vip := netip.AddrPortFrom(e.bed.VIP, httpPort).String()
	e.adm("-A", "-t", vip, "-s", "rr", "-p", "60", "-M", "255.255.255.0")
	for _, rs := range e.bed.Reals {
		e.adm("-a", "-t", vip, "-r", netip.AddrPortFrom(rs.Addr, httpPort).String(), "-m")
	}
	if out := e.adm("-L", "-n"); !strings.Contains(out, "rr persistent 60 mask 255.255.255.0") {
		t.Fatalf("listing:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: "http://" + vip + "/", Requests: 50, Concurrency: 4, Dial: e.dial(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || len(res.ByServer) != 1 {
		t.Fatalf("persistent client spread over %v (failed %d)", res.ByServer, res.Failed)
	}
	var persist uint32
	for _, d := range e.service("tcp", e.bed.VIP, httpPort).Dests {
		persist += d.PersistConns
	}
	if persist != 1 {
		t.Fatalf("%d persistence templates, want 1", persist)
	}
	if out := e.adm("-L", "-n", "--persistent-conn"); !strings.Contains(out, "PersistConn") {
		t.Fatalf("--persistent-conn:\n%s", out)
	}
}
