package sched

import (
	"fmt"
	"math/bits"
)

// MHTableSize is the size of mh's lookup table: the kernel's default
// (CONFIG_IP_VS_MH_TAB_INDEX 12, the fifth of its primes). A kernel built with another
// index chooses differently.
const MHTableSize = 4093

// mhTableBits is IP_VS_MH_TAB_BITS (CONFIG_IP_VS_MH_TAB_INDEX / 2): weights are shifted
// right until weight/gcd fits in this many bits.
const mhTableBits = 6

// mh is Maglev hashing (ip_vs_mh.c). Each server gets a permutation of the table's slots
// from two hashes of its address and port: offset = h1 % M and skip = h2 % (M-1) + 1 (see
// hash.go). The table is filled by taking the servers in list order, each claiming its
// next free preferred slot "turns" times — its last non-zero weight divided by the gcd
// of those weights and shifted down to mhTableBits bits, at least 1, and 0 for a server
// added with weight 0 — round and round until all M slots are taken. Using the last
// non-zero weight means that quiescing a server (weight 0) leaves the table as it is.
// The client address (and with mh-port its port) hashed with h1, modulo M, picks the
// slot; its server is the answer if its weight is above zero and it is not overloaded,
// else there is none — or, with mh-fallback, the kernel probes with offsets 0 to M-1
// added to the hashed value and takes the first usable server. O(1) a decision.
type mh struct {
	base
	lookup         []int32 // server index per slot; -1 when no server has a weight
	fallback, port bool
}

func init() {
	register("mh", func(b *base, flags Flags, _ Scheduler) (Scheduler, error) {
		if len(b.dests) > MHTableSize {
			return nil, fmt.Errorf("build mh scheduler: %w: %d servers, the %d-slot lookup table holds at most %d", ErrTooMany, len(b.dests), MHTableSize, MHTableSize)
		}
		s := &mh{base: *b, fallback: flags&FlagMHFallback != 0, port: flags&FlagMHPort != 0}
		s.lookup = mhPopulate(s.dests, s.lastW)
		return s, nil
	})
}

// mhPopulate builds the lookup table as ip_vs_mh_permutate and ip_vs_mh_populate do.
func mhPopulate(dests []Dest, lastW []int32) []int32 {
	const m = MHTableSize
	lookup := make([]int32, m)
	for i := range lookup {
		lookup[i] = -1
	}
	var g, mw int32
	for _, w := range lastW {
		if w > 0 {
			g = gcd(w, g)
			mw = max(mw, w)
		}
	}
	if g < 1 {
		return lookup
	}
	shift := bits.Len32(uint32(mw/g)) - mhTableBits
	shift = max(shift, 0)
	type setup struct {
		skip, perm uint32
		turns      int32
	}
	ds := make([]setup, len(dests))
	for i := range dests {
		a := fold(&dests[i].Addr)
		offset := mhHash(a, dests[i].Port, 0, mhHash1) % m
		ds[i].skip = mhHash(a, dests[i].Port, 0, mhHash2)%(m-1) + 1
		ds[i].perm = offset
		lw := lastW[i]
		if ds[i].turns = (lw / g) >> shift; ds[i].turns == 0 && lw != 0 {
			ds[i].turns = 1
		}
	}
	taken := make([]bool, m)
	n, count := 0, int32(0)
	for n < m {
		for p := 0; p < len(dests); {
			if ds[p].turns < 1 {
				p++
				continue
			}
			c := ds[p].perm
			for taken[c] {
				if ds[p].perm += ds[p].skip; ds[p].perm >= m {
					ds[p].perm -= m
				}
				c = ds[p].perm
			}
			taken[c] = true
			lookup[c] = int32(p)
			if n++; n == m {
				return lookup
			}
			if count++; count >= ds[p].turns {
				count = 0
				p++
			}
		}
	}
	return lookup
}

func (s *mh) Name() string { return "mh" }

func (s *mh) Schedule(counts Counts, f *Flow) int {
	f = flowOrZero(f)
	var port uint16
	if s.port {
		port = flowPort(f)
	}
	a := fold(&f.Src)
	ihash := mhHash(a, port, 0, mhHash1) % MHTableSize
	i := int(s.lookup[ihash])
	if i < 0 {
		return -1
	}
	if s.usable(i, counts) {
		return i
	}
	if !s.fallback {
		return -1
	}
	for off := uint32(0); off < MHTableSize; off++ {
		i = int(s.lookup[mhHash(a, port, (off+ihash)%MHTableSize, mhHash1)%MHTableSize])
		if i < 0 {
			break
		}
		if s.usable(i, counts) {
			return i
		}
	}
	return -1
}
