package packet

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Offsets in an untagged frame, for mutations.
const (
	l3  = EthernetHeaderLen
	l4v = EthernetHeaderLen + IPv4MinHeaderLen
	l46 = EthernetHeaderLen + IPv6HeaderLen
)

func put16(off int, v uint16) func([]byte) []byte {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
}

func put8(off int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[off] = v; return b }
}

func cut(n int) func([]byte) []byte {
	return func(b []byte) []byte { return b[:n:n] }
}

func arpFrame(t testing.TB) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macA, SourceProtAddress: []byte{198, 18, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 2},
	}
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp))
	return buf.Bytes()
}

func TestParse(t *testing.T) {
	v4tcp := defaultSpec(false, ProtoTCP)
	v4udp := defaultSpec(false, ProtoUDP)
	v6tcp := defaultSpec(true, ProtoTCP)
	v6udp := defaultSpec(true, ProtoUDP)
	with := func(s spec, f func(*spec)) spec { f(&s); return s }

	tests := []struct {
		name   string
		s      spec
		raw    func(testing.TB) []byte // overrides s when set
		mutate func([]byte) []byte
		want   Result
		// checkInfo compares the whole Info with wantInfo(s).
		checkInfo bool
	}{
		{name: "ipv4 tcp", s: v4tcp, want: ResultOK, checkInfo: true},
		{name: "ipv4 udp", s: v4udp, want: ResultOK, checkInfo: true},
		{name: "ipv6 tcp", s: v6tcp, want: ResultOK, checkInfo: true},
		{name: "ipv6 udp", s: v6udp, want: ResultOK, checkInfo: true},
		{name: "vlan ipv4 tcp", s: with(v4tcp, func(s *spec) { s.vlan, s.vlanTCI = true, 0xA123 }), want: ResultOK, checkInfo: true},
		{name: "vlan ipv6 udp", s: with(v6udp, func(s *spec) { s.vlan, s.vlanTCI = true, 0x0FFF }), want: ResultOK, checkInfo: true},
		{name: "ipv4 options tcp", s: with(v4tcp, func(s *spec) { s.ipOpts = true }), want: ResultOK, checkInfo: true},
		{name: "vlan ipv4 options udp", s: with(v4udp, func(s *spec) { s.ipOpts, s.vlan, s.vlanTCI = true, true, 7 }), want: ResultOK, checkInfo: true},
		{name: "tcp mss option", s: with(v6tcp, func(s *spec) { s.tcpMSS = true }), want: ResultOK, checkInfo: true},
		{name: "tcp all flags", s: with(v4tcp, func(s *spec) { s.tcpFlag = 0xFF }), want: ResultOK, checkInfo: true},
		{name: "ipv4 udp without checksum", s: with(v4udp, func(s *spec) { s.udpNoCk = true }), want: ResultOK, checkInfo: true},
		{name: "ethernet padding after short packet", s: with(v4tcp, func(s *spec) { s.payload = nil }), want: ResultOK, checkInfo: true},
		{name: "udp length below ip payload", s: v4udp, mutate: put16(l4v+4, UDPHeaderLen+1), want: ResultOK},

		{name: "arp", raw: arpFrame, want: ResultNotIP},
		{name: "double vlan tag", s: with(v4tcp, func(s *spec) { s.vlan = true }), mutate: put16(16, EtherTypeVLAN), want: ResultNotIP},
		{name: "802.3 length field", s: v4tcp, mutate: put16(12, 0x0040), want: ResultNotIP},

		{name: "icmpv4", s: defaultSpec(false, ProtoICMP), want: ResultUnsupportedProto, checkInfo: true},
		{name: "icmpv6", s: defaultSpec(true, ProtoICMPv6), want: ResultUnsupportedProto, checkInfo: true},
		{name: "ipv4 gre", s: v4tcp, mutate: put8(l3+9, 47), want: ResultUnsupportedProto},
		{name: "ipv6 hop-by-hop", s: v6tcp, mutate: put8(l3+6, IPv6NextHopByHop), want: ResultUnsupportedProto},
		{name: "ipv6 routing header", s: v6udp, mutate: put8(l3+6, IPv6NextRouting), want: ResultUnsupportedProto},

		{name: "ipv4 first fragment tcp", s: v4tcp, mutate: put16(l3+6, IPv4FlagMF), want: ResultOK},
		{name: "ipv4 first fragment udp longer than the fragment", s: v4udp, mutate: func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[l3+6:], IPv4FlagMF)
			binary.BigEndian.PutUint16(b[l4v+4:], 3000)
			return b
		}, want: ResultOK},
		{name: "ipv4 whole udp length beyond packet", s: v4udp, mutate: put16(l4v+4, 3000), want: ResultBadL4Header},
		{name: "ipv4 fragment offset", s: v4udp, mutate: put16(l3+6, 185), want: ResultFragment},
		{name: "ipv4 last fragment with df", s: v4udp, mutate: put16(l3+6, IPv4FlagDF|1), want: ResultFragment},
		{name: "ipv6 fragment header, later fragment", s: v6udp, mutate: func(b []byte) []byte {
			b[l3+6] = IPv6NextFragment
			b[l46], b[l46+1] = ProtoUDP, 0
			binary.BigEndian.PutUint16(b[l46+2:], 1480|1)
			return b
		}, want: ResultFragment},
		{name: "ipv6 fragment header cut", s: v6udp, mutate: func(b []byte) []byte {
			b[l3+6] = IPv6NextFragment
			binary.BigEndian.PutUint16(b[l3+4:], 7)
			return b
		}, want: ResultBadIPHeader},
		{name: "ipv6 first fragment udp", raw: func(t testing.TB) []byte { return v6FragFrame(t, ProtoUDP, 0, true) }, want: ResultOK},
		{name: "ipv6 first fragment tcp", raw: func(t testing.TB) []byte { return v6FragFrame(t, ProtoTCP, 0, true) }, want: ResultOK},
		{name: "ipv6 atomic fragment", raw: func(t testing.TB) []byte { return v6FragFrame(t, ProtoUDP, 0, false) }, want: ResultOK},
		{name: "ipv6 last fragment", raw: func(t testing.TB) []byte { return v6FragFrame(t, ProtoUDP, 1232, false) }, want: ResultFragment},

		{name: "ipv4 ethertype version 6", s: v4tcp, mutate: put8(l3, 0x65), want: ResultBadIPHeader},
		{name: "ipv6 ethertype version 4", s: v6tcp, mutate: put8(l3, 0x45), want: ResultBadIPHeader},
		{name: "ipv4 ihl 4", s: v4tcp, mutate: put8(l3, 0x44), want: ResultBadIPHeader},
		{name: "ipv4 ihl 0", s: v4tcp, mutate: put8(l3, 0x40), want: ResultBadIPHeader},
		{name: "ipv4 total length below header", s: v4tcp, mutate: put16(l3+2, 19), want: ResultBadIPHeader},
		{name: "ipv4 total length below ihl", s: with(v4tcp, func(s *spec) { s.ipOpts = true }), mutate: put16(l3+2, 24), want: ResultBadIPHeader},
		{name: "ipv4 total length beyond frame", s: v4tcp, mutate: put16(l3+2, 1500), want: ResultBadIPHeader},
		{name: "ipv6 payload length beyond frame", s: v6tcp, mutate: put16(l3+4, 1000), want: ResultBadIPHeader},

		{name: "empty frame", raw: func(testing.TB) []byte { return nil }, want: ResultTruncated},
		{name: "13 bytes", s: v4tcp, mutate: cut(13), want: ResultTruncated},
		{name: "vlan tag cut", s: with(v4tcp, func(s *spec) { s.vlan = true }), mutate: cut(17), want: ResultTruncated},
		{name: "ipv4 header cut", s: v4tcp, mutate: cut(l3 + 19), want: ResultTruncated},
		{name: "ipv4 options cut", s: with(v4tcp, func(s *spec) { s.ipOpts = true }), mutate: cut(l3 + 30), want: ResultTruncated},
		{name: "ipv6 header cut", s: v6tcp, mutate: cut(l3 + 39), want: ResultTruncated},

		{name: "tcp data offset 4", s: v4tcp, mutate: put8(l4v+12, 4<<4), want: ResultBadL4Header},
		{name: "tcp data offset 0", s: v6tcp, mutate: put8(l46+12, 0), want: ResultBadL4Header},
		{name: "tcp data offset beyond packet", s: v4tcp, mutate: put8(l4v+12, 15<<4), want: ResultBadL4Header},
		{name: "tcp header beyond ip length", s: v4tcp, mutate: put16(l3+2, 20+19), want: ResultBadL4Header},
		{name: "ipv6 tcp header beyond payload length", s: v6tcp, mutate: put16(l3+4, 10), want: ResultBadL4Header},
		{name: "udp length 7", s: v4udp, mutate: put16(l4v+4, 7), want: ResultBadL4Header},
		{name: "udp length beyond packet", s: v6udp, mutate: put16(l46+4, 8+12), want: ResultBadL4Header},
		{name: "udp header beyond ip length", s: v4udp, mutate: put16(l3+2, 20+7), want: ResultBadL4Header},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var frame []byte
			if tc.raw != nil {
				frame = tc.raw(t)
			} else {
				frame = build(t, tc.s)
			}
			if tc.mutate != nil {
				frame = tc.mutate(frame)
			}
			info := Info{Family: 99, SrcPort: 1} // Parse must reset stale fields
			got := Parse(frame, &info)
			if got != tc.want {
				t.Fatalf("Parse = %v, want %v (info %+v)", got, tc.want, info)
			}
			if tc.checkInfo {
				if want := wantInfo(tc.s); info != want {
					t.Errorf("info =\n%+v\nwant\n%+v", info, want)
				}
			}
			if got == ResultOK {
				checkOKInvariants(t, frame, &info)
			}
		})
	}
}

// checkOKInvariants checks what ResultOK promises against the header views.
func checkOKInvariants(t *testing.T, frame []byte, info *Info) {
	t.Helper()
	l3, l4, end := int(info.L3Off), int(info.L4Off), int(info.L3Off)+int(info.L3Len)
	if end > len(frame) || l4 > end {
		t.Fatalf("offsets outside frame: l3 %d l4 %d end %d len %d", l3, l4, end, len(frame))
	}
	switch info.Family {
	case 4:
		ip := IPv4(frame[l3:end])
		if !ip.IsValid(int(info.L3Len)) || ip.HeaderLength() != l4-l3 || ip.IsFragment() != info.Frag {
			t.Fatalf("IPv4 header does not match info %+v", info)
		}
		if info.Frag && (ip.FragmentOffset() != 0 || info.FragOff != 0 || uint32(ip.ID()) != info.FragID || ip.MoreFragments() != info.MoreFrags) {
			t.Fatalf("IPv4 fragment fields do not match info %+v", info)
		}
		if ip.SourceAddress() != info.Src || ip.DestinationAddress() != info.Dst || ip.Protocol() != info.Proto {
			t.Fatalf("IPv4 tuple does not match info %+v", info)
		}
	case 6:
		ip := IPv6(frame[l3:end])
		proto, hl := ip.NextHeader(), IPv6HeaderLen
		if proto == IPv6NextFragment {
			proto, hl = ip[IPv6HeaderLen], IPv6HeaderLen+IPv6FragmentHeaderLen
			off := binary.BigEndian.Uint16(ip[IPv6HeaderLen+2:])
			if off&^7 != 0 || info.FragOff != 0 || info.Frag != (off&1 != 0) || info.Frag && info.FragID != binary.BigEndian.Uint32(ip[IPv6HeaderLen+4:]) {
				t.Fatalf("IPv6 fragment header does not match info %+v", info)
			}
		} else if info.Frag {
			t.Fatalf("IPv6 packet without fragment header parsed as a fragment: %+v", info)
		}
		if !ip.IsValid(int(info.L3Len)) || l4-l3 != hl {
			t.Fatalf("IPv6 header does not match info %+v", info)
		}
		if ip.SourceAddress() != info.Src || ip.DestinationAddress() != info.Dst || proto != info.Proto {
			t.Fatalf("IPv6 tuple does not match info %+v", info)
		}
	default:
		t.Fatalf("family %d after ResultOK", info.Family)
	}
	seg := frame[l4:end]
	switch info.Proto {
	case ProtoTCP:
		tcp := TCP(seg)
		if !tcp.IsValid(len(seg)) || l4+tcp.DataOffset() > end {
			t.Fatalf("TCP header does not fit: info %+v", info)
		}
		if tcp.SourcePort() != info.SrcPort || tcp.DestinationPort() != info.DstPort || tcp.Flags() != info.TCPFlags {
			t.Fatalf("TCP ports/flags do not match info %+v", info)
		}
	case ProtoUDP:
		udp := UDP(seg)
		valid := udp.IsValid(len(seg)) || info.Frag && int(udp.Length()) > len(seg)
		if !valid || udp.SourcePort() != info.SrcPort || udp.DestinationPort() != info.DstPort {
			t.Fatalf("UDP header does not match info %+v", info)
		}
	default:
		t.Fatalf("proto %d after ResultOK", info.Proto)
	}
}

// TestParseTruncation cuts valid frames at every length: a cut frame never
// parses as OK (unless only Ethernet padding was cut) and never panics.
func TestParseTruncation(t *testing.T) {
	specs := map[string]spec{}
	for _, v6 := range []bool{false, true} {
		for _, p := range []uint8{ProtoTCP, ProtoUDP} {
			s := defaultSpec(v6, p)
			name := map[bool]string{false: "ipv4", true: "ipv6"}[v6] + map[uint8]string{ProtoTCP: " tcp", ProtoUDP: " udp"}[p]
			specs[name] = s
			e := s
			e.payload = nil // short enough for Ethernet padding to 60 bytes
			specs[name+" empty"] = e
			s.vlan, s.tcpMSS = true, true
			s.ipOpts = !v6
			specs[name+" vlan options"] = s
			s.payload = nil
			specs[name+" vlan options empty"] = s
		}
	}
	for name, s := range specs {
		t.Run(name, func(t *testing.T) {
			full := build(t, s)
			var info Info
			if r := Parse(full, &info); r != ResultOK {
				t.Fatalf("full frame: %v", r)
			}
			want := info
			end := int(info.L3Off) + int(info.L3Len)
			for n := 0; n <= len(full); n++ {
				frame := append([]byte(nil), full[:n]...)
				frame = frame[:n:n]
				got := Parse(frame, &info)
				if n < end {
					if got == ResultOK {
						t.Fatalf("len %d of %d: ResultOK for a cut packet", n, end)
					}
					// Short of the IP header (options included) the frame is
					// truncated; after it, the IP length field is too long.
					wantR := ResultBadIPHeader
					if n < int(want.L4Off) {
						wantR = ResultTruncated
					}
					if got != wantR {
						t.Fatalf("len %d: Parse = %v, want %v", n, got, wantR)
					}
					continue
				}
				if got != ResultOK || info != want {
					t.Fatalf("len %d (packet ends at %d): Parse = %v info %+v, want OK %+v", n, end, got, info, want)
				}
			}
		})
	}
}

func TestResultString(t *testing.T) {
	seen := map[string]bool{}
	for r := Result(0); r < NumResults; r++ {
		s := r.String()
		if s == "" || strings.HasPrefix(s, "result(") || seen[s] {
			t.Errorf("Result(%d).String() = %q: want a unique name", r, s)
		}
		seen[s] = true
	}
	if got := Result(NumResults).String(); got != "result(7)" {
		t.Errorf("out-of-range String() = %q, want result(7)", got)
	}
}

// TestParseMatchesGopacket decodes random packets with gopacket and compares
// the tuple with Parse's.
func TestParseMatchesGopacket(t *testing.T) {
	r := newRand(t)
	for i := 0; i < 300; i++ {
		s := randSpec(r)
		frame := build(t, s)
		var info Info
		if res := Parse(frame, &info); res != ResultOK {
			t.Fatalf("packet %d: %v", i, res)
		}
		if want := wantInfo(s); info != want {
			t.Fatalf("packet %d: info\n%+v\nwant\n%+v", i, info, want)
		}
		pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		if el := pkt.ErrorLayer(); el != nil {
			t.Fatalf("gopacket: %v", el.Error())
		}
		nf, tf := pkt.NetworkLayer().NetworkFlow(), pkt.TransportLayer().TransportFlow()
		if got, want := addrString(info.Src, info.Family), nf.Src().String(); got != want {
			t.Fatalf("src %s, gopacket %s", got, want)
		}
		if got, want := addrString(info.Dst, info.Family), nf.Dst().String(); got != want {
			t.Fatalf("dst %s, gopacket %s", got, want)
		}
		if sp, dp := binary.BigEndian.Uint16(tf.Src().Raw()), binary.BigEndian.Uint16(tf.Dst().Raw()); sp != info.SrcPort || dp != info.DstPort {
			t.Fatalf("ports %d>%d, gopacket %d>%d", info.SrcPort, info.DstPort, sp, dp)
		}
		if !checksumsValid(frame, &info) {
			t.Fatalf("packet %d: gopacket-made checksums do not verify", i)
		}
	}
}

func addrString(a [16]byte, family uint8) string {
	if family == 4 {
		return net.IP(a[12:]).String()
	}
	return net.IP(a[:]).String()
}

// v6FragFrame builds an IPv6 frame with a fragment header (identification
// 0x01020304, offset off, M as more) followed by a TCP or UDP header and 16
// bytes of payload; the UDP length claims a longer datagram when more is set.
func v6FragFrame(t testing.TB, proto uint8, off uint16, more bool) []byte {
	t.Helper()
	s := defaultSpec(true, proto)
	whole := build(t, s)
	l4 := whole[l46:]
	frame := make([]byte, 0, len(whole)+IPv6FragmentHeaderLen)
	frame = append(frame, whole[:l46]...)
	fh := make([]byte, IPv6FragmentHeaderLen)
	fh[0] = proto
	m := off
	if more {
		m |= 1
	}
	binary.BigEndian.PutUint16(fh[2:], m)
	binary.BigEndian.PutUint32(fh[4:], 0x01020304)
	frame = append(frame, fh...)
	frame = append(frame, l4...)
	frame[l3+6] = IPv6NextFragment
	binary.BigEndian.PutUint16(frame[l3+4:], uint16(len(frame)-l46))
	if more && proto == ProtoUDP {
		binary.BigEndian.PutUint16(frame[l46+IPv6FragmentHeaderLen+4:], 3000)
	}
	return frame
}
