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

// TestHealthCheckOnAdmRules: xlvsd --health-check checks the real servers of rules made
// with xlvsadm; a stopped server is listed with weight 0 and gets no new connections, and
// gets its weight back when it answers again. Listings, -S included, show the weight in
// effect (0), as ipvsadm shows the kernel's under keepalived; the state file keeps the
// configured one (control's unit test checks that).
func TestHealthCheckOnAdmRules(t *testing.T) {
	e := setup(t, testbed.NATTwoArm, "--health-check", "TCP_CHECK {\n connect_timeout 1\n retry 0\n delay_loop 1\n}")
	serve := func(i int) func() {
		ln, err := e.bed.Reals[i].NS.Listen("tcp", ":8090")
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, fmt.Sprintf("rs%d", i+1))
		return func() { srv.Close() }
	}
	stop1 := serve(0)
	stop2 := serve(1)
	defer stop2()
	vip := netip.AddrPortFrom(e.bed.VIP, 8090).String()
	rs1 := netip.AddrPortFrom(e.bed.Reals[0].Addr, 8090).String()
	rs2 := netip.AddrPortFrom(e.bed.Reals[1].Addr, 8090).String()
	e.adm("-A", "-t", vip, "-s", "rr")
	e.adm("-a", "-t", vip, "-r", rs1, "-m", "-w", "2")
	e.adm("-a", "-t", vip, "-r", rs2, "-m", "-w", "1")
	weightOf := func(addr string) string {
		for _, l := range strings.Split(e.adm("-L", "-n"), "\n") {
			if f := strings.Fields(l); len(f) >= 4 && f[0] == "->" && f[1] == addr {
				return f[3]
			}
		}
		return ""
	}
	waitWeight := func(addr, want string) {
		t.Helper()
		deadline := time.Now().Add(8 * time.Second)
		for weightOf(addr) != want && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := weightOf(addr); got != want {
			t.Fatalf("%s weight %q, want %q:\n%s", addr, got, want, e.adm("-L", "-n"))
		}
	}
	stop1()
	waitWeight(rs1, "0")
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: "http://" + vip + "/", Requests: 100, Concurrency: 4, Dial: e.dial(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || res.ByServer["rs2"] != 100 {
		t.Fatalf("with rs1 failing: %s", res.String())
	}
	if s := e.adm("-S", "-n"); !strings.Contains(s, "-r "+rs1+" -m -w 0") {
		t.Fatalf("-S does not show the weight in effect:\n%s", s)
	}
	stop1 = serve(0)
	defer stop1()
	waitWeight(rs1, "2")
}
