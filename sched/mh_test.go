package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func mhDests(n int) []Dest {
	d := make([]Dest, n)
	for i := range d {
		d[i] = Dest{ID: uint32(i), Weight: 1, Addr: v4(fmt.Sprintf("198.18.%d.%d", 2+i/200, 10+i%200)), Port: 80}
	}
	return d
}

func clientFlows(n int) []Flow {
	r := rand.New(rand.NewPCG(11, 12))
	f := make([]Flow, n)
	for i := range f {
		f[i] = Flow{Src: v4("10.0.0.0"), Proto: 6}
		f[i].Src[12], f[i].Src[13], f[i].Src[14], f[i].Src[15] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
	}
	return f
}

// TestMaglevMinimalDisruption removes one of N servers and counts the clients that move:
// those of the removed server (about 1/N) must; of the others only a few do (Maglev's
// disruption grows as the table gets small for N: with the kernel's 4093 slots about
// 0.4% at N=5 and 2.5% at N=50), where a modulo-N hash would move (N-1)/N of them.
func TestMaglevMinimalDisruption(t *testing.T) {
	flows := clientFlows(50000)
	for _, n := range []int{5, 10, 20, 50} {
		for _, removed := range []int{0, n / 2, n - 1} {
			d := mhDests(n)
			before := mustNew(t, "mh", d, 0)
			after := mustNew(t, "mh", append(append([]Dest(nil), d[:removed]...), d[removed+1:]...), 0)
			moved, fromRemoved := 0, 0
			for k := range flows {
				a, b := before.Schedule(zeroCounts{}, &flows[k]), after.Schedule(zeroCounts{}, &flows[k])
				id := d[a].ID
				if a == removed {
					fromRemoved++
					continue
				}
				if b >= removed {
					b++ // index in the old list
				}
				if d[b].ID != id {
					moved++
				}
			}
			share := float64(fromRemoved) / float64(len(flows))
			extra := float64(moved) / float64(len(flows))
			t.Logf("N=%d remove #%d: %.2f%% of clients were on it (1/N = %.2f%%), %.2f%% of the others moved", n, removed, 100*share, 100/float64(n), 100*extra)
			if share > 1.5/float64(n) || share < 0.5/float64(n) {
				t.Errorf("N=%d: the removed server had %.2f%% of clients, want about 1/N", n, 100*share)
			}
			if share+extra > 2.5/float64(n) {
				t.Errorf("N=%d: %.2f%% of all clients moved, want under 2.5/N = %.2f%%", n, 100*(share+extra), 250/float64(n))
			}
		}
	}
}

// TestMaglevWeights: table shares follow weight/gcd (shifted to 6 bits).
func TestMaglevWeights(t *testing.T) {
	d := mhDests(3)
	d[0].Weight, d[1].Weight, d[2].Weight = 100, 200, 300
	s := mustNew(t, "mh", d, 0).(*mh)
	got := make([]int, 3)
	for _, i := range s.lookup {
		got[i]++
	}
	for i, w := range []float64{1, 2, 3} {
		if share := float64(got[i]) / MHTableSize; share < w/6-0.01 || share > w/6+0.01 {
			t.Errorf("server %d (weight %v): %.3f of the table, want %.3f: %v", i, d[i].Weight, share, w/6, got)
		}
	}
	// Weight 0 from the start: no slots at all.
	d[1].Weight = 0
	s = mustNew(t, "mh", d, 0).(*mh)
	for _, i := range s.lookup {
		if i == 1 {
			t.Fatal("a server added with weight 0 holds a slot")
		}
	}
}

// TestMaglevQuiesce: weight 0 by an edit keeps the table (the kernel builds it from the
// last non-zero weight), so the quiesced server's clients get no server without
// mh-fallback and nobody else moves; with mh-fallback they go elsewhere.
func TestMaglevQuiesce(t *testing.T) {
	d := mhDests(4)
	s := mustNew(t, "mh", d, 0)
	q := append([]Dest(nil), d...)
	q[2].Weight = 0
	s2, err := Rebuild(s, nil, "mh", q, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := s.(*mh).lookup, s2.(*mh).lookup; fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("quiescing a server changed the mh table")
	}
	fb, _ := Rebuild(s, nil, "mh", q, FlagMHFallback)
	for _, f := range clientFlows(2000) {
		was := s.Schedule(zeroCounts{}, &f)
		now, withFB := s2.Schedule(zeroCounts{}, &f), fb.Schedule(zeroCounts{}, &f)
		switch {
		case was == 2 && (now != -1 || withFB < 0 || withFB == 2):
			t.Fatalf("client of the quiesced server: %d without fallback (want -1), %d with (want another)", now, withFB)
		case was != 2 && (now != was || withFB != was):
			t.Fatalf("client of server %d moved to %d / %d", was, now, withFB)
		}
	}
	// New instead of Rebuild: the server's weight 0 counts as added with 0.
	fresh := mustNew(t, "mh", q, 0).(*mh)
	for _, i := range fresh.lookup {
		if i == 2 {
			t.Fatal("New with weight 0: the server holds slots")
		}
	}
}
