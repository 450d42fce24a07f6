package dataplane

import (
	"context"
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
		st:        newWorkerStats(dp.cfg.MaxServices, dp.cfg.MaxDests, dp.cfg.MaxLaddrs),
		pend:      make([]pending, 0, pendingCap),
		icmpLimit: newTokenBucket(dp.cfg.ICMPRate, dp.cfg.ICMPBurst),
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
		for i := 0; i < n; i++ {
			w.handle(in, w.rx[i], snap, fib, now)
		}
		total += n
	}
	for _, p := range w.ports {
		w.flush(p)
		p.sock.Complete()
		p.sock.Refill()
	}
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

// handle forwards or drops one received frame.
func (w *worker) handle(in *port, d xsk.Desc, snap *Snapshot, fib *FIB, now int64) {
	frame := in.umem[d.Addr : d.Addr+uint64(d.Len)]
	info := &w.info
	res := packet.Parse(frame, info)
	switch res {
	case packet.ResultOK, packet.ResultFragment, packet.ResultUnsupportedProto:
	case packet.ResultNotIP:
		w.drop(in, d, DropNotTCPUDP)
		return
	default:
		w.drop(in, d, DropMalformed)
		return
	}
	if snap == nil {
		w.drop(in, d, DropNoService)
		return
	}
	switch {
	case res == packet.ResultFragment:
		w.fragment(in, d, frame, fib, now)
		return
	case res == packet.ResultUnsupportedProto && (info.Proto == packet.ProtoICMP && info.Family == 4 || info.Proto == packet.ProtoICMPv6 && info.Family == 6):
		w.icmp(in, d, frame, snap, fib, now)
		return
	case res == packet.ResultUnsupportedProto:
		w.drop(in, d, DropNotTCPUDP)
		return
	}
	if si, ok := snap.service(&info.Dst, info.DstPort, info.Proto); ok {
		w.request(in, d, frame, snap, &snap.Services[si], fib, now)
		return
	}
	if snap.isReal(&info.Src, info.SrcPort, info.Proto) {
		w.reply(in, d, frame, fib, now)
		return
	}
	w.drop(in, d, DropNoService)
}

// request handles a packet from a client to a virtual service.
func (w *worker) request(in *port, d xsk.Desc, frame []byte, snap *Snapshot, svc *Service, fib *FIB, now int64) {
	info := &w.info
	ct := w.dp.ct
	w.key = conntrack.Key{Src: info.Src, Dst: info.Dst, SrcPort: info.SrcPort, DstPort: info.DstPort, Proto: info.Proto}
	st := ct.Lookup(conntrack.DirOrig, &w.key, info.TCPFlags, now, &w.entry)
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
	switch e.Method {
	case conntrack.MethodNAT:
		if !packet.DecrementTTL(frame, info) {
			w.drop(in, d, DropTTL)
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
			w.drop(in, d, DropMethod)
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
			w.drop(in, d, DropMethod)
			return
		}
		w.countIn(e)
		if info.Frag {
			w.noteFrag(now, fragTUN, rs.Addr, rs.Addr, e.Service, e.Dest)
		}
		w.tunnel(in, d, fib, rs.Addr)
	default:
		w.drop(in, d, DropMethod)
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
	rt := fib.route(&rs)
	if rt == nil {
		w.drop(in, d, DropNoRoute)
		return
	}
	if !rt.HasSrc {
		w.drop(in, d, DropNoSource)
		return
	}
	hl := packet.TunnelHeaderLen(info.Family)
	if rt.MTU != 0 && int(info.L3Len)+hl > int(rt.MTU) {
		mtu := rt.MTU - uint32(hl)
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
	packet.PutTunnelHeader(frame[eh:eh+hl], frame[eh+hl:], info.Family, rt.Src, rs, w.tunID)
	info.L3Off = uint16(eh)
	info.L3Len += uint16(hl)
	w.st.encapsulated.add(1)
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
// in (client → real server) or out (real server → client).
func (w *worker) countFlow(svc, dest uint32, in bool) {
	n := uint64(w.info.L3Len)
	for _, c := range [2]*flowCtrs{w.svcCtrs(svc), w.destCtrs(dest)} {
		switch {
		case c == nil:
		case in:
			c.inPkts.add(1)
			c.inBytes.add(n)
		default:
			c.outPkts.add(1)
			c.outBytes.add(n)
		}
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
	rport := dst.Port
	if svc.Key.Port == 0 {
		rport = info.DstPort // a port-0 service: the real server gets the client's port (as IPVS)
	}
	w.entry = conntrack.Entry{
		Orig:    w.key,
		Reply:   conntrack.Key{Src: dst.Addr, Dst: info.Src, SrcPort: rport, DstPort: info.SrcPort, Proto: info.Proto},
		Dest:    dst.ID,
		Service: svc.ID,
		Method:  dst.Method,
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
		if svc.ID < uint32(len(w.st.svc)) {
			w.st.svc[svc.ID].conns.add(1)
		}
		if dst.ID < uint32(len(w.st.dest)) {
			w.st.dest[dst.ID].conns.add(1)
		}
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
func (w *worker) reply(in *port, d xsk.Desc, frame []byte, fib *FIB, now int64) {
	info := &w.info
	w.key = conntrack.Key{Src: info.Src, Dst: info.Dst, SrcPort: info.SrcPort, DstPort: info.DstPort, Proto: info.Proto}
	if w.dp.ct.Lookup(conntrack.DirReply, &w.key, info.TCPFlags, now, &w.entry) != conntrack.Found {
		w.drop(in, d, DropNoReplyConn)
		return
	}
	if w.entry.Method == conntrack.MethodFullNAT {
		w.fullnatReply(in, d, frame, fib, now)
		return
	}
	if !packet.DecrementTTL(frame, info) {
		w.drop(in, d, DropTTL)
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
	ifx, nh, ok := fib.Lookup(dst)
	if !ok {
		w.drop(in, d, DropNoRoute)
		return
	}
	out := w.portFor(ifx)
	if out == nil {
		w.drop(in, d, DropNotManaged)
		return
	}
	mac, ok := fib.Neighbour(ifx, nh)
	if !ok {
		w.dp.fib.request(NeighKey{Ifindex: ifx, Addr: nh})
		w.hold(in, d, dst)
		return
	}
	w.transmit(in, out, d, frame, mac, w.info.Family, w.info.L3Off, w.info.L3Len)
}

// hold keeps a frame whose next hop is being resolved, as the kernel queues packets on an
// incomplete neighbour entry; when the queue is full the frame is dropped and counted.
func (w *worker) hold(in *port, d xsk.Desc, dst [16]byte) {
	if len(w.pend) == cap(w.pend) {
		w.drop(in, d, DropNoNeigh)
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
		ifx, nh, ok := fib.Lookup(p.dst)
		var mac [6]byte
		if ok {
			mac, ok = fib.Neighbour(ifx, nh)
		}
		var out *port
		if ok {
			out = w.portFor(ifx)
			ok = out != nil
		}
		switch {
		case ok:
			frame := in.umem[p.d.Addr : p.d.Addr+uint64(p.d.Len)]
			w.transmit(in, out, p.d, frame, mac, p.family, p.l3off, p.l3len)
		case now >= p.deadline:
			w.drop(in, p.d, DropNoNeigh)
		default:
			kept = append(kept, p)
		}
	}
	w.pend = kept
}

func (w *worker) portFor(ifx int32) *port {
	for _, p := range w.ports {
		if p.ifindex == ifx {
			return p
		}
	}
	return nil
}

// transmit puts a rewritten frame on out with the next hop's MAC: in place when out is the
// ingress port, else copied into out's UMEM.
func (w *worker) transmit(in, out *port, d xsk.Desc, frame []byte, mac [6]byte, family uint8, l3off, l3len uint16) {
	if out == in {
		packet.SetEthernet(frame, mac, out.mac)
		w.queueTx(out, d)
		w.st.forwarded.add(1)
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
	w.st.forwarded.add(1)
}
