package packet

import "encoding/binary"

// ICMPv6 error types (RFC 4443). ICMPv6DestUnreach, ICMPv6PacketTooBig and
// ICMPv6PortUnreach are in tun.go.
const (
	ICMPv6TimeExceeded uint8 = 3
)

// ICMPError is what ParseICMPError found in an ICMP or ICMPv6 error message:
// its type and code, and the TCP or UDP packet it quotes (the packet that
// caused the error, as its sender wrote it). Offsets are into the frame.
// Pointer-free.
type ICMPError struct {
	Type, Code       uint8
	Proto            uint8  // the quoted packet's protocol: ProtoTCP, ProtoUDP or ProtoSCTP
	InnerL3Off       uint16 // the quoted IP header
	InnerL4Off       uint16 // the quoted transport header (at least 8 bytes of it are present)
	InnerEnd         uint16 // end of the quote: end of the outer packet
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
}

// IsICMPError reports whether typ is an error message xlvs forwards:
// destination unreachable (fragmentation needed included) and time exceeded
// for ICMPv4 (family 4); destination unreachable, packet too big and time
// exceeded for ICMPv6 (family 6). Echo and other informational messages are
// not errors.
func IsICMPError(family, typ uint8) bool {
	if family == 4 {
		return typ == ICMPv4DestUnreachable || typ == ICMPv4TimeExceeded
	}
	return family == 6 && (typ == ICMPv6DestUnreach || typ == ICMPv6PacketTooBig || typ == ICMPv6TimeExceeded)
}

// ParseICMPError parses the ICMP (family 4) or ICMPv6 (family 6) message of a
// packet that Parse described in info (ResultUnsupportedProto with Proto
// ProtoICMP or ProtoICMPv6, not a fragment) and fills e. It reports false,
// leaving e in an unspecified state, unless the message is an error
// (IsICMPError) quoting an IP header of the same family that is whole,
// carries TCP or UDP directly (IPv6: no extension headers), is not a later
// fragment, and is followed by at least 8 bytes of the transport header (RFC
// 792 guarantees 8). It does not verify checksums (see ICMPChecksumValid)
// and never allocates.
func ParseICMPError(frame []byte, info *Info, e *ICMPError) bool {
	l4, end := int(info.L4Off), int(info.L3Off)+int(info.L3Len)
	if info.Frag || l4 > end || end > len(frame) || end-l4 < ICMPv4HeaderLen {
		return false
	}
	switch {
	case info.Family == 4 && info.Proto == ProtoICMP:
	case info.Family == 6 && info.Proto == ProtoICMPv6:
	default:
		return false
	}
	m := frame[l4:end]
	if !IsICMPError(info.Family, m[0]) {
		return false
	}
	e.Type, e.Code = m[0], m[1]
	q := m[ICMPv4HeaderLen:]
	inner := l4 + ICMPv4HeaderLen
	var hl int
	if info.Family == 4 {
		if len(q) < IPv4MinHeaderLen || q[ipv4VerIHL]>>4 != 4 {
			return false
		}
		ip := IPv4(q)
		hl = ip.HeaderLength()
		if hl < IPv4MinHeaderLen || ip.FlagsFragmentOffset()&ipv4FragOffMask != 0 {
			return false
		}
		e.Proto = ip.Protocol()
		putMapped4(&e.Src, ip[ipv4Src:ipv4Src+4])
		putMapped4(&e.Dst, ip[ipv4Dst:ipv4Dst+4])
	} else {
		if len(q) < IPv6HeaderLen || q[ipv6VerTCFlow]>>4 != 6 {
			return false
		}
		ip := IPv6(q)
		hl = IPv6HeaderLen
		e.Proto = ip.NextHeader()
		e.Src = ip.SourceAddress()
		e.Dst = ip.DestinationAddress()
	}
	if e.Proto != ProtoTCP && e.Proto != ProtoUDP && e.Proto != ProtoSCTP || len(q) < hl+8 {
		return false
	}
	e.SrcPort = binary.BigEndian.Uint16(q[hl:])
	e.DstPort = binary.BigEndian.Uint16(q[hl+2:])
	e.InnerL3Off = uint16(inner)
	e.InnerL4Off = uint16(inner + hl)
	e.InnerEnd = uint16(end)
	return true
}

// ICMPChecksumValid reports whether the checksum of the ICMP (family 4) or
// ICMPv6 (family 6, with the pseudo-header) message of the packet that Parse
// described in info verifies. A full computation over the message.
func ICMPChecksumValid(frame []byte, info *Info) bool {
	l4, end := int(info.L4Off), int(info.L3Off)+int(info.L3Len)
	if l4 > end || end > len(frame) || end-l4 < ICMPv4HeaderLen {
		return false
	}
	m := frame[l4:end]
	var sum uint32
	if info.Family == 6 {
		sum = PseudoHeaderSum(6, info.Src, info.Dst, ProtoICMPv6, uint32(len(m)))
	}
	return Fold(Checksum(m, sum)) == 0xFFFF
}

// RewriteICMPError translates an ICMP error that ParseICMPError described in
// e (for the packet Parse described in info): the outer source and
// destination become outerSrc and outerDst, the quoted packet's addresses and
// ports become innerSrc:innerSrcPort and innerDst:innerDstPort. It keeps every
// checksum right: the outer IPv4 header's, the quoted IPv4 header's, the
// quoted TCP or UDP checksum when the quote holds it (updated incrementally,
// so it stays right for the whole original datagram; a UDP-over-IPv4 zero
// stays zero), and the ICMP checksum (recomputed over the message, with the
// new pseudo-header for ICMPv6). info and e are updated. Addresses are in the
// packet's family (IPv4-mapped for IPv4). It reports false and changes
// nothing if info or e does not fit the frame. It never allocates.
func RewriteICMPError(frame []byte, info *Info, e *ICMPError, outerSrc, outerDst, innerSrc, innerDst [16]byte, innerSrcPort, innerDstPort uint16) bool {
	l3, l4, end := int(info.L3Off), int(info.L4Off), int(info.L3Off)+int(info.L3Len)
	il3, il4, iend := int(e.InnerL3Off), int(e.InnerL4Off), int(e.InnerEnd)
	if end > len(frame) || l4 < l3 || l4+ICMPv4HeaderLen != il3 || il3 > il4 || il4+8 > iend || iend != end {
		return false
	}
	var addrLen, srcOff, dstOff int
	switch info.Family {
	case 4:
		if l4-l3 < IPv4MinHeaderLen || il4-il3 < IPv4MinHeaderLen {
			return false
		}
		addrLen, srcOff, dstOff = 4, ipv4Src, ipv4Dst
	case 6:
		if l4-l3 != IPv6HeaderLen || il4-il3 != IPv6HeaderLen {
			return false
		}
		addrLen, srcOff, dstOff = 16, ipv6Src, ipv6Dst
	default:
		return false
	}
	a := 16 - addrLen // the family's bytes of a [16]byte address

	// The quoted transport checksum first, while the old values are in place.
	in := frame[il3:il4]
	delta := fieldDelta(in[srcOff:srcOff+addrLen], innerSrc[a:])
	delta += fieldDelta(in[dstOff:dstOff+addrLen], innerDst[a:])
	ports := frame[il4 : il4+4]
	delta += uint32(^binary.BigEndian.Uint16(ports[0:])) + uint32(innerSrcPort)
	delta += uint32(^binary.BigEndian.Uint16(ports[2:])) + uint32(innerDstPort)
	csOff := il4 + udpChecksum
	if e.Proto == ProtoTCP {
		csOff = il4 + tcpChecksum
	}
	// A quoted SCTP packet's CRC32c covers the whole packet, which the quote holds only
	// the start of: it is left as it was, as IPVS leaves it (ip_vs_nat_icmp).
	if csOff+2 <= iend && e.Proto != ProtoSCTP {
		c := binary.BigEndian.Uint16(frame[csOff:])
		if !(e.Proto == ProtoUDP && info.Family == 4 && c == 0) {
			c = ^Fold(uint32(^c) + uint32(Fold(delta)))
			if c == 0 && e.Proto == ProtoUDP {
				c = 0xFFFF
			}
			binary.BigEndian.PutUint16(frame[csOff:], c)
		}
	}
	copy(in[srcOff:srcOff+addrLen], innerSrc[a:])
	copy(in[dstOff:dstOff+addrLen], innerDst[a:])
	binary.BigEndian.PutUint16(ports[0:], innerSrcPort)
	binary.BigEndian.PutUint16(ports[2:], innerDstPort)

	out := frame[l3:l4]
	copy(out[srcOff:srcOff+addrLen], outerSrc[a:])
	copy(out[dstOff:dstOff+addrLen], outerDst[a:])
	if info.Family == 4 {
		IPv4(in).ComputeChecksum()
		IPv4(out).ComputeChecksum()
	}

	m := frame[l4:end]
	m[2], m[3] = 0, 0
	var sum uint32
	if info.Family == 6 {
		sum = PseudoHeaderSum(6, outerSrc, outerDst, ProtoICMPv6, uint32(len(m)))
	}
	binary.BigEndian.PutUint16(m[2:], ^Fold(Checksum(m, sum)))

	info.Src, info.Dst = outerSrc, outerDst
	e.Src, e.Dst, e.SrcPort, e.DstPort = innerSrc, innerDst, innerSrcPort, innerDstPort
	return true
}

// RewriteDstAddr sets only the destination address of the packet that Parse
// described in info, updating the IPv4 header checksum incrementally, and
// stores addr in info.Dst. It is for later fragments, which carry no
// transport header: the first fragment's RewriteDst already corrected the
// datagram's transport checksum for the new address. It reports false and
// changes nothing if info does not fit the frame.
func RewriteDstAddr(frame []byte, info *Info, addr [16]byte) bool {
	if !rewriteAddr(frame, info, addr, ipv4Dst, ipv6Dst) {
		return false
	}
	info.Dst = addr
	return true
}

// RewriteSrcAddr is RewriteDstAddr for the source address (stored in
// info.Src).
func RewriteSrcAddr(frame []byte, info *Info, addr [16]byte) bool {
	if !rewriteAddr(frame, info, addr, ipv4Src, ipv6Src) {
		return false
	}
	info.Src = addr
	return true
}

func rewriteAddr(frame []byte, info *Info, addr [16]byte, v4Off, v6Off int) bool {
	l3 := int(info.L3Off)
	switch info.Family {
	case 4:
		if l3+IPv4MinHeaderLen > len(frame) {
			return false
		}
		ip := frame[l3 : l3+IPv4MinHeaderLen]
		field := ip[v4Off : v4Off+4]
		hc := binary.BigEndian.Uint16(ip[ipv4Checksum:])
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], ^Fold(uint32(^hc)+addr4Delta(field, addr[12:16])))
		copy(field, addr[12:])
		return true
	case 6:
		if l3+IPv6HeaderLen > len(frame) {
			return false
		}
		copy(frame[l3+v6Off:l3+v6Off+16], addr[:])
		return true
	}
	return false
}
