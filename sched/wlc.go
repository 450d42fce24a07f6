package sched

// wlc is weighted least-connection (ip_vs_wlc.c), the default: the usable server with
// the least overhead/weight, overhead being ActiveConn*256 + InActConn. The kernel starts
// from the first usable server and moves to a later one only when strictly less loaded,
// comparing loh*dw > doh*lw without division (64-bit products). O(servers) a decision.
type wlc struct{ base }

func init() {
	register("wlc", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) { return &wlc{*b}, nil })
}

func (s *wlc) Name() string { return "wlc" }

func (s *wlc) Schedule(counts Counts, _ *Flow) int {
	return s.leastWeighted(counts)
}
