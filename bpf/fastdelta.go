package bpf

// FastDeltas returns the RFC 1624 checksum deltas of a fast-path rewrite (FastVal.CsumL3
// and CsumL4): the one's complement sum of ~m + m' over the 16-bit words that change,
// folded to 16 bits. The address old becomes new (family 4: the last four bytes of the
// IPv4-mapped addresses, else all sixteen), the port oldPort newPort; with decTTL the
// IPv4 TTL drops by one too (the word TTL|protocol loses 0x0100: ~m + m' = 0xFEFF). The
// IPv4 header checksum takes l3 (address and TTL), the TCP/UDP checksum l4 (the
// pseudo-header's address and the port); IPv6 has no header checksum (l3 is 0).
func FastDeltas(family uint8, old, new [16]byte, oldPort, newPort uint16, decTTL bool) (l3, l4 uint16) {
	start := 0
	if family == 4 {
		start = 12
	}
	var addr uint32
	for i := start; i < 16; i += 2 {
		addr += uint32(^(uint16(old[i])<<8 | uint16(old[i+1])))
		addr += uint32(uint16(new[i])<<8 | uint16(new[i+1]))
	}
	if family == 4 {
		ip := addr
		if decTTL {
			ip += 0xFEFF
		}
		l3 = fold(ip)
	}
	l4 = fold(addr + uint32(^oldPort) + uint32(newPort))
	return l3, l4
}

// FastTTLDelta is CsumL3 of a DR entry for IPv4: the TTL decrement alone (the word
// TTL|protocol loses 0x0100: ~m + m' = 0xFEFF).
const FastTTLDelta = 0xFEFF

// fold folds the carries of a one's complement sum into 16 bits.
func fold(s uint32) uint16 {
	s = s>>16 + s&0xFFFF
	s = s>>16 + s&0xFFFF
	return uint16(s)
}

// AddDeltas adds two checksum deltas (one's complement addition): the delta of two
// changes is the sum of theirs (a FULLNAT rewrite changes source and destination).
func AddDeltas(a, b uint16) uint16 { return fold(uint32(a) + uint32(b)) }
