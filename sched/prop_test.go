package sched

import (
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustRebuild(t *testing.T, prev Scheduler, c Counts, name string, d []Dest, f Flags) Scheduler {
	t.Helper()
	s, err := Rebuild(prev, c, name, d, f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRebuildRR(t *testing.T) {
	d := dests(1, 1, 1) // a b c
	s := mustNew(t, "rr", d, 0)
	if got := letters(t, s, zeroCounts{}, nil, 2); got != "ab" {
		t.Fatal(got)
	}
	// A new server goes to the head of the list; the position stays on b: next is c.
	added := append([]Dest{{ID: 9, Weight: 1, Addr: v4("198.18.2.99"), Port: 80}}, d...) // x a b c
	s = mustRebuild(t, s, nil, "rr", added, 0)
	if got := letters(t, s, zeroCounts{}, nil, 4); got != "dabc" {
		t.Fatalf("after adding: %s, want dabc (c, then x a b)", got)
	}
	// Deleting the last chosen server (b) moves the position back to its predecessor a:
	// next is c, then x, a.
	s = mustRebuild(t, s, nil, "rr", []Dest{added[0], added[1], added[3]}, 0)
	if got := letters(t, s, zeroCounts{}, nil, 3); got != "cab" {
		t.Fatalf("after deleting: %s, want cab (c x a)", got)
	}
	// New forgets the position.
	if got := letters(t, mustNew(t, "rr", added[:3], 0), zeroCounts{}, nil, 1); got != "a" {
		t.Fatal(got)
	}
}

func TestRebuildWRR(t *testing.T) {
	d := dests(4, 3, 2)
	s := mustNew(t, "wrr", d, 0)
	if got := letters(t, s, zeroCounts{}, nil, 2); got != "aa" { // passes cw 4, then cw 3
		t.Fatal(got)
	}
	// An edit (here: a threshold) restarts at the head with cw 3: a b, then a b c twice,
	// then the whole cycle a | a b | a b c | a b c.
	e := append([]Dest(nil), d...)
	e[2].UThreshold = 100
	s = mustRebuild(t, s, nil, "wrr", e, 0)
	if got := letters(t, s, zeroCounts{}, nil, 14); got != "ababcabcaababc" {
		t.Fatalf("after the edit: %s", got)
	}
	// cw above the new maximum weight starts over from the top.
	s = mustNew(t, "wrr", dests(9, 1), 0)
	letters(t, s, zeroCounts{}, nil, 1) // cw 9
	s = mustRebuild(t, s, nil, "wrr", dests(2, 1), 0)
	if got := letters(t, s, zeroCounts{}, nil, 3); got != "aab" {
		t.Fatalf("after lowering the weights: %s", got)
	}
	// With a gcd above 1, cw is rounded onto the new grid: weights 4 2 (di 2, mw 3),
	// cw 3 after one pick; new weights 6 4 2 (di 2, mw 5): cw 3/2*2+1 = 3 → a b, then
	// a b c, then the cycle a | a b | a b c.
	s = mustNew(t, "wrr", dests(4, 2), 0)
	letters(t, s, zeroCounts{}, nil, 1)
	s = mustRebuild(t, s, nil, "wrr", dests(6, 4, 2), 0)
	if got := letters(t, s, zeroCounts{}, nil, 11); got != "ababcaababc" {
		t.Fatalf("gcd 2: %s", got)
	}
}

// TestProperties checks the least-load schedulers against their definitions, computed
// with exact fractions, over random servers and loads.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	frac := func(a, b int64) *big.Rat { return big.NewRat(a, b) }
	for round := 0; round < 800; round++ {
		n := 1 + r.IntN(12)
		w := make([]int32, n)
		for i := range w {
			w[i] = int32(r.IntN(6))
			if r.IntN(10) == 0 {
				w[i] = int32(r.IntN(65536))
			}
		}
		d := dests(w...)
		c := make(sliceCounts, n)
		for i := range c {
			c[i] = [2]int32{int32(r.IntN(400)), int32(r.IntN(2000))}
			if r.IntN(8) == 0 {
				c[i][0] = 0
			}
		}
		anyUsable := false
		for _, x := range w {
			anyUsable = anyUsable || x > 0
		}
		// firstLeast returns the first usable server (weight above zero) of least cost;
		// -1 if none. cost returns nil for a server the scheduler never chooses.
		firstLeast := func(cost func(i int) *big.Rat) int {
			best := -1
			var bestCost *big.Rat
			for i := range w {
				if w[i] <= 0 {
					continue
				}
				if k := cost(i); k != nil && (best < 0 || k.Cmp(bestCost) < 0) {
					best, bestCost = i, k
				}
			}
			return best
		}
		sedCost := func(i int) *big.Rat { return frac(int64(c[i][0])+1, int64(w[i])) }
		// cost returns server i's load by the scheduler's definition; nil = never chosen.
		for name, cost := range map[string]func(i int) *big.Rat{
			"lc":  func(i int) *big.Rat { return frac(int64(c[i][0])*256+int64(c[i][1]), 1) },
			"wlc": func(i int) *big.Rat { return frac(int64(c[i][0])*256+int64(c[i][1]), int64(w[i])) },
			"sed": sedCost,
			"fo":  func(i int) *big.Rat { return frac(-int64(w[i]), 1) },
			"ovf": func(i int) *big.Rat {
				if c[i][0] > w[i] {
					return nil
				}
				return frac(-int64(w[i]), 1)
			},
		} {
			got := mustNew(t, name, d, 0).Schedule(c, nil)
			if best := firstLeast(cost); got != best {
				t.Fatalf("%s weights %v counts %v: chose %d, the first least-cost server is %d", name, w, c, got, best)
			}
		}
		// nq (ip_vs_nq.c): the first usable server with no active connection, else the
		// first of least (active+1)/weight — the rule written out here, not the package's
		// sed.
		want := -1
		for i := range w {
			if w[i] > 0 && c[i][0] == 0 {
				want = i
				break
			}
		}
		if want < 0 {
			want = firstLeast(sedCost)
		}
		if got := mustNew(t, "nq", d, 0).Schedule(c, nil); got != want {
			t.Fatalf("nq weights %v counts %v: chose %d, want %d", w, c, got, want)
		}
		// Everything but the hashing ones finds a server iff one has weight above zero.
		names := []string{"rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "twos"}
		if round%50 == 0 { // their tables are large to allocate
			names = append(names, "lblc", "lblcr")
		}
		for _, name := range names {
			if got := mustNew(t, name, d, 0).Schedule(c, &Flow{}); (got >= 0) != anyUsable || got >= 0 && w[got] <= 0 {
				t.Fatalf("%s weights %v: chose %d", name, w, got)
			}
		}
	}
}

// TestWRRProportions: over one period every server is chosen weight/gcd times.
func TestWRRProportions(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for round := 0; round < 200; round++ {
		n := 1 + r.IntN(8)
		w := make([]int32, n)
		var sum, g int32
		for i := range w {
			w[i] = int32(r.IntN(4)) * int32(1+r.IntN(3))
			if w[i] > 0 {
				sum += w[i]
				g = gcd(w[i], g)
			}
		}
		if sum == 0 {
			continue
		}
		s := mustNew(t, "wrr", dests(w...), 0)
		got := make([]int32, n)
		for k := int32(0); k < 3*sum/g; k++ {
			got[s.Schedule(zeroCounts{}, nil)]++
		}
		for i := range w {
			if got[i] != 3*w[i]/g {
				t.Fatalf("weights %v: three periods gave %v", w, got)
			}
		}
	}
}

// TestTwosDistribution: with equal loads the first draw wins; draws in [0, T] give the
// first usable server weight+1 chances in T+1 and the others weight.
func TestTwosDistribution(t *testing.T) {
	w := []int32{3, 0, 1, 4, 2}
	s := mustNew(t, "twos", dests(w...), 0).(*twos)
	s.rnd = rand.New(rand.NewPCG(1, 1)).Uint32
	const n = 200000
	got := make([]int, len(w))
	for i := 0; i < n; i++ {
		got[s.Schedule(zeroCounts{}, nil)]++
	}
	want := []float64{4.0 / 11, 0, 1.0 / 11, 4.0 / 11, 2.0 / 11}
	for i := range w {
		if p := float64(got[i]) / n; p < want[i]-0.01 || p > want[i]+0.01 {
			t.Fatalf("server %d: %.3f of choices, want %.3f (%v)", i, p, want[i], got)
		}
	}
	// The guide table maps every draw in [0, T] to the server the kernel's walk takes.
	total := int64(0)
	for _, x := range w {
		total += int64(x)
	}
	for r := int64(0); r <= total; r++ {
		if got, want := int(s.pidx[s.find(r)]), kernelTwosWalk(w, r); got != want {
			t.Fatalf("draw %d: server %d, the kernel's walk takes %d", r, got, want)
		}
	}
}

// kernelTwosWalk is ip_vs_twos_schedule's walk for one draw, without thresholds: over
// the list, skipping servers of weight 0, subtract each weight from r and take the
// first server at which r reaches 0 or below.
func kernelTwosWalk(weights []int32, r int64) int {
	for i, x := range weights {
		if x <= 0 {
			continue
		}
		if r -= int64(x); r <= 0 {
			return i
		}
	}
	return -1
}

func TestTwosGuideLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	for round := 0; round < 50; round++ {
		n := 1 + r.IntN(300)
		w := make([]int32, n)
		for i := range w {
			w[i] = int32(r.IntN(3))
			if r.IntN(20) == 0 {
				w[i] = int32(r.IntN(65536))
			}
		}
		s := mustNew(t, "twos", dests(w...), 0).(*twos)
		if len(s.pre) == 0 {
			continue
		}
		total := int64(0)
		for _, x := range w {
			total += int64(x)
		}
		for k := 0; k < 2000; k++ {
			x := r.Int64N(total + 1)
			if got, want := int(s.pidx[s.find(x)]), kernelTwosWalk(w, x); got != want {
				t.Fatalf("weights %v draw %d: server %d, the kernel's walk takes %d", w, x, got, want)
			}
		}
	}
}

func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{"", "sh-port", "sh-fallback,sh-port", "mh-port,flag-3", "flag-1,,", "bogus", "sh-port,sh-port"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFlags(s)
		if err != nil {
			if fl != 0 {
				t.Fatalf("error with flags %v", fl)
			}
			return
		}
		if fl&^(FlagSched1|FlagSched2|FlagSched3) != 0 {
			t.Fatalf("%q: unknown bits %v", s, fl)
		}
		// The names round-trip for every scheduler.
		for _, sched := range []string{"sh", "mh", "wlc"} {
			again, err := ParseFlags(strings.Join(fl.Names(sched), ","))
			if err != nil || again != fl {
				t.Fatalf("%q as %s: names %v parse to %v, %v", s, sched, fl.Names(sched), again, err)
			}
		}
	})
}
