package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/sched"
)

// The model of the mark rules, written from their definition (and iptables'): every rule
// whose protocol, prefix and ports match the packet sets its mark, in order, so the last
// matching rule's mark is the packet's.
func modelMark(rules []MarkRule, dst netip.Addr, port uint16, proto uint8) uint32 {
	var mark uint32
	for _, r := range rules {
		if r.Proto != proto {
			continue
		}
		if (r.Family == 4) != dst.Is4() {
			continue
		}
		a := netip.AddrFrom16(r.Addr)
		if r.Family == 4 {
			a = a.Unmap()
		}
		if !netip.PrefixFrom(a, int(r.Bits)).Contains(dst) {
			continue
		}
		in := len(r.Ports) == 0
		for _, p := range r.Ports {
			if p.Lo <= port && port <= p.Hi {
				in = true
			}
		}
		if in {
			mark = r.Mark
		}
	}
	return mark
}

func markRule(t testing.TB, proto uint8, prefix string, mark uint32, ports ...PortRange) MarkRule {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	r := MarkRule{Proto: proto, Family: 6, Addr: p.Masked().Addr().As16(), Bits: uint8(p.Bits()), Ports: ports, Mark: mark}
	if p.Addr().Is4() {
		r.Family = 4
	}
	return r
}

// lpmModel looks a packet up in the XDP program's maps as the program does (the longest
// prefix of the packet's protocol and family, then the port among that prefix's blocks)
// and tells whether it is redirected.
func lpmModel(pre []bpf.MarkPrefix, ports []bpf.MarkPorts, dst netip.Addr, port uint16, proto uint8) bool {
	fam := uint8(6)
	if dst.Is4() {
		fam = 4
	}
	best := -1
	var bestPre bpf.MarkPrefix
	for _, p := range pre {
		if uint8(p.Proto) != proto || p.Family != fam {
			continue
		}
		a := netip.AddrFrom16(p.Addr)
		if fam == 4 {
			a = a.Unmap()
		}
		if netip.PrefixFrom(a, int(p.Bits)).Contains(dst) && int(p.Bits) > best {
			best, bestPre = int(p.Bits), p
		}
	}
	if best < 0 {
		return false
	}
	for _, pp := range ports {
		if pp.MarkPrefix == bestPre {
			for _, b := range bpf.PortBlocks(pp.Lo, pp.Hi) {
				size := uint32(1) << (16 - b.Bits)
				if uint32(port) >= uint32(b.First) && uint32(port) < uint32(b.First)+size {
					return true
				}
			}
		}
	}
	return false
}

// TestMarkTableModel: random overlapping rule sets, compiled, mark random packets as
// the model does; the XDP maps' entries redirect exactly the packets whose mark has a
// service.
func TestMarkTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prefixes4 := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.128/25", "10.9.0.0/16"}
	prefixes6 := []string{"::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::5/128"}
	addrs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.1.2.200"), netip.MustParseAddr("10.1.3.1"),
		netip.MustParseAddr("10.9.1.1"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:1::5"),
		netip.MustParseAddr("2001:db8:1::6"), netip.MustParseAddr("2001:db8:2::1"), netip.MustParseAddr("fe80::1"),
		netip.MustParseAddr("::ffff:10.1.2.3")}
	ports := []uint16{0, 1, 22, 53, 79, 80, 81, 443, 1023, 1024, 8080, 65535}
	for round := 0; round < 300; round++ {
		var rules []MarkRule
		for n := 1 + rng.IntN(8); n > 0; n-- {
			proto := []uint8{6, 17, 132}[rng.IntN(3)]
			pre := prefixes4[rng.IntN(len(prefixes4))]
			if rng.IntN(3) == 0 {
				pre = prefixes6[rng.IntN(len(prefixes6))]
			}
			var pr []PortRange
			for k := rng.IntN(3); k > 0; k-- {
				lo := ports[rng.IntN(len(ports))]
				hi := lo
				if rng.IntN(2) == 0 {
					hi = max(lo, ports[rng.IntN(len(ports))])
				}
				pr = append(pr, PortRange{lo, hi})
			}
			rules = append(rules, markRule(t, proto, pre, uint32(1+rng.IntN(4)), pr...))
		}
		// Marks 1 and 3 have services (IPv4 and IPv6 both), 2 and 4 none.
		svcOf := func(mark uint32, fam uint8) int32 {
			if mark%2 == 1 {
				return int32(mark)*10 + int32(fam)
			}
			return -1
		}
		tab, err := compileMarks(rules, svcOf)
		if err != nil {
			t.Fatal(err)
		}
		s := &Snapshot{marks: tab}
		pre, pp := s.MarkEntries()
		for _, dst := range addrs {
			d := dst.As16()
			for _, port := range ports {
				for _, proto := range []uint8{6, 17, 132} {
					want := modelMark(rules, dst.Unmap(), port, proto)
					r := tab.lookup(&d, port, proto)
					var got uint32
					if r != nil {
						got = r.mark
						if r.si != svcOf(r.mark, map[bool]uint8{true: 4, false: 6}[dst.Unmap().Is4()]) {
							t.Fatalf("round %d: %v:%d: service %d for mark %d", round, dst, port, r.si, r.mark)
						}
					}
					if got != want {
						t.Fatalf("round %d: %v:%d proto %d: mark %d, model %d; rules %+v", round, dst, port, proto, got, want, rules)
					}
					if redir := lpmModel(pre, pp, dst.Unmap(), port, proto); redir != (want%2 == 1) {
						t.Fatalf("round %d: %v:%d proto %d: XDP entries redirect %v, mark %d; rules %+v", round, dst, port, proto, redir, want, rules)
					}
				}
			}
		}
	}
}

func TestMarkRuleCheck(t *testing.T) {
	ok := markRule(t, 6, "10.0.0.0/8", 1, PortRange{80, 80})
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]MarkRule{
		"mark 0":         markRule(t, 6, "10.0.0.0/8", 0),
		"icmp":           markRule(t, 1, "10.0.0.0/8", 1),
		"unmasked":       {Proto: 6, Family: 4, Addr: a16(netip.MustParseAddr("10.1.0.0")), Bits: 8, Mark: 1},
		"v4 bits":        {Proto: 6, Family: 4, Addr: a16(netip.MustParseAddr("10.1.0.0")), Bits: 33, Mark: 1},
		"range reversed": markRule(t, 6, "10.0.0.0/8", 1, PortRange{90, 80}),
		"family":         {Proto: 6, Family: 5, Mark: 1},
	} {
		if err := r.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPortBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		lo := uint16(rng.IntN(65536))
		hi := lo + uint16(rng.IntN(65536-int(lo)))
		if i == 0 {
			lo, hi = 0, 65535
		}
		next := uint32(lo)
		bs := bpf.PortBlocks(lo, hi)
		if len(bs) > 30 {
			t.Fatalf("%d-%d: %d blocks", lo, hi, len(bs))
		}
		for _, b := range bs {
			size := uint32(1) << (16 - b.Bits)
			if uint32(b.First) != next || uint32(b.First)%size != 0 {
				t.Fatalf("%d-%d: block %+v not aligned or not contiguous", lo, hi, b)
			}
			next += size
		}
		if next != uint32(hi)+1 {
			t.Fatalf("%d-%d: blocks end at %d", lo, hi, next)
		}
	}
}

// fwmRig publishes, on a rig, fwmark service 1 (rr, persistent unless persist is 0, two
// NAT real servers with port 0) for TCP ports 80 and 443 of the VIP, and fwmark service 2
// (rr, not persistent, real servers on port 53) for UDP to any port of 198.18.1.96/29.
func fwmRig(t testing.TB, persist time.Duration) *rig {
	t.Helper()
	r := newRig(t, "rr", 1, 1)
	mk := func(id uint32, mark uint32, port uint16, persist time.Duration) Service {
		var sd []sched.Dest
		var ds []Dest
		for i, a := range []netip.Addr{rs1, rs2} {
			did := id*10 + uint32(i)
			ds = append(ds, Dest{ID: did, Addr: a16(a), Port: port, Method: conntrack.MethodNAT, Weight: 1})
			sd = append(sd, sched.Dest{ID: did, Addr: a16(a), Port: port, Weight: 1})
		}
		s, err := sched.New("rr", sd, 0)
		if err != nil {
			t.Fatal(err)
		}
		svc := Service{ID: id, Key: FWMarkKey(4), FWMark: mark, Dests: ds, Sched: s, Persist: int64(persist), PersistBits: 128}
		return svc
	}
	snap, err := NewSnapshot([]Service{mk(1, 1, 0, persist), mk(2, 2, 53, 0)})
	if err != nil {
		t.Fatal(err)
	}
	err = snap.SetMarks([]MarkRule{
		markRule(t, 6, "198.18.1.96/29", 9), // a mark without a service (the VIP is in it too)
		markRule(t, 6, vip.String()+"/32", 1, PortRange{80, 80}, PortRange{443, 443}),
		markRule(t, 17, "198.18.1.96/29", 2),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFWMarkPersistentAcrossPorts: a persistent fwmark service over two ports of the VIP
// keeps a client on one real server on both ports; the real server gets the port the
// client asked for (its own port is 0); its replies from either port go back from
// VIP:port; another port of the VIP is not the service's.
func TestFWMarkPersistentAcrossPorts(t *testing.T) {
	r := fwmRig(t, time.Hour)
	var server netip.Addr
	for i, port := range []uint16{80, 443, 80, 443} {
		sport := 6000 + uint16(i)
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: sport, dport: port, syn: true}))
		r.drain()
		out := r.int.Sent()
		if len(out) != 1 {
			t.Fatalf("port %d: sent %d frames, want 1 (drops %v)", port, len(out), r.drops())
		}
		info := check(t, out[0])
		got := netip.AddrFrom16(info.Dst).Unmap()
		if i == 0 {
			server = got
		} else if got != server {
			t.Fatalf("connection %d (port %d) went to %v, the client's template says %v", i, port, got, server)
		}
		if info.DstPort != port {
			t.Fatalf("real server got port %d, want the client's %d", info.DstPort, port)
		}
		r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: server, dst: client, sport: port, dport: sport, syn: true, ack: true}))
		r.drain()
		back := r.ext.Sent()
		if len(back) != 1 {
			t.Fatalf("reply: sent %d frames (drops %v)", len(back), r.drops())
		}
		if bi := check(t, back[0]); netip.AddrFrom16(bi.Src).Unmap() != vip || bi.SrcPort != port {
			t.Fatalf("reply from %v:%d, want %v:%d", netip.AddrFrom16(bi.Src).Unmap(), bi.SrcPort, vip, port)
		}
	}
	// Port 8080 of the VIP: no rule marks it, and no plain service has it (the rig's
	// services are on port 80, where the mark's service wins, as in IPVS).
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7000, dport: 8080, syn: true}))
	r.drain()
	if out := r.int.Sent(); len(out) != 0 || r.drops()["no_service"] == 0 {
		t.Fatalf("unmarked port: sent %d, drops %v", len(out), r.drops())
	}
	if st := r.dp.ServiceStats(1); st.Conns != 4 {
		t.Fatalf("fwmark service counted %d connections, want 4", st.Conns)
	}
}

// TestFWMarkPrefixOfVIPs: a service over every address of a /29 and every port; not
// persistent, so rr alternates, and the real servers' port (53) replaces the packet's;
// a TCP packet to the prefix has mark 9, which has no service: not ours.
func TestFWMarkPrefixOfVIPs(t *testing.T) {
	r := fwmRig(t, time.Hour)
	seen := map[netip.Addr]int{}
	for i, dst := range []string{"198.18.1.97", "198.18.1.98", "198.18.1.103", "198.18.1.100"} {
		d := netip.MustParseAddr(dst)
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: d, sport: 9000 + uint16(i), dport: 1000 + uint16(i), udp: true}))
		r.drain()
		out := r.int.Sent()
		if len(out) != 1 {
			t.Fatalf("%v: sent %d frames (drops %v)", d, len(out), r.drops())
		}
		info := check(t, out[0])
		seen[netip.AddrFrom16(info.Dst).Unmap()]++
		if info.DstPort != 53 {
			t.Fatalf("%v: real server port %d, want 53", d, info.DstPort)
		}
	}
	if seen[rs1] != 2 || seen[rs2] != 2 {
		t.Fatalf("rr over the prefix: %v", seen)
	}
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: netip.MustParseAddr("198.18.1.99"), sport: 9100, dport: 22, syn: true}))
	r.drain()
	if out := r.int.Sent(); len(out) != 0 {
		t.Fatal("a packet whose mark has no service was forwarded")
	}
}

func TestMarkLookupAllocs(t *testing.T) {
	r := fwmRig(t, time.Hour)
	snap := r.dp.Snapshot()
	d := a16(netip.MustParseAddr("198.18.1.98"))
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := snap.service(&d, 4000, packet.ProtoUDP); !ok {
			t.Fatal("no service")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	syn := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 443, syn: true})
	ack := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 443, ack: true, payload: make([]byte, 100)})
	r.ext.Inject(syn)
	r.w.poll()
	if n := testing.AllocsPerRun(200, func() { r.ext.Inject(ack); r.w.poll() }); n != 0 {
		t.Fatalf("%v allocations per packet of a fwmark connection", n)
	}
}

// TestFWMarkSync: a fwmark connection and its template go to the backup with the mark;
// the template as IPVS writes it (protocol IP, the mark as address, ports 0); the backup
// finds the service by the mark, without rules of its own.
func TestFWMarkSync(t *testing.T) {
	m := fwmRig(t, time.Hour)
	p := conntrack.SyncPolicy{Threshold: 0, Period: 1} // every packet in a synced state
	m.dp.SetSyncMaster(&p, false)
	m.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5555, dport: 443, syn: true}))
	m.drain()
	m.synced()
	m.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5555, dport: 443, ack: true}))
	m.drain()
	m.int.Sent()
	got := m.synced()
	if len(got) != 2 {
		t.Fatalf("queued %+v, want the connection and its template", got)
	}
	c, tpl := got[0], got[1]
	if c.FWMark != 1 || c.VAddr != a16(vip) || c.VPort != 443 || c.DPort != 443 || c.Template {
		t.Fatalf("connection %+v", c)
	}
	markAddr := a16(netip.MustParseAddr("0.0.0.1"))
	if !tpl.Template || tpl.FWMark != 1 || tpl.Proto != 0 || tpl.VAddr != markAddr || tpl.VPort != 0 || tpl.DPort != 0 || tpl.Client != a16(client) {
		t.Fatalf("template %+v", tpl)
	}
	// The backup has the services but no rules.
	b := newRig(t, "rr", 1, 1)
	snap := m.dp.Snapshot()
	bs, err := NewSnapshot(append([]Service(nil), snap.Services...))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.dp.Publish(bs); err != nil {
		t.Fatal(err)
	}
	c.Queued, tpl.Queued = 0, 0
	if err := b.dp.ApplySync(&c); err != nil {
		t.Fatal(err)
	}
	if err := b.dp.ApplySync(&tpl); err != nil {
		t.Fatal(err)
	}
	if b.dp.Conntrack().Len() != 1 || len(b.dp.PersistConns()) != 1 {
		t.Fatalf("backup: %d connections, templates %v", b.dp.Conntrack().Len(), b.dp.PersistConns())
	}
	// Without the mark, the same entry names no service of the backup (VIP:443 is none).
	c.FWMark = 0
	if err := b.dp.ApplySync(&c); err != ErrSyncNoService {
		t.Fatalf("unmarked entry: %v", err)
	}
}

// TestOnePacket: six datagrams from one client socket to an -o service with rr land 3
// and 3, each scheduled on its own, counted as six connections, and leave no entry; a
// real server's reply (no entry to translate it) is routed on unchanged, as the kernel
// routes it; a TCP connection of the same service is an ordinary one.
func TestOnePacket(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	old := r.dp.Snapshot()
	svcs := append([]Service(nil), old.Services...)
	for i := range svcs {
		svcs[i].OPS = true
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]int{}
	for i := 0; i < 6; i++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4000, dport: 80, udp: true, payload: []byte{byte(i)}}))
		r.drain()
		out := r.int.Sent()
		if len(out) != 1 {
			t.Fatalf("datagram %d: sent %d (drops %v)", i, len(out), r.drops())
		}
		info := check(t, out[0])
		seen[netip.AddrFrom16(info.Dst).Unmap()]++
	}
	if seen[rs1] != 3 || seen[rs2] != 3 {
		t.Fatalf("six datagrams of one socket went %v, want 3 and 3", seen)
	}
	if n := r.dp.Conntrack().Len(); n != 0 {
		t.Fatalf("%d connection entries left", n)
	}
	if st := r.dp.ServiceStats(17); st.Conns != 6 || st.InPkts != 6 {
		t.Fatalf("service stats %+v, want 6 connections and 6 packets", st)
	}
	r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 4000, udp: true, ttl: 64}))
	r.drain()
	back := r.ext.Sent()
	if len(back) != 1 {
		t.Fatalf("reply: sent %d (drops %v)", len(back), r.drops())
	}
	bi := check(t, back[0])
	if netip.AddrFrom16(bi.Src).Unmap() != rs1 || bi.SrcPort != 8080 || netip.AddrFrom16(bi.Dst).Unmap() != client || back[0][bi.L3Off+8] != 63 {
		t.Fatalf("reply %v:%d -> %v ttl %d: want it unchanged but for the TTL", netip.AddrFrom16(bi.Src).Unmap(), bi.SrcPort, netip.AddrFrom16(bi.Dst).Unmap(), back[0][bi.L3Off+8])
	}
	if ws, _ := r.dp.Stats(); ws[0].OPSReplies != 1 {
		t.Fatalf("ops replies counted %d", ws[0].OPSReplies)
	}
	// TCP: an entry as ever.
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4001, dport: 80, syn: true}))
	r.drain()
	r.int.Sent()
	if n := r.dp.Conntrack().Len(); n != 1 {
		t.Fatalf("TCP connection of an -o service: %d entries, want 1", n)
	}
	// Not an -o service's real server: a reply of no connection is dropped as before.
	r2 := newRig(t, "rr", 1, 1)
	r2.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 4000, udp: true}))
	r2.drain()
	if len(r2.ext.Sent()) != 0 || r2.drops()["no_reply_conn"] != 1 {
		t.Fatalf("reply without -o: drops %v", r2.drops())
	}
}

// TestOnePacketPersistent: with persistence the template keeps the client on one real
// server (ip_vs_sched_persist makes the template an ordinary entry), still no
// connection entry.
func TestOnePacketPersistent(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	old := r.dp.Snapshot()
	svcs := append([]Service(nil), old.Services...)
	for i := range svcs {
		svcs[i].OPS, svcs[i].Persist, svcs[i].PersistBits = true, int64(time.Hour), 128
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]int{}
	for i := 0; i < 6; i++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4000 + uint16(i), dport: 80, udp: true}))
		r.drain()
		for _, f := range r.int.Sent() {
			seen[netip.AddrFrom16(check(t, f).Dst).Unmap()]++
		}
	}
	if len(seen) != 1 || r.dp.Conntrack().Len() != 0 || len(r.dp.PersistConns()) != 1 {
		t.Fatalf("persistent -o: servers %v, %d entries, templates %v", seen, r.dp.Conntrack().Len(), r.dp.PersistConns())
	}
}

// BenchmarkForwardFWMark is BenchmarkForwardEstablished for a connection of a fwmark
// service (the mark looked up per packet) and, with OPS, for one-packet datagrams
// (scheduled per packet, no entry).
func BenchmarkForwardFWMark(b *testing.B) {
	for _, tc := range []struct {
		name string
		ops  bool
	}{{"fwmark-established", false}, {"ops-udp", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var r *rig
			var frame []byte
			if !tc.ops {
				r = fwmRig(b, time.Hour)
				r.ext.Inject(build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 443, syn: true}))
				r.w.poll()
				frame = build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 443, ack: true, payload: make([]byte, 18)})
			} else {
				r = newRig(b, "rr", 1, 1)
				svcs := append([]Service(nil), r.dp.Snapshot().Services...)
				for i := range svcs {
					svcs[i].OPS = true
				}
				snap, err := NewSnapshot(svcs)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.dp.Publish(snap); err != nil {
					b.Fatal(err)
				}
				frame = build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, udp: true, payload: make([]byte, 18)})
			}
			r.ext.OnTransmit = func([]byte) {}
			r.int.OnTransmit = func([]byte) {}
			b.ReportAllocs()
			b.ResetTimer()
			const batch = 32
			for i := 0; i < b.N; i += batch {
				for j := 0; j < batch; j++ {
					r.ext.Inject(frame)
				}
				r.w.poll()
			}
		})
	}
}
