package sched

// sh is source hashing (ip_vs_sh.c). A 256-bucket table is filled in list order, each
// server taking as many consecutive buckets as its weight (a server of weight 0 still
// takes one: the kernel moves on once ++count >= weight), over and over until all 256
// are assigned. The client address (and with sh-port its port; see hash.go) picks the
// bucket; its server is the answer if its weight is above zero and it is not overloaded,
// else there is none — or, with sh-fallback, the kernel probes the buckets at offsets 0
// to 255 from the hash and takes the first usable server. O(1) a decision.
type sh struct {
	base
	table          [256]int32 // server index per bucket; -1 with no servers
	fallback, port bool
}

func init() {
	register("sh", func(b *base, flags Flags, _ Scheduler) (Scheduler, error) {
		s := &sh{base: *b, fallback: flags&FlagSHFallback != 0, port: flags&FlagSHPort != 0}
		n := len(s.dests)
		p, count := 0, int32(0)
		for i := range s.table {
			if n == 0 {
				s.table[i] = -1
				continue
			}
			s.table[i] = int32(p)
			if count++; count >= s.dests[p].Weight {
				p, count = (p+1)%n, 0
			}
		}
		return s, nil
	})
}

func (s *sh) Name() string { return "sh" }

func (s *sh) Schedule(counts Counts, f *Flow) int {
	f = flowOrZero(f)
	var port uint16
	if s.port {
		port = flowPort(f)
	}
	a := fold(&f.Src)
	ihash := shBucket(a, port, 0)
	i := int(s.table[ihash])
	if i < 0 {
		return -1
	}
	if s.usable(i, counts) {
		s.bound(i, counts)
		return i
	}
	if !s.fallback {
		return -1
	}
	for off := uint32(0); off < 256; off++ {
		i = int(s.table[shBucket(a, port, (off+ihash)%256)])
		if s.usable(i, counts) {
			s.bound(i, counts)
			return i
		}
	}
	return -1
}
