package e2e

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/control/api"
)

// Local addresses the FULLNAT test puts on the director's internal interface, in the
// real servers' subnet (the kernel then answers their ARP / neighbour solicitations).
var (
	fullnatLIP4 = netip.MustParseAddr("198.18.2.50")
	fullnatLIP6 = netip.MustParseAddr("fd00:2::50")
)

// TestFullNAT: full NAT in the classic two-armed layout with the real servers' route
// back through the director removed (they reach only their own subnet): for IPv4 and
// IPv6, 10 MiB byte-exact each way over TCP, the real server seeing the local address as
// its client, the client's address and port in the TOA option of the SYN and the
// handshake's ACK (checkTOA), UDP echo, a real server's ICMP port unreachable reaching the client
// translated, -L -n showing FullNat and --get-laddr the local address with its
// connections; no checksum errors anywhere.
func TestFullNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	dir := e.bed.Director
	for _, args := range [][]string{
		{"-4", "addr", "add", fullnatLIP4.String() + "/24", "dev", e.bed.Int.Iface},
		{"-6", "addr", "add", fullnatLIP6.String() + "/64", "dev", e.bed.Int.Iface, "nodad"},
	} {
		if out, err := dir.Run(e.ctx, "ip", args...); err != nil {
			t.Fatalf("add a local address on the director (ip %s): %v %s", strings.Join(args, " "), err, out)
		}
	}
	for _, rs := range e.bed.Reals {
		for _, fam := range []string{"-4", "-6"} {
			if out, err := rs.NS.Run(e.ctx, "ip", fam, "route", "del", "default"); err != nil {
				t.Fatalf("delete %s's default route (%s): %v %s", rs.NS.Name(), fam, err, out)
			}
		}
		// Proof: the client is unreachable from the real server.
		for _, c := range []netip.Addr{e.bed.Client.Addr, e.bed.Client.Addr6} {
			if out, err := rs.NS.Run(e.ctx, "ip", "route", "get", c.String()); err == nil {
				t.Fatalf("%s still has a route to the client %v:\n%s", rs.NS.Name(), c, out)
			}
		}
	}

	for _, v6 := range []bool{false, true} {
		name, lip := "ipv4", fullnatLIP4
		if v6 {
			name, lip = "ipv6", fullnatLIP6
		}
		t.Run(name, func(t *testing.T) {
			e.t = t
			vip := e.bed.VIPFor(v6)
			svcs := []struct {
				proto string
				port  int
			}{{"-t", httpPort}, {"-t", whoPort}, {"-u", echoPort}, {"-u", closedPort}}
			for _, s := range svcs {
				// Real servers first: a FULLNAT destination may exist before any local
				// address (its connections are dropped meanwhile).
				e.modeService(s.proto, vip, s.port, "--fullnat")
				e.adm("-P", s.proto, netip.AddrPortFrom(vip, uint16(s.port)).String(), "-z", lip.String())
			}
			for _, s := range svcs {
				svc := netip.AddrPortFrom(vip, uint16(s.port)).String()
				if out := e.adm("-L", "-n", s.proto, svc); strings.Count(out, "FullNat") != len(e.bed.Reals) {
					t.Fatalf("-L -n %s %s shows %d FullNat destinations, want %d:\n%s", s.proto, svc, strings.Count(out, "FullNat"), len(e.bed.Reals), out)
				}
			}

			// 10 MiB each way, byte-exact; the real server sees the local address.
			before := e.dataplaneCounters()
			e.transferBothWays(vip, 10<<20, lip)
			e.burstGrew(before)

			// UDP echo: every datagram back, byte-exact, from one real server.
			conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(vip, echoPort).String())
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

			// TOA: the client's address and port reach the real server in the SYN and
			// the handshake's ACK.
			checkTOA(t, e, vip, lip)

			// A real server's port unreachable, sent to the local address, reaches the
			// client from the VIP.
			udpRefused(t, e, netip.AddrPortFrom(vip, closedPort))

			// --get-laddr: the local address of the HTTP service, with the connections of
			// the transfers (in TIME_WAIT now) and no port conflicts.
			svc := netip.AddrPortFrom(vip, httpPort).String()
			out := e.adm("-G", "-t", svc)
			conns := laddrConns(t, out, svc, lip)
			resp, err := e.d.Client().Do(e.ctx, &api.Request{Op: api.OpGetLocalAddrs, Service: &api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoTCP, Addr: vip, Port: httpPort}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.LocalAddrs) != 1 || resp.LocalAddrs[0].Addr != lip || resp.LocalAddrs[0].PortConflicts != 0 {
				t.Fatalf("get-laddrs: %+v", resp.LocalAddrs)
			}
			if conns < 2 {
				t.Fatalf("--get-laddr counts %d connections on %v, want the 2 of the transfers:\n%s", conns, lip, out)
			}
			st := e.service("tcp", vip, httpPort).Stats
			if st.Conns != 2 || st.InBytes < 10<<20 || st.OutBytes < 10<<20 {
				t.Errorf("tcp service stats %+v: want 2 connections and ≥ 10 MiB each way", st)
			}
			e.logDrops()
		})
	}
	e.t = t
	c := e.dataplaneCounters()
	for _, k := range []string{"drop_no_laddr", "drop_no_lport", "drop_no_reply_conn", "drop_malformed"} {
		if c[k] != 0 {
			t.Errorf("dataplane %s = %d", k, c[k])
		}
	}
	if c["icmp_forwarded"] < 2 {
		t.Errorf("icmp_forwarded %d, want the port unreachables of both families", c["icmp_forwarded"])
	}
	e.noChecksumErrors()
}

// laddrConns finds, in --get-laddr output (DPVS's format), the line of local address lip
// under service svc and returns its CONNS column.
func laddrConns(t *testing.T, out, svc string, lip netip.Addr) int {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "VIP:VPORT") {
		t.Fatalf("--get-laddr output:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 2 || f[0] != svc || f[1] != "1" {
		t.Fatalf("--get-laddr service line %q, want %s with 1 local address", lines[1], svc)
	}
	f := strings.Fields(lines[2])
	if len(f) != 3 || f[0] != lip.String() {
		t.Fatalf("--get-laddr address line %q, want %v, conflicts, connections", lines[2], lip)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatalf("--get-laddr connections %q: %v", f[2], err)
	}
	return n
}
