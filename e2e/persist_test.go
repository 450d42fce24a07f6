package e2e

import (
	"context"
	"fmt"
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
	// -L -c lists the template as IPVS does: client masked by -M, port 0, state NONE.
	masked := netip.PrefixFrom(e.bed.Client.Addr, 24).Masked().Addr()
	want := fmt.Sprintf("NONE        %-18s %-18s", netip.AddrPortFrom(masked, 0), vip)
	if out := e.adm("-L", "-c", "-n"); !strings.Contains(out, want) {
		t.Fatalf("-L -c -n has no template line %q:\n%s", want, out)
	}
}

// TestPersistencePortZero: a persistent service on port 0 (ipvsadm -t VIP:0 -p) takes
// every port of the VIP; a client's connections to two ports land on one real server,
// which sees the ports the client asked for.
func TestPersistencePortZero(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	const altPort = 8080
	for i, rs := range e.bed.Reals {
		ln, err := rs.NS.Listen("tcp", fmt.Sprintf(":%d", altPort))
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, fmt.Sprintf("rs%d", i+1))
		t.Cleanup(func() { srv.Close() })
	}
	vip0 := netip.AddrPortFrom(e.bed.VIP, 0).String()
	if out, err := e.d.Adm(e.ctx, "-A", "-t", vip0, "-s", "rr"); err == nil {
		t.Fatalf("a non-persistent port-0 service was accepted:\n%s", out)
	}
	e.adm("-A", "-t", vip0, "-s", "rr", "-p", "60")
	for _, rs := range e.bed.Reals {
		e.adm("-a", "-t", vip0, "-r", rs.Addr.String(), "-m")
	}
	if out := e.adm("-L", "-n"); !strings.Contains(out, e.bed.VIP.String()+":0 rr persistent 60") {
		t.Fatalf("listing:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	servers := map[string]int{}
	for _, port := range []int{httpPort, altPort, httpPort, altPort} {
		res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: httpURL(e.bed.VIP, port, "/"), Requests: 10, Concurrency: 2, Dial: e.dial(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		if res.Failed != 0 {
			t.Fatalf("port %d: %d requests failed", port, res.Failed)
		}
		for s, n := range res.ByServer {
			servers[s] += n
		}
	}
	if len(servers) != 1 {
		t.Fatalf("one client's connections to two ports spread over %v", servers)
	}
	e.noChecksumErrors()
}
