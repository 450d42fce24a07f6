package sched

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// This file is a slow reference written from the kernel's description of each scheduler
// (net/netfilter/ipvs/ip_vs_*.c, ip_vs_conn.c, ip_vs_ctl.c, ip_vs_proto_tcp.c): struct
// ip_vs_dest with its counters and flags kept by bind, unbind and TCP state transitions,
// the schedulers' own state, and the update hooks run on edits. The counting follows the
// torvalds/linux mainline source as of 2025 (ip_vs_conn.c with timer_container_of, 6.16+):
// ip_vs_bind_dest, ip_vs_unbind_dest, set_tcp_state with tcp_state_active_table, and
// __ip_vs_update_dest. It shares no code with the package but the types.

// sim is what the kernel keeps in struct ip_vs_dest, by destination ID; the scheduler
// under test reads it through Counts, the model writes it.
type sim struct {
	active, inactive map[uint32]int32
	dests            map[uint32]*kdest // every destination ever made, for its flags
}

func newSim() *sim { return &sim{map[uint32]int32{}, map[uint32]int32{}, map[uint32]*kdest{}} }

func (s *sim) Conns(id uint32) (int32, int32) { return s.active[id], s.inactive[id] }

func (s *sim) Overloaded(id uint32) bool { d := s.dests[id]; return d != nil && d.overload }

// TCP states in the kernel's order (IP_VS_TCP_S_*) and tcp_state_active_table: SYN_SENT,
// SYN_RECV, SYNACK and ESTABLISHED count as active.
const (
	kNO = iota
	kES
	kSS
	kSR
	kFW
	kTW
	kCL
	kCW
	kLA
	kLI
	kSA
	kStates
)

var kActive = [kStates]bool{kES: true, kSS: true, kSR: true, kSA: true}

// kconn is the part of struct ip_vs_conn the counters depend on.
type kconn struct {
	d        *kdest
	tcp      bool
	state    int
	inactive bool // IP_VS_CONN_F_INACTIVE
}

// kdest is struct ip_vs_dest.
type kdest struct {
	d         Dest
	lastW     int32
	overload  bool
	available bool // IP_VS_DEST_F_AVAILABLE: cleared when unlinked
}

type klblc struct {
	dest    *kdest
	lastuse int64
}

type klblcr struct {
	set     []*kdest // newest first
	lastmod int64
	lastuse int64
}

type kmodel struct {
	name  string
	flags Flags
	dests []*kdest
	sim   *sim
	rnd   func() uint32

	rrMark   *kdest // nil = head
	wcl      *kdest // wrr mark; nil = head
	wcw, wmw int32
	wdi      int32
	table    [256]*kdest // sh, dh
	mhLookup []*kdest
	lblc     map[[16]byte]*klblc
	lblcr    map[[16]byte]*klblcr
}

func newModel(name string, dests []Dest, flags Flags, s *sim, rnd func() uint32) *kmodel {
	m := &kmodel{name: name, flags: flags, sim: s, rnd: rnd,
		lblc: map[[16]byte]*klblc{}, lblcr: map[[16]byte]*klblcr{}}
	// Built by adding one destination after the other, from the oldest (the end of the
	// list) to the newest; the hooks run at the end, as when a scheduler is assigned.
	for i := len(dests) - 1; i >= 0; i-- {
		m.dests = append([]*kdest{{d: dests[i], lastW: dests[i].Weight, available: true}}, m.dests...)
		s.dests[dests[i].ID] = m.dests[0]
	}
	m.wdi = m.wrrGCD()
	m.wmw = m.wrrMax() - (m.wdi - 1)
	m.wcw = m.wmw
	m.reassign()
	return m
}

func (m *kmodel) index(d *kdest) int {
	for i, x := range m.dests {
		if x == d {
			return i
		}
	}
	return -1
}

func (m *kmodel) total(d *kdest) int64 {
	a, in := m.sim.Conns(d.d.ID)
	return int64(a) + int64(in)
}

func (m *kmodel) ohead(d *kdest) int64 {
	a, in := m.sim.Conns(d.d.ID)
	return int64(a)*256 + int64(in)
}

// bind is ip_vs_conn_new's ip_vs_bind_dest: the connection takes the destination's
// conn_flags, which __ip_vs_update_dest always gives IP_VS_CONN_F_INACTIVE, so it counts
// as inactive; the flag is set when the total reaches the upper threshold.
func (m *kmodel) bind(d *kdest, tcp bool) *kconn {
	c := &kconn{d: d, tcp: tcp, state: kNO, inactive: true}
	m.sim.inactive[d.d.ID]++
	if d.d.UThreshold != 0 && m.total(d) >= int64(d.d.UThreshold) {
		d.overload = true
	}
	return c
}

// transition is set_tcp_state once the next state is known: a change of state moves the
// connection between the counters when its activity changes. UDP connections have no
// such transitions (ip_vs_proto_udp.c's state_transition only sets the timeout).
func (m *kmodel) transition(c *kconn, next int) {
	if !c.tcp || next == c.state {
		return
	}
	id := c.d.d.ID
	switch {
	case !c.inactive && !kActive[next]:
		m.sim.active[id]--
		m.sim.inactive[id]++
		c.inactive = true
	case c.inactive && kActive[next]:
		m.sim.active[id]++
		m.sim.inactive[id]--
		c.inactive = false
	}
	c.state = next
}

// unbind is ip_vs_unbind_dest.
func (m *kmodel) unbind(c *kconn) {
	d := c.d
	if c.inactive {
		m.sim.inactive[d.d.ID]--
	} else {
		m.sim.active[d.d.ID]--
	}
	switch {
	case d.d.LThreshold != 0:
		if m.total(d) < int64(d.d.LThreshold) {
			d.overload = false
		}
	case d.d.UThreshold != 0:
		if m.total(d)*4 < int64(d.d.UThreshold)*3 {
			d.overload = false
		}
	default:
		d.overload = false
	}
}

// --- edits (ip_vs_ctl.c) ---

func (m *kmodel) add(d Dest) {
	m.dests = append([]*kdest{{d: d, lastW: d.Weight, available: true}}, m.dests...)
	m.sim.dests[d.ID] = m.dests[0]
	m.changed()
}

func (m *kmodel) del(i int) {
	d := m.dests[i]
	m.dests = append(m.dests[:i:i], m.dests[i+1:]...)
	d.available = false
	if m.rrMark == d { // ip_vs_rr_del_dest: back to the predecessor
		m.rrMark = nil
		if i > 0 {
			m.rrMark = m.dests[i-1]
		}
	}
	m.changed()
}

// edit is __ip_vs_update_dest on an existing destination.
func (m *kmodel) edit(i int, weight int32, u, l uint32) {
	d := m.dests[i]
	if weight != 0 {
		d.lastW = weight
	}
	d.d.Weight = weight
	if u == 0 || u > d.d.UThreshold {
		d.overload = false
	}
	d.d.UThreshold, d.d.LThreshold = u, l
	m.changed()
}

func (m *kmodel) changed() {
	// ip_vs_wrr_dest_changed
	m.wcl = nil
	m.wdi = m.wrrGCD()
	m.wmw = m.wrrMax() - (m.wdi - 1)
	if m.wcw > m.wmw || m.wcw == 0 {
		m.wcw = m.wmw
	} else if m.wdi > 1 {
		m.wcw = m.wcw/m.wdi*m.wdi + 1
	}
	m.reassign()
}

func (m *kmodel) wrrGCD() int32 {
	g := int32(0)
	for _, d := range m.dests {
		if w := d.d.Weight; w > 0 {
			if g > 0 {
				a, b := w, g
				for b != 0 {
					a, b = b, a%b
				}
				g = a
			} else {
				g = w
			}
		}
	}
	if g == 0 {
		return 1
	}
	return g
}

func (m *kmodel) wrrMax() int32 {
	w := int32(0)
	for _, d := range m.dests {
		w = max(w, d.d.Weight)
	}
	return w
}

// reassign rebuilds the sh, dh and mh tables.
func (m *kmodel) reassign() {
	n := len(m.dests)
	switch m.name {
	case "sh": // ip_vs_sh_reassign
		p, c := 0, int32(0)
		for i := range m.table {
			if n == 0 {
				m.table[i] = nil
				continue
			}
			if p == n {
				p = 0
			}
			d := m.dests[p]
			m.table[i] = d
			c++
			if c >= d.d.Weight {
				p++
				c = 0
			}
		}
	case "dh":
		for i := range m.table {
			m.table[i] = nil
			if n > 0 {
				m.table[i] = m.dests[i%n]
			}
		}
	case "mh":
		m.mhLookup = refMaglev(m.dests)
	}
}

// refFold is the kernel's addr_fold, written with netip.
func refFold(a [16]byte) uint32 {
	ip := netip.AddrFrom16(a)
	if ip.Is4In6() {
		v4 := ip.Unmap().As4()
		return binary.BigEndian.Uint32(v4[:])
	}
	var x uint32
	for k := 0; k < 16; k += 4 {
		x ^= binary.BigEndian.Uint32(a[k:])
	}
	return x
}

// refSipHash is SipHash-c-d of msg: the generic algorithm, for any round counts.
func refSipHash(c, d int, k0, k1 uint64, msg []byte) uint64 {
	v := [4]uint64{k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573}
	round := func() {
		v[0] += v[1]
		v[1] = bits.RotateLeft64(v[1], 13) ^ v[0]
		v[0] = bits.RotateLeft64(v[0], 32)
		v[2] += v[3]
		v[3] = bits.RotateLeft64(v[3], 16) ^ v[2]
		v[0] += v[3]
		v[3] = bits.RotateLeft64(v[3], 21) ^ v[0]
		v[2] += v[1]
		v[1] = bits.RotateLeft64(v[1], 17) ^ v[2]
		v[2] = bits.RotateLeft64(v[2], 32)
	}
	full := len(msg) / 8 * 8
	for k := 0; k < full; k += 8 {
		w := binary.LittleEndian.Uint64(msg[k:])
		v[3] ^= w
		for r := 0; r < c; r++ {
			round()
		}
		v[0] ^= w
	}
	b := uint64(len(msg)) << 56
	for k := full; k < len(msg); k++ {
		b |= uint64(msg[k]) << (8 * (k - full))
	}
	v[3] ^= b
	for r := 0; r < c; r++ {
		round()
	}
	v[0] ^= b
	v[2] ^= 0xff
	for r := 0; r < d; r++ {
		round()
	}
	return v[0] ^ v[1] ^ v[2] ^ v[3]
}

// refHsiphash is hsiphash(&v, sizeof(v), key) on a 64-bit little-endian kernel.
func refHsiphash(v uint32, k0, k1 uint64) uint32 {
	var msg [4]byte
	binary.LittleEndian.PutUint32(msg[:], v)
	return uint32(refSipHash(1, 3, k0, k1, msg[:]))
}

const refMHSize = 4093

// refMaglev fills the mh lookup table the way the Maglev paper describes it (permutation
// entry j of server i is (offset_i + j*skip_i) mod M, next_i counts the entries used),
// with the kernel's turns per server and its hash inputs.
func refMaglev(dests []*kdest) []*kdest {
	lookup := make([]*kdest, refMHSize)
	g, mw := int32(0), int32(0)
	for _, d := range dests {
		if d.lastW > 0 {
			if g == 0 {
				g = d.lastW
			} else {
				a, b := d.lastW, g
				for b != 0 {
					a, b = b, a%b
				}
				g = a
			}
			mw = max(mw, d.lastW)
		}
	}
	if g < 1 {
		return lookup
	}
	shift := 0
	for x := mw / g; x != 0; x >>= 1 {
		shift++
	}
	if shift -= 6; shift < 0 {
		shift = 0
	}
	n := len(dests)
	offset, skip, next := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	turns := make([]int32, n)
	for i, d := range dests {
		v := uint32(d.d.Port) + refFold(d.d.Addr)
		offset[i] = uint64(refHsiphash(v, 2654435761, 2654435761) % refMHSize)
		skip[i] = uint64(refHsiphash(v, 2654446892, 2654446892)%(refMHSize-1) + 1)
		turns[i] = (d.lastW / g) >> shift
		if turns[i] == 0 && d.lastW != 0 {
			turns[i] = 1
		}
	}
	filled := 0
	for filled < refMHSize {
		for i := 0; i < n && filled < refMHSize; i++ {
			for t := int32(0); t < turns[i] && filled < refMHSize; t++ {
				c := (offset[i] + next[i]*skip[i]) % refMHSize
				for lookup[c] != nil {
					next[i]++
					c = (offset[i] + next[i]*skip[i]) % refMHSize
				}
				lookup[c] = dests[i]
				next[i]++
				filled++
			}
		}
	}
	return lookup
}

// --- scheduling ---

func (m *kmodel) schedule(f *Flow) int {
	var d *kdest
	switch m.name {
	case "rr":
		d = m.rr()
	case "wrr":
		d = m.wrr()
	case "lc":
		d = m.lc()
	case "wlc":
		d = m.wlc()
	case "sed", "nq":
		d = m.sedNQ(m.name == "nq")
	case "fo":
		d = m.fo()
	case "ovf":
		d = m.ovf()
	case "twos":
		d = m.twos()
	case "sh":
		d = m.sh(f)
	case "dh":
		d = m.dh(f)
	case "mh":
		d = m.mh(f)
	case "lblc":
		d = m.lblcSchedule(f)
	case "lblcr":
		d = m.lblcrSchedule(f)
	}
	if d == nil {
		return -1
	}
	return m.index(d)
}

func (m *kmodel) rr() *kdest {
	n := len(m.dests)
	start := m.index(m.rrMark) // -1 at the head
	for k := 1; k <= n; k++ {  // from the one after the mark round to the mark itself
		d := m.dests[(start+k+n)%n]
		if !d.overload && d.d.Weight > 0 {
			m.rrMark = d
			return d
		}
	}
	return nil
}

func (m *kmodel) wrr() *kdest {
	if m.wmw == 0 {
		return nil
	}
	last := m.wcl
	var stop *kdest
	lastPass, restarted := false, false
	pos := m.index(m.wcl) // -1 at the head
	for {
		for pos++; pos < len(m.dests); pos++ {
			d := m.dests[pos]
			if !d.overload && d.d.Weight >= m.wcw {
				m.wcl = d
				return d
			}
			if d == stop {
				m.wcl = d
				return nil
			}
		}
		pos = -1
		m.wcw -= m.wdi
		if m.wcw <= 0 {
			m.wcw = m.wmw
			if lastPass || last == nil {
				m.wcl = nil
				return nil
			}
			restarted = true
		}
		lastPass = m.wcw <= m.wdi
		if lastPass && restarted && last != nil {
			stop = last
		}
	}
}

func (m *kmodel) lc() *kdest {
	var least *kdest
	var loh int64
	for _, d := range m.dests {
		if d.overload || d.d.Weight == 0 {
			continue
		}
		doh := m.ohead(d)
		if least == nil || doh < loh {
			least, loh = d, doh
		}
	}
	return least
}

// wlcOf is ip_vs_wlc_schedule / __ip_vs_lblc_schedule over the service list, the two
// stages as the kernel writes them (weight 0 is not skipped in the second).
func (m *kmodel) wlc() *kdest {
	k := 0
	var least *kdest
	for ; k < len(m.dests); k++ {
		if d := m.dests[k]; !d.overload && d.d.Weight > 0 {
			least = d
			break
		}
	}
	if least == nil {
		return nil
	}
	loh := m.ohead(least)
	for _, d := range m.dests[k+1:] {
		if d.overload {
			continue
		}
		doh := m.ohead(d)
		if loh*int64(d.d.Weight) > doh*int64(least.d.Weight) {
			least, loh = d, doh
		}
	}
	return least
}

func (m *kmodel) sedNQ(nq bool) *kdest {
	var least *kdest
	var loh int64
	for _, d := range m.dests {
		if d.overload || d.d.Weight <= 0 {
			continue
		}
		a, _ := m.sim.Conns(d.d.ID)
		doh := int64(a) + 1
		if nq && a == 0 {
			return d
		}
		if least == nil || loh*int64(d.d.Weight) > doh*int64(least.d.Weight) {
			least, loh = d, doh
		}
	}
	return least
}

func (m *kmodel) fo() *kdest {
	var h *kdest
	hw := int32(0)
	for _, d := range m.dests {
		if !d.overload && d.d.Weight > hw {
			h, hw = d, d.d.Weight
		}
	}
	return h
}

func (m *kmodel) ovf() *kdest {
	var h *kdest
	hw := int32(0)
	for _, d := range m.dests {
		w := d.d.Weight
		a, _ := m.sim.Conns(d.d.ID)
		if d.overload || a > w || w == 0 {
			continue
		}
		if h == nil || w > hw {
			h, hw = d, w
		}
	}
	return h
}

func (m *kmodel) twos() *kdest {
	total := int32(0)
	var c1, c2 *kdest
	for _, d := range m.dests {
		if !d.overload && d.d.Weight > 0 {
			total += d.d.Weight
			c1 = d
		}
	}
	if c1 == nil {
		return nil
	}
	total++
	r1 := int32(m.rnd() % uint32(total))
	r2 := int32(m.rnd() % uint32(total))
	w1, w2 := int32(-1), int32(-1)
	var oh1, oh2 int64
	for _, d := range m.dests {
		if d.overload || d.d.Weight <= 0 {
			continue
		}
		r1 -= d.d.Weight
		r2 -= d.d.Weight
		if r1 <= 0 && w1 == -1 {
			c1, w1, oh1 = d, d.d.Weight, m.ohead(d)
		}
		if r2 <= 0 && w2 == -1 {
			c2, w2, oh2 = d, d.d.Weight, m.ohead(d)
		}
		if w1 != -1 && w2 != -1 {
			break
		}
	}
	if c2 != nil && int64(w2)*oh1 > int64(w1)*oh2 {
		c1 = c2
	}
	return c1
}

func unusable(d *kdest) bool { return d.d.Weight <= 0 || d.overload }

// refHash32 is hash_32(val, bits) of include/linux/hash.h (mainline, read in
// intel-lab-lkp/linux at ab26e4a46c43f9f318d24c5c4d602588ab2f2b2c): __hash_32_generic is
// val * GOLDEN_RATIO_32 (0x61C88647) in u32, and hash_32 keeps the top bits of that
// product. Written with a 64-bit product reduced mod 2^32 and a division, not the
// package's shift.
func refHash32(val uint32, bits int) uint32 {
	prod := uint64(val) * 0x61C88647 % (1 << 32)
	return uint32(prod / (1 << (32 - bits)))
}

// shKey is ip_vs_sh_hashkey (net/netfilter/ipvs/ip_vs_sh.c, intel-lab-lkp/linux at
// 80aeb2c77a6c62fa942d8fb1514d54094bfdde15): (offset + hash_32(ntohs(port) +
// ntohl(addr_fold), IP_VS_SH_TAB_BITS)) & IP_VS_SH_TAB_MASK, in unsigned int, with
// IP_VS_SH_TAB_BITS 8.
func shKey(addr [16]byte, port uint16, offset uint32) uint32 {
	return (offset + refHash32(uint32(port)+refFold(addr), 8)) % 256
}

// dhKey is ip_vs_dh_hashkey (ip_vs_dh.c, same tree): hash_32(ntohl(addr_fold),
// IP_VS_DH_TAB_BITS), IP_VS_DH_TAB_BITS 8.
func dhKey(addr [16]byte) uint32 {
	return refHash32(refFold(addr), 8)
}

func refPort(f *Flow) uint16 {
	if f.Proto == 6 || f.Proto == 17 || f.Proto == 132 {
		return f.SrcPort
	}
	return 0
}

func (m *kmodel) sh(f *Flow) *kdest {
	var port uint16
	if m.flags&FlagSHPort != 0 {
		port = refPort(f)
	}
	ihash := shKey(f.Src, port, 0)
	d := m.table[ihash]
	if m.flags&FlagSHFallback == 0 {
		if d == nil || unusable(d) {
			return nil
		}
		return d
	}
	if d == nil {
		return nil
	}
	if !unusable(d) {
		return d
	}
	for off := uint32(0); off < 256; off++ {
		d = m.table[shKey(f.Src, port, (off+ihash)%256)]
		if d == nil {
			break
		}
		if !unusable(d) {
			return d
		}
	}
	return nil
}

func (m *kmodel) dh(f *Flow) *kdest {
	d := m.table[dhKey(f.Dst)]
	if d == nil || !d.available || unusable(d) {
		return nil
	}
	return d
}

func (m *kmodel) mh(f *Flow) *kdest {
	var port uint16
	if m.flags&FlagMHPort != 0 {
		port = refPort(f)
	}
	key := func(off uint32) uint32 {
		return refHsiphash(off+uint32(port)+refFold(f.Src), 2654435761, 2654435761) % refMHSize
	}
	ihash := key(0)
	d := m.mhLookup[ihash]
	if d == nil {
		return nil
	}
	if !unusable(d) {
		return d
	}
	if m.flags&FlagMHFallback == 0 {
		return nil
	}
	for off := uint32(0); off < refMHSize; off++ {
		d = m.mhLookup[key((off+ihash)%refMHSize)]
		if d == nil {
			break
		}
		if !unusable(d) {
			return d
		}
	}
	return nil
}

// busy is is_overloaded of ip_vs_lblc.c / ip_vs_lblcr.c.
func (m *kmodel) busy(d *kdest) bool {
	a, _ := m.sim.Conns(d.d.ID)
	if a > d.d.Weight {
		for _, x := range m.dests {
			if ax, _ := m.sim.Conns(x.d.ID); ax*2 < x.d.Weight {
				return true
			}
		}
	}
	return false
}

const refExpire = int64(24 * 60 * 60 * 1e9)

func (m *kmodel) lblcSchedule(f *Flow) *kdest {
	now := f.Now
	en := m.lblc[f.Dst]
	if en != nil && now-en.lastuse >= refExpire { // collected by the full check
		delete(m.lblc, f.Dst)
		en = nil
	}
	if en != nil {
		en.lastuse = now
		if d := en.dest; d.available && d.d.Weight > 0 && !m.busy(d) {
			return d
		}
	}
	d := m.wlc()
	if d == nil {
		return nil
	}
	if en == nil {
		m.lblc[f.Dst] = &klblc{dest: d, lastuse: now}
	} else {
		en.dest = d
	}
	return d
}

func (m *kmodel) setMin(set []*kdest) *kdest {
	var least *kdest
	var loh int64
	k := 0
	for ; k < len(set); k++ {
		if d := set[k]; !d.overload && d.d.Weight > 0 && d.available {
			least, loh = d, m.ohead(d)
			break
		}
	}
	if least == nil {
		return nil
	}
	for _, d := range set[k+1:] {
		if d.overload {
			continue
		}
		doh := m.ohead(d)
		if loh*int64(d.d.Weight) > doh*int64(least.d.Weight) && d.available {
			least, loh = d, doh
		}
	}
	return least
}

func (m *kmodel) setMax(set []*kdest) *kdest {
	var most *kdest
	var moh int64
	k := 0
	for ; k < len(set); k++ {
		if d := set[k]; d.d.Weight > 0 {
			most, moh = d, m.ohead(d)
			break
		}
	}
	if most == nil {
		return nil
	}
	for _, d := range set[k+1:] {
		doh := m.ohead(d)
		if moh*int64(d.d.Weight) < doh*int64(most.d.Weight) && d.d.Weight > 0 {
			most, moh = d, doh
		}
	}
	return most
}

func (m *kmodel) lblcrSchedule(f *Flow) *kdest {
	now := f.Now
	en := m.lblcr[f.Dst]
	if en != nil && now-en.lastuse >= refExpire {
		delete(m.lblcr, f.Dst)
		en = nil
	}
	if en == nil {
		d := m.wlc()
		if d == nil {
			return nil
		}
		m.lblcr[f.Dst] = &klblcr{set: []*kdest{d}, lastmod: now, lastuse: now}
		return d
	}
	en.lastuse = now
	d := m.setMin(en.set)
	if len(en.set) > 1 && now > en.lastmod+refExpire {
		if x := m.setMax(en.set); x != nil {
			for k, y := range en.set {
				if y == x {
					en.set = append(en.set[:k:k], en.set[k+1:]...)
					en.lastmod = now
					break
				}
			}
		}
	}
	if d != nil && !m.busy(d) {
		return d
	}
	d = m.wlc()
	if d == nil {
		return nil
	}
	for _, y := range en.set {
		if y == d {
			return d
		}
	}
	en.set = append([]*kdest{d}, en.set...)
	en.lastmod = now
	return d
}
