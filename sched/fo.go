package sched

import "sort"

// fo is weighted fail-over (ip_vs_fo.c): the usable server of the highest weight, ties
// to the first in list order. The servers of weight above zero are sorted once by that
// rule (order), so a decision takes the first one that is not overloaded: O(1) when
// none is.
type fo struct {
	base
	order []int32
}

func init() {
	register("fo", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) {
		s := &fo{base: *b}
		for i := range s.dests {
			if s.dests[i].Weight > 0 {
				s.order = append(s.order, int32(i))
			}
		}
		sort.SliceStable(s.order, func(x, y int) bool { return s.dests[s.order[x]].Weight > s.dests[s.order[y]].Weight })
		return s, nil
	})
}

func (s *fo) Name() string { return "fo" }

func (s *fo) Schedule(counts Counts, _ *Flow) int {
	for _, i := range s.order {
		if !s.overloaded(int(i), counts) {
			return int(i)
		}
	}
	return -1
}
