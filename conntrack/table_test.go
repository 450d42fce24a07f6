package conntrack

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		ok     bool
		shards int
	}{
		{"defaults", Config{MaxEntries: 1 << 16}, true, 64},
		{"small table gets fewer shards", Config{MaxEntries: 100}, true, 4},
		{"one entry", Config{MaxEntries: 1}, true, 1},
		{"explicit shards", Config{MaxEntries: 1000, Shards: 8}, true, 8},
		{"zero entries", Config{}, false, 0},
		{"negative entries", Config{MaxEntries: -1}, false, 0},
		{"shards not a power of two", Config{MaxEntries: 1000, Shards: 6}, false, 0},
		{"more shards than entries", Config{MaxEntries: 10, Shards: 16}, false, 0},
		{"negative shards", Config{MaxEntries: 10, Shards: -2}, false, 0},
		{"too many dests", Config{MaxEntries: 10, MaxDests: 1 << 25}, false, 0},
		{"negative dests", Config{MaxEntries: 10, MaxDests: -1}, false, 0},
		{"bad reuse mode", Config{MaxEntries: 10, ConnReuseMode: 4}, false, 0},
		{"reuse off", Config{MaxEntries: 10, ConnReuseMode: ConnReuseOff}, true, 1},
		{"negative timeout", Config{MaxEntries: 10, Timeouts: Timeouts{FinWait: -1}}, false, 0},
		{"timeout too long", Config{MaxEntries: 10, Timeouts: Timeouts{UDP: MaxTimeout + 1}}, false, 0},
		{"shard too big for the index", Config{MaxEntries: 1 << 28, Shards: 1}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := New(tc.cfg)
			if !tc.ok {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("New: err %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if tb.Shards() != tc.shards {
				t.Errorf("Shards %d, want %d", tb.Shards(), tc.shards)
			}
			if tb.Cap() != tc.cfg.MaxEntries {
				t.Errorf("Cap %d, want %d", tb.Cap(), tc.cfg.MaxEntries)
			}
			sum := 0
			for i := range tb.shards {
				sum += int(tb.shards[i].cap)
			}
			if sum != tc.cfg.MaxEntries {
				t.Errorf("shard capacities sum to %d, want MaxEntries %d", sum, tc.cfg.MaxEntries)
			}
		})
	}
}

// kernelDefaults are the kernel's timeouts (kernelTimeouts) as a Timeouts.
func kernelDefaults(t testing.TB) Timeouts {
	var to Timeouts
	for s := State(0); s < numStates; s++ {
		*to.field(s) = kernelTimeout(t, s)
	}
	return to
}

// TestDefaultTimeoutsAreKernels: every default is the kernel's literal.
func TestDefaultTimeoutsAreKernels(t *testing.T) {
	if got, want := DefaultTimeouts(), kernelDefaults(t); got != want {
		t.Fatalf("DefaultTimeouts %+v, kernel says %+v", got, want)
	}
}

func TestConfigTimeoutsFillDefaults(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 16, Timeouts: Timeouts{Established: 7}})
	want := kernelDefaults(t)
	want.Established = 7
	if got := tb.Timeouts(); got != want {
		t.Fatalf("Timeouts %+v, want %+v", got, want)
	}
}

func TestInsertValidation(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 256, Shards: 4, MaxDests: 8})
	nat := conn(1, ProtoTCP, MethodNAT, 1)
	// A reply endpoint in another shard than the client's.
	mismatch := nat
	for p := uint16(1); ; p++ {
		if tb.ShardOf(mismatch.Orig.Src, p) != tb.ShardOf(mismatch.Orig.Src, mismatch.Orig.SrcPort) {
			mismatch.Reply.DstPort = p
			break
		}
	}
	tests := []struct {
		name  string
		edit  func(e *Entry)
		flags uint8
		want  error
	}{
		{"icmp", func(e *Entry) { e.Orig.Proto, e.Reply.Proto = 1, 1 }, TCPSyn, ErrProto},
		{"tcp ack is no opener", func(e *Entry) {}, TCPAck, ErrNotOpener},
		{"tcp syn+rst is no opener", func(e *Entry) {}, TCPSyn | TCPRst, ErrNotOpener},
		{"dest out of range", func(e *Entry) { e.Dest = 8 }, TCPSyn, ErrDest},
		{"unknown method", func(e *Entry) { e.Method = 9 }, TCPSyn, ErrMethod},
		{"nat without reply", func(e *Entry) { e.Reply = Key{} }, TCPSyn, ErrReply},
		{"reply of another protocol", func(e *Entry) { e.Reply.Proto = ProtoUDP }, TCPSyn, ErrReply},
		{"reply in another shard", func(e *Entry) { *e = mismatch }, TCPSyn, ErrShardMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := nat
			tc.edit(&e)
			if err := tb.Insert(&e, tc.flags, 0); err != tc.want {
				t.Fatalf("Insert: %v, want %v", err, tc.want)
			}
			if tb.Len() != 0 {
				t.Fatalf("a refused Insert left %d entries", tb.Len())
			}
		})
	}
	checkInvariants(t, tb)
}

// TestInsertDRIgnoresReply: DR/TUN have no reply path; a Reply key given to
// Insert is ignored, cleared in *e, never indexed, and need not share the
// original's shard.
func TestInsertDRIgnoresReply(t *testing.T) {
	for _, m := range []Method{MethodDR, MethodTUN} {
		t.Run(m.String(), func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 256, Shards: 4})
			e := conn(1, ProtoTCP, MethodNAT, 1)
			e.Method = m
			for p := uint16(1); tb.ShardOf(e.Reply.Dst, e.Reply.DstPort) == tb.ShardOf(e.Orig.Src, e.Orig.SrcPort); p++ {
				e.Reply.DstPort = p
			}
			reply := e.Reply
			if err := tb.Insert(&e, TCPSyn, 0); err != nil {
				t.Fatalf("Insert: %v", err)
			}
			if e.Reply != (Key{}) {
				t.Fatalf("Insert left Reply %+v, want it cleared", e.Reply)
			}
			var out Entry
			if !tb.Get(DirOrig, &e.Orig, 0, &out) || out != e {
				t.Fatalf("Get %+v, want %+v", out, e)
			}
			if st := tb.Lookup(DirReply, &reply, TCPAck, 0, nil); st != NotFound {
				t.Fatalf("reply lookup of a %v entry: %v", m, st)
			}
			checkInvariants(t, tb)
		})
	}
}

func TestInsertExists(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 256, Shards: 4})
	a := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 1), TCPSyn, 0)

	same := conn(1, ProtoTCP, MethodNAT, 2)
	if err := tb.Insert(&same, TCPSyn, sec); err != ErrExists {
		t.Fatalf("second insert of the same orig key: %v, want ErrExists", err)
	}
	// Another client whose reply key collides with a's (a FULLNAT local
	// endpoint picked twice).
	other := conn(3, ProtoTCP, MethodFullNAT, 1)
	other.Reply = a.Reply
	for p := uint16(1); tb.ShardOf(other.Orig.Src, other.Orig.SrcPort) != tb.ShardOf(other.Reply.Dst, other.Reply.DstPort); p++ {
		other.Orig.SrcPort = p
	}
	if err := tb.Insert(&other, TCPSyn, sec); err != ErrExists {
		t.Fatalf("insert with a taken reply key: %v, want ErrExists", err)
	}
	// The same orig key as UDP is another connection.
	udp := conn(1, ProtoUDP, MethodNAT, 1)
	mustInsert(t, tb, udp, 0, sec)
	// An expired holder does not block.
	late := conn(1, ProtoTCP, MethodNAT, 2)
	if err := tb.Insert(&late, TCPSyn, 61*sec); err != nil {
		t.Fatalf("insert over an expired SYN_RECV entry: %v", err)
	}
	st := tb.Stats()
	if st.Exists != 2 || st.Inserts != 3 || st.Expired != 1 {
		t.Fatalf("stats %+v, want 2 exists, 3 inserts, 1 expired", st)
	}
	checkInvariants(t, tb)
}

// TestNewConnectionRules: what a miss reports and what may be inserted.
func TestNewConnectionRules(t *testing.T) {
	tests := []struct {
		name       string
		sloppy     bool
		proto      uint8
		dir        Dir
		flags      uint8
		wantStatus Status
		wantInsert error
		wantState  State
	}{
		{"syn", false, ProtoTCP, DirOrig, TCPSyn, NotFound, nil, StateSynRecv},
		{"syn+ack", false, ProtoTCP, DirOrig, TCPSyn | TCPAck, NotFound, nil, StateSynRecv},
		{"ack", false, ProtoTCP, DirOrig, TCPAck, Invalid, ErrNotOpener, 0},
		{"fin", false, ProtoTCP, DirOrig, TCPFin, Invalid, ErrNotOpener, 0},
		{"syn+rst", false, ProtoTCP, DirOrig, TCPSyn | TCPRst, Invalid, ErrNotOpener, 0},
		{"sloppy ack becomes ESTABLISHED", true, ProtoTCP, DirOrig, TCPAck, NotFound, nil, StateEstablished},
		{"sloppy fin becomes CLOSE", true, ProtoTCP, DirOrig, TCPFin | TCPAck, NotFound, nil, StateClose},
		{"sloppy no flags becomes CLOSE", true, ProtoTCP, DirOrig, 0, NotFound, nil, StateClose},
		{"sloppy syn+rst never", true, ProtoTCP, DirOrig, TCPSyn | TCPRst, Invalid, ErrNotOpener, 0},
		{"sloppy rst never", true, ProtoTCP, DirOrig, TCPRst, Invalid, ErrNotOpener, 0},
		{"udp", false, ProtoUDP, DirOrig, 0, NotFound, nil, StateUDP},
		{"reply miss is not found", false, ProtoTCP, DirReply, TCPAck, NotFound, nil, StateSynRecv},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 64, SloppyTCP: tc.sloppy})
			e := conn(5, tc.proto, MethodNAT, 3)
			k := e.Orig
			if tc.dir == DirReply {
				k = e.Reply
			}
			if st := tb.Lookup(tc.dir, &k, tc.flags, 0, nil); st != tc.wantStatus {
				t.Fatalf("Lookup miss: %v, want %v", st, tc.wantStatus)
			}
			if tc.dir == DirReply {
				return
			}
			err := tb.Insert(&e, tc.flags, 0)
			if err != tc.wantInsert {
				t.Fatalf("Insert: %v, want %v", err, tc.wantInsert)
			}
			if err != nil {
				return
			}
			if e.State != tc.wantState {
				t.Fatalf("Insert set state %v, want %v", e.State, tc.wantState)
			}
			a, i := tb.Conns(3)
			if act := kernelActive(t, tc.proto, tc.wantState); act && (a != 1 || i != 0) || !act && (a != 0 || i != 1) {
				t.Fatalf("Conns %d/%d after inserting a %v entry", a, i, tc.wantState)
			}
			checkInvariants(t, tb)
		})
	}
}

type step struct {
	dir    Dir
	flags  uint8
	status Status
	state  State
	active int32 // Conns of the entry's dest afterwards
	inact  int32
}

func runSteps(t *testing.T, tb *Table, e Entry, steps []step) {
	t.Helper()
	now := int64(0)
	for i, s := range steps {
		now += sec
		k := e.Orig
		if s.dir == DirReply {
			k = e.Reply
		}
		var out Entry
		if st := tb.Lookup(s.dir, &k, s.flags, now, &out); st != s.status {
			t.Fatalf("step %d (%v %s): status %v, want %v", i, s.dir, flagString(s.flags), st, s.status)
		}
		if s.status == Found || s.status == Reused {
			if out.State != s.state {
				t.Fatalf("step %d (%v %s): state %v, want %v", i, s.dir, flagString(s.flags), out.State, s.state)
			}
			if out.Orig != e.Orig || out.Reply != e.Reply || out.Dest != e.Dest || out.Service != e.Service || out.Method != e.Method || out.Flags != e.Flags {
				t.Fatalf("step %d: copied out %+v, inserted %+v", i, out, e)
			}
		}
		if a, in := tb.Conns(e.Dest); a != s.active || in != s.inact {
			t.Fatalf("step %d (%v %s): Conns %d/%d, want %d/%d", i, s.dir, flagString(s.flags), a, in, s.active, s.inact)
		}
		checkInvariants(t, tb)
	}
}

func TestNATLifecycle(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64})
	e := mustInsert(t, tb, conn(9, ProtoTCP, MethodNAT, 4), TCPSyn, 0)
	runSteps(t, tb, e, []step{
		{DirReply, TCPSyn | TCPAck, Found, StateSynRecv, 1, 0}, // OUTPUT syn from SYN_RECV: active
		{DirOrig, TCPAck, Found, StateEstablished, 1, 0},
		{DirOrig, TCPPsh | TCPAck, Found, StateEstablished, 1, 0},
		{DirReply, TCPAck, Found, StateEstablished, 1, 0},
		{DirOrig, TCPFin | TCPAck, Found, StateCloseWait, 0, 1}, // INPUT fin from ESTABLISHED
		{DirReply, TCPFin | TCPAck, Found, StateTimeWait, 0, 1}, // OUTPUT fin from CLOSE_WAIT
		{DirOrig, TCPAck, Found, StateTimeWait, 0, 1},
		{DirOrig, TCPSyn, Reused, StateTimeWait, 0, 0}, // conn reuse: the old entry is gone
		{DirOrig, TCPAck, Invalid, 0, 0, 0},
	})
	if st := tb.Stats(); st.Reused != 1 || st.Entries != 0 {
		t.Fatalf("stats %+v, want 1 reused and no entries", st)
	}
}

func TestDRLifecycle(t *testing.T) {
	for _, m := range []Method{MethodDR, MethodTUN} {
		t.Run(m.String(), func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 64})
			e := mustInsert(t, tb, conn(9, ProtoTCP, m, 4), TCPSyn, 0)
			if e.State != StateSynRecv {
				t.Fatalf("first state %v, want SYN_RECV", e.State)
			}
			runSteps(t, tb, e, []step{
				{DirOrig, TCPAck, Found, StateEstablished, 1, 0},
				{DirOrig, TCPFin | TCPAck, Found, StateFinWait, 0, 1}, // INPUT-ONLY fin from ESTABLISHED
				{DirOrig, TCPAck, Found, StateFinWait, 0, 1},
				// Mode 1 does not reuse FIN_WAIT: the SYN is a transition.
				{DirOrig, TCPSyn, Found, StateSynRecv, 1, 0}, // SYN_RECV is active again
				{DirOrig, TCPRst, Found, StateSynRecv, 1, 0}, // INPUT-ONLY rst from SYN_RECV
				{DirOrig, TCPAck, Found, StateEstablished, 1, 0},
				{DirOrig, TCPRst | TCPAck, Found, StateClose, 0, 1},
				{DirOrig, TCPSyn, Reused, StateClose, 0, 0},
			})
			// DR/TUN have no reply key: a reply lookup never finds them.
			k := e.Orig
			k.Src, k.Dst, k.SrcPort, k.DstPort = e.Orig.Dst, e.Orig.Src, e.Orig.DstPort, e.Orig.SrcPort
			if st := tb.Lookup(DirReply, &k, TCPAck, 0, nil); st != NotFound {
				t.Fatalf("reply lookup of a %v entry: %v", m, st)
			}
		})
	}
}

func TestUDPLifecycle(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64})
	e := mustInsert(t, tb, conn(2, ProtoUDP, MethodNAT, 1), TCPRst, 0)
	if e.State != StateUDP {
		t.Fatalf("UDP entry state %v", e.State)
	}
	runSteps(t, tb, e, []step{
		{DirOrig, 0, Found, StateUDP, 0, 1},
		{DirReply, TCPSyn, Found, StateUDP, 0, 1},
		{DirOrig, TCPSyn, Found, StateUDP, 0, 1}, // no reuse for UDP
	})
}

func TestConnReuse(t *testing.T) {
	tests := []struct {
		name   string
		mode   int
		method Method
		state  State
		flags  uint8
		want   Status
	}{
		{"default mode, NAT TIME_WAIT", ConnReuseDefault, MethodNAT, StateTimeWait, TCPSyn, Reused},
		{"default mode, NAT CLOSE", ConnReuseDefault, MethodNAT, StateClose, TCPSyn, Reused},
		{"default mode, syn+ack counts as syn", ConnReuseDefault, MethodNAT, StateTimeWait, TCPSyn | TCPAck, Reused},
		{"default mode, ack on TIME_WAIT is a packet", ConnReuseDefault, MethodNAT, StateTimeWait, TCPAck, Found},
		{"default mode, NAT ESTABLISHED", ConnReuseDefault, MethodNAT, StateEstablished, TCPSyn, Found},
		{"default mode, NAT FIN_WAIT", ConnReuseDefault, MethodNAT, StateFinWait, TCPSyn, Found},
		{"default mode, DR FIN_WAIT", ConnReuseDefault, MethodDR, StateFinWait, TCPSyn, Found},
		{"default mode, DR TIME_WAIT", ConnReuseDefault, MethodDR, StateTimeWait, TCPSyn, Reused},
		{"mode 2, DR FIN_WAIT", ConnReuseFinWait, MethodDR, StateFinWait, TCPSyn, Reused},
		{"mode 2, TUN FIN_WAIT", ConnReuseFinWait, MethodTUN, StateFinWait, TCPSyn, Reused},
		{"mode 2, NAT FIN_WAIT (has output)", ConnReuseFinWait, MethodNAT, StateFinWait, TCPSyn, Found},
		{"mode 2, TIME_WAIT", ConnReuseFinWait, MethodNAT, StateTimeWait, TCPSyn, Reused},
		{"mode 3, DR FIN_WAIT", 3, MethodDR, StateFinWait, TCPSyn, Reused},
		{"off, TIME_WAIT", ConnReuseOff, MethodNAT, StateTimeWait, TCPSyn, Found},
		{"off, DR FIN_WAIT", ConnReuseOff, MethodDR, StateFinWait, TCPSyn, Found},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 64, ConnReuseMode: tc.mode})
			e := mustInsert(t, tb, conn(4, ProtoTCP, tc.method, 2), TCPSyn, 0)
			forceState(t, tb, &e.Orig, tc.state, 0)
			var out Entry
			if st := tb.Lookup(DirOrig, &e.Orig, tc.flags, sec, &out); st != tc.want {
				t.Fatalf("Lookup: %v, want %v", st, tc.want)
			}
			if tc.want == Reused {
				if out.State != tc.state || out.Orig != e.Orig || out.Dest != e.Dest {
					t.Fatalf("Reused copied out %+v, want the old entry in %v", out, tc.state)
				}
				if tb.Len() != 0 {
					t.Fatalf("old entry still held after Reused")
				}
				// The caller schedules anew and inserts the same key.
				again := conn(4, ProtoTCP, tc.method, 3)
				again = mustInsert(t, tb, again, tc.flags, sec)
				if a, i := tb.Conns(2); a != 0 || i != 0 {
					t.Fatalf("old dest still counted %d/%d", a, i)
				}
				// The SYN took it to SYN_RECV: active.
				if a, i := tb.Conns(3); a != 1 || i != 0 || !kernelActive(t, ProtoTCP, again.State) {
					t.Fatalf("new dest counted %d/%d in %v, want 1/0", a, i, again.State)
				}
			}
			checkInvariants(t, tb)
		})
	}
}

// TestDefaultTimeouts checks, for every state, that an entry a packet moved
// into that state at t0 is alive until t0+timeout and reaped at exactly
// t0+timeout (1 ms resolution).
func TestDefaultTimeouts(t *testing.T) {
	spec := parseKernel(t, kernelTCPStates)
	for target := State(0); int(target) < numTCPStates; target++ {
		t.Run(target.String(), func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 64, ConnReuseMode: ConnReuseOff})
			// Find a packet that moves some state into target.
			var from State
			var dir Dir
			var flags uint8
			found := false
		search:
			for _, d := range []Dir{DirOrig, DirReply} {
				for f := State(0); int(f) < numTCPStates; f++ {
					for _, fl := range allFlags {
						if f != target && spec.next(t, MethodNAT, d, fl, f) == target {
							from, dir, flags, found = f, d, fl, true
							break search
						}
					}
				}
			}
			e := mustInsert(t, tb, conn(3, ProtoTCP, MethodNAT, 1), TCPSyn, 0)
			t0 := 1 * sec
			if found {
				forceState(t, tb, &e.Orig, from, 0)
				k := e.Orig
				if dir == DirReply {
					k = e.Reply
				}
				var out Entry
				if st := tb.Lookup(dir, &k, flags, t0, &out); st != Found || out.State != target {
					t.Fatalf("%v %s from %v: %v %v, want found %v", dir, flagString(flags), from, st, out.State, target)
				}
			} else {
				// LISTEN is entered only by the FTP helper in the kernel.
				forceState(t, tb, &e.Orig, target, t0)
			}
			timeout := int64(kernelTimeout(t, target)) * sec
			if got := expiresIn(t, tb, &e.Orig, t0); got != timeout {
				t.Fatalf("expires in %d, want %d", got, timeout)
			}
			if n := tb.Reap(t0+timeout-1e6, 1000); n != 0 {
				t.Fatalf("reaped %d entries 1 ms before the %v timeout", n, target)
			}
			if n := tb.Reap(t0+timeout, 1000); n != 1 {
				t.Fatalf("reaped %d entries at the %v timeout, want 1", n, target)
			}
			if a, i := tb.Conns(1); a != 0 || i != 0 || tb.Len() != 0 {
				t.Fatalf("after expiry: Conns %d/%d, Len %d", a, i, tb.Len())
			}
		})
	}
	t.Run("UDP", func(t *testing.T) {
		tb := mustNew(t, Config{MaxEntries: 64})
		e := mustInsert(t, tb, conn(3, ProtoUDP, MethodDR, 1), 0, 0)
		if st := tb.Lookup(DirOrig, &e.Orig, 0, 100*sec, nil); st != Found {
			t.Fatalf("lookup: %v", st)
		}
		if n := tb.Reap(400*sec-1e6, 1000); n != 0 {
			t.Fatalf("reaped %d 1 ms before the UDP timeout", n)
		}
		if n := tb.Reap(400*sec, 1000); n != 1 {
			t.Fatalf("reaped %d at the UDP timeout, want 1", n)
		}
	})
}

func TestSetTimeouts(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64})
	old := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 1), TCPSyn, 0)
	if st := tb.Lookup(DirOrig, &old.Orig, TCPAck, 0, nil); st != Found {
		t.Fatal(st)
	}
	// ipvsadm --set 5 7 9: tcp, tcpfin, udp; 0 keeps a value; too large clamps.
	tb.SetTimeouts(Timeouts{Established: 5, FinWait: 7, UDP: 9, SynRecv: -3, Close: MaxTimeout * 2})
	want := kernelDefaults(t)
	want.Established, want.FinWait, want.UDP, want.Close = 5, 7, 9, MaxTimeout
	if got := tb.Timeouts(); got != want {
		t.Fatalf("Timeouts %+v, want %+v", got, want)
	}
	// The old entry keeps its timer until its next packet.
	if got := expiresIn(t, tb, &old.Orig, 0); got != 900*sec {
		t.Fatalf("old entry expires in %d, want 900 s until its next packet", got)
	}
	if st := tb.Lookup(DirOrig, &old.Orig, TCPAck, sec, nil); st != Found {
		t.Fatal(st)
	}
	if got := expiresIn(t, tb, &old.Orig, sec); got != 5*sec {
		t.Fatalf("refreshed entry expires in %d, want 5 s", got)
	}
	u := mustInsert(t, tb, conn(2, ProtoUDP, MethodNAT, 1), 0, sec)
	if got := expiresIn(t, tb, &u.Orig, sec); got != 9*sec {
		t.Fatalf("new UDP entry expires in %d, want 9 s", got)
	}
	if n := tb.Reap(10*sec, 1000); n != 2 {
		t.Fatalf("reaped %d, want 2", n)
	}
}

func TestLookupExpired(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64})
	e := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 1), TCPSyn, 0)
	if st := tb.Lookup(DirReply, &e.Reply, TCPAck, 60*sec, nil); st != NotFound {
		t.Fatalf("lookup of an expired entry: %v, want not found", st)
	}
	if tb.Len() != 0 {
		t.Fatalf("expired entry still held")
	}
	if a, i := tb.Conns(1); a != 0 || i != 0 {
		t.Fatalf("expired entry still counted %d/%d", a, i)
	}
	if st := tb.Stats(); st.Expired != 1 {
		t.Fatalf("stats %+v, want 1 expired", st)
	}
	checkInvariants(t, tb)
}

// TestFullTable: refused inserts are counted, ESTABLISHED entries survive,
// the oldest non-ESTABLISHED entry goes first.
func TestFullTable(t *testing.T) {
	const capacity = 32
	tb := mustNew(t, Config{MaxEntries: capacity, Shards: 1})
	var es, other []Entry
	for i := range capacity {
		e := mustInsert(t, tb, conn(i, ProtoTCP, MethodNAT, uint32(i%3)), TCPSyn, int64(i)*sec)
		if i%4 == 0 {
			if st := tb.Lookup(DirOrig, &e.Orig, TCPAck, int64(i)*sec, nil); st != Found {
				t.Fatal(st)
			}
			es = append(es, e)
		} else {
			other = append(other, e)
		}
	}
	// An ESTABLISHED entry that closes re-enters the list as its newest member.
	closing := es[0]
	es = es[1:]
	if st := tb.Lookup(DirOrig, &closing.Orig, TCPFin, 40*sec, nil); st != Found {
		t.Fatal(st)
	}
	other = append(other, closing)

	now := 41 * sec
	for i, victim := range other {
		e := mustInsert(t, tb, conn(1000+i, ProtoTCP, MethodNAT, 0), TCPSyn, now)
		if st := tb.Lookup(DirOrig, &victim.Orig, TCPAck, now, nil); st == Found {
			t.Fatalf("insert %d: the oldest non-ESTABLISHED entry %d survived", i, i)
		}
		for j := i + 1; j < len(other); j++ {
			if !present(tb, &other[j], now) {
				t.Fatalf("insert %d evicted entry %d instead of %d", i, j, i)
			}
		}
		// The new entries are the newest non-ESTABLISHED ones; turn them
		// ESTABLISHED so that the next victim is the next old one.
		if st := tb.Lookup(DirOrig, &e.Orig, TCPAck, now, nil); st != Found {
			t.Fatal(st)
		}
		checkInvariants(t, tb)
	}
	// Every entry is ESTABLISHED now: the table refuses.
	extra := conn(5000, ProtoTCP, MethodNAT, 0)
	if err := tb.Insert(&extra, TCPSyn, now); err != ErrFull {
		t.Fatalf("insert into a table of ESTABLISHED entries: %v, want ErrFull", err)
	}
	for _, e := range es {
		if !present(tb, &e, now) {
			t.Fatalf("ESTABLISHED entry %v was evicted", e.Orig)
		}
	}
	st := tb.Stats()
	if st.Full != 1 || st.Evicted != uint64(len(other)) || st.Entries != capacity {
		t.Fatalf("stats %+v, want 1 full, %d evicted, %d entries", st, len(other), capacity)
	}
	// An expired victim is counted as expired, not evicted.
	if st := tb.Lookup(DirOrig, &es[0].Orig, TCPRst, now, nil); st != Found {
		t.Fatal(st)
	}
	if err := tb.Insert(&extra, TCPSyn, now+11*sec); err != nil {
		t.Fatalf("insert after an entry closed: %v", err)
	}
	if st2 := tb.Stats(); st2.Evicted != st.Evicted || st2.Expired != st.Expired+1 {
		t.Fatalf("stats %+v after reusing an expired CLOSE entry, want one more expired", st2)
	}
	checkInvariants(t, tb)
}

// present reports whether e is in tb without changing it (Walk).
func present(tb *Table, e *Entry, now int64) bool {
	found := false
	tb.Walk(now, func(x *Entry, _ int64) bool {
		found = x.Orig == e.Orig
		return !found
	})
	return found
}

func TestRemoveDest(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 20000, Shards: 8, MaxDests: 4})
	want := 0
	for i := range 10000 {
		d := uint32(i % 3)
		e := mustInsert(t, tb, conn(i, ProtoTCP, Method(i%4), d), TCPSyn, 0)
		if i%2 == 0 {
			tb.Lookup(DirOrig, &e.Orig, TCPAck, 0, nil)
		}
		if d == 1 {
			want++
		}
	}
	if n := tb.RemoveDest(1, sec); n != want {
		t.Fatalf("RemoveDest removed %d, want %d", n, want)
	}
	if a, i := tb.Conns(1); a != 0 || i != 0 {
		t.Fatalf("Conns(1) %d/%d after RemoveDest", a, i)
	}
	if tb.Len() != 10000-want {
		t.Fatalf("Len %d, want %d", tb.Len(), 10000-want)
	}
	if st := tb.Stats(); st.Removed != uint64(want) {
		t.Fatalf("stats %+v, want %d removed", st, want)
	}
	checkInvariants(t, tb)
}

func TestReapBudget(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 4096, Shards: 4})
	for i := range 3000 {
		mustInsert(t, tb, conn(i, ProtoUDP, MethodNAT, 0), 0, 0)
	}
	if n := tb.Reap(299*sec, 1<<30); n != 0 {
		t.Fatalf("reaped %d live entries", n)
	}
	// Small budgets: no call looks at more than its budget buys (a budget is in
	// records of capacity: a shard's whole pass over its pages costs its cap, so 100
	// buys 100 × refs/cap of its records and index lines), and round-robin calls
	// together get everything.
	most := 0
	for i := range tb.shards {
		sh := &tb.shards[i].shard
		most = max(most, (100*len(sh.recs)+int(sh.cap)-1)/int(sh.cap)+1)
	}
	total, calls := 0, 0
	for tb.Len() > 0 {
		n := tb.Reap(300*sec, 100)
		if n > most {
			t.Fatalf("a budget of 100 reaped %d, more than the %d records it buys", n, most)
		}
		total += n
		if calls++; calls > 1000 {
			t.Fatalf("reaping stalled with %d left", tb.Len())
		}
	}
	if total != 3000 {
		t.Fatalf("reaped %d in all, want 3000", total)
	}
	if calls < 30 {
		t.Fatalf("3000 entries reaped in %d calls of budget 100", calls)
	}
	if n := tb.Reap(300*sec, 0); n != 0 {
		t.Fatalf("zero budget reaped %d", n)
	}
	checkInvariants(t, tb)
}

// TestFullNATShardContract: a FULLNAT local port chosen by the documented
// rule works in both directions.
func TestFullNATShardContract(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 4096})
	local := v4(198, 18, 2, 1)
	taken := make(map[uint16]bool)
	for i := range 200 {
		e := conn(i, ProtoTCP, MethodFullNAT, 0)
		want := tb.ShardOf(e.Orig.Src, e.Orig.SrcPort)
		lport := uint16(20000)
		for taken[lport] || tb.ShardOf(local, lport) != want {
			lport++
		}
		taken[lport] = true
		e.Reply = Key{Src: rs1, Dst: local, SrcPort: 8080, DstPort: lport, Proto: ProtoTCP}
		mustInsert(t, tb, e, TCPSyn, 0)
		var out Entry
		if st := tb.Lookup(DirReply, &e.Reply, TCPSyn|TCPAck, 0, &out); st != Found || out.Orig != e.Orig {
			t.Fatalf("reply lookup: %v %+v", st, out.Orig)
		}
	}
	checkInvariants(t, tb)
}

// TestHashSpread: shard choice and index home slots (an original key's, and the NAT
// reply key's, homed by the client endpoint) are spread evenly for the patterns real
// traffic has (one client address with sequential ports, many addresses), for every
// seed. A chi-square statistic of 64 buckets has
// 63 degrees of freedom (mean 63, sd 11); 160 is beyond p = 1e-9, while a
// lattice-shaped hash scores in the thousands for some seeds.
func TestHashSpread(t *testing.T) {
	chi2 := func(counts []float64, mean float64) float64 {
		x := 0.0
		for _, c := range counts {
			x += (c - mean) * (c - mean) / mean
		}
		return x
	}
	patterns := []struct {
		name string
		key  func(i int) Key
	}{
		{"one IPv4 client, sequential ports", func(i int) Key {
			return Key{Src: v4(198, 18, 0, 1), Dst: vip, SrcPort: uint16(i), DstPort: 80, Proto: ProtoTCP}
		}},
		{"IPv4 clients, 256 sequential ports each", func(i int) Key {
			return Key{Src: v4(198, 18, byte(i>>16), byte(i>>8)), Dst: vip, SrcPort: uint16(1024 + i&255), DstPort: 80, Proto: ProtoTCP}
		}},
		{"IPv4 clients, few ports each", func(i int) Key {
			return Key{Src: v4(198, 18, byte(i>>10), byte(i>>2)), Dst: vip, SrcPort: uint16(40000 + i&3), DstPort: 443, Proto: ProtoTCP}
		}},
		{"IPv6 clients", func(i int) Key {
			return Key{Src: v6(uint16(i>>8), uint16(i)), Dst: vip, SrcPort: 5555, DstPort: 53, Proto: ProtoUDP}
		}},
	}
	const samples = 1 << 14
	for _, p := range patterns {
		t.Run(p.name, func(t *testing.T) {
			for range 20 {
				tb := mustNew(t, Config{MaxEntries: 1 << 16})
				shards := make([]float64, 64)
				homes := make([]float64, 64)
				replyHomes := make([]float64, 64)
				for i := range samples {
					k := p.key(i)
					shards[tb.ShardOf(k.Src, k.SrcPort)]++
					homes[home(hashParts(&tb.seed, &k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto), 64)]++
					replyHomes[home(homeHash(&tb.seed, &k.Src, k.SrcPort), 64)]++
				}
				if x := chi2(shards, samples/64); x > 160 {
					t.Fatalf("shard spread chi2 %.0f: %v", x, shards)
				}
				if x := chi2(homes, samples/64); x > 160 {
					t.Fatalf("home slot spread chi2 %.0f: %v", x, homes)
				}
				if x := chi2(replyHomes, samples/64); x > 160 {
					t.Fatalf("reply home slot spread chi2 %.0f: %v", x, replyHomes)
				}
			}
		})
	}
}

// TestReplyHome: a reply key's probe starts at the home slot of its destination
// endpoint alone, so that for a NAT connection it is the slot LookupBatch prefetches
// from the original key (its source endpoint) before the connection exists: keys that
// differ in anything but the destination endpoint share it, and the tag still comes
// from the whole key.
func TestReplyHome(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 12, Shards: 1})
	defer tb.Close()
	sh := &tb.shards[0].shard
	for i := range 200 {
		e := conn(i, ProtoTCP, MethodNAT, 0)
		want := home(homeHash(&tb.seed, &e.Orig.Src, e.Orig.SrcPort), len(sh.idx))
		r := e.Reply
		if got := home(tb.replyHash(&r), len(sh.idx)); got != want {
			t.Fatalf("conn %d: reply key's home %d, want %d (the client endpoint's)", i, got, want)
		}
		other := r
		other.Src, other.SrcPort, other.Proto = v4(10, 9, 9, byte(i)), uint16(9000+i), ProtoUDP
		if got := home(tb.replyHash(&other), len(sh.idx)); got != want {
			t.Fatalf("conn %d: reply key from another real server homed at %d, want %d", i, got, want)
		}
		full := hashParts(&tb.seed, &r.Src, &r.Dst, r.SrcPort, r.DstPort, r.Proto)
		if got := tb.replyHash(&r); got>>tb.tagShift != full>>tb.tagShift {
			t.Fatalf("conn %d: reply key's tag %#x, want the whole key's %#x", i, got>>tb.tagShift, full>>tb.tagShift)
		}
	}
}

// TestSharedReplyEndpoint: FULLNAT connections whose reply keys share one local
// endpoint (one home slot, a cluster longer than a slot's distance field can say)
// are all found in both directions, through removals and reinsertions, with the
// index intact.
func TestSharedReplyEndpoint(t *testing.T) {
	const n = 300
	tb := mustNew(t, Config{MaxEntries: 1 << 11, Shards: 1, MaxDests: 4})
	defer tb.Close()
	entry := func(i int) Entry {
		e := conn(i, ProtoTCP, MethodFullNAT, uint32(i%4))
		e.Reply = Key{Src: v4(10, 1, byte(i>>8), byte(i)), Dst: v4(10, 0, 0, 100), SrcPort: 8080, DstPort: 5000, Proto: ProtoTCP}
		return e
	}
	check := func(gone func(i int) bool) {
		t.Helper()
		checkInvariants(t, tb)
		for i := range n {
			e := entry(i)
			for _, dir := range []Dir{DirOrig, DirReply} {
				k := &e.Orig
				if dir == DirReply {
					k = &e.Reply
				}
				var got Entry
				ok := tb.Get(dir, k, 0, &got)
				if ok == gone(i) || ok && got.Orig != e.Orig {
					t.Fatalf("conn %d %v: Get = %v (%v), want %v", i, dir, ok, got.Orig, !gone(i))
				}
			}
		}
	}
	for i := range n {
		mustInsert(t, tb, entry(i), TCPSyn, 0)
	}
	check(func(int) bool { return false })
	if got := tb.RemoveDest(1, 0); got != n/4 {
		t.Fatalf("RemoveDest(1) removed %d, want %d", got, n/4)
	}
	check(func(i int) bool { return i%4 == 1 })
	for i := 1; i < n; i += 4 {
		mustInsert(t, tb, entry(i), TCPSyn, 0)
	}
	check(func(int) bool { return false })
}

// TestGet: a read that is not a packet changes nothing.
func TestGet(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 64})
	e := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 2), TCPSyn, 0)
	tests := []struct {
		name string
		dir  Dir
		key  Key
		now  int64
		want bool
	}{
		{"orig", DirOrig, e.Orig, sec, true},
		{"reply", DirReply, e.Reply, sec, true},
		{"reply key as orig", DirOrig, e.Reply, sec, false},
		{"unknown", DirOrig, conn(2, ProtoTCP, MethodNAT, 2).Orig, sec, false},
		{"bad direction", Dir(3), e.Orig, sec, false},
		{"expired", DirOrig, e.Orig, 60 * sec, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out Entry
			if got := tb.Get(tc.dir, &tc.key, tc.now, &out); got != tc.want {
				t.Fatalf("Get = %v, want %v", got, tc.want)
			}
			if tc.want && (out.Orig != e.Orig || out.State != StateSynRecv) {
				t.Fatalf("Get copied %+v", out)
			}
			if got := expiresIn(t, tb, &e.Orig, 0); got != 60*sec {
				t.Fatalf("Get moved the timer: expires in %d", got)
			}
			if a, i := tb.Conns(2); a != 1 || i != 0 || tb.Len() != 1 { // SYN_RECV: active
				t.Fatalf("Get changed counts: %d/%d, Len %d", a, i, tb.Len())
			}
		})
	}
	var out Entry
	if n := testing.AllocsPerRun(100, func() { tb.Get(DirReply, &e.Reply, sec, &out) }); n != 0 {
		t.Fatalf("Get allocates %v times", n)
	}
}

func TestConnsOutOfRange(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 16, MaxDests: 2})
	if a, i := tb.Conns(2); a != 0 || i != 0 {
		t.Fatalf("Conns(out of range) = %d/%d", a, i)
	}
	if st := tb.Lookup(Dir(7), &Key{}, 0, 0, nil); st != Invalid {
		t.Fatalf("Lookup with a bad direction: %v", st)
	}
}

func TestAllocs(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 14})
	es := make([]Entry, 4000)
	for i := range es {
		es[i] = conn(i, ProtoTCP, Method(i%4), uint32(i%5))
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if err := tb.Insert(&es[i], TCPSyn, 0); err != nil {
			t.Fatal(err)
		}
		i++
	}); n != 0 {
		t.Errorf("Insert allocates %v times", n)
	}
	var out Entry
	j := 0
	if n := testing.AllocsPerRun(1000, func() {
		if st := tb.Lookup(DirOrig, &es[j%i].Orig, TCPAck, sec, &out); st != Found {
			t.Fatal(st)
		}
		j++
	}); n != 0 {
		t.Errorf("Lookup hit allocates %v times", n)
	}
	miss := conn(9999, ProtoTCP, MethodNAT, 0)
	if n := testing.AllocsPerRun(1000, func() {
		tb.Lookup(DirReply, &miss.Reply, TCPAck, sec, &out)
	}); n != 0 {
		t.Errorf("Lookup miss allocates %v times", n)
	}
	if n := testing.AllocsPerRun(10, func() { tb.Reap(2000*sec, 5000) }); n != 0 {
		t.Errorf("Reap allocates %v times", n)
	}
}

// TestInsertReplacesClosedReplyHolder: a new connection whose reply key is held by an
// older, closing connection (the client reused its port towards another virtual service
// on the same real server) takes the key; an ESTABLISHED holder keeps it.
func TestInsertReplacesClosedReplyHolder(t *testing.T) {
	tbl, err := New(Config{MaxEntries: 1024, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	client := [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 2}
	vipA := [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 100}
	vipB := [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 101}
	rs := [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 2, 15: 11}
	entry := func(vip [16]byte) *Entry {
		return &Entry{
			Orig:   Key{Src: client, Dst: vip, SrcPort: 40000, DstPort: 80, Proto: ProtoTCP},
			Reply:  Key{Src: rs, Dst: client, SrcPort: 80, DstPort: 40000, Proto: ProtoTCP},
			Method: MethodNAT,
		}
	}
	if err := tbl.Insert(entry(vipA), TCPSyn, 0); err != nil {
		t.Fatal(err)
	}
	var out Entry
	// Established: the new connection is refused.
	tbl.Lookup(DirReply, &entry(vipA).Reply, TCPSyn|TCPAck, 1e6, &out)
	tbl.Lookup(DirOrig, &entry(vipA).Orig, TCPAck, 2e6, &out)
	if out.State != StateEstablished {
		t.Fatalf("state %v, want ESTABLISHED", out.State)
	}
	if err := tbl.Insert(entry(vipB), TCPSyn, 3e6); err != ErrExists {
		t.Fatalf("insert over an ESTABLISHED reply holder: %v, want ErrExists", err)
	}
	// Finished (client FIN, server FIN+ACK, client ACK): the new connection takes the key.
	tbl.Lookup(DirOrig, &entry(vipA).Orig, TCPFin|TCPAck, 4e6, &out)
	tbl.Lookup(DirReply, &entry(vipA).Reply, TCPFin|TCPAck, 5e6, &out)
	tbl.Lookup(DirOrig, &entry(vipA).Orig, TCPAck, 5e6, &out)
	if out.State != StateTimeWait && out.State != StateClose {
		t.Fatalf("state %v after both FINs, want TIME_WAIT or CLOSE", out.State)
	}
	if err := tbl.Insert(entry(vipB), TCPSyn, 6e6); err != nil {
		t.Fatalf("insert over a closing reply holder: %v", err)
	}
	if st := tbl.Lookup(DirReply, &entry(vipB).Reply, TCPSyn|TCPAck, 7e6, &out); st != Found || out.Orig.Dst != vipB {
		t.Fatalf("reply key now finds %v %v, want the new connection", st, out.Orig.Dst)
	}
	if a, i := tbl.Conns(0); a != 1 || i != 0 { // the new one in SYN_RECV: active
		t.Fatalf("counts %d/%d after the replacement, want 1/0", a, i)
	}
}

// TestFindFar: on a full shard (index load 5/6) some keys lie further than
// LookupBatch's hint window (8 slots) from home and some homes are among the index's
// last 8 slots (their probes wrap); find finds every key in both directions, and
// not absent keys.
func TestFindFar(t *testing.T) {
	const n = 4096
	tb := mustNew(t, Config{MaxEntries: n, Shards: 1})
	defer tb.Close()
	sh := &tb.shards[0].shard
	// n connections, 4 of them from client endpoints homed in the index's last 8 slots
	// (a NAT connection's two keys share a home, so n connections have only about n
	// homes, and chance alone leaves those slots without one in a few tables of 100).
	es := make([]Entry, 0, n)
	for i := range n - 4 {
		es = append(es, conn(i, ProtoTCP, MethodNAT, 0))
	}
	ns := sh.nslots()
	for j := 1 << 20; len(es) < n; j++ {
		if j > 1<<24 {
			t.Fatal("no client endpoint homed in the index's last 8 slots")
		}
		e := conn(j, ProtoTCP, MethodNAT, 0)
		if home(tb.origHash(&e.Orig), ns) >= ns-8 {
			es = append(es, e)
		}
	}
	for _, e := range es {
		mustInsert(t, tb, e, TCPSyn, 0)
	}
	far, wrapped := 0, 0
	for i, e := range es {
		for _, dir := range []Dir{DirOrig, DirReply} {
			k := &e.Orig
			if dir == DirReply {
				k = &e.Reply
			}
			h := tb.dirHash(dir, k)
			ref := tb.find(sh, h, dir, k)
			if ref == noIdx {
				t.Fatalf("conn %d %v: not found", i, dir)
			}
			var got Entry
			sh.recs[ref].copyOut(sh.coldOf(ref), &got)
			if got.Orig != e.Orig {
				t.Fatalf("conn %d %v: found %v", i, dir, got.Orig)
			}
			hm := home(h, ns)
			if hm+8 > ns {
				wrapped++
			}
			for d := 0; d < ns; d++ {
				if sh.idx[slotWord((hm+d)%ns)]&tb.refMask-1 == ref<<1|uint32(dir) {
					if d >= 8 {
						far++
					}
					break
				}
			}
		}
	}
	if far == 0 || wrapped == 0 {
		t.Fatalf("%d keys beyond 8 slots of home, %d homes in the index's last 8 slots: want some of each", far, wrapped)
	}
	t.Logf("%d of %d keys beyond 8 slots of home, %d with homes in the last 8 slots", far, 2*n, wrapped)
	for i := n; i < n+2000; i++ {
		e := conn(i, ProtoTCP, MethodNAT, 0)
		var out Entry
		if tb.Get(DirOrig, &e.Orig, 0, &out) || tb.Get(DirReply, &e.Reply, 0, &out) {
			t.Fatalf("absent conn %d found", i)
		}
	}
}

// TestKeyHash: keyHash, LookupBatch's one call for all the hashes, gives what keyShard,
// hashParts and (for the home) homeHash give, for random keys in both directions, one shard or 64, a random
// or a configured shard key; a bad direction is refused.
func TestKeyHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, cfg := range []Config{{MaxEntries: 64, Shards: 1}, {MaxEntries: 1 << 12}, {MaxEntries: 1 << 12, ShardKey: [ShardKeyLen]byte{1, 2, 3}}} {
		tb := mustNew(t, cfg)
		for range 2000 {
			var k Key
			for i := range k.Src {
				k.Src[i], k.Dst[i] = byte(rng.Uint32()), byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 {
				k.Src, k.Dst = v4(198, 18, byte(rng.Uint32()), byte(rng.Uint32())), v4(10, 0, 0, byte(rng.Uint32()))
			}
			k.SrcPort, k.DstPort, k.Proto = uint16(rng.Uint32()), uint16(rng.Uint32()), uint8(rng.Uint32())
			for _, dir := range []Dir{DirOrig, DirReply, 2} {
				wantSi, wantOK := tb.keyShard(dir, &k)
				si, h, ok := tb.keyHash(dir, &k)
				if ok != wantOK || !ok && (si != 0 || h != 0) {
					t.Fatalf("%+v: keyHash(%v) ok %v (%d, %#x), keyShard ok %v", cfg, dir, ok, si, h, wantOK)
				}
				if !ok {
					continue
				}
				// A key's hash is the whole key's with its low 32 bits (the home) from its
				// client endpoint's homeHash: an original key's source, a reply key's
				// destination.
				wantH := hashParts(&tb.seed, &k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto)
				if dir == DirReply {
					wantH = wantH>>32<<32 | homeHash(&tb.seed, &k.Dst, k.DstPort)&(1<<32-1)
				} else {
					wantH = wantH>>32<<32 | homeHash(&tb.seed, &k.Src, k.SrcPort)&(1<<32-1)
				}
				if si != wantSi || h != wantH {
					t.Fatalf("%+v: keyHash(%v, %v) = %d, %#x; keyShard, hashParts and homeHash give %d, %#x", cfg, dir, k, si, h, wantSi, wantH)
				}
			}
		}
		tb.Close()
	}
}

// TestPrior: Entry.Prior is the state a Found packet found, the one before its
// transition (IPVS's tcp_states: a FULLNAT client's SYN opens SYN_RECV, the real
// server's SYN+ACK keeps it, the client's ACK moves it to ESTABLISHED), and StateNone
// from Insert, Get and a miss.
func TestPrior(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 256, Shards: 4})
	e := conn(1, ProtoTCP, MethodFullNAT, 1)
	if err := tb.Insert(&e, TCPSyn, 0); err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if e.State != StateSynRecv || e.Prior != StateNone {
		t.Fatalf("Insert: state %v, prior %v; want SYN_RECV, NONE", e.State, e.Prior)
	}
	steps := []struct {
		dir          Dir
		flags        uint8
		prior, state State
	}{
		{DirReply, TCPSyn | TCPAck, StateSynRecv, StateSynRecv},
		{DirOrig, TCPAck, StateSynRecv, StateEstablished},
		{DirOrig, TCPAck | TCPPsh, StateEstablished, StateEstablished},
		{DirOrig, TCPFin | TCPAck, StateEstablished, StateCloseWait}, // input FIN: sES → sCW
	}
	for i, s := range steps {
		k := &e.Orig
		if s.dir == DirReply {
			k = &e.Reply
		}
		out := Entry{Prior: StateTimeWait} // overwritten
		if st := tb.Lookup(s.dir, k, s.flags, int64(i+1)*sec, &out); st != Found {
			t.Fatalf("step %d: %v", i, st)
		}
		if out.Prior != s.prior || out.State != s.state {
			t.Fatalf("step %d (%s): prior %v, state %v; want %v, %v", i, flagString(s.flags), out.Prior, out.State, s.prior, s.state)
		}
	}
	out := Entry{Prior: StateTimeWait}
	if !tb.Get(DirOrig, &e.Orig, 5*sec, &out) || out.Prior != StateNone {
		t.Fatalf("Get: prior %v, want NONE", out.Prior)
	}
}

// TestCrowded: the connections of one client endpoint share a home slot, and Insert
// refuses one whose home holds maxSameHome keys (ErrCrowded, counted): maxSameHome/2
// NAT connections (two keys each) or maxSameHome DR ones. Other
// clients still insert, everything held is found, the index stays sound.
func TestCrowded(t *testing.T) {
	for _, c := range []struct {
		m        Method
		min, max int
	}{{MethodNAT, maxSameHome / 2, maxSameHome / 2}, {MethodDR, maxSameHome, maxSameHome}} {
		tb := mustNew(t, Config{MaxEntries: 1 << 14, Shards: 1})
		cl := client(1)
		mk := func(i int) Entry {
			e := Entry{Orig: Key{Src: cl, Dst: vip, SrcPort: 5000, DstPort: uint16(1 + i), Proto: ProtoTCP}, Dest: 1, Method: c.m}
			if c.m.twoWay() {
				// A port-0 service: the real server's port is the one the client asked for.
				e.Reply = Key{Src: rs1, Dst: cl, SrcPort: uint16(1 + i), DstPort: 5000, Proto: ProtoTCP}
			}
			return e
		}
		held := 0
		for ; held < 4*maxSameHome; held++ {
			e := mk(held)
			err := tb.Insert(&e, TCPSyn, 0)
			if errors.Is(err, ErrCrowded) {
				break
			}
			if err != nil {
				t.Fatalf("%v: connection %d: %v", c.m, held, err)
			}
		}
		if held < c.min || held > c.max {
			t.Fatalf("%v: %d connections of one client endpoint held before ErrCrowded, want %d to %d", c.m, held, c.min, c.max)
		}
		t.Logf("%v: %d connections of one client endpoint held", c.m, held)
		e := mk(held + 1)
		if err := tb.Insert(&e, TCPSyn, 0); !errors.Is(err, ErrCrowded) {
			t.Fatalf("%v: the next connection of the crowded endpoint: %v, want ErrCrowded", c.m, err)
		}
		if st := tb.Stats(); st.Crowded != 2 || st.Entries != held {
			t.Fatalf("%v: stats %+v, want 2 refused as crowded and %d entries", c.m, st, held)
		}
		other := conn(7, ProtoTCP, c.m, 1)
		mustInsert(t, tb, other, TCPSyn, 0)
		// An endpoint homed just after the crowded one lands behind its run, and is not
		// refused: keys of another home do not count.
		sh := &tb.shards[0].shard
		ns := sh.nslots()
		crowdedHome := home(homeHash(&tb.seed, &cl, 5000), ns)
		near := -1
		for j := 0; j < 1<<20 && near < 0; j++ {
			if d := (home(homeHash(&tb.seed, ptr(client(j)), 6000), ns) - crowdedHome + ns) % ns; d >= 1 && d <= 8 {
				near = j
			}
		}
		if near < 0 {
			t.Fatal("no endpoint homed within 8 slots after the crowded one")
		}
		e2 := mk(0)
		e2.Orig.Src, e2.Orig.SrcPort = client(near), 6000
		if c.m.twoWay() {
			e2.Reply.Dst, e2.Reply.DstPort = client(near), 6000
		}
		mustInsert(t, tb, e2, TCPSyn, 0)
		if tb.Lookup(DirOrig, &e2.Orig, TCPAck, 0, &Entry{}) != Found {
			t.Fatalf("%v: the endpoint homed after the crowded one: not found", c.m)
		}
		var out Entry
		for i := range held {
			e := mk(i)
			if tb.Lookup(DirOrig, &e.Orig, TCPAck, 0, &out) != Found || c.m.twoWay() && tb.Lookup(DirReply, &e.Reply, TCPAck, 0, &out) != Found {
				t.Fatalf("%v: connection %d of the crowded endpoint not found", c.m, i)
			}
		}
		checkInvariants(t, tb)
		tb.Close()
	}
}

func ptr[T any](v T) *T { return &v }

// TestHomeScan: insert's one walk of a home's run (homeScan) finds what find finds for
// the original key and, for a NAT connection, its reply key, and when neither is held
// counts the keys of that home as a brute-force count over the whole index does, and
// ends where Robin Hood places a new key of that home (or reports that it met a
// saturated distance, where crowded counts and place walks). Homes of 1 to 120
// connections of one client endpoint, NAT and DR, make runs past distMax; the probes
// are held and new connections of those endpoints and of fresh ones.
func TestHomeScan(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1 << 13, Shards: 1})
	sh := &tb.shards[0].shard
	rng := rand.New(rand.NewPCG(11, 12))
	mk := func(cl, port int, m Method) Entry {
		e := Entry{Orig: Key{Src: client(cl), Dst: vip, SrcPort: uint16(5000 + cl), DstPort: uint16(port), Proto: ProtoTCP}, Dest: 1, Method: m}
		if m.twoWay() {
			e.Reply = Key{Src: rs1, Dst: e.Orig.Src, SrcPort: uint16(port), DstPort: e.Orig.SrcPort, Proto: ProtoTCP}
		}
		return e
	}
	method := func(cl int) Method { return []Method{MethodNAT, MethodDR}[cl%2] }
	conns := map[int]int{} // client -> connections inserted
	for cl := range 60 {
		n := 1 + rng.IntN(120)
		if method(cl) == MethodNAT {
			n = min(n, maxSameHome/2-1)
		}
		held := 0
		for ; held < n; held++ {
			e := mk(cl, 1+held, method(cl))
			if err := tb.Insert(&e, TCPSyn, 0); errors.Is(err, ErrCrowded) {
				break // another endpoint shares the home: the two share its bound
			} else if err != nil {
				t.Fatalf("client %d connection %d: %v", cl, held, err)
			}
		}
		conns[cl] = held
	}
	checkInvariants(t, tb)
	// homeCount is the model: the keys anywhere in the index whose home is slot h.
	n := sh.nslots()
	homeCount := func(h int) int {
		c := 0
		for i := range n {
			if s := sh.idx[slotWord(i)]; s != 0 && home(tb.refHash(sh, s&tb.refMask-1), n) == h {
				c++
			}
		}
		return c
	}
	var held, counted, saturated int
	for cl := range 80 {
		for _, port := range []int{1, conns[cl], conns[cl] + 1, 60000} {
			if port == 0 {
				continue
			}
			e := mk(cl, port, method(cl))
			ho := tb.origHash(&e.Orig)
			var hr uint64
			var r *Key
			if e.Method.twoWay() {
				hr, r = tb.replyHash(&e.Reply), &e.Reply
				if uint32(hr) != uint32(ho) {
					t.Fatalf("client %d: a NAT connection's reply key has home %d, its original key %d", cl, home(hr, n), home(ho, n))
				}
			}
			var run homeRun
			tb.homeScan(sh, ho, &e.Orig, hr, r, &run)
			ro, rr, same, ok := run.ro, run.rr, run.same, run.counted
			wantO := tb.find(sh, ho, DirOrig, &e.Orig)
			wantR := uint32(noIdx)
			if r != nil {
				wantR = tb.find(sh, hr, DirReply, r)
			}
			switch {
			case wantO != noIdx || wantR != noIdx:
				// Held: homeScan stops at the first key of the two it meets (either
				// sends insert to its slow path), which must be find's.
				if (ro == noIdx) == (rr == noIdx) || ro != noIdx && ro != wantO || rr != noIdx && rr != wantR {
					t.Fatalf("client %d port %d: homeScan's records %d, %d; find's %d, %d; want exactly one, find's", cl, port, ro, rr, wantO, wantR)
				}
				held++
			case ro != noIdx || rr != noIdx:
				t.Fatalf("client %d port %d: homeScan found records %d, %d of keys find does not find", cl, port, ro, rr)
			case ok:
				if want := homeCount(home(ho, n)); same != want {
					t.Fatalf("client %d port %d: homeScan counts %d keys of its home, the index holds %d", cl, port, same, want)
				}
				// The run's end: the first slot from home, empty or holding a key
				// nearer its own home (by its exact distance), as Robin Hood places.
				i, d := home(ho, n), uint32(0)
				for s := sh.idx[slotWord(i)]; s != 0 && tb.slotDist(sh, s, i) >= d; s = sh.idx[slotWord(i)] {
					i, d = (i+1)%n, d+1
				}
				if run.end != i || run.dist != d {
					t.Fatalf("client %d port %d: homeScan ends the run at slot %d, %d from home; it ends at %d, %d from home", cl, port, run.end, run.dist, i, d)
				}
				counted++
			default:
				// A saturated distance on the way: crowded counts.
				if want := homeCount(home(ho, n)); tb.crowded(sh, ho) != (want >= maxSameHome) {
					t.Fatalf("client %d port %d: crowded says %v with %d keys of its home", cl, port, tb.crowded(sh, ho), want)
				}
				saturated++
			}
		}
	}
	if held == 0 || counted == 0 || saturated == 0 {
		t.Fatalf("probes: %d held, %d counted, %d past a saturated distance; want some of each", held, counted, saturated)
	}
	t.Logf("probes: %d held, %d counted, %d past a saturated distance (distMax %d)", held, counted, saturated, tb.distMax)
}
