package sched

import "math/rand/v2"

// twos is weighted random two choices (ip_vs_twos.c). Over the usable servers (weight
// above zero, not overloaded) with total weight T, the kernel draws r1 and r2 uniformly
// from [0, T] (rand % (T+1)) and, walking the list subtracting weights, takes for each
// the first server at which it reaches 0 or below — the first server whose running
// weight sum is at least r; then it keeps the first choice unless the second is less
// loaded: w2*overhead1 > w1*overhead2 (overhead = ActiveConn*256 + InActConn, 64-bit
// products here). With r in [0, T] the first usable server gets weight+1 chances in T+1.
//
// Without thresholds no server is ever overloaded and the usable set is fixed, so the
// running sums are built once and each draw is looked up through a guide table: the
// range [0, T] is cut into buckets of 2^shift draws (about as many buckets as servers),
// each knowing the first and the last server a draw in it can land on, then a binary
// search within the bucket: O(1) for weights of similar size, O(log servers) at worst.
// With thresholds the kernel's two passes over the list are done as they are.
type twos struct {
	base
	pidx  []int32 // servers with weight above zero, in list order
	pre   []int64 // running weight sums over pidx (inclusive)
	guide []int32 // guide[b]: the answer for draw b<<shift
	shift uint
	rnd   func() uint32
}

func init() {
	register("twos", func(b *base, _ Flags, _ Scheduler) (Scheduler, error) {
		s := &twos{base: *b, rnd: rand.Uint32}
		var sum int64
		for i := range s.dests {
			if w := s.dests[i].Weight; w > 0 {
				sum += int64(w)
				s.pidx = append(s.pidx, int32(i))
				s.pre = append(s.pre, sum)
			}
		}
		if len(s.pidx) == 0 {
			return s, nil
		}
		for sum>>s.shift >= int64(len(s.pidx)) {
			s.shift++
		}
		nb := sum>>s.shift + 1
		s.guide = make([]int32, nb+1)
		for b := range s.guide {
			s.guide[b] = int32(s.search(int64(b)<<s.shift, 0, len(s.pre)-1))
		}
		return s, nil
	})
}

// search returns the first k in [lo, hi] with pre[k] >= r (hi if none).
func (s *twos) search(r int64, lo, hi int) int {
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if s.pre[mid] >= r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// find maps a draw r in [0, T] to its position in pidx.
func (s *twos) find(r int64) int {
	b := r >> s.shift
	return s.search(r, int(s.guide[b]), int(s.guide[b+1]))
}

func (s *twos) Name() string { return "twos" }

func (s *twos) Schedule(counts Counts, _ *Flow) int {
	if s.thresh {
		return s.walk(counts)
	}
	if len(s.pidx) == 0 {
		return -1
	}
	t1 := uint32(s.pre[len(s.pre)-1] + 1)
	r1 := int64(s.rnd() % t1)
	r2 := int64(s.rnd() % t1)
	c1, c2 := int(s.pidx[s.find(r1)]), int(s.pidx[s.find(r2)])
	if c1 != c2 && s.prefer(c1, c2, counts) {
		c1 = c2
	}
	return c1
}

// prefer reports whether the second choice is less loaded than the first.
func (s *twos) prefer(c1, c2 int, counts Counts) bool {
	oh1, oh2 := overhead(counts.Conns(s.dests[c1].ID)), overhead(counts.Conns(s.dests[c2].ID))
	return int64(s.dests[c2].Weight)*oh1 > int64(s.dests[c1].Weight)*oh2
}

// walk is the kernel's two passes, for services with thresholds.
func (s *twos) walk(counts Counts) int {
	var total int64
	c1 := -1
	for i := range s.dests {
		if s.usable(i, counts) {
			total += int64(s.dests[i].Weight)
			c1 = i
		}
	}
	if c1 < 0 {
		return -1
	}
	t1 := uint32(total + 1)
	r1 := int64(s.rnd() % t1)
	r2 := int64(s.rnd() % t1)
	c2 := -1
	got1 := false
	for i := range s.dests {
		w := s.dests[i].Weight
		if w <= 0 || s.overloaded(i, counts) {
			continue
		}
		r1 -= int64(w)
		r2 -= int64(w)
		if r1 <= 0 && !got1 {
			c1, got1 = i, true
		}
		if r2 <= 0 && c2 < 0 {
			c2 = i
		}
		if got1 && c2 >= 0 {
			break
		}
	}
	if c2 >= 0 && c1 != c2 && s.prefer(c1, c2, counts) {
		c1 = c2
	}
	return c1
}
