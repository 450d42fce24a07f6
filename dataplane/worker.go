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
	idx     uint8 // its index in worker.ports
	ifindex int32
	name    string
	mac     [6]byte
	sock    xsk.Socket
	umem    []byte
	frame   uint64 // sock.FrameSize(), read once (an interface call)
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
	gone     bool // handed on by retryPending: removed by compactPending
	deadline int64
}

// worker forwards packets of one queue index on every managed interface.
type worker struct {
	dp    *Dataplane
	queue int
	cpu   int  // -1: not pinned
	toa   bool // FULLNAT writes the TOA option (Config.NoTOA unset)
	ports []*port
	rx    []xsk.Desc
	pfds  []unix.PollFd
	st    *workerStats

	// frames waiting for neighbour resolution, and the FIB they last tried
	pend    []pending
	pendFIB *FIB
	retry   pktDesc // the held frame retryPending is handing on

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

	// the batch being handled: its packets, their connection lookups, and the keys of
	// the connections made so far (a bit per keyBit). batchIn/batchN/classified tell the
	// recover path which frames of the batch the worker still owns (reclaim).
	pkts       []pktDesc
	qs         []conntrack.Query
	ctScratch  conntrack.Scratch // LookupBatchIn's working memory, kept from batch to batch
	made       [4]uint64
	batchIn    *port
	batchN     int
	classified int
	// panicAt, when > 0, panics before the second pass forwards packet panicAt-1 of a
	// batch (panicFirst: before the first pass classifies it): set only by tests, to
	// check that a recovered panic leaks no frame.
	panicAt    int
	panicFirst bool
	// the service of the batch's last packet that was for one (snapshot of the batch)
	lastSvc struct {
		addr  [16]byte
		port  uint16
		proto uint8
		ok    bool
		si    int32
	}

	// burst is what the batch's last packet forwarded in full left for the packets of
	// its flow that follow it (flowrun.go).
	burst flowRun
	nq    int32 // the batch's requests and replies: its queries at the front of qs

	// other receives an entry nobody reads (FULLNAT: does the connection exist?): a
	// field so that passing it to the table does not allocate. Never packet data.
	other conntrack.Entry
}

func newWorker(dp *Dataplane, queue, cpu int, ports []*port) *worker {
	w := &worker{
		dp:        dp,
		queue:     queue,
		cpu:       cpu,
		toa:       !dp.cfg.NoTOA,
		ports:     ports,
		rx:        make([]xsk.Desc, dp.cfg.Batch),
		pkts:      make([]pktDesc, dp.cfg.Batch),
		qs:        make([]conntrack.Query, dp.cfg.Batch),
		st:        newWorkerStats(dp.cfg.MaxServices, dp.cfg.MaxDests, dp.cfg.MaxLaddrs),
		pend:      make([]pending, 0, pendingCap),
		icmpLimit: newTokenBucket(dp.cfg.ICMPRate, dp.cfg.ICMPBurst),
		sync:      newSyncRing(dp.cfg.SyncQueue),
		frags:     newFragTable(uint64(time.Now().UnixNano()) ^ uint64(queue)<<32),
		rng:       (uint64(time.Now().UnixNano())^uint64(queue)<<32)*0x9E3779B97F4A7C15 | 1, // never 0
	}
	for i, p := range ports {
		p.idx = uint8(i)
		p.tx = make([]xsk.Desc, dp.cfg.Batch*2)
		p.umem = p.sock.Umem()
		p.frame = uint64(p.sock.FrameSize())
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
	defer w.releaseHeld()
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

// loop runs until ctx ends (true) or a panic is recovered (false). A recovered panic
// returns the frames the worker still owned to their sockets (reclaim): none leaks.
func (w *worker) loop(ctx context.Context) (done bool) {
	defer func() {
		if r := recover(); r != nil {
			w.st.panics.add(1)
			w.dp.lastPanic.Store(panicText(r))
			w.reclaim()
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

// reclaim runs after a recovered panic: it releases every frame of the batch in hand
// that the worker still owns (received, not yet dropped or handed on) and the held
// frame retryPending was handing on, and forgets the held frames already handed on.
// Frames queued on a port's TX batch stay there: the next flush sends them. The
// packets are lost; the panic is what counts them.
func (w *worker) reclaim() {
	if in := w.batchIn; in != nil {
		for i := 0; i < w.batchN; i++ {
			p := &w.pkts[i]
			if i >= w.classified { // received, not yet looked at
				p.in, p.d, p.owned, p.fnLa = in, w.rx[i], true, 0
			}
			if p.owned {
				w.release(p)
			}
		}
	}
	w.batchIn, w.batchN, w.classified = nil, 0, 0
	if w.retry.owned {
		w.release(&w.retry)
	}
	w.compactPending()
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
	for _, in := range w.ports {
		n := in.sock.Receive(w.rx)
		w.batchIn, w.batchN, w.classified = in, n, 0
		w.st.rx.add(uint64(n))
		w.handleBatch(in, n, snap, fib, now)
		w.batchIn, w.batchN = nil, 0
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

// txRoom makes room for one frame on p's transmit batch, flushing a full batch first,
// and reports whether there is room.
func (w *worker) txRoom(p *port) bool {
	if p.txN == len(p.tx) {
		w.flush(p)
	}
	return p.txN < len(p.tx) // false: flush could not move anything
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
			// Frames of the TX batch, no packet's any more: the one other place frames
			// are freed.
			p.sock.Free(d.Addr)
		}
		w.st.drops[reason].add(uint64(p.txN - n))
	} else if err != nil && errors.Is(err, xsk.ErrLinkDown) {
		w.st.drops[DropTxError].add(0) // queued but the kick failed: counted by the socket
	}
	p.txN = 0
}

// Kinds of received packets, as the first pass over a batch classifies them.
const (
	pktDone    uint8 = iota // dropped already
	pktFrag                 // a later fragment (frag.go)
	pktICMP                 // an ICMP or ICMPv6 packet (icmp.go): pktDesc.q, pktDesc.icmp
	pktRequest              // a client's packet to a service: pktDesc.si, pktDesc.q
	pktReply                // a NAT or FULLNAT real server's packet: pktDesc.q
)

// pktDesc is one packet, from the batch's first pass to its exit (katran's
// packet_description): everything the worker knows about it lives here, and each
// stage takes a *pktDesc. A packet leaves by exactly one of two exits: drop (reason
// counted, frame released) or transmit (frame onto a port's TX batch: in place, or
// copied into the egress socket's UMEM and released); hold parks it until its next hop
// resolves, then one of the two. The only release without a drop reason is that of a
// packet counted already (no_dest) whose ICMP answer the rate limit refuses. owned is
// true from receipt until the exit: what reclaim frees after a panic. The batch's
// entries keep their snap and fib until overwritten by a later batch.
type pktDesc struct {
	in    *port    // the ingress port: the frame belongs to its UMEM
	d     xsk.Desc // the frame; moves back when a header is prepended (tunnel, icmpError)
	frame []byte   // in.umem[d.Addr : d.Addr+d.Len]
	owned bool     // the worker still holds the frame: no exit taken yet
	kind  uint8
	si    int32            // pktRequest: the service's index in snap
	info  packet.Info      // the parse; L3Off/L3Len follow rewrites that move the IP packet
	q     *conntrack.Query // requests, replies, ICMP: the connection's key, and its entry once known
	qi    int32            // requests, replies: q's index in worker.qs
	icmp  packet.ICMPError // pktICMP: the quoted packet
	flow  sched.Flow       // a new connection's scheduling input
	snap  *Snapshot        // the batch's configuration
	fib   *FIB             // the batch's routes and neighbours
	now   int64            // the batch's clock
	// a new FULLNAT connection's first local endpoint, drawn after the batch's lookup
	// (predrawFullNAT): fnLa is its index in the service's Laddrs plus one (0: none
	// drawn), fnIdx its port's index in the local address's shard list
	fnLa  int32
	fnIdx uint16
}

// entry is p's connection: valid once looked up (lookedUp) or scheduled (schedule).
func (p *pktDesc) entry() *conntrack.Entry { return &p.q.Entry }

// release returns p's frame to its socket's free list. It is the one place a packet's
// frame is freed: drop calls it, transmit after copying the frame out, icmpError when
// the rate limit refuses an answer, reclaim after a panic.
func (w *worker) release(p *pktDesc) {
	p.in.sock.Free(p.d.Addr)
	p.owned = false
}

// drop is the exit of a packet that is not forwarded: its reason counted, its frame
// released.
func (w *worker) drop(p *pktDesc, why Drop) {
	w.release(p)
	w.st.drops[why].add(1)
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
//
// Requests and replies take their lookups from the front of w.qs (the part
// LookupBatch sees), ICMP errors theirs from the back; a batch never needs more than n.
func (w *worker) handleBatch(in *port, n int, snap *Snapshot, fib *FIB, now int64) {
	m, top := 0, n
	w.lastSvc.ok = false
	w.syncOn = w.dp.syncMaster.Load()
	w.burst.qi = -1
	// The packet before, when a request or a reply: where its ports are, and they
	// (repeats' first look, what tells apart most flows of one client). rl4 < 0: none.
	rl4, rports := -1, uint32(0)
	for i := 0; i < n; i++ {
		if w.panicAt > 0 && w.panicFirst && i == w.panicAt-1 {
			panic("dataplane: test panic mid-batch")
		}
		p := &w.pkts[i]
		p.in, p.d, p.owned, p.fnLa = in, w.rx[i], true, 0
		p.snap, p.fib, p.now = snap, fib, now
		w.classified = i + 1
		p.frame = in.umem[p.d.Addr : p.d.Addr+uint64(p.d.Len)]
		if rl4 >= 0 && len(p.frame) >= rl4+4 && binary.BigEndian.Uint32(p.frame[rl4:]) == rports && w.repeats(p, &w.pkts[i-1]) {
			// The packet before's flow again: its query repeats that one.
			q := &w.qs[m]
			p.q, p.qi = q, int32(m)
			q.Repeat, q.TCPFlags = true, p.info.TCPFlags
			m++
			continue
		}
		rl4 = -1
		switch w.classify(p) {
		case pktRequest, pktReply:
			w.lookup(p, &w.qs[m])
			p.qi = int32(m)
			m++
			rl4, rports = int(p.info.L4Off), uint32(p.info.SrcPort)<<16|uint32(p.info.DstPort)
		case pktICMP:
			top--
			p.q = &w.qs[top]
		}
	}
	w.nq = int32(m)
	if m > 0 {
		// It also starts the cache misses of the new connections' inserts.
		w.dp.ct.LookupBatchIn(&w.ctScratch, w.qs[:m], now)
	}
	// The batch's new FULLNAT connections draw their local endpoints now, and the homes
	// of their reply keys, each in a page of its own, start loading together
	// (predrawFullNAT): in the inserts, one at a time, each was a miss under the shard
	// lock. Only where the lookup prefetched for inserts (a table larger than the
	// caches) and the snapshot has local addresses; elsewhere insertFullNAT draws.
	if m > 0 && snap != nil && snap.laddrs && w.ctScratch.Made() > 0 {
		pkts := w.pkts[:n]
		for i := range pkts {
			p := &pkts[i]
			if p.kind != pktRequest {
				continue
			}
			if q := p.q; q.Status != conntrack.NotFound && q.Status != conntrack.Reused || q.Repeat {
				continue
			}
			if svc := &snap.Services[p.si]; len(svc.Laddrs) > 0 {
				w.predrawFullNAT(p, svc)
			}
		}
	}
	w.made = [4]uint64{}
	for i := 0; i < n; i++ {
		p := &w.pkts[i]
		if w.panicAt > 0 && !w.panicFirst && i == w.panicAt-1 {
			panic("dataplane: test panic mid-batch")
		}
		if p.kind == pktRequest || p.kind == pktReply {
			if p.q.Shared {
				p.q = w.pkts[i-1].q // the entry is the packet before's (LookupBatch)
			}
			// A follower of the batch's run (flowrun.go), found by the batch's lookup:
			// offered to the run here, sparing it request's or reply's calls. They offer
			// only a packet found on their second look (lookedUp).
			if p.q.Status == conntrack.Found && w.tryFollow(p) {
				continue
			}
		}
		switch p.kind {
		case pktFrag:
			w.fragment(p)
		case pktICMP:
			w.icmp(p)
		case pktRequest:
			w.request(p, &snap.Services[p.si])
		case pktReply:
			w.reply(p)
		}
	}
}

// classify parses p's frame (p.frame, set by the caller) and decides what becomes of
// it: dropped at once (counted; pktDone), or handled in the second pass. It returns
// p.kind.
func (w *worker) classify(p *pktDesc) uint8 {
	info := &p.info
	p.kind, p.q = pktDone, nil
	res := packet.Parse(p.frame, info)
	switch res {
	case packet.ResultOK, packet.ResultFragment, packet.ResultUnsupportedProto:
	case packet.ResultNotIP:
		w.drop(p, DropNotTCPUDP)
		return pktDone
	default:
		w.drop(p, DropMalformed)
		return pktDone
	}
	if p.snap == nil {
		w.drop(p, DropNoService)
		return pktDone
	}
	switch {
	case res == packet.ResultFragment:
		p.kind = pktFrag
		return pktFrag
	case res == packet.ResultUnsupportedProto && (info.Proto == packet.ProtoICMP && info.Family == 4 || info.Proto == packet.ProtoICMPv6 && info.Family == 6):
		p.kind = pktICMP
		return pktICMP
	case res == packet.ResultUnsupportedProto:
		w.drop(p, DropNotTCPUDP)
		return pktDone
	}
	// Most packets of a batch are for the service the packet before was for.
	lp := &w.lastSvc
	if !(lp.ok && lp.addr == info.Dst && lp.port == info.DstPort && lp.proto == info.Proto) {
		lp.si, lp.ok = p.snap.service(&info.Dst, info.DstPort, info.Proto)
		lp.addr, lp.port, lp.proto = info.Dst, info.DstPort, info.Proto
	}
	switch {
	case lp.ok:
		p.kind, p.si = pktRequest, lp.si
	case p.snap.isReal(&info.Src, info.SrcPort, info.Proto):
		p.kind = pktReply
	default:
		w.drop(p, DropNoService)
	}
	return p.kind
}

// repeats tells whether p is the next packet of the flow of prev, which was classified
// as a request or a reply and whose ports p has (handleBatch checked): whether
// packet.ParseRepeatPorts (ParseRepeat past the ports) takes p's frame, whose headers
// are then prev's but for the IP length and the TCP flags. If so p is classified as
// prev was, without Parse or the service lookup; if not, classify does it.
func (w *worker) repeats(p, prev *pktDesc) bool {
	if !packet.ParseRepeatPorts(&prev.info, p.frame, &p.info) {
		return false
	}
	p.kind, p.si = prev.kind, prev.si
	return true
}

// lookup makes q p's connection lookup, for the batch's LookupBatch.
func (w *worker) lookup(p *pktDesc, q *conntrack.Query) {
	info := &p.info
	p.q = q
	// Field by field into q.Key, the addresses in 8-byte halves: a Key literal is built
	// on the stack from narrow stores and copied with 16-byte loads, and so are
	// addresses Parse has just written in halves, which stalls store forwarding.
	k := &q.Key
	copyAddr(&k.Src, &info.Src)
	copyAddr(&k.Dst, &info.Dst)
	k.SrcPort, k.DstPort, k.Proto = info.SrcPort, info.DstPort, info.Proto
	q.Dir, q.TCPFlags, q.Repeat = conntrack.DirOrig, info.TCPFlags, false
	if p.kind == pktReply {
		q.Dir = conntrack.DirReply
	}
}

// copyAddr is *dst = *src in two 8-byte moves (see lookup).
func copyAddr(dst, src *[16]byte) {
	binary.NativeEndian.PutUint64(dst[0:8], binary.NativeEndian.Uint64(src[0:8]))
	binary.NativeEndian.PutUint64(dst[8:16], binary.NativeEndian.Uint64(src[8:16]))
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

// lookedUp gives the outcome of p's connection lookup (done for the batch), the entry
// in p.q.Entry, looking up again when a connection made since may be the packet's.
func (w *worker) lookedUp(p *pktDesc) conntrack.Status {
	q := p.q
	if q.Status != conntrack.Found && w.mayBeMade(&q.Key) {
		return w.dp.ct.Lookup(q.Dir, &q.Key, q.TCPFlags, p.now, &q.Entry)
	}
	return q.Status
}

// request handles a packet from a client to virtual service svc.
func (w *worker) request(p *pktDesc, svc *Service) {
	info := &p.info
	offered := p.q.Status == conntrack.Found // handleBatch offered it to the run
	st := w.lookedUp(p)
	if st == conntrack.Invalid {
		w.drop(p, DropNoConn)
		return
	}
	// Found only now: a connection made earlier in the batch, whose run this may follow.
	if !offered && st == conntrack.Found && w.tryFollow(p) {
		return
	}
	if st != conntrack.Found {
		if !w.dp.ct.MayCreate(info.Proto, info.TCPFlags) {
			w.drop(p, DropNoConn)
			return
		}
		if why := w.schedule(p, svc); why != dropNone {
			if why == DropNoDest {
				// IPVS's ip_vs_leave: tell the client, TCP or UDP alike, with a port
				// unreachable (the frame becomes the answer).
				w.st.drops[why].add(1)
				w.unavailable(p)
				return
			}
			w.drop(p, why)
			return
		}
	} else if svc.Persist > 0 {
		// Activity keeps the client's persistence template alive.
		var pk persistKey
		pk.set(svc.ID, &info.Src, svc.PersistBits)
		w.dp.persist.lookup(&pk, p.now, svc.Persist)
	}
	// The request's connection and its state after this packet are known here, and
	// only here: p.entry() (looked up and moved, or just inserted).
	e := p.entry()
	rs, ok := p.snap.dest(e.Dest)
	if !ok {
		// The real server was deleted: IPVS (expire_nodest_conn=0) drops silently and
		// lets the entry time out.
		w.drop(p, DropDestGone)
		return
	}
	if w.syncOn {
		// As ip_vs_in, whatever becomes of the packet after this point.
		w.syncConn(e, svc, rs, p.now)
	}
	if w.fp != nil {
		w.fastRequest(p, e, rs, st == conntrack.Found)
	}
	switch e.Method {
	case conntrack.MethodNAT:
		if !packet.SCTPPortsFixable(info, info.SrcPort, e.Reply.SrcPort) {
			w.drop(p, DropSCTPFragment)
			return
		}
		if !packet.DecrementTTL(p.frame, info) {
			w.timeExceeded(p)
			return
		}
		w.countFlow(p, e.Service, e.Dest, true)
		if info.Frag {
			w.noteFrag(p, fragNATDst, e.Reply.Src, e.Reply.Src)
		}
		// NAT: the destination becomes the real server, which is the reply key's source.
		packet.RewriteDst(p.frame, info, e.Reply.Src, e.Reply.SrcPort)
		if h := w.output(p, e.Reply.Src); h != nil && w.runs(p) {
			w.startRun(p, h, e, packet.Encap{})
		}
	case conntrack.MethodFullNAT:
		// FULLNAT: the source becomes the local endpoint, the destination the real
		// server: the reply key's destination and source (fullnat.go).
		if h := w.fullnatRequest(p); h != nil && w.runs(p) {
			w.startRun(p, h, e, packet.Encap{})
		}
	case conntrack.MethodDR:
		// DR: the MACs change, towards the real server's, and the TTL (hop limit) drops
		// by one, as in every IPVS method (decrement_ttl in __ip_vs_get_out_rt,
		// net/netfilter/ipvs/ip_vs_xmit.c since Linux 4.10).
		if packet.IsIPv4Mapped(rs.Addr) != (info.Family == 4) {
			w.drop(p, DropBadMethod)
			return
		}
		if !packet.DecrementTTL(p.frame, info) {
			w.timeExceeded(p)
			return
		}
		w.countFlow(p, e.Service, e.Dest, true)
		if info.Frag {
			w.noteFrag(p, fragDR, rs.Addr, rs.Addr)
		}
		if h := w.output(p, rs.Addr); h != nil && w.runs(p) {
			w.startRun(p, h, e, packet.Encap{})
		}
	case conntrack.MethodTUN:
		// TUN: IPIP (IPv4 in IPv4) or ip6ip6, or GUE or GRE, around the inner packet,
		// whose TTL (hop limit) drops by one first, as IPVS's (the outer header copies it).
		// The real server may be of the other family (IPv6 in IPv4, IPv4 in IPv6).
		if !packet.DecrementTTL(p.frame, info) {
			w.timeExceeded(p)
			return
		}
		w.countFlow(p, e.Service, e.Dest, true)
		if info.Frag {
			w.noteFrag(p, fragTUN, rs.Addr, rs.Addr).tun = rs.Tun
		}
		if h := w.tunnel(p, rs.Addr, rs.Tun); h != nil && w.runs(p) {
			w.startRun(p, h, e, rs.Tun)
		}
	default:
		w.drop(p, DropBadMethod)
	}
}

// headroomStart returns where p's frame must start so that its IP packet is preceded by
// an Ethernet header and extra bytes, and whether the frame's headroom allows it.
func headroomStart(p *pktDesc, extra int) (uint64, bool) {
	base := p.d.Addr - p.d.Addr%p.in.frame
	need := uint64(packet.EthernetHeaderLen + extra)
	l3 := p.d.Addr + uint64(p.info.L3Off)
	if l3 < base+need {
		return 0, false
	}
	return l3 - need, true
}

// prepend moves p's frame back to start (in its headroom, from headroomStart), ending
// with its IP packet; what lies between is the caller's to write.
func prepend(p *pktDesc, start uint64) {
	end := p.d.Addr + uint64(p.info.L3Off) + uint64(p.info.L3Len)
	p.d = xsk.Desc{Addr: start, Len: uint32(end - start)}
	p.frame = p.in.umem[start:end]
}

// familyOfAddr is 4 for an IPv4-mapped address, else 6.
func familyOfAddr(a *[16]byte) uint8 {
	if packet.IsIPv4Mapped(*a) {
		return 4
	}
	return 6
}

// setEtherType writes the untagged EtherType of family at frame[12:14].
func setEtherType(frame []byte, family uint8) {
	if family == 4 {
		frame[12], frame[13] = 0x08, 0x00
	} else {
		frame[12], frame[13] = 0x86, 0xdd
	}
}

// tunnel encapsulates p towards real server rs as enc says, writing the outer headers
// into the frame's headroom (the descriptor moves back), with the director's address on
// the egress route as source. A packet that would exceed the path MTU once encapsulated
// is answered with ICMP fragmentation-needed / Packet Too Big carrying the MTU minus the
// tunnel headers, as IPVS does (IPv4 only when DF is set; without DF IPVS would fragment
// the outer packet, which xlvs does not: dropped as too big). It returns the next hop
// when it handed p to transmit (output), else nil.
func (w *worker) tunnel(p *pktDesc, rs [16]byte, enc packet.Encap) *hop {
	info := &p.info
	rt := w.hop(p.fib, &rs)
	if !rt.route {
		w.drop(p, DropNoRoute)
		return nil
	}
	if !rt.hasSrc {
		w.drop(p, DropNoSource)
		return nil
	}
	outer := familyOfAddr(&rs)
	hl := enc.HeaderLen(outer)
	if rt.mtu != 0 && int(info.L3Len)+hl > int(rt.mtu) {
		mtu := rt.mtu - uint32(hl)
		switch {
		case info.Family == 6:
			w.icmpError(p, packet.ICMPv6PacketTooBig, 0, max(mtu, 1280), DropTooBig)
		case packet.IPv4(p.frame[info.L3Off:]).DontFragment():
			w.icmpError(p, packet.ICMPv4DestUnreach, packet.ICMPv4FragNeeded, mtu, DropTooBig)
		default:
			w.drop(p, DropTooBig)
		}
		return nil
	}
	start, ok := headroomStart(p, hl)
	if !ok {
		w.drop(p, DropNoHeadroom)
		return nil
	}
	var sport uint16
	if enc.Type == packet.EncapGUE {
		sport = packet.EncapSourcePort(info)
	}
	w.encapsulate(p, start, hl, outer, &rt.src, &rs, enc, sport)
	return w.output(p, rs)
}

// encapsulate moves p's IP packet behind an Ethernet header and the hl bytes of tunnel
// headers enc puts in front of it (enc.HeaderLen(outer)), in an outer header of family
// outer (rs's) from src to rs, at start in its headroom (headroomStart); sport is GUE's
// source port (packet.EncapSourcePort of p).
func (w *worker) encapsulate(p *pktDesc, start uint64, hl int, outer uint8, src, rs *[16]byte, enc packet.Encap, sport uint16) {
	info := &p.info
	prepend(p, start)
	setEtherType(p.frame, outer)
	w.tunID++
	eh := packet.EthernetHeaderLen
	if enc.Type == packet.EncapIPIP && outer == info.Family {
		packet.PutTunnelHeader(p.frame[eh:eh+hl], p.frame[eh+hl:], outer, *src, *rs, w.tunID)
	} else {
		packet.PutEncapHeader(p.frame[eh:eh+hl], p.frame[eh+hl:], outer, info.Family, *src, *rs, w.tunID, enc, sport)
	}
	info.L3Off = uint16(eh)
	info.L3Len += uint16(hl)
	w.bc.encapsulated++
}

// icmpError answers p with an ICMP error to its source, built in place in the frame's
// headroom (header before the original, which is quoted as far as the limits allow),
// and counts it. Over the worker's ICMP rate limit nothing is sent: the frame is
// released, counted as rate limited and, unless why is dropNone (the caller counted the
// packet already), as a drop for why.
func (w *worker) icmpError(p *pktDesc, typ, code uint8, rest uint32, why Drop) {
	info := &p.info
	if !w.icmpLimit.allow(w.dp.now()) {
		w.st.icmpLimited.add(1)
		if why != dropNone {
			w.drop(p, why)
		} else {
			w.release(p)
		}
		return
	}
	hl := packet.IPv4MinHeaderLen + 8
	if info.Family == 6 {
		hl = packet.IPv6HeaderLen + 8
	}
	start, ok := headroomStart(p, hl)
	if !ok {
		w.drop(p, DropNoHeadroom)
		return
	}
	eh := packet.EthernetHeaderLen
	prepend(p, start)
	n := packet.PutICMPError(p.frame[eh:], p.frame[eh+hl:], info.Family, typ, code, rest, 64)
	if n == 0 {
		w.drop(p, DropMalformed)
		return
	}
	setEtherType(p.frame, info.Family)
	dst := info.Src
	p.d.Len = uint32(eh + n)
	p.frame = p.frame[:eh+n]
	info.L3Off = uint16(eh)
	info.L3Len = uint16(n)
	w.st.icmpSent.add(1)
	w.output(p, dst)
}

// countFlow adds packet p to service svc's and destination dest's counters: in (client
// → real server) or out (real server → client). The counts are gathered per batch
// (stats.go) and reach the counters when the batch ends.
func (w *worker) countFlow(p *pktDesc, svc, dest uint32, in bool) {
	a := w.flowAcc(svc, dest)
	n := uint64(p.info.L3Len)
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

// timeExceeded answers p, a client's packet whose TTL (hop limit) is 1 or less, with
// ICMP time exceeded (ICMPv6 hop limit exceeded) from the address it was sent to, as
// IPVS's decrement_ttl does (net/netfilter/ipvs/ip_vs_xmit.c: icmp_send /
// icmpv6_send before any rewrite). The packet counts as DropTTLExpired; the answer in
// ICMPSent, or in ICMPLimited when the rate limit refuses it.
func (w *worker) timeExceeded(p *pktDesc) {
	w.st.drops[DropTTLExpired].add(1)
	if p.info.Family == 6 {
		w.icmpError(p, packet.ICMPv6TimeExceeded, 0, 0, dropNone)
	} else {
		w.icmpError(p, packet.ICMPv4TimeExceeded, packet.ICMPv4CodeTTLExceeded, 0, dropNone)
	}
}

// unavailable answers p, for which no real server was available, with ICMP port
// unreachable (ICMPv6 port unreachable) to its source, as IPVS's ip_vs_leave does. The
// packet was counted as DropNoDest; the answer counts in ICMPSent, or in
// ICMPRateLimited when over the worker's ICMP rate limit.
func (w *worker) unavailable(p *pktDesc) {
	if p.info.Family == 6 {
		w.icmpError(p, packet.ICMPv6DestUnreach, packet.ICMPv6PortUnreach, 0, dropNone)
	} else {
		w.icmpError(p, packet.ICMPv4DestUnreach, packet.ICMPv4PortUnreach, 0, dropNone)
	}
}

// schedule picks a real server for p, a new connection of svc, and inserts its entry
// into p.entry(). On failure it returns the drop reason (not counted yet), else dropNone.
func (w *worker) schedule(p *pktDesc, svc *Service) Drop {
	info, now := &p.info, p.now
	ct := w.dp.ct
	// Field by field, here and for q.Entry below: a composite literal is built on the
	// stack and copied with 16-byte loads of its narrow fields' fresh stores, which stall
	// (a failed store-to-load forward, a third of schedule's time in a profile).
	fl := &p.flow
	fl.Src, fl.Dst, fl.SrcPort, fl.DstPort, fl.Proto, fl.Now = info.Src, info.Dst, info.SrcPort, info.DstPort, info.Proto, now
	i := -1
	var pk persistKey
	if svc.Persist > 0 {
		// A live template sends the client back to its server, even one quiesced with
		// weight 0 (IPVS's expire_quiescent_template default).
		pk.set(svc.ID, &info.Src, svc.PersistBits)
		if id, ok := w.dp.persist.lookup(&pk, now, svc.Persist); ok {
			i = svc.destIndex(id)
		}
	}
	if i < 0 {
		i = svc.Sched.Schedule(ct, &p.flow)
		if i < 0 || i >= len(svc.Dests) {
			return DropNoDest
		}
		if svc.Persist > 0 {
			w.dp.persist.set(&pk, svc.Dests[i].ID, now, svc.Persist)
		}
	}
	dst := &svc.Dests[i]
	q := p.q
	e := &q.Entry
	e.Orig = q.Key
	e.Reply.Src, e.Reply.Dst, e.Reply.SrcPort, e.Reply.DstPort, e.Reply.Proto = dst.Addr, info.Src, destPort(svc, dst, info.DstPort), info.SrcPort, info.Proto
	e.Dest, e.Service, e.Method, e.State, e.Flags, e.Sync = dst.ID, svc.ID, dst.Method, 0, 0, false
	if onePacket(svc, dst, info.Proto) {
		w.flowAcc(svc.ID, dst.ID).conns++ // ops.go: scheduled, counted, never inserted
		return dropNone
	}
	var err error
	if dst.Method == conntrack.MethodFullNAT {
		// The reply comes back to a local address and port chosen now (fullnat.go).
		err = w.insertFullNAT(p, svc)
	} else {
		err = ct.InsertQuery(q, info.TCPFlags, now) // q was looked up by the batch's LookupBatch
	}
	switch {
	case err == nil:
		w.noteMade(&q.Entry)
		w.flowAcc(svc.ID, dst.ID).conns++
		return dropNone
	case errors.Is(err, conntrack.ErrExists):
		// Another worker created it between our lookup and insert: use theirs.
		if ct.Lookup(conntrack.DirOrig, &q.Key, info.TCPFlags, now, &q.Entry) == conntrack.Found {
			return dropNone
		}
		return DropNoConn
	case errors.Is(err, conntrack.ErrCrowded):
		return DropCrowded
	case err == errNoLaddr:
		return DropNoLaddr
	case err == errNoLport:
		return DropNoLport
	default:
		return DropTableFull
	}
}

// reply handles a packet from a NAT or FULLNAT real server back to a client.
func (w *worker) reply(p *pktDesc) {
	info := &p.info
	offered := p.q.Status == conntrack.Found // handleBatch offered it to the run
	if w.lookedUp(p) != conntrack.Found {
		if !w.opsReply(p) {
			w.drop(p, DropNoReplyConn)
		}
		return
	}
	// Found only now: a connection made earlier in the batch, whose run this may follow.
	if !offered && w.tryFollow(p) {
		return
	}
	// The reply's connection and its state after this packet are known here, and only
	// here: p.entry() (looked up and moved).
	e := p.entry()
	if w.fp != nil {
		w.fastReply(p, e)
	}
	if e.Method == conntrack.MethodFullNAT {
		if h := w.fullnatReply(p); h != nil && w.runs(p) {
			w.startRun(p, h, e, packet.Encap{})
		}
		return
	}
	if !packet.SCTPPortsFixable(info, e.Orig.DstPort, info.DstPort) {
		w.drop(p, DropSCTPFragment)
		return
	}
	if !packet.DecrementTTL(p.frame, info) {
		w.drop(p, DropTTLExpired)
		return
	}
	w.countFlow(p, e.Service, e.Dest, false)
	if info.Frag {
		w.noteFrag(p, fragNATSrc, e.Orig.Dst, e.Orig.Src)
	}
	// The source becomes the virtual service the client talked to.
	packet.RewriteSrc(p.frame, info, e.Orig.Dst, e.Orig.DstPort)
	if h := w.output(p, e.Orig.Src); h != nil && e.Method == conntrack.MethodNAT && w.runs(p) {
		w.startRun(p, h, e, packet.Encap{})
	}
}

// output sends rewritten packet p towards dst: route, neighbour, MACs, and transmit on
// the egress interface's socket; a packet whose next hop is unresolved is held. It
// returns the next hop when it handed p to transmit, else nil.
func (w *worker) output(p *pktDesc, dst [16]byte) *hop {
	h := w.hop(p.fib, &dst)
	switch {
	case !h.route:
		w.drop(p, DropNoRoute)
	case h.out < 0:
		w.drop(p, DropNotManaged)
	case !h.neigh:
		w.dp.fib.request(NeighKey{Ifindex: h.ifx, Addr: h.nh})
		w.hold(p, dst)
	default:
		w.transmit(p, w.ports[h.out], h.mac)
		return h
	}
	return nil
}

// hold keeps p's frame while its next hop is being resolved, as the kernel queues
// packets on an incomplete neighbour entry; when the queue is full p is dropped.
func (w *worker) hold(p *pktDesc, dst [16]byte) {
	if len(w.pend) == cap(w.pend) {
		w.drop(p, DropNoNeighbour)
		return
	}
	w.pend = append(w.pend, pending{
		in: p.in.idx, family: p.info.Family, d: p.d, dst: dst,
		l3off: p.info.L3Off, l3len: p.info.L3Len, deadline: w.dp.now() + pendingTimeout,
	})
	p.owned = false // the held list owns it now
	w.st.neighQueued.add(1)
}

// retryPending sends held frames whose next hop is now resolved and drops the ones that
// waited too long. It runs only when the FIB changed or a deadline may have passed. A
// frame leaves the held list (marked gone) before it is handed on as w.retry, so a
// panic on the way leaves every frame either held or w.retry's (reclaim).
func (w *worker) retryPending(fib *FIB, now int64) {
	if fib == w.pendFIB && now < w.pend[0].deadline {
		return
	}
	w.pendFIB = fib
	for i := range w.pend {
		pe := &w.pend[i]
		h := w.hop(fib, &pe.dst)
		ok := h.route && h.out >= 0 && h.neigh
		if !ok && now < pe.deadline {
			continue
		}
		p := &w.retry
		in := w.ports[pe.in]
		*p = pktDesc{in: in, d: pe.d, frame: in.umem[pe.d.Addr : pe.d.Addr+uint64(pe.d.Len)], owned: true, fib: fib, now: now}
		p.info.Family, p.info.L3Off, p.info.L3Len = pe.family, pe.l3off, pe.l3len
		pe.gone = true
		if ok {
			w.transmit(p, w.ports[h.out], h.mac)
		} else {
			w.drop(p, DropNoNeighbour)
		}
	}
	w.compactPending()
}

// releaseHeld drops the frames still waiting for a neighbour when the worker stops
// (counted as no_neighbour: none came in time), so that every frame of a stopped worker
// is back with its socket, on the free list or in a ring: the free list a restart hands
// over with a socket (xsk.Shareable) is then exact.
func (w *worker) releaseHeld() {
	for i := range w.pend {
		pe := &w.pend[i]
		in := w.ports[pe.in]
		p := &w.retry
		*p = pktDesc{in: in, d: pe.d, owned: true}
		pe.gone = true
		w.drop(p, DropNoNeighbour)
	}
	w.compactPending()
}

// compactPending removes the held frames handed on from w.pend.
func (w *worker) compactPending() {
	kept := w.pend[:0]
	for _, pe := range w.pend {
		if !pe.gone {
			kept = append(kept, pe)
		}
	}
	w.pend = kept
}

// transmit is the exit of a forwarded packet: p's frame goes on out's transmit batch
// with the next hop's MAC, in place when out is the ingress port, else copied into out's
// UMEM (and p's frame released). A full TX batch, a frame too big for out or no free
// frame on out drops p instead.
func (w *worker) transmit(p *pktDesc, out *port, mac [6]byte) {
	if !w.txRoom(out) {
		w.drop(p, DropTxFull)
		return
	}
	if out == p.in {
		packet.SetEthernet(p.frame, mac, out.mac)
		out.tx[out.txN] = p.d
		out.txN++
		p.owned = false // out's TX batch owns it now
		w.bc.forwarded++
		return
	}
	// A fresh Ethernet header (no VLAN tag: the other interface is untagged) and the IP
	// packet, at the same headroom the kernel leaves, so encapsulation can prepend later.
	info := &p.info
	n := packet.EthernetHeaderLen + int(info.L3Len)
	if n > out.sock.FrameSize()-xsk.XDPPacketHeadroom {
		w.drop(p, DropTooBig)
		return
	}
	base, ok := out.sock.Alloc()
	if !ok {
		w.drop(p, DropNoFrame)
		return
	}
	addr := base + xsk.XDPPacketHeadroom
	buf := out.umem[addr : addr+uint64(n)]
	packet.SetEthernet(buf, mac, out.mac)
	setEtherType(buf, info.Family)
	copy(buf[packet.EthernetHeaderLen:], p.frame[info.L3Off:int(info.L3Off)+int(info.L3Len)])
	out.tx[out.txN] = xsk.Desc{Addr: addr, Len: uint32(n)}
	out.txN++
	w.release(p)
	w.bc.forwarded++
}
