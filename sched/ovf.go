package sched

// ovf is overflow-connection (ip_vs_ovf.c): the highest-weight usable server whose
// ActiveConn does not exceed its weight, ties to the first in list order; connections
// overflow to the next weight down once a server holds more active ones than its weight.
// O(servers) a decision.
type ovf struct{ base }

func init() {
	register("ovf", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) { return &ovf{*b}, nil })
}

func (s *ovf) Name() string { return "ovf" }

func (s *ovf) Schedule(counts Counts, _ *Flow) int {
	h := -1
	var hw int32
	for i := range s.dests {
		w := s.dests[i].Weight
		if w <= 0 || (h >= 0 && w <= hw) { // cannot win: no need to read its counts
			continue
		}
		if s.overloaded(i, counts) {
			continue
		}
		if a, _ := counts.Conns(s.dests[i].ID); a > w {
			continue
		}
		h, hw = i, w
	}
	return h
}
