package conntrack

import (
	"math/bits"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"unsafe"
)

// twins returns two empty tables of cfg with the same hash seed, so that
// they place every connection alike and fill and evict alike.
func twins(t *testing.T, cfg Config) (*Table, *Table) {
	t.Helper()
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	b.seed = a.seed
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestLookupBatchMatchesLookup drives two twin tables with the same
// operations, one looking up with Lookup, key by key, the other with
// LookupBatch, and requires the same statuses, entries, counts and
// contents: batches of every size (beyond batchMax too), both directions,
// invalid directions, absent keys, repeats of a key within a batch (next
// to each other, as a flow's burst, which LookupBatch serves from the
// previous query's record and entry, and apart), Repeats (whose Key and Dir
// LookupBatch fills in, and whose Entry, when Shared, is the last filled one's),
// SYNs that reuse, entries that expire, a sync master's counts and Sync answers;
// every other batch through LookupBatchIn with a Scratch of random bytes.
func TestLookupBatchMatchesLookup(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		pool int
		hint bool
		sync bool
	}{
		{"one shard, evicting, prefetching", Config{MaxEntries: 300, Shards: 1, MaxDests: 5}, 500, true, false},
		{"16 shards, prefetching", Config{MaxEntries: 4000, Shards: 16, MaxDests: 9}, 3000, true, false},
		{"16 shards, no prefetching", Config{MaxEntries: 4000, Shards: 16, MaxDests: 9}, 3000, false, false},
		{"mapped arena, reuse mode 2", Config{MaxEntries: 40000, MaxDests: 9, ConnReuseMode: ConnReuseFinWait}, 30000, true, false},
		{"sync master, no prefetching", Config{MaxEntries: 300, Shards: 4, MaxDests: 5}, 200, false, true},
		{"sync master, prefetching", Config{MaxEntries: 300, Shards: 4, MaxDests: 5}, 200, true, true},
	}
	flags := []uint8{TCPAck, TCPAck | TCPPsh, TCPSyn, TCPSyn | TCPAck, TCPFin | TCPAck, TCPRst, 0}
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			single, batch := twins(t, tc.cfg)
			batch.hint = tc.hint && hintsWork
			if tc.sync {
				// Period 2: every other packet of a connection is sent, so a burst's
				// queries alternate their Sync answers.
				pol := SyncPolicy{Threshold: 1, Period: 2}
				single.SetSync(&pol)
				batch.SetSync(&pol)
			}
			rng := rand.New(rand.NewPCG(uint64(ti), 77))
			conns := make([]Entry, tc.pool)
			for i := range conns {
				proto := ProtoTCP
				if i%7 == 0 {
					proto = ProtoUDP
				}
				conns[i] = conn(i, proto, Method(i%4), uint32(i%tc.cfg.MaxDests))
			}
			now := int64(0)
			qs := make([]Query, 3*batchMax)
			var scratch Scratch
			shared := 0
			rounds := 300
			if raceEnabled {
				rounds = 60
			}
			for round := range rounds {
				for range tc.pool / 20 {
					c := conns[rng.IntN(len(conns))]
					fl := []uint8{TCPSyn, TCPSyn, 0}[rng.IntN(3)]
					e1, e2 := c, c
					err1, err2 := single.Insert(&e1, fl, now), batch.Insert(&e2, fl, now)
					if err1 != err2 || e1 != e2 {
						t.Fatalf("round %d: Insert: %v %+v and %v %+v", round, err1, e1, err2, e2)
					}
				}
				n := rng.IntN(len(qs) + 1)
				for j := range n {
					c := &conns[rng.IntN(len(conns))]
					burst := false
					if j > 0 && rng.IntN(5) == 0 {
						qs[j].Key, qs[j].Dir = qs[rng.IntN(j)].Key, qs[rng.IntN(j)].Dir
					} else if j > 0 && rng.IntN(4) == 0 {
						qs[j].Key, qs[j].Dir = qs[j-1].Key, qs[j-1].Dir // a burst of one flow
						burst = true
					} else {
						qs[j].Key, qs[j].Dir = c.Orig, DirOrig
						if c.Method.twoWay() && rng.IntN(2) == 0 {
							qs[j].Key, qs[j].Dir = c.Reply, DirReply
						}
					}
					if rng.IntN(50) == 0 {
						qs[j].Dir = Dir(2 + rng.IntN(5))
					}
					qs[j].TCPFlags = flags[rng.IntN(len(flags))]
					if burst && rng.IntN(2) == 0 {
						qs[j].TCPFlags = qs[j-1].TCPFlags // a stream's segments
					}
					qs[j].Entry = Entry{Service: 12345} // must survive a miss
					// A Repeat: the caller knows the query repeats the one before.
					qs[j].Repeat = j > 0 && qs[j].Key == qs[j-1].Key && qs[j].Dir == qs[j-1].Dir && rng.IntN(3) != 0
				}
				want := make([]Query, n)
				copy(want, qs[:n])
				for j := range n {
					if qs[j].Repeat { // LookupBatch fills them in
						qs[j].Key, qs[j].Dir = Key{SrcPort: 1}, Dir(9)
					}
				}
				for j := range want {
					w := &want[j]
					w.Status = single.Lookup(w.Dir, &w.Key, w.TCPFlags, now, &w.Entry)
				}
				if round%2 == 0 {
					batch.LookupBatch(qs[:n], now)
				} else {
					// A caller's Scratch holds whatever the calls before left, here
					// random bytes: no field may be read before it is written.
					junk := unsafe.Slice((*byte)(unsafe.Pointer(&scratch)), unsafe.Sizeof(scratch))
					for k := range junk {
						junk[k] = byte(rng.Uint32())
					}
					batch.LookupBatchIn(&scratch, qs[:n], now)
				}
				var filled *Query // the last query whose Entry was filled
				for j := range n {
					g, w := &qs[j], &want[j] // the public fields (LookupBatch also keeps the key's hash for InsertQuery)
					ge, gk := g.Entry, g.Key
					if g.Shared {
						if !g.Repeat || g.Status != Found || filled == nil {
							t.Fatalf("round %d, query %d of %d: Shared, Repeat %v, status %v", round, j, n, g.Repeat, g.Status)
						}
						ge, gk = filled.Entry, filled.Key
						shared++
					} else {
						filled = g
					}
					if gk != w.Key || g.Dir != w.Dir || g.TCPFlags != w.TCPFlags || g.Status != w.Status || ge != w.Entry {
						t.Fatalf("round %d, query %d of %d: LookupBatch gave %v %+v, Lookup %v %+v", round, j, n, qs[j].Status, qs[j].Entry, want[j].Status, want[j].Entry)
					}
					// Same: the key and direction of the query just before, both valid
					// (within LookupBatch's chunk of batchMax).
					valid := func(d Dir) bool { return d == DirOrig || d == DirReply }
					wantSame := j%batchMax > 0 && valid(w.Dir) && valid(want[j-1].Dir) && w.Dir == want[j-1].Dir && w.Key == want[j-1].Key
					if g.Same != wantSame {
						t.Fatalf("round %d, query %d of %d: Same %v, want %v", round, j, n, g.Same, wantSame)
					}
				}
				now += int64(rng.IntN(20)) * sec
				if round%50 == 49 {
					if a, b := single.Stats(), batch.Stats(); a != b {
						t.Fatalf("round %d: stats %+v and %+v", round, a, b)
					}
					for d := range uint32(tc.cfg.MaxDests) {
						a1, i1 := single.Conns(d)
						a2, i2 := batch.Conns(d)
						if a1 != a2 || i1 != i2 {
							t.Fatalf("round %d: dest %d counts %d/%d and %d/%d", round, d, a1, i1, a2, i2)
						}
					}
					checkInvariants(t, single)
					checkInvariants(t, batch)
				}
			}
			st := batch.Stats()
			if st.Inserts == 0 || st.Expired == 0 || st.Reused == 0 || shared == 0 {
				t.Fatalf("the run did not exercise the table: %+v, %d Shared", st, shared)
			}
			t.Logf("%d queries Shared", shared)
		})
	}
}

// TestLookupBatchHints: on a quiescent, nearly full table, the record
// LookupBatch prefetches for a key is the key's own for nearly every key
// (Robin Hood keeps keys near home; the hint reads hintWindow slots from home).
func TestLookupBatchHints(t *testing.T) {
	if !hintsWork {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs on amd64, where LookupBatch prefetches; hintsWork is false")
		}
		t.Skip("no prefetching on this platform")
	}
	const n = 1 << 15
	tb := mustNew(t, Config{MaxEntries: n + n/8, Shards: 8})
	defer tb.Close()
	for i := range n {
		e := benchEntry(i)
		if err := tb.Insert(&e, TCPSyn, 0); err != nil {
			t.Fatal(err)
		}
	}
	mask := ^uint32(0)<<tb.tagPos | 1
	good, second, twoMatch := 0, 0, 0
	for i := range n {
		for _, dir := range []Dir{DirOrig, DirReply} {
			e := benchEntry(i)
			k := &e.Orig
			if dir == DirReply {
				k = &e.Reply
			}
			si, _ := tb.keyShard(dir, k)
			sh := &tb.shards[si].shard
			h := tb.dirHash(dir, k)
			want := uint32(h>>tb.tagShift)<<tb.tagPos | uint32(dir) ^ 1
			win := slotAddr(sh, h)
			s, s2, more := hintSlot(win, mask, want, hintValid(win))
			ref := tb.find(sh, h, dir, k)
			if ref == noIdx {
				t.Fatalf("key %d %v not found", i, dir)
			}
			// The model: the window's slots in its page's index, up to the first empty
			// one, whose bits under mask are want; hintSlot gives the first two.
			var m [2]uint32
			nm, h0 := 0, home(h, sh.nslots())
			for j := range bits.OnesCount32(hintValid(win)) {
				v := sh.idx[slotWord(h0+j)]
				if v == 0 {
					break
				}
				if v&mask == want && nm < 2 {
					m[nm] = v
					nm++
				}
			}
			if s != m[0] || s2 != m[1] {
				t.Fatalf("key %d %v: hintSlot gives %#x, %#x; the window's first two matches are %#x, %#x", i, dir, s, s2, m[0], m[1])
			}
			if s2 != 0 {
				twoMatch++
			}
			// The key's slot: d slots from home (a run may wrap past the shard's end).
			home, n := home(h, sh.nslots()), sh.nslots()
			d := 0
			for sh.idx[slotWord((home+d)%n)]&tb.refMask-1 != ref<<1|uint32(dir) {
				d++
			}
			first := bits.OnesCount32(hintValid(win)) // the first window's slots
			switch {
			case d < first:
				// Within the window: always hinted, its own slot matching if no earlier
				// one does.
				if s == 0 {
					t.Fatalf("key %d %v lies %d slots from home, inside its hint window of %d, but is not hinted", i, dir, d, first)
				}
			case s == 0 && !more:
				t.Fatalf("key %d %v lies %d slots from home, past its window of %d slots, which matched nothing and did not report more", i, dir, d, first)
			case s == 0:
				// Past the first window: the second (lookupStaged's), at the slot
				// after the first's last, hints it when it lies within.
				next := sh.nextWindow(win)
				if want := uintptr(unsafe.Pointer(&sh.idx[slotWord((home+first)%n)])); next != want {
					t.Fatalf("key %d %v: nextWindow of slot %d (window of %d) is %#x, want slot %d at %#x", i, dir, home, first, next, (home+first)%n, want)
				}
				s, _, _ = hintSlot(next, mask, want, hintValid(next))
				if d < first+bits.OnesCount32(hintValid(next)) && s == 0 {
					t.Fatalf("key %d %v lies %d slots from home, inside its second window, but is not hinted", i, dir, d)
				}
				second++
			}
			if s != 0 && (s&tb.refMask-1)>>1 == ref {
				good++
			}
		}
	}
	// A NAT connection's two keys share a home, and a window stops at its page's index
	// end; with the second window, 99 % and more.
	if frac := float64(good) / (2 * n); frac < 0.98 || second == 0 || twoMatch == 0 {
		t.Fatalf("the hint names the key's record for %.2f%% of keys, want at least 98%%; %d by a second window, %d windows with two matches, want some of each", 100*frac, second, twoMatch)
	} else {
		t.Logf("hint right for %.2f%% of keys, %d by a second window; %d windows with two matches", 100*frac, second, twoMatch)
	}
}

func TestLookupBatchAllocs(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 12})
	tb.hint = hintsWork
	qs := make([]Query, 100)
	for i := range qs {
		e := conn(i, ProtoTCP, MethodNAT, 0)
		mustInsert(t, tb, e, TCPSyn, 0)
		qs[i].Key, qs[i].Dir, qs[i].TCPFlags = e.Orig, DirOrig, TCPAck
	}
	if n := testing.AllocsPerRun(100, func() { tb.LookupBatch(qs, sec) }); n != 0 {
		t.Errorf("LookupBatch allocates %v times", n)
	}
	for i := range qs {
		if qs[i].Status != Found {
			t.Fatalf("query %d: %v", i, qs[i].Status)
		}
	}
	tb.LookupBatch(nil, sec) // nothing to do, nothing to break
}

// TestArenaLayout: the shards' pages (records and index), sync arrays, cold parts and
// free words are carved from one arena without overlap, 64-byte aligned, the pages
// from a 4 KiB boundary.
func TestArenaLayout(t *testing.T) {
	for _, cfg := range []Config{{MaxEntries: 1}, {MaxEntries: 1000, Shards: 8}, {MaxEntries: 40000}} {
		tb := mustNew(t, cfg)
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(tb.mem.mem)))
		hi := lo + uintptr(len(tb.mem.mem))
		var regions [][2]uintptr
		for i := range tb.shards {
			if i > 0 {
				// No cache line holds fields of two shards (false sharing
				// between workers on different shards).
				prevEnd := uintptr(unsafe.Pointer(&tb.shards[i-1].shard)) + unsafe.Sizeof(shard{}) - 1
				if start := uintptr(unsafe.Pointer(&tb.shards[i].shard)); prevEnd/64 == start/64 {
					t.Fatalf("%+v: shards %d and %d share the cache line at %#x", cfg, i-1, i, start&^63)
				}
			}
			sh := &tb.shards[i].shard
			r := uintptr(unsafe.Pointer(unsafe.SliceData(sh.recs)))
			x := uintptr(unsafe.Pointer(unsafe.SliceData(sh.idx)))
			// Records and index share the shard's pages (see pageBytes): one region,
			// whole pages, from a 4 KiB boundary of the arena.
			if x != r || uintptr(len(sh.idx))*4 != uintptr(len(sh.recs))*unsafe.Sizeof(record{}) ||
				len(sh.recs)%pageRefs != 0 || (r-lo)%64 != 0 || r%pageBytes != (lo+uintptr(-lo&(pageBytes-1)))%pageBytes {
				t.Fatalf("%+v: shard %d records at %#x (%d), index at %#x (%d): want the same whole pages", cfg, i, r, len(sh.recs), x, len(sh.idx))
			}
			if len(sh.pfree) != len(sh.recs)/pageRefs || len(sh.psum) != len(sh.pfree)/64+1 || len(sh.recs)/pageRefs*pageRecs < int(sh.cap) {
				t.Fatalf("%+v: shard %d has %d pages, %d free words, %d summary words for a cap of %d", cfg, i, len(sh.recs)/pageRefs, len(sh.pfree), len(sh.psum), sh.cap)
			}
			y := uintptr(unsafe.Pointer(unsafe.SliceData(sh.sync)))
			recs := len(sh.recs) / pageRefs * pageRecs // records, not index lines
			if y%64 != 0 || len(sh.sync) != recs || y != uintptr(sh.syncp) {
				t.Fatalf("%+v: shard %d sync array at %#x, %d slots for %d records, syncp %p", cfg, i, y, len(sh.sync), recs, sh.syncp)
			}
			c := uintptr(unsafe.Pointer(unsafe.SliceData(sh.cold)))
			if c%64 != 0 || len(sh.cold) != recs {
				t.Fatalf("%+v: shard %d cold array at %#x, %d parts for %d records", cfg, i, c, len(sh.cold), recs)
			}
			f := uintptr(unsafe.Pointer(unsafe.SliceData(sh.pfree)))
			m := uintptr(unsafe.Pointer(unsafe.SliceData(sh.psum)))
			regions = append(regions, [2]uintptr{r, r + uintptr(len(sh.recs))*unsafe.Sizeof(record{})},
				[2]uintptr{y, y + uintptr(len(sh.sync))*unsafe.Sizeof(syncSlot{})},
				[2]uintptr{c, c + uintptr(len(sh.cold))*unsafe.Sizeof(coldRec{})},
				[2]uintptr{f, f + uintptr(len(sh.pfree))*8}, [2]uintptr{m, m + uintptr(len(sh.psum))*8})
		}
		for i, a := range regions {
			if a[0] < lo || a[1] > hi {
				t.Fatalf("%+v: region %d outside the arena", cfg, i)
			}
			for _, b := range regions[i+1:] {
				if a[0] < b[1] && b[0] < a[1] {
					t.Fatalf("%+v: regions overlap", cfg)
				}
			}
		}
		tb.Close()
	}
}

// TestPrefetchInsert: PrefetchInsert and PrefetchEntry change nothing (same entries, counts and lookups
// before and after, on a table that prefetches and one that does not, full, empty and
// closed), and allocates nothing.
func TestPrefetchInsert(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		hint bool
	}{
		{"prefetching, one shard", Config{MaxEntries: 64, Shards: 1, MaxDests: 4}, true},
		{"prefetching, 16 shards", Config{MaxEntries: 4000, Shards: 16, MaxDests: 4}, true},
		{"not prefetching", Config{MaxEntries: 4000, Shards: 16, MaxDests: 4}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, tc.cfg)
			defer tb.Close()
			tb.hint = tc.hint && hintsWork
			var keys []Key
			var ents []Entry
			for i := 0; i < 3*tc.cfg.MaxEntries/2; i++ {
				e := conn(i, ProtoTCP, Method(i%4), uint32(i%4))
				keys = append(keys, e.Orig)
				ents = append(ents, e)
				tb.PrefetchInsert(&e.Orig) // empty, then filling, then full (evicting)
				tb.PrefetchEntry(&e)
				if i%3 != 0 {
					_ = tb.Insert(&e, TCPSyn, 0)
				}
			}
			checkInvariants(t, tb)
			before := tb.Stats()
			var want []bool
			var out Entry
			for i := range keys {
				want = append(want, tb.Get(DirOrig, &keys[i], 0, &out))
			}
			for i := range keys {
				tb.PrefetchInsert(&keys[i])
				tb.PrefetchEntry(&ents[i])
			}
			if after := tb.Stats(); after != before {
				t.Fatalf("stats changed by PrefetchInsert: %+v, then %+v", before, after)
			}
			for i := range keys {
				if got := tb.Get(DirOrig, &keys[i], 0, &out); got != want[i] {
					t.Fatalf("key %d: present %v after PrefetchInsert, %v before", i, got, want[i])
				}
			}
			checkInvariants(t, tb)
			if !raceEnabled {
				if n := testing.AllocsPerRun(100, func() { tb.PrefetchInsert(&keys[0]) }); n != 0 {
					t.Fatalf("PrefetchInsert allocates %v times, want 0", n)
				}
				if n := testing.AllocsPerRun(100, func() { tb.PrefetchEntry(&ents[1]) }); n != 0 {
					t.Fatalf("PrefetchEntry allocates %v times, want 0", n)
				}
			}
			tb.Close()
			tb.PrefetchInsert(&keys[0]) // closed: nothing to prefetch, must not fault
			tb.PrefetchEntry(&ents[1])
			if tb.Len() != 0 {
				t.Fatalf("closed table holds %d entries", tb.Len())
			}
		})
	}
}

// TestInsertLines: the lines prefetchInsert names before an insert are the ones that
// insert then writes: the key's home slot, the record it takes, that record's cold part
// when the entry has one (NAT and FULLNAT with an IPv6 address, coldForm) and the
// next field of the list tail it links to. Clients alternate IPv4 and IPv6.
func TestInsertLines(t *testing.T) {
	for _, m := range []Method{MethodNAT, MethodFullNAT, MethodDR} {
		t.Run(m.String(), func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 4000, Shards: 4, MaxDests: 4})
			defer tb.Close()
			named, cold := 0, 0
			const n = 2000
			for i := range n {
				e := conn(i, ProtoTCP, m, 0)
				sh := &tb.shards[tb.shardOf(&e.Orig.Src, e.Orig.SrcPort)].shard
				ho := tb.origHash(&e.Orig)
				var a [4]uintptr
				got := a[:sh.insertLines(&a, slotAddr(sh, ho), coldForm(&e))]
				tail := sh.tail
				mustInsert(t, tb, e, TCPSyn, 0)
				ref := tb.find(sh, tb.dirHash(DirOrig, &e.Orig), DirOrig, &e.Orig)
				if ref == noIdx {
					t.Fatalf("conn %d: not found after its insert", i)
				}
				if !hintsWork {
					// no peeks here: the home slot only
					if len(got) != 1 || got[0] != slotAddr(sh, ho) {
						t.Fatalf("conn %d: lines %#x without peeks, want the home slot only", i, got)
					}
					continue
				}
				want := []uintptr{slotAddr(sh, ho)}
				if len(got) > 1 && got[1] == uintptr(unsafe.Pointer(&sh.recs[ref])) {
					want = append(want, got[1])
					named++
					if coldForm(&e) {
						want = append(want, uintptr(unsafe.Pointer(&sh.cold[dense(ref)])))
						cold++
					}
				}
				if tail != noIdx {
					want = append(want, uintptr(unsafe.Pointer(&sh.recs[tail].next)))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("conn %d (%v, cold form %v): lines %#x, want %#x (record %d, tail %d)",
						i, e.Orig.Src, coldForm(&e), got, want, ref, tail)
				}
			}
			checkInvariants(t, tb)
			if hintsWork {
				// A page's first free record is the one its home's insert takes, unless
				// the page is full: at half the capacity, nearly always.
				if named < n*9/10 {
					t.Fatalf("the record taken was named for %d of %d inserts, want at least 90 %%", named, n)
				}
				if wantCold := m.twoWay(); (cold > 0) != wantCold {
					t.Fatalf("%v: %d cold parts named, want them %v", m, cold, wantCold)
				}
			}
		})
	}
}

// TestLookupGuess checks the shortcut LookupBatch's lookups take under the lock: the
// record its lock-free hint named is tried before the index is probed. Whatever that
// record is — the key's own, another live connection's (either direction), a freed
// one, a DR or TUN record whose empty reply key a zero key would match, out of range
// — the outcome must be the probe's. For each guess, two fresh twin tables take the
// same lookups (ACKs, which move a connection on, and SYNs, which reuse it), one with
// no guess and one with that guess; status, record, entry and counts must agree.
func TestLookupGuess(t *testing.T) {
	type query struct {
		dir Dir
		k   Key
	}
	methods := []Method{MethodNAT, MethodDR, MethodTUN, MethodFullNAT}
	var conns []Entry
	var keys []query
	for i := range 12 {
		proto := ProtoTCP
		if i%3 == 2 {
			proto = ProtoUDP
		}
		e := conn(i, proto, methods[i%len(methods)], 1)
		conns = append(conns, e)
		keys = append(keys, query{DirOrig, e.Orig})
		if e.Method.twoWay() {
			keys = append(keys, query{DirReply, e.Reply})
		}
	}
	// A freed record (its connection's real server removed) and keys no record has: a
	// DR record's reply key is all zeros, which the zero key of either family matches
	// field by field; a freed record keeps its key but protocol 0, and a never-used
	// one is all zeros, which keys of protocol 0 match.
	gone := conn(40, ProtoTCP, MethodNAT, 2)
	goneNoProto := gone.Orig
	goneNoProto.Proto = 0
	for _, k := range []Key{gone.Orig, goneNoProto, {}, {Src: v4(0, 0, 0, 0), Dst: v4(0, 0, 0, 0), Proto: ProtoTCP}, {Proto: ProtoTCP}, {Proto: ProtoUDP}} {
		keys = append(keys, query{DirOrig, k}, query{DirReply, k})
	}
	start := int64(1000) * sec
	// Every build has the first one's hash seed: a record is taken from the page of its
	// key's home slot, so the same seed puts every connection in the same record.
	var seed *[seedWords]uint64
	build := func() (*Table, *Table) {
		plain, guessed := twins(t, Config{MaxEntries: 64, Shards: 1, MaxDests: 5})
		if seed == nil {
			seed = &plain.seed
		}
		plain.seed, guessed.seed = *seed, *seed
		for _, tb := range []*Table{plain, guessed} {
			for _, e := range conns {
				mustInsert(t, tb, e, TCPSyn, start)
			}
			mustInsert(t, tb, gone, TCPSyn, start)
			tb.RemoveDest(2, start)
		}
		return plain, guessed
	}
	plain, _ := build()
	n := uint32(len(plain.shards[0].shard.recs))
	guesses := []uint32{noIdx, n, n + 7}
	for ref := range n {
		guesses = append(guesses, ref)
	}
	hit := map[uint32]bool{} // records a guess named that the probe found too
	for _, g := range guesses {
		plain, guessed := build()
		shP, shG := &plain.shards[0].shard, &guessed.shards[0].shard
		now := start
		for round := range 2 {
			for qi, q := range keys {
				now += sec
				flags := []uint8{TCPAck, TCPAck | TCPPsh, TCPSyn}[(qi+round)%3]
				h := plain.dirHash(q.dir, &q.k)
				var eP, eG Entry
				shP.mu.Lock()
				stP, refP := plain.lookupLocked(shP, h, q.dir, &q.k, flags, msOf(now), &eP, noIdx)
				shP.mu.Unlock()
				shG.mu.Lock()
				stG, refG := guessed.lookupLocked(shG, h, q.dir, &q.k, flags, msOf(now), &eG, g)
				shG.mu.Unlock()
				if stP != stG || refP != refG || eP != eG {
					t.Fatalf("guess %d, key %d (%v %+v): %v record %d %+v, want (no guess) %v record %d %+v", g, qi, q.dir, q.k, stG, refG, eG, stP, refP, eP)
				}
				if refP != noIdx && g == refP {
					hit[g] = true
				}
			}
		}
		if a, b := plain.Len(), guessed.Len(); a != b {
			t.Fatalf("guess %d: %d connections, %d without guesses", g, b, a)
		}
		checkInvariants(t, guessed)
	}
	if len(hit) < len(conns) {
		t.Fatalf("the shortcut was taken for %d records, want every connection's (%d)", len(hit), len(conns))
	}
}

// TestReplyHomeAddr: the line PrefetchReplyHome loads for a FULLNAT connection's local
// endpoint, drawn after the batch's lookup and before the insert, is the home slot its
// reply key gets: in the client's shard (the endpoint is one of that shard's), at the
// home of the reply key's hash. Queries LookupBatch did not hash, or not of DirOrig,
// prefetch nothing.
func TestReplyHomeAddr(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 12, Shards: 8, MaxDests: 4})
	defer tb.Close()
	lip := v4(198, 18, 0, 50)
	rng := rand.New(rand.NewPCG(7, 7))
	used := map[uint16]bool{}
	for i := range 500 {
		e := conn(i, ProtoTCP, MethodFullNAT, 1)
		qs := []Query{{Key: e.Orig, Dir: DirOrig, TCPFlags: TCPSyn}, {Key: e.Orig, Dir: DirReply, TCPFlags: TCPSyn}, {Key: e.Orig, Dir: Dir(9)}}
		tb.LookupBatch(qs, sec)
		si := tb.shardOf(&e.Orig.Src, e.Orig.SrcPort)
		lport := uint16(1024 + rng.IntN(60000))
		for tb.shardOf(&lip, lport) != si || used[lport] {
			lport++
		}
		used[lport] = true
		e.Reply = Key{Src: rs1, Dst: lip, SrcPort: 8080, DstPort: lport, Proto: ProtoTCP}
		got, ok := tb.replyHomeAddr(&qs[0], &lip, lport)
		if want := slotAddr(&tb.shards[si].shard, tb.replyHash(&e.Reply)); !ok || got != want {
			t.Fatalf("conn %d: reply home %#x %v, want %#x", i, got, ok, want)
		}
		if _, ok := tb.replyHomeAddr(&qs[1], &lip, lport); ok {
			t.Fatalf("conn %d: a reply's query gave a reply home", i)
		}
		if _, ok := tb.replyHomeAddr(&qs[2], &lip, lport); ok {
			t.Fatalf("conn %d: an invalid query gave a reply home", i)
		}
		qs[0].Entry = e
		if err := tb.InsertQuery(&qs[0], TCPSyn, sec); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	checkInvariants(t, tb)
}

// TestScratchMade: Scratch.Made counts the client packets of the last LookupBatchIn
// that found no connection, on a table large enough to prefetch their inserts for, and
// nothing on a small one: here 40 queries of which 5 hit a connection and 5 are
// replies.
func TestScratchMade(t *testing.T) {
	for _, n := range []int{1 << 10, 1 << 17} {
		tb := mustNew(t, Config{MaxEntries: n, MaxDests: 4})
		for i := range 5 {
			mustInsert(t, tb, conn(i, ProtoTCP, MethodNAT, 1), TCPSyn, 0)
		}
		var qs [40]Query
		for i := range qs {
			e := conn(i, ProtoTCP, MethodNAT, 1)
			qs[i] = Query{Key: e.Orig, Dir: DirOrig, TCPFlags: TCPSyn}
			if i >= 35 {
				qs[i] = Query{Key: e.Reply, Dir: DirReply, TCPFlags: TCPAck}
			}
		}
		var s Scratch
		tb.LookupBatchIn(&s, qs[:], sec)
		if tb.hint != (hintsWork && n > 1<<10) {
			t.Fatalf("%d entries: prefetching %v", n, tb.hint)
		}
		want := 0
		if tb.hint {
			want = 30
		}
		if got := s.Made(); got != want {
			t.Errorf("%d entries (prefetching %v): Made %d, want %d", n, tb.hint, got, want)
		}
		tb.LookupBatchIn(&s, qs[:5], sec)
		if got := s.Made(); got != 0 {
			t.Errorf("%d entries: Made %d after a batch of hits, want 0", n, got)
		}
		tb.Close()
	}
}
