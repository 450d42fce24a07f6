package sched

import (
	"encoding/binary"
	"math/bits"
)

// The kernel's hashing, as sh, dh, mh, lblc and lblcr use it.
//
// Address fold (every scheduler): an IPv4 address is taken as its 32-bit value in host
// order (ntohl(addr->ip)); an IPv6 address as the XOR of its four 32-bit words, each
// read big-endian (ntohl of the XOR of the __be32 words is the XOR of the ntohl'd words).
// The family is told by the address itself: IPv4 is IPv4-mapped in Dest and Flow.
//
// sh and dh (ip_vs_sh_hashkey, ip_vs_dh_hashkey), a 256-bucket table:
//
//	bucket = (offset + (port + fold(addr)) * 2654435761) & 255
//
// with port = 0 (dh; sh without sh-port) or the source port in host order (sh-port), and
// offset 0 except for sh-fallback's probes. The kernel computes in unsigned long; only
// the low 8 bits are kept, and those depend only on the low bits of the operands, so
// 32-bit arithmetic gives the same bucket.
//
// mh (ip_vs_mh_hashkey): v = offset + port + fold(addr) as a u32, hashed by the kernel's
// hsiphash with the fixed keys hash1 = {2654435761, 2654435761} and hash2 =
// {2654446892, 2654446892}. On 64-bit kernels hsiphash is SipHash-1-3 with a 64-bit
// state truncated to 32 bits; the four bytes of v are read in the CPU's byte order, so
// this reproduces little-endian (x86, arm64) directors.

const goldenRatio32 = 2654435761 // the kernel's multiplicative hash constant

func isV4Mapped(a *[16]byte) bool {
	return binary.BigEndian.Uint64(a[0:8]) == 0 && binary.BigEndian.Uint32(a[8:12]) == 0xffff
}

// fold is the kernel's addr_fold, in host order.
func fold(a *[16]byte) uint32 {
	if isV4Mapped(a) {
		return binary.BigEndian.Uint32(a[12:16])
	}
	return binary.BigEndian.Uint32(a[0:4]) ^ binary.BigEndian.Uint32(a[4:8]) ^
		binary.BigEndian.Uint32(a[8:12]) ^ binary.BigEndian.Uint32(a[12:16])
}

// shBucket is ip_vs_sh_hashkey (and ip_vs_dh_hashkey with port 0 and offset 0).
func shBucket(addrFold uint32, port uint16, offset uint32) uint32 {
	return (offset + (uint32(port)+addrFold)*goldenRatio32) & 255
}

// hsipKey is an hsiphash_key_t on a 64-bit kernel.
type hsipKey struct{ k0, k1 uint64 }

var (
	mhHash1 = hsipKey{2654435761, 2654435761}
	mhHash2 = hsipKey{2654446892, 2654446892}
)

// hsiphash32 is the kernel's hsiphash(&v, 4, key) on a 64-bit little-endian machine:
// SipHash-1-3 of the four bytes of v, truncated to 32 bits.
func hsiphash32(v uint32, k hsipKey) uint32 {
	v0 := 0x736f6d6570736575 ^ k.k0
	v1 := 0x646f72616e646f6d ^ k.k1
	v2 := 0x6c7967656e657261 ^ k.k0
	v3 := 0x7465646279746573 ^ k.k1
	b := uint64(4)<<56 | uint64(v)
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return uint32(v0 ^ v1 ^ v2 ^ v3)
}

// sipRound is one SipRound.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// mhHash is ip_vs_mh_hashkey.
func mhHash(addrFold uint32, port uint16, offset uint32, k hsipKey) uint32 {
	return hsiphash32(offset+uint32(port)+addrFold, k)
}

// flowPort is ip_vs_sh_get_port / ip_vs_mh_get_port: the source port of TCP, UDP and
// SCTP, 0 for anything else.
func flowPort(f *Flow) uint16 {
	switch f.Proto {
	case 6, 17, 132:
		return f.SrcPort
	}
	return 0
}

var zeroFlow Flow

func flowOrZero(f *Flow) *Flow {
	if f == nil {
		return &zeroFlow
	}
	return f
}
