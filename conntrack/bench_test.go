package conntrack

import (
	"flag"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

var bench10M = flag.Bool("conntrack.10m", false, "also run the 10M-entry benchmarks (about 1.1 GB, a minute to fill)")

// benchEntry is NAT connection i: client 198.18/15 address i>>8, port
// 1024+i&255 → VIP:80, reply from the real server.
func benchEntry(i int) Entry {
	a := 18<<16 | (i>>8)&(1<<17-1)
	c := v4(198, byte(a>>16), byte(a>>8), byte(a))
	p := uint16(1024 + i&255)
	return Entry{
		Orig:   Key{Src: c, Dst: vip, SrcPort: p, DstPort: 80, Proto: ProtoTCP},
		Reply:  Key{Src: rs1, Dst: c, SrcPort: 8080, DstPort: p, Proto: ProtoTCP},
		Dest:   uint32(i % 64),
		Method: MethodNAT,
	}
}

// filledTables keeps the tables of filled for the whole benchmark run:
// filling 10M entries takes seconds, and lookups leave a table as full as
// they found it.
var filledTables struct {
	sync.Mutex
	m map[int]filledTable
}

type filledTable struct {
	tb       *Table
	perEntry float64
}

// filled returns a table holding n NAT entries (every other one
// ESTABLISHED) and the bytes New reserved per entry of capacity: Go heap
// and the mapping outside it. The capacity is n + n/8 + 1024: per-shard
// capacities make a table refuse or evict somewhat before its total reaches
// MaxEntries. The table is made with Config.Prefault, as xlvsd makes its own:
// without it a 10 M-entry table filled in a machine up for hours was only
// 65 % on huge pages (its first touches fell back to base pages where the
// kernel had no free huge page), and its lookups then also missed the TLB.
// Tables are shared between benchmarks; only lookups may use them.
func filled(b *testing.B, n int) (*Table, float64) {
	b.Helper()
	filledTables.Lock()
	defer filledTables.Unlock()
	if f, ok := filledTables.m[n]; ok {
		return f.tb, f.perEntry
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	capacity := n + n/8 + 1024
	tb := mustNew(b, Config{MaxEntries: capacity, Prefault: true})
	runtime.ReadMemStats(&m1)
	perEntry := float64(m1.TotalAlloc-m0.TotalAlloc+uint64(tb.mem.offHeap())) / float64(capacity)
	for i := range n {
		e := benchEntry(i)
		if err := tb.Insert(&e, TCPSyn, 0); err != nil {
			b.Fatalf("fill %d: %v", i, err)
		}
		if i%2 == 0 {
			tb.Lookup(DirOrig, &e.Orig, TCPAck, 0, nil)
		}
	}
	if tb.Len() != n {
		b.Fatalf("filled %d of %d", tb.Len(), n)
	}
	if filledTables.m == nil {
		filledTables.m = make(map[int]filledTable)
	}
	filledTables.m[n] = filledTable{tb, perEntry}
	return tb, perEntry
}

// probeKeys returns up to 1M original keys of the first n entries in random
// order.
func probeKeys(n int) []Key {
	m := min(n, 1<<20)
	keys := make([]Key, m)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = benchEntry(rng.IntN(n)).Orig
	}
	return keys
}

func benchSizes() []int {
	s := []int{1 << 10, 1 << 20}
	if *bench10M {
		s = append(s, 10_000_000)
	}
	return s
}

func sizeName(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return strconv.Itoa(n/1e6) + "M"
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "Mi"
	}
	return strconv.Itoa(n>>10) + "Ki"
}

// BenchmarkLookupHit: a hit in a full table, keys in random order (so the
// large tables miss the CPU caches as real traffic does).
func BenchmarkLookupHit(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			tb, perEntry := filled(b, n)
			keys := probeKeys(n)
			mask := len(keys) - 1
			if len(keys)&mask != 0 {
				b.Fatal("probe key count must be a power of two")
			}
			var out Entry
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if tb.Lookup(DirOrig, &keys[i&mask], TCPAck|TCPPsh, sec, &out) != Found {
					b.Fatal("miss")
				}
			}
			b.StopTimer()
			b.ReportMetric(perEntry, "B/entry")
		})
	}
}

// BenchmarkLookupReply is BenchmarkLookupHit for the reply keys (a real server's
// packets of NAT connections): a reply key is homed by its destination endpoint, one
// hash more than an original key (replyHash).
func BenchmarkLookupReply(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(sizeName(n), func(b *testing.B) {
			tb, _ := filled(b, n)
			keys := make([]Key, min(n, 1<<20))
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range keys {
				keys[i] = benchEntry(rng.IntN(n)).Reply
			}
			mask := len(keys) - 1
			var out Entry
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if tb.Lookup(DirReply, &keys[i&mask], TCPAck, sec, &out) != Found {
					b.Fatal("miss")
				}
			}
		})
	}
}

// BenchmarkLookupMiss: a miss in a full 1Mi table (a new flow's first packet).
func BenchmarkLookupMiss(b *testing.B) {
	tb, _ := filled(b, 1<<20)
	keys := probeKeys(1 << 20)
	for i := range keys {
		keys[i].DstPort = 81
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if tb.Lookup(DirOrig, &keys[i&(1<<20-1)], TCPSyn, sec, nil) != NotFound {
			b.Fatal("hit")
		}
	}
}

// BenchmarkLookupParallel: hits on a full table from GOMAXPROCS (2)
// goroutines at once, each from its own random key sequence. At 1Ki the
// table is cache-resident and the figure shows lock and cache-line costs.
func BenchmarkLookupParallel(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(sizeName(n), func(b *testing.B) {
			tb, _ := filled(b, n)
			keys := probeKeys(n)
			mask := len(keys) - 1
			var worker atomic.Int32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(worker.Add(1)) * 7919
				var out Entry
				for pb.Next() {
					if tb.Lookup(DirOrig, &keys[i&mask], TCPAck, sec, &out) != Found {
						b.Error("miss")
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkLookupParallelOwnShards: as BenchmarkLookupParallel at 1Ki, but
// each goroutine looks up only keys of its own half of the shards, as
// workers would if packets were steered to workers by shard.
func BenchmarkLookupParallelOwnShards(b *testing.B) {
	tb, _ := filled(b, 1<<10)
	var part [2][]Key
	for i := range 1 << 10 {
		k := benchEntry(i).Orig
		s := tb.ShardOf(k.Src, k.SrcPort) & 1
		part[s] = append(part[s], k)
	}
	var worker atomic.Int32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		keys := part[worker.Add(1)&1]
		var out Entry
		for i := 0; pb.Next(); i += 7 {
			if tb.Lookup(DirOrig, &keys[i%len(keys)], TCPAck, sec, &out) != Found {
				b.Error("miss")
				return
			}
		}
	})
}

// BenchmarkInsert: inserts into a 1Mi table while it fills from empty to
// half full (the table is emptied, untimed, every 512Ki inserts).
func BenchmarkInsert(b *testing.B) {
	const n = 1 << 20
	tb := mustNew(b, Config{MaxEntries: n})
	b.Cleanup(func() { tb.Close() })
	es := make([]Entry, n/2)
	for i := range es {
		es[i] = benchEntry(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(es)
		if j == 0 && i > 0 {
			b.StopTimer()
			tb.Reap(1000*sec*int64(i/len(es)), n)
			b.StartTimer()
		}
		e := es[j]
		if err := tb.Insert(&e, TCPSyn, 1000*sec*int64(i/len(es))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertBatch: a worker's new connections, 32 at a time, into a 1Mi table
// filling from empty to half full (emptied, untimed, every 512Ki inserts). "prefetch":
// PrefetchInsert of every original key first, then the inserts, as a worker that
// schedules each connection just before inserting it does; "scheduled": PrefetchEntry of
// every entry first (a worker that scheduled the whole batch before inserting: the reply
// keys' slots are known), then the inserts. p50-ns/insert is the median batch's time
// per insert.
func BenchmarkInsertBatch(b *testing.B) {
	const n, batch = 1 << 20, 32
	for _, mode := range []string{"prefetch", "scheduled"} {
		b.Run(mode, func(b *testing.B) {
			tb := mustNew(b, Config{MaxEntries: n})
			b.Cleanup(func() { tb.Close() })
			es := make([]Entry, n/2)
			for i := range es {
				es[i] = benchEntry(i)
			}
			runs := make([]time.Duration, 0, b.N/batch+1)
			var cur [batch]Entry
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				j := i % len(es)
				now := 1000 * sec * int64(i/len(es))
				if j == 0 && i > 0 {
					b.StopTimer()
					tb.Reap(now, n)
					b.StartTimer()
				}
				copy(cur[:], es[j:j+batch])
				t0 := time.Now()
				for k := range cur {
					if mode == "scheduled" {
						tb.PrefetchEntry(&cur[k])
					} else {
						tb.PrefetchInsert(&cur[k].Orig)
					}
				}
				for k := range cur {
					if err := tb.Insert(&cur[k], TCPSyn, now); err != nil {
						b.Fatal(err)
					}
				}
				runs = append(runs, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(runs)
			b.ReportMetric(float64(runs[len(runs)/2])/batch, "p50-ns/insert")
		})
	}
}

// BenchmarkInsertChurn: new connections into a prefaulted 1 Mi-entry table kept half
// full, as a director in its steady state takes them. Per batch of 64, LookupBatch
// finds the 64 new keys missing and InsertQuery creates them, as a worker does (timed:
// p50-ns/insert is the median batch's time per connection); then 64 entries picked at
// random among those held are removed (untimed in p50, in ns/op), as expiry removes
// connections whose lifetimes differ. Before timing, as many random removals and
// inserts as the table holds spread its free records over its memory, as they are in
// service. BenchmarkInsertBatch and the dataplane's PipelineNew instead empty their
// tables wholesale, which leaves the free records in address order.
func BenchmarkInsertChurn(b *testing.B) {
	const n, batch = 1 << 20, 64
	tb := mustNew(b, Config{MaxEntries: n, Prefault: true})
	b.Cleanup(func() { tb.Close() })
	rng := rand.New(rand.NewPCG(9, 10))
	live := make([]Entry, 0, n/2+batch)
	next := 0
	add := func(e *Entry) {
		if err := tb.Insert(e, TCPSyn, 0); err != nil {
			b.Fatalf("insert %v: %v", e.Orig, err)
		}
		live = append(live, *e)
	}
	remove := func() {
		k := rng.IntN(len(live))
		o := &live[k].Orig
		sh := &tb.shards[tb.shardOf(&o.Src, o.SrcPort)].shard
		sh.mu.Lock()
		if ref := tb.find(sh, tb.dirHash(DirOrig, o), DirOrig, o); ref != noIdx {
			tb.release(sh, ref)
		} else {
			b.Fatalf("%v held but not found", *o)
		}
		sh.mu.Unlock()
		live[k] = live[len(live)-1]
		live = live[:len(live)-1]
	}
	for range n / 2 {
		e := benchEntry(next)
		next++
		add(&e)
	}
	for range n / 2 {
		remove()
		e := benchEntry(next)
		next++
		add(&e)
	}
	var qs [batch]Query
	runs := make([]time.Duration, 0, b.N/batch+1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		if next+batch > 1<<25 {
			b.Fatal("benchEntry's keys repeat from 2^25: use a shorter -benchtime")
		}
		for j := range qs {
			qs[j] = Query{Key: benchEntry(next + j).Orig, Dir: DirOrig, TCPFlags: TCPSyn}
		}
		t0 := time.Now()
		tb.LookupBatch(qs[:], 0)
		for j := range qs {
			q := &qs[j]
			if q.Status != NotFound {
				b.Fatalf("new key %v: %v", q.Key, q.Status)
			}
			q.Entry = benchEntry(next + j)
			if err := tb.InsertQuery(q, TCPSyn, 0); err != nil {
				b.Fatal(err)
			}
		}
		runs = append(runs, time.Since(t0))
		for j := range qs {
			live = append(live, qs[j].Entry)
			remove()
		}
		next += batch
	}
	b.StopTimer()
	slices.Sort(runs)
	b.ReportMetric(float64(runs[len(runs)/2])/batch, "p50-ns/insert")
}

// BenchmarkInsertEvict: every insert into a full 1Mi table of half-open
// connections evicts the oldest (the SYN-flood path).
func BenchmarkInsertEvict(b *testing.B) {
	const n = 1 << 20
	tb := mustNew(b, Config{MaxEntries: n})
	b.Cleanup(func() { tb.Close() })
	for i := range n {
		e := benchEntry(i)
		if err := tb.Insert(&e, TCPSyn, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := benchEntry(n + i)
		if err := tb.Insert(&e, TCPSyn, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReap: cost per expired entry of a 1Mi table.
func BenchmarkReap(b *testing.B) {
	const n = 1 << 20
	tb := mustNew(b, Config{MaxEntries: n})
	b.Cleanup(func() { tb.Close() })
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		now := int64(done) * 1000 * sec
		for i := range min(n, b.N-done) {
			e := benchEntry(i)
			if err := tb.Insert(&e, TCPSyn, now); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		done += tb.Reap(now+100*sec, n)
	}
}

// lookupModes are the two ways to look keys up: one Lookup per key, or
// LookupBatch over batches of batchMax keys.
var lookupModes = []string{"single", "batch"}

// lookupRun looks up keys[start:start+batchMax] (masked) in mode and
// reports whether all were found.
func lookupRun(tb *Table, mode string, keys []Key, start int, qs *[batchMax]Query, now int64) bool {
	mask := len(keys) - 1
	if mode == "single" {
		ok := true
		for j := range batchMax {
			ok = tb.Lookup(DirOrig, &keys[(start+j)&mask], TCPAck|TCPPsh, now, &qs[j].Entry) == Found && ok
		}
		return ok
	}
	for j := range qs {
		q := &qs[j]
		q.Key, q.Dir, q.TCPFlags = keys[(start+j)&mask], DirOrig, TCPAck|TCPPsh
	}
	tb.LookupBatch(qs[:], now)
	ok := true
	for j := range qs {
		ok = qs[j].Status == Found && ok
	}
	return ok
}

// BenchmarkLookupLatency: hits in a full table, keys in random order, one
// Lookup per key or LookupBatch over 64 keys. Each run of 64 lookups is
// timed on its own: p50-ns/lookup and p99-ns/lookup are the median and the
// 99th percentile of those times divided by 64 (the batch API's per-packet
// cost as a worker sees it); ns/op is the mean.
func BenchmarkLookupLatency(b *testing.B) {
	for _, n := range benchSizes() {
		for _, mode := range lookupModes {
			b.Run(sizeName(n)+"/"+mode, func(b *testing.B) {
				tb, _ := filled(b, n)
				keys := probeKeys(n)
				runs := make([]time.Duration, 0, b.N/batchMax+1)
				var qs [batchMax]Query
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i += batchMax {
					t0 := time.Now()
					if !lookupRun(tb, mode, keys, i, &qs, sec) {
						b.Fatal("miss")
					}
					runs = append(runs, time.Since(t0))
				}
				b.StopTimer()
				slices.Sort(runs)
				b.ReportMetric(float64(runs[len(runs)/2])/batchMax, "p50-ns/lookup")
				b.ReportMetric(float64(runs[len(runs)*99/100])/batchMax, "p99-ns/lookup")
			})
		}
	}
}

// BenchmarkLookupCPU: the CPU work of a large table's batched lookup without its cache
// misses. A 1 Ki-entry table (every line in L1/L2) is looked up in batches of 64 with
// the prefetching stages forced on (lookupStaged, which tables under hintMin skip),
// warmed by two passes over its keys first, so that no timed lookup changes state. Compare
// LookupLatency/10M/batch, whose p50 is this plus what its misses cost.
func BenchmarkLookupCPU(b *testing.B) {
	const n = 1 << 10
	tb := mustNew(b, Config{MaxEntries: n + n/8 + 1024})
	defer tb.Close()
	for i := range n {
		e := benchEntry(i)
		if err := tb.Insert(&e, TCPSyn, 0); err != nil {
			b.Fatalf("fill %d: %v", i, err)
		}
	}
	tb.hint = hintsWork
	keys := probeKeys(n)
	var qs [batchMax]Query
	for i := 0; i < 2*len(keys); i += batchMax {
		if !lookupRun(tb, "batch", keys, i, &qs, sec) {
			b.Fatal("miss")
		}
	}
	runs := make([]time.Duration, 0, b.N/batchMax+1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batchMax {
		t0 := time.Now()
		if !lookupRun(tb, "batch", keys, i, &qs, sec) {
			b.Fatal("miss")
		}
		runs = append(runs, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(runs)
	b.ReportMetric(float64(runs[len(runs)/2])/batchMax, "p50-ns/lookup")
}

// BenchmarkLookupSync: BenchmarkLookupLatency's lookups with sync off and on (the
// default policy, as a sync master runs): what a master pays for counting each client
// packet and deciding (the sync slot's cache line, on large tables a third miss per
// lookup that LookupBatch prefetches with the record).
func BenchmarkLookupSync(b *testing.B) {
	for _, n := range benchSizes() {
		for _, mode := range lookupModes {
			for _, on := range []bool{false, true} {
				name := sizeName(n) + "/" + mode + "/off"
				if on {
					name = sizeName(n) + "/" + mode + "/on"
				}
				b.Run(name, func(b *testing.B) {
					tb, _ := filled(b, n)
					if on {
						p := DefaultSyncPolicy()
						tb.SetSync(&p)
						defer tb.SetSync(nil)
					}
					keys := probeKeys(n)
					runs := make([]time.Duration, 0, b.N/batchMax+1)
					var qs [batchMax]Query
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i += batchMax {
						t0 := time.Now()
						if !lookupRun(tb, mode, keys, i, &qs, sec) {
							b.Fatal("miss")
						}
						runs = append(runs, time.Since(t0))
					}
					b.StopTimer()
					slices.Sort(runs)
					b.ReportMetric(float64(runs[len(runs)/2])/batchMax, "p50-ns/lookup")
					b.ReportMetric(float64(runs[len(runs)*99/100])/batchMax, "p99-ns/lookup")
				})
			}
		}
	}
}

// BenchmarkLookupWorkers: hits in a full table from 1 and from 2
// goroutines at once (the machine's cores), each on its own random key
// sequence, single Lookups or batches of 64. ns/op is wall time per lookup
// of all goroutines together (so 2 goroutines that scale perfectly halve
// it); Mlookups/s is the throughput.
func BenchmarkLookupWorkers(b *testing.B) {
	for _, n := range benchSizes() {
		for _, mode := range lookupModes {
			for _, workers := range []int{1, 2} {
				b.Run(sizeName(n)+"/"+mode+"/"+strconv.Itoa(workers), func(b *testing.B) {
					tb, _ := filled(b, n)
					keys := probeKeys(n)
					qs := make([][batchMax]Query, workers)
					var wg sync.WaitGroup
					var failed atomic.Bool
					b.ReportAllocs()
					b.ResetTimer()
					t0 := time.Now()
					for w := range workers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							start := w * (len(keys) / 2)
							for i := w * batchMax; i < b.N; i += workers * batchMax {
								if !lookupRun(tb, mode, keys, start+i, &qs[w], sec) {
									failed.Store(true)
									return
								}
							}
						}()
					}
					wg.Wait()
					el := time.Since(t0)
					b.StopTimer()
					if failed.Load() {
						b.Fatal("miss")
					}
					b.ReportMetric(float64(b.N)/el.Seconds()/1e6, "Mlookups/s")
				})
			}
		}
	}
}

// BenchmarkMemoryLatency measures the floor under the large-table lookups:
// random reads of a 1 GiB arena (the size of a 10M-entry table, mapped
// with huge pages as New maps tables). "chase" follows one random cycle
// (each read's address depends on the previous read: the latency of one
// DRAM access, as one Lookup's index-then-record misses pay twice);
// "chase8" follows 8 cycles interleaved (independent reads in flight at
// once); "prefetch1", "prefetch2" and "prefetchdep" read lines prefetched
// ahead, as LookupBatch does (see there). ns/op is per read for the chases,
// per op (1 or 2 lines) for the prefetches. Runs with
// -conntrack.10m only.
func BenchmarkMemoryLatency(b *testing.B) {
	if !*bench10M {
		b.Skip("needs -conntrack.10m (a 1 GiB arena)")
	}
	const words = 1 << 28 // 1 GiB of uint32
	a := newArena(words*4, false)
	defer a.release()
	next := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(a.mem))), words)
	// One random cycle through every 16th word (one read per cache line).
	const step = 16
	n := words / step
	perm := make([]uint32, n)
	for i := range perm {
		perm[i] = uint32(i)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	for i := range n {
		next[perm[i]*step] = perm[(i+1)%n] * step
	}
	perm = nil
	// "prefetch1" and "prefetch2": a batched lookup's access pattern without its CPU
	// work. Each op reads 1 or 2 random lines, known in advance (from an array read in
	// order), each prefetched 16 ops before it is read: the floor under a table that
	// reads that many independent lines per lookup, all misses overlapped.
	lines := make([]uint32, 1<<20)
	for i := range lines {
		lines[i] = uint32(rng.IntN(n)) * step
	}
	mask := len(lines) - 1
	base := uintptr(unsafe.Pointer(&next[0]))
	for _, per := range []int{1, 2} {
		b.Run("prefetch"+strconv.Itoa(per), func(b *testing.B) {
			const ahead = 16
			var sum uint32
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for k := range per {
					j := i*per + k
					a := base + uintptr(lines[(j+ahead*per)&mask])*4
					prefetchLines(&a, 1)
					sum += next[lines[j&mask]]
				}
			}
			b.StopTimer()
			sink32 = sum
		})
	}
	// "prefetch2in4k" and "prefetch2in2m": two random lines per op, the second in the
	// 4 KiB page, or the 2 MiB huge page, of the first; a batch of 64 ops' lines
	// prefetched together, then read (as lookupStaged's stages do). Whether a random
	// access costs its line or its page: on this VM a second line of the same 4 KiB page
	// is nearly free and one of the same 2 MiB page is not (its guest's huge pages do not
	// reach the TLB as such).
	for _, v := range []struct {
		name string
		page uint32 // bytes
	}{{"prefetch2in4k", 4 << 10}, {"prefetch2in2m", 2 << 20}} {
		pairs := make([]uint32, len(lines))
		for i := 0; i+1 < len(pairs); i += 2 {
			pairs[i] = lines[i]
			in := uint32(rng.IntN(int(v.page/64))) * step // a line of the first one's page
			pairs[i+1] = lines[i]&^(v.page/4-1) | in
		}
		b.Run(v.name, func(b *testing.B) {
			const batch = 64 // ops: their 128 lines prefetched together, then read
			var addrs [2 * batch]uintptr
			var sum uint32
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				for j := range 2 * batch {
					addrs[j] = base + uintptr(pairs[(2*i+j)&mask])*4
				}
				prefetchLines(&addrs[0], 2*batch)
				for j := range 2 * batch {
					sum += next[pairs[(2*i+j)&mask]]
				}
			}
			b.StopTimer()
			sink32 = sum
		})
	}
	// "prefetchdep": the pattern LookupBatch used until 2026-12-07, software-pipelined
	// (lookupStaged has why it no longer does). The line at lines[i] (an index window)
	// is prefetched 16 ops ahead; 8 ops ahead it is read and the line its word names (a
	// record) is prefetched; at its turn that line is read. Two lines per op, the
	// second known only from the first.
	b.Run("prefetchdep", func(b *testing.B) {
		const ahead, near = 16, 8
		var rec [near]uint32
		var sum uint32
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a := base + uintptr(lines[(i+ahead)&mask])*4
			prefetchLines(&a, 1)
			r := next[lines[(i+near)&mask]]
			a = base + uintptr(r)*4
			prefetchLines(&a, 1)
			sum += next[rec[i%near]]
			rec[i%near] = r
		}
		b.StopTimer()
		sink32 = sum
	})
	for _, ways := range []int{1, 8} {
		name := "chase"
		if ways > 1 {
			name += strconv.Itoa(ways)
		}
		b.Run(name, func(b *testing.B) {
			var p [8]uint32
			for w := range ways {
				p[w] = uint32(w*(n/ways)) * step
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += ways {
				for w := range ways {
					p[w] = next[p[w]]
				}
			}
			b.StopTimer()
			sink32 = p[0]
		})
	}
	// "oneline", "oneline0", "twoline" and "twoline4k" overwrite the arena's lines: they
	// run last.
	for _, v := range []struct {
		name      string
		span, per int
	}{{"oneline", n, 1}, {"oneline0", 1 << 10, 1}, {"twoline", n, 2}, {"twoline4k", n, 3}} {
		b.Run(v.name, func(b *testing.B) { benchLineLookups(b, next, v.span, v.per, rng) })
	}
}

var sink32 uint32

// benchLineLookups is BenchmarkMemoryLatency's "oneline", "oneline0", "twoline" and
// "twoline4k": the
// floor under any connection table that finds, checks and updates a connection in
// per (1 or 2) random cache lines of lines[:span*16] per lookup. With one line, the
// record is placed by the hash of its key and its key compared in place (the layout
// issue 19's 10 M-entry target asks for); with two, as this package's table does, a
// 4-byte index slot placed by a second hash (in the arena's upper half) names the
// record's line (in its lower half), so the record's address is known only once the
// slot has been read; per 3 ("twoline4k") is the same with the slot in one of the first
// 8 lines of its record's 4 KiB page (records in the other 56), as a table whose
// records and index share pages would have it. Each op is one lookup of a batch of 64, done in stages as
// lookupStaged does: the 64 keys hashed and their first lines prefetched; for two
// lines, each slot read and its record's line prefetched; then each record's 16-byte
// key compared with the query's and a timer word written and 48 bytes copied out.
// That is less than any real lookup does (no lock, no state machine, no collisions, no
// probing); "oneline0" is the same on lines that stay in the cache (64 KiB of the
// arena), so the difference is what the memory adds.
func benchLineLookups(b *testing.B, mem []uint32, span, per int, rng *rand.Rand) {
	const step, batch = 16, 64
	recLines := span
	if per == 2 {
		recLines = span / 2
	}
	idx0, idxSlots := uint32(len(mem)/2), uint64(len(mem)/2)
	seed := [4]uint64{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}
	recOf := func(k *[2]uint64) uint32 {
		r := uint32(fmix(mum(k[0]^seed[0], k[1]^seed[1]))%uint64(recLines)) * step
		if per == 3 && r%1024 < 8*step {
			r += 8 * step // lines 0-7 of each page hold the index
		}
		return r
	}
	slotOf := func(k *[2]uint64) uint32 {
		x := fmix(mum(k[0]^seed[2], k[1]^seed[3]))
		if per == 3 {
			return recOf(k)&^1023 | uint32(x%128) // a slot of the first 8 lines of its record's page
		}
		return idx0 + uint32(x%idxSlots)
	}
	// Keys with lines (and slots) of their own, so that every lookup finds its key.
	keys := make([][2]uint64, min(1<<20, recLines/2))
	taken := make(map[uint32]bool, 2*len(keys))
	for i := range keys {
		k := &keys[i]
		for {
			*k = [2]uint64{rng.Uint64(), rng.Uint64()}
			if !taken[recOf(k)] && (per == 1 || !taken[slotOf(k)|1<<31]) {
				break
			}
		}
		taken[recOf(k)] = true
		l := (*[8]uint64)(unsafe.Pointer(&mem[recOf(k)]))
		l[0], l[1] = k[0], k[1]
		if per >= 2 {
			taken[slotOf(k)|1<<31] = true
			mem[slotOf(k)] = recOf(k)
		}
	}
	base := uintptr(unsafe.Pointer(&mem[0]))
	kmask := len(keys) - 1
	var addrs [batch]uintptr
	var at [batch]uint32
	var out [batch][6]uint64
	hits := 0
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for j := range batch {
			k := &keys[(i+j)&kmask]
			if per == 1 {
				at[j] = recOf(k)
			} else {
				at[j] = slotOf(k)
			}
			addrs[j] = base + uintptr(at[j])*4
		}
		prefetchLines(&addrs[0], batch)
		if per >= 2 {
			for j := range batch {
				at[j] = mem[at[j]]
				addrs[j] = base + uintptr(at[j])*4
			}
			prefetchLines(&addrs[0], batch)
		}
		for j := range batch {
			l := (*[8]uint64)(unsafe.Pointer(&mem[at[j]]))
			k := &keys[(i+j)&kmask]
			if l[0] == k[0] && l[1] == k[1] {
				l[7] = uint64(i)
				out[j] = [6]uint64(l[1:7])
				hits++
			}
		}
	}
	b.StopTimer()
	if want := (b.N + batch - 1) / batch * batch; hits != want {
		b.Fatalf("%d of %d keys found in their lines; want all", hits, want)
	}
	sink32 = uint32(out[hits%batch][0])
}
