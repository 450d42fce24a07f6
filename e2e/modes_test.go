package e2e

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// vipEchoPort is where the mode tests' UDP echo servers listen, bound to the VIP itself:
// a DR or TUN real server must answer from the VIP, and a socket bound to the wildcard
// address would answer from the real server's own address.
const vipEchoPort = 7007

// serveVIPEcho starts a UDP echo server bound to vip:vipEchoPort on every real server.
func (e *env) serveVIPEcho(vip netip.Addr) {
	e.t.Helper()
	for i, rs := range e.bed.Reals {
		pc, err := rs.NS.ListenPacket("udp", netip.AddrPortFrom(vip, vipEchoPort).String())
		if err != nil {
			e.t.Fatalf("listen on the VIP in %s: %v", rs.NS.Name(), err)
		}
		stop := traffic.ServeUDPEcho(pc, fmt.Sprintf("rs%d", i+1))
		e.t.Cleanup(func() { stop(); pc.Close() })
	}
}

// vipServices serves the UDP echo on vip at every real server (serveVIPEcho) and defines
// the TCP services vip:httpPort and vip:whoPort and the UDP service vip:vipEchoPort, each
// to every real server with the forwarding flag method (-g, -i).
func (e *env) vipServices(vip netip.Addr, method string) {
	e.t.Helper()
	e.serveVIPEcho(vip)
	for _, port := range []int{httpPort, whoPort} {
		e.modeService("-t", vip, port, method)
	}
	e.modeService("-u", vip, vipEchoPort, method)
}

// eachFamily runs f as the subtests "ipv4" and "ipv6", with e.t the subtest's.
func (e *env) eachFamily(t *testing.T, f func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			e.t = t
			f(t, v6)
		})
	}
}

// modeService defines proto VIP:port → every real server (same port) with the forwarding
// flag (-g, -i, -m) and scheduler rr.
func (e *env) modeService(proto string, vip netip.Addr, port int, method ...string) {
	e.t.Helper()
	svc := netip.AddrPortFrom(vip, uint16(port)).String()
	e.adm("-A", proto, svc, "-s", "rr")
	for _, rs := range e.bed.Reals {
		args := append([]string{"-a", proto, svc, "-r", netip.AddrPortFrom(rs.AddrFor(vip.Is6()), uint16(port)).String()}, method...)
		e.adm(append(args, "-w", "1")...)
	}
}

// transferBothWays downloads and uploads size bytes through vip, byte-exact, and checks
// the real server saw want as the client address.
func (e *env) transferBothWays(vip netip.Addr, size int, want netip.Addr) {
	t := e.t
	t.Helper()
	n, err := traffic.Download(e.ctx, e.dial(), httpURL(vip, httpPort, "/"), size, 11)
	if err != nil || n != int64(size) {
		t.Fatalf("download: %d of %d bytes, %v", n, size, err)
	}
	up := make([]byte, size)
	rand.Read(up)
	if err := traffic.Upload(e.ctx, e.dial(), httpURL(vip, httpPort, "/"), up); err != nil {
		t.Fatalf("upload: %v", err)
	}
	who, err := e.get(httpURL(vip, whoPort, "/"))
	if err != nil {
		t.Fatal(err)
	}
	if ap, err := netip.ParseAddrPort(who); err != nil || ap.Addr() != want {
		t.Fatalf("real server saw %q, want %v", who, want)
	}
}

// udpEcho sends datagrams to vip:vipEchoPort and wants every one back, byte-exact, from
// one real server.
func (e *env) udpEcho(vip netip.Addr) {
	t := e.t
	t.Helper()
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(vip, vipEchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const count = 200
	res, err := traffic.UDPEcho(e.ctx, conn, count, 1000, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != count || res.Mismatched != 0 || len(res.ByServer) != 1 {
		t.Fatalf("udp echo: %+v", res)
	}
}

// logDrops shows the dataplane's non-zero drop counters (for a failing run's reader).
func (e *env) logDrops() {
	for k, v := range e.dataplaneCounters() {
		if strings.HasPrefix(k, "drop_") && v != 0 {
			e.t.Logf("dataplane %s = %d", k, v)
		}
	}
}

// TestDR: direct routing in the L2 layout (real servers hold the VIP on lo with
// arp_ignore/arp_announce): 10 MiB byte-exact each way over TCP, UDP echo answered from
// the VIP, the real server seeing the client's address, over IPv4 and IPv6, and no
// checksum errors anywhere.
func TestDR(t *testing.T) {
	e := setup(t, testbed.L2)
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip := e.bed.VIPFor(v6)
		e.vipServices(vip, "-g")
		if out := e.adm("-L", "-n"); !strings.Contains(out, "Route") {
			t.Fatalf("listing shows no Route destination:\n%s", out)
		}
		before := e.dataplaneCounters()
		e.transferBothWays(vip, 10<<20, e.bed.Client.AddrFor(v6))
		e.burstGrew(before)
		e.udpEcho(vip)
		// The director sees only the client's direction.
		st := e.service("tcp", vip, httpPort).Stats
		if st.InBytes < 10<<20 || st.OutPkts != 0 {
			t.Errorf("tcp stats %+v: want ≥ 10 MiB in and no packets out (DR replies bypass the director)", st)
		}
		e.logDrops()
	})
	e.t = t
	e.noChecksumErrors()
}
