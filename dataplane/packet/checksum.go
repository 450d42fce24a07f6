package packet

import (
	"encoding/binary"
	"math/bits"
)

// Checksum adds the bytes of b, taken as big-endian 16-bit words, to the
// one's complement sum initial and returns the result unfolded (RFC 1071).
// An odd trailing byte is padded with a zero byte on the right. The result
// may be passed as initial to a later call covering the bytes that follow b,
// provided len(b) is even; Fold it, then complement it, to get a checksum.
//
// Checksum(b, 0) folds to zero only when every byte of b is zero.
func Checksum(b []byte, initial uint32) uint32 {
	// Sum 64-bit words with end-around carry: 2^16 ≡ 1 modulo 0xFFFF, so a
	// 64-bit one's complement sum folds to the same 16-bit sum as adding the
	// 16-bit words one by one, and it stays non-zero when any input is.
	acc := uint64(initial)
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		b = b[8:]
	}
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry // acc is zero whenever carry is one here: no overflow

	s := acc>>32 + acc&0xFFFFFFFF // < 2^33
	if len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	s = s>>32 + s&0xFFFFFFFF
	s = s>>32 + s&0xFFFFFFFF
	return uint32(s)
}

// Fold folds the carries of a one's complement sum into 16 bits. It does not
// complement the result: a checksum field holds ^Fold(sum), and a buffer
// whose checksum verifies has Fold(sum) == 0xFFFF.
func Fold(sum uint32) uint16 {
	sum = sum>>16 + sum&0xFFFF
	sum = sum>>16 + sum&0xFFFF
	return uint16(sum)
}

// PseudoHeaderSum returns the unfolded one's complement sum of the TCP/UDP
// pseudo-header: for family 4 the last four bytes of src and dst, a zero
// byte, proto and the 16-bit length (RFC 793/768); for any other family
// (meant: 6) the 16-byte addresses, the 32-bit length and three zero bytes
// followed by proto (RFC 8200, section 8.1). l4len is the length of the
// transport header and payload.
func PseudoHeaderSum(family uint8, src, dst [16]byte, proto uint8, l4len uint32) uint32 {
	s := uint32(proto) + l4len>>16 + l4len&0xFFFF
	start := 0
	if family == 4 {
		start = 12
	}
	for i := start; i < 16; i += 2 {
		s += uint32(src[i])<<8 | uint32(src[i+1])
		s += uint32(dst[i])<<8 | uint32(dst[i+1])
	}
	return s
}

// UpdateChecksum16 returns checksum hc updated for one 16-bit word of the
// covered data changing from old to new (RFC 1624, eqn. 3:
// HC' = ~(~HC + ~m + m')).
func UpdateChecksum16(hc, old, new uint16) uint16 {
	return ^Fold(uint32(^hc) + uint32(^old) + uint32(new))
}

// UpdateChecksumAddr returns checksum hc updated for a field of the covered
// data, such as a 4-byte IPv4 or 16-byte IPv6 address, changing from old to
// new. The field must start at an even offset of the covered data. old and
// new should have the same length; only the first min(len(old), len(new))
// bytes are considered.
func UpdateChecksumAddr(hc uint16, old, new []byte) uint16 {
	return ^Fold(uint32(^hc) + fieldDelta(old, new))
}

// fieldDelta returns the one's complement sum of ~m + m' over the 16-bit
// words of old (m) and new (m'), folded to 16 bits. An odd trailing byte is
// padded with a zero byte on the right, as Checksum does. Complementing a
// 64-bit word complements each of its 16-bit words, so addresses are summed
// eight bytes at a time.
func fieldDelta(old, new []byte) uint32 {
	n := min(len(old), len(new))
	old, new = old[:n], new[:n]
	var acc, carry uint64
	for len(old) >= 8 && len(new) >= 8 {
		acc, carry = bits.Add64(acc, ^binary.BigEndian.Uint64(old), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(new), carry)
		old, new = old[8:], new[8:]
	}
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry // acc is zero whenever carry is one here: no overflow
	s := acc>>32 + acc&0xFFFFFFFF
	for len(old) >= 2 && len(new) >= 2 {
		s += uint64(^binary.BigEndian.Uint16(old)) + uint64(binary.BigEndian.Uint16(new))
		old, new = old[2:], new[2:]
	}
	if len(old) == 1 && len(new) == 1 {
		s += uint64(^(uint16(old[0]) << 8)) + uint64(new[0])<<8
	}
	s = s>>32 + s&0xFFFFFFFF
	s = s>>32 + s&0xFFFFFFFF
	// Fold to 16 bits so that callers can add a few more 16-bit words to
	// the result in a uint32 without overflow.
	return uint32(Fold(uint32(s)))
}
