//go:build linux

package bpf

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/dataplane/packet"
)

// XDP_TX (enum xdp_action).
const xdpTx = 3

// fpPkt describes a packet of a fast-path test: built with gopacket, which computes every
// checksum from scratch (the reference for the program's incremental updates).
type fpPkt struct {
	udp           bool
	src, dst      netip.Addr
	sport, dport  uint16
	ttl           uint8
	dmac, smac    net.HardwareAddr
	syn, fin, rst bool
	mf            bool // IPv4 more-fragments (a first fragment)
	vlan          bool
	payload       int
	noUDPCsum     bool   // IPv4 UDP without checksum (0)
	tos           uint8  // IPv4 TOS / IPv6 traffic class
	df            bool   // IPv4 don't fragment
	flow          uint32 // IPv6 flow label
	sctp          bool   // an SCTP packet (not TCP or UDP) of one chunk of type chunk
	chunk         uint8
}

func (p fpPkt) frame(tb testing.TB) []byte {
	tb.Helper()
	proto := layers.IPProtocolTCP
	if p.udp {
		proto = layers.IPProtocolUDP
	}
	if p.sctp {
		proto = layers.IPProtocolSCTP
	}
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	et := layers.EthernetTypeIPv4
	if p.src.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: p.ttl, Protocol: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), Id: 0x1234}
		if p.mf {
			v4.Flags = layers.IPv4MoreFragments
		}
		if p.df {
			v4.Flags |= layers.IPv4DontFragment
		}
		v4.TOS = p.tos
		ip, nl = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: p.ttl, NextHeader: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(),
			TrafficClass: p.tos, FlowLabel: p.flow}
		ip, nl, et = v6, v6, layers.EthernetTypeIPv6
	}
	var ls []gopacket.SerializableLayer
	if p.vlan {
		ls = append(ls, &layers.Ethernet{SrcMAC: p.smac, DstMAC: p.dmac, EthernetType: layers.EthernetTypeDot1Q}, &layers.Dot1Q{VLANIdentifier: 7, Type: et})
	} else {
		ls = append(ls, &layers.Ethernet{SrcMAC: p.smac, DstMAC: p.dmac, EthernetType: et})
	}
	ls = append(ls, ip)
	pl := make([]byte, p.payload)
	for i := range pl {
		pl[i] = byte(i*7 + 3)
	}
	if p.sctp {
		// The common header (gopacket sums the CRC32c over what follows it too), then one
		// chunk: type, flags, length, the payload padded to 4 bytes.
		ch := []byte{p.chunk, 0, byte((4 + len(pl)) >> 8), byte(4 + len(pl))}
		ch = append(ch, pl...)
		for len(ch)%4 != 0 {
			ch = append(ch, 0)
		}
		ls = append(ls, &layers.SCTP{SrcPort: layers.SCTPPort(p.sport), DstPort: layers.SCTPPort(p.dport), VerificationTag: 0x11223344}, gopacket.Payload(ch))
		return serialize(tb, ls...)
	}
	if p.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		if err := u.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	} else {
		t := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), ACK: true, PSH: p.payload > 0,
			SYN: p.syn, FIN: p.fin, RST: p.rst, Seq: 0x01020304, Ack: 0x0a0b0c0d, Window: 512}
		if err := t.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, t)
	}
	ls = append(ls, gopacket.Payload(pl))
	b := serialize(tb, ls...)
	if p.udp && p.noUDPCsum && p.src.Is4() {
		l4 := 14 + 20
		b[l4+6], b[l4+7] = 0, 0
	}
	return b
}

var (
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0c}
	macDirIn  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xd1}
	macDirOut = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xd2}
	macReal   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0e}
)

func mac6(m net.HardwareAddr) (a [6]byte) { copy(a[:], m); return a }

// fastKeyOf is the map key of a packet p.
func fastKeyOf(p fpPkt) FastKey {
	k := FastKey{Src: p.src.As16(), Dst: p.dst.As16(), Proto: 6}
	if p.src.Is4() {
		k.Src, k.Dst = netip.AddrFrom16(p.src.As16()).As16(), netip.AddrFrom16(p.dst.As16()).As16()
		k.Src = v4mapped(p.src)
		k.Dst = v4mapped(p.dst)
	}
	if p.udp {
		k.Proto = 17
	}
	if p.sctp {
		k.Proto = 132
	}
	k.SPort = [2]byte{byte(p.sport >> 8), byte(p.sport)}
	k.DPort = [2]byte{byte(p.dport >> 8), byte(p.dport)}
	return k
}

func v4mapped(a netip.Addr) [16]byte {
	if a.Is4() {
		return netip.AddrFrom16(netip.AddrFrom4(a.As4()).As16()).As16()
	}
	return a.As16()
}

// fastEntry builds the entry that rewrites p as action says: the new address and port
// go where action puts them; MACs towards the next hop.
func fastEntry(p fpPkt, action uint8, addr netip.Addr, port uint16, ifindex int, mtu uint16) FastVal {
	v := FastVal{DMAC: mac6(macReal), SMAC: mac6(macDirOut), Ifindex: uint32(ifindex), Action: action, MTU: mtu, Cookie: 77}
	if action == FastDR {
		if p.src.Is4() {
			v.CsumL3 = FastTTLDelta
		}
		return v
	}
	v.Addr = v4mapped(addr)
	v.Port = [2]byte{byte(port >> 8), byte(port)}
	family := uint8(6)
	if p.src.Is4() {
		family = 4
	}
	old, oldPort := v4mapped(p.dst), p.dport
	if action == FastNATSrc {
		old, oldPort = v4mapped(p.src), p.sport
	}
	v.CsumL3, v.CsumL4 = FastDeltas(family, old, v.Addr, oldPort, port, true)
	sctpTerm(&v, p)
	return v
}

// sctpTerm sets v.CRC for packet in when it is SCTP: the term of its ports' change as
// v's action rewrites them (packet.SCTPPortsTerm; the dataplane's). The frames the tests
// compare with have their CRC32c computed from scratch by gopacket.
func sctpTerm(v *FastVal, in fpPkt) {
	if !in.sctp {
		return
	}
	sp, dp := in.sport, in.dport
	port := uint16(v.Port[0])<<8 | uint16(v.Port[1])
	switch v.Action {
	case FastNATDst:
		dp = port
	case FastNATSrc:
		sp = port
	case FastFullNAT:
		sp, dp = port, uint16(v.Port2[0])<<8|uint16(v.Port2[1])
	default:
		return
	}
	v.CRC = packet.SCTPPortsTerm(uint32(in.sport)<<16|uint32(in.dport), uint32(sp)<<16|uint32(dp))
}

// TestFastPathRewrite runs the program (BPF_PROG_TEST_RUN) on frames whose flow has a
// fastpath entry and compares the output frame, byte for byte, with the frame gopacket
// builds for the rewritten packet (checksums computed from scratch), and the verdict
// with XDP_TX (same interface) or XDP_REDIRECT (the other one, through tx_ports).
func TestFastPathRewrite(t *testing.T) {
	h, p, xa, xb := fastRig(t, true)
	base := fpBase
	type tc struct {
		name    string
		in      fpPkt
		action  uint8
		addr    netip.Addr
		port    uint16
		egress  int
		verdict uint32
		flags   uint8
	}
	cases := []tc{
		{"nat request tcp4 tx", base(false, cip4, vip4, 40000, 80), FastNATDst, rip4, 8080, xa, xdpTx, 0},
		{"nat reply tcp4 redirect", base(false, rip4, cip4, 8080, 40000), FastNATSrc, vip4, 80, xb, xdpRedirect, 0},
		{"nat request udp4 redirect", base(true, cip4, vip4, 40001, 53), FastNATDst, rip4, 5353, xb, xdpRedirect, 0},
		{"nat reply udp4 tx", base(true, rip4, cip4, 5353, 40001), FastNATSrc, vip4, 53, xa, xdpTx, 0},
		{"nat request tcp6 redirect", base(false, cip6, vip6, 40002, 443), FastNATDst, rip6, 8080, xb, xdpRedirect, 0},
		{"nat reply tcp6 tx", base(false, rip6, cip6, 8080, 40002), FastNATSrc, vip6, 443, xa, xdpTx, 0},
		{"nat request udp6 tx", base(true, cip6, vip6, 40003, 53), FastNATDst, rip6, 5353, xa, xdpTx, 0},
		{"nat reply udp6 redirect", base(true, rip6, cip6, 5353, 40003), FastNATSrc, vip6, 53, xb, xdpRedirect, 0},
		{"dr tcp4 tx", base(false, cip4, vip4, 40004, 80), FastDR, netip.Addr{}, 0, xa, xdpTx, 0},
		{"dr udp6 redirect", base(true, cip6, vip6, 40005, 53), FastDR, netip.Addr{}, 0, xb, xdpRedirect, 0},
		{"nat ttl 2 leaves with 1", func() fpPkt { q := base(false, cip4, vip4, 40006, 80); q.ttl = 2; return q }(), FastNATDst, rip4, 8080, xa, xdpTx, 0},
		{"dr ttl 2 leaves with 1", func() fpPkt { q := base(false, cip4, vip4, 40007, 80); q.ttl = 2; return q }(), FastDR, netip.Addr{}, 0, xa, xdpTx, 0},
		{"checksum wraps", base(true, netip.MustParseAddr("255.255.255.254"), vip4, 65535, 53), FastNATDst, netip.MustParseAddr("0.0.0.1"), 1, xa, xdpTx, 0},
		// A veth: back out of the same interface by redirect, not XDP_TX.
		{"dr same interface redirect", base(false, cip4, vip4, 40008, 80), FastDR, netip.Addr{}, 0, xa, xdpRedirect, FastRedirect},
		{"nat same interface redirect", base(true, cip6, vip6, 40009, 53), FastNATDst, rip6, 5353, xa, xdpRedirect, FastRedirect},
		// SCTP, DR: the chunks that leave an established association as it is.
		{"dr sctp4 data tx", sctpPkt(cip4, vip4, 40010, 38412, 0), FastDR, netip.Addr{}, 0, xa, xdpTx, 0},
		{"dr sctp6 sack redirect", sctpPkt(cip6, vip6, 40011, 38412, 3), FastDR, netip.Addr{}, 0, xb, xdpRedirect, 0},
		{"dr sctp4 heartbeat", sctpPkt(cip4, vip4, 40012, 3868, 4), FastDR, netip.Addr{}, 0, xa, xdpTx, 0},
		{"dr sctp6 heartbeat ack", sctpPkt(cip6, vip6, 40013, 3868, 5), FastDR, netip.Addr{}, 0, xa, xdpTx, 0},
		// SCTP, NAT: the ports change, and with them the CRC32c (the high table of
		// powers too: a packet over 260 bytes).
		{"nat request sctp4 data tx", sctpPkt(cip4, vip4, 40014, 38412, 0), FastNATDst, rip4, 9000, xa, xdpTx, 0},
		{"nat reply sctp4 sack redirect", sctpPkt(rip4, cip4, 9000, 40014, 3), FastNATSrc, vip4, 38412, xb, xdpRedirect, 0},
		{"nat request sctp6 heartbeat redirect", sctpPkt(cip6, vip6, 40015, 3868, 4), FastNATDst, rip6, 3868, xb, xdpRedirect, 0},
		{"nat reply sctp6 data tx", sctpPkt(rip6, cip6, 3869, 40015, 0), FastNATSrc, vip6, 3868, xa, xdpTx, 0},
		{"nat request sctp4 1300 bytes", func() fpPkt { q := sctpPkt(cip4, vip4, 40016, 38412, 0); q.payload = 1300; return q }(), FastNATDst, rip4, 1, xa, xdpTx, 0},
		{"nat reply sctp6 1400 bytes", func() fpPkt { q := sctpPkt(rip6, cip6, 65535, 40017, 0); q.payload = 1401; return q }(), FastNATSrc, vip6, 38412, xa, xdpTx, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in.frame(t)
			v := fastEntry(c.in, c.action, c.addr, c.port, c.egress, 1500)
			v.Flags = c.flags
			k := setFast(t, h, c.in, v)
			// The reference: the packet as the dataplane's slow path would send it.
			want := c.in
			want.dmac, want.smac = macReal, macDirOut
			switch c.action {
			case FastNATDst:
				want.dst, want.dport, want.ttl = c.addr, c.port, c.in.ttl-1
			case FastNATSrc:
				want.src, want.sport, want.ttl = c.addr, c.port, c.in.ttl-1
			case FastDR:
				want.ttl = c.in.ttl - 1 // as IPVS's decrement_ttl, in DR too
			}
			ret, out, slot := runFast(t, p, in, xa)
			if ret != c.verdict || slot != statFastPathTx {
				t.Fatalf("verdict %d counter %d, want %d and fastpath_tx (%d)", ret, slot, c.verdict, statFastPathTx)
			}
			if exp := want.frame(t); !bytes.Equal(out, exp) {
				t.Fatalf("output frame\n% x\nwant\n% x", out, exp)
			}
			var got FastVal
			if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil {
				t.Fatalf("FastLookup: %v %v", ok, err)
			}
			l3len := uint64(len(in) - 14)
			if got.Packets != 1 || got.Bytes != l3len || got.LastSeen == 0 || got.Cookie != 77 {
				t.Fatalf("entry counters: packets %d bytes %d last seen %d cookie %d, want 1, %d, set, 77", got.Packets, got.Bytes, got.LastSeen, got.Cookie, l3len)
			}
		})
	}
}

// TestFastPathSCTPBadCRC: an SCTP packet whose CRC32c is wrong leaves the NAT fast path
// as wrong as it came (the same bits off), as the dataplane's packet.SetSCTPPorts keeps
// it, so the real server drops it as it would have without the director. A program that
// computed the CRC afresh would make it look sound.
func TestFastPathSCTPBadCRC(t *testing.T) {
	h, p, xa, _ := fastRig(t, false)
	for _, c := range []struct {
		name string
		in   fpPkt
	}{
		{"sctp4", sctpPkt(cip4, vip4, 42000, 38412, 0)},
		{"sctp6", func() fpPkt { q := sctpPkt(cip6, vip6, 42001, 38412, 0); q.payload = 700; return q }()},
	} {
		t.Run(c.name, func(t *testing.T) {
			rip := rip4
			if c.in.src.Is6() {
				rip = rip6
			}
			setFast(t, h, c.in, fastEntry(c.in, FastNATDst, rip, 2905, xa, 1500))
			frame := c.in.frame(t)
			ck := len(frame) - (len(frame) - 14 - ipHeaderLen(c.in)) + 8
			frame[ck] ^= 0x40
			frame[ck+3] ^= 0x01
			ret, out, slot := runFast(t, p, frame, xa)
			if ret != xdpTx || slot != statFastPathTx {
				t.Fatalf("verdict %d counter %d, want XDP_TX and fastpath_tx", ret, slot)
			}
			want := c.in
			want.dst, want.dport, want.ttl, want.dmac, want.smac = rip, 2905, 63, macReal, macDirOut
			exp := want.frame(t)
			exp[ck] ^= 0x40
			exp[ck+3] ^= 0x01
			if !bytes.Equal(out, exp) {
				t.Fatalf("output frame\n% x\nwant (the same CRC bits off)\n% x", out, exp)
			}
		})
	}
}

// ipHeaderLen is the IP header length of the frames fpPkt builds (no options, no
// extension headers).
func ipHeaderLen(p fpPkt) int {
	if p.src.Is4() {
		return 20
	}
	return 40
}

// TestFastPathUDPNoChecksum: an IPv4 UDP packet without checksum keeps none, as the slow
// path's packet.RewriteDst does (RFC 768: zero means none).
func TestFastPathUDPNoChecksum(t *testing.T) {
	h, p, xa, _ := fastRig(t, false)
	in := fpPkt{udp: true, src: cip4, dst: vip4, sport: 1000, dport: 53, ttl: 64, dmac: macDirIn, smac: macClient, payload: 9, noUDPCsum: true}
	k := fastKeyOf(in)
	if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{fastEntry(in, FastNATDst, rip4, 5353, xa, 1500)}); err != nil {
		t.Fatal(err)
	}
	ret, out, slot := runFast(t, p, in.frame(t), xa)
	if ret != xdpTx || slot != statFastPathTx {
		t.Fatalf("verdict %d counter %d", ret, slot)
	}
	want := in
	want.dst, want.dport, want.ttl, want.dmac, want.smac = rip4, 5353, 63, macReal, macDirOut
	if exp := want.frame(t); !bytes.Equal(out, exp) {
		t.Fatalf("output frame\n% x\nwant\n% x", out, exp)
	}
}

// TestFastPathSlow: the packets the dataplane must see are not touched by the fast path
// even though their flow has an entry: SYN, FIN, RST, TTL 1 (NAT), a first fragment, a
// VLAN tag, longer than the entry's MTU, an egress interface missing from tx_ports, and
// a flow without entry. Each goes where it would without the fast path (the reference
// model of classify_test.go) and leaves the entry's counters alone.
func TestFastPathSlow(t *testing.T) {
	h, p, xa, xb := fastRig(t, false) // xb is not in tx_ports
	mk := func(f func(*fpPkt)) fpPkt {
		q := fpPkt{src: cip4, dst: vip4, sport: 41000, dport: 80, ttl: 64, dmac: macDirIn, smac: macClient, payload: 20}
		f(&q)
		return q
	}
	cases := []struct {
		name   string
		in     fpPkt
		egress int
		mtu    uint16
		noKey  bool
		action uint8
	}{
		{"syn", mk(func(q *fpPkt) { q.syn = true }), xa, 1500, false, FastNATDst},
		{"fin", mk(func(q *fpPkt) { q.fin = true }), xa, 1500, false, FastNATDst},
		{"rst", mk(func(q *fpPkt) { q.rst = true }), xa, 1500, false, FastNATDst},
		{"ttl 1", mk(func(q *fpPkt) { q.ttl = 1 }), xa, 1500, false, FastNATDst},
		{"hop limit 1", mk(func(q *fpPkt) { q.ttl = 1; q.src, q.dst, q.dport = cip6, vip6, 443 }), xa, 1500, false, FastNATDst},
		{"dr ttl 1", mk(func(q *fpPkt) { q.ttl = 1 }), xa, 1500, false, FastDR},
		{"dr hop limit 1", mk(func(q *fpPkt) { q.ttl = 1; q.src, q.dst, q.dport = cip6, vip6, 443 }), xa, 1500, false, FastDR},
		{"first fragment", mk(func(q *fpPkt) { q.mf = true }), xa, 1500, false, FastNATDst},
		{"vlan", mk(func(q *fpPkt) { q.vlan = true }), xa, 1500, false, FastNATDst},
		{"over mtu", mk(func(q *fpPkt) { q.payload = 200 }), xa, 200, false, FastNATDst},
		{"egress not in tx_ports", mk(func(*fpPkt) {}), xb, 1500, false, FastNATDst},
		{"no entry", mk(func(*fpPkt) {}), xa, 1500, true, FastNATDst},
		// SCTP: the chunks that may change an association's state (INIT, ABORT,
		// SHUTDOWN, COOKIE ECHO, and any the program does not know).
		{"sctp init", sctpPkt(cip4, vip4, 41000, 38412, 1), xa, 1500, false, FastDR},
		{"sctp abort", sctpPkt(cip4, vip4, 41000, 38412, 6), xa, 1500, false, FastDR},
		{"sctp shutdown", sctpPkt(cip6, vip6, 41000, 38412, 7), xa, 1500, false, FastDR},
		{"sctp cookie echo", sctpPkt(cip4, vip4, 41000, 38412, 10), xa, 1500, false, FastDR},
		{"sctp unknown chunk", sctpPkt(cip4, vip4, 41000, 38412, 64), xa, 1500, false, FastDR},
		{"sctp data ttl 1", func() fpPkt { q := sctpPkt(cip4, vip4, 41000, 38412, 0); q.ttl = 1; return q }(), xa, 1500, false, FastDR},
		{"sctp abort, nat entry", sctpPkt(cip4, vip4, 41000, 38412, 6), xa, 1500, false, FastNATDst},
		{"sctp shutdown ack, nat entry", sctpPkt(cip6, vip6, 41000, 38412, 8), xa, 1500, false, FastNATSrc},
		{"sctp data over mtu, nat entry", sctpPkt(cip4, vip4, 41000, 38412, 0), xa, 135, false, FastNATDst},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := fastKeyOf(c.in)
			if !c.noKey {
				if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{fastEntry(c.in, c.action, rip4, 8080, c.egress, c.mtu)}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
			}
			in := c.in.frame(t)
			ret, out, slot := runFast(t, p, in, xa)
			leftToSlowPath(t, h, &k, in, out, ret, slot)
		})
	}
}

// TestFastPathOff: without EnableFastPath the fast-path methods say so and nothing is
// forwarded by the program.
func TestFastPathOff(t *testing.T) {
	h := newHarness(t)
	if _, err := h.c.FastUpdate([]FastKey{{}}, []FastVal{{}}); err == nil {
		t.Fatal("FastUpdate without EnableFastPath succeeded")
	}
	if err := h.c.EnableFastPath(0); err == nil {
		t.Fatal("EnableFastPath(0) succeeded")
	}
}

// leftToSlowPath checks that the program treated frame in as it does without the fast
// path (verdict ret and counter slot those of the reference model, out unchanged) and
// that the fast-path entry of k, if any, did not count it.
func leftToSlowPath(t *testing.T, h *harness, k *FastKey, in, out []byte, ret uint32, slot int) {
	t.Helper()
	wantRet, wantSlot := h.ref.classify(in, false)
	if ret != wantRet || slot != wantSlot {
		t.Fatalf("verdict %d counter %d, want %d and %d (as without the fast path)", ret, slot, wantRet, wantSlot)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("frame changed:\n% x\nwas\n% x", out, in)
	}
	var got FastVal
	if ok, _ := h.c.FastLookup(k, &got); ok && (got.Packets != 0 || got.Bytes != 0 || got.LastSeen != 0) {
		t.Fatalf("entry counted the packet: %+v", got)
	}
}

// fastRig readies a fast-path test in the test namespace: the ifindexes of its veths xa
// and xb, a harness, and a program with the fast path whose tx_ports are xa, and xb too
// when both.
func fastRig(t *testing.T, both bool) (h *harness, p *Port, xa, xb int) {
	t.Helper()
	requireNetns(t, testNetns(t))
	xa, xb = ifaceByName(t, "xa").Index, ifaceByName(t, "xb").Index
	h = newHarness(t)
	if both {
		return h, fastPort(t, h, xa, xb), xa, xb
	}
	return h, fastPort(t, h, xa), xa, xb
}

// fastPort enables the fast path on h's classifier, loads a program with it (EnableFastPath
// replaces the map for programs loaded after it) and makes txPorts the tx_ports (none: the
// benchmarks, whose test runs send back out of lo).
func fastPort(t testing.TB, h *harness, txPorts ...int) *Port {
	t.Helper()
	if err := h.c.EnableFastPath(1024); err != nil {
		t.Fatalf("EnableFastPath: %v", err)
	}
	p, err := h.c.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := h.c.SetTxPorts(txPorts); err != nil {
		t.Fatalf("SetTxPorts: %v", err)
	}
	return p
}

// sctpPkt is a client's SCTP packet of one chunk of type chunk with 100 bytes of data.
func sctpPkt(src, dst netip.Addr, sport, dport uint16, chunk uint8) fpPkt {
	q := fpBase(false, src, dst, sport, dport)
	q.sctp, q.chunk = true, chunk
	return q
}

// fpBase is a client's (or real server's) 100-byte packet as it reaches the director,
// TTL 64: the frame the fast-path tables start from.
func fpBase(udp bool, src, dst netip.Addr, sport, dport uint16) fpPkt {
	return fpPkt{udp: udp, src: src, dst: dst, sport: sport, dport: dport, ttl: 64,
		dmac: macDirIn, smac: macClient, payload: 100}
}

// runFast runs p on frame as received on ingress and returns the verdict, the output
// frame and the one counter slot that moved.
func runFast(t *testing.T, p *Port, frame []byte, ingress int) (uint32, []byte, int) {
	t.Helper()
	before, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(frame)+256)
	ctx := xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ingress)}
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Context: ctx}
	ret, err := p.Program().Run(opts)
	if err != nil {
		t.Fatalf("run program: %v", err)
	}
	after, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	b, a := slots(before), slots(after)
	slot := -1
	for i := range a {
		if d := a[i] - b[i]; d == 1 && slot < 0 {
			slot = i
		} else if d != 0 {
			t.Fatalf("counter %d moved by %d", i, d)
		}
	}
	return ret, out[:len(opts.DataOut)], slot
}

// BenchmarkFastPathProgram: the program's own time per packet (BPF_PROG_TEST_RUN with
// repeat, XDP_TX or XDP_PASS on lo, the test run's interface): without the fast path;
// with it, for a packet whose flow has no entry (classified as a service's: redirect to
// AF_XDP, which the test run does not perform); and for packets the fast path sends, TCP
// and SCTP (whose CRC32c update is the difference). The test run repeats on one buffer,
// so a rewrite must leave the packet's flow as it was for the next round: the entries
// rewrite the destination to itself and pass the packet to the kernel (no TTL
// decrement, which would send the packet to the workers after 63 rounds); the SCTP one
// still multiplies its term (0) by the length's power. 100 bytes of payload each.
func BenchmarkFastPathProgram(b *testing.B) {
	in := fpPkt{src: cip4, dst: vip4, sport: 40000, dport: 80, ttl: 64, dmac: macDirIn, smac: macClient, payload: 100}
	// Without EnableFastPath: what every director pays for the fast path's existence.
	b.Run("off", func(b *testing.B) {
		h := newHarness(b)
		ret, d, err := h.p.Program().Benchmark(in.frame(b), b.N, b.ResetTimer)
		if err != nil || ret != xdpPass {
			b.Fatalf("verdict %d, %v", ret, err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
	})
	h := newHarness(b)
	p := fastPort(b, h)
	b.Run("no-entry", func(b *testing.B) {
		ret, d, err := p.Program().Benchmark(in.frame(b), b.N, b.ResetTimer)
		if err != nil || ret != xdpPass { // no socket: redirect failed, passed
			b.Fatalf("verdict %d (%v), want XDP_PASS", ret, err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
	})
	for _, c := range []struct {
		name string
		in   fpPkt
	}{{"fastpath/tcp", in}, {"fastpath/sctp", sctpPkt(cip4, vip4, 40000, 38412, 0)}} {
		b.Run(c.name, func(b *testing.B) {
			v := fastEntry(c.in, FastNATDst, c.in.dst, c.in.dport, 1, 1500)
			v.Flags = FastKernel
			v.CsumL3, v.CsumL4 = FastDeltas(4, v4mapped(c.in.dst), v.Addr, c.in.dport, c.in.dport, false)
			k := fastKeyOf(c.in)
			if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{v}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
			ret, d, err := p.Program().Benchmark(c.in.frame(b), b.N, b.ResetTimer)
			if err != nil || ret != xdpPass {
				b.Fatalf("verdict %d (%v), want XDP_PASS", ret, err)
			}
			var got FastVal
			if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil || got.Packets != uint64(b.N) {
				b.Fatalf("the entry sent %d packets of %d (%v %v)", got.Packets, b.N, ok, err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
		})
	}
}

// TestFastPathFullNAT: a FULLNAT entry rewrites both ends (request: client:cport →
// VIP:vport becomes LIP:lport → RS:rport; reply: RS:rport → LIP:lport becomes VIP:vport
// → client:cport), TTL / hop limit decremented, checksums as gopacket computes them for
// the rewritten packet.
func TestFastPathFullNAT(t *testing.T) {
	h, p, xa, xb := fastRig(t, true)
	for _, c := range []struct {
		name           string
		udp            bool
		src, dst       netip.Addr
		sport, dport   uint16
		nsrc, ndst     netip.Addr
		nsport, ndport uint16
		egress         int
		verdict        uint32
		sctp           bool
	}{
		{"request tcp4", false, cip4, vip4, 40000, 80, lip4, rip4, 5000, 8080, xb, xdpRedirect, false},
		{"reply tcp4", false, rip4, lip4, 8080, 5000, vip4, cip4, 80, 40000, xa, xdpTx, false},
		{"request udp6", true, cip6, vip6, 40001, 53, lip6, rip6, 5001, 5353, xa, xdpTx, false},
		{"reply udp6", true, rip6, lip6, 5353, 5001, vip6, cip6, 53, 40001, xb, xdpRedirect, false},
		{"request udp4", true, cip4, vip4, 40002, 53, lip4, rip4, 65535, 1, xb, xdpRedirect, false},
		{"reply tcp6", false, rip6, lip6, 8080, 5002, vip6, cip6, 443, 40002, xa, xdpTx, false},
		{"request sctp4", false, cip4, vip4, 40003, 38412, lip4, rip4, 5003, 2905, xb, xdpRedirect, true},
		{"reply sctp4", false, rip4, lip4, 2905, 5003, vip4, cip4, 38412, 40003, xa, xdpTx, true},
		{"request sctp6", false, cip6, vip6, 40004, 3868, lip6, rip6, 5004, 3868, xa, xdpTx, true},
		{"reply sctp6", false, rip6, lip6, 3868, 5004, vip6, cip6, 3868, 40004, xb, xdpRedirect, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := fpPkt{udp: c.udp, sctp: c.sctp, src: c.src, dst: c.dst, sport: c.sport, dport: c.dport, ttl: 64, dmac: macDirIn, smac: macClient, payload: 33}
			family := uint8(6)
			if c.src.Is4() {
				family = 4
			}
			v := FastVal{DMAC: mac6(macReal), SMAC: mac6(macDirOut), Ifindex: uint32(c.egress), Action: FastFullNAT, MTU: 1500,
				Addr: v4mapped(c.nsrc), Port: [2]byte{byte(c.nsport >> 8), byte(c.nsport)},
				Addr2: v4mapped(c.ndst), Port2: [2]byte{byte(c.ndport >> 8), byte(c.ndport)}}
			fullnatDeltas(&v, family, in, true)
			sctpTerm(&v, in)
			setFast(t, h, in, v)
			ret, out, slot := runFast(t, p, in.frame(t), xa)
			if ret != c.verdict || slot != statFastPathTx {
				t.Fatalf("verdict %d counter %d, want %d and fastpath_tx", ret, slot, c.verdict)
			}
			want := in
			want.src, want.dst, want.sport, want.dport, want.ttl = c.nsrc, c.ndst, c.nsport, c.ndport, 63
			want.dmac, want.smac = macReal, macDirOut
			if exp := want.frame(t); !bytes.Equal(out, exp) {
				t.Fatalf("output frame\n% x\nwant\n% x", out, exp)
			}
		})
	}
}

// TestFastPathKernel: an entry with FastKernel (xlvsd --fastpath-forward kernel) has the
// program rewrite the NAT or FULLNAT addresses, ports and checksums and pass the packet
// to the kernel (XDP_PASS, counted as fastpath_tx) with its TTL and MACs as they came:
// the kernel's forward decrements the TTL and picks the next hop. Compared byte for byte
// with gopacket's frame of the rewritten packet (checksums from scratch). A DR entry
// ignores the flag (its packet keeps the VIP as destination: the kernel would keep it).
func TestFastPathKernel(t *testing.T) {
	h, p, xa, xb := fastRig(t, true)
	for _, c := range []struct {
		name           string
		in             fpPkt
		action         uint8
		nsrc, ndst     netip.Addr
		nsport, ndport uint16
	}{
		{"nat request tcp4", fpBase(false, cip4, vip4, 41000, 80), FastNATDst, cip4, rip4, 41000, 8080},
		{"nat reply udp4", fpBase(true, rip4, cip4, 5353, 41001), FastNATSrc, vip4, cip4, 53, 41001},
		{"nat request udp6", fpBase(true, cip6, vip6, 41002, 53), FastNATDst, cip6, rip6, 41002, 5353},
		{"nat reply tcp6", fpBase(false, rip6, cip6, 8080, 41003), FastNATSrc, vip6, cip6, 443, 41003},
		{"fullnat request tcp4", fpBase(false, cip4, vip4, 41004, 80), FastFullNAT, lip4, rip4, 5000, 8080},
		{"fullnat reply udp6", fpBase(true, rip6, lip6, 5353, 5001), FastFullNAT, vip6, cip6, 53, 41005},
		{"checksum wraps", fpBase(true, netip.MustParseAddr("255.255.255.254"), vip4, 65535, 53), FastNATDst,
			netip.MustParseAddr("255.255.255.254"), netip.MustParseAddr("0.0.0.1"), 65535, 1},
		{"ttl 2 passes with 2", func() fpPkt { q := fpBase(false, cip4, vip4, 41006, 80); q.ttl = 2; return q }(), FastNATDst, cip4, rip4, 41006, 8080},
		{"nat request sctp4", sctpPkt(cip4, vip4, 41008, 38412, 0), FastNATDst, cip4, rip4, 41008, 2905},
		{"fullnat reply sctp6", sctpPkt(rip6, lip6, 2905, 5005, 3), FastFullNAT, vip6, cip6, 38412, 41009},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			family := uint8(6)
			if in.src.Is4() {
				family = 4
			}
			v := FastVal{DMAC: mac6(macReal), SMAC: mac6(macDirOut), Ifindex: uint32(xb), Action: c.action, Flags: FastKernel, MTU: 1500}
			switch c.action {
			case FastNATDst:
				v.Addr, v.Port = v4mapped(c.ndst), [2]byte{byte(c.ndport >> 8), byte(c.ndport)}
				v.CsumL3, v.CsumL4 = FastDeltas(family, v4mapped(in.dst), v.Addr, in.dport, c.ndport, false)
			case FastNATSrc:
				v.Addr, v.Port = v4mapped(c.nsrc), [2]byte{byte(c.nsport >> 8), byte(c.nsport)}
				v.CsumL3, v.CsumL4 = FastDeltas(family, v4mapped(in.src), v.Addr, in.sport, c.nsport, false)
			case FastFullNAT:
				v.Addr, v.Port = v4mapped(c.nsrc), [2]byte{byte(c.nsport >> 8), byte(c.nsport)}
				v.Addr2, v.Port2 = v4mapped(c.ndst), [2]byte{byte(c.ndport >> 8), byte(c.ndport)}
				fullnatDeltas(&v, family, in, false)
			}
			sctpTerm(&v, in)
			k := setFast(t, h, in, v)
			ret, out, slot := runFast(t, p, in.frame(t), xa)
			if ret != xdpPass || slot != statFastPathTx {
				t.Fatalf("verdict %d counter %d, want XDP_PASS (%d) and fastpath_tx (%d)", ret, slot, xdpPass, statFastPathTx)
			}
			want := in // TTL and MACs as they came
			want.src, want.dst, want.sport, want.dport = c.nsrc, c.ndst, c.nsport, c.ndport
			if exp := want.frame(t); !bytes.Equal(out, exp) {
				t.Fatalf("output frame\n% x\nwant\n% x", out, exp)
			}
			var got FastVal
			if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil || got.Packets != 1 || got.Bytes != uint64(len(out)-14) {
				t.Fatalf("entry: found %v (%v), packets %d bytes %d, want 1 and %d", ok, err, got.Packets, got.Bytes, len(out)-14)
			}
		})
	}
	t.Run("dr ignores it", func(t *testing.T) {
		in := fpBase(false, cip4, vip4, 41007, 80)
		v := fastEntry(in, FastDR, netip.Addr{}, 0, xa, 1500)
		v.Flags = FastKernel
		setFast(t, h, in, v)
		ret, out, _ := runFast(t, p, in.frame(t), xa)
		want := in
		want.dmac, want.smac, want.ttl = macReal, macDirOut, in.ttl-1
		if exp := want.frame(t); ret != xdpTx || !bytes.Equal(out, exp) {
			t.Fatalf("verdict %d, frame\n% x\nwant XDP_TX (%d) and\n% x", ret, out, xdpTx, exp)
		}
	})
}

// fullnatDeltas sets v's checksum deltas for FULLNAT packet in, whose source becomes
// v.Addr:v.Port and destination v.Addr2:v.Port2, with the TTL decrement when decTTL.
func fullnatDeltas(v *FastVal, family uint8, in fpPkt, decTTL bool) {
	sport, dport := uint16(v.Port[0])<<8|uint16(v.Port[1]), uint16(v.Port2[0])<<8|uint16(v.Port2[1])
	l3a, l4a := FastDeltas(family, v4mapped(in.src), v.Addr, in.sport, sport, decTTL)
	l3b, l4b := FastDeltas(family, v4mapped(in.dst), v.Addr2, in.dport, dport, false)
	v.CsumL3, v.CsumL4 = AddDeltas(l3a, l3b), AddDeltas(l4a, l4b)
}

// setFast installs v as the fastpath entry of in's flow until the test ends, and returns
// its key.
func setFast(t *testing.T, h *harness, in fpPkt, v FastVal) FastKey {
	t.Helper()
	k := fastKeyOf(in)
	if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{v}); err != nil {
		t.Fatalf("FastUpdate: %v", err)
	}
	t.Cleanup(func() { h.c.FastDelete([]FastKey{k}) })
	return k
}
