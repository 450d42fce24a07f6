package packet

import (
	"encoding/binary"
	"hash/crc32"
)

// CRC32c (Castagnoli), SCTP's checksum (RFC 9260 appendix A; RFC 3309).
//
// A full computation uses the standard library's Castagnoli table (SSE 4.2 / ARMv8 CRC
// instructions where the CPU has them). NAT does not recompute: it updates. A CRC
// without its initial and final inversion is linear over GF(2), so for two messages of
// the same length crc(A) xor crc(B) = raw(A xor B), raw being the CRC with both
// inversions dropped. Rewriting a port changes the packet only in its first 4 bytes, so
// the new checksum is the old one xor raw(delta, followed by len-4 zero bytes), and
// raw(d followed by n zero bytes) is raw(d) times x^(8n) modulo the polynomial. With
// x^(8n) looked up in two 256-entry tables (n below 65536) that is three carry-less
// multiplications modulo the polynomial, whatever the packet's length, and nothing
// else: a checksum that was wrong stays wrong (the kernel recomputes over the packet
// instead, sctp_nat_csum, which makes a corrupted packet look sound to the real
// server).

// castagnoli is crc32.MakeTable(crc32.Castagnoli): the table of the reflected polynomial
// 0x82F63B78. MakeTable returns one shared table for Castagnoli.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32c returns the CRC32c of b (initial value and final inversion as SCTP uses them).
func CRC32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// SCTPChecksum computes the checksum of the SCTP packet seg: the CRC32c of seg with the
// checksum field taken as zero. seg must hold at least the common header.
func SCTPChecksum(seg []byte) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, seg[:sctpChecksum])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, seg[sctpChecksum+4:])
}

// SCTPChecksumValid reports whether the SCTP packet seg carries its right checksum.
func SCTPChecksumValid(seg []byte) bool {
	return len(seg) >= SCTPHeaderLen && SCTP(seg).Checksum() == SCTPChecksum(seg)
}

// gfMul multiplies a and b, polynomials of degree below 32 in the reflected bit order
// (x^0 is bit 31), modulo the Castagnoli polynomial.
func gfMul(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; a != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			a &^= m
		}
		b = b>>1 ^ 0x82F63B78&-(b&1)
	}
	return p
}

// crcZeroLo[i] is x^(8i) and crcZeroHi[j] x^(8*256*j), modulo the polynomial: the
// effect of i (256*j) zero bytes on a raw CRC.
var crcZeroLo, crcZeroHi = crcZeroTables()

func crcZeroTables() (lo, hi [256]uint32) {
	const x8 = 1 << (31 - 8) // x^8: one byte
	lo[0] = 1 << 31          // x^0
	for i := 1; i < 256; i++ {
		lo[i] = gfMul(lo[i-1], x8)
	}
	x2048 := gfMul(lo[255], x8) // x^(8*256)
	hi[0] = 1 << 31
	for j := 1; j < 256; j++ {
		hi[j] = gfMul(hi[j-1], x2048)
	}
	return lo, hi
}

// rawCRC4 is the CRC of the 4 bytes b without inversions.
func rawCRC4(b uint32) uint32 {
	var c uint32
	for range 4 {
		c = castagnoli[byte(c)^byte(b>>24)] ^ c>>8
		b <<= 8
	}
	return c
}

// sctpPortsDelta is what the checksum of an SCTP packet of n bytes changes by when its
// first 4 bytes (the ports), big-endian old, become new.
func sctpPortsDelta(old, new uint32, n int) uint32 {
	d := old ^ new
	if d == 0 {
		return 0
	}
	z := n - 4 // zero bytes after the changed ones
	return gfMul(gfMul(crcZeroLo[z&0xff], crcZeroHi[z>>8&0xff]), SCTPPortsTerm(old, new))
}

// SCTPPortsTerm is the part of an SCTP checksum's change that depends on the ports alone,
// when the first 4 bytes of the packet (its ports, big-endian) go from old to new: the
// CRC of their difference without inversions. The change for a packet of n bytes is
// this times x^(8(n-4)) modulo the polynomial (CRCZeroPowers), which is what the XDP
// fast path computes per packet from a connection's precomputed term.
func SCTPPortsTerm(old, new uint32) uint32 { return rawCRC4(old ^ new) }

// CRCZeroPowers returns x^(8i) (lo[i]) and x^(8*256*j) (hi[j]) modulo the Castagnoli
// polynomial, in the reflected bit order (x^0 is bit 31): the effect of i, and of 256*j,
// zero bytes on a CRC without inversions. The change of an SCTP checksum for new ports
// is gfMul(gfMul(lo[z&255], hi[z>>8]), SCTPPortsTerm(old, new)) with z = n-4.
func CRCZeroPowers() (lo, hi [256]uint32) { return crcZeroLo, crcZeroHi }

// SetSCTPPorts sets the source and destination ports of the SCTP packet seg (the whole
// packet: the checksum covers all of it; at most 65535 bytes) and updates its checksum
// for the change, keeping a wrong checksum wrong. It allocates nothing.
func SetSCTPPorts(seg []byte, sport, dport uint16) {
	s := SCTP(seg)
	old := binary.BigEndian.Uint32(seg[sctpSrcPort:])
	new := uint32(sport)<<16 | uint32(dport)
	binary.BigEndian.PutUint32(seg[sctpSrcPort:], new)
	s.SetChecksum(s.Checksum() ^ sctpPortsDelta(old, new, len(seg)))
}
