package gen

import (
	"math"
	"sync/atomic"
	"time"
)

// Pacer sets the rate Run transmits at; it may be changed while Run runs (a search for
// the highest rate a forwarder takes without loss changes it between trials). The zero
// Pacer, and a rate of 0, mean unpaced: as fast as the socket takes frames.
type Pacer struct {
	pps atomic.Uint64 // float64 bits
}

// Set changes the rate to pps packets per second (0: unpaced).
func (p *Pacer) Set(pps float64) { p.pps.Store(math.Float64bits(max(0, pps))) }

// Rate returns the rate set last.
func (p *Pacer) Rate() float64 { return math.Float64frombits(p.pps.Load()) }

// bucket is a token bucket: credit grows with time at the rate and is spent per frame;
// it holds at most burst frames, so a late wake-up catches up by at most one burst.
type bucket struct {
	rate   float64 // frames per second; 0 unpaced
	credit float64
	burst  float64
	last   int64 // monotonic ns
}

// allow returns how many of want frames may go now, at time now (ns).
func (b *bucket) allow(want int, now int64) int {
	if b.rate == 0 {
		return want
	}
	if b.last != 0 {
		b.credit = min(b.burst, b.credit+float64(now-b.last)*b.rate/1e9)
	}
	b.last = now
	n := min(want, int(b.credit))
	b.credit -= float64(n)
	return n
}

// setRate changes the rate, keeping the credit earned so far (capped by the new burst).
func (b *bucket) setRate(rate float64, batch int) {
	if rate == b.rate {
		return
	}
	b.rate = rate
	b.burst = float64(4 * batch)
	b.credit = min(b.credit, b.burst)
}

// wait returns how long until the bucket holds n frames.
func (b *bucket) wait(n int) time.Duration {
	if b.rate == 0 || b.credit >= float64(n) {
		return 0
	}
	return time.Duration((float64(n) - b.credit) / b.rate * 1e9)
}
