package conntrack

import (
	"math/bits"
	"unsafe"
)

// batchMax is how many queries LookupBatch works on at once; longer slices
// are done in chunks of this size.
const batchMax = 64

// lineSlots is how many index slots share a 64-byte cache line.
const lineSlots = 16

// hintWindow is how many index slots from a key's home slot LookupBatch reads, without
// the lock, to choose the record to prefetch: Robin Hood keeps nearly every key within
// a few slots of home (TestLookupBatchHints; a NAT connection's two keys share a home),
// and 16 slots span two cache lines of one page, or one.
const hintWindow = 16

// hintValid is the mask of the hintWindow slots from the index slot at address home
// that lie in its page's index (pageSlots slots at the page's start): a window that
// runs past it would read records.
func hintValid(home uintptr) uint32 {
	n := min(hintWindow, max(pageSlots-int(home%pageBytes)/4, 0))
	return 1<<n - 1
}

// hintMin is the smallest table (bytes of records and index) for which
// LookupBatch prefetches: smaller ones stay in the CPU caches, where
// prefetching costs more than it saves.
const hintMin = 8 << 20

// Query is one packet of a LookupBatch: the caller sets Key, Dir and
// TCPFlags (or, for a Repeat, TCPFlags only); LookupBatch sets Status and,
// for Found and Reused, Entry (as Lookup copies out, unless Shared), Same
// and Shared.
type Query struct {
	Key      Key
	Dir      Dir
	TCPFlags uint8
	Status   Status
	Entry    Entry
	// Same: the query has the Key and Dir of the query just before it in the slice
	// LookupBatch was given, both valid (the packets are one flow's burst). False
	// promises nothing (a long slice is looked up in chunks).
	Same bool
	// Repeat, set by the caller: the query is the packet after the previous query's, of
	// the same flow, and its Key and Dir are that query's; the caller sets only
	// TCPFlags (LookupBatch copies Dir in, and Key unless Shared). A first query must
	// not be one. A Repeat is looked up under the previous query's lock hold, after it,
	// and costs next to nothing when it changes nothing (Shared).
	Repeat bool
	// Shared, set by LookupBatch for a Repeat: the packet has the flags of the packet
	// before, which left the connection's state as it found it, so this one does too
	// and its timer is the one already set (the same batch clock); Status is Found, and
	// neither Entry nor Key is filled: they are those of the nearest query before it
	// that is not Shared.
	Shared bool
	// Set by LookupBatch for InsertQuery: Key's hash and shard, and whether they are
	// (the query had a valid Dir).
	hash   uint64
	shard  int32
	hashed bool
}

// LookupBatch does what Lookup does for every query of qs, in order:
// qs[i].Status and qs[i].Entry are what Lookup(qs[i].Dir, &qs[i].Key,
// qs[i].TCPFlags, now, &qs[i].Entry) would have returned and copied out
// had it been called for each query in turn, with the same state
// transitions, timer refreshes, counts and removals (two queries of one
// connection see each other's effects, as two Lookup calls would).
//
// It is faster than as many Lookup calls when the table is larger than the
// CPU caches: it hashes every key and prefetches the index cache lines
// where each key's probe starts, reads those lines without a lock to
// prefetch the records they point to, and only then does the real lookups,
// so that the cache misses of the whole batch overlap instead of following
// one another. The lock-free reads serve only to choose what to prefetch and
// which record the lookup under the lock compares with the key before it
// probes the index (a stale value costs a cache miss and a compare, never a
// wrong result); they are done in assembly (amd64), outside what the race
// detector sees. For each query of DirOrig it finds NotFound or Reused (a packet
// that may create a connection), it also starts loading what inserting that
// connection will touch, as PrefetchInsert does, so that a caller that inserts the
// batch's new connections afterwards (InsertQuery) finds those lines on their way.
// Elsewhere the prefetching is skipped. It allocates nothing.
func (t *Table) LookupBatch(qs []Query, now int64) {
	var s Scratch
	t.LookupBatchIn(&s, qs, now)
}

// Scratch is the working memory of a LookupBatch (about 2 KiB). LookupBatch zeroes one
// on its stack for every call, as Go does for any variable; a caller that looks up
// batch after batch keeps its own and passes it to LookupBatchIn, which needs it in no
// particular state. One Scratch must not serve two calls at once.
type Scratch struct{ b batchScratch }

// Made is how many queries the last LookupBatchIn with s found missing and started
// loading an insert for (client packets NotFound or Reused, on a table large enough to
// prefetch for; see LookupBatch): 0 tells a caller that no connection of the batch
// will be inserted into memory the lookup prefetched for.
func (s *Scratch) Made() int { return s.b.nMade }

// LookupBatchIn is LookupBatch with s as its working memory.
func (t *Table) LookupBatchIn(s *Scratch, qs []Query, now int64) {
	now32 := msOf(now)
	s.b.nMade = 0
	for off := 0; off < len(qs); off += batchMax {
		if q := &qs[off]; off > 0 && q.Repeat {
			// A chunk's first query is looked up as any other: it needs the key, which
			// the last query before it that is not Shared holds.
			j := off - 1
			for qs[j].Shared {
				j--
			}
			q.Key, q.Dir = qs[j].Key, qs[j].Dir
		}
		t.lookupBatch(qs[off:min(off+batchMax, len(qs))], now32, &s.b)
	}
}

// sameKey is a == b, inline and ports first (the == of Key is a call).
func sameKey(a, b *Key) bool {
	return a.SrcPort == b.SrcPort && a.DstPort == b.DstPort && a.Proto == b.Proto && a.Src == b.Src && a.Dst == b.Dst
}

// batchScratch is LookupBatch's working memory (Scratch). lookupBatch writes each of
// its fields for key j before it reads it there, so it may hold anything when a call
// starts: home only where the table prefetches (t.hint), which is where it is read, and
// guess only in lookupStaged (hintRecord), which is where it is read. (A stale rep or
// guess would cost time, not correctness: lookupRepeats checks each query's Repeat, and
// a guessed record is compared with the key.)
type batchScratch struct {
	hs   [batchMax]uint64
	sis  [batchMax]int32   // shard of query vi[j]
	home [batchMax]uintptr // address of key j's home slot (prefetching tables only)
	// the record hintRecord prefetched for key j (lookupStaged only; noIdx: none):
	// the lookup under the lock tries it before it probes the index
	guess [batchMax]uint32
	vi    [batchMax]uint8 // indexes of the queries with a valid Dir
	same  [batchMax]bool  // query vi[j] has the key and direction of query vi[j-1]
	rep   [batchMax]bool  // query vi[j] is followed by Repeats (lookupRepeats)
	// the keys (j) lookupStaged found missing (new connections), whose inserts it
	// prefetches for
	made [batchMax]uint8
	// the keys (j) whose first window ended inside their run (lookupStaged), and for
	// key j the address of its second window (nextWindow)
	far  [batchMax]uint8
	next [batchMax]uintptr
	// nMade counts the made keys of every chunk of the call (Scratch.Made)
	nMade int
}

func (t *Table) lookupBatch(qs []Query, now32 uint32, b *batchScratch) {
	qs = qs[:min(len(qs), batchMax)]
	// Hash every key and note where its probe starts (its home slot), whose window
	// of hintWindow slots the prefetching reads.
	// Consecutive packets of one flow (a burst) share the previous query's hashes.
	// A Repeat is not hashed, nor does it take a slot of b: the lookups do it after the
	// query before it (lookupRepeats). last is the index of the last query in b or a
	// Repeat of it.
	m, last := 0, -1
	for i := range qs {
		q := &qs[i]
		q.Shared = false
		if m > 0 && last == i-1 {
			if q.Repeat {
				q.Dir, q.Same = qs[i-1].Dir, true
				b.rep[m-1] = true
				q.hash, q.shard, q.hashed = b.hs[m-1], b.sis[m-1], true
				last = i
				continue
			}
			if p := &qs[b.vi[m-1]]; q.Dir == p.Dir && sameKey(&q.Key, &p.Key) {
				q.Same = true
				b.vi[m], b.sis[m], b.hs[m], b.same[m], b.rep[m] = uint8(i), b.sis[m-1], b.hs[m-1], true, false
				q.hash, q.shard, q.hashed = b.hs[m], b.sis[m], true
				b.home[m] = b.home[m-1]
				last = i
				m++
				continue
			}
		}
		q.Same = false
		if q.Repeat && i > 0 {
			q.Key, q.Dir = qs[i-1].Key, qs[i-1].Dir // the query before was not looked up: it has its key
		}
		si, h, ok := t.keyHash(q.Dir, &q.Key)
		if !ok {
			q.Status, q.hashed = Invalid, false
			continue
		}
		last = i
		b.vi[m], b.sis[m], b.hs[m], b.same[m], b.rep[m] = uint8(i), int32(si), h, false, false
		q.hash, q.shard, q.hashed = h, int32(si), true
		if t.hint {
			b.home[m] = slotAddr(&t.shards[si].shard, h)
		}
		m++
	}
	if t.hint && m > 0 {
		t.lookupStaged(qs, b, m, now32)
		return
	}
	// The lookups, one shard lock hold for each run of queries of one shard.
	for j := 0; j < m; {
		sh := &t.shards[b.sis[j]].shard
		sh.mu.Lock()
		found := noIdx // the record the query before found under this hold
		stay := false  // and its packet left the state as it was (lookupAgain)
		var filled *Query
		for {
			i := int(b.vi[j])
			q := &qs[i]
			ok := false
			if b.same[j] && found != noIdx {
				ok, stay = t.lookupAgain(sh, found, q, qs[i-1].TCPFlags, &filled.Entry, stay, now32)
			}
			if !ok {
				q.Status, found = t.lookupLocked(sh, b.hs[j], q.Dir, &q.Key, q.TCPFlags, now32, &q.Entry, noIdx)
				stay = false
			}
			filled = q
			if b.rep[j] {
				found, stay, filled = t.lookupRepeats(sh, qs, i, b.hs[j], found, stay, filled, now32)
			}
			j++
			if j == m || b.sis[j] != b.sis[j-1] {
				break
			}
		}
		sh.mu.Unlock()
	}
}

// lookupStaged does the m lookups of a hashed batch (b) on a table large enough to
// prefetch for, in three stages: it prefetches the index windows of all m queries, then
// reads each window (lock-free, hintRecord) and prefetches the record it names, and only
// then does the lookups, in the batch's order, whose lines have mostly arrived. Each of
// the first two stages is a short loop of independent memory accesses, which the core
// overlaps as far as its miss buffers allow.
//
// Until 2026-12-07 the prefetches were software-pipelined instead: before query j was
// looked up, the window of query j+16 was prefetched and that of query j+8 read to
// prefetch its record. On this VM that hid the misses only while the table's
// footprint was small: with about 50 ns of lookup work between one prefetch and the
// next, a random line of a 1 GiB table read 16 lookups after its prefetch still cost
// most of a miss, while the same lines prefetched in a tight loop did not
// (BenchmarkMemoryLatency has the patterns; BENCHMARKS.md, "Staged batch lookups").
// LookupLatency batch p50 went from 179.6 to 107.5 ns at 10M entries, from 73.4 to 60.1
// at 1Mi (medians of 5 alternating rounds).
// A shard's lock is held for each run of consecutive queries of that shard, as in
// lookupBatch.
func (t *Table) lookupStaged(qs []Query, b *batchScratch, m int, now32 uint32) {
	// A sync master's lookups of client packets also read the record's sync slot.
	syncOn := t.syncPol.Load() != nil
	mask := ^uint32(0)<<t.tagPos | 1
	for k := range m {
		prefetchWindow(b.home[k])
	}
	nFar := 0
	for k := range m {
		if t.hintRecord(qs, b, k, b.home[k], mask, syncOn) {
			b.far[nFar] = uint8(k)
			nFar++
		}
	}
	// The keys whose window ended inside their run (about 3 % of a full table's: the
	// run crossed its page's index end, or the key is 16 slots or more from home) get
	// a second window, the slots just after the first: prefetched together, then read.
	// Without it the lookup under the lock probes those runs through two misses, the
	// index line and the record (LookupLatency 10M: about 8 ns per lookup, measured).
	for _, k := range b.far[:nFar] {
		b.next[k] = t.shards[b.sis[k]].shard.nextWindow(b.home[k])
		prefetchWindow(b.next[k])
	}
	for _, k := range b.far[:nFar] {
		t.hintRecord(qs, b, int(k), b.next[k], mask, syncOn)
	}
	var held *shard
	nMade := 0
	found, stay := noIdx, false
	var filled *Query // the last query whose Entry was filled (lookupAgain's prevEntry)
	for j := range m {
		sh := &t.shards[b.sis[j]].shard
		if sh != held {
			if held != nil {
				held.mu.Unlock()
			}
			sh.mu.Lock()
			held, found = sh, noIdx
		}
		// The lookup as in lookupBatch's loop, written out: a call here costs about 24
		// instructions per lookup (callgrind, PipelineEstablished32 +1.3 %).
		i := int(b.vi[j])
		q := &qs[i]
		ok := false
		if b.same[j] && found != noIdx {
			ok, stay = t.lookupAgain(sh, found, q, qs[i-1].TCPFlags, &filled.Entry, stay, now32)
		}
		if !ok {
			q.Status, found = t.lookupLocked(sh, b.hs[j], q.Dir, &q.Key, q.TCPFlags, now32, &q.Entry, b.guess[j])
			stay = false
			if q.Dir == DirOrig && (q.Status == NotFound || q.Status == Reused) {
				b.made[nMade] = uint8(j) // a new connection, most likely
				nMade++
			}
		}
		filled = q
		if b.rep[j] {
			found, stay, filled = t.lookupRepeats(sh, qs, i, b.hs[j], found, stay, filled, now32)
		}
	}
	held.mu.Unlock()
	// The new connections' inserts: the records and list tails they will most likely
	// take (the record in the page of the key's home slot, whose line the lookup read;
	// a NAT reply key has the same home, see origHash). Issued only now: during the
	// lookups these prefetches would compete with the batch's own for the core's miss
	// buffers (PipelineNew 13-25 % slower).
	// An IPv6 key's insert also gets its record's cold part prefetched: a NAT or FULLNAT
	// connection writes its reply addresses there (a DR or TUN one does not, and the
	// table does not know the method yet: one wasted prefetch).
	b.nMade += nMade
	for _, j := range b.made[:nMade] {
		t.shards[b.sis[j]].shard.prefetchInsert(b.home[j], !qs[b.vi[j]].Key.addrs4())
	}
}

// lookupRepeats looks up the Repeats that follow query i, under its shard's lock: found,
// stay and filled are what the lookups so far left (the record found, whether the last
// packet left its state as it was, the last query whose Entry was filled), and it
// returns them as the Repeats leave them. A Repeat with the flags of the packet before,
// which left the state as it was, is Shared: nothing to do. Any other is what
// lookupAgain, or a lookup afresh, makes of it.
func (t *Table) lookupRepeats(sh *shard, qs []Query, i int, h uint64, found uint32, stay bool, filled *Query, now32 uint32) (uint32, bool, *Query) {
	// A sync master counts every client packet (lookupAgain): read once for the run, as
	// the batch's lookups read the switch once each.
	syncOff := t.syncPol.Load() == nil
	for i++; i < len(qs) && qs[i].Repeat; i++ {
		q, prev := &qs[i], &qs[i-1]
		if found != noIdx && stay && q.TCPFlags == prev.TCPFlags && !filled.Entry.Sync &&
			(q.Dir != DirOrig || syncOff) {
			q.Status, q.Shared = Found, true
			continue
		}
		q.Key = filled.Key
		ok := false
		if found != noIdx {
			ok, stay = t.lookupAgain(sh, found, q, prev.TCPFlags, &filled.Entry, stay, now32)
		}
		if !ok {
			q.Status, found = t.lookupLocked(sh, h, q.Dir, &q.Key, q.TCPFlags, now32, &q.Entry, noIdx)
			stay = false
		}
		filled = q
	}
	return found, stay, filled
}

// hintRecord reads query j's index window at address win (its home slot, or the
// nextWindow of that) without a lock (hintSlot) and prefetches the record of the first
// slot whose tag and direction match: its line, its cold part's for an IPv6 key, and
// its sync slot's when sync is on and the query is a client's. It reports more when
// the window held neither a match nor an empty slot: the key, if it is in the table,
// lies further along its run.
func (t *Table) hintRecord(qs []Query, b *batchScratch, j int, win uintptr, mask uint32, syncOn bool) (more bool) {
	q := &qs[b.vi[j]]
	want := uint32(b.hs[j]>>t.tagShift)<<t.tagPos | uint32(q.Dir) ^ 1
	s, s2, more := hintSlot(win, mask, want, hintValid(win))
	sh := &t.shards[b.sis[j]].shard
	rec := (s&t.refMask - 1) >> 1
	b.guess[j] = noIdx
	if s == 0 || rec >= uint32(len(sh.recs)) || isIndexLine(rec) {
		return more
	}
	b.guess[j] = rec
	var a [4]uintptr
	recs := uintptr(unsafe.Pointer(unsafe.SliceData(sh.recs)))
	a[0] = recs + uintptr(rec)*unsafe.Sizeof(record{})
	n := 1
	// A second slot with the key's tag: when the first is another key's (about 1 % of
	// lookups in a full table), the lookup probes the index, whose line is here, and
	// finds this one's record on its way.
	if rec2 := (s2&t.refMask - 1) >> 1; s2 != 0 && rec2 < uint32(len(sh.recs)) && !isIndexLine(rec2) {
		a[n] = recs + uintptr(rec2)*unsafe.Sizeof(record{})
		n++
	}
	if !q.Key.addrs4() {
		// An IPv6 key: the record is in v6 form, and a NAT or FULLNAT one has its
		// reply addresses in the cold part.
		a[n] = sh.coldAddr(dense(rec))
		n++
	}
	if syncOn && q.Dir == DirOrig {
		a[n] = uintptr(unsafe.Pointer(sh.slot(rec)))
		n++
	}
	prefetchLines(&a[0], n)
	return false
}

// nextWindow is the address of the index slot just after the hint window at address
// win, whose slots hintValid bounds: the next slot of its page's index, or the first
// of the next page's, or of the shard's first page after its last, as the probe of a
// lookup goes on.
func (sh *shard) nextWindow(win uintptr) uintptr {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(sh.idx)))
	w := int(win-base) / 4
	i := w/(pageBytes/4)*pageSlots + w%(pageBytes/4) + bits.OnesCount32(hintValid(win))
	if n := sh.nslots(); i >= n {
		i -= n
	}
	return base + uintptr(slotWord(i))*4
}

// PrefetchInsert starts loading what an Insert of a connection whose
// original key is k will most likely touch: the index line of the key's home
// slot, the record alloc will take (the first free one of that slot's page)
// and the tail of the shard's list of non-ESTABLISHED entries, which the new
// entry links to, and for an IPv6 key that record's cold part (where a NAT or
// FULLNAT entry keeps its reply addresses). A caller that
// looked a batch up with LookupBatch calls it for each packet that may
// create a connection before it inserts any, so that those cache misses
// overlap instead of each Insert waiting for its own (two inserts into one
// shard share the guess; the first one's alloc prefetches the second's record). It only
// prefetches: the table is not changed, the shard is read without its lock
// with plain loads in assembly (a stale value prefetches the wrong line),
// and tables small enough for the CPU caches (see hintMin), closed tables
// and platforms without prefetching do nothing. It allocates nothing.
func (t *Table) PrefetchInsert(k *Key) {
	if !t.hint {
		return
	}
	sh := &t.shards[t.shardOf(&k.Src, k.SrcPort)].shard
	sh.prefetchInsert(slotAddr(sh, t.origHash(k)), !k.addrs4())
}

// PrefetchEntry starts loading everything an Insert of e will most likely touch: what
// PrefetchInsert(&e.Orig) prefetches, plus the home slots of e's original key and, for
// NAT and FULLNAT, of its reply key. The reply key is known only once the connection is
// scheduled, so a caller that schedules a batch's new connections first, calls
// PrefetchEntry for each, and only then inserts them, has all those cache misses overlap
// (Insert alone overlaps only its own). Like PrefetchInsert it only prefetches: the
// table is not changed, the shard is read without its lock, an invalid entry (Insert
// would refuse it) prefetches nothing or the wrong lines, small tables and closed ones
// do nothing. It allocates nothing.
func (t *Table) PrefetchEntry(e *Entry) {
	if !t.hint {
		return
	}
	o := &e.Orig
	sh := &t.shards[t.shardOf(&o.Src, o.SrcPort)].shard
	ho := t.origHash(o)
	sh.prefetchInsert(slotAddr(sh, ho), coldForm(e))
	if e.Method.twoWay() {
		// FULLNAT's reply key has a home of its own; NAT's is the original key's.
		if hr := t.replyHash(&e.Reply); uint32(hr) != uint32(ho) {
			a := slotAddr(sh, hr)
			prefetchLines(&a, 1)
		}
	}
}

// PrefetchReplyHome starts loading the index line of the home slot that a reply key
// whose destination endpoint is addr:port has in the shard of q's client endpoint: a
// FULLNAT connection's local endpoint, chosen before its insert (a reply key's home
// depends on that endpoint alone, see replyHash). q must be a query LookupBatch looked
// up (DirOrig); any other, small tables and closed ones do nothing. Like PrefetchInsert
// it only prefetches. It allocates nothing.
func (t *Table) PrefetchReplyHome(q *Query, addr *[16]byte, port uint16) {
	if !t.hint {
		return
	}
	if a, ok := t.replyHomeAddr(q, addr, port); ok {
		prefetchLines(&a, 1)
	}
}

// replyHomeAddr is the address of the index slot PrefetchReplyHome prefetches, false for
// a query it does nothing for.
func (t *Table) replyHomeAddr(q *Query, addr *[16]byte, port uint16) (uintptr, bool) {
	if !q.hashed || q.Dir != DirOrig || int(q.shard) >= len(t.shards) {
		return 0, false
	}
	return slotAddr(&t.shards[q.shard].shard, homeHash(&t.seed, addr, port)), true
}
