package conntrack

import (
	"testing"
)

// allFlags are the TCP flag combinations the state tests send.
var allFlags = []uint8{
	TCPSyn, TCPSyn | TCPAck, TCPFin, TCPFin | TCPAck, TCPAck, TCPPsh | TCPAck,
	TCPRst, TCPRst | TCPAck, TCPSyn | TCPRst, TCPSyn | TCPFin, TCPFin | TCPRst, TCPPsh, 0,
}

// TestTCPTablesMatchKernel compares state.go's tables, transition by
// transition, with the kernel's tables written out as text.
func TestTCPTablesMatchKernel(t *testing.T) {
	for _, set := range []struct {
		name string
		code *tcpTables
		text string
	}{
		{"normal", &normalTables, kernelTCPStates},
		{"secure_tcp", &secureTables, kernelTCPStatesDos},
	} {
		spec := parseKernel(t, set.text)
		for tbl, tname := range []string{"INPUT", "OUTPUT", "INPUT-ONLY"} {
			for ev, ename := range []string{"syn", "fin", "ack", "rst"} {
				for cur := State(0); int(cur) < numTCPStates; cur++ {
					want := stateByKernelName(t, spec[tname+"/"+ename+"/"+kernelName[cur]])
					if got := set.code[tbl][ev][cur]; got != want {
						t.Errorf("%s %s %s from %v: got %v, kernel says %v", set.name, tname, ename, cur, got, want)
					}
				}
			}
		}
	}
}

// TestTCPEventFromFlags checks the kernel's event priority (RST, SYN, FIN,
// ACK) and that a packet with none of them moves any state to CLOSE.
func TestTCPEventFromFlags(t *testing.T) {
	tests := []struct {
		name  string
		flags uint8
		want  int
	}{
		{"syn", TCPSyn, evSyn},
		{"syn+ack is syn", TCPSyn | TCPAck, evSyn},
		{"fin", TCPFin, evFin},
		{"fin+ack is fin", TCPFin | TCPAck, evFin},
		{"ack", TCPAck, evAck},
		{"psh+ack is ack", TCPPsh | TCPAck, evAck},
		{"rst", TCPRst, evRst},
		{"rst+ack is rst", TCPRst | TCPAck, evRst},
		{"syn+rst is rst", TCPSyn | TCPRst, evRst},
		{"syn+fin is syn", TCPSyn | TCPFin, evSyn},
		{"fin+rst is rst", TCPFin | TCPRst, evRst},
		{"psh alone is none", TCPPsh, -1},
		{"no flags is none", 0, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tcpEvent(tc.flags); got != tc.want {
				t.Fatalf("tcpEvent(%s) = %d, want %d", flagString(tc.flags), got, tc.want)
			}
			if tc.want < 0 {
				for tbl := 0; tbl < numTables; tbl++ {
					for cur := State(0); int(cur) < numTCPStates; cur++ {
						if got := normalTables.next(tbl, tc.flags, cur); got != StateClose {
							t.Fatalf("table %d from %v with %s: %v, want CLOSE", tbl, cur, flagString(tc.flags), got)
						}
					}
				}
			}
		})
	}
}

// TestLookupTransitionsMatchKernel drives every (method, direction, state,
// flags) through the public Lookup path, with conn reuse off so that every
// SYN is a plain transition, and checks the state, the timer and the
// per-dest counts against the kernel's tables.
func TestLookupTransitionsMatchKernel(t *testing.T) {
	for _, secure := range []bool{false, true} {
		text := kernelTCPStates
		if secure {
			text = kernelTCPStatesDos
		}
		spec := parseKernel(t, text)
		tb := mustNew(t, Config{MaxEntries: 64, Shards: 1, MaxDests: 4, SecureTCP: secure, ConnReuseMode: ConnReuseOff})
		for _, m := range []Method{MethodNAT, MethodFullNAT, MethodDR, MethodTUN} {
			for _, dir := range []Dir{DirOrig, DirReply} {
				if dir == DirReply && !m.twoWay() {
					continue
				}
				for cur := State(0); int(cur) < numTCPStates; cur++ {
					for _, fl := range allFlags {
						name := kernelTableName(m, dir) + "/" + m.String() + "/" + dir.String() + "/" + cur.String() + "/" + flagString(fl)
						e := mustInsert(t, tb, conn(1, ProtoTCP, m, 2), TCPSyn, 0)
						forceState(t, tb, &e.Orig, cur, 0)
						k := e.Orig
						if dir == DirReply {
							k = e.Reply
						}
						now := sec / 2 // inside even NONE's 2 s timeout
						var out Entry
						if st := tb.Lookup(dir, &k, fl, now, &out); st != Found {
							t.Fatalf("%s: Lookup status %v, want found", name, st)
						}
						want := spec.next(t, m, dir, fl, cur)
						if out.State != want {
							t.Errorf("%s: state %v, kernel says %v", name, out.State, want)
						}
						a, i := tb.Conns(2)
						wantA := int32(0)
						if kernelActive(t, ProtoTCP, want) {
							wantA = 1
						}
						if a != wantA || i != 1-wantA {
							t.Errorf("%s: Conns %d/%d, want %d/%d", name, a, i, wantA, 1-wantA)
						}
						left := expiresIn(t, tb, &e.Orig, now)
						if wantLeft := int64(kernelTimeout(t, want)) * sec; left != wantLeft {
							t.Errorf("%s: expires in %d ns, want %d (%v timeout)", name, left, wantLeft, want)
						}
						checkInvariants(t, tb)
						if n := tb.RemoveDest(2, now); n != 1 {
							t.Fatalf("%s: RemoveDest removed %d, want 1", name, n)
						}
					}
				}
			}
		}
	}
}

// expiresIn returns Walk's expiresIn for the entry with original key k.
func expiresIn(t testing.TB, tb *Table, k *Key, now int64) int64 {
	t.Helper()
	left := int64(-1)
	tb.Walk(now, func(e *Entry, in int64) bool {
		if e.Orig == *k {
			left = in
			return false
		}
		return true
	})
	if left < 0 {
		t.Fatalf("Walk did not report %v", k)
	}
	return left
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"none", StateNone.String(), "NONE"},
		{"established", StateEstablished.String(), "ESTABLISHED"},
		{"syn_sent", StateSynSent.String(), "SYN_SENT"},
		{"syn_recv", StateSynRecv.String(), "SYN_RECV"},
		{"fin_wait", StateFinWait.String(), "FIN_WAIT"},
		{"time_wait", StateTimeWait.String(), "TIME_WAIT"},
		{"close", StateClose.String(), "CLOSE"},
		{"close_wait", StateCloseWait.String(), "CLOSE_WAIT"},
		{"last_ack", StateLastAck.String(), "LAST_ACK"},
		{"listen", StateListen.String(), "LISTEN"},
		{"synack", StateSynAck.String(), "SYNACK"},
		{"udp", StateUDP.String(), "UDP"},
		{"unknown state", State(40).String(), "State(40)"},
		{"masq", MethodNAT.String(), "Masq"},
		{"route", MethodDR.String(), "Route"},
		{"tunnel", MethodTUN.String(), "Tunnel"},
		{"fullnat", MethodFullNAT.String(), "FullNat"},
		{"dir orig", DirOrig.String(), "orig"},
		{"dir reply", DirReply.String(), "reply"},
		{"status found", Found.String(), "found"},
		{"status reused", Reused.String(), "reused"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	// The kernel's numbering, which the sync protocol carries.
	for s, want := range map[State]int{StateNone: 0, StateEstablished: 1, StateSynRecv: 3, StateTimeWait: 5, StateSynAck: 10} {
		if int(s) != want {
			t.Errorf("%v = %d, kernel numbers it %d", s, int(s), want)
		}
	}
}

func TestMayCreate(t *testing.T) {
	tests := []struct {
		name   string
		proto  uint8
		flags  uint8
		sloppy bool
		want   bool
	}{
		{"tcp syn", ProtoTCP, TCPSyn, false, true},
		{"tcp syn+ack (kernel has no !ack check)", ProtoTCP, TCPSyn | TCPAck, false, true},
		{"tcp ack", ProtoTCP, TCPAck, false, false},
		{"tcp fin", ProtoTCP, TCPFin, false, false},
		{"tcp no flags", ProtoTCP, 0, false, false},
		{"tcp syn+rst", ProtoTCP, TCPSyn | TCPRst, false, false},
		{"tcp rst", ProtoTCP, TCPRst, false, false},
		{"sloppy ack", ProtoTCP, TCPAck, true, true},
		{"sloppy fin", ProtoTCP, TCPFin, true, true},
		{"sloppy no flags", ProtoTCP, 0, true, true},
		{"sloppy syn+rst never", ProtoTCP, TCPSyn | TCPRst, true, false},
		{"sloppy rst never", ProtoTCP, TCPRst | TCPAck, true, false},
		{"udp", ProtoUDP, 0, false, true},
		{"udp ignores flags", ProtoUDP, TCPRst, false, true},
		{"icmp not tracked", 1, 0, true, false},
		{"sctp init", ProtoSCTP, SCTPInit, false, true},
		{"sctp data", ProtoSCTP, SCTPData, false, false},
		{"sloppy_sctp data", ProtoSCTP, SCTPData, true, true},
		{"sloppy_sctp shutdown", ProtoSCTP, SCTPShutdown, true, true},
		{"sloppy_sctp abort never", ProtoSCTP, SCTPAbort, true, false},
		{"gre not tracked", 47, 0, true, false},
	}
	for _, tc := range tests {
		if got := MayCreate(tc.proto, tc.flags, tc.sloppy); got != tc.want {
			t.Errorf("%s: MayCreate = %v, want %v", tc.name, got, tc.want)
		}
	}
}
