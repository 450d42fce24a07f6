package e2e

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// fastPathPeers turns GRO on at the far end of each of the director's veths: a veth
// delivers the frames an XDP program sends (XDP_TX, or redirected to it) only when its
// peer runs NAPI, which GRO (or an XDP program) turns on (linux drivers/net/veth.c,
// veth_xdp_xmit: no NAPI on the peer, the frames are dropped).
func (e *env) fastPathPeers() {
	e.t.Helper()
	for _, h := range e.bed.DirectorHosts() {
		ns, ifname := e.bed.Switch, ""
		if p, err := e.bed.SwitchPort(h); err == nil {
			ifname = p
		} else {
			ns, ifname = e.bed.Client.NS, e.bed.Client.Iface // NATTwoArm's ext0 ↔ client
		}
		if err := testbed.SetGRO(ns, ifname, true); err != nil {
			e.t.Fatalf("GRO on the director's peer %s: %v", ifname, err)
		}
	}
}

// fastCounters are the fast path's counters and the XDP programs' fastpath_tx.
func (e *env) fastCounters() map[string]uint64 {
	e.t.Helper()
	c := e.dataplaneCounters()
	if _, ok := c["fastpath_entries"]; !ok {
		e.t.Fatal("xlvsd lists no fast-path counters: started without --fastpath?")
	}
	return c
}

// waitFast polls the fast path's counters until ok says they are right (5 s at most:
// the fast path sweeps its map every second), and returns the last ones.
func (e *env) waitFast(what string, ok func(c map[string]uint64) bool) map[string]uint64 {
	e.t.Helper()
	c := e.fastCounters()
	for deadline := time.Now().Add(5 * time.Second); !ok(c); c = e.fastCounters() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within 5 s; counters %v", what, fastOnly(c))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

func fastOnly(c map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range c {
		if strings.HasPrefix(k, "fastpath_") || k == "xdp_fastpath_tx" {
			out[k] = v
		}
	}
	return out
}

// checkDrops fails on any drop except the capacity ones (as TestNAT) and the counters
// named in allowed.
func (e *env) checkDrops(allowed ...string) {
	e.t.Helper()
	for k, v := range e.dataplaneCounters() {
		switch {
		case v == 0, k == "drop_no_frame", k == "drop_tx_full", slices.Contains(allowed, k):
		case strings.HasPrefix(k, "drop_"), k == "panics", k == "xdp_malformed", k == "fastpath_failed", k == "fastpath_map_full":
			e.t.Errorf("%s = %d, want 0", k, v)
		}
	}
}

// fastUDP sends count datagrams of size bytes to vip:port, every one echoed byte-exact by
// one real server, and checks that the fast path carried most of them (the packets of the
// flow's first fastInstallDelay, 25 ms, go through a worker) and that the service's
// counters (xlvsadm -L --stats) equal what was sent: count packets in (and, with replies
// through the director, out), IP-level bytes.
func (e *env) fastUDP(vip netip.Addr, port, count, size int, replies bool) {
	t := e.t
	t.Helper()
	before := e.fastCounters()
	// A client port no flow before used: a service deleted and added again (as callers
	// do) leaves the connections of the old one, whose datagrams are dropped.
	conn, err := dialUDPFrom(e, mqClientPort.Add(1), netip.AddrPortFrom(vip, uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := traffic.UDPEcho(e.ctx, conn, count, size, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != count || res.Mismatched != 0 || len(res.ByServer) != 1 {
		t.Fatalf("udp echo: %+v", res)
	}
	var server string
	for s := range res.ByServer {
		server = s
	}
	ipHdr := uint64(20)
	if vip.Is6() {
		ipHdr = 40
	}
	wantIn := uint64(count) * (ipHdr + 8 + uint64(size))
	wantOut := uint64(count) * (ipHdr + 8 + uint64(len(server)) + 1 + uint64(size))
	wantOutPkts := uint64(count)
	if !replies {
		wantOut, wantOutPkts = 0, 0
	}
	// The fast path's packets reach the counters at its next sweep.
	var st, got struct{ conns, inPkts, outPkts, inBytes, outBytes uint64 }
	for deadline := time.Now().Add(5 * time.Second); ; {
		s := e.service("udp", vip, port).Stats
		st.conns, st.inPkts, st.outPkts, st.inBytes, st.outBytes = s.Conns, s.InPkts, s.OutPkts, s.InBytes, s.OutBytes
		if st.inPkts >= uint64(count) && st.outPkts >= wantOutPkts || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	got = st
	if got.conns != 1 || got.inPkts != uint64(count) || got.outPkts != wantOutPkts || got.inBytes != wantIn || got.outBytes != wantOut {
		t.Errorf("udp service stats %+v; want conns 1, pkts %d/%d, bytes %d/%d", got, count, wantOutPkts, wantIn, wantOut)
	}
	// The listing shows the same numbers.
	if out := e.adm("-L", "--stats", "--exact", "-n"); !strings.Contains(out, " "+itoa(uint64(count))+" ") {
		t.Errorf("-L --stats --exact does not show %d packets:\n%s", count, out)
	}
	after := e.fastCounters()
	fast := after["fastpath_packets"] - before["fastpath_packets"]
	if tx := after["xdp_fastpath_tx"] - before["xdp_fastpath_tx"]; tx != fast {
		t.Errorf("xdp_fastpath_tx moved by %d, fastpath_packets by %d: the map's counters and the program's differ", tx, fast)
	}
	total := uint64(count) + wantOutPkts
	if fast < total/2 {
		t.Errorf("the fast path carried %d of the %d packets, want most", fast, total)
	}
	t.Logf("udp: %d of %d packets through the fast path", fast, total)
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// fastTCP moves 16 MiB down and 16 MiB up, byte-exact (the receivers' kernels drop
// segments with bad checksums, so byte-exact means checked), and checks the fast path
// carried most of the segments, and that the connections, once closed (FIN), left it.
func (e *env) fastTCP(vip netip.Addr, want netip.Addr) {
	t := e.t
	t.Helper()
	before := e.fastCounters()
	e.transferBothWays(vip, 16<<20, want)
	after := e.fastCounters()
	tx := after["xdp_fastpath_tx"] - before["xdp_fastpath_tx"]
	if tx < 1000 {
		t.Errorf("xdp_fastpath_tx moved by %d during 32 MiB of TCP, want many of the segments (> 1000)", tx)
	}
	if after["fastpath_installed"] == before["fastpath_installed"] {
		t.Error("no fast-path entry installed for the TCP connections")
	}
	// Closed connections (FIN went through a worker) are out of the fast path; what
	// remains is what was there before (earlier UDP flows, which live on).
	e.waitFast("the closed TCP connections leave the fast path", func(c map[string]uint64) bool {
		return c["fastpath_entries"] == before["fastpath_entries"]
	})
	t.Logf("tcp: %d segments through the fast path", tx)
}

// TestFastPathNAT: with --fastpath, NAT (two-armed: requests and replies redirected
// between the interfaces) over IPv4 and IPv6 — byte-exact TCP both ways, a UDP flow whose
// -L --stats counters equal the datagrams sent, FIN taking connections out.
func TestFastPathNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm, "--fastpath")
	e.fastPathPeers()
	e.fastNAT(t)
	e.t = t
	e.noChecksumErrors()
	e.checkDrops()
	// Flushing the rules takes every entry out.
	e.adm("-C")
	e.waitFast("-C empties the fast path", func(c map[string]uint64) bool { return c["fastpath_entries"] == 0 })
}

// fastNAT runs fastTCP and fastUDP through NAT services over IPv4 and IPv6.
func (e *env) fastNAT(t *testing.T) {
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip := e.bed.VIPFor(v6)
		e.natService("-t", vip, httpPort, "rr")
		e.natService("-t", vip, whoPort, "rr")
		e.natService("-u", vip, echoPort, "rr")
		e.fastTCP(vip, e.bed.Client.AddrFor(v6))
		e.fastUDP(vip, echoPort, 2000, 512, true)
	})
}

// TestFastPathDR: with --fastpath, DR (one interface: XDP_TX) over IPv4 and IPv6 — TCP
// byte-exact both ways, a UDP flow counted exactly.
func TestFastPathDR(t *testing.T) {
	e := setup(t, testbed.L2, "--fastpath")
	e.fastPathPeers()
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip := e.bed.VIPFor(v6)
		e.vipServices(vip, "-g")
		e.fastTCP(vip, e.bed.Client.AddrFor(v6))
		e.fastUDP(vip, vipEchoPort, 2000, 512, false)
	})
	e.t = t
	e.noChecksumErrors()
	e.checkDrops()
}

// TestFastPathDeleteServer: quiescing the real server of a connection in the fast path
// (weight 0) leaves the connection there; deleting it takes the connection out: its packets reach a worker again, which drops them
// (the real server is gone, IPVS's expire_nodest_conn=0) — none is forwarded anymore.
func TestFastPathDeleteServer(t *testing.T) {
	e := setup(t, testbed.NATTwoArm, "--fastpath")
	e.fastPathPeers()
	vip := e.bed.VIP
	svc := e.natService("-u", vip, echoPort, "rr")
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(vip, echoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := traffic.UDPEcho(e.ctx, conn, 50, 100, 2*time.Second)
	if err != nil || res.Received != 50 {
		t.Fatalf("echo: %+v %v", res, err)
	}
	e.waitFast("the UDP flow is in the fast path", func(c map[string]uint64) bool { return c["fastpath_entries"] == 2 })
	var server string
	for s := range res.ByServer {
		server = s
	}
	rs := e.bed.Reals[0]
	if server == "rs2" {
		rs = e.bed.Reals[1]
	}
	// Quiescing (weight 0) leaves an established flow alone, as in IPVS: still in the
	// fast path, still answered.
	e.adm("-e", "-u", svc, "-r", netip.AddrPortFrom(rs.Addr, echoPort).String(), "-m", "-w", "0")
	before := e.dataplaneCounters()
	if res, err := traffic.UDPEcho(e.ctx, conn, 50, 100, 2*time.Second); err != nil || res.Received != 50 || res.ByServer[server] != 50 {
		t.Fatalf("echo after quiescing its server: %+v %v", res, err)
	}
	after := e.waitFast("the quiesced server's flow stays", func(c map[string]uint64) bool { return c["fastpath_entries"] == 2 })
	if d := after["xdp_fastpath_tx"] - before["xdp_fastpath_tx"]; d < 90 {
		t.Errorf("the fast path forwarded %d of the 100 packets after quiescing, want nearly all", d)
	}
	e.adm("-d", "-u", svc, "-r", netip.AddrPortFrom(rs.Addr, echoPort).String())
	e.waitFast("the deleted server's flow leaves the fast path", func(c map[string]uint64) bool { return c["fastpath_entries"] == 0 })
	before = e.dataplaneCounters()
	res, err = traffic.UDPEcho(e.ctx, conn, 5, 100, 300*time.Millisecond)
	if res.Received != 0 {
		t.Fatalf("%d echoes through a deleted real server (%v)", res.Received, err)
	}
	after = e.dataplaneCounters()
	if d := after["drop_dest_gone"] - before["drop_dest_gone"]; d == 0 {
		t.Error("the flow's datagrams were not dropped as dest_gone by a worker")
	}
	if d := after["xdp_fastpath_tx"] - before["xdp_fastpath_tx"]; d != 0 {
		t.Errorf("the fast path forwarded %d packets after the real server was deleted", d)
	}
}

// TestFastPathFullNAT: with --fastpath, FULLNAT (two-armed, the real servers without a
// route to the client: they answer the local address) over IPv4 and IPv6 — byte-exact
// TCP both ways with the real server seeing the local address, a UDP flow counted
// exactly, closed connections out of the fast path, the TOA option on the SYN and the
// handshake's ACK only (checkTOA).
func TestFastPathFullNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm, "--fastpath")
	e.fastPathPeers()
	e.fastFullNAT()
	e.t = t
	e.noChecksumErrors()
	e.checkDrops()
}

// fastFullNAT gives the director FULLNAT's local addresses and the real servers no route
// to the client, and runs fastTCP and fastUDP through FULLNAT services over IPv4 and IPv6.
func (e *env) fastFullNAT() {
	t := e.t
	for _, args := range [][]string{
		{"-4", "addr", "add", fullnatLIP4.String() + "/24", "dev", e.bed.Int.Iface},
		{"-6", "addr", "add", fullnatLIP6.String() + "/64", "dev", e.bed.Int.Iface, "nodad"},
	} {
		if out, err := e.bed.Director.Run(e.ctx, "ip", args...); err != nil {
			t.Fatalf("add a local address on the director (ip %s): %v %s", strings.Join(args, " "), err, out)
		}
	}
	for _, rs := range e.bed.Reals {
		for _, fam := range []string{"-4", "-6"} {
			if out, err := rs.NS.Run(e.ctx, "ip", fam, "route", "del", "default"); err != nil {
				t.Fatalf("delete %s's default route (%s): %v %s", rs.NS.Name(), fam, err, out)
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
			for _, s := range []struct {
				proto string
				port  int
			}{{"-t", httpPort}, {"-t", whoPort}, {"-u", echoPort}} {
				e.modeService(s.proto, vip, s.port, "--fullnat")
				e.adm("-P", s.proto, netip.AddrPortFrom(vip, uint16(s.port)).String(), "-z", lip.String())
			}
			e.fastTCP(vip, lip)
			e.fastUDP(vip, echoPort, 2000, 512, true)
			// The workers write the TOA option: the handshake's ACK is the packet that
			// makes the connection established, and the fast path takes it only then.
			checkTOA(t, e, vip, lip)
		})
	}
}

// TestFastPathKernel: with --fastpath-forward kernel the program rewrites NAT and FULLNAT
// connections' packets and passes them on, and the director's kernel forwards them.
// xlvsd refuses to start while the kernel would not (naming the settings); with
// forwarding and accept_local on it starts, and byte-exact TCP both ways and UDP flows
// counted exactly go through the fast path (xdp_fastpath_tx counts what the program
// passed), NAT then FULLNAT, over IPv4 and IPv6. Forwarding turned off meanwhile takes
// that family's entries out, and its flows go on through the program's own send.
func TestFastPathKernel(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	args := []string{"-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--fastpath", "--fastpath-forward", "kernel"}
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	d, err := bench.StartDaemon(e.ctx, e.bed.Director, bins, args...)
	if err == nil {
		d.Stop()
		t.Fatal("xlvsd --fastpath-forward kernel started with the kernel's forwarding off")
	}
	if !strings.Contains(err.Error(), "set net.ipv4.ip_forward=1, net.ipv4.conf.") || !strings.Contains(err.Error(), "--fastpath-forward xdp") {
		t.Fatalf("refusal %v: want the settings named and the other choice", err)
	}
	if err := e.bed.SetForwarding(true); err != nil {
		t.Fatal(err)
	}
	if err := e.bed.Director.SetSysctl("net.ipv4.conf.all.accept_local", "1"); err != nil {
		t.Fatal(err)
	}
	e.startDaemon(args...)
	e.fastPathPeers() // for what the program sends itself, below
	e.fastNAT(t)
	e.t = t
	// IPv4 forwarding turned off while xlvsd runs: within a sweep the IPv4 entries (the
	// UDP flows', which outlive the test's transfers) leave the map, since the kernel
	// would now drop what they pass it, and a new IPv4 flow goes through the fast path
	// again, sent by the program.
	before := e.fastCounters()["fastpath_entries"]
	if err := e.bed.Director.SetSysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	e.waitFast("forwarding off takes the IPv4 entries out", func(c map[string]uint64) bool { return c["fastpath_entries"] == before-2 })
	vip4 := e.bed.VIPFor(false)
	e.adm("-D", "-u", netip.AddrPortFrom(vip4, echoPort).String()) // fastUDP counts on a fresh service
	e.natService("-u", vip4, echoPort, "rr")
	e.fastUDP(vip4, echoPort, 2000, 512, true)
	if err := e.bed.Director.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	e.adm("-C")
	e.fastFullNAT()
	e.t = t
	e.noChecksumErrors()
	e.checkDrops()
	// The director's kernel forwarded them (it forwards nothing else here: xlvsd's
	// workers send the rest themselves).
	v4, v6 := e.forwarded()
	if v4 < 20000 || v6 < 20000 {
		t.Errorf("the director's kernel forwarded %d IPv4 and %d IPv6 datagrams, want the fast path's (> 20000 each)", v4, v6)
	}
	t.Logf("the director's kernel forwarded %d IPv4 and %d IPv6 datagrams", v4, v6)
}

// forwarded returns the director kernel's forwarded datagram counts: IPv4 (Ip
// ForwDatagrams, /proc/net/snmp) and IPv6 (Ip6OutForwDatagrams, /proc/net/snmp6).
func (e *env) forwarded() (v4, v6 uint64) {
	e.t.Helper()
	snmp, err := e.bed.Director.Run(e.ctx, "cat", "/proc/net/snmp", "/proc/net/snmp6")
	if err != nil {
		e.t.Fatal(err)
	}
	lines := strings.Split(snmp, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "Ip6OutForwDatagrams":
			v6, _ = strconv.ParseUint(f[1], 10, 64)
		case len(f) > 1 && f[0] == "Ip:" && f[1] == "Forwarding" && i+1 < len(lines): // names, then values
			vals := strings.Fields(lines[i+1])
			for j, name := range f {
				if name == "ForwDatagrams" && j < len(vals) {
					v4, _ = strconv.ParseUint(vals[j], 10, 64)
				}
			}
		}
	}
	return v4, v6
}

// TestFastPathTUN: with --fastpath, TUN (one interface: XDP_TX or a redirect back out of
// it; the real servers decapsulate with xlvs-decap at XDP, this machine has no ipip
// module) over IPv4 and IPv6 — byte-exact TCP both ways with the real server seeing the
// client's address, a UDP flow whose -L --stats counters equal the datagrams sent (the
// inner packets' bytes), closed connections out of the fast path. The upload's
// full-size segments no longer fit once encapsulated: the program leaves them to the
// workers, which answer with fragmentation needed / Packet Too Big, and the transfer
// completes only if they do (the director's icmp_sent moves).
func TestFastPathTUN(t *testing.T) {
	e := setup(t, testbed.L2, "--fastpath")
	e.fastPathPeers()
	e.startDecap(decapBinary(t), "xdp")
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip := e.bed.VIPFor(v6)
		e.vipServices(vip, "-i")
		before := e.dataplaneCounters()
		e.fastTCP(vip, e.bed.Client.AddrFor(v6))
		after := e.dataplaneCounters()
		if after["icmp_sent"] == before["icmp_sent"] {
			t.Errorf("the director sent no ICMP while the client uploaded full-size packets: the over-MTU path was not exercised (counters %v)", fastOnly(after))
		}
		e.fastUDP(vip, vipEchoPort, 2000, 512, false)
		if st := e.service("tcp", vip, httpPort).Stats; st.InBytes < 16<<20 || st.OutPkts != 0 {
			t.Errorf("tcp stats %+v: want ≥ 16 MiB in and no packets out (TUN replies bypass the director)", st)
		}
	})
	e.t = t
	e.noChecksumErrors()
	// Full-size segments in flight when the first fragmentation needed left are answered
	// too, beyond the ICMP burst: counted as drop_too_big.
	e.checkDrops("drop_too_big")
}
