//go:build linux

package bpf

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/dataplane/packet"
)

// tunEntry is the FastTUN entry for packets of p, sent from the director's address
// outerSrc to the real server rs out of ifindex; mtu bounds the inner packet.
func tunEntry(p fpPkt, outerSrc, rs netip.Addr, ifindex int, mtu uint16) FastVal {
	v := FastVal{DMAC: mac6(macReal), SMAC: mac6(macDirOut), Ifindex: uint32(ifindex), Action: FastTUN, MTU: mtu,
		Addr: v4mapped(outerSrc), Addr2: v4mapped(rs), Cookie: 78}
	if p.src.Is4() {
		v.CsumL3 = FastTTLDelta
	}
	return v
}

// tunWant is the frame IPVS's ip_vs_tunnel_xmit (ip_vs_tunnel_xmit_v6) sends for p, built
// by gopacket (lengths and checksums computed from scratch): p with its TTL (hop limit)
// one less, inside an outer header from src to dst — IPv4: protocol 4, TOS and DF copied
// from the inner header, no MF or offset, TTL the inner's (decremented), identification
// id; IPv6: next header 41, traffic class and hop limit copied, flow label 0; an ECN field
// of CE becomes ECT(0) (include/net/inet_ecn.h INET_ECN_encapsulate) — the MACs
// towards the real server (intel-lab-lkp/linux net/netfilter/ipvs/ip_vs_xmit.c @ 05b49de5,
// ip_vs_tunnel_xmit and ip_vs_prepare_tunneled_skb; dataplane/golden_test.go's TUN rows
// model the same).
func tunWant(tb testing.TB, p fpPkt, src, dst netip.Addr, id uint16) []byte {
	tb.Helper()
	inner := p
	inner.ttl--
	ip := ipPacket(inner.frame(tb))
	if src.Is4() {
		o := &layers.IPv4{Version: 4, IHL: 5, TOS: ecnEncapsulated(p.tos), Id: id, TTL: inner.ttl, Protocol: layers.IPProtocolIPv4,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if p.df {
			o.Flags = layers.IPv4DontFragment
		}
		return serialize(tb, &layers.Ethernet{SrcMAC: macDirOut, DstMAC: macReal, EthernetType: layers.EthernetTypeIPv4}, o, gopacket.Payload(ip))
	}
	o := &layers.IPv6{Version: 6, TrafficClass: ecnEncapsulated(p.tos), HopLimit: inner.ttl, NextHeader: layers.IPProtocolIPv6,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	return serialize(tb, &layers.Ethernet{SrcMAC: macDirOut, DstMAC: macReal, EthernetType: layers.EthernetTypeIPv6}, o, gopacket.Payload(ip))
}

// ecnEncapsulated is the outer TOS (traffic class) the kernel's INET_ECN_encapsulate gives
// an inner one: DSCP and ECN copied, but CE (0b11) becomes ECT(0) (0b10), RFC 3168 9.1.1.
func ecnEncapsulated(inner uint8) uint8 {
	if inner&3 == 3 {
		return inner&^3 | 2
	}
	return inner
}

// ipPacket returns the IP packet of an untagged frame, without Ethernet padding.
func ipPacket(frame []byte) []byte {
	ip := frame[14:]
	if ip[0]>>4 == 4 {
		return ip[:int(ip[2])<<8|int(ip[3])]
	}
	return ip[:40+(int(ip[4])<<8|int(ip[5]))]
}

// padding returns the bytes of an untagged frame after its IP packet: the program leaves
// them where they were, after the inner packet (the outer length excludes them).
func padding(frame []byte) []byte { return frame[14+len(ipPacket(frame)):] }

// slowTunnel is what the dataplane's slow path (worker.tunnel) makes of frame in: the
// inner TTL decremented (packet.DecrementTTL), then the outer header of
// packet.PutTunnelHeader with identification id, MACs towards the real server.
func slowTunnel(tb testing.TB, in []byte, src, dst netip.Addr, id uint16) []byte {
	return slowEncap(tb, in, src, dst, id, packet.Encap{}, 0)
}

// slowEncap is slowTunnel with encapsulation enc (packet.PutEncapHeader; GUE from source
// port sport).
func slowEncap(tb testing.TB, in []byte, src, dst netip.Addr, id uint16, enc packet.Encap, sport uint16) []byte {
	tb.Helper()
	f := bytes.Clone(in)
	var info packet.Info
	if r := packet.Parse(f, &info); r != packet.ResultOK {
		tb.Fatalf("packet.Parse: %v", r)
	}
	if !packet.DecrementTTL(f, &info) {
		tb.Fatal("packet.DecrementTTL refused")
	}
	hl := enc.HeaderLen(info.Family)
	inner := f[info.L3Off : int(info.L3Off)+int(info.L3Len)]
	out := make([]byte, 14+hl+len(inner))
	copy(out[0:6], macReal)
	copy(out[6:12], macDirOut)
	copy(out[12:14], in[12:14])
	copy(out[14+hl:], inner)
	if !packet.PutEncapHeader(out[14:14+hl], out[14+hl:], info.Family, info.Family, v4mapped(src), v4mapped(dst), id, enc, sport) {
		tb.Fatal("packet.PutEncapHeader refused")
	}
	return out
}

// TestFastPathTUN runs the program (BPF_PROG_TEST_RUN) on frames whose flow has a TUN
// entry: the output is compared byte for byte with gopacket's frame of the encapsulated
// packet and with the slow path's (packet.DecrementTTL, packet.PutTunnelHeader), for
// IPv4 in IPv4 and IPv6 in IPv6, TCP and UDP, XDP_TX and redirect; the IPv4 outer
// identification is the entry's packet count, so a second packet of the flow carries the
// next one.
func TestFastPathTUN(t *testing.T) {
	h, p, xa, xb := fastRig(t, true)
	mk := func(udp bool, src, dst netip.Addr, sport, dport uint16, f func(*fpPkt)) fpPkt {
		q := fpBase(udp, src, dst, sport, dport)
		if f != nil {
			f(&q)
		}
		return q
	}
	cases := []struct {
		name     string
		in       fpPkt
		src, rs  netip.Addr
		egress   int
		flags    uint8
		verdict  uint32
		payloads []int // more packets of the flow after the first, by payload size
	}{
		{"tcp4 df tx", mk(false, cip4, vip4, 40000, 80, func(q *fpPkt) { q.df = true }), dir4, rip4, xa, 0, xdpTx, []int{1, 1400}},
		{"udp4 no df tos redirect", mk(true, cip4, vip4, 40001, 53, func(q *fpPkt) { q.tos = 0xb9 }), dir4, rip4, xb, 0, xdpRedirect, []int{7}},
		{"udp4 ttl 2 leaves 1", mk(true, cip4, vip4, 40002, 53, func(q *fpPkt) { q.ttl = 2; q.df = true }), dir4, rip4, xa, 0, xdpTx, nil},
		{"tcp6 tclass flow label tx", mk(false, cip6, vip6, 40003, 443, func(q *fpPkt) { q.tos = 0xb8; q.flow = 0x12345 }), dir6, rip6, xa, 0, xdpTx, []int{0}},
		{"tcp4 ECN CE", mk(false, cip4, vip4, 40008, 80, func(q *fpPkt) { q.tos = 0xbb; q.df = true }), dir4, rip4, xa, 0, xdpTx, nil},
		{"udp6 ECN CE", mk(true, cip6, vip6, 40009, 53, func(q *fpPkt) { q.tos = 0x2f }), dir6, rip6, xa, 0, xdpTx, nil},
		{"udp6 redirect", mk(true, cip6, vip6, 40004, 53, nil), dir6, rip6, xb, 0, xdpRedirect, nil},
		{"udp6 hop limit 2 leaves 1", mk(true, cip6, vip6, 40005, 53, func(q *fpPkt) { q.ttl = 2 }), dir6, rip6, xa, 0, xdpTx, nil},
		{"tcp4 same interface redirect", mk(false, cip4, vip4, 40006, 80, func(q *fpPkt) { q.df = true }), dir4, rip4, xa, FastRedirect, xdpRedirect, nil},
		{"small tcp4 ack", mk(false, cip4, vip4, 40007, 80, func(q *fpPkt) { q.payload = 0 }), dir4, rip4, xa, 0, xdpTx, nil},
		{"sctp4 data df tx", mk(false, cip4, vip4, 40010, 38412, func(q *fpPkt) { q.sctp, q.df = true, true }), dir4, rip4, xa, 0, xdpTx, []int{3}},
		{"sctp6 sack redirect", mk(false, cip6, vip6, 40011, 38412, func(q *fpPkt) { q.sctp, q.chunk = true, 3 }), dir6, rip6, xb, 0, xdpRedirect, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := fastKeyOf(c.in)
			v := tunEntry(c.in, c.src, c.rs, c.egress, 1480)
			v.Flags = c.flags
			if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{v}); err != nil {
				t.Fatalf("FastUpdate: %v", err)
			}
			t.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
			var bytesIn uint64
			for i, size := range append([]int{c.in.payload}, c.payloads...) {
				q := c.in
				q.payload = size
				in := q.frame(t)
				bytesIn += uint64(len(ipPacket(in)))
				ret, out, slot := runFast(t, p, in, xa)
				if ret != c.verdict || slot != statFastPathTx {
					t.Fatalf("packet %d: verdict %d counter %d, want %d and fastpath_tx (%d)", i, ret, slot, c.verdict, statFastPathTx)
				}
				id := uint16(0)
				if c.src.Is4() {
					id = uint16(i) // the entry's packet count before this packet
				}
				pad := padding(in)
				if want := append(tunWant(t, q, c.src, c.rs, id), pad...); !bytes.Equal(out, want) {
					t.Fatalf("packet %d: output frame\n% x\nwant (gopacket)\n% x", i, out, want)
				}
				if slow := append(slowTunnel(t, in, c.src, c.rs, id), pad...); !bytes.Equal(out, slow) {
					t.Fatalf("packet %d: output frame\n% x\nwant (slow path)\n% x", i, out, slow)
				}
			}
			var got FastVal
			if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil {
				t.Fatalf("FastLookup: %v %v", ok, err)
			}
			n := uint64(1 + len(c.payloads))
			if got.Packets != n || got.Bytes != bytesIn || got.LastSeen == 0 || got.Cookie != 78 {
				t.Fatalf("entry counters: packets %d bytes %d last seen %d cookie %d, want %d, %d (the inner IP bytes), set, 78",
					got.Packets, got.Bytes, got.LastSeen, got.Cookie, n, bytesIn)
			}
		})
	}
}

// TestFastPathTUNEncap runs the program on frames whose flow has a TUN entry with a GUE
// or GRE tunnel, with and without its checksum: the output is byte for byte the slow
// path's (packet.DecrementTTL, packet.PutEncapHeader, which sums the whole inner packet;
// the entry's GUE source port; packet's tests hold PutEncapHeader to gopacket's frames of
// IPVS's headers), IPv4 and IPv6, TCP and UDP, for the flow's first and later packets
// (the IPv4 identification is the entry's packet count), an ECN CE inner packet among
// them. With a checksum the program takes no SCTP packet (its CRC is no one's complement
// sum to take from the headers) and no UDP one without checksum: those go to the
// dataplane untouched.
func TestFastPathTUNEncap(t *testing.T) {
	h, p, xa, _ := fastRig(t, true)
	const sport = 51234
	for _, enc := range []packet.Encap{{Type: packet.EncapGUE, Port: 6080}, {Type: packet.EncapGRE},
		{Type: packet.EncapGUE, Port: 6080, Csum: true}, {Type: packet.EncapGRE, Csum: true}} {
		for _, c := range []struct {
			name    string
			in      fpPkt
			src, rs netip.Addr
		}{
			{"tcp4", fpPkt{src: cip4, dst: vip4, sport: 42000, dport: 80, df: true, payload: 100}, dir4, rip4},
			{"udp4 ECN CE", fpPkt{udp: true, src: cip4, dst: vip4, sport: 42001, dport: 53, tos: 0xbb, payload: 33}, dir4, rip4},
			{"tcp6", fpPkt{src: cip6, dst: vip6, sport: 42002, dport: 443, tos: 0xb8, payload: 100}, dir6, rip6},
			{"udp6", fpPkt{udp: true, src: cip6, dst: vip6, sport: 42003, dport: 53, payload: 7}, dir6, rip6},
			{"sctp4 heartbeat", fpPkt{sctp: true, chunk: 4, src: cip4, dst: vip4, sport: 42004, dport: 3868, df: true, payload: 40}, dir4, rip4},
			{"udp4 without checksum", fpPkt{udp: true, noUDPCsum: true, src: cip4, dst: vip4, sport: 42005, dport: 53, payload: 20}, dir4, rip4},
			{"tcp4 long", fpPkt{src: cip4, dst: vip4, sport: 42006, dport: 80, payload: 1300}, dir4, rip4},
			{"udp6 long, odd", fpPkt{udp: true, src: cip6, dst: vip6, sport: 42007, dport: 53, payload: 1201}, dir6, rip6},
		} {
			name := enc.Type.String()
			if enc.Csum {
				name += "-csum"
			}
			t.Run(name+"/"+c.name, func(t *testing.T) {
				in := fpBase(c.in.udp, c.in.src, c.in.dst, c.in.sport, c.in.dport)
				in.df, in.tos, in.payload, in.sctp, in.chunk, in.noUDPCsum = c.in.df, c.in.tos, c.in.payload, c.in.sctp, c.in.chunk, c.in.noUDPCsum
				k := fastKeyOf(in)
				v := tunEntry(in, c.src, c.rs, xa, 1400)
				if enc.Type == packet.EncapGUE {
					v.Tun = FastTunGUE
					v.Port, v.Port2 = [2]byte{6080 >> 8, 6080 & 0xff}, [2]byte{sport >> 8, sport & 0xff}
				} else {
					v.Tun = FastTunGRE
				}
				if enc.Csum {
					v.Flags |= FastTunCsum
				}
				if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{v}); err != nil {
					t.Fatalf("FastUpdate: %v", err)
				}
				t.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
				if enc.Csum && (in.sctp || in.noUDPCsum) {
					f := in.frame(t)
					ret, out, slot := runFast(t, p, f, xa)
					leftToSlowPath(t, h, &k, f, out, ret, slot)
					return
				}
				for i := range 3 {
					f := in.frame(t)
					ret, out, slot := runFast(t, p, f, xa)
					if ret != xdpTx || slot != statFastPathTx {
						t.Fatalf("packet %d: verdict %d counter %d, want XDP_TX and fastpath_tx", i, ret, slot)
					}
					id := uint16(0)
					if c.src.Is4() {
						id = uint16(i)
					}
					if want := append(slowEncap(t, f, c.src, c.rs, id, enc, sport), padding(f)...); !bytes.Equal(out, want) {
						t.Fatalf("packet %d: output frame\n% x\nwant (slow path)\n% x", i, out, want)
					}
				}
			})
		}
	}
}

// TestFastPathTUNSlow: a packet of a TUN flow that would not fit once encapsulated (the
// inner packet longer than the entry's MTU, the egress MTU less the outer header) goes,
// untouched, where it would without the fast path — to the dataplane, which answers with
// fragmentation needed / Packet Too Big — and so do the other packets the dataplane must
// see (TTL 1, SYN); one byte less than the MTU is encapsulated.
func TestFastPathTUNSlow(t *testing.T) {
	h, p, xa, _ := fastRig(t, false)
	for _, c := range []struct {
		name    string
		in      fpPkt
		src, rs netip.Addr
		mtu     uint16 // relative to the packet's IP length
		fast    bool
	}{
		{"over mtu v4", fpPkt{src: cip4, dst: vip4, sport: 41000, dport: 80, df: true, payload: 1400}, dir4, rip4, 1, false},
		{"over mtu v6", fpPkt{udp: true, src: cip6, dst: vip6, sport: 41001, dport: 53, payload: 1400}, dir6, rip6, 1, false},
		{"at mtu v4", fpPkt{src: cip4, dst: vip4, sport: 41002, dport: 80, df: true, payload: 1400}, dir4, rip4, 0, true},
		{"at mtu v6", fpPkt{udp: true, src: cip6, dst: vip6, sport: 41003, dport: 53, payload: 1400}, dir6, rip6, 0, true},
		{"ttl 1", fpPkt{src: cip4, dst: vip4, sport: 41004, dport: 80, ttl: 1, payload: 10}, dir4, rip4, 0, false},
		{"hop limit 1", fpPkt{udp: true, src: cip6, dst: vip6, sport: 41005, dport: 53, ttl: 1, payload: 10}, dir6, rip6, 0, false},
		{"syn", fpPkt{src: cip4, dst: vip4, sport: 41006, dport: 80, syn: true}, dir4, rip4, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := c.in
			q.dmac, q.smac = macDirIn, macClient
			if q.ttl == 0 {
				q.ttl = 64
			}
			in := q.frame(t)
			l3len := len(in) - 14
			k := fastKeyOf(q)
			if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{tunEntry(q, c.src, c.rs, xa, uint16(l3len)-uint16(c.mtu))}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
			ret, out, slot := runFast(t, p, in, xa)
			if c.fast {
				if ret != xdpTx || slot != statFastPathTx {
					t.Fatalf("verdict %d counter %d, want XDP_TX and fastpath_tx", ret, slot)
				}
				if want := tunWant(t, q, c.src, c.rs, 0); !bytes.Equal(out, want) {
					t.Fatalf("output frame\n% x\nwant\n% x", out, want)
				}
				return
			}
			leftToSlowPath(t, h, &k, in, out, ret, slot)
		})
	}
}

// TestFastPathTUNCsumBadInner: with a tunnel checksum the program takes the inner
// packet's sum from its headers, which holds only when the inner checksum is right. A
// segment whose checksum is wrong leaves with a wrong outer checksum as well: the frame
// is the slow path's but for those two bytes (the slow path sums the packet, so its
// outer checksum is right and the inner one wrong). Either way the real server drops the
// packet, at the tunnel here, at TCP there.
func TestFastPathTUNCsumBadInner(t *testing.T) {
	h, p, xa, _ := fastRig(t, true)
	const sport = 51234
	for _, enc := range []packet.Encap{{Type: packet.EncapGUE, Port: 6080, Csum: true}, {Type: packet.EncapGRE, Csum: true}} {
		t.Run(enc.Type.String(), func(t *testing.T) {
			in := fpBase(false, cip4, vip4, 42100, 80)
			k := fastKeyOf(in)
			v := tunEntry(in, dir4, rip4, xa, 1400)
			v.Tun, v.Flags = FastTunGRE, FastTunCsum
			ck := 14 + 20 + 4 // the outer GRE checksum
			if enc.Type == packet.EncapGUE {
				v.Tun = FastTunGUE
				v.Port, v.Port2 = [2]byte{6080 >> 8, 6080 & 0xff}, [2]byte{sport >> 8, sport & 0xff}
				ck = 14 + 20 + 6 // the outer UDP checksum
			}
			if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{v}); err != nil {
				t.Fatalf("FastUpdate: %v", err)
			}
			t.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
			f := in.frame(t)
			f[14+20+16] ^= 0x5a // the inner TCP checksum
			ret, out, slot := runFast(t, p, f, xa)
			if ret != xdpTx || slot != statFastPathTx {
				t.Fatalf("verdict %d counter %d, want XDP_TX and fastpath_tx", ret, slot)
			}
			slow := append(slowEncap(t, f, dir4, rip4, 0, enc, sport), padding(f)...)
			if len(out) != len(slow) || out[ck] == slow[ck] && out[ck+1] == slow[ck+1] {
				t.Fatalf("outer checksum %x, the slow path's %x: want them to differ", out[ck:ck+2], slow[ck:ck+2])
			}
			out[ck], out[ck+1] = slow[ck], slow[ck+1]
			if !bytes.Equal(out, slow) {
				t.Fatalf("beyond the outer checksum, output frame\n% x\nwant (slow path)\n% x", out, slow)
			}
		})
	}
}

// BenchmarkFastPathTUNProgram: the program's time per TUN packet the fast path sends (TCP
// over IPv4, 1000 bytes of payload): IPIP, and GUE and GRE without and with the tunnel's
// checksum (taken from the inner packet's headers, inner_sum). A TUN rewrite pushes a
// header, so the runs cannot repeat on one buffer: each is a BPF_PROG_TEST_RUN of its own
// on a fresh copy of the frame, and ns/pkt is the mean of the kernel-measured durations
// (the system call's own cost left out). XDP_TX on lo, the test run's interface.
func BenchmarkFastPathTUNProgram(b *testing.B) {
	h := newHarness(b)
	p := fastPort(b, h)
	in := fpPkt{src: cip4, dst: vip4, sport: 43000, dport: 80, ttl: 64, dmac: macDirIn, smac: macClient, payload: 1000}
	frame := in.frame(b)
	for _, c := range []struct {
		name string
		tun  uint16
		csum bool
	}{{"ipip", FastTunIPIP, false}, {"gue", FastTunGUE, false}, {"gue-csum", FastTunGUE, true}, {"gre", FastTunGRE, false}, {"gre-csum", FastTunGRE, true}} {
		b.Run(c.name, func(b *testing.B) {
			v := tunEntry(in, dir4, rip4, 1, 1400)
			v.Tun = c.tun
			if c.tun == FastTunGUE {
				v.Port, v.Port2 = [2]byte{6080 >> 8, 6080 & 0xff}, [2]byte{51234 >> 8, 51234 & 0xff}
			}
			if c.csum {
				v.Flags |= FastTunCsum
			}
			k := fastKeyOf(in)
			if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{v}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
			var total time.Duration
			for b.Loop() {
				ret, d, err := p.Program().Benchmark(frame, 1, nil)
				if err != nil || ret != xdpTx {
					b.Fatalf("verdict %d (%v), want XDP_TX", ret, err)
				}
				total += d
			}
			var got FastVal
			if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil || got.Packets != uint64(b.N) {
				b.Fatalf("the entry sent %d packets of %d (%v %v)", got.Packets, b.N, ok, err)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}
