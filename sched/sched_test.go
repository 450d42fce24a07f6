package sched

import (
	"strings"
	"sync"
	"testing"
)

type zeroCounts struct{}

func (zeroCounts) Conns(uint32) (int32, int32) { return 0, 0 }

type mapCounts map[uint32][2]int32

func (m mapCounts) Conns(id uint32) (int32, int32) { c := m[id]; return c[0], c[1] }

func dests(weights ...int32) []Dest {
	d := make([]Dest, len(weights))
	for i, w := range weights {
		d[i] = Dest{ID: uint32(i), Weight: w}
	}
	return d
}

func sequence(t *testing.T, s Scheduler, c Counts, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		k := s.Schedule(c, nil)
		if k < 0 {
			b.WriteByte('-')
			continue
		}
		b.WriteByte(byte('a' + k))
	}
	return b.String()
}

func TestSequences(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sched   string
		weights []int32
		counts  Counts
		n       int
		want    string
	}{
		{"rr alternates", "rr", []int32{1, 1}, zeroCounts{}, 6, "ababab"},
		{"rr ignores weight size", "rr", []int32{5, 1, 2}, zeroCounts{}, 6, "abcabc"},
		{"rr skips quiesced", "rr", []int32{1, 0, 1}, zeroCounts{}, 4, "acac"},
		{"rr none available", "rr", []int32{0, 0}, zeroCounts{}, 2, "--"},
		{"rr skips overloaded", "rr", []int32{1, 1}, mapCounts{0: {2, 0}}, 3, "bbb"},
		{"wrr kernel example", "wrr", []int32{4, 3, 2}, zeroCounts{}, 18, "aababcabcaababcabc"},
		{"wrr 3:1", "wrr", []int32{3, 1}, zeroCounts{}, 8, "aaabaaab"},
		{"wrr gcd", "wrr", []int32{4, 2}, zeroCounts{}, 6, "aabaab"},
		{"wrr quiesced", "wrr", []int32{3, 0, 1}, zeroCounts{}, 8, "aaacaaac"},
		{"wrr all zero", "wrr", []int32{0, 0}, zeroCounts{}, 2, "--"},
		{"wrr skips overloaded", "wrr", []int32{3, 1}, mapCounts{0: {5, 0}}, 3, "bbb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dests(tc.weights...)
			if tc.name == "rr skips overloaded" || tc.name == "wrr skips overloaded" {
				d[0].UThreshold = 2
			}
			s, err := New(tc.sched, d, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := sequence(t, s, tc.counts, tc.n); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestWRRStepMatchesCycle checks the lock-free cycle against the kernel-style stepping it
// replaces, over many weight sets.
func TestWRRStepMatchesCycle(t *testing.T) {
	sets := [][]int32{{1}, {4, 3, 2}, {3, 1}, {5, 5, 5}, {7, 0, 3, 9}, {100, 1}, {6, 4, 2, 8}, {13, 17, 19}}
	for _, w := range sets {
		a := newWRR(dests(w...))
		b := newWRR(dests(w...))
		b.cycle = nil
		for i := 0; i < 500; i++ {
			x, y := a.Schedule(zeroCounts{}, nil), b.Schedule(zeroCounts{}, nil)
			if x != y {
				t.Fatalf("weights %v step %d: cycle chose %d, kernel walk chose %d", w, i, x, y)
			}
		}
	}
}

func TestWRRConcurrentExactSplit(t *testing.T) {
	s, _ := New("wrr", dests(3, 1), 0)
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

func TestUnknown(t *testing.T) {
	_, err := New("nope", nil, 0)
	if err == nil || !strings.Contains(err.Error(), "valid schedulers are") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseFlags("sh-port,bogus"); err == nil || !strings.Contains(err.Error(), "sh-fallback") {
		t.Fatalf("flags err = %v", err)
	}
	f, err := ParseFlags("sh-port,mh-fallback")
	if err != nil || strings.Join(f.Names(), ",") != "sh-port,mh-fallback" {
		t.Fatalf("flags %v %v", f.Names(), err)
	}
}

func TestScheduleAllocs(t *testing.T) {
	for _, name := range []string{"rr", "wrr"} {
		s, _ := New(name, dests(3, 1, 2), 0)
		if n := testing.AllocsPerRun(1000, func() { s.Schedule(zeroCounts{}, nil) }); n != 0 {
			t.Errorf("%s: %v allocs per decision", name, n)
		}
	}
}

func BenchmarkSchedule(b *testing.B) {
	for _, name := range []string{"rr", "wrr"} {
		for _, n := range []int{2, 16, 256, 4096} {
			w := make([]int32, n)
			for i := range w {
				w[i] = int32(i%7 + 1)
			}
			s, _ := New(name, dests(w...), 0)
			b.Run(name+"/"+itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					s.Schedule(zeroCounts{}, nil)
				}
			})
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
