package gen

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	const ms = int64(time.Millisecond)
	type step struct {
		at   int64 // ns
		want int
		got  int
	}
	for _, tc := range []struct {
		name  string
		rate  float64
		batch int
		steps []step
	}{
		{"unpaced takes everything", 0, 64, []step{{0, 64, 64}, {1, 64, 64}}},
		{"first call earns nothing", 1e6, 64, []step{{ms, 64, 0}}},
		{"1 Mpps earns 64 frames in 64 µs", 1e6, 64, []step{{ms, 64, 0}, {ms + 64_000, 64, 64}, {ms + 64_000, 64, 0}}},
		{"partial credit", 1e6, 64, []step{{ms, 64, 0}, {ms + 10_000, 64, 10}, {ms + 20_000, 64, 10}}},
		{"a long sleep catches up one burst at most", 1e6, 64, []step{{ms, 64, 0}, {2 * ms, 1000, 256}, {2 * ms, 1000, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bucket
			b.setRate(tc.rate, tc.batch)
			for i, s := range tc.steps {
				if got := b.allow(s.want, s.at); got != s.got {
					t.Fatalf("step %d: allow(%d) at %d ns = %d, want %d", i, s.want, s.at, got, s.got)
				}
			}
		})
	}
}

// TestBucketRate checks, without a clock, that over a simulated second of calls at
// irregular intervals the bucket lets through the rate it was set to.
func TestBucketRate(t *testing.T) {
	for _, rate := range []float64{1e3, 123_456, 2e6} {
		var b bucket
		b.setRate(rate, 64)
		total := 0
		now := int64(1)
		for now < int64(time.Second) {
			total += b.allow(64, now)
			now += 7_000 + (now/13)%50_000 // 7 to 57 µs between calls
		}
		if d := float64(total) - rate; d > rate/100+256 || d < -rate/100-256 {
			t.Errorf("rate %.0f: %d frames in a simulated second", rate, total)
		}
	}
}

func TestBucketWaitAndPacer(t *testing.T) {
	var b bucket
	b.setRate(1e6, 64)
	b.allow(1, 1)
	if w := b.wait(33); w != 33*time.Microsecond {
		t.Fatalf("wait(33) = %v at 1 Mpps with no credit, want 33µs", w)
	}
	var p Pacer
	if p.Rate() != 0 {
		t.Fatalf("zero Pacer rate %v, want 0 (unpaced)", p.Rate())
	}
	p.Set(250_000)
	if p.Rate() != 250_000 {
		t.Fatalf("Rate() = %v after Set(250000)", p.Rate())
	}
	p.Set(-1)
	if p.Rate() != 0 {
		t.Fatalf("Rate() = %v after Set(-1), want 0", p.Rate())
	}
}
