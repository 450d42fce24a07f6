package conntrack

import "sync/atomic"

// Per-destination state: what IPVS keeps in struct ip_vs_dest about the
// connections bound to a real server, kept where the kernel keeps it. Read
// from the torvalds/linux mainline source as of 2025 (ip_vs_conn.c of 6.16+,
// the one with timer_container_of; ip_vs_proto_tcp.c; ip_vs_ctl.c):
//
//   - ip_vs_conn_new binds a new connection with ip_vs_bind_dest, which gives
//     it the destination's conn_flags; __ip_vs_update_dest always puts
//     IP_VS_CONN_F_INACTIVE in them, so every connection starts inactive.
//   - set_tcp_state moves a connection between activeconns and inactconns
//     when a packet changes its state and tcp_state_active_table says its
//     activity changed: SYN_SENT, SYN_RECV, SYNACK and ESTABLISHED are
//     active. A TCP connection's first packet moves it out of NONE at once
//     (a SYN to SYN_RECV: active). UDP has no such transition: a UDP
//     connection stays inactive.
//   - ip_vs_bind_dest sets IP_VS_DEST_F_OVERLOAD when u_threshold is set and
//     activeconns+inactconns reaches it; ip_vs_unbind_dest clears it when the
//     total falls below l_threshold, or below 3/4 of u_threshold when there is
//     no l_threshold, or at once when there is neither. Persistence templates
//     count in persistconns, not here.
//
// Insert is the bind followed by the first packet's transition (Insert stores
// the state after it), changeState is set_tcp_state's counter move, release
// is the unbind. Connections a persistence template sends to a server bind
// here like any other, so they set the flag too.
//
// The counts and the flag are atomics, shared by all shards; like the
// kernel's, the flag's set and clear race between shards (an unbind reading
// a low total may clear the flag a concurrent bind has just set), and the next
// bind or unbind of the destination corrects it.
type destState struct {
	active, inactive atomic.Int32
	over             atomic.Uint32 // 1: IP_VS_DEST_F_OVERLOAD
	_                uint32
	thresh           atomic.Uint64 // upper<<32 | lower (SetThresholds)
}

// activeState is tcp_state_active_table, and for SCTP set_sctp_state's rule
// (ESTABLISHED only); StateUDP (and NONE, the state no stored entry has) is
// inactive.
var activeState = [numStates]bool{
	StateEstablished:     true,
	StateSynSent:         true,
	StateSynRecv:         true,
	StateSynAck:          true,
	StateSCTPEstablished: true,
}

func (d *destState) upper() uint32 { return uint32(d.thresh.Load() >> 32) }

func (d *destState) total() int64 { return int64(d.active.Load()) + int64(d.inactive.Load()) }

// bind counts a new connection, active or not, and sets the overload flag
// when the total reaches the upper threshold.
func (d *destState) bind(active bool) {
	if active {
		d.active.Add(1)
	} else {
		d.inactive.Add(1)
	}
	if u := d.upper(); u != 0 && d.total() >= int64(u) && d.over.Load() == 0 {
		d.over.Store(1)
	}
}

// unbind uncounts a connection and clears the overload flag by
// ip_vs_unbind_dest's rule.
func (d *destState) unbind(active bool) {
	if active {
		d.active.Add(-1)
	} else {
		d.inactive.Add(-1)
	}
	th := d.thresh.Load()
	u, l := int64(th>>32), int64(uint32(th))
	clear := true
	switch {
	case l != 0:
		clear = d.total() < l
	case u != 0:
		clear = d.total()*4 < u*3
	}
	if clear && d.over.Load() != 0 {
		d.over.Store(0)
	}
}

func (d *destState) reset() {
	d.active.Store(0)
	d.inactive.Store(0)
	d.over.Store(0)
}
