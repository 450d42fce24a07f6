package sched

import "sync/atomic"

// rr is round robin (ip_vs_rr.c): walking the list from the server after the last one
// chosen, wrapping at the end and ending with the last one itself, the first server with
// weight above zero that is not overloaded. Nothing is chosen (and the position stays)
// when none is.
//
// The position is one atomic word advanced by compare-and-swap, so concurrent workers
// never choose from the same position twice. Servers of weight 0 are left out of the
// walk once, at build time (cand), so a decision is O(1) unless servers are overloaded.
type rr struct {
	base
	cand  []int32 // indices of the servers with weight above zero, in list order
	first []int32 // first[i+1]: position in cand of the first candidate after list index i
	last  atomic.Int64
}

func init() {
	register("rr", func(b *base, _ Flags, prev Scheduler) (Scheduler, error) {
		s := &rr{base: *b}
		n := len(s.dests)
		s.first = make([]int32, n+1)
		for i := range s.dests {
			if s.dests[i].Weight > 0 {
				s.cand = append(s.cand, int32(i))
			}
		}
		k := 0
		for i := -1; i < n; i++ { // candidates after index i
			for k < len(s.cand) && int(s.cand[k]) <= i {
				k++
			}
			if k == len(s.cand) {
				s.first[i+1] = 0 // wrap to the first candidate
			} else {
				s.first[i+1] = int32(k)
			}
		}
		s.last.Store(-1)
		if p, ok := prev.(*rr); ok {
			s.last.Store(s.carry(p))
		}
		return s, nil
	})
}

// carry finds the kernel's rr position after an edit: the server last chosen, where it
// is in the new list; if it was deleted, the nearest server before it that is still
// there (ip_vs_rr_del_dest moves back to the predecessor); else the list head (-1).
func (s *rr) carry(p *rr) int64 {
	last := p.last.Load()
	if last < 0 || int(last) >= len(p.dests) {
		return -1
	}
	now := make(map[uint32]int, len(s.dests))
	for i := range s.dests {
		now[s.dests[i].ID] = i
	}
	for j := int(last); j >= 0; j-- {
		if i, ok := now[p.dests[j].ID]; ok && sameServer(&s.dests[i], &p.dests[j]) {
			return int64(i)
		}
	}
	return -1
}

func (s *rr) Name() string { return "rr" }

func (s *rr) Schedule(counts Counts, _ *Flow) int {
	n := len(s.cand)
	if n == 0 {
		return -1
	}
	for {
		last := s.last.Load()
		k := int(s.first[last+1])
		pick := -1
		for t := 0; t < n; t++ {
			i := int(s.cand[k])
			if !s.overloaded(i, counts) {
				pick = i
				break
			}
			if k++; k == n {
				k = 0
			}
		}
		if pick < 0 {
			return -1
		}
		if s.last.CompareAndSwap(last, int64(pick)) {
			return pick
		}
	}
}
