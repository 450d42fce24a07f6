package sched

// base is what every scheduler holds: the destination list and the per-destination state
// the kernel keeps in struct ip_vs_dest rather than in the scheduler.
//
// Overload (IP_VS_DEST_F_OVERLOAD) is not kept here. The kernel sets and clears the flag
// where connections bind to and unbind from a server (ip_vs_bind_dest, ip_vs_unbind_dest
// in ip_vs_conn.c), which covers the connections a persistence template sends to a
// server without asking the scheduler; here the Counts implementation keeps it at the
// same places and the schedulers only read it (Counts.Overloaded). A server whose Dest
// has no upper threshold is never overloaded (the kernel clears the flag when -x is
// removed and sets it only when -x is set), so its flag is not read.
type base struct {
	dests  []Dest
	lastW  []int32 // the kernel's last_weight: the latest non-zero weight
	thresh bool    // some destination has an upper threshold
}

func (b *base) core() *base { return b }

func newBase(dests []Dest, prev *base) *base {
	b := &base{dests: dests, lastW: make([]int32, len(dests))}
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
		// __ip_vs_update_dest: last_weight keeps the latest non-zero weight.
		if j, ok := old[d.ID]; ok && d.Weight == 0 && sameServer(d, &prev.dests[j]) {
			b.lastW[i] = prev.lastW[j]
		}
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

// overloaded is server i's IP_VS_DEST_F_OVERLOAD, as the counts keep it.
func (b *base) overloaded(i int, c Counts) bool {
	return b.dests[i].UThreshold != 0 && c.Overloaded(b.dests[i].ID)
}

// bound does nothing: binding a connection, and the overload flag with it, is the
// business of the Counts implementation now. sh.go and dh.go still call it; it goes when
// they stop.
func (b *base) bound(int, Counts) {}

// leastWeighted is the weighted least-connection pick shared by wlc, lblc and lblcr
// (ip_vs_wlc.c, __ip_vs_lblc_schedule, __ip_vs_lblcr_schedule): the first usable server
// in list order, then any later one whose overhead/weight is strictly smaller, compared
// as loh*dw > doh*lw.
func (b *base) leastWeighted(c Counts) int {
	least := -1
	var loh, lw int64
	for i := range b.dests {
		d := &b.dests[i]
		// Weight 0 never wins the cross-multiplied comparison (loh*0 > doh*lw is false),
		// so skipping it is the kernel's result without reading its counts.
		if d.Weight <= 0 || b.overloaded(i, c) {
			continue
		}
		doh := overhead(c.Conns(d.ID))
		if least < 0 || loh*int64(d.Weight) > doh*lw {
			least, loh, lw = i, doh, int64(d.Weight)
		}
	}
	return least
}
