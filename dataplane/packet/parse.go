package packet

import (
	"encoding/binary"
	"strconv"
)

// Info is the result of Parse: where the headers are and the flow tuple.
// It holds no pointers. After ResultOK every field is set. After
// ResultFragment, ResultUnsupportedProto and ResultBadL4Header the
// network-layer fields (L3Off, L4Off, Family, Proto, Src, Dst, L3Len, the
// fragment fields) and the VLAN fields are set, so the caller can still
// classify the packet (ICMP, a later fragment); ports and TCPFlags are zero.
// After other results only the VLAN fields may be set.
//
// A fragment (Frag) is an IPv4 packet with MF set or a non-zero offset, or an
// IPv6 packet whose fixed header is followed by a fragment header with MF set
// or a non-zero offset (an "atomic" fragment, offset 0 without MF, is treated
// as a whole packet, RFC 6946). For IPv6, L4Off and Proto then describe what
// follows the fragment header. A first fragment (FragOff 0) carries the
// transport header and parses as ResultOK; later ones are ResultFragment.
type Info struct {
	L3Off, L4Off uint16 // offsets of the IP header and of what follows it in the frame
	VLANTCI      uint16 // valid when HasVLAN
	HasVLAN      bool
	Family       uint8 // 4 or 6
	Proto        uint8 // IPv4 protocol or IPv6 next header (ProtoTCP, ProtoUDP, ...)
	// TCPFlags is the TCP flag byte, zero for UDP. For SCTP it is the chunk type that
	// IPVS's SCTP state machine takes (SCTPChunk), which the connection table reads
	// where TCP's flags go.
	TCPFlags         uint8
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	L3Len            uint16 // IP packet length: IPv4 total length, IPv6 40 + payload length

	Frag      bool   // the packet is a fragment of a larger datagram
	MoreFrags bool   // MF: more fragments follow this one
	FragOff   uint16 // offset of this fragment's data in the datagram, in bytes
	FragID    uint32 // IPv4 identification (16 bits) or IPv6 fragment identification
}

// Result says whether Parse found a forwardable TCP, UDP or SCTP packet and, if
// not, why. Its values are small consecutive integers below NumResults, so
// a worker can count drops in a [NumResults]uint64 array.
type Result uint8

// Parse results.
const (
	// ResultOK: a whole IPv4 or IPv6 packet carrying a whole TCP or UDP header, or a
	// well-formed SCTP packet (ValidSCTP).
	ResultOK Result = iota
	// ResultTruncated: the frame ends inside the Ethernet, VLAN or IP header.
	ResultTruncated
	// ResultNotIP: the EtherType is neither IPv4 nor IPv6 (ARP, LLDP, a
	// second VLAN tag, ...).
	ResultNotIP
	// ResultBadIPHeader: wrong IP version, IPv4 IHL below 5, or an IP length
	// field shorter than the header or longer than the frame.
	ResultBadIPHeader
	// ResultFragment: a fragment other than the first (non-zero offset) of
	// an IPv4 datagram, or of an IPv6 datagram whose first next header is a
	// fragment header: there is no transport header to parse. (A first
	// fragment parses as ResultOK with Info.Frag set.)
	ResultFragment
	// ResultUnsupportedProto: not TCP, UDP or SCTP (ICMP, ICMPv6, ...), or an IPv6
	// packet with extension headers before the transport header.
	ResultUnsupportedProto
	// ResultBadL4Header: the TCP header is shorter than 20 bytes, its data
	// offset is below 5 or reaches beyond the packet; or the UDP header is
	// cut or its length field is below 8 or beyond the packet; or the SCTP packet has
	// no chunk, or a chunk's length is below 4 or reaches beyond the packet.
	ResultBadL4Header

	// NumResults is the number of Result values.
	NumResults = iota
)

var resultNames = [NumResults]string{
	ResultOK:               "ok",
	ResultTruncated:        "truncated",
	ResultNotIP:            "not-ip",
	ResultBadIPHeader:      "bad-ip-header",
	ResultFragment:         "fragment",
	ResultUnsupportedProto: "unsupported-proto",
	ResultBadL4Header:      "bad-l4-header",
}

// String returns a short lower-case name for r, fit for a counter label.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// Parse parses an Ethernet frame carrying, after at most one 802.1Q tag, an
// IPv4 packet (options allowed) or an IPv6 packet whose next header is TCP or
// UDP, and fills info. The packet is frame[info.L3Off:info.L3Off+info.L3Len];
// trailing bytes after it (Ethernet padding) are ignored. Parse does not
// verify checksums. It never panics and never allocates.
func Parse(frame []byte, info *Info) Result {
	*info = Info{}
	if len(frame) < EthernetHeaderLen {
		return ResultTruncated
	}
	l3 := EthernetHeaderLen
	et := binary.BigEndian.Uint16(frame[ethType:])
	if et == EtherTypeVLAN {
		if len(frame) < EthernetHeaderLen+VLANTagLen {
			return ResultTruncated
		}
		info.HasVLAN = true
		info.VLANTCI = binary.BigEndian.Uint16(frame[ethVLANCI:])
		et = binary.BigEndian.Uint16(frame[ethVLANTy:])
		l3 += VLANTagLen
	}
	switch et {
	case EtherTypeIPv4:
		return parseIPv4(frame, l3, info)
	case EtherTypeIPv6:
		return parseIPv6(frame, l3, info)
	}
	return ResultNotIP
}

func parseIPv4(frame []byte, l3 int, info *Info) Result {
	if len(frame)-l3 < IPv4MinHeaderLen {
		return ResultTruncated
	}
	ip := IPv4(frame[l3:])
	if ip[ipv4VerIHL]>>4 != 4 {
		return ResultBadIPHeader
	}
	hl := ip.HeaderLength()
	if hl < IPv4MinHeaderLen {
		return ResultBadIPHeader
	}
	if hl > len(ip) {
		return ResultTruncated
	}
	tl := int(ip.TotalLength())
	if tl < hl || tl > len(ip) {
		return ResultBadIPHeader
	}
	info.Family = 4
	info.Proto = ip[ipv4Proto]
	info.L3Off = uint16(l3)
	info.L4Off = uint16(l3 + hl)
	info.L3Len = uint16(tl)
	// Store the mapped addresses in place: a [16]byte temporary built from
	// narrow stores and then copied with a wide load stalls store forwarding.
	putMapped4(&info.Src, ip[ipv4Src:ipv4Src+4])
	putMapped4(&info.Dst, ip[ipv4Dst:ipv4Dst+4])
	if ip.IsFragment() {
		info.Frag = true
		info.MoreFrags = ip.MoreFragments()
		info.FragOff = ip.FragmentOffset()
		info.FragID = uint32(ip.ID())
		if info.FragOff != 0 {
			return ResultFragment
		}
	}
	return parseL4(ip[hl:tl], info)
}

func parseIPv6(frame []byte, l3 int, info *Info) Result {
	if len(frame)-l3 < IPv6HeaderLen {
		return ResultTruncated
	}
	ip := IPv6(frame[l3:])
	if ip[ipv6VerTCFlow]>>4 != 6 {
		return ResultBadIPHeader
	}
	tl := IPv6HeaderLen + int(ip.PayloadLength())
	if tl > len(ip) || tl > 0xFFFF {
		return ResultBadIPHeader
	}
	if ip[ipv6NextHdr] == IPv6NextFragment && tl < IPv6HeaderLen+IPv6FragmentHeaderLen {
		return ResultBadIPHeader
	}
	info.Family = 6
	info.Proto = ip[ipv6NextHdr]
	info.L3Off = uint16(l3)
	info.L4Off = uint16(l3 + IPv6HeaderLen)
	info.L3Len = uint16(tl)
	info.Src = ip.SourceAddress()
	info.Dst = ip.DestinationAddress()
	if info.Proto != IPv6NextFragment {
		return parseL4(ip[IPv6HeaderLen:tl], info)
	}
	// RFC 8200, section 4.5: next header, reserved, offset<<3 | M, identification.
	fh := ip[IPv6HeaderLen : IPv6HeaderLen+IPv6FragmentHeaderLen]
	offM := binary.BigEndian.Uint16(fh[2:])
	info.Proto = fh[0]
	info.L4Off = uint16(l3 + IPv6HeaderLen + IPv6FragmentHeaderLen)
	if offM&0xFFF9 != 0 { // offset or M (the two reserved bits are ignored)
		info.Frag = true
		info.MoreFrags = offM&1 != 0
		info.FragOff = offM &^ 7
		info.FragID = binary.BigEndian.Uint32(fh[4:])
		if info.FragOff != 0 {
			return ResultFragment
		}
	}
	return parseL4(ip[IPv6HeaderLen+IPv6FragmentHeaderLen:tl], info)
}

// parseL4 checks the transport header at the start of seg, the bytes of the
// IP packet after its header, and fills ports and flags.
func parseL4(seg []byte, info *Info) Result {
	switch info.Proto {
	case ProtoTCP:
		t := TCP(seg)
		if !t.IsValid(len(seg)) {
			return ResultBadL4Header
		}
		info.SrcPort = t.SourcePort()
		info.DstPort = t.DestinationPort()
		info.TCPFlags = t.Flags()
		return ResultOK
	case ProtoUDP:
		u := UDP(seg)
		// A first fragment holds only the start of the datagram that the
		// UDP length describes.
		if !u.IsValid(len(seg)) && !(info.Frag && len(seg) >= UDPHeaderLen && int(u.Length()) > len(seg)) {
			return ResultBadL4Header
		}
		info.SrcPort = u.SourcePort()
		info.DstPort = u.DestinationPort()
		return ResultOK
	case ProtoSCTP:
		if !ValidSCTP(seg, info.Frag) {
			return ResultBadL4Header
		}
		s := SCTP(seg)
		info.SrcPort = s.SourcePort()
		info.DstPort = s.DestinationPort()
		info.TCPFlags = SCTPChunk(seg)
		return ResultOK
	}
	return ResultUnsupportedProto
}

// l4Segment returns the transport header and payload that the checksum of
// a packet parsed into info covers, or nil if info does not fit the frame.
// For UDP the segment ends where the UDP length field says.
func l4Segment(frame []byte, info *Info) []byte {
	l3, l4, end := int(info.L3Off), int(info.L4Off), int(info.L3Off)+int(info.L3Len)
	if l4 < l3 || end < l4 || end > len(frame) {
		return nil
	}
	seg := frame[l4:end]
	switch info.Proto {
	case ProtoTCP:
		if len(seg) < TCPMinHeaderLen {
			return nil
		}
		return seg
	case ProtoUDP:
		u := UDP(seg)
		if !u.IsValid(len(seg)) {
			return nil
		}
		return seg[:u.Length()]
	case ProtoSCTP:
		if len(seg) < SCTPHeaderLen {
			return nil
		}
		return seg
	}
	return nil
}

// L4ChecksumValid reports whether the TCP or UDP checksum of the packet that
// Parse described in info verifies, pseudo-header included, or SCTP's CRC32c.
// A UDP-over-IPv4 checksum of zero (no checksum) counts as valid. It is a full
// computation, meant for tests and tools rather than the per-packet path.
func L4ChecksumValid(frame []byte, info *Info) bool {
	seg := l4Segment(frame, info)
	if seg == nil {
		return false
	}
	if info.Proto == ProtoSCTP {
		return SCTPChecksumValid(seg)
	}
	if info.Proto == ProtoUDP && info.Family == 4 && UDP(seg).Checksum() == 0 {
		return true
	}
	sum := PseudoHeaderSum(info.Family, info.Src, info.Dst, info.Proto, uint32(len(seg)))
	return Fold(Checksum(seg, sum)) == 0xFFFF
}

// ComputeL4Checksum recomputes and stores the TCP, UDP or SCTP checksum of the
// packet that Parse described in info, for packets that were crafted or
// changed beyond what the incremental rewrites cover. A UDP result of zero is
// stored as 0xFFFF; a UDP-over-IPv4 packet gets a checksum even if it had
// none. A frame that info does not fit is left unchanged.
func ComputeL4Checksum(frame []byte, info *Info) {
	seg := l4Segment(frame, info)
	if seg == nil {
		return
	}
	if info.Proto == ProtoSCTP {
		SCTP(seg).SetChecksum(SCTPChecksum(seg))
		return
	}
	sum := PseudoHeaderSum(info.Family, info.Src, info.Dst, info.Proto, uint32(len(seg)))
	if info.Proto == ProtoTCP {
		t := TCP(seg)
		t.SetChecksum(0)
		t.SetChecksum(^Fold(Checksum(seg, sum)))
		return
	}
	u := UDP(seg)
	u.SetChecksum(0)
	c := ^Fold(Checksum(seg, sum))
	if c == 0 {
		c = 0xFFFF
	}
	u.SetChecksum(c)
}
