package sched

import "sync/atomic"

// base is what every scheduler holds: the destination list and the per-destination state
// the kernel keeps in struct ip_vs_dest rather than in the scheduler.
//
// Overload (IP_VS_DEST_F_OVERLOAD). The kernel sets the flag when binding a connection
// brings a server's total (ActiveConn + InActConn) to its upper threshold, clears it when
// an unbind takes the total below the lower threshold (below 3/4 of the upper one when
// there is no lower), and on an edit that removes or raises the upper threshold. Here the
// counts live in conntrack, and each server's flag is kept in one atomic word together
// with the total seen when the flag was last brought up to date:
//   - bound (a connection is bound to the server through this scheduler): the kernel's
//     bind, with the total the connection makes;
//   - refresh (the scheduler looks at the server): a total below the one seen means
//     connections ended: the clear rule applied to the total now is the kernel's result,
//     since between two looks the total only falls (every bind goes through bound, and
//     thresholds change only by Rebuild, which refreshes with the old ones first); a total
//     above the one seen means connections were bound elsewhere (by the scheduler this one
//     replaced, while workers switch over): set if it reaches the upper threshold.
//
// So the flag is the kernel's as long as connections to a server are bound through its
// scheduler, and a server without an upper threshold never costs a count read.
type base struct {
	dests  []Dest
	ov     []atomic.Uint64 // total seen << 1 | IP_VS_DEST_F_OVERLOAD
	lastW  []int32         // the kernel's last_weight: the latest non-zero weight
	thresh bool            // some destination has an upper threshold
}

func (b *base) core() *base { return b }

func packOv(seen int64, over bool) uint64 {
	v := uint64(seen) << 1
	if over {
		v |= 1
	}
	return v
}

func newBase(dests []Dest, prev *base, counts Counts) *base {
	b := &base{dests: dests, ov: make([]atomic.Uint64, len(dests)), lastW: make([]int32, len(dests))}
	var old map[uint32]int
	if prev != nil {
		old = make(map[uint32]int, len(prev.dests))
		for j := range prev.dests {
			old[prev.dests[j].ID] = j
		}
	}
	for i := range dests {
		d := &dests[i]
		b.lastW[i] = d.Weight
		if d.UThreshold > 0 {
			b.thresh = true
		}
		var seen int64
		var over bool
		if j, ok := old[d.ID]; ok && sameServer(d, &prev.dests[j]) {
			// __ip_vs_update_dest: last_weight keeps the latest non-zero weight; the
			// overload flag, up to date with the old thresholds, survives unless -x is
			// removed or raised.
			if d.Weight == 0 {
				b.lastW[i] = prev.lastW[j]
			}
			if counts != nil {
				prev.overloaded(j, counts)
			}
			st := prev.ov[j].Load()
			seen, over = int64(st>>1), st&1 != 0 && prev.dests[j].UThreshold != 0
			over = over && d.UThreshold != 0 && d.UThreshold <= prev.dests[j].UThreshold
		}
		if counts != nil {
			a, in := counts.Conns(d.ID)
			seen = int64(a) + int64(in)
		}
		b.ov[i].Store(packOv(seen, over))
	}
	return b
}

func sameServer(a, b *Dest) bool { return a.ID == b.ID && a.Addr == b.Addr && a.Port == b.Port }

// overhead is ip_vs_dest_conn_overhead: an active connection weighs 256 inactive ones.
func overhead(active, inactive int32) int64 { return int64(active)<<8 + int64(inactive) }

// usable reports whether server i may take a new connection: weight above zero and not
// overloaded.
func (b *base) usable(i int, c Counts) bool {
	return b.dests[i].Weight > 0 && !b.overloaded(i, c)
}

// overloaded brings server i's overload flag up to date and returns it.
func (b *base) overloaded(i int, c Counts) bool {
	if b.dests[i].UThreshold == 0 {
		return false
	}
	a, in := c.Conns(b.dests[i].ID)
	return b.refresh(i, int64(a)+int64(in))
}

// overloadedWith is overloaded for a caller that has read the counts already.
func (b *base) overloadedWith(i int, active, inactive int32) bool {
	if b.dests[i].UThreshold == 0 {
		return false
	}
	return b.refresh(i, int64(active)+int64(inactive))
}

// flag returns server i's overload flag as it stands, without refreshing it.
func (b *base) flag(i int) bool { return b.dests[i].UThreshold != 0 && b.ov[i].Load()&1 != 0 }

// refresh brings server i's flag up to date with its total now (see base).
func (b *base) refresh(i int, total int64) bool {
	d := &b.dests[i]
	st := b.ov[i].Load()
	seen, over := int64(st>>1), st&1 != 0
	now := over
	switch {
	case total > seen:
		now = over || total >= int64(d.UThreshold)
	case total < seen && over:
		if d.LThreshold != 0 {
			now = total >= int64(d.LThreshold)
		} else {
			now = total*4 >= int64(d.UThreshold)*3
		}
	}
	if total != seen || now != over {
		b.ov[i].Store(packOv(total, now))
	}
	return now
}

// bound records that a new connection is bound to server i (ip_vs_bind_dest): the flag
// is set when that connection brings the total to the upper threshold.
func (b *base) bound(i int, c Counts) {
	d := &b.dests[i]
	if d.UThreshold == 0 {
		return
	}
	a, in := c.Conns(d.ID)
	total := int64(a) + int64(in)
	over := b.refresh(i, total)
	b.ov[i].Store(packOv(total+1, over || total+1 >= int64(d.UThreshold)))
}

// leastWeighted is the weighted least-connection pick shared by wlc, lblc and lblcr
// (ip_vs_wlc.c, __ip_vs_lblc_schedule, __ip_vs_lblcr_schedule): the first usable server
// in list order, then any later one whose overhead/weight is strictly smaller, compared
// as loh*dw > doh*lw. It does not bind.
func (b *base) leastWeighted(c Counts) int {
	least := -1
	var loh, lw int64
	for i := range b.dests {
		d := &b.dests[i]
		// Weight 0 never wins the cross-multiplied comparison (loh*0 > doh*lw is false),
		// so skipping it is the kernel's result without reading its counts.
		if d.Weight <= 0 {
			continue
		}
		a, in := c.Conns(d.ID)
		if b.overloadedWith(i, a, in) {
			continue
		}
		doh := overhead(a, in)
		if least < 0 || loh*int64(d.Weight) > doh*lw {
			least, loh, lw = i, doh, int64(d.Weight)
		}
	}
	return least
}
