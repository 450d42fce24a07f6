package conntrack

// reapChunk bounds the slots Reap examines per lock hold.
const reapChunk = 256

// removeChunk bounds the slots RemoveDest examines per lock hold.
const removeChunk = 4096

// Reap expires entries whose timer ran out. It examines about budget records' worth of
// a shard's pages (a shard's whole pass counts as its share of Cap(), index lines and
// spare records included), continuing from where the previous call stopped: shard by
// shard in round-robin order, each shard from its cursor to its last record used, a
// chunk of slots per lock hold, one shard lock held at a time. A call never
// goes beyond one full pass over the table, so a budget of Cap() or more
// reaps everything that has expired; an empty shard costs one unit. Removing
// an entry costs a constant amount of work (index backward shift, list
// unlink, counts). It returns how many entries it expired. Call it
// regularly (xlvsd: every 100 ms with a budget that covers the table every
// few seconds).
func (t *Table) Reap(now int64, budget int) (expired int) {
	now32 := msOf(now)
	t.reapMu.Lock()
	defer t.reapMu.Unlock()
	// One pass: the rest of the current shard, the others, and the current
	// shard's beginning if the pass started in its middle.
	shardsLeft := len(t.shards)
	if t.reapPos != 0 {
		shardsLeft++
	}
	for budget > 0 && shardsLeft > 0 {
		sh := &t.shards[t.reapShard].shard
		sh.mu.Lock()
		pos, end := t.reapPos, sh.hwm
		n := min(uint32(reapChunk), end-min(pos, end))
		if end > 0 {
			n = min(n, reapReach(sh, pos, budget)-pos)
		}
		for p := pos; p < pos+n; p++ {
			if r := &sh.recs[p]; !isIndexLine(p) && r.used() && timedOut(r, now32) {
				t.release(sh, p)
				sh.expired++
				expired++
			}
		}
		sh.mu.Unlock()
		if end == 0 {
			budget--
		} else {
			budget -= reapCost(sh, pos, pos+n)
		}
		t.reapPos = pos + n
		if t.reapPos >= end {
			t.reapPos = 0
			t.reapShard = (t.reapShard + 1) % len(t.shards)
			shardsLeft--
		}
	}
	return expired
}

// Walk calls f for every live entry with the time left until it expires
// (nanoseconds, millisecond resolution). It copies one shard at a time under
// that shard's lock, so each shard is seen at one instant, and calls f with
// no lock held: f may call Lookup, Insert and the rest, but not Walk. The
// *Entry is reused between calls; copy it to keep it. f returns false to
// stop. Walks are serialised; the copy buffer was reserved by New.
func (t *Table) Walk(now int64, f func(e *Entry, expiresIn int64) bool) {
	now32 := msOf(now)
	t.walkMu.Lock()
	defer t.walkMu.Unlock()
	for i := range t.shards {
		sh := &t.shards[i].shard
		sh.mu.Lock()
		n := 0
		for p := uint32(0); p < sh.hwm; p++ {
			if r := &sh.recs[p]; !isIndexLine(p) && r.used() && !timedOut(r, now32) {
				t.walkBuf[n] = *r
				if !r.v4() && r.method().twoWay() {
					t.walkCold[n] = sh.cold[dense(p)]
				}
				n++
			}
		}
		sh.mu.Unlock()
		for j := range n {
			r := &t.walkBuf[j]
			r.copyOut(&t.walkCold[j], &t.walkEntry)
			left := int64(int32(r.expires-now32)) * 1e6
			if !f(&t.walkEntry, left) {
				return
			}
		}
	}
}

// RemoveDest removes every entry bound to destination dest, as IPVS expires
// the connections of a deleted real server when expire_nodest_conn is set,
// and returns how many it removed. Entries it finds expired on the way are
// reaped too (not counted in the result). It scans the whole table, a chunk
// of slots per lock hold.
func (t *Table) RemoveDest(dest uint32, now int64) int {
	now32 := msOf(now)
	removed := 0
	for i := range t.shards {
		sh := &t.shards[i].shard
		for start := uint32(0); ; start += removeChunk {
			sh.mu.Lock()
			if start >= sh.hwm {
				sh.mu.Unlock()
				break
			}
			end := min(start+removeChunk, sh.hwm)
			for p := start; p < end; p++ {
				r := &sh.recs[p]
				if isIndexLine(p) || !r.used() {
					continue
				}
				switch {
				case r.dest == dest:
					t.release(sh, p)
					sh.removed++
					removed++
				case timedOut(r, now32):
					t.release(sh, p)
					sh.expired++
				}
			}
			sh.mu.Unlock()
		}
	}
	return removed
}

// reapCost is what Reap charges for examining records [from, to) of shard sh: the
// budget is in records of capacity, and a shard's whole pass over its pages (index
// lines and spare records included) costs its cap, spread evenly: c(to) - c(from) with
// c(x) = ceil(x * cap / refs).
func reapCost(sh *shard, from, to uint32) int {
	return int(reapC(sh, to) - reapC(sh, from))
}

func reapC(sh *shard, x uint32) uint64 {
	return (uint64(x)*uint64(sh.cap) + uint64(len(sh.recs)) - 1) / uint64(len(sh.recs))
}

// reapReach is the furthest record x that a budget lets Reap examine from record pos:
// the largest x with reapCost(sh, pos, x) <= budget.
func reapReach(sh *shard, pos uint32, budget int) uint32 {
	x := (reapC(sh, pos) + uint64(budget)) * uint64(len(sh.recs)) / uint64(sh.cap)
	return uint32(min(x, uint64(len(sh.recs))))
}
