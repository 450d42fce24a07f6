package conntrack

import "math"

// Touch accounts for packets of a connection that were forwarded without a lookup (the
// dataplane's XDP fast path forwards established connections itself): the live entry
// whose key in direction dir is k gets the timer a packet seen at time at (the table's
// clock, at <= now) would have given it in its current state, unless its timer already
// runs longer. No state transition (the fast path never forwards the packets that make
// one) and no counts of the destination change. It copies the entry to *out (out may be
// nil) and reports whether it found a live one; an entry that has timed out at now is
// not brought back (false). It allocates nothing.
//
// pkts is how many of those packets came from the client (DirOrig) since the last Touch
// of the connection; give 0 for a reply key's packets, which a sync master does not
// count. While sync is on (SetSync) they count in the connection's incoming-packet count,
// as Lookup counts each, and out.Sync says whether a master sends the connection now: yes
// when IPVS's ip_vs_sync_conn_needed would have said yes for at least one of them, asked
// packet by packet as if all had arrived at time at, and the connection's sync state is
// left as those packets would have left it. (The kernel would have sent it at the
// packets' own times, and once per matching packet; a backup ends with the same
// connection either way.) With sync off, or pkts 0, out.Sync is false.
func (t *Table) Touch(dir Dir, k *Key, at, now int64, pkts uint64, out *Entry) bool {
	si, ok := t.keyShard(dir, k)
	if !ok {
		return false
	}
	h := t.dirHash(dir, k)
	sh := &t.shards[si].shard
	now32, at32 := msOf(now), msOf(min(at, now))
	var sp *syncPolicy
	if pkts > 0 && dir == DirOrig {
		sp = t.syncPol.Load()
	}
	sh.mu.Lock()
	ref := t.find(sh, h, dir, k)
	ok = ref != noIdx && !timedOut(&sh.recs[ref], now32)
	if ok {
		r := &sh.recs[ref]
		st := r.state()
		to := t.timeout(st)
		if exp := at32 + to; int32(exp-r.expires) > 0 {
			r.expires = exp
		}
		send := false
		if sp != nil {
			send = sp.neededRun(sh.slot(ref), r.proto(), st, to>>syncTickShift, at32>>syncTickShift, pkts)
		}
		if out != nil {
			r.copyOut(sh.coldOf(ref), out)
			out.Sync = send
		}
	}
	sh.mu.Unlock()
	return ok
}

// neededRun is needed for pkts (at least 1) packets of one connection that arrive at one
// tick, now: it counts each in the slot and asks needed after each, and reports whether
// any answer was yes. It asks only after the packets whose count passes needed's count
// check (and after the first, which a state change could send whatever its count), since
// the others are refused by it without a change to the slot. Once needed refuses a packet
// whose count passes, every later one is refused too: the refusal came from the state or
// the refresh period, which nothing changes within one tick. Once it says yes without a
// refresh period, every later yes would store what this one stored. A refresh period of
// 32 sync ticks (256 ms) or more forbids a second send within a tick, so it then asks
// needed at most three times (sync_refresh_period is whole seconds); shorter ones, which
// only the API can set, may send again within the tick and are followed packet by
// passing packet.
func (p *syncPolicy) neededRun(sl *syncSlot, proto uint8, st State, to, now uint32, pkts uint64) bool {
	sl.pkts++
	sent := p.needed(sl, proto, st, to, now)
	left := pkts - 1
	for left > 0 {
		k := p.nextDue(sl.pkts, left)
		if k == 0 {
			break
		}
		sl.pkts = int32(uint32(sl.pkts) + uint32(k))
		left -= k
		if !p.needed(sl, proto, st, to, now) {
			break
		}
		sent = true
		if p.refresh == 0 {
			break
		}
	}
	sl.pkts = int32(uint32(sl.pkts) + uint32(left))
	return sent
}

// nextDue is the smallest k from 1 to left for which a count of c+k passes needed's
// count check, 0 when none does. Counts are int32 and wrap, as the kernel's atomic_t
// in_pkts does, and the check is Go's (and C's) truncated remainder: count % period ==
// threshold holds for a count of the threshold's sign (either, for 0) congruent to the
// threshold modulo the period.
func (p *syncPolicy) nextDue(c int32, left uint64) uint64 {
	if p.period <= 0 {
		if p.refresh > 0 {
			return 1 // no count check
		}
		k := uint64(uint32(p.threshold) - uint32(c)) // c+k == threshold, wrapping
		if k == 0 {
			k = 1 << 32
		}
		if k <= left {
			return k
		}
		return 0
	}
	per, th := int64(p.period), int64(p.threshold)
	if th >= per || th <= -per {
		return 0
	}
	// Walk the counts in segments of one sign without a wrap: from c+1 to -1 or to
	// MaxInt32, then from MinInt32 or 0 on.
	var done uint64 // counts before the segment's first
	v := int64(c) + 1
	for done < left {
		if v > math.MaxInt32 {
			v = math.MinInt32
		}
		end := int64(math.MaxInt32)
		if v < 0 {
			end = -1
		}
		if th == 0 || th > 0 == (v >= 0) {
			first := v + ((th-v)%per+per)%per // the smallest count >= v congruent to th
			if first <= end {
				if k := done + uint64(first-v) + 1; k <= left {
					return k
				}
				return 0
			}
		}
		done += uint64(end - v + 1)
		v = end + 1
	}
	return 0
}
