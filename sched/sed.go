package sched

// sed is shortest expected delay (ip_vs_sed.c): the usable server with the least
// (ActiveConn+1)/weight — inactive connections do not count — compared as
// loh*dw > doh*lw, ties to the first in list order. O(servers) a decision.
type sed struct{ base }

func init() {
	register("sed", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) { return &sed{*b}, nil })
}

func (s *sed) Name() string { return "sed" }

func (s *sed) Schedule(counts Counts, _ *Flow) int {
	least := -1
	var loh, lw int64
	for i := range s.dests {
		d := &s.dests[i]
		if d.Weight <= 0 || s.overloaded(i, counts) { // weight 0 never wins loh*0 > doh*lw
			continue
		}
		a, _ := counts.Conns(d.ID)
		doh := int64(a) + 1
		if least < 0 || loh*int64(d.Weight) > doh*lw {
			least, loh, lw = i, doh, int64(d.Weight)
		}
	}
	return least
}
