package sched

import "sync/atomic"

// rr is round robin (ip_vs_rr.c): the next available destination after the last one
// chosen, in list order. The cursor is one atomic word advanced by compare-and-swap, so
// concurrent workers never choose from the same position twice.
type rr struct {
	dests []Dest
	last  atomic.Int64 // index of the last destination chosen; -1 before the first
}

func init() {
	register("rr", func(dests []Dest, _ Flags) (Scheduler, error) {
		s := &rr{dests: dests}
		s.last.Store(-1)
		return s, nil
	})
}

func (s *rr) Name() string { return "rr" }

func (s *rr) Schedule(counts Counts, _ *Flow) int {
	n := int64(len(s.dests))
	if n == 0 {
		return -1
	}
	for {
		last := s.last.Load()
		pick := int64(-1)
		for k := int64(1); k <= n; k++ {
			i := (last + k) % n
			if i < 0 {
				i += n
			}
			if available(&s.dests[i], counts) {
				pick = i
				break
			}
		}
		if pick < 0 {
			return -1
		}
		if s.last.CompareAndSwap(last, pick) {
			return int(pick)
		}
	}
}
