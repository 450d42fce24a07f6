package sched

// lblc is locality-based least-connection (ip_vs_lblc.c). Per destination address of the
// packets (the VIP for an ordinary service; many addresses behind a firewall-mark
// service in front of caches), the table remembers a server. A remembered server is used
// while it is in the list with weight above zero and is not "busy": more active
// connections than its weight while some server of the service has fewer than half its
// weight (the -x overload state is not looked at here, as in the kernel). Otherwise a
// server is chosen as wlc does and remembered. Expiry, memory bound and concurrency: see
// locality.go. O(1) a decision with a valid entry, O(servers) otherwise.
type lblc struct {
	base
	tbl *locTable
	ids refIndex
}

func init() {
	register("lblc", func(b *base, _ Flags, prev Scheduler) (Scheduler, error) {
		s := &lblc{base: *b, ids: newRefIndex(b.dests)}
		if p, ok := prev.(*lblc); ok {
			s.tbl = p.tbl
		}
		if s.tbl == nil && len(s.dests) > 0 {
			s.tbl = newLocTable(1)
		}
		return s, nil
	})
}

func (s *lblc) Name() string { return "lblc" }

func (s *lblc) Schedule(counts Counts, f *Flow) int {
	if len(s.dests) == 0 {
		return -1
	}
	f = flowOrZero(f)
	var e locEntry
	found := s.tbl.get(&f.Dst, f.Now, &e)
	if found {
		s.tbl.touch(&e, f.Now)
		if i := s.ids.find(e.refs[0]); i >= 0 && s.dests[i].Weight > 0 && !s.localityBusy(i, counts) {
			return i
		}
	}
	i := s.leastWeighted(counts)
	if i < 0 {
		return -1
	}
	if found { // ip_vs_lblc_new on an existing entry: a new server, the same last use
		e.refs[0], e.n = destRef(&s.dests[i]), 1
		s.tbl.rewrite(&e, e.lastmod)
	} else {
		s.tbl.insert(&f.Dst, destRef(&s.dests[i]), f.Now)
	}
	return i
}
