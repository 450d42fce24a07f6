package conntrack

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentWorkers runs 4 goroutines that insert, look up (both
// directions, so NAT replies land on another goroutine than their request),
// reap, remove destinations and walk over one shared, overlapping set of
// connections in a table small enough to evict, then checks every invariant.
// Run it with -race.
func TestConcurrentWorkers(t *testing.T) {
	const (
		pool    = 3000
		dests   = 8
		workers = 4
	)
	iters := 40000
	if raceEnabled {
		iters = 10000
	}
	tb := mustNew(t, Config{MaxEntries: 2048, Shards: 8, MaxDests: dests})
	tb.hint = hintsWork // LookupBatch's lock-free prefetch reads race with the writers
	conns := make([]Entry, pool)
	for i := range conns {
		proto := ProtoTCP
		if i%5 == 0 {
			proto = ProtoUDP
		}
		conns[i] = conn(i, proto, Method(i%4), uint32(i%dests))
	}
	var clock atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			var out Entry
			var qs [16]Query
			var want [16]*Entry
			for n := range iters {
				now := clock.Add(int64(rng.IntN(2000)) * 1e3)
				c := conns[rng.IntN(pool)]
				if rng.IntN(10) == 0 {
					c = conns[rng.IntN(8)] // hot keys: workers race on them
				}
				fl := []uint8{TCPSyn, TCPAck, TCPAck, TCPPsh | TCPAck, TCPFin | TCPAck, TCPRst}[rng.IntN(6)]
				dir := DirOrig
				k := c.Orig
				if c.Method.twoWay() && rng.IntN(2) == 0 {
					dir, k = DirReply, c.Reply
				}
				switch tb.Lookup(dir, &k, fl, now, &out) {
				case Found:
					if out.Orig != c.Orig || out.Reply != c.Reply {
						errs <- "lookup returned another connection"
						return
					}
				case NotFound, Reused:
					if dir == DirOrig && MayCreate(c.Orig.Proto, fl, false) {
						e := c
						if err := tb.Insert(&e, fl, now); err != nil && err != ErrExists && err != ErrFull {
							errs <- "insert: " + err.Error()
							return
						}
					}
				}
				switch {
				case n%64 == 5:
					// A batch mixing directions, hot keys and repeats.
					for j := range qs {
						c := &conns[rng.IntN(pool)]
						if j > 0 && rng.IntN(4) == 0 {
							c = want[rng.IntN(j)]
						}
						want[j] = c
						q := &qs[j]
						q.Key, q.Dir, q.TCPFlags = c.Orig, DirOrig, TCPAck
						if c.Method.twoWay() && rng.IntN(2) == 0 {
							q.Key, q.Dir = c.Reply, DirReply
						}
					}
					tb.LookupBatch(qs[:], now)
					for j := range qs {
						if qs[j].Status == Found && (qs[j].Entry.Orig != want[j].Orig || qs[j].Entry.Reply != want[j].Reply) {
							errs <- "batch lookup returned another connection"
							return
						}
					}
				case n%500 == 0:
					tb.Reap(now, 256)
				case w == 1 && n%4000 == 1:
					tb.RemoveDest(uint32(rng.IntN(dests)), now)
				case w == 2 && n%2000 == 2:
					tb.Walk(now, func(e *Entry, left int64) bool {
						if left <= 0 || e.Dest >= dests {
							errs <- "walk reported a dead or malformed entry"
							return false
						}
						return true
					})
				case w == 3 && n%100 == 3:
					for d := range uint32(dests) {
						if a, i := tb.Conns(d); a < 0 || i < 0 {
							errs <- "negative connection count"
							return
						}
					}
					tb.Stats()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	checkInvariants(t, tb)
	st := tb.Stats()
	if st.Inserts == 0 || st.Evicted == 0 || st.Expired == 0 || st.Removed == 0 || st.Reused == 0 {
		t.Fatalf("the run did not exercise the table: %+v", st)
	}
	t.Logf("%+v", st)
}

// TestInsertRace: workers that schedule the same new connection at once
// all Insert it; exactly one wins, the others get ErrExists and then find
// the winner's entry.
func TestInsertRace(t *testing.T) {
	const keys, workers = 2000, 4
	tb := mustNew(t, Config{MaxEntries: 4 * keys, Shards: 4})
	var wins [keys]atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range keys {
				e := conn(i, ProtoTCP, MethodNAT, uint32(w)) // each worker "scheduled" its own dest
				switch err := tb.Insert(&e, TCPSyn, 0); err {
				case nil:
					wins[i].Add(1)
				case ErrExists:
					var out Entry
					if st := tb.Lookup(DirReply, &e.Reply, TCPSyn|TCPAck, 0, &out); st != Found || out.Orig != e.Orig {
						t.Errorf("key %d: loser's lookup %v", i, st)
					}
				default:
					t.Errorf("key %d: %v", i, err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range wins {
		if n := wins[i].Load(); n != 1 {
			t.Fatalf("key %d inserted %d times", i, n)
		}
	}
	if st := tb.Stats(); st.Inserts != keys || st.Exists != keys*(workers-1) {
		t.Fatalf("stats %+v, want %d inserts and %d exists", st, keys, keys*(workers-1))
	}
	checkInvariants(t, tb)
}

// TestSYNFlood sends 2M distinct SYN sources into a 1M table: the cap holds,
// every SYN gets an entry by evicting the oldest half-open one, and memory
// does not grow.
func TestSYNFlood(t *testing.T) {
	const capacity = 1 << 20
	flood := 2 << 20
	if raceEnabled {
		flood = capacity + capacity/4
	}
	tb := mustNew(t, Config{MaxEntries: capacity})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	e := Entry{Orig: Key{Dst: vip, DstPort: 80, Proto: ProtoTCP}, Method: MethodNAT, Dest: 3}
	e.Reply = Key{Src: rs1, SrcPort: 8080, Proto: ProtoTCP}
	src := func(i int) ([16]byte, uint16) {
		// 198.18.0.0/15 holds 2^17 addresses, 16 source ports each.
		a := 18<<16 | i>>4
		return v4(198, byte(a>>16), byte(a>>8), byte(a)), uint16(1024 + i&15)
	}
	now := int64(0)
	for i := range flood {
		now += 1000 // 1 µs per SYN: nothing expires during the flood
		e.Orig.Src, e.Orig.SrcPort = src(i)
		e.Reply.Dst, e.Reply.DstPort = e.Orig.Src, e.Orig.SrcPort
		if st := tb.Lookup(DirOrig, &e.Orig, TCPSyn, now, nil); st != NotFound {
			t.Fatalf("SYN %d: lookup %v", i, st)
		}
		if err := tb.Insert(&e, TCPSyn, now); err != nil {
			t.Fatalf("SYN %d: %v", i, err)
		}
		if i%(1<<16) == 0 && tb.Len() > capacity {
			t.Fatalf("Len %d over the cap after %d SYNs", tb.Len(), i)
		}
	}
	runtime.ReadMemStats(&after)
	if tb.Len() != capacity {
		t.Fatalf("Len %d after the flood, want the cap %d", tb.Len(), capacity)
	}
	st := tb.Stats()
	if st.Inserts != uint64(flood) || st.Evicted != uint64(flood-capacity) || st.Full != 0 {
		t.Fatalf("stats %+v, want %d inserts, %d evicted, none refused", st, flood, flood-capacity)
	}
	if a, i := tb.Conns(3); a != capacity || i != 0 { // SYN_RECV is active
		t.Fatalf("Conns %d/%d, want %d/0", a, i, capacity)
	}
	// The newest SYNs are held, the oldest were evicted.
	first, last := e, e
	first.Orig.Src, first.Orig.SrcPort = src(0)
	last.Orig.Src, last.Orig.SrcPort = src(flood - 1)
	if present(tb, &first, now) || !present(tb, &last, now) {
		t.Fatalf("oldest held %v, newest held %v; want false, true", present(tb, &first, now), present(tb, &last, now))
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	mallocs := after.Mallocs - before.Mallocs
	t.Logf("heap before %d MiB, growth %d B, %d mallocs during %d SYNs", before.HeapAlloc>>20, grew, mallocs, flood)
	if grew > 1<<20 || mallocs > 1000 {
		t.Fatalf("memory grew by %d bytes (%d mallocs) during the flood", grew, mallocs)
	}
}

// TestWalk: every live entry exactly once while other goroutines churn, a
// shard is seen at one instant (an entry added to a shard already copied is
// not reported, one added to a shard not yet copied is), f may use the
// table, and returning false stops.
func TestWalk(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 15, Shards: 8})
	const stable = 5000
	for i := range stable {
		mustInsert(t, tb, conn(i, ProtoTCP, Method(i%4), 0), TCPSyn, 0)
	}

	t.Run("stable entries once each under churn", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					e := conn(100000+w*10000+n%5000, ProtoUDP, MethodNAT, 1)
					_ = tb.Insert(&e, 0, sec)
					if n%1000 == 999 {
						tb.RemoveDest(1, sec)
					}
				}
			}()
		}
		for range 5 {
			seen := make(map[Key]int)
			tb.Walk(sec, func(e *Entry, _ int64) bool {
				seen[e.Orig]++
				if e.Dest == 0 {
					// f may use the table.
					tb.Lookup(DirOrig, &e.Orig, TCPSyn, sec, nil)
				}
				return true
			})
			for k, n := range seen {
				if n != 1 {
					t.Fatalf("%v reported %d times", k, n)
				}
			}
			for i := range stable {
				c := conn(i, ProtoTCP, Method(i%4), 0)
				if seen[c.Orig] != 1 {
					t.Fatalf("stable entry %d reported %d times", i, seen[c.Orig])
				}
			}
		}
		close(stop)
		wg.Wait()
		checkInvariants(t, tb)
	})

	t.Run("a shard is a snapshot", func(t *testing.T) {
		// Find new connections in shard 0 (copied first) and in the last shard.
		var early, late Entry
		for i, found := 200000, 0; found < 2; i++ {
			c := conn(i, ProtoUDP, MethodNAT, 2)
			switch tb.ShardOf(c.Orig.Src, c.Orig.SrcPort) {
			case 0:
				if early.Orig.Proto == 0 {
					early = c
					found++
				}
			case tb.Shards() - 1:
				if late.Orig.Proto == 0 {
					late = c
					found++
				}
			}
		}
		inserted := false
		var sawEarly, sawLate bool
		tb.Walk(sec, func(e *Entry, _ int64) bool {
			if !inserted {
				// We are inside shard 0's snapshot (or a later one).
				mustInsert(t, tb, early, 0, sec)
				mustInsert(t, tb, late, 0, sec)
				inserted = true
			}
			sawEarly = sawEarly || e.Orig == early.Orig
			sawLate = sawLate || e.Orig == late.Orig
			return true
		})
		if sawEarly || !sawLate {
			t.Fatalf("saw the entry added to the copied shard: %v, to the shard not yet copied: %v; want false, true", sawEarly, sawLate)
		}
	})

	t.Run("stop", func(t *testing.T) {
		calls := 0
		tb.Walk(sec, func(*Entry, int64) bool {
			calls++
			return calls < 3
		})
		if calls != 3 {
			t.Fatalf("f called %d times after returning false on the 3rd", calls)
		}
	})
}
