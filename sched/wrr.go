package sched

import (
	"sync"
	"sync/atomic"
)

// maxWRRCycle bounds the precomputed wrr cycle (4 bytes an entry). Larger cycles (huge,
// coprime weights over many servers) use the kernel's stepping under a mutex instead.
const maxWRRCycle = 1 << 20

// wrr is weighted round robin (ip_vs_wrr.c). The kernel walks the list repeatedly with a
// current weight cw that starts at the maximum weight and steps down by the gcd of the
// weights, choosing every destination whose weight is at least cw. That walk is periodic,
// with period sum(weights)/gcd, so it is laid out once here as a cycle of indices and
// workers take positions from one atomic counter: the same sequence as the kernel's,
// without a lock. Destinations at their -x threshold are skipped at their positions, as
// the kernel skips them in its walk.
type wrr struct {
	dests []Dest
	cycle []uint32
	pos   atomic.Uint64

	// Fallback state when the cycle would be too long: the kernel's own stepping.
	mu     sync.Mutex
	cl     int // current list position; -1 = the list head
	cw     int32
	mw, di int32
}

func init() {
	register("wrr", func(dests []Dest, _ Flags) (Scheduler, error) { return newWRR(dests), nil })
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func newWRR(dests []Dest) *wrr {
	s := &wrr{dests: dests, cl: -1}
	var sum int64
	for _, d := range dests {
		if d.Weight > 0 {
			s.di = gcd(d.Weight, s.di)
			if d.Weight > s.mw {
				s.mw = d.Weight
			}
			sum += int64(d.Weight)
		}
	}
	if s.mw == 0 {
		return s
	}
	if sum/int64(s.di) > maxWRRCycle {
		return s
	}
	s.cycle = make([]uint32, 0, sum/int64(s.di))
	for cw := s.mw; cw > 0; cw -= s.di {
		for i, d := range dests {
			if d.Weight >= cw {
				s.cycle = append(s.cycle, uint32(i))
			}
		}
	}
	return s
}

func (s *wrr) Name() string { return "wrr" }

func (s *wrr) Schedule(counts Counts, _ *Flow) int {
	if s.mw == 0 {
		return -1
	}
	if s.cycle == nil {
		return s.step(counts)
	}
	n := uint64(len(s.cycle))
	for try := uint64(0); try < n; try++ {
		i := s.cycle[(s.pos.Add(1)-1)%n]
		if available(&s.dests[i], counts) {
			return int(i)
		}
	}
	return -1
}

// step is the kernel's walk, for cycles too long to lay out.
func (s *wrr) step(counts Counts) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.dests)
	// Two full rounds of every weight level visit every candidate at least once.
	limit := 2 * n * int(s.mw/s.di+1)
	for k := 0; k < limit; k++ {
		if s.cl == -1 { // at the list head: start a new pass one weight level down
			s.cl = 0
			s.cw -= s.di
			if s.cw <= 0 {
				s.cw = s.mw
			}
		} else if s.cl++; s.cl >= n {
			s.cl = -1
			continue
		}
		d := &s.dests[s.cl]
		if d.Weight >= s.cw && available(d, counts) {
			return s.cl
		}
	}
	return -1
}
