package dataplane

import (
	"errors"
	"math/rand/v2"
	"unsafe"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
)

// FULLNAT (DPVS / Taobao LVS's full NAT). A client's packet to VIP:vport leaves towards
// the real server with both endpoints translated: source (LIP, lport), one of the
// service's local addresses and a port the worker allocates; destination (RS, rport).
// The real server answers LIP:lport, so it needs no route back through the director and
// may sit in another subnet; it sees LIP as the client. Its reply is translated back to
// VIP:vport → client:cport. TTL / hop limit is decremented both ways, as NAT does.
//
// The connection's entry carries both keys: Orig (client:cport → VIP:vport) and Reply
// (RS:rport → LIP:lport). The table keeps both in the shard of the client endpoint
// (conntrack.Table.ShardOf(client, cport)), so the local port must satisfy
// ShardOf(LIP, lport) == ShardOf(client, cport), and the tuple (proto, RS, rport, LIP,
// lport) must not be in use. Each local address has a port index (lportIndex: the ports
// lportMin..65535 grouped by shard, built once per address when a snapshot is
// published): the allocator takes the ports of the client's shard, starts where the
// worker's last draw in that shard stopped (a cursor per worker and shard, random at
// first); if its port is in use it tries random ones, up to fullnatPortTries ports in
// all, letting Insert refuse a tuple in use
// (conntrack.ErrExists); then the next local address, round robin per worker
// (skipping one every laddrSkipEvery connections), up to fullnatLaddrTries of them. No
// free port: the packet is dropped (DropNoLport) and each local address tried counts a
// port conflict. A service with no local address drops new FULLNAT connections
// (DropNoLaddr). A batch's new connections draw their first local endpoint, the local
// address and the cursor's port, after the batch's lookup and before any insert
// (predrawFullNAT), which also prefetches the home of the reply key each will have.
// All of it allocates nothing and takes no lock but the connection table's shard lock,
// inside Insert.
//
// The cursor makes a worker hand out a shard's ports in turn, so a port comes back only
// after all the others of its shard: the least recently used first, as DPVS's per-core
// FIFO of free ports and RFC 6056's incrementing algorithms do. A connection that
// lives shorter than that never finds its port in use. A random start in each draw
// did: in PipelineNew's FULLNAT cases (65,536 connections open at the end of a cycle,
// a quarter of each shard's ports in use) 17 % of inserts were refused and retried;
// with the cursor none are (TestFullNATPortCursor). A successor director (sync, a
// restart's handoff) holds its predecessor's connections, whose ports lie in runs of
// consecutive ones; a cursor that meets a port in use therefore tries random ones
// rather than walk the run, which would drop new connections (no_lport) until it left
// it, and goes on from the first free one (TestFullNATPortCursorSkipsRun).

// Local ports: lportMin..65535, as DPVS.
const (
	lportMin   = 1024
	lportCount = 1<<16 - lportMin
)

// Allocation bounds per new connection.
const (
	fullnatLaddrTries = 4  // local addresses tried
	fullnatPortTries  = 32 // ports tried on each
)

// laddrSkipEvery: every laddrSkipEvery-th new connection of a worker skips a local
// address. The local addresses go round robin, and so do rr and wrr over the real
// servers: in step, a service with as many local addresses as real servers would pair
// each address with one server only. Only those pairs' tuples would be used, and they
// would fill and conflict early. In PipelineNew's FULLNAT cases (two of each) it took
// 1.53 inserts per connection. DPVS meets this by moving 5 % of rr and wrr sessions one
// address further, at random (__laddr_step). A fixed period does the same at the same
// rate and keeps a service's first connection on its first local address.
const laddrSkipEvery = 20

// Outcomes of insertFullNAT besides the connection table's errors. Sentinels: returning
// them allocates nothing.
var (
	errNoLaddr = errors.New("fullnat: the service has no local address")
	errNoLport = errors.New("fullnat: no free local port")
)

// lportIndex lists one local address's ports grouped by the connection-table shard of
// (address, port), and keeps each worker's place in each shard's list. Pointer-free
// contents; ports and start are immutable once built, and worker q alone reads and
// writes cur[q*shards:(q+1)*shards].
type lportIndex struct {
	ports []uint16 // every port lportMin..65535, in shard order
	start []uint32 // shard s owns ports[start[s]:start[s+1]]
	// cur[q*shards+s]: where worker q's next draw in shard s starts, an index into
	// shard(s); each starts at random (a restart does not hand out its predecessor's
	// ports first).
	cur    []uint16
	shards int
}

// newLportIndex groups addr's ports by ct's shards (a counting sort: one hash per port),
// with draw cursors for workers workers.
func newLportIndex(ct *conntrack.Table, addr [16]byte, workers int) *lportIndex {
	n := ct.Shards()
	of := make([]uint16, lportCount)
	x := &lportIndex{ports: make([]uint16, lportCount), start: make([]uint32, n+1), shards: n}
	for i := range of {
		s := ct.ShardOf(addr, uint16(lportMin+i))
		of[i] = uint16(s)
		x.start[s+1]++
	}
	for s := 1; s <= n; s++ {
		x.start[s] += x.start[s-1]
	}
	next := make([]uint32, n)
	copy(next, x.start[:n])
	for i, s := range of {
		x.ports[next[s]] = uint16(lportMin + i)
		next[s]++
	}
	x.cur = make([]uint16, workers*n)
	for i := range x.cur {
		if l := x.start[i%n+1] - x.start[i%n]; l > 0 {
			x.cur[i] = uint16(rand.Uint32N(l))
		}
	}
	return x
}

// cursor is worker q's draw cursor in shard s, nil when the index has none (a worker the
// index was not built for).
func (x *lportIndex) cursor(q, s int) *uint16 {
	if i := q*x.shards + s; q >= 0 && s >= 0 && s < x.shards && i < len(x.cur) {
		return &x.cur[i]
	}
	return nil
}

// shard returns the ports of shard s (empty for a shard the index does not know).
func (x *lportIndex) shard(s int) []uint16 {
	if s < 0 || s+1 >= len(x.start) {
		return nil
	}
	return x.ports[x.start[s]:x.start[s+1]]
}

// random returns the next value of the worker's xorshift64 generator (the allocator's
// starting point where the port index has no cursor for the worker: not for security,
// only to spread).
func (w *worker) random() uint64 {
	x := w.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	w.rng = x
	return x
}

// insertFullNAT inserts p.entry() (Orig and Reply.Src/SrcPort filled: the client's key and
// the real server) with a local endpoint allocated as the comment at the top of this
// file says, and leaves it in Reply.Dst/DstPort. It returns nil on success,
// conntrack.ErrExists when the connection itself exists already (another worker
// created it: look it up), errNoLaddr, errNoLport, or another error of Insert.
func (w *worker) insertFullNAT(p *pktDesc, svc *Service) error {
	n := len(svc.Laddrs)
	if n == 0 {
		return errNoLaddr
	}
	info, e, ct, now := &p.info, p.entry(), w.dp.ct, p.now
	shard, ok := p.q.OrigShard() // the batch's lookup hashed the client's key
	if !ok {
		shard = ct.ShardOf(info.Src, info.SrcPort)
	}
	var next int
	pre := p.fnLa > 0 && int(p.fnLa) <= n
	if pre {
		next = int(p.fnLa) - 1
	} else {
		next = w.nextLaddr(n)
	}
	checked := false
	for k := 0; k < min(n, fullnatLaddrTries); k++ {
		la := &svc.Laddrs[next]
		if next++; next == n {
			next = 0
		}
		if la.ports == nil {
			continue // a snapshot that was never published
		}
		ports := la.ports.shard(shard)
		if len(ports) == 0 {
			continue
		}
		var i int
		cur := la.ports.cursor(w.queue, shard)
		switch {
		case k == 0 && pre && int(p.fnIdx) < len(ports):
			i = int(p.fnIdx)
		case cur != nil && int(*cur) < len(ports):
			i = int(*cur)
		default:
			i = int(w.random() % uint64(len(ports)))
		}
		e.Reply.Dst = la.Addr
		for j := 0; j < min(len(ports), fullnatPortTries); j++ {
			if j > 0 {
				// The cursor's port is in use, most likely by one of a run (a
				// predecessor's connections, handed out in turn as this worker hands
				// them out): random ports, each as likely free as the shard's ports are.
				i = int(w.random() % uint64(len(ports)))
			}
			e.Reply.DstPort = ports[i]
			if i++; i == len(ports) {
				i = 0
			}
			// InsertQuery: Insert, with the key's hash and shard the batch's lookup
			// computed and without prefetching again what it prefetched (e is p.q's).
			err := ct.InsertQuery(p.q, info.TCPFlags, now)
			if err == nil {
				if cur != nil && !(pre && k == 0 && j == 0) {
					*cur = uint16(i)
				}
				return nil
			}
			if !errors.Is(err, conntrack.ErrExists) {
				return err
			}
			// Either the tuple is in use or the connection itself exists (its original
			// key): find out once.
			if !checked {
				checked = true
				if ct.Get(conntrack.DirOrig, &p.q.Key, now, &w.other) {
					return conntrack.ErrExists
				}
			}
		}
		if cur != nil {
			*cur = uint16(i) // past the ports tried
		}
		if c := w.laddrCtrs(la.ID); c != nil {
			c.add(1)
		}
	}
	if ct.Get(conntrack.DirOrig, &p.q.Key, now, &w.other) {
		return conntrack.ErrExists
	}
	return errNoLport
}

// nextLaddr is the index of the local address (of n) a new connection tries first.
func (w *worker) nextLaddr(n int) int {
	if w.laddrNext%laddrSkipEvery == laddrSkipEvery-1 {
		w.laddrNext++ // out of step with rr (laddrSkipEvery)
	}
	next := int(w.laddrNext % uint32(n))
	w.laddrNext++
	return next
}

// predrawFullNAT draws the first local endpoint of p's new connection (svc has local
// addresses), as insertFullNAT would, advancing the worker's cursor past it, and
// starts loading the home slot its reply key will have (a page of the table of its
// own: a FULLNAT reply key's home is its local endpoint's, not the client's). The
// worker calls it for each of a batch's new connections after the batch's lookup and
// before any insert, so that these misses overlap; insertFullNAT tries the drawn
// endpoint first. PipelineNew FULLNAT v4 337.8 -> 312.1 ns, v6 362.6 -> 340.2
// (medians of 8 alternating rounds). For a TCP packet it also prefetches the line of
// the frame's headroom that the TOA option will move the headers into: through a real
// AF_XDP socket (PipelineXSK) New FULLNAT v4 445.5 -> 419.7 ns, v6 458.5 -> 450.0
// (medians of 6; the fake's frames come round too soon to tell).
func (w *worker) predrawFullNAT(p *pktDesc, svc *Service) {
	if n := uint64(packet.TOALen(p.info.Family)); w.toa && p.info.Proto == packet.ProtoTCP && p.d.Addr >= n && p.d.Addr < uint64(len(p.in.umem)) {
		// The TOA option moves the headers n bytes back into the frame's headroom,
		// whose line nothing has touched since the frame went round the fill ring
		// (addTOA): otherwise a store miss the insert's locked instructions wait for.
		prefetchLine(uintptr(unsafe.Pointer(&p.in.umem[p.d.Addr-n])))
	}
	shard, ok := p.q.OrigShard()
	if !ok {
		return
	}
	next := w.nextLaddr(len(svc.Laddrs))
	p.fnLa, p.fnIdx = int32(next)+1, noPortIdx
	la := &svc.Laddrs[next]
	if la.ports == nil {
		return
	}
	ports := la.ports.shard(shard)
	cur := la.ports.cursor(w.queue, shard)
	if len(ports) == 0 || cur == nil || int(*cur) >= len(ports) {
		return // insertFullNAT draws a random port
	}
	i := int(*cur)
	p.fnIdx = uint16(i)
	if i++; i == len(ports) {
		i = 0
	}
	*cur = uint16(i)
	w.dp.ct.PrefetchReplyHome(p.q, &la.Addr, ports[p.fnIdx])
}

// noPortIdx is pktDesc.fnIdx when no port was drawn: above any index of a shard's ports
// (at most lportCount).
const noPortIdx = 1<<16 - 1

func (w *worker) laddrCtrs(id uint32) *ctr {
	if id < uint32(len(w.st.laddrConflicts)) {
		return &w.st.laddrConflicts[id]
	}
	return nil
}

// fullnatRequest forwards p, a client's packet of FULLNAT connection p.entry(), to its
// real server: source LIP:lport, destination RS:rport. It returns the next hop when it
// handed p to transmit (output), else nil.
func (w *worker) fullnatRequest(p *pktDesc) *hop {
	info, e := &p.info, p.entry()
	if packet.IsIPv4Mapped(e.Reply.Dst) != (info.Family == 4) || packet.IsIPv4Mapped(e.Reply.Src) != (info.Family == 4) {
		w.drop(p, DropBadMethod)
		return nil
	}
	if !packet.SCTPPortsFixable(info, e.Reply.DstPort, e.Reply.SrcPort) {
		w.drop(p, DropSCTPFragment)
		return nil
	}
	if !packet.DecrementTTL(p.frame, info) {
		w.drop(p, DropTTLExpired)
		return nil
	}
	w.countFlow(p, e.Service, e.Dest, true)
	if info.Frag {
		w.noteFrag(p, fragFullNATIn, e.Reply.Dst, e.Reply.Src)
	}
	if w.toa && wantsTOA(info, e) {
		w.addTOA(p, e)
	}
	packet.RewriteFullNAT(p.frame, info, e.Reply.Dst, e.Reply.DstPort, e.Reply.Src, e.Reply.SrcPort)
	return w.output(p, e.Reply.Src)
}

// wantsTOA tells whether info, a client's packet of FULLNAT connection e, gets the TOA
// option (packet.InsertTOA: the client's address and port, for the real server's toa
// module). DPVS writes it into the SYN and into the client's packets that acknowledge
// the real server's SYN and no data of it yet (the handshake's ACK, and data sent
// before an answer). xlvs keeps no sequence numbers: it writes it into a SYN and into
// the client's packets (ACK, neither SYN nor RST nor FIN) that find the connection in
// SYN_RECV, which the handshake's ACK (or, that one lost, the first segment after it)
// moves to ESTABLISHED. That is the packet the toa module reads (on the socket's
// creation from the request, tcp_v4_syn_recv_sock); later packets travel without it, so
// an established connection's packets are not grown and the XDP fast path, which takes
// only established connections, never needs to write it.
func wantsTOA(info *packet.Info, e *conntrack.Entry) bool {
	if info.Proto != packet.ProtoTCP || info.Frag {
		return false
	}
	switch f := info.TCPFlags & (packet.TCPFlagSYN | packet.TCPFlagACK | packet.TCPFlagRST | packet.TCPFlagFIN); f {
	case packet.TCPFlagSYN:
		return true
	case packet.TCPFlagACK:
		return e.Prior == conntrack.StateSynRecv
	}
	return false
}

// addTOA writes the TOA option for e's client into p (packet.InsertTOA): its Ethernet
// header (a VLAN tag included), IP header and fixed TCP header move back into the
// frame's headroom. A packet whose TCP header has no room for it, which it would make
// longer than the path MTU towards the real server, or whose frame has no headroom goes
// without it, as with DPVS (counted: toa_skipped).
func (w *worker) addTOA(p *pktDesc, e *conntrack.Entry) {
	info := &p.info
	n := packet.TOALen(info.Family)
	rt := w.hop(p.fib, &e.Reply.Src)
	a := p.d.Addr
	if a%p.in.frame < uint64(n) || !packet.TOAFits(p.frame[info.L4Off:], n) ||
		rt.mtu != 0 && int(info.L3Len)+n > int(rt.mtu) {
		w.st.toaSkipped.add(1)
		return
	}
	start, l3 := a-uint64(n), a+uint64(info.L3Off)
	copy(p.in.umem[start:], p.in.umem[a:l3])
	packet.InsertTOA(p.in.umem[l3-uint64(n):l3+uint64(info.L3Len)], info.Family, int(info.L4Off-info.L3Off), e.Orig.Src, e.Orig.SrcPort)
	info.L3Len += uint16(n)
	p.d = xsk.Desc{Addr: start, Len: uint32(info.L3Off) + uint32(info.L3Len)} // Ethernet padding left behind
	p.frame = p.in.umem[start : start+uint64(p.d.Len)]
	w.st.toaAdded.add(1)
}

// fullnatReply forwards p, a real server's packet of FULLNAT connection p.entry(), to
// the client: source VIP:vport, destination client:cport. It returns the next hop when
// it handed p to transmit (output), else nil.
func (w *worker) fullnatReply(p *pktDesc) *hop {
	info, e := &p.info, p.entry()
	if !packet.SCTPPortsFixable(info, e.Orig.DstPort, e.Orig.SrcPort) {
		w.drop(p, DropSCTPFragment)
		return nil
	}
	if !packet.DecrementTTL(p.frame, info) {
		w.drop(p, DropTTLExpired)
		return nil
	}
	w.countFlow(p, e.Service, e.Dest, false)
	if info.Frag {
		w.noteFrag(p, fragFullNATOut, e.Orig.Dst, e.Orig.Src)
	}
	packet.RewriteFullNAT(p.frame, info, e.Orig.Dst, e.Orig.DstPort, e.Orig.Src, e.Orig.SrcPort)
	return w.output(p, e.Orig.Src)
}
