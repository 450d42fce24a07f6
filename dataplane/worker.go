package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
	"xlvs/sched"
)

// port is one interface's socket as a worker sees it.
type port struct {
	ifindex int32
	name    string
	mac     [6]byte
	sock    xsk.Socket
	umem    []byte
	tx      []xsk.Desc
	txN     int
}

// pendingCap bounds the frames one worker holds while their next hop resolves (the
// kernel's unres_qlen idea); pendingTimeout is how long one may wait.
const (
	pendingCap     = 64
	pendingTimeout = int64(time.Second)
)

// pending is a rewritten frame waiting for its next hop's MAC address. Pointer-free.
type pending struct {
	in       uint8 // index of the ingress port in worker.ports
	family   uint8
	d        xsk.Desc
	dst      [16]byte
	l3off    uint16
	l3len    uint16
	deadline int64
}

// worker forwards packets of one queue index on every managed interface.
type worker struct {
	dp    *Dataplane
	queue int
	cpu   int // -1: not pinned
	ports []*port
	rx    []xsk.Desc
	pfds  []unix.PollFd
	st    *workerStats

	// frames waiting for neighbour resolution, and the FIB they last tried
	pend    []pending
	pendFIB *FIB
	inIdx   uint8 // index of the port being received from

	tunID uint16 // IPv4 identification of the outer headers this worker writes

	frags fragTable // notes about fragmented datagrams (frag.go)

	rng       uint64 // xorshift64 state: FULLNAT local ports' starting points
	laddrNext uint32 // round robin over a service's FULLNAT local addresses

	icmpLimit tokenBucket // the ICMP errors this worker writes itself (ratelimit.go)

	hops [hopSlots]hop // next-hop cache (nexthop.go)

	bc batchCtrs // counters gathered during a batch (stats.go)

	fp *fastWorker // the XDP fast path's queue; nil when it is off (fastpath.go)

	sync        *syncRing // entries for the sync daemon (sync.go)
	syncOn      bool      // the batch's view of Dataplane.syncMaster
	syncScratch SyncConn

	// the batch being handled: packets, their connection lookups, and the keys of the
	// connections made so far (a bit per keyBit)
	pkts []rxPkt
	qs   []conntrack.Query
	made [4]uint64
	// the service of the batch's last packet that was for one (snapshot of the batch)
	lastSvc struct {
		addr  [16]byte
		port  uint16
		proto uint8
		ok    bool
		si    int32
	}

	// scratch, reused for every packet
	info    packet.Info
	icmpErr packet.ICMPError
	entry   conntrack.Entry
	other   conntrack.Entry // a second entry (FULLNAT: checking for a connection)
	key     conntrack.Key
	flow    sched.Flow
}

func newWorker(dp *Dataplane, queue, cpu int, ports []*port) *worker {
	w := &worker{
		dp:        dp,
		queue:     queue,
		cpu:       cpu,
		ports:     ports,
		rx:        make([]xsk.Desc, dp.cfg.Batch),
		pkts:      make([]rxPkt, dp.cfg.Batch),
		qs:        make([]conntrack.Query, dp.cfg.Batch),
		st:        newWorkerStats(dp.cfg.MaxServices, dp.cfg.MaxDests, dp.cfg.MaxLaddrs),
		pend:      make([]pending, 0, pendingCap),
		icmpLimit: newTokenBucket(dp.cfg.ICMPRate, dp.cfg.ICMPBurst),
		sync:      newSyncRing(dp.cfg.SyncQueue),
		frags:     newFragTable(uint64(time.Now().UnixNano()) ^ uint64(queue)<<32),
		rng:       (uint64(time.Now().UnixNano())^uint64(queue)<<32)*0x9E3779B97F4A7C15 | 1, // never 0
	}
	for _, p := range ports {
		p.tx = make([]xsk.Desc, dp.cfg.Batch*2)
		p.umem = p.sock.Umem()
		if fd := p.sock.FD(); fd >= 0 {
			w.pfds = append(w.pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
	}
	return w
}

// run is the worker's loop. A panic (asavie/xdp panics on unexpected errno; anything else
// is a bug) is recovered here, once per worker loop, counted, and the loop resumes after
// a growing back-off, so one bad moment never stops forwarding for good.
func (w *worker) run(ctx context.Context) {
	if w.cpu >= 0 {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(w.cpu)
		_ = unix.SchedSetaffinity(0, &set) // best effort: a bad CPU was refused at start-up
	}
	backoff := time.Millisecond
	for ctx.Err() == nil {
		if w.loop(ctx) {
			return
		}
		w.dp.log.Warn("worker recovered from panic; backing off", "queue", w.queue, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

// loop runs until ctx ends (true) or a panic is recovered (false).
func (w *worker) loop(ctx context.Context) (done bool) {
	defer func() {
		if r := recover(); r != nil {
			w.st.panics.add(1)
			w.dp.lastPanic.Store(panicText(r))
			done = false
		}
	}()
	for ctx.Err() == nil {
		if w.poll() == 0 {
			w.idle()
		}
	}
	return true
}

func panicText(r any) *string {
	var s string
	switch v := r.(type) {
	case error:
		s = v.Error()
	case string:
		s = v
	default:
		s = "panic"
	}
	return &s
}

// poll processes one batch from every socket and returns how many packets it saw.
func (w *worker) poll() int {
	snap := w.dp.snap.Load()
	fib := w.dp.fib.fib.Load()
	now := w.dp.now()
	total := 0
	if len(w.pend) > 0 {
		w.retryPending(fib, now)
	}
	for i, in := range w.ports {
		w.inIdx = uint8(i)
		n := in.sock.Receive(w.rx)
		w.st.rx.add(uint64(n))
		w.handleBatch(in, n, snap, fib, now)
		total += n
	}
	for _, p := range w.ports {
		w.flush(p)
		p.sock.Complete()
		p.sock.Refill()
	}
	w.flushCounters()
	return total
}

// idle blocks in poll(2) until a socket has packets (sharing a core with NAPI, spinning is
// several times slower), or briefly sleeps for sockets without a descriptor (the fake).
func (w *worker) idle() {
	if len(w.pfds) == 0 {
		time.Sleep(200 * time.Microsecond)
		return
	}
	for i := range w.pfds {
		w.pfds[i].Revents = 0
	}
	timeout := 50 // ms: bounded so shutdown and config changes are noticed
	if len(w.pend) > 0 {
		timeout = 1 // frames wait for a neighbour: look at the FIB again soon
	}
	_, _ = unix.Poll(w.pfds, timeout)
}

// queueTx adds a frame of p's UMEM to p's transmit batch, flushing a full batch first.
func (w *worker) queueTx(p *port, d xsk.Desc) {
	if p.txN == len(p.tx) {
		w.flush(p)
	}
	if p.txN == len(p.tx) { // flush could not move anything: drop
		p.sock.Free(d.Addr)
		w.st.drops[DropTxFull].add(1)
		return
	}
	p.tx[p.txN] = d
	p.txN++
}

// flush transmits p's batch; what the TX ring cannot take is dropped and counted.
func (w *worker) flush(p *port) {
	if p.txN == 0 {
		p.sock.Transmit(nil) // frames an earlier kick could not push out
		return
	}
	n, err := p.sock.Transmit(p.tx[:p.txN])
	w.st.tx.add(uint64(n))
	if n < p.txN {
		reason := DropTxFull
		if err != nil {
			reason = DropTxError
		}
		for _, d := range p.tx[n:p.txN] {
			p.sock.Free(d.Addr)
		}
		w.st.drops[reason].add(uint64(p.txN - n))
	} else if err != nil && errors.Is(err, xsk.ErrLinkDown) {
		w.st.drops[DropTxError].add(0) // queued but the kick failed: counted by the socket
	}
	p.txN = 0
}

func (w *worker) drop(in *port, d xsk.Desc, why Drop) {
	in.sock.Free(d.Addr)
	w.st.drops[why].add(1)
}

// Kinds of received packets, as the first pass over a batch classifies them.
const (
	pktDone    uint8 = iota // dropped already
	pktFrag                 // a later fragment (frag.go)
	pktICMP                 // an ICMP or ICMPv6 packet (icmp.go)
	pktRequest              // a client's packet to a service: rxPkt.si, rxPkt.q
	pktReply                // a NAT or FULLNAT real server's packet: rxPkt.q
)

// rxPkt is a received packet between the passes over its batch.
type rxPkt struct {
	info packet.Info
	kind uint8
	q    uint16 // its connection lookup in worker.qs
	si   int32  // pktRequest: the service's index in the snapshot
}

// handleBatch forwards or drops the n frames of w.rx received on in, in two passes. The
// first parses and classifies every frame and lists the connection lookups the batch
// needs; conntrack.Table.LookupBatch then does them all at once (one shard lock per run
// of one shard's packets, and, on tables larger than the CPU caches, the cache misses of
// the whole batch overlapped); the second pass forwards each packet in order.
//
// The lookups run before any packet of the batch is forwarded, in the batch's order, so
// they see one another as sequential lookups would; what they cannot see is a connection
// an earlier packet of the batch creates when forwarded. A packet whose lookup missed is
// therefore looked up again when a connection made during the batch may be its own
// (mayBeMade). Other effects of forwarding on the table (an insert evicting an entry, a
// scheduler reading connection counts) land as they would had the packets arrived in
// the other order, or on another worker.
func (w *worker) handleBatch(in *port, n int, snap *Snapshot, fib *FIB, now int64) {
	m := 0
	w.lastSvc.ok = false
	w.syncOn = w.dp.syncMaster.Load()
	for i := 0; i < n; i++ {
		if w.classify(in, w.rx[i], &w.pkts[i], snap, m) {
			m++
		}
	}
	if m > 0 {
		ct := w.dp.ct
		ct.LookupBatch(w.qs[:m], now)
		// The new connections' inserts: start their cache misses together.
		for j := range w.qs[:m] {
			if q := &w.qs[j]; q.Dir == conntrack.DirOrig && (q.Status == conntrack.NotFound || q.Status == conntrack.Reused) {
				ct.PrefetchInsert(&q.Key)
			}
		}
	}
	w.made = [4]uint64{}
	for i := 0; i < n; i++ {
		p := &w.pkts[i]
		if p.kind == pktDone {
			continue
		}
		d := w.rx[i]
		frame := in.umem[d.Addr : d.Addr+uint64(d.Len)]
		w.info = p.info
		switch p.kind {
		case pktFrag:
			w.fragment(in, d, frame, fib, now)
		case pktICMP:
			w.icmp(in, d, frame, snap, fib, now)
		case pktRequest:
			w.request(in, d, frame, snap, &snap.Services[p.si], fib, now, &w.qs[p.q])
		case pktReply:
			w.reply(in, d, frame, fib, now, &w.qs[p.q])
		}
	}
}

// classify parses frame d into p and decides what becomes of it: dropped at once
// (counted; p.kind pktDone), or handled in the second pass. A request or reply also gets
// its connection lookup, w.qs[q]; classify reports whether it used it.
func (w *worker) classify(in *port, d xsk.Desc, p *rxPkt, snap *Snapshot, q int) bool {
	frame := in.umem[d.Addr : d.Addr+uint64(d.Len)]
	info := &p.info
	p.kind = pktDone
	res := packet.Parse(frame, info)
	switch res {
	case packet.ResultOK, packet.ResultFragment, packet.ResultUnsupportedProto:
	case packet.ResultNotIP:
		w.drop(in, d, DropNotTCPUDP)
		return false
	default:
		w.drop(in, d, DropMalformed)
		return false
	}
	if snap == nil {
		w.drop(in, d, DropNoService)
		return false
	}
	switch {
	case res == packet.ResultFragment:
		p.kind = pktFrag
		return false
	case res == packet.ResultUnsupportedProto && (info.Proto == packet.ProtoICMP && info.Family == 4 || info.Proto == packet.ProtoICMPv6 && info.Family == 6):
		p.kind = pktICMP
		return false
	case res == packet.ResultUnsupportedProto:
		w.drop(in, d, DropNotTCPUDP)
		return false
	}
	dir := conntrack.DirOrig
	// Most packets of a batch are for the service the packet before was for.
	lp := &w.lastSvc
	if !(lp.ok && lp.addr == info.Dst && lp.port == info.DstPort && lp.proto == info.Proto) {
		lp.si, lp.ok = snap.service(&info.Dst, info.DstPort, info.Proto)
		lp.addr, lp.port, lp.proto = info.Dst, info.DstPort, info.Proto
	}
	if lp.ok {
		p.kind, p.si = pktRequest, lp.si
	} else if snap.isReal(&info.Src, info.SrcPort, info.Proto) {
		p.kind, dir = pktReply, conntrack.DirReply
	} else {
		w.drop(in, d, DropNoService)
		return false
	}
	p.q = uint16(q)
	qq := &w.qs[q]
	qq.Key = conntrack.Key{Src: info.Src, Dst: info.Dst, SrcPort: info.SrcPort, DstPort: info.DstPort, Proto: info.Proto}
	qq.Dir, qq.TCPFlags = dir, info.TCPFlags
	return true
}

// keyBit is k's bit in worker.made.
func keyBit(k *conntrack.Key) uint32 {
	h := uint32(k.SrcPort)<<16 | uint32(k.DstPort)
	h ^= binary.LittleEndian.Uint32(k.Src[12:16]) ^ binary.LittleEndian.Uint32(k.Dst[12:16])*0x85EBCA6B ^ uint32(k.Proto)
	return (h * 0x9E3779B1) >> 24
}

// noteMade records the keys of a connection this worker made during the batch.
func (w *worker) noteMade(e *conntrack.Entry) {
	b := keyBit(&e.Orig)
	w.made[b/64] |= 1 << (b % 64)
	if e.Method == conntrack.MethodNAT || e.Method == conntrack.MethodFullNAT {
		b = keyBit(&e.Reply)
		w.made[b/64] |= 1 << (b % 64)
	}
}

// mayBeMade tells whether a connection made during the batch may have key k (false:
// surely not).
func (w *worker) mayBeMade(k *conntrack.Key) bool {
	b := keyBit(k)
	return w.made[b/64]&(1<<(b%64)) != 0
}

// lookedUp gives the outcome of a packet's connection lookup q (done for the batch) in
// w.entry, looking up again when a connection made since may be the packet's.
func (w *worker) lookedUp(q *conntrack.Query, now int64) conntrack.Status {
	w.key = q.Key
	switch {
	case q.Status == conntrack.Found:
		w.entry = q.Entry
	case w.mayBeMade(&w.key):
		return w.dp.ct.Lookup(q.Dir, &w.key, q.TCPFlags, now, &w.entry)
	}
	return q.Status
}

// request handles a packet from a client to a virtual service.
// q is its connection lookup.
func (w *worker) request(in *port, d xsk.Desc, frame []byte, snap *Snapshot, svc *Service, fib *FIB, now int64, q *conntrack.Query) {
	info := &w.info
	st := w.lookedUp(q, now)
	if st == conntrack.Invalid {
		w.drop(in, d, DropNoConn)
		return
	}
	if st != conntrack.Found {
		if !conntrack.MayCreate(info.Proto, info.TCPFlags, w.dp.cfg.SloppyTCP) {
			w.drop(in, d, DropNoConn)
			return
		}
		if why := w.schedule(svc, now); why != dropNone {
			if why == DropNoDest {
				// IPVS's ip_vs_leave: tell the client, TCP or UDP alike, with a port
				// unreachable (the frame becomes the answer).
				w.st.drops[why].add(1)
				w.unavailable(in, d, fib)
				return
			}
			w.drop(in, d, why)
			return
		}
	} else if svc.Persist > 0 {
		// Activity keeps the client's persistence template alive.
		pk := persistKey{svc: svc.ID, addr: maskPersist(info.Src, svc.PersistBits)}
		w.dp.persist.lookup(&pk, now, svc.Persist)
	}
	e := &w.entry
	rs, ok := snap.dest(e.Dest)
	if !ok {
		// The real server was deleted: IPVS (expire_nodest_conn=0) drops silently and
		// lets the entry time out.
		w.drop(in, d, DropDestGone)
		return
	}
	if w.syncOn {
		// As ip_vs_in, whatever becomes of the packet after this point.
		w.syncConn(svc, rs, now)
	}
	if w.fp != nil {
		w.fastRequest(e, rs.Addr, st == conntrack.Found, fib, now)
	}
	switch e.Method {
	case conntrack.MethodNAT:
		if !packet.SCTPPortsFixable(info, info.SrcPort, e.Reply.SrcPort) {
			w.drop(in, d, DropSCTPFragment)
			return
		}
		if !packet.DecrementTTL(frame, info) {
			w.drop(in, d, DropTTLExpired)
			return
		}
		w.countIn(e)
		if info.Frag {
			w.noteFrag(now, fragNATDst, e.Reply.Src, e.Reply.Src, e.Service, e.Dest)
		}
		// NAT: the destination becomes the real server, which is the reply key's source.
		packet.RewriteDst(frame, info, e.Reply.Src, e.Reply.SrcPort)
		w.output(in, d, frame, fib, e.Reply.Src)
	case conntrack.MethodFullNAT:
		// FULLNAT: the source becomes the local endpoint, the destination the real
		// server: the reply key's destination and source (fullnat.go).
		w.fullnatRequest(in, d, frame, fib, now)
	case conntrack.MethodDR:
		// DR: the IP packet leaves untouched (IPVS delivers it locally, so no TTL
		// decrement); only the MACs change, towards the real server's.
		if packet.IsIPv4Mapped(rs.Addr) != (info.Family == 4) {
			w.drop(in, d, DropBadMethod)
			return
		}
		w.countIn(e)
		if info.Frag {
			w.noteFrag(now, fragDR, rs.Addr, rs.Addr, e.Service, e.Dest)
		}
		w.output(in, d, frame, fib, rs.Addr)
	case conntrack.MethodTUN:
		// TUN: IPIP (IPv4 in IPv4) or ip6ip6; the inner packet is left as it came.
		if packet.IsIPv4Mapped(rs.Addr) != (info.Family == 4) {
			w.drop(in, d, DropBadMethod)
			return
		}
		w.countIn(e)
		if info.Frag {
			w.noteFrag(now, fragTUN, rs.Addr, rs.Addr, e.Service, e.Dest)
		}
		w.tunnel(in, d, fib, rs.Addr)
	default:
		w.drop(in, d, DropBadMethod)
	}
}

// headroomStart returns where a frame of in must start so that the IP packet described
// by w.info is preceded by an Ethernet header and extra bytes, and whether the frame's
// headroom allows it.
func (w *worker) headroomStart(in *port, d xsk.Desc, extra int) (uint64, bool) {
	base := d.Addr - d.Addr%uint64(in.sock.FrameSize())
	need := uint64(packet.EthernetHeaderLen + extra)
	l3 := d.Addr + uint64(w.info.L3Off)
	if l3 < base+need {
		return 0, false
	}
	return l3 - need, true
}

// setEtherType writes the untagged EtherType of family at frame[12:14].
func setEtherType(frame []byte, family uint8) {
	if family == 4 {
		frame[12], frame[13] = 0x08, 0x00
	} else {
		frame[12], frame[13] = 0x86, 0xdd
	}
}

// tunnel encapsulates the packet in w.info towards real server rs, writing the outer
// header into the frame's headroom (the descriptor moves back), with the director's
// address on the egress route as source. A packet that would exceed the path MTU once
// encapsulated is answered with ICMP fragmentation-needed / Packet Too Big carrying the
// MTU minus the tunnel header, as IPVS does (IPv4 only when DF is set; without DF IPVS
// would fragment the outer packet, which xlvs does not: dropped as too big).
func (w *worker) tunnel(in *port, d xsk.Desc, fib *FIB, rs [16]byte) {
	info := &w.info
	rt := w.hop(fib, &rs)
	if !rt.route {
		w.drop(in, d, DropNoRoute)
		return
	}
	if !rt.hasSrc {
		w.drop(in, d, DropNoSource)
		return
	}
	hl := packet.TunnelHeaderLen(info.Family)
	if rt.mtu != 0 && int(info.L3Len)+hl > int(rt.mtu) {
		mtu := rt.mtu - uint32(hl)
		switch {
		case info.Family == 6:
			w.icmpError(in, d, fib, packet.ICMPv6PacketTooBig, 0, max(mtu, 1280), DropTooBig)
		case packet.IPv4(in.umem[d.Addr+uint64(info.L3Off):]).DontFragment():
			w.icmpError(in, d, fib, packet.ICMPv4DestUnreach, packet.ICMPv4FragNeeded, mtu, DropTooBig)
		default:
			w.drop(in, d, DropTooBig)
		}
		return
	}
	start, ok := w.headroomStart(in, d, hl)
	if !ok {
		w.drop(in, d, DropNoHeadroom)
		return
	}
	end := d.Addr + uint64(info.L3Off) + uint64(info.L3Len)
	frame := in.umem[start:end]
	setEtherType(frame, info.Family)
	w.tunID++
	eh := packet.EthernetHeaderLen
	packet.PutTunnelHeader(frame[eh:eh+hl], frame[eh+hl:], info.Family, rt.src, rs, w.tunID)
	info.L3Off = uint16(eh)
	info.L3Len += uint16(hl)
	w.bc.encapsulated++
	w.output(in, xsk.Desc{Addr: start, Len: uint32(len(frame))}, frame, fib, rs)
}

// icmpError answers the packet in w.info with an ICMP error to its source, built in place
// in the frame's headroom (header before the original, which is quoted as far as the
// limits allow), and counts it. Over the worker's ICMP rate limit nothing is sent: the
// frame is freed, counted as rate limited and, unless why is dropNone (the caller
// counted the packet already), as a drop for why.
func (w *worker) icmpError(in *port, d xsk.Desc, fib *FIB, typ, code uint8, rest uint32, why Drop) {
	info := &w.info
	if !w.icmpLimit.allow(w.dp.now()) {
		in.sock.Free(d.Addr)
		w.st.icmpLimited.add(1)
		if why != dropNone {
			w.st.drops[why].add(1)
		}
		return
	}
	hl := packet.IPv4MinHeaderLen + 8
	if info.Family == 6 {
		hl = packet.IPv6HeaderLen + 8
	}
	start, ok := w.headroomStart(in, d, hl)
	if !ok {
		w.drop(in, d, DropNoHeadroom)
		return
	}
	eh := packet.EthernetHeaderLen
	buf := in.umem[start : d.Addr+uint64(info.L3Off)+uint64(info.L3Len)]
	n := packet.PutICMPError(buf[eh:], buf[eh+hl:], info.Family, typ, code, rest, 64)
	if n == 0 {
		w.drop(in, d, DropMalformed)
		return
	}
	setEtherType(buf, info.Family)
	dst := info.Src
	info.L3Off = uint16(eh)
	info.L3Len = uint16(n)
	w.st.icmpSent.add(1)
	frame := buf[:eh+n]
	w.output(in, xsk.Desc{Addr: start, Len: uint32(len(frame))}, frame, fib, dst)
}

// countIn adds a client → real server packet to its service's and destination's counters.
func (w *worker) countIn(e *conntrack.Entry) { w.countFlow(e.Service, e.Dest, true) }

// countFlow adds the packet in w.info to service svc's and destination dest's counters:
// in (client → real server) or out (real server → client). The counts are gathered per
// batch (stats.go) and reach the counters when the batch ends.
func (w *worker) countFlow(svc, dest uint32, in bool) {
	a := w.flowAcc(svc, dest)
	n := uint64(w.info.L3Len)
	if in {
		a.inPkts++
		a.inBytes += n
	} else {
		a.outPkts++
		a.outBytes += n
	}
}

func (w *worker) svcCtrs(id uint32) *flowCtrs {
	if id < uint32(len(w.st.svc)) {
		return &w.st.svc[id]
	}
	return nil
}

func (w *worker) destCtrs(id uint32) *flowCtrs {
	if id < uint32(len(w.st.dest)) {
		return &w.st.dest[id]
	}
	return nil
}

// unavailable answers the packet in w.info, for which no real server was available, with
// ICMP port unreachable (ICMPv6 port unreachable) to its source, as IPVS's ip_vs_leave
// does. The packet was counted as DropNoDest; the answer counts in ICMPSent, or in
// ICMPRateLimited when over the worker's ICMP rate limit.
func (w *worker) unavailable(in *port, d xsk.Desc, fib *FIB) {
	if w.info.Family == 6 {
		w.icmpError(in, d, fib, packet.ICMPv6DestUnreach, packet.ICMPv6PortUnreach, 0, dropNone)
	} else {
		w.icmpError(in, d, fib, packet.ICMPv4DestUnreach, packet.ICMPv4PortUnreach, 0, dropNone)
	}
}

// schedule picks a real server for a new connection and inserts its entry into w.entry.
// On failure it returns the drop reason (not counted yet), else dropNone.
func (w *worker) schedule(svc *Service, now int64) Drop {
	info := &w.info
	ct := w.dp.ct
	w.flow = sched.Flow{Src: info.Src, Dst: info.Dst, SrcPort: info.SrcPort, DstPort: info.DstPort, Proto: info.Proto, Now: now}
	i := -1
	var pk persistKey
	if svc.Persist > 0 {
		// A live template sends the client back to its server, even one quiesced with
		// weight 0 (IPVS's expire_quiescent_template default).
		pk = persistKey{svc: svc.ID, addr: maskPersist(info.Src, svc.PersistBits)}
		if id, ok := w.dp.persist.lookup(&pk, now, svc.Persist); ok {
			i = svc.destIndex(id)
		}
	}
	if i < 0 {
		i = svc.Sched.Schedule(ct, &w.flow)
		if i < 0 || i >= len(svc.Dests) {
			return DropNoDest
		}
		if svc.Persist > 0 {
			w.dp.persist.set(&pk, svc.Dests[i].ID, now, svc.Persist)
		}
	}
	dst := &svc.Dests[i]
	w.entry = conntrack.Entry{
		Orig:    w.key,
		Reply:   conntrack.Key{Src: dst.Addr, Dst: info.Src, SrcPort: destPort(svc, dst, info.DstPort), DstPort: info.SrcPort, Proto: info.Proto},
		Dest:    dst.ID,
		Service: svc.ID,
		Method:  dst.Method,
	}
	if onePacket(svc, dst, info.Proto) {
		w.flowAcc(svc.ID, dst.ID).conns++ // ops.go: scheduled, counted, never inserted
		return dropNone
	}
	var err error
	if dst.Method == conntrack.MethodFullNAT {
		// The reply comes back to a local address and port chosen now (fullnat.go).
		err = w.insertFullNAT(svc, now)
	} else {
		err = ct.Insert(&w.entry, info.TCPFlags, now)
	}
	switch {
	case err == nil:
		w.noteMade(&w.entry)
		w.flowAcc(svc.ID, dst.ID).conns++
		return dropNone
	case errors.Is(err, conntrack.ErrExists):
		// Another worker created it between our lookup and insert: use theirs.
		if ct.Lookup(conntrack.DirOrig, &w.key, info.TCPFlags, now, &w.entry) == conntrack.Found {
			return dropNone
		}
		return DropNoConn
	case err == errNoLaddr:
		return DropNoLaddr
	case err == errNoLport:
		return DropNoLport
	default:
		return DropTableFull
	}
}

// reply handles a packet from a NAT or FULLNAT real server back to a client.
// q is its connection lookup.
func (w *worker) reply(in *port, d xsk.Desc, frame []byte, fib *FIB, now int64, q *conntrack.Query) {
	info := &w.info
	if w.lookedUp(q, now) != conntrack.Found {
		if !w.opsReply(in, d, frame, fib) {
			w.drop(in, d, DropNoReplyConn)
		}
		return
	}
	if w.fp != nil {
		w.fastReply(fib, now)
	}
	if w.entry.Method == conntrack.MethodFullNAT {
		w.fullnatReply(in, d, frame, fib, now)
		return
	}
	if !packet.SCTPPortsFixable(info, w.entry.Orig.DstPort, info.DstPort) {
		w.drop(in, d, DropSCTPFragment)
		return
	}
	if !packet.DecrementTTL(frame, info) {
		w.drop(in, d, DropTTLExpired)
		return
	}
	e := &w.entry
	w.countFlow(e.Service, e.Dest, false)
	if info.Frag {
		w.noteFrag(now, fragNATSrc, e.Orig.Dst, e.Orig.Src, e.Service, e.Dest)
	}
	// The source becomes the virtual service the client talked to.
	packet.RewriteSrc(frame, info, e.Orig.Dst, e.Orig.DstPort)
	w.output(in, d, frame, fib, e.Orig.Src)
}

// output sends a rewritten frame towards dst: route, neighbour, MACs, and transmit on the
// egress interface's socket (in place, or copied into that socket's UMEM).
func (w *worker) output(in *port, d xsk.Desc, frame []byte, fib *FIB, dst [16]byte) {
	h := w.hop(fib, &dst)
	switch {
	case !h.route:
		w.drop(in, d, DropNoRoute)
	case h.out < 0:
		w.drop(in, d, DropNotManaged)
	case !h.neigh:
		w.dp.fib.request(NeighKey{Ifindex: h.ifx, Addr: h.nh})
		w.hold(in, d, dst)
	default:
		w.transmit(in, w.ports[h.out], d, frame, h.mac, w.info.Family, w.info.L3Off, w.info.L3Len)
	}
}

// hold keeps a frame whose next hop is being resolved, as the kernel queues packets on an
// incomplete neighbour entry; when the queue is full the frame is dropped and counted.
func (w *worker) hold(in *port, d xsk.Desc, dst [16]byte) {
	if len(w.pend) == cap(w.pend) {
		w.drop(in, d, DropNoNeighbour)
		return
	}
	w.pend = append(w.pend, pending{
		in: w.inIdx, family: w.info.Family, d: d, dst: dst,
		l3off: w.info.L3Off, l3len: w.info.L3Len, deadline: w.dp.now() + pendingTimeout,
	})
	w.st.neighQueued.add(1)
}

// retryPending sends held frames whose next hop is now resolved and drops the ones that
// waited too long. It runs only when the FIB changed or a deadline may have passed.
func (w *worker) retryPending(fib *FIB, now int64) {
	if fib == w.pendFIB && now < w.pend[0].deadline {
		return
	}
	w.pendFIB = fib
	kept := w.pend[:0]
	for _, p := range w.pend {
		in := w.ports[p.in]
		h := w.hop(fib, &p.dst)
		ok := h.route && h.out >= 0 && h.neigh
		switch {
		case ok:
			frame := in.umem[p.d.Addr : p.d.Addr+uint64(p.d.Len)]
			w.transmit(in, w.ports[h.out], p.d, frame, h.mac, p.family, p.l3off, p.l3len)
		case now >= p.deadline:
			w.drop(in, p.d, DropNoNeighbour)
		default:
			kept = append(kept, p)
		}
	}
	w.pend = kept
}

// transmit puts a rewritten frame on out with the next hop's MAC: in place when out is the
// ingress port, else copied into out's UMEM.
func (w *worker) transmit(in, out *port, d xsk.Desc, frame []byte, mac [6]byte, family uint8, l3off, l3len uint16) {
	if out == in {
		packet.SetEthernet(frame, mac, out.mac)
		w.queueTx(out, d)
		w.bc.forwarded++
		return
	}
	base, ok := out.sock.Alloc()
	if !ok {
		w.drop(in, d, DropNoFrame)
		return
	}
	// A fresh Ethernet header (no VLAN tag: the other interface is untagged) and the IP
	// packet, at the same headroom the kernel leaves, so encapsulation can prepend later.
	addr := base + xsk.XDPPacketHeadroom
	n := packet.EthernetHeaderLen + int(l3len)
	if n > out.sock.FrameSize()-xsk.XDPPacketHeadroom {
		out.sock.Free(base)
		w.drop(in, d, DropTooBig)
		return
	}
	buf := out.umem[addr : addr+uint64(n)]
	packet.SetEthernet(buf, mac, out.mac)
	if family == 4 {
		buf[12], buf[13] = 0x08, 0x00
	} else {
		buf[12], buf[13] = 0x86, 0xdd
	}
	copy(buf[packet.EthernetHeaderLen:], frame[l3off:int(l3off)+int(l3len)])
	in.sock.Free(d.Addr)
	w.queueTx(out, xsk.Desc{Addr: addr, Len: uint32(n)})
	w.bc.forwarded++
}
