package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

type zeroCounts struct{}

func (zeroCounts) Conns(uint32) (int32, int32) { return 0, 0 }
func (zeroCounts) Overloaded(uint32) bool      { return false }

// sliceCounts are counts indexed by ID, [active, inactive]: allocation-free to read.
type sliceCounts [][2]int32

func (c sliceCounts) Conns(id uint32) (int32, int32) {
	if int(id) >= len(c) {
		return 0, 0
	}
	return c[id][0], c[id][1]
}

func (c sliceCounts) Overloaded(uint32) bool { return false }

// flagCounts are sliceCounts with overload flags by ID.
type flagCounts struct {
	sliceCounts
	over []bool
}

func (c flagCounts) Overloaded(id uint32) bool { return int(id) < len(c.over) && c.over[id] }

// atomicCounts can change while schedulers read them (concurrency tests).
type atomicCounts []atomic.Int32 // 2 per ID

func (c atomicCounts) Conns(id uint32) (int32, int32) { return c[2*id].Load(), c[2*id+1].Load() }
func (c atomicCounts) Overloaded(uint32) bool         { return false }

func v4(s string) [16]byte { return netip.MustParseAddr(s).As16() }

func dests(weights ...int32) []Dest {
	d := make([]Dest, len(weights))
	for i, w := range weights {
		d[i] = Dest{ID: uint32(i), Weight: w, Addr: v4(fmt.Sprintf("198.18.%d.%d", 2+i/200, 10+i%200)), Port: 80}
	}
	return d
}

func mustNew(t testing.TB, name string, d []Dest, f Flags) Scheduler {
	t.Helper()
	s, err := New(name, d, f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func letters(t *testing.T, s Scheduler, c Counts, f *Flow, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		k := s.Schedule(c, f)
		if k < 0 {
			b.WriteByte('-')
			continue
		}
		b.WriteByte(byte('a' + k))
	}
	return b.String()
}

// seqRand is a deterministic twos random source: the given values, over and over.
func seqRand(vals ...uint32) func() uint32 {
	i := 0
	return func() uint32 { v := vals[i%len(vals)]; i++; return v }
}

func TestSequences(t *testing.T) {
	tcp := func(src string, port uint16) *Flow { return &Flow{Src: v4(src), SrcPort: port, Proto: 6} }
	for _, tc := range []struct {
		name    string
		sched   string
		weights []int32
		upper   []uint32 // -x per destination (optional)
		counts  Counts
		flow    *Flow
		rnd     []uint32 // twos draws
		n       int
		want    string
	}{
		{name: "rr alternates", sched: "rr", weights: []int32{1, 1}, n: 6, want: "ababab"},
		{name: "rr ignores weight size", sched: "rr", weights: []int32{5, 1, 2}, n: 6, want: "abcabc"},
		{name: "rr skips quiesced", sched: "rr", weights: []int32{1, 0, 1}, n: 4, want: "acac"},
		{name: "rr none available", sched: "rr", weights: []int32{0, 0}, n: 2, want: "--"},
		{name: "rr skips overloaded", sched: "rr", weights: []int32{1, 1}, upper: []uint32{2, 0}, counts: flagCounts{sliceCounts{{2, 0}}, []bool{true}}, n: 3, want: "bbb"},
		{name: "rr reads the flag only with -x", sched: "rr", weights: []int32{1, 1}, counts: flagCounts{nil, []bool{true}}, n: 3, want: "aba"},
		{name: "wrr kernel example a4 b3 c2", sched: "wrr", weights: []int32{4, 3, 2}, n: 18, want: "aababcabcaababcabc"},
		{name: "wrr 3:1", sched: "wrr", weights: []int32{3, 1}, n: 8, want: "aaabaaab"},
		{name: "wrr gcd", sched: "wrr", weights: []int32{4, 2}, n: 6, want: "aabaab"},
		{name: "wrr quiesced", sched: "wrr", weights: []int32{3, 0, 1}, n: 8, want: "aaacaaac"},
		{name: "wrr all zero", sched: "wrr", weights: []int32{0, 0}, n: 2, want: "--"},
		{name: "wrr skips overloaded", sched: "wrr", weights: []int32{3, 1}, upper: []uint32{2, 0}, counts: flagCounts{sliceCounts{{5, 0}}, []bool{true}}, n: 3, want: "bbb"},
		{name: "lc least overhead", sched: "lc", weights: []int32{1, 1, 1}, counts: sliceCounts{{1, 0}, {0, 300}, {0, 255}}, n: 1, want: "c"},
		{name: "lc ignores weights", sched: "lc", weights: []int32{100, 1}, counts: sliceCounts{{1, 0}, {0, 10}}, n: 1, want: "b"},
		{name: "lc tie to first", sched: "lc", weights: []int32{1, 1, 1}, counts: sliceCounts{{1, 0}, {0, 5}, {0, 5}}, n: 1, want: "b"},
		{name: "wlc by weight", sched: "wlc", weights: []int32{1, 3}, counts: sliceCounts{{1, 0}, {2, 0}}, n: 1, want: "b"},
		{name: "wlc tie to first", sched: "wlc", weights: []int32{1, 2}, counts: sliceCounts{{1, 0}, {2, 0}}, n: 1, want: "a"},
		{name: "wlc inactive counts 1/256", sched: "wlc", weights: []int32{1, 1}, counts: sliceCounts{{1, 0}, {0, 257}}, n: 1, want: "a"},
		{name: "wlc skips quiesced", sched: "wlc", weights: []int32{0, 1}, counts: sliceCounts{{0, 0}, {9, 9}}, n: 1, want: "b"},
		{name: "sed counts the new one", sched: "sed", weights: []int32{1, 2}, counts: sliceCounts{{0, 0}, {1, 0}}, n: 1, want: "a"},
		{name: "sed ignores inactive", sched: "sed", weights: []int32{1, 1}, counts: sliceCounts{{0, 500}, {1, 0}}, n: 1, want: "a"},
		{name: "nq idle first", sched: "nq", weights: []int32{5, 1, 1}, counts: sliceCounts{{1, 0}, {2, 0}, {0, 0}}, n: 1, want: "c"},
		{name: "nq else as sed", sched: "nq", weights: []int32{5, 1}, counts: sliceCounts{{4, 0}, {1, 0}}, n: 1, want: "a"},
		{name: "fo highest weight", sched: "fo", weights: []int32{1, 3, 3, 2}, n: 3, want: "bbb"},
		{name: "fo fails over", sched: "fo", weights: []int32{1, 3, 2}, upper: []uint32{0, 1, 0}, counts: flagCounts{sliceCounts{{0, 0}, {1, 0}}, []bool{false, true}}, n: 1, want: "c"},
		{name: "ovf highest weight under its weight", sched: "ovf", weights: []int32{2, 3}, counts: sliceCounts{{0, 0}, {3, 0}}, n: 1, want: "b"},
		{name: "ovf overflows", sched: "ovf", weights: []int32{2, 3}, counts: sliceCounts{{0, 0}, {4, 0}}, n: 1, want: "a"},
		{name: "ovf none", sched: "ovf", weights: []int32{1}, counts: sliceCounts{{2, 0}}, n: 1, want: "-"},
		// twos: T = 1+2+3 = 6, draws mod 7. r=0 and r=1 land on a (a has 2 of 7), 2,3 on
		// b, 4..6 on c. Draws (5,0): c then a; equal loads: keep the first (c).
		{name: "twos keeps first on equal load", sched: "twos", weights: []int32{1, 2, 3}, rnd: []uint32{5, 0}, n: 1, want: "c"},
		// (0, 3): a (overhead 256, w1) vs b (overhead 0, w2): 1*0 < 2*256 → b.
		{name: "twos takes the less loaded", sched: "twos", weights: []int32{1, 2, 3}, counts: sliceCounts{{1, 0}}, rnd: []uint32{0, 3}, n: 1, want: "b"},
		{name: "twos weight 0 never drawn", sched: "twos", weights: []int32{0, 1}, rnd: []uint32{0, 1, 0, 1}, n: 2, want: "bb"},
		// sh: 198.18.1.2 folds to 0xc6120102; the bucket is hash_32 of it, the top byte
		// of 0xc6120102 × 0x61C88647 mod 2^32 = 0xe7 = 231 (hash_test.go's vectors). Two
		// servers of weight 1 alternate over the buckets: 231 is odd → b. With weights
		// 2,1 the buckets go a a b a a b ...: 231 mod 3 = 0 → a.
		{name: "sh bucket 231, weights 1 1", sched: "sh", weights: []int32{1, 1}, flow: tcp("198.18.1.2", 1000), n: 3, want: "bbb"},
		{name: "sh bucket 231, weights 2 1", sched: "sh", weights: []int32{2, 1}, flow: tcp("198.18.1.2", 1000), n: 3, want: "aaa"},
		{name: "sh no fallback", sched: "sh", weights: []int32{1, 0}, flow: tcp("198.18.1.2", 1000), n: 1, want: "-"},
		// dh hashes the destination: 0.0.0.0 → bucket 0 → a.
		{name: "dh zero address", sched: "dh", weights: []int32{1, 1}, flow: &Flow{}, n: 2, want: "aa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dests(tc.weights...)
			for i, u := range tc.upper {
				d[i].UThreshold = u
			}
			s := mustNew(t, tc.sched, d, 0)
			if tc.rnd != nil {
				s.(*twos).rnd = seqRand(tc.rnd...)
			}
			c := tc.counts
			if c == nil {
				c = zeroCounts{}
			}
			if got := letters(t, s, c, tc.flow, tc.n); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSHFallbackAndPort(t *testing.T) {
	f := &Flow{Src: v4("198.18.1.2"), SrcPort: 1000, Proto: 6}
	d := dests(1, 0) // bucket 231 holds b, of weight 0
	if got := mustNew(t, "sh", d, FlagSHFallback).Schedule(zeroCounts{}, f); got != 0 {
		t.Errorf("sh-fallback: got %d, want 0 (the only usable server)", got)
	}
	// sh-port: hash_32(0xc6120102 + 1000, 8) = 222, even → a; port 1002 → 161, odd → b.
	s := mustNew(t, "sh", dests(1, 1), FlagSHPort)
	if a, b := s.Schedule(zeroCounts{}, f), s.Schedule(zeroCounts{}, &Flow{Src: f.Src, SrcPort: 1002, Proto: 6}); a != 0 || b != 1 {
		t.Errorf("sh-port: ports 1000, 1002 → %d, %d; want 0, 1", a, b)
	}
	// Not TCP, UDP or SCTP: the port is 0.
	icmp := &Flow{Src: f.Src, SrcPort: 1000, Proto: 1}
	if got := s.Schedule(zeroCounts{}, icmp); got != 1 {
		t.Errorf("sh-port, ICMP: got %d, want 1 (bucket 231)", got)
	}
}

// TestOverloadFlagSkipped: every scheduler that looks at IP_VS_DEST_F_OVERLOAD passes over
// a server whose flag is set (the flag itself is kept by the counts: conntrack's tests),
// and the flag of a server without -x is never read.
func TestOverloadFlagSkipped(t *testing.T) {
	f := &Flow{Src: v4("198.18.1.2"), Dst: v4("198.18.3.1"), SrcPort: 1000, Proto: 6}
	for _, tc := range []struct {
		name  string
		flags Flags
	}{
		{"rr", 0}, {"wrr", 0}, {"lc", 0}, {"wlc", 0}, {"sed", 0}, {"nq", 0}, {"fo", 0},
		{"ovf", 0}, {"twos", 0}, {"lblc", 0}, {"lblcr", 0}, {"sh", FlagSHFallback}, {"mh", FlagMHFallback},
	} {
		for _, flagged := range []int{0, 1} {
			d := dests(1, 1)
			d[0].UThreshold, d[1].UThreshold = 5, 5
			over := []bool{flagged == 0, flagged == 1}
			s := mustNew(t, tc.name, d, tc.flags)
			for k := range 8 {
				f.SrcPort = uint16(1000 + k)
				if got := s.Schedule(flagCounts{nil, over}, f); got != 1-flagged {
					t.Fatalf("%s, server %d overloaded: chose %d, want %d", tc.name, flagged, got, 1-flagged)
				}
			}
			// Without -x the choices are those of a service without flags.
			d[0].UThreshold, d[1].UThreshold = 0, 0
			s, plain := mustNew(t, tc.name, d, tc.flags), mustNew(t, tc.name, d, tc.flags)
			if tc.name == "twos" {
				s.(*twos).rnd, plain.(*twos).rnd = seqRand(3, 0, 1, 2), seqRand(3, 0, 1, 2)
			}
			for k := range 16 {
				f.SrcPort, f.Src[15] = uint16(1000+k), byte(k)
				got, want := s.Schedule(flagCounts{nil, over}, f), plain.Schedule(zeroCounts{}, f)
				if got != want {
					t.Fatalf("%s without -x, server %d flagged: chose %d, want %d as without flags", tc.name, flagged, got, want)
				}
			}
		}
	}
}

func TestWRRWalkMatchesCycle(t *testing.T) {
	sets := [][]int32{{1}, {4, 3, 2}, {3, 1}, {5, 5, 5}, {7, 0, 3, 9}, {100, 1}, {6, 4, 2, 8}, {13, 17, 19}, {4, 2}}
	for _, w := range sets {
		for _, thresh := range []bool{false, true} {
			d := dests(w...)
			if thresh {
				for i := range d {
					d[i].UThreshold = 3
				}
			}
			a := newWRR(newBase(d, nil), 0, maxWRRCycle)
			b := newWRR(newBase(d, nil), 0, 0) // walk mode
			if b.cycle != nil {
				t.Fatal("walk mode has a cycle")
			}
			r := rand.New(rand.NewPCG(uint64(len(w)), 7))
			c := make(sliceCounts, len(w))
			// Without thresholds both are checked against the kernel model too (with
			// them the model's overload flags would need bind events this test has not).
			m := newModel("wrr", d, 0, newSim(), nil)
			for i := 0; i < 500; i++ {
				if thresh {
					for k := range c {
						c[k][1] = int32(r.IntN(5))
					}
				}
				x, y := a.Schedule(c, nil), b.Schedule(c, nil)
				if x != y {
					t.Fatalf("weights %v thresholds %v step %d: cycle chose %d, kernel walk chose %d", w, thresh, i, x, y)
				}
				if !thresh {
					if want := m.schedule(nil); x != want {
						t.Fatalf("weights %v step %d: chose %d, kernel model %d", w, i, x, want)
					}
				}
			}
		}
	}
}

func TestWRRConcurrentExactSplit(t *testing.T) {
	s := mustNew(t, "wrr", dests(3, 1), 0)
	var mu sync.Mutex
	got := [2]int{}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := [2]int{}
			for i := 0; i < 1000; i++ {
				local[s.Schedule(zeroCounts{}, nil)]++
			}
			mu.Lock()
			got[0] += local[0]
			got[1] += local[1]
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got != [2]int{3000, 1000} {
		t.Fatalf("split %v, want [3000 1000]", got)
	}
}

func TestUnknownAndFlags(t *testing.T) {
	_, err := New("nope", nil, 0)
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "valid schedulers are dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr") {
		t.Fatalf("err = %v", err)
	}
	if len(Names()) != 14 {
		t.Fatalf("Names() = %v, want the fourteen", Names())
	}
	for _, tc := range []struct {
		in      string
		sched   string
		want    Flags
		names   string
		wantErr bool
	}{
		{"", "sh", 0, "", false},
		{"sh-port,sh-fallback", "sh", FlagSHPort | FlagSHFallback, "sh-fallback,sh-port", false},
		{"mh-fallback", "mh", FlagMHFallback, "mh-fallback", false},
		{"flag-1,flag-3", "wlc", FlagSched1 | FlagSched3, "flag-1,flag-3", false},
		{"mh-port", "sh", FlagSched2, "sh-port", false}, // the kernel's bits are shared
		{"sh-port,bogus", "sh", 0, "", true},
		{"sh-port,", "sh", 0, "", true},
	} {
		f, err := ParseFlags(tc.in)
		if tc.wantErr {
			if !errors.Is(err, ErrBadFlag) || !strings.Contains(err.Error(), "sh-fallback, sh-port") {
				t.Errorf("ParseFlags(%q) err = %v, want ErrBadFlag listing the valid names", tc.in, err)
			}
			continue
		}
		if err != nil || f != tc.want || strings.Join(f.Names(tc.sched), ",") != tc.names {
			t.Errorf("ParseFlags(%q) = %v %v, names %v; want %v %q", tc.in, f, err, f.Names(tc.sched), tc.want, tc.names)
		}
	}
	if _, err := New("mh", make([]Dest, MHTableSize+1), 0); !errors.Is(err, ErrTooMany) {
		t.Fatalf("mh over the table size: err = %v", err)
	}
}

// allConfigs builds every scheduler (and flag variant) over d.
func allConfigs(t testing.TB, d []Dest) []Scheduler {
	var out []Scheduler
	for _, name := range Names() {
		out = append(out, mustNew(t, name, d, 0))
	}
	out = append(out, mustNew(t, "sh", d, FlagSHFallback|FlagSHPort), mustNew(t, "mh", d, FlagMHFallback|FlagMHPort))
	return out
}

func TestScheduleAllocs(t *testing.T) {
	for _, thresh := range []bool{false, true} {
		d := dests(3, 1, 2, 0, 5)
		c := make(sliceCounts, len(d))
		for i := range c {
			c[i] = [2]int32{int32(i), int32(2 * i)}
		}
		if thresh {
			for i := range d {
				d[i].UThreshold, d[i].LThreshold = uint32(3+i), 1
			}
		}
		var counts Counts = c // boxed once: the dataplane passes a *conntrack.Table
		for _, s := range allConfigs(t, d) {
			f := &Flow{Src: v4("198.18.1.2"), Dst: v4("198.18.1.100"), SrcPort: 1, Proto: 6}
			k := 0
			n := testing.AllocsPerRun(500, func() {
				k++
				f.Src[15], f.Dst[15], f.Now = byte(k), byte(k%3), int64(k)*1e9
				s.Schedule(counts, f)
			})
			if n != 0 {
				t.Errorf("%s (thresholds %v): %v allocs per decision", s.Name(), thresh, n)
			}
		}
	}
}

// TestConcurrent runs every scheduler from several goroutines while counts change, for
// the race detector; every answer must be a valid index or -1.
func TestConcurrent(t *testing.T) {
	d := dests(3, 1, 2, 0, 5, 1, 1, 2)
	for i := range d {
		d[i].UThreshold = uint32(2 + i%3)
	}
	c := make(atomicCounts, 2*len(d))
	for _, s := range allConfigs(t, d) {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 1))
				f := &Flow{Proto: 17}
				for i := 0; i < 2000; i++ {
					f.Src = v4(fmt.Sprintf("198.18.1.%d", r.IntN(50)))
					f.Dst = v4(fmt.Sprintf("198.18.3.%d", r.IntN(5)))
					f.Now = int64(i) * 1e8
					k := s.Schedule(c, f)
					if k < -1 || k >= len(d) {
						t.Errorf("%s: index %d", s.Name(), k)
						return
					}
					c[2*r.IntN(len(d))+r.IntN(2)].Store(int32(r.IntN(4)))
				}
			}(g)
		}
		wg.Wait()
	}
}

func BenchmarkSchedule(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{2, 16, 256, 4096} {
			if name == "mh" && n > MHTableSize {
				n = MHTableSize
			}
			w := make([]int32, n)
			for i := range w {
				w[i] = int32(i%7 + 1)
			}
			d := dests(w...)
			c := make(sliceCounts, n) // every server busy: nq cannot stop at an idle one
			for i := range c {
				c[i] = [2]int32{int32(1 + i%5), int32(i % 11)}
			}
			s := mustNew(b, name, d, 0)
			var counts Counts = c
			f := &Flow{Src: v4("198.18.1.2"), Dst: v4("198.18.1.100"), SrcPort: 40000, Proto: 6, Now: 1}
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					f.Src[15] = byte(i)
					s.Schedule(counts, f)
				}
			})
		}
	}
}
