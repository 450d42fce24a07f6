package bench

import (
	"fmt"
	"time"
)

// Kinds of measurement a run counts: they take very different times (a packet-rate
// measurement searches for the no-drop rate; a connection measurement does not), so
// the estimate keeps a mean per kind.
const (
	kindPacket = iota
	kindConn
	numKinds
)

// progress tracks how far a harness run is: measurements done of those planned, time
// since the start, and the time left estimated from the mean time per measurement of
// each kind so far (a kind not measured yet borrows the other's mean). Warm-ups are not
// counted; their time shows in the elapsed time only. Not safe for concurrent use.
type progress struct {
	start time.Time
	last  time.Time // end of the previous measurement (or warm-up)
	kinds [numKinds]struct {
		total, done int
		spent       time.Duration
	}
}

func newProgress(start time.Time) *progress { return &progress{start: start, last: start} }

// plan adds n measurements of kind k to the total.
func (p *progress) plan(k, n int) { p.kinds[k].total += n }

// drop removes n planned measurements of kind k that will not happen (a target found
// unavailable part way).
func (p *progress) drop(k, n int) { p.kinds[k].total = max(p.kinds[k].total-n, p.kinds[k].done) }

// skip marks time spent on something not counted (a warm-up) as not belonging to the
// next measurement.
func (p *progress) skip(now time.Time) { p.last = now }

// step records one measurement of kind k ending at now, failed or not.
func (p *progress) step(k int, now time.Time) {
	p.kinds[k].done++
	p.kinds[k].spent += now.Sub(p.last)
	p.last = now
}

// counts returns the measurements done and planned.
func (p *progress) counts() (done, total int) {
	for _, k := range p.kinds {
		done, total = done+k.done, total+k.total
	}
	return done, total
}

// left estimates the time the planned measurements still need; ok is false before any
// measurement finished.
func (p *progress) left() (d time.Duration, ok bool) {
	var mean [numKinds]time.Duration
	var any time.Duration
	for i, k := range p.kinds {
		if k.done > 0 {
			mean[i] = k.spent / time.Duration(k.done)
			any = mean[i]
		}
	}
	if any == 0 {
		return 0, false
	}
	for i, k := range p.kinds {
		m := mean[i]
		if m == 0 {
			m = any
		}
		d += time.Duration(k.total-k.done) * m
	}
	return d, true
}

// line is the progress line printed after each measurement.
func (p *progress) line(now time.Time) string {
	done, total := p.counts()
	s := fmt.Sprintf("progress: %d/%d measurements, %s elapsed", done, total, roundDuration(now.Sub(p.start)))
	if d, ok := p.left(); ok {
		s += ", about " + roundDuration(d).String() + " left"
	}
	return s
}

// roundDuration rounds to seconds (to a tenth under ten seconds).
func roundDuration(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
