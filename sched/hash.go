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
// sh and dh (ip_vs_sh_hashkey, ip_vs_dh_hashkey), a 256-bucket table (8 bits):
//
//	sh: bucket = (offset + hash_32(port + fold(addr), 8)) & 255
//	dh: bucket = hash_32(fold(addr), 8)
//	hash_32(v, bits) = (v * 0x61C88647 mod 2^32) >> (32 - bits)
//
// hash_32 is include/linux/hash.h's: __hash_32 multiplies by GOLDEN_RATIO_32 in u32
// and hash_32 keeps the *high* bits (x86 and arm64 use the generic __hash_32; no
// asm/hash.h). port is 0 without sh-port, else the source port in host order; the sum
// port + fold is a u32. offset is 0 except for sh-fallback's probes, which take
// offset = (k + first bucket) % 256 for k = 0..255 and stop at an empty bucket. (Old
// kernels took the low 8 bits of fold * 2654435761; mainline no longer does, and neither
// do we: the two pick different servers for most clients.)
//
// lblc and lblcr hash the destination address with hash_32 too
// (ip_vs_lblc_hashkey, ip_vs_lblcr_hashkey), but only to pick a bucket of their
// unbounded hash lists, where entries are then matched by address: the hash does not
// change which server is chosen, so locality.go uses its own slot hash.
//
// Source read: the mainline tree carried by github.com/intel-lab-lkp/linux (a 2026 tree:
// kzalloc_obj, pr_fmt "IPVS: ", atomic dest->flags): net/netfilter/ipvs/ip_vs_sh.c and
// ip_vs_dh.c at commit 80aeb2c77a6c62fa942d8fb1514d54094bfdde15, ip_vs_mh.c at
// 140665014849e6757b5e4c6bcb8c52c58b08eb02, ip_vs_lblcr.c at
// 3338ca7a61d01261a9845328b7c30831da0b4c9d, include/linux/hash.h at
// ab26e4a46c43f9f318d24c5c4d602588ab2f2b2c.
//
// mh (ip_vs_mh_hashkey): v = offset + port + fold(addr) as a u32, hashed by the kernel's
// hsiphash with the fixed keys hash1 = {2654435761, 2654435761} and hash2 =
// {2654446892, 2654446892}. On 64-bit kernels hsiphash is SipHash-1-3 with a 64-bit
// state truncated to 32 bits; the four bytes of v are read in the CPU's byte order, so
// this reproduces little-endian (x86, arm64) directors.

// goldenRatio32 is include/linux/hash.h's GOLDEN_RATIO_32.
const goldenRatio32 = 0x61C88647

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

// hash32 is the kernel's hash_32(val, bits): the high bits of val * GOLDEN_RATIO_32.
func hash32(val uint32, bits uint) uint32 {
	return val * goldenRatio32 >> (32 - bits)
}

// hashTabBits is IP_VS_SH_TAB_BITS and IP_VS_DH_TAB_BITS: 256 buckets.
const hashTabBits = 8

// shBucket is ip_vs_sh_hashkey.
func shBucket(addrFold uint32, port uint16, offset uint32) uint32 {
	return (offset + hash32(uint32(port)+addrFold, hashTabBits)) & (1<<hashTabBits - 1)
}

// dhBucket is ip_vs_dh_hashkey.
func dhBucket(addrFold uint32) uint32 {
	return hash32(addrFold, hashTabBits)
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
