package dataplane

import (
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// One-packet scheduling (ipvsadm -o, keepalived "ops"), as IPVS's IP_VS_CONN_F_ONE_PACKET
// (intel-lab-lkp/linux, net/netfilter/ipvs/ip_vs_core.c at
// 07f10f88bedef187ba21c2c3e91a24bc8ab9065a and ip_vs_conn.c at
// 05b49de590e9c88b9a5d259f8bf553f7df16b6c7):
//   - ip_vs_schedule and ip_vs_sched_persist give a UDP connection of an -o service the
//     flag; ip_vs_conn_hash does not hash it and ip_vs_conn_put expires it at once: every
//     datagram is scheduled anew, counted as a connection (ip_vs_conn_stats), and leaves
//     nothing in the table. TCP connections of the service are ordinary ones.
//   - persistence still applies: the template is an ordinary entry, so a client of a
//     persistent -o service keeps its real server.
//   - the reply of a NAT real server finds no connection in ip_vs_out_hook, which then
//     lets it continue (NF_ACCEPT): the director routes it to the client unchanged, with
//     the real server's address as its source. xlvs forwards it so too.
//   - the sync master sends no one-packet connection, but counts each datagram for its
//     persistence template and sends the template by the kernel's rule for templates
//     (every datagram with the default sync_period): sync.go, syncOnePacket.
// FULLNAT services refuse -o (control): their replies need the entry's local port.

// onePacket reports whether a new connection of svc to dst with protocol proto is
// scheduled as one packet.
func onePacket(svc *Service, dst *Dest, proto uint8) bool {
	return opsProto(svc, dst.Method, proto)
}

// opsProto is onePacket by the real server's forwarding method.
func opsProto(svc *Service, method conntrack.Method, proto uint8) bool {
	return svc.OPS && proto == packet.ProtoUDP && method != conntrack.MethodFullNAT
}

// destPort is the port a new connection of svc to port vport reaches on real server dst
// (ip_vs_schedule / ip_vs_sched_persist): the real server's port, but the packet's port
// on a service of port 0 (fwmark and port-0 services) when the service is persistent or
// the real server's port is 0.
func destPort(svc *Service, dst *Dest, vport uint16) uint16 {
	if svc.Key.Port == 0 && (svc.Persist > 0 || dst.Port == 0) {
		return vport
	}
	return dst.Port
}

// opsReply forwards p, from a NAT real server and of no connection, when the real
// server serves a one-packet UDP service: unchanged but for the TTL, to its destination,
// as the kernel routes it. It reports whether it took the packet (false: p is still
// the caller's).
func (w *worker) opsReply(p *pktDesc) bool {
	info := &p.info
	snap := p.snap
	if snap == nil || info.Proto != packet.ProtoUDP || len(snap.opsReal.slots) == 0 {
		return false
	}
	if _, ok := snap.opsReal.get(&info.Src, info.SrcPort, info.Proto); !ok {
		if _, ok := snap.opsReal.get(&info.Src, 0, info.Proto); !ok {
			return false
		}
	}
	if !packet.DecrementTTL(p.frame, info) {
		w.drop(p, DropTTLExpired)
		return true
	}
	w.bc.opsReplies++
	w.output(p, info.Dst)
	return true
}
