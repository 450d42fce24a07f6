package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// encap prepends an Ethernet header and a tunnel header to the IP packet of frame (as
// the dataplane does in the frame's headroom) and returns the new frame.
func encap(t testing.TB, frame []byte, src, dst [16]byte, id uint16) ([]byte, bool) {
	t.Helper()
	var info Info
	r := Parse(frame, &info)
	if r != ResultOK && r != ResultFragment && r != ResultUnsupportedProto && r != ResultBadL4Header {
		return nil, false
	}
	inner := frame[info.L3Off : int(info.L3Off)+int(info.L3Len)]
	hl := TunnelHeaderLen(info.Family)
	out := make([]byte, EthernetHeaderLen+hl+len(inner))
	copy(out[EthernetHeaderLen+hl:], inner)
	et := uint16(EtherTypeIPv4)
	if info.Family == 6 {
		et = EtherTypeIPv6
	}
	binary.BigEndian.PutUint16(out[12:], et)
	ok := PutTunnelHeader(out[EthernetHeaderLen:EthernetHeaderLen+hl], out[EthernetHeaderLen+hl:], info.Family, src, dst, id)
	return out, ok
}

func TestPutTunnelHeader(t *testing.T) {
	dir4, rs4 := as16(netip.MustParseAddr("198.18.0.1")), as16(netip.MustParseAddr("198.18.0.11"))
	dir6, rs6 := as16(netip.MustParseAddr("2001:db8::1")), as16(netip.MustParseAddr("2001:db8::11"))
	for _, tc := range []struct {
		name  string
		s     spec
		tos   uint8
		noDF  bool
		ttl   uint8
		proto uint8
	}{
		{name: "ipip tcp", s: defaultSpec(false, ProtoTCP), tos: 0x2e, ttl: 61},
		{name: "ipip tcp ECN CE", s: defaultSpec(false, ProtoTCP), tos: 0x2f, ttl: 61},
		{name: "ipip udp without DF", s: defaultSpec(false, ProtoUDP), noDF: true, ttl: 5},
		{name: "ipip with inner options", s: func() spec { s := defaultSpec(false, ProtoTCP); s.ipOpts = true; return s }(), ttl: 64},
		{name: "ip6ip6 tcp", s: defaultSpec(true, ProtoTCP), tos: 0xb8, ttl: 33},
		{name: "ip6ip6 tcp ECN CE", s: defaultSpec(true, ProtoTCP), tos: 0xbb, ttl: 33},
		{name: "ip6ip6 tcp ECT(1)", s: defaultSpec(true, ProtoTCP), tos: 0xb9, ttl: 33},
		{name: "ip6ip6 udp", s: defaultSpec(true, ProtoUDP), ttl: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.ttl = tc.ttl
			frame := build(t, tc.s)
			var info Info
			Parse(frame, &info)
			if info.Family == 4 {
				ip := IPv4(frame[info.L3Off:])
				ip.SetTOS(tc.tos)
				if tc.noDF {
					ip.SetFlagsFragmentOffset(0)
				} else {
					ip.SetFlagsFragmentOffset(IPv4FlagDF)
				}
				ip.ComputeChecksum()
			} else {
				IPv6(frame[info.L3Off:]).SetVersionTrafficClassFlowLabel(tc.tos, 0x12345)
			}
			inner := append([]byte(nil), frame[info.L3Off:int(info.L3Off)+int(info.L3Len)]...)
			src, dst := dir4, rs4
			if tc.s.v6 {
				src, dst = dir6, rs6
			}
			out, ok := encap(t, frame, src, dst, 0x1234)
			if !ok {
				t.Fatal("PutTunnelHeader refused a valid packet")
			}
			p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
			if p.ErrorLayer() != nil {
				t.Fatalf("encapsulated frame does not decode: %v", p.ErrorLayer().Error())
			}
			if tc.s.v6 {
				o := p.Layers()[1].(*layers.IPv6)
				if o.NextHeader != layers.IPProtocolIPv6 || o.HopLimit != tc.ttl || o.TrafficClass != outerTOS(tc.tos) || o.FlowLabel != 0 ||
					!bytes.Equal(o.SrcIP, dir6[:]) || !bytes.Equal(o.DstIP, rs6[:]) || int(o.Length) != len(inner) {
					t.Fatalf("outer IPv6 %+v", o)
				}
			} else {
				o := p.Layers()[1].(*layers.IPv4)
				wantFlags := layers.IPv4DontFragment
				if tc.noDF {
					wantFlags = 0
				}
				if o.Protocol != layers.IPProtocolIPv4 || o.TTL != tc.ttl || o.TOS != outerTOS(tc.tos) || o.Flags != wantFlags || o.FragOffset != 0 ||
					o.Id != 0x1234 || o.IHL != 5 || int(o.Length) != 20+len(inner) || !o.SrcIP.Equal(addrToIP(dir4)) || !o.DstIP.Equal(addrToIP(rs4)) {
					t.Fatalf("outer IPv4 %+v", o)
				}
				if !IPv4HeaderChecksumValid(IPv4(out[EthernetHeaderLen:])) {
					t.Fatal("outer header checksum")
				}
			}
			if got := out[EthernetHeaderLen+TunnelHeaderLen(info.Family):]; !bytes.Equal(got, inner) {
				t.Fatal("inner packet changed")
			}
		})
	}
	if PutTunnelHeader(make([]byte, 19), make([]byte, 40), 4, dir4, rs4, 0) || PutTunnelHeader(make([]byte, 40), make([]byte, 39), 6, dir6, rs6, 0) ||
		PutTunnelHeader(make([]byte, 40), make([]byte, 40), 5, dir6, rs6, 0) {
		t.Fatal("PutTunnelHeader accepted short buffers or a bad family")
	}
}

// outerTOS is the outer header's TOS (traffic class) for an inner one, as the kernel's
// INET_ECN_encapsulate(inner, inner) makes it (include/net/inet_ecn.h, RFC 3168 section
// 9.1.1): the DSCP and the ECN field copied, but CE (0b11) becomes ECT(0) (0b10).
func outerTOS(inner uint8) uint8 {
	ecn := inner & 0x3
	if ecn == 0x3 {
		ecn = 0x2
	}
	return inner&^0x3 | ecn
}

func addrToIP(a [16]byte) []byte { return netip.AddrFrom16(a).Unmap().AsSlice() }

// TestPutTunnelHeaderRandom: the IPIP header, written field by field with its checksum
// summed on the way, is byte for byte the one the IPv4 view's setters and
// ComputeChecksum make of the same fields (what IPVS's tunnel transmit sets: TOS, TTL and
// DF from the inner header, the rest constant or given), for random inner headers
// (every flag and offset bit, any TOS and TTL), addresses, identifications and lengths.
func TestPutTunnelHeaderRandom(t *testing.T) {
	r := newRand(t)
	for range 20000 {
		inner := randBytes(r, IPv4MinHeaderLen+r.IntN(1500))
		src, dst := as16(randAddr(r, false)), as16(randAddr(r, false))
		id := uint16(r.IntN(1 << 16))
		got := make([]byte, IPv4MinHeaderLen)
		if !PutTunnelHeader(got, inner, 4, src, dst, id) {
			t.Fatal("refused")
		}
		in, want := IPv4(inner), IPv4(make([]byte, IPv4MinHeaderLen))
		want.SetVersionIHL(IPv4MinHeaderLen)
		want.SetTOS(outerTOS(in.TOS()))
		want.SetTotalLength(uint16(IPv4MinHeaderLen + len(inner)))
		want.SetID(id)
		want.SetFlagsFragmentOffset(in.FlagsFragmentOffset() & IPv4FlagDF)
		want.SetTTL(in.TTL())
		want.SetProtocol(ProtoIPIP)
		want.SetSourceAddress(src)
		want.SetDestinationAddress(dst)
		want.ComputeChecksum()
		if !bytes.Equal(got, want) {
			t.Fatalf("inner % x:\ngot  % x\nwant % x", inner[:IPv4MinHeaderLen], got, []byte(want))
		}
	}
}

// TestPutICMPError: frag-needed / Packet Too Big built in place (overlapping the
// original, as the dataplane does in a frame's headroom) decode with gopacket, verify,
// go back to the sender from the original destination and quote the original.
func TestPutICMPError(t *testing.T) {
	for _, tc := range []struct {
		name       string
		v6         bool
		size       int
		typ, code  uint8
		rest       uint32
		wantQuoted int
	}{
		{"frag needed small", false, 100, ICMPv4DestUnreach, ICMPv4FragNeeded, 1480, -1},
		{"frag needed full size", false, 1400, ICMPv4DestUnreach, ICMPv4FragNeeded, 1480, icmp4MaxLen - 28},
		{"port unreachable", false, 10, ICMPv4DestUnreach, ICMPv4PortUnreach, 0, -1},
		{"packet too big", true, 1400, ICMPv6PacketTooBig, 0, 1460, icmp6MaxLen - 48},
		{"packet too big small", true, 50, ICMPv6PacketTooBig, 0, 1280, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultSpec(tc.v6, ProtoUDP)
			s.payload = make([]byte, tc.size)
			frame := build(t, s)
			var info Info
			Parse(frame, &info)
			orig := append([]byte(nil), frame[info.L3Off:int(info.L3Off)+int(info.L3Len)]...)
			fam := info.Family
			hl := 28
			if tc.v6 {
				hl = 48
			}
			// In place: the ICMP header goes into room before the original.
			buf := make([]byte, 64+len(orig))
			copy(buf[64:], orig)
			start := 64 - hl
			n := PutICMPError(buf[start:], buf[64:], fam, tc.typ, tc.code, tc.rest, 64)
			want := tc.wantQuoted
			if want < 0 {
				want = len(orig)
			}
			if n != hl+want {
				t.Fatalf("length %d, want %d", n, hl+want)
			}
			ip := buf[start : start+n]
			first := layers.LayerTypeIPv4
			if tc.v6 {
				first = layers.LayerTypeIPv6
			}
			p := gopacket.NewPacket(ip, first, gopacket.Default)
			var quoted []byte
			if tc.v6 {
				o := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if !o.SrcIP.Equal(s.dst.AsSlice()) || !o.DstIP.Equal(s.src.AsSlice()) || o.NextHeader != layers.IPProtocolICMPv6 {
					t.Fatalf("ICMPv6 IP header %+v", o)
				}
				m := ip[40:]
				sum := PseudoHeaderSum(6, as16(s.dst), as16(s.src), ProtoICMPv6, uint32(len(m)))
				if Fold(Checksum(m, sum)) != 0xFFFF {
					t.Fatal("ICMPv6 checksum")
				}
				quoted = m[8:]
			} else {
				o := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !o.SrcIP.Equal(s.dst.AsSlice()) || !o.DstIP.Equal(s.src.AsSlice()) || o.Protocol != layers.IPProtocolICMPv4 || int(o.Length) != n {
					t.Fatalf("ICMP IP header %+v", o)
				}
				if !IPv4HeaderChecksumValid(IPv4(ip)) {
					t.Fatal("IPv4 header checksum")
				}
				m := ip[20:]
				if Fold(Checksum(m, 0)) != 0xFFFF {
					t.Fatal("ICMP checksum")
				}
				quoted = m[8:]
			}
			if ip[hl-8] != tc.typ || ip[hl-7] != tc.code || binary.BigEndian.Uint32(ip[hl-4:hl]) != tc.rest {
				t.Fatalf("type %d code %d rest %d", ip[hl-8], ip[hl-7], binary.BigEndian.Uint32(ip[hl-4:hl]))
			}
			if !bytes.Equal(quoted, orig[:len(quoted)]) {
				t.Fatal("quote differs from the original packet")
			}
		})
	}
	if PutICMPError(make([]byte, 100), make([]byte, 10), 4, 3, 4, 0, 64) != 0 || PutICMPError(make([]byte, 10), make([]byte, 40), 6, 2, 0, 0, 64) != 0 {
		t.Fatal("PutICMPError answered a short packet or into a short buffer")
	}
}

// FuzzTunnel: for any frame Parse accepts, the encapsulated frame parses as an
// IPv4/IPv6 packet of protocol 4/41 whose header checksum verifies, whose payload is the
// inner packet unchanged, and which Parse of the inner packet agrees with.
func FuzzTunnel(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr)
	}
	src4, dst4 := as16(netip.MustParseAddr("198.18.0.1")), as16(netip.MustParseAddr("198.18.0.11"))
	src6, dst6 := as16(netip.MustParseAddr("2001:db8::1")), as16(netip.MustParseAddr("2001:db8::11"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var info Info
		if Parse(frame, &info) != ResultOK {
			return
		}
		src, dst := src4, dst4
		if info.Family == 6 {
			src, dst = src6, dst6
		}
		out, ok := encap(t, frame, src, dst, 7)
		if !ok {
			if info.Family == 4 && info.L3Len > 0xFFFF-20 {
				return
			}
			t.Fatal("refused a parsed packet")
		}
		var outer Info
		r := Parse(out, &outer)
		if r != ResultUnsupportedProto || outer.Src != src || outer.Dst != dst {
			t.Fatalf("outer parse %v %+v", r, outer)
		}
		if outer.Family == 4 {
			if outer.Proto != ProtoIPIP || !IPv4HeaderChecksumValid(IPv4(out[outer.L3Off:])) {
				t.Fatal("outer IPv4 header")
			}
		} else if outer.Proto != ProtoIPv6Encap {
			t.Fatal("outer next header")
		}
		inner := out[outer.L4Off : int(outer.L3Off)+int(outer.L3Len)]
		if !bytes.Equal(inner, frame[info.L3Off:int(info.L3Off)+int(info.L3Len)]) {
			t.Fatal("inner packet changed")
		}
	})
}

// FuzzICMPError: an ICMP error about any parsed packet verifies and quotes its start.
func FuzzICMPError(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr, uint32(1480))
	}
	f.Fuzz(func(t *testing.T, frame []byte, mtu uint32) {
		var info Info
		if r := Parse(frame, &info); r != ResultOK && r != ResultUnsupportedProto && r != ResultFragment {
			return
		}
		orig := frame[info.L3Off : int(info.L3Off)+int(info.L3Len)]
		out := make([]byte, ICMPErrorLen(info.Family, len(orig)))
		typ := ICMPv4DestUnreach
		if info.Family == 6 {
			typ = ICMPv6PacketTooBig
		}
		n := PutICMPError(out, orig, info.Family, typ, ICMPv4FragNeeded, mtu, 64)
		if n != len(out) {
			t.Fatalf("length %d, want %d", n, len(out))
		}
		hl := 20
		var sum uint32
		if info.Family == 6 {
			hl = 40
			sum = PseudoHeaderSum(6, info.Dst, info.Src, ProtoICMPv6, uint32(n-hl))
		} else if !IPv4HeaderChecksumValid(IPv4(out)) {
			t.Fatal("IPv4 header checksum")
		}
		if Fold(Checksum(out[hl:], sum)) != 0xFFFF {
			t.Fatal("ICMP checksum")
		}
		if !bytes.Equal(out[hl+8:], orig[:n-hl-8]) {
			t.Fatal("quote")
		}
	})
}

// wantEncap is, built with gopacket from the fields IPVS's tunnel transmit sets, what
// PutEncapHeader must put in front of inner (an IP packet of family innerFam) in an outer
// header of family outer: the outer IP header (TOS or traffic class and TTL or hop limit
// from inner, the ECN field as the kernel's INET_ECN_encapsulate leaves it, DF from an
// IPv4 inner only: ip_vs_prepare_tunneled_skb), protocol 4 or 41 by the inner family for
// IPIP, then UDP and GUE, or GRE, with the checksums IPVS computes (ip_vs_xmit.c, 2025
// mainline).
func wantEncap(t testing.TB, inner []byte, outer, innerFam uint8, src, dst [16]byte, id uint16, e Encap, sport uint16) []byte {
	t.Helper()
	innerProto, et := layers.IPProtocolIPv4, layers.EthernetTypeIPv4
	var tos, ttl uint8
	df := false
	if innerFam == 6 {
		innerProto, et = layers.IPProtocolIPv6, layers.EthernetTypeIPv6
		tos, ttl = IPv6(inner).TrafficClass(), IPv6(inner).HopLimit()
	} else {
		in := IPv4(inner)
		tos, ttl, df = in.TOS(), in.TTL(), in.FlagsFragmentOffset()&IPv4FlagDF != 0
	}
	var mid []gopacket.SerializableLayer
	proto := innerProto
	switch e.Type {
	case EncapGUE:
		proto = layers.IPProtocolUDP
		mid = append(mid, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(e.Port)},
			gopacket.Payload([]byte{0, byte(innerProto), 0, 0}))
	case EncapGRE:
		proto = layers.IPProtocolGRE
		mid = append(mid, &layers.GRE{ChecksumPresent: e.Csum, Protocol: et})
	}
	var o gopacket.NetworkLayer
	if outer == 4 {
		o4 := &layers.IPv4{Version: 4, IHL: 5, TOS: outerTOS(tos), Id: id, TTL: ttl, Protocol: proto,
			SrcIP: addrToIP(src), DstIP: addrToIP(dst)}
		if df {
			o4.Flags = layers.IPv4DontFragment
		}
		o = o4
	} else {
		o = &layers.IPv6{Version: 6, TrafficClass: outerTOS(tos), NextHeader: proto, HopLimit: ttl,
			SrcIP: src[:], DstIP: dst[:]}
	}
	if e.Type == EncapGUE {
		must(t, mid[0].(*layers.UDP).SetNetworkLayerForChecksum(o))
	}
	ls := append([]gopacket.SerializableLayer{o.(gopacket.SerializableLayer)}, mid...)
	ls = append(ls, gopacket.Payload(inner))
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	b := buf.Bytes()
	if e.Type == EncapGUE {
		u := b[TunnelHeaderLen(outer):]
		switch c := binary.BigEndian.Uint16(u[6:]); {
		case !e.Csum:
			u[6], u[7] = 0, 0 // IPVS without --tun-csum: no UDP checksum, over IPv6 too
		case c == 0:
			binary.BigEndian.PutUint16(u[6:], 0xFFFF) // RFC 768
		}
	}
	return b
}

// TestPutEncapHeader: IPIP, GUE and GRE headers, GUE's and GRE's with and without their
// checksums, in IPv4 and IPv6 outer headers around TCP and UDP of either family (a real
// server of the service's other family) with random contents and lengths (odd ones too),
// random TOS (ECN CE included) and TTL, are byte for byte what gopacket builds of the
// fields IPVS sets (wantEncap); the outer checksums verify; short buffers are refused.
func TestPutEncapHeader(t *testing.T) {
	r := newRand(t)
	for _, e := range []Encap{
		{}, {Type: EncapGUE, Port: 6080}, {Type: EncapGUE, Port: 5555, Csum: true},
		{Type: EncapGRE}, {Type: EncapGRE, Csum: true},
	} {
		for range 2000 {
			s := randSpec(r)
			s.vlan = false
			frame := build(t, s)
			var info Info
			Parse(frame, &info)
			ip := frame[info.L3Off : int(info.L3Off)+int(info.L3Len)]
			if info.Family == 4 {
				IPv4(ip).SetTOS(uint8(r.IntN(256)))
				IPv4(ip).ComputeChecksum()
			} else {
				IPv6(ip).SetVersionTrafficClassFlowLabel(uint8(r.IntN(256)), uint32(r.IntN(1<<20)))
			}
			inner := append([]byte(nil), ip...)
			outer := uint8(4)
			if r.IntN(2) == 0 {
				outer = 6
			}
			src, dst := as16(randAddr(r, outer == 6)), as16(randAddr(r, outer == 6))
			id, sport := uint16(r.IntN(1<<16)), uint16(32768+r.IntN(28232))
			hl := e.HeaderLen(outer)
			out := make([]byte, hl+len(inner))
			copy(out[hl:], inner)
			if !PutEncapHeader(out[:hl], out[hl:], outer, info.Family, src, dst, id, e, sport) {
				t.Fatalf("%+v: refused a %d-byte IPv%d packet in IPv%d", e, len(inner), info.Family, outer)
			}
			want := wantEncap(t, inner, outer, info.Family, src, dst, id, e, sport)
			if !bytes.Equal(out, want) {
				t.Fatalf("%+v, IPv%d in IPv%d, %d bytes:\ngot  % x\nwant % x", e, info.Family, outer, len(inner), out[:hl], want[:min(hl, len(want))])
			}
			if outer == info.Family && e.Type == EncapIPIP {
				same := make([]byte, hl)
				if !PutTunnelHeader(same, inner, outer, src, dst, id) || !bytes.Equal(same, out[:hl]) {
					t.Fatal("PutTunnelHeader and PutEncapHeader differ on a same-family IPIP packet")
				}
			}
			// The checksums verify as a receiver checks them.
			ipl := TunnelHeaderLen(outer)
			x := out[ipl:]
			switch {
			case e.Type == EncapGUE && e.Csum:
				if Fold(Checksum(x, PseudoHeaderSum(outer, src, dst, ProtoUDP, uint32(len(x))))) != 0xFFFF {
					t.Fatalf("%+v: UDP checksum does not verify", e)
				}
			case e.Type == EncapGRE && e.Csum:
				if Fold(Checksum(x, 0)) != 0xFFFF {
					t.Fatalf("%+v: GRE checksum does not verify", e)
				}
			}
		}
		for _, fam := range []uint8{4, 6} {
			hl := e.HeaderLen(fam)
			if PutEncapHeader(make([]byte, hl-1), make([]byte, 60), fam, fam, [16]byte{}, [16]byte{}, 0, e, 40000) {
				t.Errorf("%+v: accepted a %d-byte header buffer for IPv%d, want %d", e, hl-1, fam, hl)
			}
			if PutEncapHeader(make([]byte, hl), make([]byte, 60), fam, 5, [16]byte{}, [16]byte{}, 0, e, 40000) {
				t.Errorf("%+v: accepted an inner family 5", e)
			}
		}
	}
}

// TestEncapHeaderLen: what each tunnel type adds, as IPVS subtracts it from the path MTU
// (__ip_vs_get_out_rt): IP, plus UDP and GUE (8+4), or GRE (4, 8 with its checksum).
func TestEncapHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		e      Encap
		v4, v6 int
	}{
		{Encap{}, 20, 40}, {Encap{Csum: true}, 20, 40},
		{Encap{Type: EncapGUE, Port: 1}, 32, 52}, {Encap{Type: EncapGUE, Port: 1, Csum: true}, 32, 52},
		{Encap{Type: EncapGRE}, 24, 44}, {Encap{Type: EncapGRE, Csum: true}, 28, 48},
	} {
		if a, b := tc.e.HeaderLen(4), tc.e.HeaderLen(6); a != tc.v4 || b != tc.v6 {
			t.Errorf("%+v: HeaderLen %d / %d, want %d / %d", tc.e, a, b, tc.v4, tc.v6)
		}
	}
}

// TestEncapSourcePort: GUE source ports lie in [32768, 61000), a flow keeps its port,
// every fragment of a datagram gets the same one whatever its ports say, and flows spread
// over the range.
func TestEncapSourcePort(t *testing.T) {
	r := newRand(t)
	seen := map[uint16]bool{}
	const flows = 2000
	for range flows {
		info := Info{Family: 4, Proto: ProtoTCP, Src: as16(randAddr(r, false)), Dst: as16(randAddr(r, false)),
			SrcPort: uint16(r.IntN(1 << 16)), DstPort: 80}
		p := EncapSourcePort(&info)
		if p < 32768 || p >= 61000 {
			t.Fatalf("port %d outside [32768, 61000)", p)
		}
		if again := info; EncapSourcePort(&again) != p {
			t.Fatal("the same flow got another port")
		}
		seen[p] = true
		frag := info
		frag.Frag = true
		first := EncapSourcePort(&frag)
		frag.SrcPort, frag.DstPort = 0, 0 // a later fragment: no ports parsed
		if EncapSourcePort(&frag) != first {
			t.Fatal("fragments of one datagram got different ports")
		}
	}
	// 2000 flows over 28232 ports: about 1930 distinct if uniform.
	if len(seen) < flows*9/10 {
		t.Errorf("%d flows got %d distinct ports, want at least %d", flows, len(seen), flows*9/10)
	}
}
