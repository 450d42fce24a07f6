package sched

import (
	"encoding/binary"
	"math"
	"sync/atomic"
)

// The per-destination-address tables of lblc and lblcr.
//
// The kernel keeps, per service, a hash table from a packet's destination address to a
// server (lblc) or a set of servers (lblcr), each entry with the time it was last used. A
// timer every 60 s removes entries unused for lblc_expiration / lblcr_expiration (a
// sysctl, 24 h by default) once every 30 runs, and, when the table holds more than
// max_size = 16384 entries, entries unused for 6 minutes. Memory is unbounded in the
// kernel; here the table is a fixed array of localitySlots slots (the kernel's max_size)
// with no timer:
//   - an entry unused for localityExpiration is dead at once (the kernel removes it at
//     its next sweep, up to 30 minutes later);
//   - an address lives in one of localityWindow slots from its hash; a new one takes a
//     free or dead slot there, else the least recently used one if that was unused for
//     localityEntryTimeout (the kernel's collection when over max_size), else it is not
//     remembered — as when the kernel fails to allocate an entry: the server chosen is
//     used all the same.
//
// Concurrency: lock-free. Each slot has a sequence number, odd while a writer changes the
// slot: readers copy a slot and retry (a few times, then treat it as absent) if the number
// moved; a writer claims a slot by compare-and-swap from the even number it read, and
// when that fails (another worker is writing it) skips its update, as if the kernel had
// failed to allocate. No worker ever waits for another. Two workers seeing the same new
// address at once may both insert it; the first in the window is used and the other ages
// out. The last-use time is stored without the sequence number (a lone word).
//
// Entries name servers by ID and a fingerprint of address and port (destRef), so a table
// outlives the scheduler instance that built it (Rebuild shares it) and an entry whose
// server is gone — deleted, or its ID reused for another server — resolves to nothing,
// as the kernel's entry holding a server no longer available.
const (
	localityExpiration   = int64(24 * 60 * 60 * 1e9) // ns: lblc_expiration, lblcr_expiration
	localityEntryTimeout = int64(6 * 60 * 1e9)       // ns: ENTRY_TIMEOUT
	localityBits         = 14
	localitySlots        = 1 << localityBits // the kernel's max_size (16 × 1024 buckets)
	localityWindow       = 8
	lblcrSetMax          = 8 // servers an lblcr set holds (unbounded in the kernel)
	localityReadTries    = 4
)

type locSlot struct {
	seq     atomic.Uint32 // odd while being written
	n       atomic.Uint32 // servers held; 0 = free
	hi, lo  atomic.Uint64 // the destination address
	lastuse atomic.Int64
	lastmod atomic.Int64 // lblcr: when the set last changed
}

type locTable struct {
	k     int // servers a slot holds
	slots []locSlot
	refs  []atomic.Uint64 // k per slot
}

// locEntry is a consistent copy of a slot.
type locEntry struct {
	slot    int
	seq     uint32
	n       int
	lastmod int64
	refs    [lblcrSetMax]uint64
}

func newLocTable(k int) *locTable {
	return &locTable{k: k, slots: make([]locSlot, localitySlots), refs: make([]atomic.Uint64, localitySlots*k)}
}

func splitAddr(a *[16]byte) (hi, lo uint64) {
	return binary.BigEndian.Uint64(a[0:8]), binary.BigEndian.Uint64(a[8:16])
}

func locHome(hi, lo uint64) int {
	h := (hi ^ lo*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd
	return int(h >> (64 - localityBits))
}

func dead(lastuse, now int64) bool { return now-lastuse >= localityExpiration }

// get copies the live entry of address a into e.
func (t *locTable) get(a *[16]byte, now int64, e *locEntry) bool {
	hi, lo := splitAddr(a)
	h := locHome(hi, lo)
	for w := 0; w < localityWindow; w++ {
		if t.read((h+w)&(localitySlots-1), hi, lo, now, e) {
			return true
		}
	}
	return false
}

func (t *locTable) read(i int, hi, lo uint64, now int64, e *locEntry) bool {
	s := &t.slots[i]
	for try := 0; try < localityReadTries; try++ {
		q := s.seq.Load()
		if q&1 != 0 {
			continue
		}
		n := int(s.n.Load())
		match := n > 0 && n <= t.k && s.hi.Load() == hi && s.lo.Load() == lo && !dead(s.lastuse.Load(), now)
		if match {
			e.n, e.lastmod = n, s.lastmod.Load()
			for j := 0; j < n; j++ {
				e.refs[j] = t.refs[i*t.k+j].Load()
			}
		}
		if s.seq.Load() != q {
			continue
		}
		if match {
			e.slot, e.seq = i, q
		}
		return match
	}
	return false
}

// touch sets the last-use time of the slot e was read from.
func (t *locTable) touch(e *locEntry, now int64) { t.slots[e.slot].lastuse.Store(now) }

// rewrite stores e's servers (and lastmod) back into its slot if the slot has not changed
// since e was read; it reports whether it did.
func (t *locTable) rewrite(e *locEntry, lastmod int64) bool {
	s := &t.slots[e.slot]
	if !s.seq.CompareAndSwap(e.seq, e.seq+1) {
		return false
	}
	for j := 0; j < e.n; j++ {
		t.refs[e.slot*t.k+j].Store(e.refs[j])
	}
	s.n.Store(uint32(e.n))
	s.lastmod.Store(lastmod)
	s.seq.Store(e.seq + 2)
	e.seq += 2
	e.lastmod = lastmod
	return true
}

// insert makes a new entry for address a holding one server; false if none was made.
func (t *locTable) insert(a *[16]byte, ref uint64, now int64) bool {
	hi, lo := splitAddr(a)
	h := locHome(hi, lo)
	victim, oldest := -1, int64(math.MaxInt64)
	var vq uint32
	for w := 0; w < localityWindow; w++ {
		i := (h + w) & (localitySlots - 1)
		s := &t.slots[i]
		q := s.seq.Load()
		if q&1 != 0 {
			continue
		}
		lu := s.lastuse.Load()
		if s.n.Load() == 0 || dead(lu, now) {
			victim, vq = i, q
			break
		}
		if now-lu >= localityEntryTimeout && lu < oldest {
			victim, vq, oldest = i, q, lu
		}
	}
	if victim < 0 {
		return false
	}
	s := &t.slots[victim]
	if !s.seq.CompareAndSwap(vq, vq+1) {
		return false
	}
	s.hi.Store(hi)
	s.lo.Store(lo)
	t.refs[victim*t.k].Store(ref)
	s.n.Store(1)
	s.lastuse.Store(now)
	s.lastmod.Store(now)
	s.seq.Store(vq + 2)
	return true
}

// destRef names a server in a table: its ID and a fingerprint of its address and port,
// never 0.
func destRef(d *Dest) uint64 {
	h := uint32(2166136261)
	for _, c := range d.Addr {
		h = (h ^ uint32(c)) * 16777619
	}
	h = (h ^ uint32(d.Port>>8)) * 16777619
	h = (h ^ uint32(d.Port&0xff)) * 16777619
	return uint64(d.ID)<<32 | uint64(h|1)
}

// refIndex maps destRef values to list indices: open addressing, pointer-free.
type refIndex struct {
	refs []uint64 // 0 = empty
	idx  []int32
	bits uint
}

func newRefIndex(dests []Dest) refIndex {
	var x refIndex
	x.bits = 1
	for 1<<x.bits < 2*len(dests) {
		x.bits++
	}
	x.refs = make([]uint64, 1<<x.bits)
	x.idx = make([]int32, 1<<x.bits)
	for i := range dests {
		r := destRef(&dests[i])
		for k := x.home(r); ; k = (k + 1) & (len(x.refs) - 1) {
			if x.refs[k] == 0 || x.refs[k] == r {
				x.refs[k], x.idx[k] = r, int32(i)
				break
			}
		}
	}
	return x
}

func (x *refIndex) home(r uint64) int { return int((r * 0x9e3779b97f4a7c15) >> (64 - x.bits)) }

// find returns the list index of the server r names, or -1 if it is not in the list.
func (x *refIndex) find(r uint64) int {
	for k := x.home(r); ; k = (k + 1) & (len(x.refs) - 1) {
		switch x.refs[k] {
		case r:
			return int(x.idx[k])
		case 0:
			return -1
		}
	}
}

// localityBusy is lblc's and lblcr's is_overloaded: server i has more active connections
// than its weight while some server of the service has fewer than half its weight.
func (b *base) localityBusy(i int, c Counts) bool {
	a, _ := c.Conns(b.dests[i].ID)
	if a <= b.dests[i].Weight {
		return false
	}
	for j := range b.dests {
		if aj, _ := c.Conns(b.dests[j].ID); int64(aj)*2 < int64(b.dests[j].Weight) {
			return true
		}
	}
	return false
}
