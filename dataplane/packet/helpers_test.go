package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// spec describes a test packet that build crafts with gopacket.
type spec struct {
	v6      bool
	proto   uint8 // ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6
	vlan    bool
	vlanTCI uint16
	src     netip.Addr
	dst     netip.Addr
	sport   uint16
	dport   uint16
	ttl     uint8 // IPv4 TTL or IPv6 hop limit; 0 means 64
	tcpFlag uint8
	tcpMSS  bool // add an MSS option (data offset 6)
	ipOpts  bool // add IPv4 options (NOP, NOP, record route: IHL 6+)
	udpNoCk bool // UDP over IPv4 sent without checksum (field 0)
	payload []byte
}

var (
	macA = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	macB = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// defaultSpec returns a small TCP SYN (IPv4 or IPv6) between test addresses.
func defaultSpec(v6 bool, proto uint8) spec {
	s := spec{
		v6:      v6,
		proto:   proto,
		src:     netip.MustParseAddr("198.18.0.1"),
		dst:     netip.MustParseAddr("198.19.255.254"),
		sport:   40000,
		dport:   80,
		tcpFlag: TCPFlagSYN,
		payload: []byte("hello, xlvs"),
	}
	if v6 {
		s.src = netip.MustParseAddr("2001:db8::1")
		s.dst = netip.MustParseAddr("2001:db8:ffff::80")
	}
	return s
}

// build serializes s with gopacket, computing lengths and checksums.
func build(t testing.TB, s spec) []byte {
	t.Helper()
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	if s.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	ls = append(ls, eth)
	if s.vlan {
		q := &layers.Dot1Q{
			Priority:       uint8(s.vlanTCI >> 13),
			DropEligible:   s.vlanTCI&0x1000 != 0,
			VLANIdentifier: s.vlanTCI & 0x0FFF,
			Type:           eth.EthernetType,
		}
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, q)
	}
	var nl gopacket.NetworkLayer
	if s.v6 {
		ip := &layers.IPv6{
			Version: 6, TrafficClass: 0x28, FlowLabel: 0x12345, HopLimit: ttl,
			NextHeader: layers.IPProtocol(s.proto), SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(),
		}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{
			Version: 4, TOS: 0x10, Id: 0x4242, Flags: layers.IPv4DontFragment, TTL: ttl,
			Protocol: layers.IPProtocol(s.proto), SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(),
		}
		if s.ipOpts {
			ip.Options = []layers.IPv4Option{
				{OptionType: 1},
				{OptionType: 1},
				// Record route with room for two addresses.
				{OptionType: 7, OptionLength: 11, OptionData: []byte{4, 0, 0, 0, 0, 0, 0, 0, 0}},
			}
		}
		nl = ip
		ls = append(ls, ip)
	}
	switch s.proto {
	case ProtoTCP:
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
			Seq: 0x01020304, Ack: 0x0A0B0C0D, Window: 65535,
			FIN: s.tcpFlag&TCPFlagFIN != 0, SYN: s.tcpFlag&TCPFlagSYN != 0,
			RST: s.tcpFlag&TCPFlagRST != 0, PSH: s.tcpFlag&TCPFlagPSH != 0,
			ACK: s.tcpFlag&TCPFlagACK != 0, URG: s.tcpFlag&TCPFlagURG != 0,
			ECE: s.tcpFlag&TCPFlagECE != 0, CWR: s.tcpFlag&TCPFlagCWR != 0,
		}
		if s.tcpMSS {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
		}
		must(t, tcp.SetNetworkLayerForChecksum(nl))
		ls = append(ls, tcp)
	case ProtoUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		must(t, udp.SetNetworkLayerForChecksum(nl))
		ls = append(ls, udp)
	case ProtoICMP:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1})
	case ProtoICMPv6:
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
		must(t, icmp.SetNetworkLayerForChecksum(nl))
		ls = append(ls, icmp)
	default:
		t.Fatalf("build: unsupported proto %d", s.proto)
	}
	ls = append(ls, gopacket.Payload(s.payload))
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	b := append([]byte(nil), buf.Bytes()...)
	if s.proto == ProtoUDP {
		var info Info
		if r := Parse(b, &info); r != ResultOK {
			t.Fatalf("build: crafted UDP packet does not parse: %v", r)
		}
		ck := b[int(info.L4Off)+6:]
		switch {
		case s.udpNoCk && !s.v6:
			binary.BigEndian.PutUint16(ck, 0)
		case binary.BigEndian.Uint16(ck) == 0:
			// gopacket writes a computed zero as zero; on the wire it is 0xFFFF.
			binary.BigEndian.PutUint16(ck, 0xFFFF)
		}
	}
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// as16 returns a in the package's [16]byte convention.
func as16(a netip.Addr) [16]byte { return a.As16() }

// randAddr returns a random address in 198.18.0.0/15 or 2001:db8::/32.
func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{198, 18 + byte(r.IntN(2)), byte(r.IntN(256)), byte(r.IntN(256))})
}

// randSpec returns a random TCP or UDP packet spec with a payload of
// 0..1500 bytes.
func randSpec(r *rand.Rand) spec {
	s := spec{
		v6:      r.IntN(2) == 0,
		proto:   ProtoTCP,
		vlan:    r.IntN(4) == 0,
		vlanTCI: uint16(r.IntN(1 << 16)),
		sport:   uint16(r.IntN(1 << 16)),
		dport:   uint16(r.IntN(1 << 16)),
		ttl:     uint8(1 + r.IntN(255)),
		tcpFlag: uint8(r.IntN(256)),
		tcpMSS:  r.IntN(2) == 0,
		payload: make([]byte, r.IntN(1501)),
	}
	if r.IntN(2) == 0 {
		s.proto = ProtoUDP
	}
	s.src, s.dst = randAddr(r, s.v6), randAddr(r, s.v6)
	if !s.v6 {
		s.ipOpts = r.IntN(4) == 0
		s.udpNoCk = s.proto == ProtoUDP && r.IntN(4) == 0
	}
	for i := range s.payload {
		s.payload[i] = byte(r.IntN(256))
	}
	return s
}

// checksumsValid reports whether every checksum of a parsed frame verifies.
func checksumsValid(frame []byte, info *Info) bool {
	if info.Family == 4 && !IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:])) {
		return false
	}
	return L4ChecksumValid(frame, info)
}

// wantInfo returns the Info that Parse must produce for a packet built from s.
func wantInfo(s spec) Info {
	w := Info{
		HasVLAN: s.vlan,
		Proto:   s.proto,
		Src:     as16(s.src),
		Dst:     as16(s.dst),
		L3Off:   EthernetHeaderLen,
	}
	if s.vlan {
		w.VLANTCI = s.vlanTCI
		w.L3Off += VLANTagLen
	}
	l4 := 0
	switch s.proto {
	case ProtoTCP:
		l4 = TCPMinHeaderLen
		if s.tcpMSS {
			l4 += 4
		}
		w.TCPFlags = s.tcpFlag
		w.SrcPort, w.DstPort = s.sport, s.dport
	case ProtoUDP:
		l4 = UDPHeaderLen
		w.SrcPort, w.DstPort = s.sport, s.dport
	case ProtoICMP, ProtoICMPv6:
		l4 = 8
		if s.proto == ProtoICMPv6 {
			l4 = 4 // gopacket's ICMPv6 layer is the 4-byte header
		}
	}
	hl := IPv6HeaderLen
	w.Family = 6
	if !s.v6 {
		w.Family = 4
		hl = IPv4MinHeaderLen
		if s.ipOpts {
			hl += 16 // 2 NOPs + 11-byte record route, padded to 16
		}
	}
	w.L4Off = w.L3Off + uint16(hl)
	w.L3Len = uint16(hl + l4 + len(s.payload))
	return w
}

// newRand returns a generator seeded from the test name, so a failure
// reproduces on the next run.
func newRand(t testing.TB) *rand.Rand {
	var seed uint64
	for _, c := range t.Name() {
		seed = seed*31 + uint64(c)
	}
	t.Logf("rand seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0x786c7673))
}
