package sched

// lblcr is locality-based least-connection with replication (ip_vs_lblcr.c). Per
// destination address the table remembers a set of servers, newest first. A decision
// takes the set's weighted least-connection server (skipping servers that are gone, of
// weight 0 or overloaded); if the set has more than one server and has not changed for
// lblcr_expiration (24 h), its weighted most-connection server is dropped first. The
// server taken is used unless there is none or it is "busy" (as lblc); then a server is
// chosen as wlc does and added to the set. A new address gets a set of the wlc choice.
// Sets hold at most lblcrSetMax servers here: adding to a full set drops a server that is
// gone, else the oldest. Expiry, memory bound and concurrency: see locality.go.
// O(set size) a decision with a valid set, O(servers) otherwise.
type lblcr struct {
	base
	tbl *locTable
	ids refIndex
}

func init() {
	register("lblcr", func(b *base, _ Flags, prev Scheduler) (Scheduler, error) {
		s := &lblcr{base: *b, ids: newRefIndex(b.dests)}
		if p, ok := prev.(*lblcr); ok {
			s.tbl = p.tbl
		}
		if s.tbl == nil && len(s.dests) > 0 {
			s.tbl = newLocTable(lblcrSetMax)
		}
		return s, nil
	})
}

func (s *lblcr) Name() string { return "lblcr" }

func (s *lblcr) Schedule(counts Counts, f *Flow) int {
	if len(s.dests) == 0 {
		return -1
	}
	f = flowOrZero(f)
	now := f.Now
	var e locEntry
	if !s.tbl.get(&f.Dst, now, &e) {
		i := s.leastWeighted(counts)
		if i < 0 {
			return -1
		}
		s.tbl.insert(&f.Dst, destRef(&s.dests[i]), now)
		return i
	}
	s.tbl.touch(&e, now)
	i := s.setMin(&e, counts)
	if e.n > 1 && now-e.lastmod > localityExpiration {
		if j := s.setMost(&e, counts); j >= 0 {
			copy(e.refs[j:e.n-1], e.refs[j+1:e.n])
			e.n--
			s.tbl.rewrite(&e, now)
		}
	}
	if i >= 0 && !s.localityBusy(i, counts) {
		return i
	}
	i = s.leastWeighted(counts)
	if i < 0 {
		return -1
	}
	ref := destRef(&s.dests[i])
	present := false
	for j := 0; j < e.n; j++ {
		present = present || e.refs[j] == ref
	}
	if !present {
		if e.n == lblcrSetMax {
			drop := e.n - 1
			for j := e.n - 1; j >= 0; j-- {
				if s.ids.find(e.refs[j]) < 0 {
					drop = j
					break
				}
			}
			copy(e.refs[drop:e.n-1], e.refs[drop+1:e.n])
			e.n--
		}
		copy(e.refs[1:e.n+1], e.refs[:e.n])
		e.refs[0] = ref
		e.n++
		s.tbl.rewrite(&e, now)
	}
	return i
}

// setMin is ip_vs_dest_set_min: the set's usable server with the least overhead/weight,
// -1 if none.
func (s *lblcr) setMin(e *locEntry, counts Counts) int {
	least := -1
	var loh, lw int64
	for j := 0; j < e.n; j++ {
		i := s.ids.find(e.refs[j])
		if i < 0 || s.dests[i].Weight <= 0 || s.overloaded(i, counts) {
			continue
		}
		doh := overhead(counts.Conns(s.dests[i].ID))
		if least < 0 || loh*int64(s.dests[i].Weight) > doh*lw {
			least, loh, lw = i, doh, int64(s.dests[i].Weight)
		}
	}
	return least
}

// setMost is ip_vs_dest_set_max: the position in the set of its server of weight above
// zero with the most overhead/weight (overload does not matter), -1 if none. Servers
// that are gone are passed over (their weight is not known any more).
func (s *lblcr) setMost(e *locEntry, counts Counts) int {
	most := -1
	var moh, mw int64
	for j := 0; j < e.n; j++ {
		i := s.ids.find(e.refs[j])
		if i < 0 || s.dests[i].Weight <= 0 {
			continue
		}
		doh := overhead(counts.Conns(s.dests[i].ID))
		if most < 0 || moh*int64(s.dests[i].Weight) < doh*mw {
			most, moh, mw = j, doh, int64(s.dests[i].Weight)
		}
	}
	return most
}
