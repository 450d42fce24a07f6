package dataplane

import (
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// ICMP errors about tracked connections, as IPVS's ip_vs_in_icmp / ip_vs_out_icmp handle
// them. The error quotes a packet of the connection that travelled the other way, so the
// quote reversed is a connection key:
//
//   - from the client side (the client, or a router before it), about a packet the
//     director or a DR/TUN real server sent from VIP:port: the reversed quote is the
//     entry's original key. NAT: the outer destination and the quoted source become the
//     real server's address and port; DR: the frame goes to the real server unchanged;
//     TUN: encapsulated towards it.
//   - from the real-server side (NAT and FULLNAT: the real server, or a router between),
//     about a packet the director sent to the real server: the reversed quote is the
//     entry's reply key. The outer source and the quoted destination become VIP:port,
//     and the message goes to the client.
//
// FULLNAT translates both ends: towards the real server the outer packet comes from the
// connection's local address (the real server may have no route to the client or a
// router near it) and the quote becomes RS:rport → LIP:lport, what the real server sent;
// towards the client the outer destination becomes the client and the quote
// client:cport → VIP:vport, what the client sent.
//
// Lookups use conntrack.Table.Get: an error is not a packet of the connection and must
// not move its TCP state or timer. The ICMP checksum is verified first (as IPVS does) and
// recomputed after the translation; TTL is decremented for NAT as for the flow's packets.

// icmp handles p, an ICMP or ICMPv6 packet the XDP program redirected. p.q is a
// lookup of its own, outside the batch's LookupBatch: the key of the quoted packet's
// connection, and its entry once found.
func (w *worker) icmp(p *pktDesc) {
	info := &p.info
	ie := &p.icmp
	if !packet.ParseICMPError(p.frame, info, ie) {
		w.drop(p, DropNotTCPUDP)
		return
	}
	if !packet.ICMPChecksumValid(p.frame, info) {
		w.drop(p, DropMalformed)
		return
	}
	ct := w.dp.ct
	q, snap := p.q, p.snap
	q.Key = conntrack.Key{Src: ie.Dst, Dst: ie.Src, SrcPort: ie.DstPort, DstPort: ie.SrcPort, Proto: ie.Proto}
	if _, ok := snap.service(&ie.Src, ie.SrcPort, ie.Proto); ok && ct.Get(conntrack.DirOrig, &q.Key, p.now, &q.Entry) {
		w.icmpToReal(p)
		return
	}
	if snap.isReal(&ie.Dst, ie.DstPort, ie.Proto) && ct.Get(conntrack.DirReply, &q.Key, p.now, &q.Entry) {
		w.icmpToClient(p)
		return
	}
	w.drop(p, DropICMPNoConn)
}

// icmpToReal forwards an error from the client side to the connection's real server.
func (w *worker) icmpToReal(p *pktDesc) {
	info, ie, e := &p.info, &p.icmp, p.entry()
	rs, ok := p.snap.dest(e.Dest)
	if !ok {
		w.drop(p, DropDestGone)
		return
	}
	switch e.Method {
	case conntrack.MethodNAT:
		if !packet.DecrementTTL(p.frame, info) {
			w.drop(p, DropTTLExpired)
			return
		}
		if !packet.RewriteICMPError(p.frame, info, ie, info.Src, e.Reply.Src, e.Reply.Src, ie.Dst, e.Reply.SrcPort, ie.DstPort) {
			w.drop(p, DropMalformed)
			return
		}
		w.countFlow(p, e.Service, e.Dest, true)
		w.st.icmpForwarded.add(1)
		w.output(p, e.Reply.Src)
	case conntrack.MethodFullNAT:
		if !packet.DecrementTTL(p.frame, info) {
			w.drop(p, DropTTLExpired)
			return
		}
		// From LIP to RS, quoting RS:rport → LIP:lport.
		if !packet.RewriteICMPError(p.frame, info, ie, e.Reply.Dst, e.Reply.Src, e.Reply.Src, e.Reply.Dst, e.Reply.SrcPort, e.Reply.DstPort) {
			w.drop(p, DropMalformed)
			return
		}
		w.countFlow(p, e.Service, e.Dest, true)
		w.st.icmpForwarded.add(1)
		w.output(p, e.Reply.Src)
	case conntrack.MethodDR, conntrack.MethodTUN:
		if e.Method == conntrack.MethodDR && packet.IsIPv4Mapped(rs.Addr) != (info.Family == 4) {
			w.drop(p, DropBadMethod)
			return
		}
		w.countFlow(p, e.Service, e.Dest, true)
		w.st.icmpForwarded.add(1)
		if e.Method == conntrack.MethodDR {
			w.output(p, rs.Addr)
		} else {
			w.tunnel(p, rs.Addr, rs.Tun)
		}
	default:
		w.drop(p, DropBadMethod)
	}
}

// icmpToClient forwards an error from a NAT or FULLNAT real server's side to the
// client, from the virtual service's address.
func (w *worker) icmpToClient(p *pktDesc) {
	info, ie, e := &p.info, &p.icmp, p.entry()
	if e.Method != conntrack.MethodNAT && e.Method != conntrack.MethodFullNAT {
		w.drop(p, DropBadMethod)
		return
	}
	if !packet.DecrementTTL(p.frame, info) {
		w.drop(p, DropTTLExpired)
		return
	}
	ok := false
	if e.Method == conntrack.MethodNAT {
		ok = packet.RewriteICMPError(p.frame, info, ie, e.Orig.Dst, info.Dst, ie.Src, e.Orig.Dst, ie.SrcPort, e.Orig.DstPort)
	} else {
		// From VIP to the client, quoting client:cport → VIP:vport.
		ok = packet.RewriteICMPError(p.frame, info, ie, e.Orig.Dst, e.Orig.Src, e.Orig.Src, e.Orig.Dst, e.Orig.SrcPort, e.Orig.DstPort)
	}
	if !ok {
		w.drop(p, DropMalformed)
		return
	}
	w.countFlow(p, e.Service, e.Dest, false)
	w.st.icmpForwarded.add(1)
	w.output(p, info.Dst)
}
