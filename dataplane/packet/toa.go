package packet

import "encoding/binary"

// TOA, "TCP Option Address" (Taobao LVS's and DPVS's FULLNAT). FULLNAT hides the client
// from the real server, which sees one of the director's local addresses as the source;
// the director therefore writes the client's address and port into a TCP option of the
// connection's opening packets, and a real server running the toa kernel module hands
// them to getpeername(2) in place of the local address. The option is kind 254, length 8
// (port, IPv4 address) or 20 (port, IPv6 address), and goes right after the fixed TCP
// header, before the options the packet had: what DPVS's tcp_in_add_toa
// (src/ipvs/ip_vs_proto_tcp.c) writes and the toa module reads.
const (
	TOAKind = 254
	TOALen4 = 8
	TOALen6 = 20
)

// TOALen is the length of the TOA option for a client of family (4, else IPv6).
func TOALen(family uint8) int {
	if family == 4 {
		return TOALen4
	}
	return TOALen6
}

// TOAFits reports whether tcp, a TCP header, has room for n more bytes of options: a
// TCP header is at most 60 bytes.
func TOAFits(tcp []byte, n int) bool {
	return len(tcp) >= TCPMinHeaderLen && TCP(tcp).DataOffset()+n <= 60
}

// InsertTOA writes the TOA option for client:cport (family 4 or 6, n = TOALen(family)
// bytes) into the TCP packet that starts at b[n:]: its IP header (hl bytes, IPv6
// extension headers included) and fixed TCP header move n bytes back to b[0:], the
// option takes their place between the fixed header and the options the packet had, and
// the IP length, the TCP data offset and both checksums follow (incrementally: a packet
// whose checksum was wrong stays wrong). The packet must be a whole TCP segment whose
// header TOAFits n more bytes; b must hold n + the packet. It returns the packet, b[:n +
// its old length].
func InsertTOA(b []byte, family uint8, hl int, client [16]byte, cport uint16) []byte {
	n := TOALen(family)
	old := b[n:]
	tl := 0
	if family == 4 {
		tl = int(binary.BigEndian.Uint16(old[ipv4TotalLen:]))
	} else {
		tl = IPv6HeaderLen + int(binary.BigEndian.Uint16(old[ipv6PayLen:]))
	}
	pkt := b[:n+tl]
	copy(pkt, old[:hl+TCPMinHeaderLen])
	ip, tcp := pkt[:hl], pkt[hl:]

	// IP length: IPv4's total length (and header checksum), IPv6's payload length.
	if family == 4 {
		hc := binary.BigEndian.Uint16(ip[ipv4Checksum:])
		binary.BigEndian.PutUint16(ip[ipv4TotalLen:], uint16(n+tl))
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], UpdateChecksum16(hc, uint16(tl), uint16(n+tl)))
	} else {
		binary.BigEndian.PutUint16(ip[ipv6PayLen:], uint16(n+tl-IPv6HeaderLen))
	}

	// The option, at the fixed header's end (an even offset: its words add to the sum
	// as they are, and what follows moved by an even count, which leaves its sum be).
	opt := tcp[TCPMinHeaderLen : TCPMinHeaderLen+n]
	opt[0], opt[1] = TOAKind, byte(n)
	binary.BigEndian.PutUint16(opt[2:], cport)
	if family == 4 {
		copy(opt[4:8], client[12:16])
	} else {
		copy(opt[4:20], client[:])
	}
	// The checksum: the pseudo-header's length (tl-hl → tl-hl+n; below 2^16, so IPv6's
	// 32-bit length changes in its low word only), the data offset's word, the option.
	w := binary.BigEndian.Uint16(tcp[tcpDataOff:])
	nw := w + uint16(n/4)<<12
	binary.BigEndian.PutUint16(tcp[tcpDataOff:], nw)
	l4 := uint16(tl - hl)
	sum := uint32(^binary.BigEndian.Uint16(tcp[tcpChecksum:]))
	sum += uint32(^l4) + uint32(l4+uint16(n))
	sum += uint32(^w) + uint32(nw)
	// The option's words: kind and length, the port, the address's words.
	sum += uint32(TOAKind)<<8 | uint32(n)
	sum += uint32(cport)
	for i := 16 - (n - 4); i < 16; i += 4 {
		a := binary.BigEndian.Uint32(client[i:])
		sum += a>>16 + a&0xFFFF
	}
	binary.BigEndian.PutUint16(tcp[tcpChecksum:], ^Fold(sum))
	return pkt
}
