package sched

// dh is destination hashing (ip_vs_dh.c): a 256-bucket table filled with the servers in
// list order, one bucket each, round and round (weights do not matter); the packet's
// destination address picks the bucket (see hash.go), and its server is the answer if
// its weight is above zero and it is not overloaded, else there is none. Made for
// firewall-mark services in front of caches: for one VIP every client gets the same
// server. O(1) a decision.
type dh struct {
	base
	table [256]int32 // server index per bucket; -1 with no servers
}

func init() {
	register("dh", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) {
		s := &dh{base: *b}
		for i := range s.table {
			s.table[i] = -1
			if n := len(s.dests); n > 0 {
				s.table[i] = int32(i % n)
			}
		}
		return s, nil
	})
}

func (s *dh) Name() string { return "dh" }

func (s *dh) Schedule(counts Counts, f *Flow) int {
	f = flowOrZero(f)
	i := int(s.table[dhBucket(fold(&f.Dst))])
	if i < 0 || !s.usable(i, counts) {
		return -1
	}
	s.bound(i, counts)
	return i
}
