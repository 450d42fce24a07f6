package sched

import (
	"sort"
	"sync/atomic"
)

// maxWRRCycle bounds the precomputed wrr cycle (4 bytes an entry). Longer cycles (huge,
// coprime weights over many servers) use the kernel's own walk instead (walk mode).
const maxWRRCycle = 1 << 20

// wrr is weighted round robin (ip_vs_wrr.c). The kernel keeps a mark (cl, cw): a list
// position (or the head) and a current weight. With di the gcd of the weights above zero
// and mw = max weight - (di-1), cw takes the values mw, mw-di, ... down to the last pass
// (cw <= di); a decision walks on from the mark, and passing the end of the list lowers
// cw by di, from the last pass back to mw. The first server whose weight is at least cw
// and that is not overloaded is chosen and becomes the mark. The walk gives up once every
// server has been looked at in a last pass: if the mark was the head or above the last
// pass, at the end of the next last pass (the mark becomes the head, cw = mw); if the
// mark was a server p in the last pass, when the walk comes back to p in a last pass
// (the mark stays p).
//
// Without overloaded servers the walk is periodic, with period sum(weights)/di, so it is
// laid out once as a cycle of positions, pass by pass (level k holds the servers whose
// weight is at least max-k*di, in list order), and workers take positions from one
// atomic counter: the kernel's sequence without a lock. Overloaded servers are skipped
// at their positions and the give-up rule is applied to positions, which is the walk
// exactly. An edit (ip_vs_wrr_dest_changed) puts the mark at the head keeping cw (mw if
// it was above the new mw or 0, else rounded to the new grid: cw/di*di + 1), which is a
// position in the new cycle: the start of cw's pass.
//
// Cycles longer than maxWRRCycle use the walk itself (walk mode), with the mark packed
// in one atomic word and advanced by compare-and-swap: still lock-free, O(servers) a
// decision.
type wrr struct {
	base
	max, di int32         // the largest weight, the gcd of the weights above zero (1 if none)
	npos    int           // servers with weight above zero
	initCW  int32         // the kernel's cw when built, with the mark at the head
	cycle   []uint32      // one period, pass by pass
	levels  []uint32      // levels[k]: cycle index where pass k (weights >= max-k*di) starts
	start   uint64        // the position the mark at the head stands for when built
	pos     atomic.Uint64 // positions taken, from start on
	headPos atomic.Uint64 // the value of pos at which the mark is at the head
	state   atomic.Uint64 // walk mode: the mark, uint32(cl)<<32 | uint32(cw); cl -1 = head
}

func init() {
	register("wrr", func(b *base, _ Flags, prev Scheduler) (Scheduler, error) {
		var cw int32
		if p, ok := prev.(*wrr); ok {
			cw = p.currentWeight()
		}
		return newWRR(b, cw, maxWRRCycle), nil
	})
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func packMark(cl, cw int32) uint64 { return uint64(uint32(cl))<<32 | uint64(uint32(cw)) }

func unpackMark(v uint64) (cl, cw int32) { return int32(uint32(v >> 32)), int32(uint32(v)) }

// newWRR builds wrr with the mark at the head, given the kernel's cw before the edit (0
// for a new service).
func newWRR(b *base, cw int32, maxCycle int) *wrr {
	s := &wrr{base: *b}
	var sum int64
	for _, d := range s.dests {
		if d.Weight > 0 {
			s.di = gcd(d.Weight, s.di)
			s.max = max(s.max, d.Weight)
			sum += int64(d.Weight)
			s.npos++
		}
	}
	if s.di == 0 {
		s.di = 1
	}
	mw := s.mw()
	if cw > mw || cw == 0 {
		cw = mw
	} else if s.di > 1 {
		cw = cw/s.di*s.di + 1
	}
	s.initCW = cw
	s.state.Store(packMark(-1, cw))
	if s.max == 0 || sum/int64(s.di) > int64(maxCycle) {
		return s
	}
	s.cycle = make([]uint32, 0, sum/int64(s.di))
	s.levels = make([]uint32, 0, s.max/s.di)
	order := make([]uint32, 0, s.npos) // heaviest first
	for i, d := range s.dests {
		if d.Weight > 0 {
			order = append(order, uint32(i))
		}
	}
	sort.SliceStable(order, func(x, y int) bool { return s.dests[order[x]].Weight > s.dests[order[y]].Weight })
	active := make([]uint32, 0, len(order)) // the servers of the pass, in list order
	j := 0
	for level := s.max; level > 0; level -= s.di {
		for ; j < len(order) && s.dests[order[j]].Weight >= level; j++ {
			k := sort.Search(len(active), func(x int) bool { return active[x] > order[j] })
			active = append(active, 0)
			copy(active[k+1:], active[k:])
			active[k] = order[j]
		}
		s.levels = append(s.levels, uint32(len(s.cycle)))
		s.cycle = append(s.cycle, active...)
	}
	s.start = uint64(s.levels[(mw-cw)/s.di])
	s.pos.Store(s.start)
	s.headPos.Store(s.start)
	return s
}

// mw is the kernel's mark->mw: the largest weight less di-1, so the last pass is cw 1.
func (s *wrr) mw() int32 {
	if s.max == 0 {
		return 0
	}
	return s.max - (s.di - 1)
}

// entry returns the server at position q, whether the position is in the last pass, and
// whether it ends the last pass (the end of the cycle).
func (s *wrr) entry(q uint64) (i int, last, end bool) {
	n := uint64(len(s.cycle))
	c := q % n
	return int(s.cycle[c]), c >= n-uint64(s.npos), c == n-1
}

// currentWeight is the kernel's cw for the mark as it stands.
func (s *wrr) currentWeight() int32 {
	if s.max == 0 {
		return s.initCW
	}
	if s.cycle == nil {
		_, cw := unpackMark(s.state.Load())
		return cw
	}
	t := s.pos.Load()
	if t == s.headPos.Load() {
		if t == s.start {
			return s.initCW
		}
		return s.mw() // given up at the end of a last pass: cw back to mw
	}
	c := uint32((t - 1) % uint64(len(s.cycle)))
	k := sort.Search(len(s.levels), func(x int) bool { return s.levels[x] > c }) - 1
	return s.mw() - int32(k)*s.di
}

func (s *wrr) Name() string { return "wrr" }

func (s *wrr) Schedule(counts Counts, _ *Flow) int {
	if s.max == 0 {
		return -1
	}
	if s.cycle == nil {
		return s.walk(counts)
	}
	if !s.thresh { // nothing can be overloaded: the next position is the answer
		i, _, _ := s.entry(s.pos.Add(1) - 1)
		return i
	}
	p, plast := -1, false // the mark: -1 = the head
	if t := s.pos.Load(); t != s.headPos.Load() {
		p, plast, _ = s.entry(t - 1)
	}
	for try := 0; try <= len(s.cycle); try++ {
		q := s.pos.Add(1)
		i, last, end := s.entry(q - 1)
		if !s.overloaded(i, counts) {
			return i
		}
		if plast && last && i == p {
			return -1 // the mark stays at p
		}
		if !plast && end {
			s.headPos.Store(q) // the mark goes to the head, cw to mw
			return -1
		}
	}
	return -1
}

// walk is the kernel's walk on the packed mark (walk mode).
func (s *wrr) walk(counts Counts) int {
	n := int32(len(s.dests))
	mw := s.mw()
	for {
		st := s.state.Load()
		cl, cw := unpackMark(st)
		last, stop := cl, int32(-2)
		lastPass, restarted := false, false
		pick := -1
		i := cl
	walk:
		for {
			for i++; i < n; i++ {
				if s.dests[i].Weight >= cw && !s.overloaded(int(i), counts) {
					pick = int(i)
					break walk
				}
				if i == stop {
					break walk
				}
			}
			i = -1 // the head
			if cw -= s.di; cw <= 0 {
				cw = mw
				if lastPass || last == -1 {
					break walk
				}
				restarted = true
			}
			if lastPass = cw <= s.di; lastPass && restarted && last != -1 {
				stop = last
			}
		}
		if s.state.CompareAndSwap(st, packMark(i, cw)) {
			return pick
		}
	}
}
