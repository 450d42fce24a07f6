package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// ipPacket serializes a whole IPv4 or IPv6 TCP/UDP packet (no Ethernet) with gopacket,
// checksums computed.
func ipPacket(t testing.TB, proto uint8, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	var net gopacket.NetworkLayer
	var nl gopacket.SerializableLayer
	lp := layers.IPProtocol(proto)
	if src.Is6() {
		v6 := &layers.IPv6{Version: 6, HopLimit: 61, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: lp}
		net, nl = v6, v6
	} else {
		v4 := &layers.IPv4{Version: 4, TTL: 61, Id: 0x4242, Flags: layers.IPv4DontFragment, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: lp}
		net, nl = v4, v4
	}
	var tl gopacket.SerializableLayer
	if proto == ProtoTCP {
		tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Seq: 7, Window: 512}
		must(t, tc.SetNetworkLayerForChecksum(net))
		tl = tc
	} else {
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		must(t, u.SetNetworkLayerForChecksum(net))
		tl = u
	}
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, nl, tl, gopacket.Payload(payload)))
	return buf.Bytes()
}

// icmpFrame serializes an Ethernet frame carrying an ICMP (IPv4) or ICMPv6 error of type
// typ/code from src to dst quoting the first quote bytes of inner (all of it if quote <=
// 0), checksums computed by gopacket.
func icmpFrame(t testing.TB, src, dst netip.Addr, typ, code uint8, inner []byte, quote int) []byte {
	t.Helper()
	if quote > 0 && quote < len(inner) {
		inner = inner[:quote]
	}
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: layers.IPProtocolICMPv6}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		must(t, ic.SetNetworkLayerForChecksum(ip))
		// gopacket's ICMPv6 layer is 4 bytes; the 4 bytes of "rest" (MTU, unused) lead the body.
		rest := make([]byte, 4)
		if typ == ICMPv6PacketTooBig {
			binary.BigEndian.PutUint32(rest, 1280)
		}
		must(t, gopacket.SerializeLayers(buf, opts, eth, ip, ic, gopacket.Payload(append(rest, inner...))))
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: layers.IPProtocolICMPv4}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
		if typ == ICMPv4DestUnreachable && code == ICMPv4CodeFragNeeded {
			ic.Seq = 1400 // next-hop MTU lives in the low 16 bits of the rest word
		}
		must(t, gopacket.SerializeLayers(buf, opts, eth, ip, ic, gopacket.Payload(inner)))
	}
	return buf.Bytes()
}

func parseICMP(t testing.TB, frame []byte) (Info, ICMPError) {
	t.Helper()
	var info Info
	if r := Parse(frame, &info); r != ResultUnsupportedProto {
		t.Fatalf("Parse = %v, want unsupported-proto", r)
	}
	var e ICMPError
	if !ParseICMPError(frame, &info, &e) {
		t.Fatalf("ParseICMPError refused %x", frame)
	}
	return info, e
}

// TestRewriteICMPError is a differential test: translating an ICMP error must give
// exactly the frame gopacket builds from scratch with the translated addresses and ports
// (inner checksums of the whole original datagram, ICMP checksum, IPv4 header checksums).
func TestRewriteICMPError(t *testing.T) {
	a := netip.MustParseAddr
	payload := bytes.Repeat([]byte("xlvs"), 40)
	type side struct {
		outerSrc, outerDst, innerSrc, innerDst netip.Addr
		sport, dport                           uint16
	}
	for _, tc := range []struct {
		name       string
		proto      uint8
		typ, code  uint8
		quote      int // bytes of the inner packet quoted; 0 = all
		before, to side
	}{
		// Client side → real server (NAT): the quoted reply VIP → client becomes RS → client.
		{"v4 udp port unreachable from client", ProtoUDP, ICMPv4DestUnreachable, 3, 0,
			side{a("198.18.0.2"), a("198.18.0.100"), a("198.18.0.100"), a("198.18.0.2"), 80, 40000},
			side{a("198.18.0.2"), a("198.18.1.11"), a("198.18.1.11"), a("198.18.0.2"), 8080, 40000}},
		{"v4 tcp frag needed from client side, 8 bytes quoted", ProtoTCP, ICMPv4DestUnreachable, ICMPv4CodeFragNeeded, 28,
			side{a("198.18.7.1"), a("198.18.0.100"), a("198.18.0.100"), a("198.18.0.2"), 80, 40000},
			side{a("198.18.7.1"), a("198.18.1.11"), a("198.18.1.11"), a("198.18.0.2"), 8080, 40000}},
		{"v4 tcp time exceeded from client side, whole quote", ProtoTCP, ICMPv4TimeExceeded, 0, 0,
			side{a("198.18.7.1"), a("198.18.0.100"), a("198.18.0.100"), a("198.18.0.2"), 80, 40000},
			side{a("198.18.7.1"), a("198.18.1.11"), a("198.18.1.11"), a("198.18.0.2"), 8080, 40000}},
		// Real server side → client (NAT): the quoted request client → RS becomes client → VIP,
		// the outer source the VIP.
		{"v4 udp port unreachable from real server", ProtoUDP, ICMPv4DestUnreachable, 3, 0,
			side{a("198.18.1.11"), a("198.18.0.2"), a("198.18.0.2"), a("198.18.1.11"), 40000, 8080},
			side{a("198.18.0.100"), a("198.18.0.2"), a("198.18.0.2"), a("198.18.0.100"), 40000, 80}},
		{"v4 tcp time exceeded from real server side, 28 bytes quoted", ProtoTCP, ICMPv4TimeExceeded, 0, 40,
			side{a("198.18.1.1"), a("198.18.0.2"), a("198.18.0.2"), a("198.18.1.11"), 40000, 8080},
			side{a("198.18.0.100"), a("198.18.0.2"), a("198.18.0.2"), a("198.18.0.100"), 40000, 80}},
		{"v6 udp port unreachable from client", ProtoUDP, ICMPv6DestUnreach, ICMPv6PortUnreach, 0,
			side{a("fd00::2"), a("fd00::100"), a("fd00::100"), a("fd00::2"), 80, 40000},
			side{a("fd00::2"), a("fd00:1::11"), a("fd00:1::11"), a("fd00::2"), 8080, 40000}},
		{"v6 tcp packet too big from client side", ProtoTCP, ICMPv6PacketTooBig, 0, 48,
			side{a("fd00:7::1"), a("fd00::100"), a("fd00::100"), a("fd00::2"), 80, 40000},
			side{a("fd00:7::1"), a("fd00:1::11"), a("fd00:1::11"), a("fd00::2"), 8080, 40000}},
		{"v6 udp port unreachable from real server", ProtoUDP, ICMPv6DestUnreach, ICMPv6PortUnreach, 0,
			side{a("fd00:1::11"), a("fd00::2"), a("fd00::2"), a("fd00:1::11"), 40000, 8080},
			side{a("fd00::100"), a("fd00::2"), a("fd00::2"), a("fd00::100"), 40000, 80}},
		{"v6 tcp time exceeded from real server side", ProtoTCP, ICMPv6TimeExceeded, 0, 0,
			side{a("fd00:1::1"), a("fd00::2"), a("fd00::2"), a("fd00:1::11"), 40000, 8080},
			side{a("fd00::100"), a("fd00::2"), a("fd00::2"), a("fd00::100"), 40000, 80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, w := tc.before, tc.to
			frame := icmpFrame(t, b.outerSrc, b.outerDst, tc.typ, tc.code, ipPacket(t, tc.proto, b.innerSrc, b.innerDst, b.sport, b.dport, payload), tc.quote)
			want := icmpFrame(t, w.outerSrc, w.outerDst, tc.typ, tc.code, ipPacket(t, tc.proto, w.innerSrc, w.innerDst, w.sport, w.dport, payload), tc.quote)
			info, e := parseICMP(t, frame)
			if e.Type != tc.typ || e.Code != tc.code || e.Proto != tc.proto || e.Src != b.innerSrc.As16() || e.Dst != b.innerDst.As16() || e.SrcPort != b.sport || e.DstPort != b.dport {
				t.Fatalf("ParseICMPError = %+v", e)
			}
			if !ICMPChecksumValid(frame, &info) {
				t.Fatal("gopacket's ICMP checksum does not verify")
			}
			if !RewriteICMPError(frame, &info, &e, w.outerSrc.As16(), w.outerDst.As16(), w.innerSrc.As16(), w.innerDst.As16(), w.sport, w.dport) {
				t.Fatal("RewriteICMPError refused")
			}
			if !bytes.Equal(frame, want) {
				t.Fatalf("rewritten\n%x\nwant\n%x", frame, want)
			}
			again, e2 := parseICMP(t, frame)
			if again != info || e2 != e {
				t.Fatalf("info/e not kept up to date: %+v %+v, parsed %+v %+v", info, e, again, e2)
			}
			p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			if p.ErrorLayer() != nil {
				t.Fatalf("gopacket: %v", p.ErrorLayer().Error())
			}
		})
	}
}

func TestParseICMPErrorRefuses(t *testing.T) {
	a := netip.MustParseAddr
	inner4 := ipPacket(t, ProtoUDP, a("198.18.0.100"), a("198.18.0.2"), 80, 40000, []byte("x"))
	inner6 := ipPacket(t, ProtoUDP, a("fd00::100"), a("fd00::2"), 80, 40000, []byte("x"))
	frag := bytes.Clone(inner4)
	binary.BigEndian.PutUint16(frag[6:], 10)
	gre := bytes.Clone(inner4)
	gre[9] = 47
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"echo request", icmpFrame(t, a("198.18.0.2"), a("198.18.0.100"), 8, 0, inner4, 0)},
		{"echo reply v6", icmpFrame(t, a("fd00::2"), a("fd00::100"), 129, 0, inner6, 0)},
		{"redirect", icmpFrame(t, a("198.18.0.2"), a("198.18.0.100"), 5, 0, inner4, 0)},
		{"quote of 7 transport bytes", icmpFrame(t, a("198.18.0.2"), a("198.18.0.100"), 3, 3, inner4, 27)},
		{"quote of a v6 header only", icmpFrame(t, a("fd00::2"), a("fd00::100"), 1, 4, inner6, 40)},
		{"quoted later fragment", icmpFrame(t, a("198.18.0.2"), a("198.18.0.100"), 3, 3, frag, 0)},
		{"quoted gre", icmpFrame(t, a("198.18.0.2"), a("198.18.0.100"), 3, 3, gre, 0)},
		{"v6 quote in v4 error", icmpFrame(t, a("198.18.0.2"), a("198.18.0.100"), 3, 3, inner6, 0)},
		{"v4 quote in v6 error", icmpFrame(t, a("fd00::2"), a("fd00::100"), 1, 4, inner4, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var info Info
			Parse(tc.frame, &info)
			var e ICMPError
			if ParseICMPError(tc.frame, &info, &e) {
				t.Fatalf("accepted: %+v", e)
			}
		})
	}
	// A TCP packet is not an ICMP error.
	tcp := build(t, defaultSpec(false, ProtoTCP))
	info := parseOK(t, tcp)
	var e ICMPError
	if ParseICMPError(tcp, &info, &e) {
		t.Fatal("accepted a TCP packet")
	}
}

func TestRewriteAddrFragment(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame := build(t, defaultSpec(v6, ProtoUDP))
		var info Info
		Parse(frame, &info)
		n := as16(netip.MustParseAddr("198.18.5.5"))
		if v6 {
			n = as16(netip.MustParseAddr("2001:db8::5"))
		}
		if !RewriteDstAddr(frame, &info, n) || !RewriteSrcAddr(frame, &info, n) {
			t.Fatal("refused")
		}
		var again Info
		Parse(frame, &again)
		if again.Src != n || again.Dst != n || info != again {
			t.Fatalf("v6=%v: parsed %+v, info %+v", v6, again, info)
		}
		if !v6 && !IPv4HeaderChecksumValid(IPv4(frame[l3:])) {
			t.Fatal("IPv4 header checksum")
		}
	}
	var bad Info
	bad.Family, bad.L3Off = 4, 100
	if RewriteDstAddr(make([]byte, 50), &bad, [16]byte{}) {
		t.Fatal("rewrote outside the frame")
	}
}

// FuzzRewriteICMPError: whatever ParseICMPError accepts with a valid checksum can be
// translated; the result parses to the new values with every checksum right, and
// translating back restores the frame (the quoted transport checksum up to 0 / 0xFFFF).
func FuzzRewriteICMPError(f *testing.F) {
	a := netip.MustParseAddr
	for i, fr := range [][]byte{
		icmpFrame(f, a("198.18.0.2"), a("198.18.0.100"), 3, 3, ipPacket(f, ProtoUDP, a("198.18.0.100"), a("198.18.0.2"), 80, 4000, []byte("hi")), 0),
		icmpFrame(f, a("198.18.0.2"), a("198.18.0.100"), 11, 0, ipPacket(f, ProtoTCP, a("198.18.0.100"), a("198.18.0.2"), 80, 4000, nil), 28),
		icmpFrame(f, a("fd00::2"), a("fd00::100"), 2, 0, ipPacket(f, ProtoTCP, a("fd00::100"), a("fd00::2"), 80, 4000, []byte("hi")), 0),
		icmpFrame(f, a("fd00::2"), a("fd00::100"), 1, 4, ipPacket(f, ProtoUDP, a("fd00::100"), a("fd00::2"), 80, 4000, nil), 0),
	} {
		f.Add(fr, []byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 198, 18, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(8080+i))
	}
	f.Fuzz(func(t *testing.T, frame, addrs []byte, port uint16) {
		frame = bytes.Clone(frame)
		var info Info
		if Parse(frame, &info) != ResultUnsupportedProto {
			return
		}
		var e ICMPError
		if !ParseICMPError(frame, &info, &e) || !ICMPChecksumValid(frame, &info) {
			return
		}
		var x, y [16]byte
		copy(x[:], addrs)
		if len(addrs) > 16 {
			copy(y[:], addrs[16:])
		}
		if info.Family == 4 {
			x, y = mapped4(x[12:]), mapped4(y[12:])
		}
		orig := bytes.Clone(frame)
		oi, oe := info, e
		outer4 := info.Family == 4 && IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))
		inner4 := info.Family == 4 && IPv4HeaderChecksumValid(IPv4(frame[e.InnerL3Off:]))
		if !RewriteICMPError(frame, &info, &e, x, info.Dst, info.Src, y, port, e.DstPort^1) {
			t.Fatalf("refused what ParseICMPError accepted: %+v", e)
		}
		var again Info
		if r := Parse(frame, &again); r != ResultUnsupportedProto || again != info {
			t.Fatalf("reparse %v %+v, want %+v", r, again, info)
		}
		var e2 ICMPError
		if !ParseICMPError(frame, &again, &e2) || e2 != e {
			t.Fatalf("reparse ICMP %+v, want %+v", e2, e)
		}
		if !ICMPChecksumValid(frame, &info) {
			t.Fatal("ICMP checksum does not verify")
		}
		if outer4 && !IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:])) || inner4 && !IPv4HeaderChecksumValid(IPv4(frame[e.InnerL3Off:])) {
			t.Fatal("IPv4 header checksum does not verify")
		}
		if !RewriteICMPError(frame, &info, &e, oi.Src, oi.Dst, oe.Src, oe.Dst, oe.SrcPort, oe.DstPort) {
			t.Fatal("refused to translate back")
		}
		cs := int(e.InnerL4Off) + udpChecksum
		if e.Proto == ProtoTCP {
			cs = int(e.InnerL4Off) + tcpChecksum
		}
		for i := range frame {
			if frame[i] == orig[i] {
				continue
			}
			if (i == cs || i == cs+1) && cs+2 <= len(frame) {
				c, o := binary.BigEndian.Uint16(frame[cs:]), binary.BigEndian.Uint16(orig[cs:])
				if c^o == 0xFFFF && (c == 0 || o == 0) {
					continue
				}
			}
			if !outer4 && info.Family == 4 && i >= int(info.L3Off)+10 && i < int(info.L3Off)+12 {
				continue // a bad outer header checksum was replaced by a right one
			}
			if !inner4 && info.Family == 4 && (i >= int(e.InnerL3Off)+10 && i < int(e.InnerL3Off)+12 || i >= int(info.L4Off)+2 && i < int(info.L4Off)+4) {
				continue // so was a bad quoted header checksum, which the ICMP checksum covers
			}
			t.Fatalf("byte %d: %#x after the round trip, was %#x", i, frame[i], orig[i])
		}
	})
}
