package dataplane

import "sync/atomic"

// spscRing is a bounded single-producer (one worker), single-consumer queue of
// pointer-free values: the sync daemon's entries (syncRing) and the fast path's install
// requests (fastRing). The producer never waits: a full ring drops and counts. head and
// tail sit on cache lines of their own, so producer and consumer do not share one.
type spscRing[T any] struct {
	tail   atomic.Uint64 // next slot the producer writes; written by the producer only
	full   atomic.Uint64 // values dropped, ring full
	_      [48]byte
	head   atomic.Uint64 // next slot the consumer reads; written by the consumer only
	_      [56]byte
	hcache uint64 // the producer's last view of head (producer only)
	buf    []T
	mask   uint64
}

// newSPSCRing makes a ring of at least n slots (rounded up to a power of two).
func newSPSCRing[T any](n int) *spscRing[T] {
	size := 1
	for size < n {
		size <<= 1
	}
	return &spscRing[T]{buf: make([]T, size), mask: uint64(size - 1)}
}

// push appends a copy of *v, or counts a drop when the ring is full. Producer only; no
// allocation.
func (r *spscRing[T]) push(v *T) bool {
	t := r.tail.Load()
	if t-r.hcache > r.mask {
		r.hcache = r.head.Load()
		if t-r.hcache > r.mask {
			r.full.Add(1)
			return false
		}
	}
	r.buf[t&r.mask] = *v
	r.tail.Store(t + 1)
	return true
}

// pop moves up to len(out) values into out. Consumer only.
func (r *spscRing[T]) pop(out []T) int {
	h := r.head.Load()
	n := int(min(r.tail.Load()-h, uint64(len(out))))
	for i := 0; i < n; i++ {
		out[i] = r.buf[(h+uint64(i))&r.mask]
	}
	r.head.Store(h + uint64(n))
	return n
}
