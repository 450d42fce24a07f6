package packet

import "encoding/binary"

// RewriteFullNAT sets both endpoints of the TCP, UDP or SCTP packet that Parse
// described in info: source to src:sport and destination to dst:dport, as a
// FULLNAT director does (a client's packet leaves from a local address
// towards the real server; a real server's reply leaves from VIP:port towards
// the client). One pass: the IPv4 header checksum and the transport checksum
// are updated incrementally once for the four changed fields (RFC 1624), and
// info's addresses and ports are updated. Addresses are in the packet's family
// (IPv4-mapped for IPv4).
//
// A UDP-over-IPv4 checksum of zero stays zero; a UDP checksum that comes out
// as zero is written as 0xFFFF. It reports false and changes nothing if info
// does not describe a TCP or UDP packet that fits the frame. It never
// allocates. SCTP's CRC32c is updated as RewriteDst updates it.
func RewriteFullNAT(frame []byte, info *Info, src [16]byte, sport uint16, dst [16]byte, dport uint16) bool {
	l3, l4 := int(info.L3Off), int(info.L4Off)
	csumOff, sctp, ok := l4Rewritable(frame, info)
	if !ok {
		return false
	}

	// delta: the one's complement sum of ~old + new over every changed 16-bit word
	// that the transport checksum covers (pseudo-header addresses and the ports).
	var delta uint32
	switch info.Family {
	case 4:
		if l3+IPv4MinHeaderLen > l4 {
			return false
		}
		ip := frame[l3 : l3+IPv4MinHeaderLen]
		delta = addr4Delta(ip[ipv4Src:ipv4Src+4], src[12:16]) + addr4Delta(ip[ipv4Dst:ipv4Dst+4], dst[12:16])
		delta = uint32(Fold(delta))
		copy(ip[ipv4Src:ipv4Src+4], src[12:16])
		copy(ip[ipv4Dst:ipv4Dst+4], dst[12:16])
		hc := binary.BigEndian.Uint16(ip[ipv4Checksum:])
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], ^Fold(uint32(^hc)+delta))
	case 6:
		if l3+IPv6HeaderLen > l4 {
			return false
		}
		ip := frame[l3 : l3+IPv6HeaderLen]
		delta = addr16Delta(ip[ipv6Src:ipv6Src+16], src[:]) + addr16Delta(ip[ipv6Dst:ipv6Dst+16], dst[:])
		delta = uint32(Fold(delta))
		copy(ip[ipv6Src:ipv6Src+16], src[:])
		copy(ip[ipv6Dst:ipv6Dst+16], dst[:])
	default:
		return false
	}

	if sctp != nil {
		// SCTP's CRC32c covers neither address: only the ports change it.
		setSCTPPorts(sctp, info, sport, dport)
		info.Src, info.SrcPort, info.Dst, info.DstPort = src, sport, dst, dport
		return true
	}

	ports := frame[l4 : l4+4] // TCP and UDP agree: source port, then destination port
	delta += uint32(^binary.BigEndian.Uint16(ports[0:])) + uint32(sport)
	delta += uint32(^binary.BigEndian.Uint16(ports[2:])) + uint32(dport)
	binary.BigEndian.PutUint16(ports[0:], sport)
	binary.BigEndian.PutUint16(ports[2:], dport)

	patchL4Checksum(frame[l4+csumOff:l4+csumOff+2], info, delta)
	info.Src, info.SrcPort, info.Dst, info.DstPort = src, sport, dst, dport
	return true
}
