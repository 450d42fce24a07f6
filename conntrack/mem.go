package conntrack

import (
	"unsafe"
)

// Memory. The records of all shards and their indexes live in one arena.
// An arena of hugePage bytes or more is mapped outside the Go heap (mapArena),
// aligned to and advised for transparent huge pages: a 10M-entry table is a
// gigabyte that random lookups touch anywhere, and with 4 KiB pages nearly
// every access also misses the TLB. Smaller arenas, and any arena the
// system refuses to map, come from the Go heap. Either way the memory is
// pointer-free, so the garbage collector never scans it.

// hugePage is the transparent huge page size of x86-64 and of arm64 with
// 4 KiB base pages.
const hugePage = 2 << 20

// mmapMin is the smallest arena that is mapped rather than taken from the
// Go heap (a variable so tests can exercise both paths).
var mmapMin = hugePage

// arenaPad is spare memory after the last index line: LookupBatch reads
// the line after a home slot's line without wrapping.
const arenaPad = 64

// arena is the memory of a table's records and indexes.
type arena struct {
	mem    []byte // size bytes, 64-byte aligned
	mapped []byte // the whole mapping to unmap; nil when mem is on the Go heap
}

// newArena returns size zeroed bytes; basePages: a mapped arena is not advised for huge
// pages yet (adviseHuge).
func newArena(size int, basePages bool) arena {
	if size >= mmapMin {
		if a, ok := mapArena(size, !basePages); ok {
			return a
		}
	}
	buf := make([]byte, size+63)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(buf))) & 63)
	return arena{mem: buf[off : off+size : off+size]}
}

// prefault makes every page of the arena resident: the kernel populates a
// mapped arena (MADV_POPULATE_WRITE, whole huge pages where it gives them),
// and where it cannot (older kernels, heap arenas) one write per base page
// faults each in.
func (a *arena) prefault() {
	if a.populate() {
		return
	}
	for i := 0; i < len(a.mem); i += 4096 {
		a.mem[i] = 0
	}
}

// offHeap is how many bytes the arena takes outside the Go heap (whole huge
// pages: once touched, each is resident as a whole).
func (a *arena) offHeap() int {
	if a.mapped == nil {
		return 0
	}
	return (len(a.mem) + hugePage - 1) &^ (hugePage - 1)
}

// carve returns n values of type T from the front of *mem, which it
// advances, keeping 64-byte alignment for what follows.
func carve[T any](mem *[]byte, n int) []T {
	var z T
	size := int(unsafe.Sizeof(z)) * n
	if n == 0 {
		return nil
	}
	s := unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(*mem))), n)
	*mem = (*mem)[min((size+63)&^63, len(*mem)):]
	return s
}
