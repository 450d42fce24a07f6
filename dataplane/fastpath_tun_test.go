package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// tunFamilies are the TUN layout's two families (newL2Rig): client, VIP, the director's
// address (the route's source) and the first real server.
var tunFamilies = []struct {
	name                 string
	client, vip, dir, rs netip.Addr
}{
	{"ipv4", l2Client, l2VIP, l2Dir, l2RS1},
	{"ipv6", l2Client6, l2VIP6, l2Dir6, l2RS16},
}

// TestFastPathTUNOffers: a TUN connection is offered in its one direction, as DR (TCP
// on the client's ACK — IPVS's input-only state table,
// intel-lab-lkp/linux net/netfilter/ipvs/ip_vs_proto_tcp.c tcp_states_dos/INPUT-ONLY —
// UDP from the second packet), with the tunnel's outer header: from the route's source
// address (the director's) to the real server, the MACs of the real server, the route's
// MTU; the entry's MTU is that less the outer header.
func TestFastPathTUNOffers(t *testing.T) {
	r := newL2Rig(t, conntrack.MethodTUN)
	withFast(r.dp)
	for _, c := range tunFamilies {
		t.Run(c.name, func(t *testing.T) {
			p := pkt{srcMAC: macClient, dstMAC: macDir, src: c.client, dst: c.vip, sport: 6000, dport: 80}
			q := openOffers(t, r, p)
			if len(q) != 1 || q[0].op != fastInstall || q[0].n != 1 {
				t.Fatalf("after the ACK: %+v, want one install of one direction", q)
			}
			d := q[0].dirs[0]
			wantL3 := uint16(0)
			if c.client.Is4() {
				wantL3 = bpf.FastTTLDelta
			}
			if d.key != fkey(c.client, c.vip, 6000, 80, 6) || !d.in || d.val.Action != bpf.FastTUN ||
				d.val.Addr != a16(c.dir) || d.val.Addr2 != a16(c.rs) || d.val.DMAC != macRS1 || d.val.SMAC != macDir ||
				d.val.Ifindex != ifL2 || d.val.CsumL3 != wantL3 || d.val.CsumL4 != 0 || d.mtu != 1500 {
				t.Fatalf("TUN direction %+v (route MTU %d), want from %v to %v via %v, MTU 1500", d.val, d.mtu, c.dir, c.rs, macRS1)
			}
			hl := uint16(packet.TunnelHeaderLen(4))
			if c.client.Is6() {
				hl = uint16(packet.TunnelHeaderLen(6))
			}
			if m := tunMTU(1500, d.mtu, d.val.Addr2, packet.Encap{}); m != 1500-hl {
				t.Fatalf("entry MTU %d, want %d", m, 1500-hl)
			}
			u := p
			u.udp, u.sport = true, 6001
			if q := secondOffers(t, r, u, u, "a UDP connection's first packet"); len(q) != 1 || q[0].dirs[0].key != fkey(c.client, c.vip, 6001, 80, 17) || q[0].dirs[0].val.Action != bpf.FastTUN {
				t.Fatalf("after the second UDP packet: %+v", q)
			}
		})
	}
	r.framesBack(t)
}

// TestTunMTU: the longest inner packet of a TUN entry: the smaller of the egress and
// route MTUs (0: unknown) less the outer header, 0 when nothing fits.
func TestTunMTU(t *testing.T) {
	v4, v6 := a16(l2RS1), a16(l2RS16)
	for _, c := range []struct {
		egress uint16
		route  uint32
		rs     [16]byte
		want   uint16
	}{
		{1500, 1500, v4, 1480}, {1500, 0, v4, 1480}, {1500, 1400, v4, 1380}, {9000, 1500, v6, 1460},
		{1500, 9000, v6, 1460}, {20, 0, v4, 0}, {40, 1500, v6, 0}, {0, 0, v4, 0},
	} {
		if got := tunMTU(c.egress, c.route, c.rs, packet.Encap{}); got != c.want {
			t.Errorf("tunMTU(%d, %d, %v) = %d, want %d", c.egress, c.route, netip.AddrFrom16(c.rs), got, c.want)
		}
	}
}

// TestFastPathTUNLikeSlowPath: the differential test of the two paths. The worker
// forwards a TUN connection's packet (the slow path: its frame is the reference) and
// offers the connection; the XDP program (BPF_PROG_TEST_RUN), given the entry the worker
// offered, must send the same packet's successor byte for byte as the worker sent it —
// except the IPv4 outer identification, which the model leaves free (the kernel's
// ip_select_ident; the program writes the entry's packet count) and its header checksum,
// recomputed here. A packet that would not fit the route's MTU once encapsulated is left
// to the worker, which answers it with fragmentation needed / Packet Too Big.
func TestFastPathTUNLikeSlowPath(t *testing.T) {
	needRoot(t)
	cls, err := bpf.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cls.Close() })
	if err := cls.EnableFastPath(64); err != nil {
		t.Fatal(err)
	}
	port, err := cls.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	r := newL2Rig(t, conntrack.MethodTUN)
	withFast(r.dp)
	var sent [][]byte
	r.eth.OnTransmit = func(b []byte) { sent = append(sent, bytes.Clone(b)) }
	run := func(t *testing.T, frame []byte) (uint32, []byte) {
		t.Helper()
		out := make([]byte, len(frame)+256)
		opts := &ebpf.RunOptions{Data: frame, DataOut: out} // no context: received on lo
		ret, err := port.Program().Run(opts)
		if err != nil {
			t.Fatalf("run the program: %v", err)
		}
		return ret, out[:len(opts.DataOut)]
	}
	for _, c := range tunFamilies {
		for _, udp := range []bool{false, true} {
			name := c.name + "/tcp"
			if udp {
				name = c.name + "/udp"
			}
			t.Run(name, func(t *testing.T) {
				p := pkt{srcMAC: macClient, dstMAC: macDir, src: c.client, dst: c.vip, sport: 7000, dport: 80, udp: udp,
					payload: bytes.Repeat([]byte("tun fast path "), 10)}
				if !udp {
					p.sport = 7001
					syn := p
					syn.syn, syn.payload = true, nil
					r.eth.Inject(build(t, syn))
					r.w.poll()
					p.ack = true
				} else {
					r.eth.Inject(build(t, p))
					r.w.poll()
				}
				requests(r.w)
				sent = sent[:0]
				in := build(t, p)
				r.eth.Inject(in)
				r.w.poll()
				q := requests(r.w)
				if len(sent) != 1 || len(q) != 1 || q[0].dirs[0].val.Action != bpf.FastTUN {
					t.Fatalf("the worker sent %d frames and queued %+v, want one frame and one TUN offer", len(sent), q)
				}
				d := q[0].dirs[0]
				// As fastPath.apply completes it; the test run receives on lo (ifindex 1):
				// XDP_TX when the entry's egress is the receiving interface.
				d.val.MTU = tunMTU(1500, d.mtu, d.val.Addr2, packet.Encap{})
				d.val.Ifindex = 1
				if _, err := cls.FastUpdate([]bpf.FastKey{d.key}, []bpf.FastVal{d.val}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cls.FastDelete([]bpf.FastKey{d.key}) })
				ret, out := run(t, in)
				if ret != 3 { // XDP_TX
					t.Fatalf("verdict %d, want XDP_TX", ret)
				}
				want := sent[0]
				if c.client.Is4() {
					want = bytes.Clone(want)
					o := packet.IPv4(want[packet.EthernetHeaderLen:])
					o.SetID(binary.BigEndian.Uint16(out[packet.EthernetHeaderLen+4:]))
					o.ComputeChecksum()
					if id := o.ID(); id != 0 {
						t.Errorf("outer identification %d, want 0 (the entry's packet count before the first packet)", id)
					}
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("the program sent\n% x\nthe worker\n% x", out, want)
				}

				// One byte over the entry's MTU: untouched, to the worker, which answers
				// with fragmentation needed (IPv4 with DF) / Packet Too Big.
				big := p
				hl := packet.TunnelHeaderLen(4)
				if c.client.Is6() {
					hl = packet.TunnelHeaderLen(6)
				}
				big.payload = make([]byte, 1500-hl+1-len(ipOf(t, in))+len(p.payload))
				bin := build(t, big)
				if c.client.Is4() {
					bin[packet.EthernetHeaderLen+6] |= 0x40 // DF
					packet.IPv4(bin[packet.EthernetHeaderLen:]).ComputeChecksum()
				}
				if n := len(ipOf(t, bin)); n != int(d.val.MTU)+1 {
					t.Fatalf("over-MTU packet of %d bytes, want %d", n, d.val.MTU+1)
				}
				ret, out = run(t, bin)
				if ret == 3 || ret == 4 || !bytes.Equal(out, bin) {
					t.Fatalf("over-MTU packet: verdict %d, frame changed %v; want it left to the worker", ret, !bytes.Equal(out, bin))
				}
				sent = sent[:0]
				r.eth.Inject(bin)
				r.w.poll()
				if len(sent) != 1 || !isICMPTooBig(sent[0]) {
					t.Fatalf("the worker answered the over-MTU packet with %d frames, want one fragmentation needed / Packet Too Big", len(sent))
				}
			})
		}
	}
	r.framesBack(t)
}

// ipOf returns frame's IP packet (untagged, without Ethernet padding).
func ipOf(t *testing.T, frame []byte) []byte {
	t.Helper()
	var info packet.Info
	if packet.Parse(frame, &info) != packet.ResultOK {
		t.Fatal("frame does not parse")
	}
	return frame[info.L3Off : int(info.L3Off)+int(info.L3Len)]
}

// isICMPTooBig: frame (untagged, no IPv4 options) is an ICMP fragmentation needed
// (type 3 code 4) or ICMPv6 Packet Too Big (type 2).
func isICMPTooBig(frame []byte) bool {
	ip := frame[packet.EthernetHeaderLen:]
	switch {
	case len(ip) >= 22 && ip[0]>>4 == 4 && ip[9] == 1:
		return ip[20] == 3 && ip[21] == 4
	case len(ip) >= 41 && ip[0]>>4 == 6 && ip[6] == 58:
		return ip[40] == 2
	}
	return false
}

// TestFastPathTUNOfferAllocs: forwarding a TUN packet and offering its connection
// allocates nothing.
func TestFastPathTUNOfferAllocs(t *testing.T) {
	r := newL2Rig(t, conntrack.MethodTUN)
	withFast(r.dp)
	r.eth.OnTransmit = func([]byte) {}
	p := pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80}
	syn := p
	syn.syn = true
	r.eth.Inject(build(t, syn))
	r.w.poll()
	p.ack, p.payload = true, make([]byte, 100)
	checkOfferAllocs(t, r, r.eth, build(t, p))
}

// TestFastPathTUNRouteChange: a TUN entry carries the route's source address and MTU, so
// a new FIB that changes either takes it out at the next sweep (the worker then
// encapsulates, with the new values, until it is offered again); a new FIB that changes
// neither leaves it.
func TestFastPathTUNRouteChange(t *testing.T) {
	needRoot(t)
	r := newL2Rig(t, conntrack.MethodTUN)
	f, cls := withFastMap(t, r, 64)
	neigh := map[NeighKey][6]byte{{Ifindex: ifL2, Addr: a16(l2Client)}: macClient,
		{Ifindex: ifL2, Addr: a16(l2RS1)}: macRS1, {Ifindex: ifL2, Addr: a16(l2RS2)}: macRS2}
	fib := func(mtu uint32, dir netip.Addr) *FIB {
		return NewFIBWithLinks(routes("198.18.0.0/24", ifL2, "fd00::/64", ifL2), neigh,
			[]Link{{Ifindex: ifL2, MTU: mtu, Addrs: []netip.Prefix{netip.PrefixFrom(l2VIP, 32), netip.PrefixFrom(dir, 24)}}})
	}
	r.dp.SetFIB(fib(1500, l2Dir))
	sport := uint16(42000)
	establish := func(t *testing.T) {
		t.Helper()
		p := pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: sport, dport: 80}
		syn := p
		syn.syn = true
		r.eth.Inject(build(t, syn))
		r.w.poll()
		p.ack = true
		r.eth.Inject(build(t, p))
		r.w.poll()
		f.drain(r.dp.now() + fastInstallDelay)
		k := fkey(l2Client, l2VIP, sport, 80, 6)
		var v bpf.FastVal
		if ok, err := cls.FastLookup(&k, &v); !ok || err != nil {
			t.Fatalf("TUN entry not installed: %v; stats %+v, drops %v", err, f.Stats(), nonzeroDrops(r.dp))
		}
		if v.Action != bpf.FastTUN || v.Addr != a16(l2Dir) || v.Addr2 != a16(l2RS1) && v.Addr2 != a16(l2RS2) || v.MTU == 0 || v.MTU > 1480 {
			t.Fatalf("TUN entry %+v, want from %v to a real server, MTU at most 1480", v, l2Dir)
		}
		sport++
	}
	for _, c := range []struct {
		name string
		fib  *FIB
		gone bool
	}{
		{"same routes, new FIB", fib(1500, l2Dir), false},
		{"route MTU 1400", fib(1400, l2Dir), true},
		{"another source address", fib(1400, netip.MustParseAddr("198.18.0.3")), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			establish(t)
			before := f.Stats()
			r.dp.SetFIB(c.fib)
			f.sweep(false)
			after := f.Stats()
			if gone := after.Removed > before.Removed; gone != c.gone || after.Entries != before.Entries-int(after.Removed-before.Removed) {
				t.Fatalf("stats %+v after %+v: entry removed %v, want %v", after, before, gone, c.gone)
			}
		})
	}
	r.framesBack(t)
}
