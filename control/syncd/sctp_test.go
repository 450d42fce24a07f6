package syncd

import (
	"testing"

	"xlvs/conntrack"
	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

// kernelSCTPStates are IP_VS_SCTP_S_NONE .. IP_VS_SCTP_S_CLOSED in the kernel's order
// (include/net/ip_vs.h; ip_vs_proto_sctp.c's sctp_state_name_table gives the names,
// read at intel-lab-lkp/linux e0cc369553c8344fbedb63fc62b4d37aed1cb5a6): the wire carries
// a connection's state as its index here.
var kernelSCTPStates = []string{"NONE", "INIT1", "INIT", "C-SENT", "C-REPLIED", "C-WAIT", "COOKIE",
	"C-ECHOED", "ESTABLISHED", "S-SENT", "S-RECEIVED", "S-ACK-SENT", "REJECTED", "CLOSED"}

// TestSCTPWire: an SCTP connection goes on the wire with the kernel's state number, its
// flags INACTIVE unless ESTABLISHED (set_sctp_state), and comes back as it went; a
// state at or past IP_VS_SCTP_S_LAST is dropped.
func TestSCTPWire(t *testing.T) {
	states := []conntrack.State{conntrack.StateNone}
	for s := conntrack.StateSCTPInit1; s <= conntrack.StateSCTPClosed; s++ {
		states = append(states, s)
	}
	if len(states) != len(kernelSCTPStates) {
		t.Fatalf("%d SCTP states, the kernel has %d", len(states), len(kernelSCTPStates))
	}
	for _, st := range states {
		for _, m := range []conntrack.Method{conntrack.MethodNAT, conntrack.MethodDR} {
			e := dataplane.SyncConn{Proto: 132, Method: m, State: st, Timeout: 61,
				Client: a16("198.18.1.2"), CPort: 5000, VAddr: a16("198.18.0.10"), VPort: 38412, DAddr: a16("198.18.2.11"), DPort: 38412}
			var c ipvssync.Conn
			if !toWire(&e, &c) {
				t.Fatalf("%v refused", st)
			}
			want := -1
			for i, n := range kernelSCTPStates {
				if n == st.String() {
					want = i
				}
			}
			if int(c.State) != want {
				t.Errorf("%v on the wire as %d, kernel number %d", st, c.State, want)
			}
			inactive := c.Flags&kInactive != 0
			if inactive != (st != conntrack.StateSCTPEstablished) {
				t.Errorf("%v: flags %#x, INACTIVE must be set unless ESTABLISHED", st, c.Flags)
			}
			var back dataplane.SyncConn
			if r := fromWire(&c, &back); r >= 0 || back != e {
				t.Errorf("%v: back as %+v (reason %d)", st, back, r)
			}
		}
	}
	c := ipvssync.Conn{Protocol: 132, State: uint16(len(kernelSCTPStates)), CAddr: a16("198.18.1.2"), VAddr: a16("198.18.0.10"), DAddr: a16("198.18.2.11")}
	var e dataplane.SyncConn
	if r := fromWire(&c, &e); r != dropState {
		t.Errorf("SCTP state %d (IP_VS_SCTP_S_LAST): reason %d, want %s", c.State, r, backupDropNames[dropState])
	}
	c.State = 13
	if r := fromWire(&c, &e); r >= 0 || e.State != conntrack.StateSCTPClosed {
		t.Errorf("SCTP state 13: reason %d, state %v", r, e.State)
	}
}
