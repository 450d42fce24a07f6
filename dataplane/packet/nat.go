package packet

import (
	"encoding/binary"
	"math/bits"
)

// RewriteDst sets the destination address and port of the TCP, UDP or SCTP
// packet that Parse described in info, updates the IPv4 header checksum and the
// transport checksum incrementally, and stores addr and port in info.Dst and
// info.DstPort. addr is in the packet's family (IPv4-mapped for IPv4).
//
// A UDP-over-IPv4 checksum of zero stays zero; a UDP checksum that comes out
// as zero is written as 0xFFFF. SCTP's CRC32c covers no addresses; a changed
// port updates it (crc32c.go), except in the first fragment of a fragmented
// packet, whose checksum covers bytes the frame does not hold: see
// SCTPPortsFixable. If info does not describe a TCP, UDP or SCTP packet that
// fits the frame, nothing changes.
func RewriteDst(frame []byte, info *Info, addr [16]byte, port uint16) {
	if rewrite(frame, info, addr, port, ipv4Dst, ipv6Dst, tcpDstPort) {
		info.Dst = addr
		info.DstPort = port
	}
}

// RewriteSrc is RewriteDst for the source address and port; it stores addr
// and port in info.Src and info.SrcPort.
func RewriteSrc(frame []byte, info *Info, addr [16]byte, port uint16) {
	if rewrite(frame, info, addr, port, ipv4Src, ipv6Src, tcpSrcPort) {
		info.Src = addr
		info.SrcPort = port
	}
}

// rewrite replaces one address (at v4Off or v6Off in the IP header) and one
// port (at portOff in the transport header; TCP and UDP agree on the port
// offsets) and patches the checksums. It reports whether it changed the frame.
func rewrite(frame []byte, info *Info, addr [16]byte, port uint16, v4Off, v6Off, portOff int) bool {
	l3, l4 := int(info.L3Off), int(info.L4Off)
	csumOff, sctp, ok := l4Rewritable(frame, info)
	if !ok {
		return false
	}

	var delta uint32 // one's complement sum of ~old + new over the changed words
	switch info.Family {
	case 4:
		if l3+IPv4MinHeaderLen > l4 {
			return false
		}
		ip := frame[l3 : l3+IPv4MinHeaderLen]
		field := ip[v4Off : v4Off+4]
		// Complementing the 32-bit word complements both of its 16-bit words.
		delta = addr4Delta(field, addr[12:16])
		copy(field, addr[12:16])
		hc := binary.BigEndian.Uint16(ip[ipv4Checksum:])
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], ^Fold(uint32(^hc)+delta))
	case 6:
		if l3+IPv6HeaderLen > l4 {
			return false
		}
		field := frame[l3+v6Off : l3+v6Off+16]
		delta = addr16Delta(field, addr[:])
		copy(field, addr[:])
	default:
		return false
	}

	if sctp != nil {
		s := SCTP(sctp)
		sp, dp := s.SourcePort(), s.DestinationPort()
		if portOff == tcpSrcPort {
			sp = port
		} else {
			dp = port
		}
		setSCTPPorts(sctp, info, sp, dp)
		return true
	}

	tp := frame[l4+portOff : l4+portOff+2]
	oldPort := binary.BigEndian.Uint16(tp)
	binary.BigEndian.PutUint16(tp, port)
	delta += uint32(^oldPort) + uint32(port)

	patchL4Checksum(frame[l4+csumOff:l4+csumOff+2], info, delta)
	return true
}

// addr4Delta is the one's complement sum of ~old + new over the two 16-bit words of an
// IPv4 address, folded to 16 bits: complementing the 32-bit word complements both.
func addr4Delta(old, new []byte) uint32 {
	d := uint64(^binary.BigEndian.Uint32(old)) + uint64(binary.BigEndian.Uint32(new))
	return uint32(Fold(uint32(d>>32 + d&0xFFFFFFFF)))
}

// addr16Delta is the one's complement sum of ~old + new over the eight 16-bit words of
// an IPv6 address, folded to 16 bits: fieldDelta for 16 bytes, in two 64-bit words
// (fieldDelta's loops cost about 85 instructions a call).
func addr16Delta(old, new []byte) uint32 {
	old, new = old[:16], new[:16]
	acc, c := bits.Add64(^binary.BigEndian.Uint64(old), binary.BigEndian.Uint64(new), 0)
	acc, c = bits.Add64(acc, ^binary.BigEndian.Uint64(old[8:]), c)
	acc, c = bits.Add64(acc, binary.BigEndian.Uint64(new[8:]), c)
	acc, c = bits.Add64(acc, 0, c)
	acc += c // acc is zero whenever c is one here: no overflow
	s := acc>>32 + acc&0xFFFFFFFF
	s = s>>32 + s&0xFFFFFFFF
	return uint32(Fold(uint32(s)))
}

// l4Rewritable returns what a rewrite of the packet info describes patches: the offset
// of its TCP or UDP checksum, or for SCTP the packet (its CRC32c covers all of it);
// false if it is none of these or does not fit the frame.
func l4Rewritable(frame []byte, info *Info) (csumOff int, sctp []byte, ok bool) {
	if info.Proto != ProtoSCTP {
		csumOff, ok = l4ChecksumOff(frame, info)
		return csumOff, nil, ok
	}
	l4, end := int(info.L4Off), int(info.L3Off)+int(info.L3Len)
	if l4+SCTPHeaderLen > end || end > len(frame) {
		return 0, nil, false
	}
	return 0, frame[l4:end], true
}

// setSCTPPorts gives the SCTP packet sctp the ports sport and dport and updates its
// CRC32c; in the first fragment of a fragmented packet, which holds only the start of
// what the checksum covers, the ports change and the checksum cannot follow (see
// SCTPPortsFixable).
func setSCTPPorts(sctp []byte, info *Info, sport, dport uint16) {
	if info.Frag {
		binary.BigEndian.PutUint32(sctp, uint32(sport)<<16|uint32(dport))
		return
	}
	SetSCTPPorts(sctp, sport, dport)
}

// l4ChecksumOff returns the offset of the transport checksum in the TCP or UDP
// header of the packet info describes; false if it is neither or its header
// does not fit the frame.
func l4ChecksumOff(frame []byte, info *Info) (int, bool) {
	l4 := int(info.L4Off)
	switch info.Proto {
	case ProtoTCP:
		return tcpChecksum, l4+TCPMinHeaderLen <= len(frame)
	case ProtoUDP:
		return udpChecksum, l4+UDPHeaderLen <= len(frame)
	}
	return 0, false
}

// patchL4Checksum adds delta (the one's complement sum of ~old + new over the
// changed words) to the transport checksum cs. A UDP-over-IPv4 checksum of
// zero (none) stays zero; a UDP checksum that comes out as zero is written as
// 0xFFFF.
func patchL4Checksum(cs []byte, info *Info, delta uint32) {
	c := binary.BigEndian.Uint16(cs)
	if info.Proto == ProtoUDP {
		if c == 0 && info.Family == 4 {
			return // no checksum: keep none
		}
		if c = ^Fold(uint32(^c) + delta); c == 0 {
			c = 0xFFFF
		}
	} else {
		c = ^Fold(uint32(^c) + delta)
	}
	binary.BigEndian.PutUint16(cs, c)
}

// DecrementTTL decrements the IPv4 TTL (updating the header checksum
// incrementally) or the IPv6 hop limit of the packet that Parse described in
// info. It returns false and changes nothing if the value was 1 or 0 (the
// packet must not be forwarded; an ICMP time-exceeded is due) or if info does
// not fit the frame.
func DecrementTTL(frame []byte, info *Info) bool {
	l3 := int(info.L3Off)
	switch info.Family {
	case 4:
		if l3+IPv4MinHeaderLen > len(frame) {
			return false
		}
		ip := frame[l3 : l3+IPv4MinHeaderLen]
		ttl := ip[ipv4TTL]
		if ttl <= 1 {
			return false
		}
		ip[ipv4TTL] = ttl - 1
		// TTL is the high byte of the 16-bit word it shares with Protocol.
		old := uint16(ttl)<<8 | uint16(ip[ipv4Proto])
		hc := binary.BigEndian.Uint16(ip[ipv4Checksum:])
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], UpdateChecksum16(hc, old, old-0x0100))
		return true
	case 6:
		if l3+IPv6HeaderLen > len(frame) {
			return false
		}
		hl := frame[l3+ipv6HopLimit]
		if hl <= 1 {
			return false
		}
		frame[l3+ipv6HopLimit] = hl - 1
		return true
	}
	return false
}
