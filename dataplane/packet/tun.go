package packet

import "encoding/binary"

// ProtoIPv6Encap is the IP protocol number of an encapsulated IPv6 packet (ip6ip6).
const ProtoIPv6Encap = 41

// TunnelHeaderLen is the outer header IPIP (20) or ip6ip6 (40) adds for family 4 or 6.
func TunnelHeaderLen(family uint8) int {
	if family == 6 {
		return IPv6HeaderLen
	}
	return IPv4MinHeaderLen
}

// PutTunnelHeader writes the outer IP header of an IPIP (family 4) or ip6ip6 (family 6)
// tunnel packet into hdr, which must hold TunnelHeaderLen(family) bytes and be directly
// followed by the inner packet inner (whole, of the same family). It sets the outer
// fields as IPVS's tunnel transmit does: IPv4 — protocol 4, TOS and TTL copied from the
// inner header, DF copied from the inner packet, no fragment offset or MF, identification
// id, header checksum; IPv6 — next header 41, traffic class and hop limit copied, flow
// label 0. src and dst are 16-byte addresses (IPv4-mapped for family 4). It reports false
// and writes nothing if hdr or inner is too short for family.
func PutTunnelHeader(hdr, inner []byte, family uint8, src, dst [16]byte, id uint16) bool {
	switch family {
	case 4:
		if len(hdr) < IPv4MinHeaderLen || len(inner) < IPv4MinHeaderLen || len(inner) > 0xFFFF-IPv4MinHeaderLen {
			return false
		}
		// Field by field at fixed offsets, the checksum from the words as they are
		// written (every tunnel packet pays for this header).
		in := (*[IPv4MinHeaderLen]byte)(inner)
		h := (*[IPv4MinHeaderLen]byte)(hdr)
		tl := uint16(IPv4MinHeaderLen + len(inner))
		df := binary.BigEndian.Uint16(in[ipv4FlagsFrag:]) & IPv4FlagDF
		h[ipv4VerIHL], h[ipv4TOS] = 0x45, in[ipv4TOS]
		binary.BigEndian.PutUint16(h[ipv4TotalLen:], tl)
		binary.BigEndian.PutUint16(h[ipv4ID:], id)
		binary.BigEndian.PutUint16(h[ipv4FlagsFrag:], df)
		h[ipv4TTL], h[ipv4Proto] = in[ipv4TTL], ProtoIPIP
		s4, d4 := binary.BigEndian.Uint32(src[12:]), binary.BigEndian.Uint32(dst[12:])
		binary.BigEndian.PutUint32(h[ipv4Src:], s4)
		binary.BigEndian.PutUint32(h[ipv4Dst:], d4)
		sum := uint32(0x45)<<8 | uint32(in[ipv4TOS])
		sum += uint32(tl) + uint32(id) + uint32(df) + (uint32(in[ipv4TTL])<<8 | ProtoIPIP)
		sum += s4>>16 + s4&0xFFFF + d4>>16 + d4&0xFFFF
		binary.BigEndian.PutUint16(h[ipv4Checksum:], ^Fold(sum))
		return true
	case 6:
		if len(hdr) < IPv6HeaderLen || len(inner) < IPv6HeaderLen || len(inner) > 0xFFFF {
			return false
		}
		in := IPv6(inner)
		h := IPv6(hdr[:IPv6HeaderLen])
		h.SetVersionTrafficClassFlowLabel(in.TrafficClass(), 0)
		h.SetPayloadLength(uint16(len(inner)))
		h.SetNextHeader(ProtoIPv6Encap)
		h.SetHopLimit(in.HopLimit())
		h.SetSourceAddress(src)
		h.SetDestinationAddress(dst)
		return true
	}
	return false
}

// ICMP error quoting limits: an ICMPv4 error is at most 576 bytes (RFC 1812), an ICMPv6
// error at most the IPv6 minimum MTU, 1280 (RFC 4443).
const (
	icmp4MaxLen = 576
	icmp6MaxLen = 1280
)

// ICMP types and codes xlvs sends.
const (
	ICMPv4DestUnreach  uint8 = 3
	ICMPv4FragNeeded   uint8 = 4 // code of ICMPv4DestUnreach
	ICMPv4PortUnreach  uint8 = 3 // code of ICMPv4DestUnreach
	ICMPv6DestUnreach  uint8 = 1
	ICMPv6PortUnreach  uint8 = 4 // code of ICMPv6DestUnreach
	ICMPv6PacketTooBig uint8 = 2
)

// ICMPErrorLen is the length of the IP packet PutICMPError builds about an offending IP
// packet of origLen bytes in family: IP header + 8 bytes of ICMP + as much of the
// original as the limits allow.
func ICMPErrorLen(family uint8, origLen int) int {
	hl, max := IPv4MinHeaderLen, icmp4MaxLen
	if family == 6 {
		hl, max = IPv6HeaderLen, icmp6MaxLen
	}
	return min(hl+8+origLen, max)
}

// PutICMPError builds, in out, an ICMP error (IPv4 or ICMPv6 by family) about the IP
// packet orig, addressed back to orig's source from orig's destination (what a host
// answers about a packet sent to one of its addresses): typ and code, the 32-bit field
// rest (the next-hop MTU of fragmentation-needed, the MTU of Packet Too Big, else 0), and
// as much of orig as fits the limits. out must hold ICMPErrorLen(family, len(orig))
// bytes and may overlap orig only if out starts at or before orig (the quote is copied
// forward with copy's memmove semantics). It returns the IP packet's length, or 0 if orig
// is too short to be answered.
func PutICMPError(out, orig []byte, family, typ, code uint8, rest uint32, ttl uint8) int {
	n := ICMPErrorLen(family, len(orig))
	if len(out) < n {
		return 0
	}
	switch family {
	case 4:
		if len(orig) < IPv4MinHeaderLen {
			return 0
		}
		o := IPv4(orig)
		src, dst := o.DestinationAddress(), o.SourceAddress()
		tos := o.TOS()
		copy(out[IPv4MinHeaderLen+8:n], orig) // first: out may overlap orig
		h := IPv4(out[:IPv4MinHeaderLen])
		h.SetVersionIHL(IPv4MinHeaderLen)
		h.SetTOS(tos & 0xFC)
		h.SetTotalLength(uint16(n))
		h.SetID(0)
		h.SetFlagsFragmentOffset(0)
		h.SetTTL(ttl)
		h.SetProtocol(ProtoICMP)
		h.SetSourceAddress(src)
		h.SetDestinationAddress(dst)
		h.ComputeChecksum()
		m := out[IPv4MinHeaderLen:n]
		m[0], m[1] = typ, code
		binary.BigEndian.PutUint32(m[4:8], rest)
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:4], ^Fold(Checksum(m, 0)))
	case 6:
		if len(orig) < IPv6HeaderLen {
			return 0
		}
		o := IPv6(orig)
		src, dst := o.DestinationAddress(), o.SourceAddress()
		copy(out[IPv6HeaderLen+8:n], orig)
		h := IPv6(out[:IPv6HeaderLen])
		h.SetVersionTrafficClassFlowLabel(0, 0)
		h.SetPayloadLength(uint16(n - IPv6HeaderLen))
		h.SetNextHeader(ProtoICMPv6)
		h.SetHopLimit(ttl)
		h.SetSourceAddress(src)
		h.SetDestinationAddress(dst)
		m := out[IPv6HeaderLen:n]
		m[0], m[1] = typ, code
		binary.BigEndian.PutUint32(m[4:8], rest)
		m[2], m[3] = 0, 0
		sum := PseudoHeaderSum(6, src, dst, ProtoICMPv6, uint32(len(m)))
		binary.BigEndian.PutUint16(m[2:4], ^Fold(Checksum(m, sum)))
	default:
		return 0
	}
	return n
}
