package packet

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestViewsMatchGopacket reads every field through the views and compares
// it with gopacket's decoding of the same frame.
func TestViewsMatchGopacket(t *testing.T) {
	r := newRand(t)
	for i := 0; i < 200; i++ {
		s := randSpec(r)
		frame := build(t, s)
		info := parseOK(t, frame)
		pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)

		eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		e := Ethernet(frame)
		ed, es := e.Destination(), e.Source()
		if !e.IsValid() || !bytes.Equal(ed[:], eth.DstMAC) || !bytes.Equal(es[:], eth.SrcMAC) || e.Type() != uint16(eth.EthernetType) {
			t.Fatalf("packet %d: Ethernet view differs from gopacket", i)
		}
		if s.vlan {
			q := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
			if e.VLANTCI()&0x0FFF != q.VLANIdentifier || e.VLANTCI()>>13 != uint16(q.Priority) || e.InnerType() != uint16(q.Type) {
				t.Fatalf("packet %d: VLAN tag differs from gopacket", i)
			}
		}

		ipb := frame[info.L3Off:]
		if s.v6 {
			g := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			h := IPv6(ipb)
			if !h.IsValid(len(ipb)) || h.Version() != 6 || h.TrafficClass() != g.TrafficClass || h.FlowLabel() != g.FlowLabel ||
				h.PayloadLength() != g.Length || h.NextHeader() != uint8(g.NextHeader) || h.HopLimit() != g.HopLimit ||
				h.SourceAddress() != as16(netip.MustParseAddr(g.SrcIP.String())) ||
				h.DestinationAddress() != as16(netip.MustParseAddr(g.DstIP.String())) ||
				!bytes.Equal(h.Payload(), g.Payload) {
				t.Fatalf("packet %d: IPv6 view differs from gopacket", i)
			}
		} else {
			g := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			h := IPv4(ipb)
			if !h.IsValid(len(ipb)) || h.Version() != 4 || h.HeaderLength() != int(g.IHL)*4 || h.TOS() != g.TOS ||
				h.TotalLength() != g.Length || h.ID() != g.Id || h.DontFragment() != (g.Flags&layers.IPv4DontFragment != 0) ||
				h.MoreFragments() || h.FragmentOffset() != g.FragOffset*8 || h.TTL() != g.TTL ||
				h.Protocol() != uint8(g.Protocol) || h.Checksum() != g.Checksum ||
				h.SourceAddress() != as16(netip.MustParseAddr(g.SrcIP.String())) ||
				h.DestinationAddress() != as16(netip.MustParseAddr(g.DstIP.String())) ||
				!bytes.Equal(h.Payload(), g.Payload) {
				t.Fatalf("packet %d: IPv4 view differs from gopacket", i)
			}
		}

		seg := frame[info.L4Off : int(info.L3Off)+int(info.L3Len)]
		if s.proto == ProtoTCP {
			g := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			h := TCP(seg)
			if !h.IsValid(len(seg)) || h.SourcePort() != uint16(g.SrcPort) || h.DestinationPort() != uint16(g.DstPort) ||
				h.SequenceNumber() != g.Seq || h.AckNumber() != g.Ack || h.DataOffset() != int(g.DataOffset)*4 ||
				h.WindowSize() != g.Window || h.Checksum() != g.Checksum || h.UrgentPointer() != g.Urgent ||
				h.Flags()&TCPFlagSYN != 0 != g.SYN || h.Flags()&TCPFlagACK != 0 != g.ACK || h.Flags()&TCPFlagCWR != 0 != g.CWR ||
				len(h.Options()) != h.DataOffset()-TCPMinHeaderLen {
				t.Fatalf("packet %d: TCP view differs from gopacket", i)
			}
		} else {
			g := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			h := UDP(seg)
			if !h.IsValid(len(seg)) || h.SourcePort() != uint16(g.SrcPort) || h.DestinationPort() != uint16(g.DstPort) ||
				h.Length() != g.Length || h.Checksum() != g.Checksum {
				t.Fatalf("packet %d: UDP view differs from gopacket", i)
			}
		}
	}
}

// TestViewSetters writes fields through the setters and reads them back
// through gopacket.
func TestViewSetters(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) {
		frame := build(t, defaultSpec(false, ProtoTCP))
		h := IPv4(frame[EthernetHeaderLen:])
		src, dst := as16(netip.MustParseAddr("198.18.3.4")), as16(netip.MustParseAddr("198.19.5.6"))
		h.SetTOS(0xB8)
		h.SetID(0xBEEF)
		h.SetFlagsFragmentOffset(IPv4FlagMF | 3)
		h.SetTTL(9)
		h.SetSourceAddress(src)
		h.SetDestinationAddress(dst)
		h.ComputeChecksum()
		g := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if g.TOS != 0xB8 || g.Id != 0xBEEF || g.Flags != layers.IPv4MoreFragments || g.FragOffset != 3 || g.TTL != 9 ||
			g.SrcIP.String() != "198.18.3.4" || g.DstIP.String() != "198.19.5.6" {
			t.Fatalf("gopacket reads %+v", g)
		}
		if !h.IsFragment() || h.FragmentOffset() != 24 || !IPv4HeaderChecksumValid(h) {
			t.Fatal("fragment fields or checksum wrong after setters")
		}
		h.SetVersionIHL(24)
		if h.HeaderLength() != 24 || h.Version() != 4 {
			t.Fatalf("SetVersionIHL(24): header length %d version %d", h.HeaderLength(), h.Version())
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		frame := build(t, defaultSpec(true, ProtoUDP))
		h := IPv6(frame[EthernetHeaderLen:])
		h.SetVersionTrafficClassFlowLabel(0xAB, 0xFEDCBA)
		h.SetHopLimit(3)
		h.SetSourceAddress(as16(netip.MustParseAddr("2001:db8::aa")))
		h.SetDestinationAddress(as16(netip.MustParseAddr("2001:db8::bb")))
		g := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if g.TrafficClass != 0xAB || g.FlowLabel != 0xEDCBA || g.HopLimit != 3 || g.Version != 6 ||
			g.SrcIP.String() != "2001:db8::aa" || g.DstIP.String() != "2001:db8::bb" {
			t.Fatalf("gopacket reads %+v", g)
		}
	})
	t.Run("tcp udp ethernet", func(t *testing.T) {
		frame := build(t, defaultSpec(false, ProtoTCP))
		tcp := TCP(frame[EthernetHeaderLen+IPv4MinHeaderLen:])
		tcp.SetSourcePort(1)
		tcp.SetDestinationPort(2)
		tcp.SetFlags(TCPFlagFIN | TCPFlagACK)
		Ethernet(frame).SetType(EtherTypeIPv4)
		Ethernet(frame).SetSource([6]byte{2, 3, 4, 5, 6, 7})
		info := parseOK(t, frame)
		if info.SrcPort != 1 || info.DstPort != 2 || info.TCPFlags != TCPFlagFIN|TCPFlagACK {
			t.Fatalf("info %+v", info)
		}
		ComputeL4Checksum(frame, &info)
		g := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		gt := g.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !gt.FIN || !gt.ACK || gt.SYN || g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).SrcMAC.String() != "02:03:04:05:06:07" {
			t.Fatalf("gopacket reads %+v", gt)
		}

		uframe := build(t, defaultSpec(true, ProtoUDP))
		u := UDP(uframe[EthernetHeaderLen+IPv6HeaderLen:])
		u.SetSourcePort(53)
		u.SetDestinationPort(5353)
		u.SetLength(u.Length())
		info = parseOK(t, uframe)
		if info.SrcPort != 53 || info.DstPort != 5353 {
			t.Fatalf("info %+v", info)
		}
	})
}

func TestICMPv4View(t *testing.T) {
	frame := build(t, defaultSpec(false, ProtoICMP))
	var info Info
	if r := Parse(frame, &info); r != ResultUnsupportedProto || info.Proto != ProtoICMP {
		t.Fatalf("Parse = %v proto %d, want unsupported-proto icmp", r, info.Proto)
	}
	m := ICMPv4(frame[info.L4Off : int(info.L3Off)+int(info.L3Len)])
	if !m.IsValid() || m.Type() != ICMPv4EchoRequest || m.Code() != 0 || !m.ChecksumValid() {
		t.Fatalf("echo request: type %d code %d valid %v", m.Type(), m.Code(), m.ChecksumValid())
	}
	m.SetType(ICMPv4DestUnreachable)
	m.SetCode(ICMPv4CodeFragNeeded)
	m.SetNextHopMTU(1480)
	if m.ChecksumValid() {
		t.Fatal("checksum verifies after changes")
	}
	m.ComputeChecksum()
	g := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if g.TypeCode.Type() != ICMPv4DestUnreachable || g.TypeCode.Code() != ICMPv4CodeFragNeeded || m.NextHopMTU() != 1480 ||
		g.Seq != 1480 || g.Id != 0 || !m.ChecksumValid() || g.Checksum != m.Checksum() || !bytes.Equal(m.Payload(), g.Payload) {
		t.Fatalf("gopacket reads %+v", g)
	}
	var short ICMPv4 = make([]byte, 7)
	short.ComputeChecksum()
	if short.IsValid() || short.ChecksumValid() {
		t.Fatal("7-byte ICMP message counts as valid")
	}
}

func TestIsIPv4Mapped(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"198.18.0.1", true},
		{"::ffff:198.18.0.1", true},
		{"2001:db8::1", false},
		{"::1", false},
		{"::198.18.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if got := IsIPv4Mapped(as16(netip.MustParseAddr(tc.addr))); got != tc.want {
				t.Errorf("IsIPv4Mapped(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}
