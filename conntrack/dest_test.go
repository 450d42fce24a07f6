package conntrack

import "testing"

// TestHalfOpenIsActive: a connection that has seen only the client's SYN is in SYN_RECV
// (SYNACK with secure_tcp on DR/TUN), which the kernel's tcp_state_active_table counts
// as active: ActiveConn 1. A UDP connection is inactive for its whole life.
func TestHalfOpenIsActive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secure bool
		method Method
		proto  uint8
		flags  uint8
		state  State
		active bool
	}{
		{"NAT SYN", false, MethodNAT, ProtoTCP, TCPSyn, StateSynRecv, true},
		{"DR SYN", false, MethodDR, ProtoTCP, TCPSyn, StateSynRecv, true},
		{"DR SYN, secure_tcp", true, MethodDR, ProtoTCP, TCPSyn, StateSynAck, true},
		{"UDP", false, MethodNAT, ProtoUDP, 0, StateUDP, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: 64, SecureTCP: tc.secure})
			e := mustInsert(t, tb, conn(1, tc.proto, tc.method, 2), tc.flags, 0)
			if e.State != tc.state || kernelActive(t, tc.proto, e.State) != tc.active {
				t.Fatalf("state %v; want %v, active %v by the kernel's table", e.State, tc.state, tc.active)
			}
			want := [2]int32{0, 1}
			if tc.active {
				want = [2]int32{1, 0}
			}
			if a, i := tb.Conns(2); a != want[0] || i != want[1] {
				t.Fatalf("ActiveConn %d InActConn %d, want %d %d", a, i, want[0], want[1])
			}
			// The client resends its SYN: no change. A reset of an established one: inactive.
			if st := tb.Lookup(DirOrig, &e.Orig, tc.flags, sec, nil); st != Found {
				t.Fatal(st)
			}
			if a, i := tb.Conns(2); a != want[0] || i != want[1] {
				t.Fatalf("after a retransmission: ActiveConn %d InActConn %d, want %d %d", a, i, want[0], want[1])
			}
			if tc.proto == ProtoTCP {
				tb.Lookup(DirOrig, &e.Orig, TCPAck, 2*sec, nil)
				tb.Lookup(DirOrig, &e.Orig, TCPRst, 3*sec, nil)
				if a, i := tb.Conns(2); a != 0 || i != 1 {
					t.Fatalf("after ACK, RST: ActiveConn %d InActConn %d, want 0 1", a, i)
				}
			}
			checkInvariants(t, tb)
		})
	}
}

// overloadRig drives one destination's connection total up and down.
type overloadRig struct {
	t    *testing.T
	tb   *Table
	keys []Key
	n    int // connections made
	now  int64
}

func (r *overloadRig) setTotal(total int) {
	r.t.Helper()
	for len(r.keys) < total {
		r.n++
		r.now += 1e6
		e := mustInsert(r.t, r.tb, conn(r.n, ProtoTCP, MethodNAT, 1), TCPSyn, r.now)
		r.keys = append(r.keys, e.Orig)
	}
	for len(r.keys) > total {
		// Ends the newest: forced to CLOSE, then a SYN reuses (removes) it.
		k := r.keys[len(r.keys)-1]
		r.keys = r.keys[:len(r.keys)-1]
		forceState(r.t, r.tb, &k, StateClose, r.now)
		if st := r.tb.Lookup(DirOrig, &k, TCPSyn, r.now, nil); st != Reused {
			r.t.Fatalf("ending a connection: %v", st)
		}
	}
	if a, i := r.tb.Conns(1); int(a+i) != total {
		r.t.Fatalf("total %d, want %d", a+i, total)
	}
}

// TestOverloadFlag: ip_vs_bind_dest sets IP_VS_DEST_F_OVERLOAD when a bind brings the
// total to -x; ip_vs_unbind_dest clears it below -y, below 3/4 of -x without -y, at once
// without -x; in between it keeps what it was.
func TestOverloadFlag(t *testing.T) {
	type step struct {
		total int
		over  bool
	}
	for _, tc := range []struct {
		name  string
		u, l  uint32
		steps []step
	}{
		{"no thresholds", 0, 0, []step{{0, false}, {50, false}}},
		{"upper only: 3/4 to clear", 8, 0, []step{{7, false}, {8, true}, {7, true}, {6, true}, {5, false}, {7, false}, {8, true}}},
		{"upper and lower", 10, 4, []step{{9, false}, {10, true}, {5, true}, {4, true}, {3, false}, {9, false}}},
		{"lower equals upper", 3, 3, []step{{3, true}, {2, false}, {3, true}}},
		{"upper 1", 1, 0, []step{{0, false}, {1, true}, {0, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &overloadRig{t: t, tb: mustNew(t, Config{MaxEntries: 256, Shards: 4, MaxDests: 4})}
			r.tb.SetThresholds(1, tc.u, tc.l)
			for k, st := range tc.steps {
				r.setTotal(st.total)
				if got := r.tb.Overloaded(1); got != st.over {
					t.Fatalf("step %d: total %d: overloaded %v, want %v", k, st.total, got, st.over)
				}
			}
			if r.tb.Overloaded(0) || r.tb.Overloaded(2) || r.tb.Overloaded(1<<30) {
				t.Fatal("another destination overloaded")
			}
			checkInvariants(t, r.tb)
		})
	}
}

// TestOverloadThresholdEdit: __ip_vs_update_dest clears the flag when -x is removed or
// raised and keeps it otherwise, whatever the total; an unbind then applies the new rule.
func TestOverloadThresholdEdit(t *testing.T) {
	for _, tc := range []struct {
		name string
		u, l uint32
		over bool
	}{
		{"unchanged", 4, 2, true},
		{"-y changed", 4, 0, true},
		{"-x lowered", 3, 0, true},
		{"-x raised", 5, 0, false},
		{"-x removed", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &overloadRig{t: t, tb: mustNew(t, Config{MaxEntries: 64, MaxDests: 4})}
			r.tb.SetThresholds(1, 4, 2)
			r.setTotal(4)
			if !r.tb.Overloaded(1) {
				t.Fatal("not overloaded at -x")
			}
			r.tb.SetThresholds(1, tc.u, tc.l)
			if got := r.tb.Overloaded(1); got != tc.over {
				t.Fatalf("after the edit: overloaded %v, want %v", got, tc.over)
			}
			// The next bind sets it again if the total is at the new -x.
			r.setTotal(5)
			if want := tc.u != 0 && 5 >= tc.u; r.tb.Overloaded(1) != want {
				t.Fatalf("after a bind (total 5, -x %d): overloaded %v, want %v", tc.u, r.tb.Overloaded(1), want)
			}
		})
	}
	// -y raised above the total: kept until an unbind.
	r := &overloadRig{t: t, tb: mustNew(t, Config{MaxEntries: 64, MaxDests: 4})}
	r.tb.SetThresholds(1, 4, 1)
	r.setTotal(4)
	r.setTotal(3)
	r.tb.SetThresholds(1, 4, 4)
	if !r.tb.Overloaded(1) {
		t.Fatal("-y raised: cleared by the edit, want kept until an unbind")
	}
	r.setTotal(2)
	if r.tb.Overloaded(1) {
		t.Fatal("unbind below the new -y: still overloaded")
	}
}
