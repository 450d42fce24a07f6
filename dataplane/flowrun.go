package dataplane

import (
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// flowRun is what forwarding one packet of a connection in full left for the packets of
// the same connection and direction that come after it in the batch (a flow's burst:
// the segments of a TCP stream arrive back to back). Within a batch the configuration
// and the routes are fixed, and a connection's real server, addresses and method never
// change, so such a packet needs only its own work: the TTL, the rewrite with the
// checksum deltas worked out once for the flow (packet.FlowNAT: NAT, FULLNAT) or the
// tunnel header from the first packet's route (TUN), the counts and the transmit to the
// next hop found for the first. Its connection lookup (the batch's LookupBatch, which
// took it as a repeat of the one before) has already applied its state transition.
// Anything else is left to the full path: fragments, SCTP, a TTL about to expire, a
// packet too big for the tunnel, a FULLNAT client packet that gets the TOA option. On a
// sync master a client packet that its connection's count makes due is queued for the
// sync daemon, and with the XDP fast path each packet
// offers its connection (or, a FIN or RST, withdraws it), as the full path does. A persistent service's client packets are taken too: each refreshes the
// client's template (worker.request), and the run's first packet refreshed it at the
// batch's clock, which is every follower's, so a follower's refresh would find the
// template the first left and set the expiry it already has (or, the template gone,
// find none). Pointer-free (no write barriers on the per-packet path): the run's first
// query, port and accumulator are indexes.
type flowRun struct {
	qi     int32 // the index in worker.qs of the query of the run's last packet; -1: none
	method conntrack.Method
	natOK  bool           // nat is made (from the run's second packet)
	nat    packet.FlowNAT // NAT: the rewrite
	out    uint8          // egress port (index in worker.ports) and next hop's MAC of the run's first packet
	mac    [6]byte
	// TUN: the real server, the outer source, the route's MTU (0: unknown), the
	// encapsulation, the outer header's family, the length of what it adds and GUE's
	// source port (the flow's), as the run's first packet was encapsulated
	rs, src [16]byte
	mtu     uint32
	tun     packet.Encap
	outer   uint8
	hl      uint8
	sport   uint16
	acc     uint8 // the index in worker.bc.flows of (svc, dest)'s accumulator, if still so
	svc     uint32
	dest    uint32
}

// runs tells whether packet p, just forwarded in full, starts a run: whether the next
// query of the batch is of its flow (LookupBatch's Same).
func (w *worker) runs(p *pktDesc) bool {
	return p.qi+1 < w.nq && w.qs[p.qi+1].Same
}

// tryFollow forwards p, whose connection lookup found it, as part of the batch's run if
// it belongs to it (its query is the Same as the one before, whose packet started or
// followed the run), and reports whether it did.
func (w *worker) tryFollow(p *pktDesc) bool {
	return w.burst.qi == p.qi-1 && w.qs[p.qi].Same && w.follow(p)
}

// startRun makes p, just forwarded in full through hop h, the start of a run for the
// packets of its connection and direction that follow it in the batch; tun is a TUN
// connection's encapsulation.
func (w *worker) startRun(p *pktDesc, h *hop, e *conntrack.Entry, tun packet.Encap) {
	r := &w.burst
	r.qi, r.method, r.natOK = p.qi, e.Method, false
	r.out, r.mac, r.svc, r.dest = uint8(h.out), h.mac, e.Service, e.Dest
	if e.Method == conntrack.MethodTUN {
		// The tunnel's route is the output's (tunnel looks rs up for both).
		r.rs, r.src, r.mtu = h.dst, h.src, h.mtu
		r.tun, r.outer = tun, familyOfAddr(&h.dst)
		r.hl = uint8(tun.HeaderLen(r.outer))
		if tun.Type == packet.EncapGUE {
			// The port of the run's followers, which are whole packets of p's flow (follow
			// leaves fragments to the full path), even when p was a first fragment.
			flow := p.info
			flow.Frag = false
			r.sport = packet.EncapSourcePort(&flow)
		}
	}
}

// follow forwards p, whose connection lookup found it, as part of the batch's run, and
// reports whether it did; false leaves p untouched for the full path. The caller checked
// that p belongs to the run: its query is the Same as the one before it, whose packet
// started or followed the run (burst.qi).
func (w *worker) follow(p *pktDesc) bool {
	r := &w.burst
	q := p.q
	info := &p.info
	inner := uint64(info.L3Len) // what the counts take (TUN's outer header not included)
	switch r.method {
	case conntrack.MethodNAT, conntrack.MethodFullNAT:
		if r.method == conntrack.MethodFullNAT && q.Dir == conntrack.DirOrig && w.toa && wantsTOA(info, p.entry()) {
			return false // the full path writes the TOA option (fullnat.go)
		}
		if !r.natOK {
			// The run's second packet: the rewrite the full path made of the first,
			// worked out for the flow (nat.go, fullnat.go).
			e := p.entry()
			var ok bool
			switch {
			case r.method == conntrack.MethodFullNAT && q.Dir == conntrack.DirOrig:
				r.nat, ok = packet.NewFlowFullNAT(info, e.Reply.Dst, e.Reply.DstPort, e.Reply.Src, e.Reply.SrcPort)
			case r.method == conntrack.MethodFullNAT:
				r.nat, ok = packet.NewFlowFullNAT(info, e.Orig.Dst, e.Orig.DstPort, e.Orig.Src, e.Orig.SrcPort)
			case q.Dir == conntrack.DirOrig:
				r.nat, ok = packet.NewFlowNAT(info, false, e.Reply.Src, e.Reply.SrcPort)
			default:
				r.nat, ok = packet.NewFlowNAT(info, true, e.Orig.Dst, e.Orig.DstPort)
			}
			if !ok {
				return false
			}
			r.natOK = true
		}
		if !r.nat.Apply(p.frame, info) {
			return false
		}
	case conntrack.MethodDR:
		if info.Frag || !packet.DecrementTTL(p.frame, info) {
			return false
		}
	case conntrack.MethodTUN:
		// What could make tunnel refuse is checked before the TTL changes: a packet too
		// big once encapsulated, or without the headroom, goes the full way (an ICMP
		// error or a counted drop).
		hl := int(r.hl)
		if info.Frag || r.mtu != 0 && int(info.L3Len)+hl > int(r.mtu) {
			return false
		}
		start, ok := headroomStart(p, hl)
		if !ok || !packet.DecrementTTL(p.frame, info) {
			return false
		}
		w.encapsulate(p, start, hl, r.outer, &r.src, &r.rs, r.tun, r.sport)
	default:
		return false
	}
	// The flow's accumulator, found again only when the batch has added them up since.
	b := &w.bc
	a := &b.flows[r.acc%flowAccs]
	if a.gen != b.gen || a.svc != r.svc || a.dest != r.dest {
		r.acc = uint8(w.flowAccIndex(r.svc, r.dest))
		a = &b.flows[r.acc%flowAccs]
	}
	if q.Dir == conntrack.DirOrig {
		a.inPkts++
		a.inBytes += inner
	} else {
		a.outPkts++
		a.outBytes += inner
	}
	if q.Dir == conntrack.DirOrig && (w.syncOn || w.fp != nil) {
		// As the full path (worker.request): a sync master's client packet is sent when
		// its count makes it due, and the fast path is offered the connection (or told
		// of its close). The run's first packet found the real server in the batch's
		// snapshot, which this packet's is.
		e := p.entry()
		if rs, ok := p.snap.dest(e.Dest); ok {
			if e.Sync {
				w.syncConn(e, &p.snap.Services[p.si], rs, p.now)
			}
			if w.fp != nil {
				w.fastRequest(p, e, rs, true)
			}
		}
	} else if w.fp != nil {
		w.fastReply(p, p.entry()) // as worker.reply
	}
	b.burst++
	r.qi = p.qi
	w.transmit(p, w.ports[r.out], r.mac)
	return true
}
