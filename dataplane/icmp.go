package dataplane

import (
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
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

// icmp handles an ICMP or ICMPv6 packet the XDP program redirected.
func (w *worker) icmp(in *port, d xsk.Desc, frame []byte, snap *Snapshot, fib *FIB, now int64) {
	info := &w.info
	ie := &w.icmpErr
	if !packet.ParseICMPError(frame, info, ie) {
		w.drop(in, d, DropNotTCPUDP)
		return
	}
	if !packet.ICMPChecksumValid(frame, info) {
		w.drop(in, d, DropMalformed)
		return
	}
	ct := w.dp.ct
	w.key = conntrack.Key{Src: ie.Dst, Dst: ie.Src, SrcPort: ie.DstPort, DstPort: ie.SrcPort, Proto: ie.Proto}
	if _, ok := snap.service(&ie.Src, ie.SrcPort, ie.Proto); ok && ct.Get(conntrack.DirOrig, &w.key, now, &w.entry) {
		w.icmpToReal(in, d, frame, snap, fib)
		return
	}
	if snap.isReal(&ie.Dst, ie.DstPort, ie.Proto) && ct.Get(conntrack.DirReply, &w.key, now, &w.entry) {
		w.icmpToClient(in, d, frame, fib)
		return
	}
	w.drop(in, d, DropICMPNoConn)
}

// icmpToReal forwards an error from the client side to the connection's real server.
func (w *worker) icmpToReal(in *port, d xsk.Desc, frame []byte, snap *Snapshot, fib *FIB) {
	info, ie, e := &w.info, &w.icmpErr, &w.entry
	rs, ok := snap.dest(e.Dest)
	if !ok {
		w.drop(in, d, DropDestGone)
		return
	}
	switch e.Method {
	case conntrack.MethodNAT:
		if !packet.DecrementTTL(frame, info) {
			w.drop(in, d, DropTTLExpired)
			return
		}
		if !packet.RewriteICMPError(frame, info, ie, info.Src, e.Reply.Src, e.Reply.Src, ie.Dst, e.Reply.SrcPort, ie.DstPort) {
			w.drop(in, d, DropMalformed)
			return
		}
		w.countFlow(e.Service, e.Dest, true)
		w.st.icmpForwarded.add(1)
		w.output(in, d, frame, fib, e.Reply.Src)
	case conntrack.MethodFullNAT:
		if !packet.DecrementTTL(frame, info) {
			w.drop(in, d, DropTTLExpired)
			return
		}
		// From LIP to RS, quoting RS:rport → LIP:lport.
		if !packet.RewriteICMPError(frame, info, ie, e.Reply.Dst, e.Reply.Src, e.Reply.Src, e.Reply.Dst, e.Reply.SrcPort, e.Reply.DstPort) {
			w.drop(in, d, DropMalformed)
			return
		}
		w.countFlow(e.Service, e.Dest, true)
		w.st.icmpForwarded.add(1)
		w.output(in, d, frame, fib, e.Reply.Src)
	case conntrack.MethodDR, conntrack.MethodTUN:
		if packet.IsIPv4Mapped(rs.Addr) != (info.Family == 4) {
			w.drop(in, d, DropBadMethod)
			return
		}
		w.countFlow(e.Service, e.Dest, true)
		w.st.icmpForwarded.add(1)
		if e.Method == conntrack.MethodDR {
			w.output(in, d, frame, fib, rs.Addr)
		} else {
			w.tunnel(in, d, fib, rs.Addr)
		}
	default:
		w.drop(in, d, DropBadMethod)
	}
}

// icmpToClient forwards an error from a NAT or FULLNAT real server's side to the
// client, from the virtual service's address.
func (w *worker) icmpToClient(in *port, d xsk.Desc, frame []byte, fib *FIB) {
	info, ie, e := &w.info, &w.icmpErr, &w.entry
	if e.Method != conntrack.MethodNAT && e.Method != conntrack.MethodFullNAT {
		w.drop(in, d, DropBadMethod)
		return
	}
	if !packet.DecrementTTL(frame, info) {
		w.drop(in, d, DropTTLExpired)
		return
	}
	ok := false
	if e.Method == conntrack.MethodNAT {
		ok = packet.RewriteICMPError(frame, info, ie, e.Orig.Dst, info.Dst, ie.Src, e.Orig.Dst, ie.SrcPort, e.Orig.DstPort)
	} else {
		// From VIP to the client, quoting client:cport → VIP:vport.
		ok = packet.RewriteICMPError(frame, info, ie, e.Orig.Dst, e.Orig.Src, e.Orig.Src, e.Orig.Dst, e.Orig.SrcPort, e.Orig.DstPort)
	}
	if !ok {
		w.drop(in, d, DropMalformed)
		return
	}
	w.countFlow(e.Service, e.Dest, false)
	w.st.icmpForwarded.add(1)
	w.output(in, d, frame, fib, info.Dst)
}
