package conntrack

import (
	"math/rand/v2"
	"testing"
)

// model is a slow reference of the table written from IPVS's description:
// maps keyed by Key, a linear scan for the eviction victim, no shards, no
// index. With Shards: 1 its capacity and eviction order are the table's
// exactly; with more shards the test keeps the table large enough never to
// fill a shard.
//
// Its per-destination counts and overload flags follow the kernel's events
// (torvalds/linux mainline as of 2025): ip_vs_bind_dest when a connection is
// made, set_tcp_state's counter move on each change of state, and
// ip_vs_unbind_dest when it goes, each connection carrying its own
// IP_VS_CONN_F_INACTIVE as the kernel's does; thresholds change as
// __ip_vs_update_dest changes them.
type model struct {
	t    testing.TB
	spec kernelSpec
	sctp sctpSpec
	// sctpStates are the SCTP states connections have been in.
	sctpStates map[State]bool
	cap        int
	sloppy     bool // sloppy_tcp
	sloppySCTP bool // sloppy_sctp
	reuse      int
	timeouts   Timeouts
	byOrig     map[Key]*refConn
	byReply    map[Key]*refConn
	seq        int // eviction order: when an entry last entered a non-ESTABLISHED state
	stats      TableStats
	dest       map[uint32]*refDest
	// sync is the sync master's policy (nil: off); insertSync is what the last
	// successful insert decided.
	sync       *SyncPolicy
	insertSync bool
}

type refConn struct {
	e        Entry
	expires  int64 // ms
	seq      int
	inactive bool // IP_VS_CONN_F_INACTIVE
	// The kernel's sync fields of struct ip_vs_conn: in_pkts, old_state and
	// sync_endtime (jiffies, see syncNeeded).
	inPkts   int32
	oldState State
	syncEnd  int64
}

// refDest is the part of struct ip_vs_dest the connections keep.
type refDest struct {
	active, inactive int32
	overload         bool
	upper, lower     uint32
}

func (m *model) destOf(id uint32) *refDest {
	d := m.dest[id]
	if d == nil {
		d = &refDest{}
		m.dest[id] = d
	}
	return d
}

func (d *refDest) total() int64 { return int64(d.active) + int64(d.inactive) }

// bind is ip_vs_bind_dest: the connection takes the destination's
// conn_flags, IP_VS_CONN_F_INACTIVE among them.
func (m *model) bind(c *refConn) { m.bindAs(c, false) }

// bindAs is ip_vs_bind_dest for a connection active or not: a connection a
// sync backup creates keeps the activity the master's message gives it.
func (m *model) bindAs(c *refConn, active bool) {
	d := m.destOf(c.e.Dest)
	c.inactive = !active
	if active {
		d.active++
	} else {
		d.inactive++
	}
	if d.upper != 0 && d.total() >= int64(d.upper) {
		d.overload = true
	}
}

// unbind is ip_vs_unbind_dest.
func (m *model) unbind(c *refConn) {
	d := m.destOf(c.e.Dest)
	if c.inactive {
		d.inactive--
	} else {
		d.active--
	}
	switch {
	case d.lower != 0:
		if d.total() < int64(d.lower) {
			d.overload = false
		}
	case d.upper != 0:
		if d.total()*4 < int64(d.upper)*3 {
			d.overload = false
		}
	default:
		d.overload = false
	}
}

// moveCounts is set_tcp_state's counter move for a TCP connection going to
// state s (UDP's state_transition moves nothing).
func (m *model) moveCounts(c *refConn, s State) {
	p := c.e.Orig.Proto
	if p != ProtoTCP && p != ProtoSCTP || s == c.e.State {
		return
	}
	d := m.destOf(c.e.Dest)
	act := kernelActive(m.t, p, s)
	switch {
	case !c.inactive && !act:
		d.active--
		d.inactive++
		c.inactive = true
	case c.inactive && act:
		d.active++
		d.inactive--
		c.inactive = false
	}
}

// setThresholds is __ip_vs_update_dest's part on the thresholds.
func (m *model) setThresholds(id, upper, lower uint32) {
	d := m.destOf(id)
	if upper == 0 || upper > d.upper {
		d.overload = false
	}
	d.upper, d.lower = upper, lower
}

func newModel(t testing.TB, cfg Config) *model {
	m := &model{
		t:          t,
		spec:       parseKernel(t, kernelTCPStates),
		sctp:       parseKernelSCTP(t),
		sctpStates: make(map[State]bool),
		cap:        cfg.MaxEntries,
		sloppy:     cfg.SloppyTCP,
		sloppySCTP: cfg.SloppySCTP,
		reuse:      cfg.ConnReuseMode,
		byOrig:     make(map[Key]*refConn),
		byReply:    make(map[Key]*refConn),
		dest:       make(map[uint32]*refDest),
	}
	for s := State(0); s < numStates; s++ {
		*m.timeouts.field(s) = kernelTimeout(t, s)
		if v := cfg.Timeouts.Of(s); v > 0 {
			*m.timeouts.field(s) = v
		}
	}
	if m.reuse == ConnReuseDefault {
		m.reuse = 1
	}
	return m
}

func (m *model) dead(c *refConn, now int64) bool { return now/1e6 >= c.expires }

// mayCreate is whether the kernel schedules a packet of protocol proto without a
// connection (flags: TCP's flags, or SCTP's chunk type): tcp_conn_schedule returns
// without scheduling for an RST, and schedules a SYN, or any packet with sloppy_tcp;
// udp_conn_schedule schedules every datagram; sctp_conn_schedule returns without
// scheduling when the first chunk is an ABORT, or is not an INIT without sloppy_sctp
// (ip_vs_proto_tcp.c, ip_vs_proto_udp.c, ip_vs_proto_sctp.c at intel-lab-lkp/linux
// e0cc369553c8344fbedb63fc62b4d37aed1cb5a6). The model takes the chunk it is given as
// the first chunk.
func (m *model) mayCreate(proto, flags uint8) bool {
	switch proto {
	case ProtoTCP:
		if flags&TCPRst != 0 {
			return false
		}
		return flags&TCPSyn != 0 || m.sloppy
	case ProtoUDP:
		return true
	case ProtoSCTP:
		if flags == SCTPAbort || !(m.sloppySCTP || flags == SCTPInit) {
			return false
		}
		return true
	}
	return false
}

func (m *model) remove(c *refConn) {
	m.unbind(c)
	delete(m.byOrig, c.e.Orig)
	if c.e.Method.twoWay() {
		delete(m.byReply, c.e.Reply)
	}
}

func (m *model) setState(c *refConn, s State, now int64) {
	m.setStateFor(c, s, now, m.timeouts.Of(s))
}

// setStateFor moves c to state s with a timer of secs seconds.
func (m *model) setStateFor(c *refConn, s State, now int64, secs int) {
	m.moveCounts(c, s)
	if modelEst(c.e.State) && !modelEst(s) || !modelEst(c.e.State) && !modelEst(s) && c.seq == 0 {
		m.seq++
		c.seq = m.seq
	}
	if s.IsSCTP() {
		m.sctpStates[s] = true
	}
	c.e.State = s
	c.expires = now/1e6 + int64(secs)*1000
}

func (m *model) insert(e Entry, flags uint8, now int64) error {
	if !m.mayCreate(e.Orig.Proto, flags) {
		return ErrNotOpener
	}
	e.Sync = false
	if c := m.byOrig[e.Orig]; c != nil {
		if !m.dead(c, now) {
			m.stats.Exists++
			return ErrExists
		}
		m.remove(c)
		m.stats.Expired++
	}
	if e.Method.twoWay() {
		if c := m.byReply[e.Reply]; c != nil {
			if !m.dead(c, now) {
				m.stats.Exists++
				return ErrExists
			}
			m.remove(c)
			m.stats.Expired++
		}
	}
	if err := m.makeRoom(now); err != nil {
		return err
	}
	c := &refConn{e: e}
	s := StateUDP
	switch e.Orig.Proto {
	case ProtoTCP:
		s = m.spec.next(m.t, e.Method, DirOrig, flags, StateNone)
	case ProtoSCTP:
		s = m.sctp.nextState(m.t, e.Method, DirOrig, flags, StateNone)
	}
	c.e.State = StateNone
	m.bind(c)
	m.setState(c, s, now)
	if modelEst(s) {
		c.seq = 0
	}
	m.byOrig[e.Orig] = c
	if e.Method.twoWay() {
		m.byReply[e.Reply] = c
	}
	m.stats.Inserts++
	// ip_vs_conn_new's sync fields, then ip_vs_in_hook's count and question for
	// the first packet (only on a master: the table counts nothing while sync
	// is off).
	m.insertSync = false
	if m.sync != nil {
		c.syncEnd = m.jiffies(now) &^ 3
		c.inPkts = 1
		m.insertSync = m.syncNeeded(c, now)
	}
	return nil
}

// makeRoom evicts the oldest non-ESTABLISHED connection when the model is
// full.
func (m *model) makeRoom(now int64) error {
	if len(m.byOrig) == m.cap {
		var victim *refConn
		for _, c := range m.byOrig {
			if !modelEst(c.e.State) && (victim == nil || c.seq < victim.seq) {
				victim = c
			}
		}
		if victim == nil {
			m.stats.Full++
			return ErrFull
		}
		if m.dead(victim, now) {
			m.stats.Expired++
		} else {
			m.stats.Evicted++
		}
		m.remove(victim)
	}
	return nil
}

func (m *model) lookup(dir Dir, k Key, flags uint8, now int64) (Status, Entry) {
	c := m.byOrig[k]
	if dir == DirReply {
		c = m.byReply[k]
	}
	if c != nil && m.dead(c, now) {
		m.remove(c)
		m.stats.Expired++
		c = nil
	}
	if c == nil {
		if dir == DirOrig && !m.mayCreate(k.Proto, flags) {
			return Invalid, Entry{}
		}
		return NotFound, Entry{}
	}
	if dir == DirOrig && k.Proto == ProtoTCP && flags&TCPSyn != 0 && m.reuse > 0 {
		s := c.e.State
		if s == StateTimeWait || s == StateClose || m.reuse&2 != 0 && s == StateFinWait && !c.e.Method.twoWay() {
			m.remove(c)
			m.stats.Reused++
			return Reused, c.e
		}
	}
	if dir == DirOrig && k.Proto == ProtoSCTP && flags == SCTPInit && m.reuse > 0 && kernelSCTPNewConnExpected(c.e.State) {
		m.remove(c)
		m.stats.Reused++
		return Reused, c.e
	}
	next := StateUDP
	switch k.Proto {
	case ProtoTCP:
		next = m.spec.next(m.t, c.e.Method, dir, flags, c.e.State)
	case ProtoSCTP:
		next = m.sctp.nextState(m.t, c.e.Method, dir, flags, c.e.State)
	}
	if modelEst(next) {
		c.seq = 0
	}
	prior := c.e.State
	m.setState(c, next, now)
	out := c.e
	out.Prior = prior // the state the packet found
	if dir == DirOrig && m.sync != nil {
		c.inPkts++
		out.Sync = m.syncNeeded(c, now)
	}
	return Found, out
}

func (m *model) reapAll(now int64) int {
	n := 0
	for _, c := range m.byOrig {
		if m.dead(c, now) {
			m.remove(c)
			n++
		}
	}
	m.stats.Expired += uint64(n)
	return n
}

func (m *model) removeDest(d uint32, now int64) int {
	n := 0
	for _, c := range m.byOrig {
		switch {
		case c.e.Dest == d:
			m.remove(c)
			n++
		case m.dead(c, now):
			m.remove(c)
			m.stats.Expired++
		}
	}
	m.stats.Removed += uint64(n)
	return n
}

func (m *model) setTimeouts(to Timeouts) {
	for s := State(0); s < numStates; s++ {
		if v := to.Of(s); v > 0 {
			*m.timeouts.field(s) = min(v, MaxTimeout)
		}
	}
}

// compare checks the table's observable state against the model.
func (m *model) compare(tb *Table, now int64, dests uint32, walk bool) {
	t := m.t
	t.Helper()
	if tb.Len() != len(m.byOrig) {
		t.Fatalf("Len %d, model holds %d", tb.Len(), len(m.byOrig))
	}
	act := make(map[uint32]int32)
	inact := make(map[uint32]int32)
	for _, c := range m.byOrig {
		if kernelActive(t, c.e.Orig.Proto, c.e.State) {
			act[c.e.Dest]++
		} else {
			inact[c.e.Dest]++
		}
	}
	for d := range dests {
		md := m.destOf(d)
		if md.active != act[d] || md.inactive != inact[d] {
			t.Fatalf("model's counts of %d are %d/%d, its entries' states say %d/%d", d, md.active, md.inactive, act[d], inact[d])
		}
		if a, i := tb.Conns(d); a != act[d] || i != inact[d] {
			t.Fatalf("Conns(%d) = %d/%d, model says %d/%d", d, a, i, act[d], inact[d])
		}
		if got := tb.Overloaded(d); got != md.overload {
			t.Fatalf("Overloaded(%d) = %v, model says %v (counts %d/%d, -x %d -y %d)", d, got, md.overload, act[d], inact[d], md.upper, md.lower)
		}
	}
	st := tb.Stats()
	m.stats.Entries, m.stats.Capacity = len(m.byOrig), m.cap
	if st != m.stats {
		t.Fatalf("Stats %+v, model says %+v", st, m.stats)
	}
	if !walk {
		return
	}
	live := 0
	for _, c := range m.byOrig {
		if !m.dead(c, now) {
			live++
		}
	}
	seen := 0
	tb.Walk(now, func(e *Entry, left int64) bool {
		seen++
		c := m.byOrig[e.Orig]
		if c == nil || m.dead(c, now) {
			t.Fatalf("Walk reported %+v, which the model does not hold live", *e)
		}
		if *e != c.e {
			t.Fatalf("Walk reported %+v, model holds %+v", *e, c.e)
		}
		if want := (c.expires - now/1e6) * 1e6; left != want {
			t.Fatalf("Walk: %v expires in %d, model says %d", e.Orig, left, want)
		}
		return true
	})
	if seen != live {
		t.Fatalf("Walk reported %d entries, model holds %d live", seen, live)
	}
}

// driver runs random operations on a table and the model side by side.
// next(n) returns a choice in [0, n); ok() reports whether input remains.
type driver struct {
	tb    *Table
	m     *model
	now   int64
	pool  int
	dests uint32
	next  func(n int) int
	// opener is the flags most inserts carry (TCPSyn; TCPAck with sloppy
	// TCP fills the table with ESTABLISHED entries).
	opener uint8
	// policies, when set, adds sync operations: Apply, and SetSync with one
	// of them or nil.
	policies []*SyncPolicy
	// sctp adds SCTP connections (a third of them), with chunk types for flags;
	// sctpSeen counts the SCTP operations.
	sctp     bool
	sctpSeen int
}

// modelEst: an entry in a protocol's ESTABLISHED state is off xlvs's eviction list.
func modelEst(s State) bool { return s == StateEstablished || s == StateSCTPEstablished }

// newRand is a seeded generator for the drivers.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5c7b)) }

var (
	driverFlags = []uint8{TCPSyn, TCPSyn | TCPAck, TCPAck, TCPPsh | TCPAck, TCPFin | TCPAck, TCPRst, TCPRst | TCPAck, TCPSyn | TCPRst, 0}
	driverSteps = []int64{0, 1e6, sec, sec, 2 * sec, 5 * sec, 10 * sec, 31 * sec, 61 * sec, 121 * sec, 301 * sec, 901 * sec}
)

// thresholds edits a destination's -x and -y: small values, so that the
// flag moves often.
func (d *driver) thresholds() {
	dest := uint32(d.next(int(d.dests)))
	u := uint32(d.next(7))
	l := uint32(0)
	if u > 0 && d.next(2) == 0 {
		l = uint32(d.next(int(u) + 1))
	}
	d.tb.SetThresholds(dest, u, l)
	d.m.setThresholds(dest, u, l)
}

func (d *driver) entry() Entry {
	i := d.next(d.pool)
	proto := ProtoTCP
	if d.next(4) == 0 {
		proto = ProtoUDP
	} else if d.sctp && d.next(2) == 0 {
		proto = ProtoSCTP
		d.sctpSeen++
	}
	return conn(i, proto, Method(d.next(int(numMethods))), uint32(d.next(int(d.dests))))
}

func (d *driver) flags(proto uint8) uint8 {
	if proto == ProtoSCTP {
		if d.next(4) == 0 {
			return SCTPInit
		}
		return sctpChunks[d.next(len(sctpChunks))]
	}
	if d.next(4) != 0 {
		return d.opener
	}
	return driverFlags[d.next(len(driverFlags))]
}

// query picks a lookup: a direction, a key of that direction (of a
// connection of the pool, present or not) and flags.
func (d *driver) query() (Dir, Key, uint8) {
	e := d.entry()
	dir := Dir(d.next(2))
	k := e.Orig
	if dir == DirReply {
		k = e.Reply
		if !e.Method.twoWay() {
			k = conn(d.next(d.pool), e.Orig.Proto, MethodNAT, 0).Reply
		}
	}
	if k.Proto == ProtoSCTP {
		return dir, k, sctpChunks[d.next(len(sctpChunks))]
	}
	return dir, k, driverFlags[d.next(len(driverFlags))]
}

func (d *driver) step() {
	t := d.m.t
	t.Helper()
	if len(d.policies) > 0 && d.next(16) == 0 {
		d.syncStep()
		d.m.compare(d.tb, d.now, d.dests, false)
		return
	}
	switch op := d.next(256); {
	case op < 80:
		e := d.entry()
		fl := d.flags(e.Orig.Proto)
		ewant := e
		errT := d.tb.Insert(&e, fl, d.now)
		errM := d.m.insert(ewant, fl, d.now)
		if errT != errM {
			t.Fatalf("Insert(%+v, %s): table %v, model %v", ewant.Orig, flagString(fl), errT, errM)
		}
		if errT == nil && e.State != d.m.byOrig[e.Orig].e.State {
			t.Fatalf("Insert state %v, model %v", e.State, d.m.byOrig[e.Orig].e.State)
		}
		if errT == nil && e.Sync != d.m.insertSync {
			t.Fatalf("Insert(%+v, %s) Sync %v, model %v", ewant.Orig, flagString(fl), e.Sync, d.m.insertSync)
		}
	case op < 180:
		dir, k, fl := d.query()
		var out Entry
		st := d.tb.Lookup(dir, &k, fl, d.now, &out)
		wst, wout := d.m.lookup(dir, k, fl, d.now)
		if st != wst {
			t.Fatalf("Lookup(%v, %+v, %s): table %v, model %v", dir, k, flagString(fl), st, wst)
		}
		if (st == Found || st == Reused) && out != wout {
			t.Fatalf("Lookup(%v, %s) copied out %+v, model %+v", dir, flagString(fl), out, wout)
		}
	case op < 200:
		// A batch of up to 8 queries, repeats likely with a small pool:
		// LookupBatch must give what the model's lookups in turn give.
		qs := make([]Query, 1+d.next(8))
		for j := range qs {
			q := &qs[j]
			q.Dir, q.Key, q.TCPFlags = d.query()
			if d.next(16) == 0 {
				q.Dir = Dir(2 + d.next(3)) // invalid
			}
		}
		d.tb.LookupBatch(qs, d.now)
		for j := range qs {
			q := &qs[j]
			wst, wout := Invalid, Entry{}
			if q.Dir <= DirReply {
				wst, wout = d.m.lookup(q.Dir, q.Key, q.TCPFlags, d.now)
			}
			if q.Status != wst {
				t.Fatalf("LookupBatch query %d of %d (%v, %+v, %s): table %v, model %v", j, len(qs), q.Dir, q.Key, flagString(q.TCPFlags), q.Status, wst)
			}
			if (wst == Found || wst == Reused) && q.Entry != wout {
				t.Fatalf("LookupBatch query %d of %d copied out %+v, model %+v", j, len(qs), q.Entry, wout)
			}
		}
	case op < 230:
		if d.next(4) != 0 {
			d.now += driverSteps[d.next(6)]
		} else {
			d.now += driverSteps[d.next(len(driverSteps))]
		}
	case op < 250:
		if n, w := d.tb.Reap(d.now, d.tb.Cap()), d.m.reapAll(d.now); n != w {
			t.Fatalf("Reap expired %d, model %d", n, w)
		}
	case op < 252:
		dest := uint32(d.next(int(d.dests)))
		if n, w := d.tb.RemoveDest(dest, d.now), d.m.removeDest(dest, d.now); n != w {
			t.Fatalf("RemoveDest(%d) removed %d, model %d", dest, n, w)
		}
	case op < 254:
		d.thresholds()
	default:
		to := Timeouts{}
		*to.field(State(d.next(int(numStates)))) = d.next(400)
		d.tb.SetTimeouts(to)
		d.m.setTimeouts(to)
	}
	d.m.compare(d.tb, d.now, d.dests, false)
}

// TestTableMatchesModel runs long random operation sequences against the
// table and the reference and compares states, counts, stats and contents.
func TestTableMatchesModel(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		pool   int
		steps  int
		opener uint8
		// distMax, if not 0, overrides the slots' saturation distance so
		// that backward shifts take the record-reading path.
		distMax uint32
	}{
		{"one shard, evicting", Config{MaxEntries: 48, Shards: 1, MaxDests: 5}, 120, 40000, TCPSyn, 0},
		{"one shard, reuse mode 2", Config{MaxEntries: 48, Shards: 1, MaxDests: 5, ConnReuseMode: ConnReuseFinWait}, 120, 40000, TCPSyn, 0},
		{"one shard, reuse off, sloppy, full", Config{MaxEntries: 48, Shards: 1, MaxDests: 5, ConnReuseMode: ConnReuseOff, SloppyTCP: true}, 120, 40000, TCPAck, 0},
		{"eight shards, never full", Config{MaxEntries: 8 * 2 * 300, Shards: 8, MaxDests: 7}, 300, 40000, TCPSyn, 0},
		{"one shard, distances saturate at 1", Config{MaxEntries: 48, Shards: 1, MaxDests: 5}, 120, 20000, TCPSyn, 1},
		{"one shard, no distances", Config{MaxEntries: 48, Shards: 1, MaxDests: 5}, 120, 20000, TCPSyn, noIdx},
	}
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ti), 0x5eed))
			d := &driver{
				tb:     mustNew(t, tc.cfg),
				m:      newModel(t, tc.cfg),
				pool:   tc.pool,
				dests:  uint32(tc.cfg.MaxDests),
				next:   rng.IntN,
				opener: tc.opener,
			}
			d.tb.hint = hintsWork // the tables are small: prefetch anyway
			for range 2 * d.dests {
				d.thresholds()
			}
			switch tc.distMax {
			case 0:
			case noIdx:
				d.tb.distMax = 0
			default:
				d.tb.distMax = tc.distMax
			}
			for i := range tc.steps {
				d.step()
				if i%2000 == 0 {
					d.m.compare(d.tb, d.now, d.dests, true)
					checkInvariants(t, d.tb)
				}
			}
			d.m.compare(d.tb, d.now, d.dests, true)
			checkInvariants(t, d.tb)
		})
	}
}

// FuzzTable drives the table and the model with operations decoded from
// the input and checks that they agree and that the table's invariants hold.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 5, 1, 1, 1, 2, 12, 8, 13})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30})
	f.Add([]byte("insert lookup reap evict walk remove timeouts again and again"))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Config{MaxEntries: 6, Shards: 1, MaxDests: 3}
		if len(data) > 0 {
			cfg.SloppyTCP = data[0]&1 != 0
			cfg.ConnReuseMode = []int{ConnReuseDefault, ConnReuseOff, ConnReuseFinWait, 3}[data[0]>>1&3]
			data = data[1:]
		}
		pos := 0
		d := &driver{
			tb:     mustNew(t, cfg),
			m:      newModel(t, cfg),
			pool:   10,
			dests:  3,
			opener: TCPSyn,
			next: func(n int) int {
				if pos >= len(data) {
					return 0
				}
				pos++
				return int(data[pos-1]) % n
			},
		}
		d.tb.hint = hintsWork
		for pos < len(data) {
			d.step()
			checkInvariants(t, d.tb)
		}
		d.m.compare(d.tb, d.now, d.dests, true)
	})
}
