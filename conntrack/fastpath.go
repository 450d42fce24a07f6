package conntrack

// Touch accounts for packets of a connection that were forwarded without a lookup (the
// dataplane's XDP fast path forwards established connections itself): the live entry
// whose key in direction dir is k gets the timer a packet seen at time at (the table's
// clock, at <= now) would have given it in its current state, unless its timer already
// runs longer. Nothing else changes: no state transition (the fast path never forwards
// the packets that make one), no counts, no sync. It copies the entry to *out (out may
// be nil) and reports whether it found a live one; an entry that has timed out at now is
// not brought back (false). It allocates nothing.
func (t *Table) Touch(dir Dir, k *Key, at, now int64, out *Entry) bool {
	si, ok := t.keyShard(dir, k)
	if !ok {
		return false
	}
	h := hashParts(&t.seed, &k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto)
	sh := &t.shards[si].shard
	now32, at32 := msOf(now), msOf(min(at, now))
	sh.mu.Lock()
	ref := t.find(sh, h, dir, k)
	ok = ref != noIdx && !timedOut(&sh.recs[ref], now32)
	if ok {
		r := &sh.recs[ref]
		if exp := at32 + t.timeout(r.state()); int32(exp-r.expires) > 0 {
			r.expires = exp
		}
		if out != nil {
			r.copyOut(sh.coldOf(ref), out)
		}
	}
	sh.mu.Unlock()
	return ok
}
