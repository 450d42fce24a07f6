package syncd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/conntrack"
	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

// fakeDP is a dataplane with a sync queue the test fills and a record of what a backup
// applied.
type fakeDP struct {
	t0 time.Time

	mu      sync.Mutex
	queue   []dataplane.SyncConn
	applied []dataplane.SyncConn
	policy  *conntrack.SyncPolicy
	persist bool
	setN    int
	pushed  uint64
	fail    func(*dataplane.SyncConn) error
	table   []dataplane.SyncConn // what WalkSync hands over
	walks   int
}

func newFake() *fakeDP { return &fakeDP{t0: time.Now()} }

func (f *fakeDP) Now() int64 { return int64(time.Since(f.t0)) }

func (f *fakeDP) SyncStats() dataplane.SyncStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return dataplane.SyncStats{Queued: f.pushed, QueueFull: 7}
}

func (f *fakeDP) SetSyncMaster(p *conntrack.SyncPolicy, persist bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policy, f.persist = p, persist
	f.setN++
}

func (f *fakeDP) DrainSync(out []dataplane.SyncConn) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := copy(out, f.queue)
	f.queue = f.queue[n:]
	return n
}

func (f *fakeDP) ApplySync(c *dataplane.SyncConn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(c); err != nil {
			return err
		}
	}
	f.applied = append(f.applied, *c)
	return nil
}

func (f *fakeDP) WalkSync(fn func(*dataplane.SyncConn) bool) {
	f.mu.Lock()
	table := append([]dataplane.SyncConn(nil), f.table...)
	f.walks++
	f.mu.Unlock()
	for i := range table {
		table[i].Queued = f.Now()
		if !fn(&table[i]) {
			return
		}
	}
}

// push queues entries as workers would, stamping Queued.
func (f *fakeDP) push(es ...dataplane.SyncConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.Now()
	for _, e := range es {
		e.Queued = now
		f.queue = append(f.queue, e)
		f.pushed++
	}
}

func (f *fakeDP) got() []dataplane.SyncConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dataplane.SyncConn(nil), f.applied...)
}

func (f *fakeDP) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = nil
}

// waitFor polls cond every 10 ms for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pair is testbed.NewPair for a test: two namespaces joined by a veth pair "sync0"
// (198.18.9.1/24 and fd00:9::1/64 in a, .2 and ::2 in b), removed when the test ends.
func pair(t *testing.T) (a, b *testbed.NS) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set and this test needs root (network namespaces)")
		}
		t.Skip("needs root for network namespaces")
	}
	a, b, err := testbed.NewPair("syncd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); a.Close() })
	return a, b
}

// node is a sync daemon over a fake dataplane in a namespace.
type node struct {
	ns *testbed.NS
	dp *fakeDP
	d  *Daemon
}

func newNode(t *testing.T, ns *testbed.NS, o Options) *node {
	n := &node{ns: ns, dp: newFake()}
	n.d = New(n.dp, o)
	t.Cleanup(func() {
		if err := n.d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

func (n *node) start(t *testing.T, cfg Config) {
	t.Helper()
	if err := n.ns.Do(func() error { return n.d.Start(cfg) }); err != nil {
		t.Fatalf("start %s: %v", cfg.Role, err)
	}
}

func cfg(role Role, group string, syncid uint8) Config {
	c := Config{Role: role, Sock: ipvssync.Config{Ifname: "sync0"}, SyncID: syncid, FlushTime: 20 * time.Millisecond}
	if group != "" {
		c.Sock.Group = netip.MustParseAddr(group)
	}
	return c
}

// probe is an entry the tests send until the backup hears one (a new group membership
// may take a moment on the veth's peer); warmUp then forgets it.
var probe = dataplane.SyncConn{Proto: 17, Method: conntrack.MethodNAT, State: conntrack.StateUDP, Timeout: 1,
	Client: a16("198.18.250.1"), CPort: 1, VAddr: a16("198.18.250.2"), VPort: 1, DAddr: a16("198.18.250.3"), DPort: 1}

func warmUp(t *testing.T, m, b *node) {
	t.Helper()
	ok := waitFor(3*time.Second, func() bool {
		m.dp.push(probe)
		return waitFor(100*time.Millisecond, func() bool { return len(b.dp.got()) > 0 })
	})
	if !ok {
		t.Fatal("the backup heard nothing from the master in 3 s")
	}
	time.Sleep(100 * time.Millisecond) // let the last probes land
	b.dp.reset()
}

// TestRoundTrip: entries queued at a master arrive at a backup in another namespace, each
// field equal (Queued aside, which is the sender's alone), over IPv4 and IPv6 groups,
// with one and with two sync ports; the master turned the dataplane's queue on with its
// policy and sync_persist_mode, and off when stopped.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group string
		ports int
	}{
		{"IPv4 group", "", 1},
		{"IPv6 group, 2 ports", "ff02::1:81", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			pol := conntrack.SyncPolicy{Threshold: 1, Period: 10, RefreshPeriod: time.Minute, Retries: 2}
			m := newNode(t, a, Options{Ports: tc.ports, Policy: &pol, PersistMode: true})
			bk := newNode(t, b, Options{Ports: tc.ports})
			bk.start(t, cfg(Backup, tc.group, 7))
			m.start(t, cfg(Master, tc.group, 7))
			m.dp.mu.Lock()
			if m.dp.policy == nil || *m.dp.policy != pol || !m.dp.persist {
				t.Errorf("SetSyncMaster(%+v, %v), want the daemon's policy %+v and persist mode", m.dp.policy, m.dp.persist, pol)
			}
			m.dp.mu.Unlock()
			warmUp(t, m, bk)

			want := sample()
			// Many connections, so that both sockets carry some when there are two.
			for p := range 100 {
				e := want[0]
				e.CPort = uint16(20000 + p)
				want = append(want, e)
			}
			m.dp.push(want...)
			if !waitFor(3*time.Second, func() bool { return len(bk.dp.got()) >= len(want) }) {
				t.Fatalf("backup applied %d of %d entries", len(bk.dp.got()), len(want))
			}
			got := bk.dp.got()
			index := map[dataplane.SyncConn]int{}
			for _, e := range got {
				index[e]++
			}
			for i, e := range want {
				e.Queued = 0
				if index[e] == 0 {
					t.Errorf("entry %d not applied as sent: %+v", i, e)
				}
			}
			if len(got) != len(want) {
				t.Errorf("applied %d entries, want %d", len(got), len(want))
			}
			// Per-connection order: one client's updates keep their order.
			// The master counts a message after its send returns, which may be after the
			// backup applied it.
			waitFor(2*time.Second, func() bool {
				st := m.d.Stats()
				return st.Conns >= uint64(len(want)) && st.LagCount == st.Conns
			})
			st := m.d.Stats()
			if st.Conns < uint64(len(want)) || st.Messages == 0 || st.LagCount != st.Conns || st.LagMax <= 0 ||
				st.Queued < uint64(len(want)) || st.QueueFull != 7 {
				t.Errorf("master stats %+v", st)
			}
			bs := bk.d.Stats()
			if bs.Applied < uint64(len(want)) || bs.Decoded != bs.Applied {
				t.Errorf("backup stats %+v", bs)
			}
			if err := m.d.Stop(Master); err != nil {
				t.Fatal(err)
			}
			m.dp.mu.Lock()
			if m.dp.policy != nil {
				t.Errorf("after stop the dataplane still queues (policy %+v)", m.dp.policy)
			}
			m.dp.mu.Unlock()
		})
	}
}

// TestOrder: updates of one connection arrive in the order queued, through two ports.
func TestOrder(t *testing.T) {
	a, b := pair(t)
	m := newNode(t, a, Options{Ports: 2})
	bk := newNode(t, b, Options{Ports: 2})
	bk.start(t, cfg(Backup, "", 0))
	m.start(t, cfg(Master, "", 0))
	warmUp(t, m, bk)
	states := []conntrack.State{conntrack.StateSynRecv, conntrack.StateEstablished, conntrack.StateFinWait, conntrack.StateTimeWait, conntrack.StateClose}
	var es []dataplane.SyncConn
	for c := range 20 {
		for _, s := range states {
			e := sample()[0]
			e.CPort, e.State = uint16(30000+c), s
			es = append(es, e)
		}
	}
	m.dp.push(es...)
	if !waitFor(3*time.Second, func() bool { return len(bk.dp.got()) >= len(es) }) {
		t.Fatalf("applied %d of %d", len(bk.dp.got()), len(es))
	}
	seen := map[uint16]int{}
	for _, e := range bk.dp.got() {
		i := seen[e.CPort]
		if i >= len(states) || e.State != states[i] {
			t.Fatalf("connection %d: update %d in state %v, want %v", e.CPort, i, e.State, states[min(i, len(states)-1)])
		}
		seen[e.CPort]++
	}
}

// TestSyncID: a backup with sync ID 5 applies messages of sync ID 5 and drops (counted)
// those of 6; a backup with sync ID 0 applies both (ip_vs_process_message). The master is
// stopped and started again, with another sync ID, at run time.
func TestSyncID(t *testing.T) {
	a, b := pair(t)
	m := newNode(t, a, Options{})
	bk := newNode(t, b, Options{})
	bk.start(t, cfg(Backup, "", 5))
	m.start(t, cfg(Master, "", 5))
	warmUp(t, m, bk)
	if err := m.d.Stop(Master); err != nil {
		t.Fatal(err)
	}
	m.start(t, cfg(Master, "", 6))
	before := bk.d.Stats().Dropped["syncid"]
	e := sample()[0]
	m.dp.push(e)
	if !waitFor(2*time.Second, func() bool { return bk.d.Stats().Dropped["syncid"] > before }) {
		t.Fatal("a message of sync ID 6 was not counted as dropped by a backup of sync ID 5")
	}
	if got := bk.dp.got(); len(got) != 0 {
		t.Fatalf("backup of sync ID 5 applied %d entries of sync ID 6", len(got))
	}
	// The same backup restarted with sync ID 0 takes any.
	if err := bk.d.Stop(Backup); err != nil {
		t.Fatal(err)
	}
	bk.start(t, cfg(Backup, "", 0))
	warmUp(t, m, bk)
	m.dp.push(e)
	if !waitFor(2*time.Second, func() bool { return len(bk.dp.got()) > 0 }) {
		t.Fatal("a backup of sync ID 0 did not apply a message of sync ID 6")
	}
	e.Queued = 0
	if got := bk.dp.got()[0]; got != e {
		t.Errorf("applied %+v, want %+v", got, e)
	}
}

// TestFlushTime: a partial message leaves once its first entry is FlushTime old, not
// before; the lag counts the wait.
func TestFlushTime(t *testing.T) {
	a, b := pair(t)
	m := newNode(t, a, Options{})
	bk := newNode(t, b, Options{})
	bk.start(t, cfg(Backup, "", 0))
	c := cfg(Master, "", 0)
	m.start(t, c)
	warmUp(t, m, bk)
	if err := m.d.Stop(Master); err != nil {
		t.Fatal(err)
	}
	const flush = 300 * time.Millisecond
	c.FlushTime = flush
	m.start(t, c)
	t0 := time.Now()
	m.dp.push(sample()[0])
	if !waitFor(3*time.Second, func() bool { return len(bk.dp.got()) > 0 }) {
		t.Fatal("the partial message never left")
	}
	if el := time.Since(t0); el < flush-10*time.Millisecond || el > flush+700*time.Millisecond {
		t.Errorf("arrived after %v, want about %v", el, flush)
	}
	// LagMax, not LagLast: another message (a table answer to the backup's request at its
	// start) may leave after the flushed one and become the last.
	if st := m.d.Stats(); st.LagMax < flush-10*time.Millisecond {
		t.Errorf("largest lag %v, want at least the flushed entry's %v", st.LagMax, flush)
	}
}

// TestFullMessage: with sync-maxlen 200 a message holds 5 IPv4 entries (8 + 5 × 36 bytes):
// 12 entries queued with a flush time of an hour make two full messages at once, the two
// left wait, and stopping the master sends them.
func TestFullMessage(t *testing.T) {
	a, b := pair(t)
	m := newNode(t, a, Options{})
	bk := newNode(t, b, Options{})
	bk.start(t, cfg(Backup, "", 0))
	c := cfg(Master, "", 0)
	m.start(t, c)
	warmUp(t, m, bk)
	if err := m.d.Stop(Master); err != nil {
		t.Fatal(err)
	}
	c.MaxLen, c.FlushTime = 200, time.Hour
	m.start(t, c)
	if r := m.d.Running(); len(r) != 1 || r[0].MaxLen != 200 {
		t.Fatalf("running %+v, want maxlen 200", r)
	}
	before := m.d.Stats()
	var es []dataplane.SyncConn
	for p := range 12 {
		e := sample()[0]
		e.CPort = uint16(50000 + p)
		es = append(es, e)
	}
	m.dp.push(es...)
	if !waitFor(2*time.Second, func() bool { return len(bk.dp.got()) >= 10 }) {
		t.Fatalf("applied %d, want the 10 of two full messages", len(bk.dp.got()))
	}
	time.Sleep(300 * time.Millisecond)
	st := m.d.Stats()
	if n := len(bk.dp.got()); n != 10 || st.Messages-before.Messages != 2 || st.Conns-before.Conns != 10 {
		t.Fatalf("applied %d, %d messages of %d entries sent; want 10 in 2 messages", n, st.Messages-before.Messages, st.Conns-before.Conns)
	}
	if err := m.d.Stop(Master); err != nil {
		t.Fatal(err)
	}
	if !waitFor(2*time.Second, func() bool { return len(bk.dp.got()) == 12 }) {
		t.Fatalf("after stop: applied %d, want 12", len(bk.dp.got()))
	}
}

// rawMsg builds a version 1 message of syncid with the given entries (ipvssync's Writer),
// then lets mod change its bytes.
func rawMsg(t *testing.T, syncid uint8, cs []ipvssync.Conn, mod func([]byte) []byte) []byte {
	t.Helper()
	w := ipvssync.NewWriter(syncid, 1472)
	for i := range cs {
		if ok, err := w.Add(&cs[i]); !ok || err != nil {
			t.Fatalf("add: %v %v", ok, err)
		}
	}
	msg := append([]byte(nil), w.Bytes()...)
	if mod != nil {
		msg = mod(msg)
	}
	return msg
}

var errNoService = errors.New("no such service")

// TestHostile: datagrams of every kind of wrongness sent at the backup's port are counted
// under their reason and dropped, random ones too, without a panic; entries the kernel
// would skip are skipped alone, apply failures are counted by reason, sequence and PE
// options are accepted and counted; a valid message still applies afterwards.
func TestHostile(t *testing.T) {
	a, b := pair(t)
	bk := newNode(t, b, Options{ApplyReasons: append([]ApplyReason{{errNoService, "no_service"}}, DefaultApplyReasons...)})
	bk.dp.fail = func(c *dataplane.SyncConn) error {
		switch c.VPort {
		case 1001:
			return fmt.Errorf("apply: %w", errNoService)
		case 1002:
			return conntrack.ErrFull
		case 1003:
			return errors.New("something else")
		}
		return nil
	}
	bk.start(t, cfg(Backup, "", 9))
	var tx *ipvssync.Sender
	if err := a.Do(func() (err error) { tx, err = ipvssync.OpenSender(ipvssync.Config{Ifname: "sync0"}, 0); return }); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	valid := ipvssync.Conn{Protocol: 6, State: 1, CPort: 1, VPort: 80, DPort: 80, Timeout: 60,
		CAddr: a16("198.18.1.2"), VAddr: a16("198.18.0.10"), DAddr: a16("198.18.2.11")}
	// Warm up with valid messages until one applies.
	if !waitFor(3*time.Second, func() bool {
		tx.Send(rawMsg(t, 9, []ipvssync.Conn{valid}, nil))
		return waitFor(100*time.Millisecond, func() bool { return len(bk.dp.got()) > 0 })
	}) {
		t.Fatal("backup heard nothing")
	}
	time.Sleep(100 * time.Millisecond)
	base := bk.d.Stats()
	bk.dp.reset()

	with := func(mod func(*ipvssync.Conn)) ipvssync.Conn { c := valid; mod(&c); return c }
	sends := []struct {
		name string
		msg  []byte
	}{
		{"short", []byte{0, 9, 0}},
		{"empty", []byte{}},
		{"size field", rawMsg(t, 9, []ipvssync.Conn{valid}, func(m []byte) []byte { return append(m, 0, 0, 0, 0) })},
		{"other syncid", rawMsg(t, 10, []ipvssync.Conn{valid}, nil)},
		{"truncated entry", rawMsg(t, 9, []ipvssync.Conn{valid}, func(m []byte) []byte {
			m = m[:len(m)-8]
			binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
			return m
		})},
		{"entry version 1", rawMsg(t, 9, []ipvssync.Conn{valid}, func(m []byte) []byte { m[8+2] |= 0x10; return m })},
		{"bad option", rawMsg(t, 9, []ipvssync.Conn{valid}, func(m []byte) []byte {
			m = append(m, 1, 3, 0, 0) // SEQ_DATA of 3 bytes
			binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
			binary.BigEndian.PutUint16(m[8+2:], uint16(len(m)-8))
			return m
		})},
		// One message of entries skipped alone, applied, refused and ignored-option ones.
		{"entries", rawMsg(t, 9, []ipvssync.Conn{
			with(func(c *ipvssync.Conn) { c.Protocol = 33 }),                                        // protocol (DCCP)
			with(func(c *ipvssync.Conn) { c.State = 11 }),                                           // state
			with(func(c *ipvssync.Conn) { c.Flags = 1 }),                                            // method (local node)
			with(func(c *ipvssync.Conn) { c.VPort = 1001 }),                                         // no_service
			with(func(c *ipvssync.Conn) { c.VPort = 1002 }),                                         // table_full
			with(func(c *ipvssync.Conn) { c.VPort = 1003 }),                                         // other
			with(func(c *ipvssync.Conn) { c.Flags = ipvssync.FlagSeqMask; c.CPort = 2 }),            // applied, seq_data
			with(func(c *ipvssync.Conn) { c.PEData, c.PEName, c.CPort = []byte("call"), "sip", 3 }), // applied, pe_data
		}, nil)},
		// An entry with an unknown mandatory option (type 6): skipped, the next applied.
		{"mandatory option", rawMsg(t, 9, []ipvssync.Conn{valid, with(func(c *ipvssync.Conn) { c.CPort = 4 })}, func(m []byte) []byte {
			// Append the option to the first entry: rebuild with it inside.
			first := append([]byte(nil), m[8:8+36]...)
			first = append(first, 6, 2, 0xab, 0xcd)
			binary.BigEndian.PutUint16(first[2:], uint16(len(first)))
			out := append(append([]byte(nil), m[:8]...), first...)
			out = append(out, m[8+36:]...)
			binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
			return out
		})},
	}
	for _, s := range sends {
		if err := tx.Send(s.msg); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const random = 300
	for i := range random {
		msg := make([]byte, rng.IntN(600))
		for j := range msg {
			msg[j] = byte(rng.Uint32())
		}
		if i%2 == 0 && len(msg) >= 8 {
			// Half of them with a right size and version 1 header, to reach the entries.
			msg[0], msg[1], msg[5], msg[6], msg[7] = 0, 9, 1, 0, 0
			binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
		}
		if err := tx.Send(msg); err != nil && !errors.Is(err, ipvssync.ErrWouldBlock) {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond) // stay below the receive buffer
		}
	}
	total := uint64(len(sends) + random)
	if !waitFor(3*time.Second, func() bool { return bk.d.Stats().Received-base.Received >= total }) {
		t.Fatalf("received %d of %d datagrams", bk.d.Stats().Received-base.Received, total)
	}
	// The daemon still works.
	tx.Send(rawMsg(t, 9, []ipvssync.Conn{with(func(c *ipvssync.Conn) { c.CPort = 5 })}, nil))
	if !waitFor(2*time.Second, func() bool {
		for _, e := range bk.dp.got() {
			if e.CPort == 5 {
				return true
			}
		}
		return false
	}) {
		t.Fatal("a valid message after the garbage was not applied")
	}
	st := bk.d.Stats()
	diff := func(now, then map[string]uint64, k string) uint64 { return now[k] - then[k] }
	// The crafted datagrams' counts are exact; random ones add to the message-level
	// reasons only (they can only be short, malformed, of another sync ID, of a bad entry
	// version, or decode).
	for _, c := range []struct {
		what string
		got  uint64
		min  uint64
	}{
		{"short", diff(st.Dropped, base.Dropped, "short"), 2},
		{"malformed", diff(st.Dropped, base.Dropped, "malformed"), 3},
		{"version", diff(st.Dropped, base.Dropped, "version"), 1},
		{"syncid", diff(st.Dropped, base.Dropped, "syncid"), 1},
	} {
		if c.got < c.min {
			t.Errorf("dropped %s: %d, want at least %d", c.what, c.got, c.min)
		}
	}
	// Entry-level reasons: random data may add some; the crafted ones are there.
	for _, c := range []struct {
		m    map[string]uint64
		base map[string]uint64
		k    string
	}{
		{st.Dropped, base.Dropped, "protocol"}, {st.Dropped, base.Dropped, "state"}, {st.Dropped, base.Dropped, "method"},
		{st.Dropped, base.Dropped, "skipped"}, {st.ApplyErrors, base.ApplyErrors, "no_service"},
		{st.ApplyErrors, base.ApplyErrors, "table_full"}, {st.ApplyErrors, base.ApplyErrors, "other"},
		{st.Ignored, base.Ignored, "seq_data"}, {st.Ignored, base.Ignored, "pe_data"},
	} {
		if diff(c.m, c.base, c.k) < 1 {
			t.Errorf("%s: not counted", c.k)
		}
	}
	// The crafted valid entries were applied: CPort 2 (seq), 3 (PE), 4 (after a skipped one), 5.
	ports := map[uint16]bool{}
	for _, e := range bk.dp.got() {
		ports[e.CPort] = true
	}
	for _, p := range []uint16{2, 3, 4, 5} {
		if !ports[p] {
			t.Errorf("entry with client port %d not applied", p)
		}
	}
	// Every datagram is accounted for: dropped whole, or decoded.
	msgDrops := uint64(0)
	for _, k := range []string{"short", "malformed", "version", "syncid"} {
		msgDrops += diff(st.Dropped, base.Dropped, k)
	}
	if st.Received-base.Received < msgDrops {
		t.Errorf("received %d, dropped %d whole", st.Received-base.Received, msgDrops)
	}
}

// TestBothRoles: each of two directors runs a master and a backup at once (the kernel
// allows one of each); each applies what the other sends. Starting a running role and
// stopping a stopped one are ErrRunning and ErrNotRunning; bad configurations say what is
// wrong and start nothing.
func TestBothRoles(t *testing.T) {
	a, b := pair(t)
	x := newNode(t, a, Options{})
	y := newNode(t, b, Options{})
	for _, n := range []*node{x, y} {
		n.start(t, cfg(Backup, "", 0))
		n.start(t, cfg(Master, "", 0))
		if r := n.d.Running(); len(r) != 2 || r[0].Role != Master || r[1].Role != Backup {
			t.Fatalf("running %+v, want master then backup", r)
		}
	}
	warmUp(t, x, y)
	warmUp(t, y, x)
	ex, ey := sample()[0], sample()[3]
	x.dp.push(ex)
	y.dp.push(ey)
	ex.Queued, ey.Queued = 0, 0
	if !waitFor(2*time.Second, func() bool { g := y.dp.got(); return len(g) == 1 && g[0] == ex }) {
		t.Errorf("y applied %+v, want %+v", y.dp.got(), ex)
	}
	if !waitFor(2*time.Second, func() bool { g := x.dp.got(); return len(g) == 1 && g[0] == ey }) {
		t.Errorf("x applied %+v, want %+v", x.dp.got(), ey)
	}
	// Multicast loop is off: neither applied its own.
	err := x.ns.Do(func() error { return x.d.Start(cfg(Master, "", 3)) })
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second master: %v", err)
	}
	if err := x.d.Stop(Backup); err != nil {
		t.Fatal(err)
	}
	if err := x.d.Stop(Backup); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stopping a stopped backup: %v", err)
	}
	if r := x.d.Running(); len(r) != 1 || r[0].Role != Master {
		t.Errorf("running %+v, want the master alone", r)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Role: Backup, Sock: ipvssync.Config{Ifname: "nosuch0"}}, `"nosuch0"`},
		{Config{Role: Backup}, "no multicast interface"}, // a library error names no flag
		{Config{Role: Backup, Sock: ipvssync.Config{Ifname: "sync0", Group: netip.MustParseAddr("198.18.0.1")}}, "not a multicast address"},
		{Config{Role: Backup, Sock: ipvssync.Config{Ifname: "sync0"}, MaxLen: 70000}, "sync-maxlen 70000"},
		{Config{Role: 7, Sock: ipvssync.Config{Ifname: "sync0"}}, "want master or backup"},
	} {
		err := x.ns.Do(func() error { return x.d.Start(tc.cfg) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("start %+v: %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	if r := x.d.Running(); len(r) != 1 {
		t.Errorf("a failed start left %+v running", r)
	}
	bad := New(newFake(), Options{Ports: 3})
	if err := x.ns.Do(func() error { return bad.Start(cfg(Backup, "", 0)) }); err == nil || !strings.Contains(err.Error(), "power of two") {
		t.Errorf("3 ports: %v", err)
	}
}

// TestRunningDefaults: what --list --daemon reports, every default filled in as the
// kernel does: group 224.0.0.81, port 8848, TTL 1, maxlen from 1500 for a master
// (1500 - 20 - 8) and from the interface's MTU for a backup (9000 here).
func TestRunningDefaults(t *testing.T) {
	a, _ := pair(t)
	if out, err := exec.Command("ip", "-n", a.Name(), "link", "set", "sync0", "mtu", "9000").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	n := newNode(t, a, Options{})
	n.start(t, Config{Role: Master, Sock: ipvssync.Config{Ifname: "sync0"}, SyncID: 4})
	n.start(t, Config{Role: Backup, Sock: ipvssync.Config{Ifname: "sync0", Group: netip.MustParseAddr("ff02::1:81"), Port: 9000, TTL: 2}})
	want := []Running{
		{Role: Master, Ifname: "sync0", SyncID: 4, MaxLen: 1472, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1},
		{Role: Backup, Ifname: "sync0", SyncID: 0, MaxLen: 9000 - 40 - 8, Group: netip.MustParseAddr("ff02::1:81"), Port: 9000, TTL: 2},
	}
	got := n.d.Running()
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("running\n%+v\nwant\n%+v", got, want)
	}
}
