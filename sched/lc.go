package sched

// lc is least-connection (ip_vs_lc.c): the usable server with the least overhead
// (ActiveConn*256 + InActConn), ties to the first in list order. Weights other than 0
// do not matter. O(servers) a decision.
type lc struct{ base }

func init() {
	register("lc", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) { return &lc{*b}, nil })
}

func (s *lc) Name() string { return "lc" }

func (s *lc) Schedule(counts Counts, _ *Flow) int {
	least := -1
	var loh int64
	for i := range s.dests {
		if s.dests[i].Weight <= 0 || s.overloaded(i, counts) {
			continue
		}
		if doh := overhead(counts.Conns(s.dests[i].ID)); least < 0 || doh < loh {
			least, loh = i, doh
		}
	}
	return least
}
