package conntrack

import (
	"strconv"
	"strings"
	"testing"
)

// The kernel's SCTP connection tracking, written out as text from
// net/netfilter/ipvs/ip_vs_proto_sctp.c of intel-lab-lkp/linux at
// e0cc369553c8344fbedb63fc62b4d37aed1cb5a6 (sctp_events, sctp_states, sctp_timeouts,
// sctp_state_name_table, set_sctp_state's activity rule) and ip_vs_core.c of
// Kingxukai/linux at 9b44fff655e2c6f4cc53cb499dd2c038e99cb013 (is_new_conn,
// is_new_conn_expected), in the kernel's row and column order. The model parses this
// text; it is deliberately a different encoding from sctp.go.

const kernelSCTPColumns = "sNO sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL"

const kernelSCTPStates = `
INPUT
d   sES sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
i   sI1 sIN sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sIN sIN
i_a sCW sCW sCW sCS sCR sCO sCO sCE sES sSS sSR sSA sRJ sCL
c_e sCR sIN sIN sCR sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
c_a sES sI1 sIN sCS sCR sCW sCO sES sES sSS sSR sSA sRJ sCL
s   sSR sI1 sIN sCS sCR sCW sCO sCE sSR sSS sSR sSA sRJ sCL
s_a sCL sIN sIN sCS sCR sCW sCO sCE sES sCL sSR sCL sRJ sCL
s_c sCL sCL sCL sCS sCR sCW sCO sCE sES sSS sSR sCL sRJ sCL
err sCL sI1 sIN sCS sCR sCW sCO sCL sES sSS sSR sSA sRJ sCL
ab  sCL sCL sCL sCL sCL sRJ sCL sCL sCL sCL sCL sCL sCL sCL
OUTPUT
d   sES sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
i   sCW sCW sCW sCW sCW sCW sCW sCW sES sCW sCW sCW sCW sCW
i_a sCS sCS sCS sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
c_e sCE sCE sCE sCE sCE sCE sCE sCE sES sSS sSR sSA sRJ sCL
c_a sES sES sES sES sES sES sES sES sES sSS sSR sSA sRJ sCL
s   sSS sSS sSS sSS sSS sSS sSS sSS sSS sSS sSR sSA sRJ sCL
s_a sSA sSA sSA sSA sSA sCW sCO sCE sES sSA sSA sSA sRJ sCL
s_c sCL sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
err sCL sCL sCL sCL sCL sCW sCO sCE sES sSS sSR sSA sRJ sCL
ab  sCL sRJ sCL sCL sCL sCL sCL sCL sCL sCL sCL sCL sCL sCL
INPUT-ONLY
d   sES sI1 sIN sCS sCR sES sCO sCE sES sSS sSR sSA sRJ sCL
i   sI1 sIN sIN sIN sIN sIN sCO sCE sES sSS sSR sSA sIN sIN
i_a sCE sCE sCE sCE sCE sCE sCO sCE sES sSS sSR sSA sRJ sCL
c_e sES sES sES sES sES sES sCO sCE sES sSS sSR sSA sRJ sCL
c_a sES sI1 sIN sES sES sCW sES sES sES sSS sSR sSA sRJ sCL
s   sSR sI1 sIN sCS sCR sCW sCO sCE sSR sSS sSR sSA sRJ sCL
s_a sCL sIN sIN sCS sCR sCW sCO sCE sCL sCL sSR sCL sRJ sCL
s_c sCL sCL sCL sCL sCL sCW sCO sCE sES sSS sCL sCL sRJ sCL
err sCL sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
ab  sCL sCL sCL sCL sCL sRJ sCL sCL sCL sCL sCL sCL sCL sCL
`

// sctp_events: chunk type → event (RFC 2960 numbering); types not listed are "d".
const kernelSCTPEvents = `
0 d
1 i
2 i_a
3 d
4 d
5 d
6 ab
7 s
8 s_a
9 err
10 c_e
11 c_a
12 d
13 d
14 s_c
`

// sctp_timeouts (HZ is a second; IP_VS_SCTP_MAX_RTO is (60+1)*HZ), and the names
// sctp_state_name_table gives (what /proc/net/ip_vs_conn and so ipvsadm -L -c print).
const kernelSCTPTimeouts = `
sNO 2*HZ       NONE
sI1 4*HZ       INIT1
sIN 61*HZ      INIT
sCS 61*HZ      C-SENT
sCR 61*HZ      C-REPLIED
sCW 61*HZ      C-WAIT
sCO 61*HZ      COOKIE
sCE 61*HZ      C-ECHOED
sES 15*60*HZ   ESTABLISHED
sSS 61*HZ      S-SENT
sSR 61*HZ      S-RECEIVED
sSA 61*HZ      S-ACK-SENT
sRJ 4*HZ       REJECTED
sCL 61*HZ      CLOSED
`

// sctpKernelName is the kernel's short name of an SCTP state (StateNone is SCTP's
// NONE, sNO).
var sctpKernelName = map[State]string{
	StateNone: "sNO", StateSCTPInit1: "sI1", StateSCTPInit: "sIN", StateSCTPCookieSent: "sCS",
	StateSCTPCookieReplied: "sCR", StateSCTPCookieWait: "sCW", StateSCTPCookie: "sCO",
	StateSCTPCookieEchoed: "sCE", StateSCTPEstablished: "sES", StateSCTPShutdownSent: "sSS",
	StateSCTPShutdownReceived: "sSR", StateSCTPShutdownAckSent: "sSA", StateSCTPRejected: "sRJ",
	StateSCTPClosed: "sCL",
}

func sctpStateByKernelName(t testing.TB, n string) State {
	t.Helper()
	for s, name := range sctpKernelName {
		if name == n {
			return s
		}
	}
	t.Fatalf("unknown kernel SCTP state %q", n)
	return 0
}

// sctpSpec maps "TABLE/event/FROM" to the kernel's next state name, and chunk types to
// events.
type sctpSpec struct {
	next   map[string]string
	events map[uint8]string
}

func parseKernelSCTP(t testing.TB) sctpSpec {
	t.Helper()
	cols := strings.Fields(kernelSCTPColumns)
	sp := sctpSpec{next: map[string]string{}, events: map[uint8]string{}}
	table := ""
	for _, line := range strings.Split(strings.TrimSpace(kernelSCTPStates), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 {
			table = f[0]
			continue
		}
		if len(f) != len(cols)+1 {
			t.Fatalf("kernel SCTP table line %q: %d fields, want %d", line, len(f), len(cols)+1)
		}
		for i, c := range cols {
			sp.next[table+"/"+f[0]+"/"+c] = f[i+1]
		}
	}
	if len(sp.next) != 3*10*14 {
		t.Fatalf("kernel SCTP table has %d transitions, want %d", len(sp.next), 3*10*14)
	}
	for _, line := range strings.Split(strings.TrimSpace(kernelSCTPEvents), "\n") {
		f := strings.Fields(line)
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatal(err)
		}
		sp.events[uint8(n)] = f[1]
	}
	return sp
}

// event is the kernel's event of a packet whose (first, or ABORT-adjusted) chunk type
// is chunk: chunk types past the table's end are DATA.
func (sp sctpSpec) event(chunk uint8) string {
	if ev, ok := sp.events[chunk]; ok {
		return ev
	}
	return "d"
}

func (sp sctpSpec) nextState(t testing.TB, m Method, dir Dir, chunk uint8, cur State) State {
	t.Helper()
	name, ok := sctpKernelName[cur]
	if !ok {
		t.Fatalf("SCTP connection in non-SCTP state %v", cur)
	}
	return sctpStateByKernelName(t, sp.next[kernelTableName(m, dir)+"/"+sp.event(chunk)+"/"+name])
}

// kernelSCTPTimeout is sctp_timeouts[s] in seconds, and kernelSCTPStateName the name the
// kernel prints; ok false for a state SCTP does not have.
func kernelSCTPTimeout(t testing.TB, s State) (secs int, name string, ok bool) {
	t.Helper()
	short, ok := sctpKernelName[s]
	if !ok {
		return 0, "", false
	}
	for _, line := range strings.Split(strings.TrimSpace(kernelSCTPTimeouts), "\n") {
		f := strings.Fields(line)
		if f[0] != short {
			continue
		}
		v := 1
		for _, x := range strings.Split(f[1], "*") {
			if x == "HZ" {
				continue
			}
			n, err := strconv.Atoi(x)
			if err != nil {
				t.Fatalf("kernel SCTP timeout %q: %v", f[1], err)
			}
			v *= n
		}
		return v, f[2], true
	}
	t.Fatalf("SCTP state %v not in the kernel's timeouts", s)
	return 0, "", false
}

// kernelSCTPActive is set_sctp_state's rule: only ESTABLISHED counts as active.
func kernelSCTPActive(s State) bool { return sctpKernelName[s] == "sES" && s != StateNone }

// kernelSCTPNewConnExpected is is_new_conn_expected for SCTP: CLOSED.
func kernelSCTPNewConnExpected(s State) bool { return s != StateNone && sctpKernelName[s] == "sCL" }

// kernelSCTPSynced is ip_vs_sync_conn_needed's SCTP state set.
func kernelSCTPSynced(s State) bool {
	switch sctpKernelName[s] {
	case "sES", "sSS", "sSR", "sSA", "sCL":
		return s != StateNone
	}
	return false
}

// sctpChunks are the chunk types the driver sends: every one the kernel names, and some
// it does not (FORWARD TSN 192, AUTH 15, a reserved 200).
var sctpChunks = []uint8{
	SCTPInit, SCTPInit, SCTPInitAck, SCTPCookieEcho, SCTPCookieAck, SCTPData, SCTPSack,
	SCTPHeartbeat, SCTPHeartbeatAck, SCTPAbort, SCTPShutdown, SCTPShutdownAck,
	SCTPShutdownComplete, SCTPError, SCTPEcne, SCTPCwr, 15, 192, 200,
}

// TestSCTPStatesMatchKernel checks every transition of the three tables, the names and
// timeouts, against the kernel text, for every chunk type 0..255.
func TestSCTPStatesMatchKernel(t *testing.T) {
	sp := parseKernelSCTP(t)
	for _, m := range []Method{MethodNAT, MethodDR} {
		for _, dir := range []Dir{DirOrig, DirReply} {
			for chunk := 0; chunk < 256; chunk++ {
				for cur := range sctpKernelName {
					want := sp.nextState(t, m, dir, uint8(chunk), cur)
					if got := sctpTables.next(stateTable(m, dir), uint8(chunk), cur); got != want {
						t.Fatalf("%v %v chunk %d from %v: %v, kernel %v", m, dir, chunk, cur, got, want)
					}
				}
			}
		}
	}
	def := DefaultTimeouts()
	for s := range sctpKernelName {
		secs, name, _ := kernelSCTPTimeout(t, s)
		if s.String() != name {
			t.Errorf("state %d named %q, kernel %q", s, s.String(), name)
		}
		if s != StateNone && def.Of(s) != secs {
			t.Errorf("%v timeout %d s, kernel %d s", s, def.Of(s), secs)
		}
		if s.Active() != kernelSCTPActive(s) && s != StateNone {
			t.Errorf("%v active %v, kernel %v", s, s.Active(), kernelSCTPActive(s))
		}
		n, ok := s.SCTPNumber()
		back, ok2 := SCTPState(n)
		if !ok || !ok2 || back != s {
			t.Errorf("%v: SCTPNumber %d %v, back %v %v", s, n, ok, back, ok2)
		}
		// The kernel numbers states in its column order.
		if cols := strings.Fields(kernelSCTPColumns); cols[n] != sctpKernelName[s] {
			t.Errorf("%v: number %d is the kernel's %s", s, n, cols[n])
		}
	}
	if _, ok := SCTPState(uint16(NumSCTPStates + 1)); ok {
		t.Error("SCTPState accepted IP_VS_SCTP_S_LAST")
	}
	if _, ok := StateUDP.SCTPNumber(); ok {
		t.Error("StateUDP has an SCTP number")
	}
	// sctp_conn_schedule: an INIT schedules; with sloppy_sctp every first chunk but an
	// ABORT does.
	for _, sloppy := range []bool{false, true} {
		for chunk := 0; chunk < 256; chunk++ {
			want := chunk == int(SCTPInit) || sloppy && chunk != int(SCTPAbort)
			if got := MayCreate(ProtoSCTP, uint8(chunk), sloppy); got != want {
				t.Errorf("MayCreate(SCTP, chunk %d, sloppy %v) = %v, want %v", chunk, sloppy, got, want)
			}
		}
	}
}

// TestSCTPAssociation walks a whole association, NAT and DR, through the table: the
// states, ActiveConn/InActConn and the timeouts the kernel gives at each step.
func TestSCTPAssociation(t *testing.T) {
	steps := []struct {
		dir     Dir
		chunk   uint8
		nat, dr State
	}{
		{DirOrig, SCTPInit, StateSCTPInit1, StateSCTPInit1},
		{DirReply, SCTPInitAck, StateSCTPCookieSent, 0},
		{DirOrig, SCTPCookieEcho, StateSCTPCookieReplied, StateSCTPEstablished},
		{DirReply, SCTPCookieAck, StateSCTPEstablished, 0},
		{DirOrig, SCTPData, StateSCTPEstablished, StateSCTPEstablished},
		{DirReply, SCTPSack, StateSCTPEstablished, 0},
		{DirOrig, SCTPShutdown, StateSCTPShutdownReceived, StateSCTPShutdownReceived},
		{DirReply, SCTPShutdownAck, StateSCTPShutdownAckSent, 0},
		{DirOrig, SCTPShutdownComplete, StateSCTPClosed, StateSCTPClosed},
	}
	for _, m := range []Method{MethodNAT, MethodDR} {
		tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, MaxDests: 2})
		e := conn(1, ProtoSCTP, m, 1)
		now := int64(sec)
		for i, st := range steps {
			want := st.nat
			if m == MethodDR {
				if st.dir == DirReply {
					continue // DR replies bypass the director
				}
				want = st.dr
			}
			var got State
			if i == 0 {
				in := e
				if err := tb.Insert(&in, st.chunk, now); err != nil {
					t.Fatal(err)
				}
				got = in.State
			} else {
				k := e.Orig
				if st.dir == DirReply {
					k = e.Reply
				}
				var out Entry
				if s := tb.Lookup(st.dir, &k, st.chunk, now, &out); s != Found {
					t.Fatalf("%v step %d: %v", m, i, s)
				}
				got = out.State
			}
			if got != want {
				t.Fatalf("%v step %d (chunk %d): %v, want %v", m, i, st.chunk, got, want)
			}
			a, in := tb.Conns(1)
			if wa := b2i(want == StateSCTPEstablished); a != int32(wa) || in != int32(1-wa) {
				t.Fatalf("%v step %d in %v: Conns %d/%d", m, i, want, a, in)
			}
			secs, _, _ := kernelSCTPTimeout(t, want)
			tb.Walk(now, func(e *Entry, left int64) bool {
				if left != int64(secs)*sec {
					t.Fatalf("%v in %v expires in %v, kernel %d s", m, want, left, secs)
				}
				return true
			})
			now += sec
		}
		// An INIT on the CLOSED association replaces it (is_new_conn_expected).
		k := e.Orig
		if s := tb.Lookup(DirOrig, &k, SCTPInit, now, nil); s != Reused {
			t.Fatalf("%v: INIT on CLOSED: %v, want Reused", m, s)
		}
		// A non-INIT packet of an unknown association may not create one.
		if s := tb.Lookup(DirOrig, &k, SCTPData, now, nil); s != Invalid {
			t.Fatalf("%v: DATA without association: %v, want Invalid", m, s)
		}
		if err := tb.Insert(&e, SCTPAbort, now); err != ErrNotOpener {
			t.Fatalf("%v: Insert by ABORT: %v", m, err)
		}
	}
}

// TestSCTPMatchesModel drives random SCTP, TCP and UDP operations against the table
// and the model (with SCTP's tables from the kernel text), sync on and off.
func TestSCTPMatchesModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"one shard, evicting", Config{MaxEntries: 40, Shards: 1, MaxDests: 4}},
		{"one shard, reuse off", Config{MaxEntries: 40, Shards: 1, MaxDests: 4, ConnReuseMode: ConnReuseOff}},
		{"eight shards", Config{MaxEntries: 8 * 2 * 200, Shards: 8, MaxDests: 5}},
		{"one shard, sloppy_sctp", Config{MaxEntries: 40, Shards: 1, MaxDests: 4, SloppySCTP: true}},
		{"eight shards, sloppy_sctp and sloppy_tcp", Config{MaxEntries: 8 * 2 * 200, Shards: 8, MaxDests: 5, SloppySCTP: true, SloppyTCP: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRand(7)
			d := &driver{
				tb:       mustNew(t, tc.cfg),
				m:        newModel(t, tc.cfg),
				pool:     100,
				dests:    uint32(tc.cfg.MaxDests),
				next:     rng.IntN,
				opener:   TCPSyn,
				sctp:     true,
				policies: []*SyncPolicy{nil, {Threshold: 3, Period: 50}, {Threshold: 1, Period: 4}, {Threshold: 2}},
			}
			d.tb.hint = hintsWork
			for i := range 30000 {
				d.step()
				if i%3000 == 0 {
					d.m.compare(d.tb, d.now, d.dests, true)
					checkInvariants(t, d.tb)
				}
			}
			d.m.compare(d.tb, d.now, d.dests, true)
			checkInvariants(t, d.tb)
			if d.sctpSeen < 1000 {
				t.Fatalf("only %d SCTP operations", d.sctpSeen)
			}
			// The random chunks must have driven connections through most of the kernel's
			// states, not a corner of the table.
			if len(d.m.sctpStates) < NumSCTPStates-1 {
				t.Fatalf("SCTP connections reached only %d states: %v", len(d.m.sctpStates), d.m.sctpStates)
			}
		})
	}
}
