package conntrack

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// The model's connection sync, written from the kernel's source: IPVS's
// ip_vs_sync_conn_needed and ip_vs_proc_conn in net/netfilter/ipvs/ip_vs_sync.c of
// codesnas/linux-6.18.y at 33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e; the caller,
// ip_vs_in_hook, and ip_vs_conn_new in ip_vs_core.c and ip_vs_conn.c of Kingxukai/linux
// at 9b44fff655e2c6f4cc53cb499dd2c038e99cb013. Its jiffies run at modelHZ, the rate of
// the table's sync clock; the model keeps them in int64, without the table's wrapping.

const modelHZ = 125

func (m *model) jiffies(now int64) int64 { return now / int64(time.Second/modelHZ) }

// syncRetried counts the times syncNeeded took a refresh retry (n |= retries+1), so that
// tests can tell the path was exercised.
var syncRetried atomic.Int64

// syncNeeded is ip_vs_sync_conn_needed for a connection that is not a template, asked
// after its packet's state transition with its incremented in_pkts; cp->timeout is its
// state's timeout, as set_tcp_state and udp_state_transition leave it.
func (m *model) syncNeeded(c *refConn, now int64) bool {
	p := m.sync
	orig := c.syncEnd
	jiffies := m.jiffies(now)
	timeout := int64(m.timeouts.Of(c.e.State)) * modelHZ
	n := (jiffies + timeout) &^ 3
	refresh := int64(p.RefreshPeriod / (time.Second / modelHZ)) // sysctl_sync_refresh_period, jiffies
	force := false
	if c.e.Orig.Proto == ProtoTCP {
		switch c.e.State {
		case StateEstablished, StateFinWait, StateClose, StateCloseWait, StateTimeWait:
		default:
			return false
		}
		force = c.e.State != c.oldState
		if force && c.e.State != StateEstablished {
			goto set
		}
	}
	if c.e.Orig.Proto == ProtoSCTP {
		if !kernelSCTPSynced(c.e.State) {
			return false
		}
		force = c.e.State != c.oldState
		if force && sctpKernelName[c.e.State] != "sES" {
			goto set
		}
	}
	if refresh > 0 {
		diff := n - orig
		if diff < 0 {
			diff = -diff
		}
		if diff < min(refresh, max(timeout>>1, 10*modelHZ)) {
			retries := orig & 3
			if retries >= int64(p.Retries) {
				return false
			}
			if jiffies-(orig-timeout+refresh>>3) < 0 { // time_before
				return false
			}
			n |= retries + 1
			syncRetried.Add(1)
		}
	}
	if p.Period > 0 {
		if int(c.inPkts)%p.Period != p.Threshold {
			return false
		}
	} else if refresh == 0 && int(c.inPkts) != p.Threshold {
		return false
	}
set:
	c.oldState = c.e.State
	c.syncEnd = n
	return true
}

func (m *model) setSync(p *SyncPolicy) {
	m.sync = nil
	if p != nil {
		cp := *p
		m.sync = &cp
	}
}

// apply is ip_vs_proc_conn for a connection that is not a template, preceded by the
// message handlers' state check (state < pp->num_states). Entry validation that Insert
// shares is the table tests' business; the driver gives valid entries.
func (m *model) apply(e Entry, timeout uint32, now int64) (bool, error) {
	switch p := e.Orig.Proto; {
	case p != ProtoTCP && p != ProtoUDP && p != ProtoSCTP:
		return false, ErrProto
	case p == ProtoTCP && (e.State == StateUDP || e.State > StateUDP), p == ProtoUDP && e.State != StateUDP:
		return false, ErrState
	case p == ProtoSCTP:
		if _, ok := sctpKernelName[e.State]; !ok {
			return false, ErrState
		}
	}
	e.Sync = false
	if !e.Method.twoWay() {
		e.Reply = Key{}
	}
	secs := m.timeouts.Of(e.State)
	if timeout != 0 {
		secs = min(int(timeout), MaxTimeout)
	}
	thr := int32(3) // sync_threshold's default
	if m.sync != nil {
		thr = int32(m.sync.Threshold)
	}
	if c := m.byOrig[e.Orig]; c != nil {
		switch {
		case m.dead(c, now):
			m.remove(c)
			m.stats.Expired++
		case c.e.Dest != e.Dest && !kernelActive(m.t, e.Orig.Proto, e.State):
			// IP_VS_CONN_F_INACTIVE: the expiry of a connection already replaced.
			return false, nil
		case c.e.Dest != e.Dest:
			m.remove(c) // ip_vs_conn_expire_now, then a new one
			m.stats.Expired++
		default:
			if modelEst(e.State) {
				c.seq = 0
			}
			m.setStateFor(c, e.State, now, secs)
			c.inPkts, c.oldState = thr, e.State
			m.stats.Applied++
			return false, nil
		}
	}
	if e.Method.twoWay() {
		if r := m.byReply[e.Reply]; r != nil {
			switch {
			case m.dead(r, now):
				m.remove(r)
				m.stats.Expired++
			case r.e.Orig.Proto == ProtoTCP && (r.e.State == StateTimeWait || r.e.State == StateClose):
				m.remove(r)
				m.stats.Reused++
			default:
				m.stats.Exists++
				return false, ErrExists
			}
		}
	}
	if err := m.makeRoom(now); err != nil {
		return false, err
	}
	c := &refConn{e: e}
	m.bindAs(c, kernelActive(m.t, e.Orig.Proto, e.State))
	c.expires = now/1e6 + int64(secs)*1000
	if e.State.IsSCTP() {
		m.sctpStates[e.State] = true
	}
	if !modelEst(e.State) {
		m.seq++
		c.seq = m.seq
	}
	m.byOrig[e.Orig] = c
	if e.Method.twoWay() {
		m.byReply[e.Reply] = c
	}
	c.syncEnd = m.jiffies(now) &^ 3
	c.inPkts, c.oldState = thr, e.State
	m.stats.Applied++
	return true, nil
}

// syncStep is one sync operation of the driver: SetSync now and then, else an Apply of
// a connection of the pool in a random state (sometimes one the protocol lacks) with a
// random timeout.
func (d *driver) syncStep() {
	t := d.m.t
	t.Helper()
	if d.next(8) == 0 {
		p := d.policies[d.next(len(d.policies))]
		d.tb.SetSync(p)
		d.m.setSync(p)
		return
	}
	e := d.entry()
	switch e.Orig.Proto {
	case ProtoTCP:
		e.State = State(d.next(int(StateSynAck) + 1))
	case ProtoSCTP:
		e.State, _ = SCTPState(uint16(d.next(NumSCTPStates + 1)))
	default:
		e.State = StateUDP
	}
	if d.next(16) == 0 {
		e.State = State(d.next(int(numStates) + 2))
	}
	timeout := []uint32{0, 0, 0, 1, 5, 30, 400, MaxTimeout + 1}[d.next(8)]
	want := e
	created, err := d.tb.Apply(&e, timeout, d.now)
	if e != want {
		t.Fatalf("Apply changed its entry: %+v, was %+v", e, want)
	}
	wc, werr := d.m.apply(want, timeout, d.now)
	if created != wc || err != werr {
		t.Fatalf("Apply(%+v, %v, dest %d, timeout %d): table %v %v, model %v %v", want.Orig, want.State, want.Dest, timeout, created, err, wc, werr)
	}
	if err == nil && d.m.byOrig[want.Orig] != nil {
		var out Entry
		if !d.tb.Get(DirOrig, &want.Orig, d.now, &out) || out != d.m.byOrig[want.Orig].e {
			t.Fatalf("after Apply the table holds %+v, model %+v", out, d.m.byOrig[want.Orig].e)
		}
	}
}

// syncPolicies are the policies the sync tests run: the default, sync once
// (Period 0), every packet, and refresh periods with each number of retries.
var syncPolicies = []*SyncPolicy{
	{Threshold: 3, Period: 50},
	{Threshold: 3, Period: 0},
	{Threshold: 1, Period: 0},
	{Threshold: 0, Period: 1},
	{Threshold: 2, Period: 5},
	{Threshold: 3, Period: 0, RefreshPeriod: 20 * time.Second, Retries: 0},
	{Threshold: 3, Period: 0, RefreshPeriod: 20 * time.Second, Retries: 1},
	{Threshold: 3, Period: 0, RefreshPeriod: 60 * time.Second, Retries: 2},
	{Threshold: 3, Period: 0, RefreshPeriod: 9 * time.Second, Retries: 3},
	{Threshold: 3, Period: 50, RefreshPeriod: 30 * time.Second, Retries: 3},
	{Threshold: 0, Period: 2, RefreshPeriod: 400 * time.Second, Retries: 2},
}

// TestSyncFlows drives a few connections with long random packet sequences (TCP flags
// with SYN, ACK, FIN and RST; both directions for NAT, client packets only for DR and
// TUN; UDP) on a fake clock, under each policy, and compares every Sync decision (and
// status and entry) with the model packet by packet.
func TestSyncFlows(t *testing.T) {
	flowFlags := []uint8{TCPAck, TCPAck, TCPAck, TCPAck | TCPPsh, TCPAck, TCPSyn, TCPSyn | TCPAck, TCPFin | TCPAck, TCPFin, TCPRst, TCPRst | TCPAck, 0}
	forSyncPolicies(t, syncPolicies, 0, func(t *testing.T, tb *Table, m *model, rng *rand.Rand, proto uint8, p *SyncPolicy) {
		now := int64(1000 * sec)
		before := syncRetried.Load()
		syncs := 0
		conns := make([]Entry, 6)
		for i := range conns {
			conns[i] = conn(i, proto, []Method{MethodNAT, MethodDR, MethodTUN, MethodNAT, MethodFullNAT, MethodNAT}[i], uint32(i%3))
			if conns[i].Method == MethodFullNAT {
				conns[i].Method = MethodNAT // FULLNAT's shard contract is another test's
			}
		}
		for range 6000 {
			now += syncSteps[rng.IntN(len(syncSteps))]
			e := conns[rng.IntN(len(conns))]
			fl := flowFlags[rng.IntN(len(flowFlags))]
			dir := DirOrig
			if e.Method.twoWay() && rng.IntN(3) == 0 {
				dir = DirReply
			}
			k := e.Orig
			if dir == DirReply {
				k = e.Reply
			}
			var out Entry
			st := tb.Lookup(dir, &k, fl, now, &out)
			wst, wout := m.lookup(dir, k, fl, now)
			if st != wst || (st == Found || st == Reused) && out != wout {
				t.Fatalf("%v %s at %d: table %v %+v, model %v %+v", dir, flagString(fl), now, st, out, wst, wout)
			}
			if out.Sync {
				syncs++
			}
			if st != Found && dir == DirOrig {
				fl = fl&^TCPRst | TCPSyn
				ein := e
				errT, errM := tb.Insert(&ein, fl, now), m.insert(e, fl, now)
				if errT != errM || errT == nil && ein.Sync != m.insertSync {
					t.Fatalf("Insert %s at %d: table %v sync %v, model %v sync %v", flagString(fl), now, errT, ein.Sync, errM, m.insertSync)
				}
				if ein.Sync {
					syncs++
				}
			}
			m.compare(tb, now, 3, false)
		}
		m.compare(tb, now, 3, true)
		checkInvariants(t, tb)
		if syncs == 0 {
			t.Fatal("no packet was synced: the sequence tests nothing")
		}
		if p.RefreshPeriod > 0 && p.Retries > 0 && syncRetried.Load() == before {
			t.Fatal("no refresh retry was taken: the sequence misses the retries path")
		}
	})
}

// syncSteps are the clock steps the sync tests take between packets.
var syncSteps = []int64{0, 0, 1e6, 8e6, 10e6, 100e6, sec, 3 * sec, 8 * sec, 30 * sec, 130 * sec}

// forSyncPolicies runs f in a subtest per policy and protocol (TCP, UDP), with a fresh
// one-shard table of 64 entries and a model, both set to the policy, and a random source
// seeded by the policy's index, the protocol and salt.
func forSyncPolicies(t *testing.T, policies []*SyncPolicy, salt uint64, f func(t *testing.T, tb *Table, m *model, rng *rand.Rand, proto uint8, p *SyncPolicy)) {
	for pi, p := range policies {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			name := "policy " + string(rune('A'+pi))
			if proto == ProtoUDP {
				name += " udp"
			}
			t.Run(name, func(t *testing.T) {
				cfg := Config{MaxEntries: 64, Shards: 1, MaxDests: 3}
				tb, m := mustNew(t, cfg), newModel(t, cfg)
				tb.SetSync(p)
				m.setSync(p)
				f(t, tb, m, rand.New(rand.NewPCG(uint64(pi), uint64(proto)+salt)), proto, p)
			})
		}
	}
}

// TestSyncMatchesModel runs the model driver with sync operations mixed in: SetSync
// switching between policies and off, Apply of random connections and states, over
// inserts, lookups of both directions, evictions, reaps and timeout changes.
func TestSyncMatchesModel(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		pool   int
		opener uint8
	}{
		{"one shard, evicting", Config{MaxEntries: 48, Shards: 1, MaxDests: 5}, 120, TCPSyn},
		{"one shard, sloppy, full", Config{MaxEntries: 48, Shards: 1, MaxDests: 5, SloppyTCP: true, ConnReuseMode: ConnReuseOff}, 120, TCPAck},
		{"small pool, many packets each", Config{MaxEntries: 64, Shards: 1, MaxDests: 3}, 12, TCPSyn},
		{"eight shards", Config{MaxEntries: 8 * 2 * 300, Shards: 8, MaxDests: 7}, 300, TCPSyn},
	}
	policies := append([]*SyncPolicy{nil}, syncPolicies...)
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ti), 0x5c))
			d := &driver{
				tb:       mustNew(t, tc.cfg),
				m:        newModel(t, tc.cfg),
				pool:     tc.pool,
				dests:    uint32(tc.cfg.MaxDests),
				next:     rng.IntN,
				opener:   tc.opener,
				policies: policies,
			}
			d.tb.hint = hintsWork
			p := DefaultSyncPolicy()
			d.tb.SetSync(&p)
			d.m.setSync(&p)
			for i := range 40000 {
				d.step()
				if i%2000 == 0 {
					d.m.compare(d.tb, d.now, d.dests, true)
					checkInvariants(t, d.tb)
				}
			}
			d.m.compare(d.tb, d.now, d.dests, true)
			checkInvariants(t, d.tb)
			if d.m.stats.Applied == 0 {
				t.Fatal("no Apply succeeded")
			}
		})
	}
}

// TestSyncOff: with sync off (the default, and after SetSync(nil)) nothing is counted,
// Sync stays false, and a shard that never had sync on never writes its slots.
func TestSyncOff(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 16, Shards: 1}) // one page: a freed record is the next taken
	every := SyncPolicy{Threshold: 0, Period: 1}
	e := mustInsert(t, tb, conn(1, ProtoUDP, MethodNAT, 0), 0, 0)
	if e.Sync {
		t.Fatal("Insert with sync off: Sync true")
	}
	var out Entry
	for i := range 100 {
		out.Sync = true // ignored on input
		if st := tb.Lookup(DirOrig, &e.Orig, 0, int64(i)*sec, &out); st != Found || out.Sync {
			t.Fatalf("lookup %d with sync off: %v Sync %v", i, st, out.Sync)
		}
	}
	sh := &tb.shards[0].shard
	ref := tb.find(sh, tb.origHash(&e.Orig), DirOrig, &e.Orig) // the connection's record
	if sh.syncUsed || *sh.slot(ref) != (syncSlot{}) {
		t.Fatalf("sync off touched the slots: used %v, slot %+v", sh.syncUsed, *sh.slot(ref))
	}
	tb.SetSync(&every)
	if st := tb.Lookup(DirOrig, &e.Orig, 0, 100*sec, &out); st != Found || !out.Sync {
		t.Fatalf("with Period 1 every packet syncs: %v Sync %v", st, out.Sync)
	}
	if st := tb.Lookup(DirReply, &e.Reply, 0, 100*sec, &out); st != Found || out.Sync {
		t.Fatalf("a reply never syncs: %v Sync %v", st, out.Sync)
	}
	if sh.slot(ref).pkts != 1 {
		t.Fatalf("count %d after one client packet with sync on (the reply does not count)", sh.slot(ref).pkts)
	}
	tb.SetSync(nil)
	if st := tb.Lookup(DirOrig, &e.Orig, 0, 101*sec, &out); st != Found || out.Sync || sh.slot(ref).pkts != 1 {
		t.Fatalf("after SetSync(nil): %v Sync %v count %d", st, out.Sync, sh.slot(ref).pkts)
	}
	// The slot of a connection inserted with sync off, in a shard whose slots were
	// used, is reset: a new connection does not inherit its record's old count.
	if !tb.Get(DirOrig, &e.Orig, 101*sec, &out) {
		t.Fatal("entry gone")
	}
	tb.Reap(1e6*sec, tb.Cap())
	e2 := mustInsert(t, tb, conn(2, ProtoUDP, MethodNAT, 0), 0, 1e6*sec)
	if ref2 := tb.find(sh, tb.origHash(&e2.Orig), DirOrig, &e2.Orig); ref2 != ref {
		t.Fatalf("the new connection took record %d, not the freed %d", ref2, ref)
	}
	if *sh.slot(ref) != (syncSlot{}) {
		t.Fatalf("record %d reused with sync off keeps slot %+v", ref, *sh.slot(ref))
	}
	tb.SetSync(&every)
	if st := tb.Lookup(DirOrig, &e2.Orig, 0, 1e6*sec, &out); st != Found || !out.Sync || sh.slot(ref).pkts != 1 {
		t.Fatalf("new connection after sync on again: %v Sync %v count %d", st, out.Sync, sh.slot(ref).pkts)
	}
}

// TestSyncPolicyValidate: what the kernel's sysctls refuse is refused with a message
// naming the value; SetSync takes anything and clamps what it must.
func TestSyncPolicyValidate(t *testing.T) {
	if err := DefaultSyncPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	good := []SyncPolicy{{Threshold: 3, Period: 0}, {Threshold: 0, Period: 1}, {Threshold: 49, Period: 50, RefreshPeriod: time.Minute, Retries: 3}}
	for _, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := []SyncPolicy{{Threshold: -1}, {Period: -1}, {Threshold: 50, Period: 50}, {Threshold: 3, Period: 50, Retries: 4}, {Retries: -1}, {RefreshPeriod: -time.Second}, {RefreshPeriod: (MaxTimeout + 1) * time.Second}}
	for _, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	c := (&SyncPolicy{Threshold: 3, Period: 50, Retries: 9, RefreshPeriod: 1 << 62}).compile()
	if c.retries != 3 || c.refresh != MaxTimeout*syncHZ {
		t.Fatalf("compiled %+v: want retries 3, refresh %d ticks", *c, MaxTimeout*syncHZ)
	}
}

// TestApply: a sync backup's connections, created and updated, with the expectations
// written from ip_vs_proc_conn and ip_vs_bind_dest.
func TestApply(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, MaxDests: 4})
		tb.SetThresholds(1, 2, 0)
		e := conn(1, ProtoTCP, MethodNAT, 1)
		e.State = StateEstablished
		created, err := tb.Apply(&e, 0, 10*sec)
		if !created || err != nil {
			t.Fatalf("Apply: %v %v", created, err)
		}
		var out Entry
		if !tb.Get(DirReply, &e.Reply, 10*sec, &out) || out.State != StateEstablished || out.Dest != 1 || out.Service != e.Service || out.Flags != e.Flags {
			t.Fatalf("reply key finds %+v", out)
		}
		if a, i := tb.Conns(1); a != 1 || i != 0 {
			t.Fatalf("counts %d/%d, want 1/0 (ESTABLISHED is active)", a, i)
		}
		e2 := conn(2, ProtoTCP, MethodDR, 1)
		e2.State = StateFinWait
		if created, err := tb.Apply(&e2, 0, 10*sec); !created || err != nil {
			t.Fatalf("Apply: %v %v", created, err)
		}
		if a, i := tb.Conns(1); a != 1 || i != 1 || !tb.Overloaded(1) {
			t.Fatalf("counts %d/%d overloaded %v, want 1/1 and the -x 2 flag set", a, i, tb.Overloaded(1))
		}
		u := conn(3, ProtoUDP, MethodTUN, 2)
		u.State = StateUDP
		if created, err := tb.Apply(&u, 0, 10*sec); !created || err != nil {
			t.Fatalf("Apply UDP: %v %v", created, err)
		}
		if a, i := tb.Conns(2); a != 0 || i != 1 {
			t.Fatalf("UDP counts %d/%d, want 0/1", a, i)
		}
		if st := tb.Stats(); st.Applied != 3 || st.Inserts != 0 || st.Entries != 3 {
			t.Fatalf("stats %+v", st)
		}
		checkInvariants(t, tb)
	})
	t.Run("update", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, MaxDests: 4})
		tb.SetThresholds(1, 1, 0)
		e := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 1), TCPSyn, 0) // SYN_RECV
		if !tb.Overloaded(1) {
			t.Fatal("insert did not set the overload flag at -x 1")
		}
		ap := e
		ap.Service, ap.Flags, ap.Method, ap.Reply = 99, 0x5555, MethodNAT, e.Reply
		for _, c := range []struct {
			s        State
			act, ina int32
		}{{StateEstablished, 1, 0}, {StateFinWait, 0, 1}, {StateTimeWait, 0, 1}, {StateSynRecv, 1, 0}} {
			ap.State = c.s
			created, err := tb.Apply(&ap, 0, sec)
			if created || err != nil {
				t.Fatalf("Apply %v: %v %v", c.s, created, err)
			}
			var out Entry
			if !tb.Get(DirOrig, &e.Orig, sec, &out) || out.State != c.s || out.Service != e.Service || out.Flags != e.Flags || out.Reply != e.Reply {
				t.Fatalf("after Apply %v: %+v (want the state moved, service, flags and reply kept)", c.s, out)
			}
			if a, i := tb.Conns(1); a != c.act || i != c.ina {
				t.Fatalf("Apply %v: counts %d/%d, want %d/%d", c.s, a, i, c.act, c.ina)
			}
			if !tb.Overloaded(1) {
				t.Fatalf("Apply %v cleared the overload flag; only a removal may", c.s)
			}
			checkInvariants(t, tb)
		}
		if st := tb.Stats(); st.Applied != 4 || st.Entries != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("another real server", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, MaxDests: 4})
		e := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 1), TCPSyn, 0)
		ap := conn(1, ProtoTCP, MethodNAT, 2)
		ap.State = StateFinWait // inactive: the expiry of a replaced connection
		if created, err := tb.Apply(&ap, 0, sec); created || err != nil {
			t.Fatalf("inactive message for another server: %v %v", created, err)
		}
		var out Entry
		if !tb.Get(DirOrig, &e.Orig, sec, &out) || out.Dest != 1 || out.State != StateSynRecv {
			t.Fatalf("an ignored message changed the entry: %+v", out)
		}
		ap.State = StateEstablished // active: replaces it
		if created, err := tb.Apply(&ap, 0, sec); !created || err != nil {
			t.Fatalf("active message for another server: %v %v", created, err)
		}
		if !tb.Get(DirOrig, &e.Orig, sec, &out) || out.Dest != 2 || out.State != StateEstablished {
			t.Fatalf("entry %+v, want the new server in ESTABLISHED", out)
		}
		if a1, i1 := tb.Conns(1); a1 != 0 || i1 != 0 {
			t.Fatalf("old server counts %d/%d", a1, i1)
		}
		if a2, i2 := tb.Conns(2); a2 != 1 || i2 != 0 {
			t.Fatalf("new server counts %d/%d", a2, i2)
		}
		if st := tb.Stats(); st.Expired != 1 || st.Applied != 1 {
			t.Fatalf("stats %+v: want the old connection counted as expired", st)
		}
		checkInvariants(t, tb)
	})
	t.Run("eviction", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 4, Shards: 1, MaxDests: 4})
		es := make([]Entry, 4)
		for i := range es {
			es[i] = conn(i, ProtoTCP, MethodNAT, 0)
			es[i].State = StateEstablished
			if i == 2 {
				es[i].State = StateCloseWait
			}
			if created, err := tb.Apply(&es[i], 0, sec); !created || err != nil {
				t.Fatalf("Apply %d: %v %v", i, created, err)
			}
		}
		// Full: the only non-ESTABLISHED entry is the one to go.
		x := mustInsert(t, tb, conn(10, ProtoTCP, MethodNAT, 0), TCPSyn, 2*sec)
		var out Entry
		if tb.Get(DirOrig, &es[2].Orig, 2*sec, &out) {
			t.Fatal("the CLOSE_WAIT applied entry was not evicted")
		}
		// Now x (SYN_RECV) is the only candidate; applying ESTABLISHED to it leaves
		// none, so the next insert fails.
		x.State = StateEstablished
		if created, err := tb.Apply(&x, 0, 3*sec); created || err != nil {
			t.Fatalf("Apply ESTABLISHED to x: %v %v", created, err)
		}
		y := conn(11, ProtoTCP, MethodNAT, 0)
		if err := tb.Insert(&y, TCPSyn, 4*sec); err != ErrFull {
			t.Fatalf("insert into a shard of ESTABLISHED applied entries: %v, want ErrFull", err)
		}
		y.State = StateEstablished
		if _, err := tb.Apply(&y, 0, 4*sec); err != ErrFull {
			t.Fatalf("Apply into a full shard: %v, want ErrFull", err)
		}
		// Moving x out of ESTABLISHED makes it evictable again.
		x.State = StateTimeWait
		tb.Apply(&x, 0, 5*sec)
		if created, err := tb.Apply(&y, 0, 5*sec); !created || err != nil {
			t.Fatalf("Apply after x left ESTABLISHED: %v %v", created, err)
		}
		if tb.Get(DirOrig, &x.Orig, 5*sec, &out) {
			t.Fatal("x in TIME_WAIT was not the one evicted")
		}
		if st := tb.Stats(); st.Evicted != 2 || st.Full != 2 {
			t.Fatalf("stats %+v: want 2 evicted, 2 full", st)
		}
		checkInvariants(t, tb)
	})
	t.Run("timeouts", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, Timeouts: Timeouts{FinWait: 40}})
		for _, c := range []struct {
			s       State
			timeout uint32
			want    int64 // seconds
		}{
			{StateEstablished, 0, 15 * 60},
			{StateFinWait, 0, 40},
			{StateFinWait, 7, 7},
			{StateClose, MaxTimeout + 5, MaxTimeout},
			{StateUDP, 0, 5 * 60},
			{StateUDP, 1, 1},
		} {
			for _, update := range []bool{false, true} {
				proto := ProtoTCP
				if c.s == StateUDP {
					proto = ProtoUDP
				}
				e := conn(5, proto, MethodNAT, 0)
				start := int64(100 * sec)
				if update {
					mustInsert(t, tb, e, TCPSyn, start-50*sec)
				}
				e.State = c.s
				if created, err := tb.Apply(&e, c.timeout, start); created == update || err != nil {
					t.Fatalf("Apply %v timeout %d (update %v): %v %v", c.s, c.timeout, update, created, err)
				}
				var out Entry
				if !tb.Get(DirOrig, &e.Orig, start+c.want*sec-1e6, &out) {
					t.Fatalf("%v timeout %d (update %v): gone before %d s", c.s, c.timeout, update, c.want)
				}
				if tb.Get(DirOrig, &e.Orig, start+c.want*sec, &out) {
					t.Fatalf("%v timeout %d (update %v): still there at %d s", c.s, c.timeout, update, c.want)
				}
				tb.Reap(start+c.want*sec, tb.Cap())
				if tb.Len() != 0 {
					t.Fatalf("Reap left %d", tb.Len())
				}
			}
		}
	})
	t.Run("invalid", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 64, MaxDests: 4})
		good := conn(1, ProtoTCP, MethodNAT, 0)
		good.State = StateEstablished
		cases := []struct {
			name string
			edit func(e *Entry)
			want error
		}{
			{"ICMP", func(e *Entry) { e.Orig.Proto, e.Reply.Proto = 1, 1 }, ErrProto},
			{"TCP in UDP's state", func(e *Entry) { e.State = StateUDP }, ErrState},
			{"TCP state 12", func(e *Entry) { e.State = numStates }, ErrState},
			{"TCP state 200", func(e *Entry) { e.State = 200 }, ErrState},
			{"UDP in ESTABLISHED", func(e *Entry) { e.Orig.Proto, e.Reply.Proto = ProtoUDP, ProtoUDP }, ErrState},
			{"UDP in NONE", func(e *Entry) { e.Orig.Proto, e.Reply.Proto, e.State = ProtoUDP, ProtoUDP, StateNone }, ErrState},
			{"dest", func(e *Entry) { e.Dest = 4 }, ErrDest},
			{"method", func(e *Entry) { e.Method = numMethods }, ErrMethod},
			{"reply", func(e *Entry) { e.Reply.Proto = ProtoUDP }, ErrReply},
		}
		for _, c := range cases {
			e := good
			c.edit(&e)
			if created, err := tb.Apply(&e, 0, 0); created || err != c.want {
				t.Errorf("%s: %v %v, want %v", c.name, created, err, c.want)
			}
		}
		// A reply key in another shard.
		for i := 0; ; i++ {
			e := good
			e.Reply.Dst = client(1000 + i)
			if tb.ShardOf(e.Reply.Dst, e.Reply.DstPort) == tb.ShardOf(e.Orig.Src, e.Orig.SrcPort) {
				continue
			}
			if _, err := tb.Apply(&e, 0, 0); err != ErrShardMismatch {
				t.Fatalf("reply in another shard: %v", err)
			}
			break
		}
		// A reply key held by another live connection.
		other := mustInsert(t, tb, conn(2, ProtoTCP, MethodNAT, 0), TCPSyn, 0)
		e := good
		e.Orig, e.Reply = other.Orig, other.Reply
		e.Orig.Dst = rs1 // another connection of the same client endpoint
		if _, err := tb.Apply(&e, 0, 0); err != ErrExists {
			t.Fatalf("reply key taken: %v, want ErrExists", err)
		}
		if tb.Len() != 1 || tb.Stats().Applied != 0 {
			t.Fatalf("refused Applys changed the table: %d entries, %+v", tb.Len(), tb.Stats())
		}
		// NONE and every real TCP state are accepted.
		for s := StateNone; s <= StateSynAck; s++ {
			e := conn(10+int(s), ProtoTCP, MethodDR, 0)
			e.State = s
			if _, err := tb.Apply(&e, 0, 0); err != nil {
				t.Errorf("TCP state %v refused: %v", s, err)
			}
		}
		checkInvariants(t, tb)
		tb.Close()
		if _, err := tb.Apply(&good, 0, 0); err != ErrClosed {
			t.Fatalf("Apply after Close: %v", err)
		}
	})
}

// TestApplyThenTakeover: connections a backup applied continue with the state machine,
// and after a takeover (SetSync) their counts continue from the threshold Apply gave
// them, with old_state the applied state: sent again at the 53rd packet under the
// default policy, at once on a change into FIN_WAIT.
func TestApplyThenTakeover(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64, Shards: 1})
	e := conn(1, ProtoTCP, MethodDR, 0)
	e.State = StateEstablished
	if _, err := tb.Apply(&e, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Applied again, as a master resends: nothing changes but the timer.
	if created, err := tb.Apply(&e, 0, sec); created || err != nil {
		t.Fatal(created, err)
	}
	p := DefaultSyncPolicy()
	tb.SetSync(&p)
	var out Entry
	now := 2 * sec
	for pkt := 4; pkt <= 60; pkt++ {
		now += sec
		if st := tb.Lookup(DirOrig, &e.Orig, TCPAck, now, &out); st != Found || out.State != StateEstablished {
			t.Fatalf("packet %d: %v %v", pkt, st, out.State)
		}
		if want := pkt%50 == 3; out.Sync != want {
			t.Fatalf("packet %d: Sync %v, want %v", pkt, out.Sync, want)
		}
	}
	// DR's input-only table: a client FIN moves ESTABLISHED to FIN_WAIT, forced.
	if st := tb.Lookup(DirOrig, &e.Orig, TCPFin|TCPAck, now, &out); st != Found || out.State != StateFinWait || !out.Sync {
		t.Fatalf("FIN: %v %v Sync %v, want FIN_WAIT synced", st, out.State, out.Sync)
	}
	if st := tb.Lookup(DirOrig, &e.Orig, TCPAck, now, &out); st != Found || out.State != StateFinWait || out.Sync {
		t.Fatalf("ACK after FIN: %v %v Sync %v, want FIN_WAIT not synced", st, out.State, out.Sync)
	}
	// A backup that applied a CLOSE connection: a SYN reuses it (conn_reuse_mode).
	c := conn(2, ProtoTCP, MethodNAT, 0)
	c.State = StateClose
	tb.Apply(&c, 0, now)
	if st := tb.Lookup(DirOrig, &c.Orig, TCPSyn, now, &out); st != Reused || out.Sync {
		t.Fatalf("SYN on an applied CLOSE: %v Sync %v, want Reused", st, out.Sync)
	}
	checkInvariants(t, tb)
}

// TestSyncConcurrent: SetSync toggled between policies and off while workers look up,
// insert and apply; run with -race. The table stays consistent.
func TestSyncConcurrent(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 4096, Shards: 8, MaxDests: 8})
	tb.hint = hintsWork
	var stop atomic.Bool
	var wg sync.WaitGroup
	var syncs atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var out Entry
			var qs [16]Query
			for i := 0; !stop.Load() || i < 2000; i++ {
				e := conn(rng.IntN(600), []uint8{ProtoTCP, ProtoUDP}[rng.IntN(2)], Method(rng.IntN(3)), uint32(rng.IntN(8)))
				now := int64(i) * 1e7
				switch rng.IntN(8) {
				case 0:
					tb.Insert(&e, TCPSyn, now)
					if e.Sync {
						syncs.Add(1)
					}
				case 1:
					if e.Orig.Proto == ProtoTCP {
						e.State = StateEstablished
					} else {
						e.State = StateUDP
					}
					if _, err := tb.Apply(&e, 0, now); err != nil && err != ErrFull && err != ErrExists {
						t.Error(err)
						return
					}
				case 2:
					for j := range qs {
						x := conn(rng.IntN(600), e.Orig.Proto, MethodNAT, 0)
						qs[j] = Query{Key: x.Orig, Dir: DirOrig, TCPFlags: TCPAck}
					}
					tb.LookupBatch(qs[:], now)
					for j := range qs {
						if qs[j].Entry.Sync {
							syncs.Add(1)
						}
					}
				default:
					if tb.Lookup(DirOrig, &e.Orig, TCPAck, now, &out) == Found && out.Sync {
						syncs.Add(1)
					}
				}
			}
		}()
	}
	ps := []*SyncPolicy{nil, {Threshold: 0, Period: 1}, {Threshold: 3, Period: 50}, {Threshold: 1, Period: 0, RefreshPeriod: time.Second, Retries: 3}}
	for i := range 400 {
		tb.SetSync(ps[i%len(ps)])
		time.Sleep(50 * time.Microsecond)
	}
	stop.Store(true)
	wg.Wait()
	checkInvariants(t, tb)
	if syncs.Load() == 0 {
		t.Fatal("no lookup was synced while sync was on")
	}
}

// TestSyncAllocs: Lookup, LookupBatch, Insert and Apply allocate nothing with sync on.
func TestSyncAllocs(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 14})
	tb.hint = hintsWork
	p := SyncPolicy{Threshold: 0, Period: 2, RefreshPeriod: time.Second, Retries: 2}
	tb.SetSync(&p)
	es := make([]Entry, 4000)
	for i := range es {
		es[i] = conn(i, ProtoTCP, Method(i%3), uint32(i%5))
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if err := tb.Insert(&es[i], TCPSyn, 0); err != nil {
			t.Fatal(err)
		}
		i++
	}); n != 0 {
		t.Errorf("Insert with sync on allocates %v times", n)
	}
	var out Entry
	j, synced := 0, 0
	if n := testing.AllocsPerRun(1000, func() {
		if st := tb.Lookup(DirOrig, &es[j%i].Orig, TCPAck, int64(j)*1e7, &out); st != Found {
			t.Fatal(st)
		}
		if out.Sync {
			synced++
		}
		j++
	}); n != 0 {
		t.Errorf("Lookup with sync on allocates %v times", n)
	}
	if synced == 0 {
		t.Error("no lookup synced: the path was not exercised")
	}
	qs := make([]Query, 64)
	for k := range qs {
		qs[k] = Query{Key: es[k].Orig, Dir: DirOrig, TCPFlags: TCPAck}
	}
	if n := testing.AllocsPerRun(100, func() { tb.LookupBatch(qs, 20*sec) }); n != 0 {
		t.Errorf("LookupBatch with sync on allocates %v times", n)
	}
	k := 0
	if n := testing.AllocsPerRun(1000, func() {
		e := &es[k%len(es)]
		e.State = StateEstablished
		if _, err := tb.Apply(e, 0, 30*sec); err != nil {
			t.Fatal(err)
		}
		k++
	}); n != 0 {
		t.Errorf("Apply allocates %v times", n)
	}
}

// TestShardLineHoldsSyncPointer: what a lookup reads of its shard (lock, slab, index
// and sync array headers) is one cache line.
func TestShardLineHoldsSyncPointer(t *testing.T) {
	var sh shard
	if end := unsafe.Offsetof(sh.syncp) + unsafe.Sizeof(sh.syncp); end > 64 {
		t.Fatalf("a lookup's fields of the shard end at byte %d, beyond its first cache line", end)
	}
}

// TestApplySyncEndTime: a connection Apply creates starts its sync_endtime at the time
// it was applied (ip_vs_conn_new), which a refresh period compares against. With a
// 2-second CLOSE timeout and a 20-second refresh period: a packet 1 s after the Apply
// has an end time 3 s from the start, below min(20 s, max(1 s, 10 s)), and no retries
// are allowed, so it is not sent; one 15 s after is 17 s from it, so it is.
func TestApplySyncEndTime(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, Timeouts: Timeouts{Close: 2}})
	p := SyncPolicy{Threshold: 3, Period: 0, RefreshPeriod: 20 * time.Second}
	tb.SetSync(&p)
	start := int64(5000 * sec)
	for _, c := range []struct {
		after int64
		sync  bool
	}{{sec, false}, {15 * sec, true}} {
		e := conn(int(c.after/sec), ProtoTCP, MethodNAT, 0)
		e.State = StateClose
		if _, err := tb.Apply(&e, 0, start); err != nil {
			t.Fatal(err)
		}
		// Keep it alive past its 2 s timeout: apply again (the end time stays).
		tb.Apply(&e, 30, start+sec/2)
		var out Entry
		if st := tb.Lookup(DirOrig, &e.Orig, TCPAck, start+c.after, &out); st != Found || out.State != StateClose || out.Sync != c.sync {
			t.Fatalf("packet %v after the Apply: %v %v Sync %v, want CLOSE Sync %v", time.Duration(c.after), st, out.State, out.Sync, c.sync)
		}
	}
}
