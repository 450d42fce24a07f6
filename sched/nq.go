package sched

// nq is never queue (ip_vs_nq.c): the first usable server in list order with no active
// connection; if every one has some, as sed: the least (ActiveConn+1)/weight.
// O(servers) a decision.
type nq struct{ base }

func init() {
	register("nq", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) { return &nq{*b}, nil })
}

func (s *nq) Name() string { return "nq" }

func (s *nq) Schedule(counts Counts, _ *Flow) int {
	least := -1
	var loh, lw int64
	for i := range s.dests {
		d := &s.dests[i]
		if d.Weight <= 0 || s.overloaded(i, counts) {
			continue
		}
		a, _ := counts.Conns(d.ID)
		if a == 0 { // idle: taken at once
			least = i
			break
		}
		doh := int64(a) + 1
		if least < 0 || loh*int64(d.Weight) > doh*lw {
			least, loh, lw = i, doh, int64(d.Weight)
		}
	}
	return least
}
