package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
)

// The XDP fast path (issue 19; bpf/xlvs.c fast_path). A worker that forwards a packet of
// an established NAT, FULLNAT, DR or TUN connection (TCP ESTABLISHED; SCTP: an
// association in ESTABLISHED; UDP: a NAT or FULLNAT connection once its real server
// answered, a DR or TUN one from its second
// packet) offers the connection to the fast path: it
// queues the forwarding decision it just made — per direction the packet's key as it
// arrives, the rewrite with its RFC 1624 checksum deltas (TUN: the tunnel's outer
// addresses, the route's source to the real server), the egress interface and MACs
// — in its own bounded queue (never waits; full: counted, the connection stays on the
// slow path). One goroutine (fastPath.run) drains the queues into the XDP program's
// fastpath map (one batched update per drain), from which the program rewrites and sends
// the connection's packets itself (XDP_TX, or a redirect through the tx_ports device
// map), except those the workers must see: SYN, FIN, RST, fragments, TTL or hop limit <= 1, VLAN-tagged frames, frames over
// the egress MTU (TUN: packets that would exceed the route's MTU once encapsulated, which
// the worker answers with fragmentation needed / Packet Too Big).
//
// The connection table stays the authority. The same goroutine sweeps the map at least
// every second (sooner with short timeouts: a quarter of the shortest TCP ESTABLISHED or
// UDP timeout) and after every Publish: per entry it adds the packets and bytes the
// program counted to the service's and real server's counters, refreshes the connection's
// timer from the entry's last-seen time (conntrack.Table.Touch), and removes the entry
// when the connection is gone (expired, flushed, removed with its real server), left
// ESTABLISHED (a FIN or RST went through a worker, which also asks for the removal at
// once), was reused for another real server, when its real server was deleted (the slow
// path then drops its packets, DropDestGone, as IPVS does), or when its next hop changed
// (TUN: or the route's source address or MTU).
// Weight 0 (quiescing) leaves established connections alone, in IPVS and here. On a
// connection-sync master, which sends established connections again as their client
// packets come in (IPVS's sync_threshold and sync_refresh_period), the sweep hands the
// client packets the program forwarded to the table (Touch counts them as a worker's
// lookups count theirs) and queues the connections those packets make due for the sync
// daemon (DrainSync), with their persistence templates: a backup hears of a connection
// the fast path carries within a sweep of when it would have heard of it without the
// fast path.
// State changes (FIN, RST) go through the workers, which send them at once.
//
// A restart's handoff: the fast path stops with the workers (StopWorkers), accounts for
// what the map counted and empties it, so from then on every packet reaches the sockets
// (or the hold). The successor starts with its own empty map, and its workers install the
// imported connections again as their packets come through.

// DefaultFastPathEntries is xlvsd's --fastpath-entries default: two entries per NAT
// connection, one per DR connection. The map allocates entries as they are installed.
const DefaultFastPathEntries = bpf.DefaultFastPathEntries

// fastQueueLen is how many requests each worker's queue holds.
const fastQueueLen = 1024

// fastDrainEvery is how often the fast path's goroutine drains the workers' queues.
const fastDrainEvery = 5 * time.Millisecond

// fastInstallDelay is how long an offered connection waits before it is installed: a
// connection that closes sooner (most short TCP connections, whose FIN then cancels the
// offer) costs the fast path no map update and delete, which would cost more than the
// few packets it could have carried.
const fastInstallDelay = int64(25 * time.Millisecond)

// fastOfferEvery is how long a worker waits before offering the same connection again
// (its packets keep coming through the worker until the entry is in).
const fastOfferEvery = int64(time.Second)

// fastOffers is the size of a worker's table of recent offers (a power of two; 48 bytes
// each): large enough that thousands of new flows at once do not evict each other's
// offers and offer again with every packet (measured: a 256-entry table filled the
// queue under a 1000-flow flood).
const fastOffers = 4096

// Requests of a worker to the fast path's goroutine.
const (
	fastInstall uint8 = iota + 1
	fastRemove
)

// fastDir is one direction of a connection in the fast path.
type fastDir struct {
	key bpf.FastKey
	val bpf.FastVal
	in  bool     // client → real server (counted as in), else out
	hop [16]byte // the address the next hop was found for
	mtu uint32   // TUN: the route's MTU (0: unknown)
}

// fastReq is a worker's request: install or remove a connection. Pointer-free.
type fastReq struct {
	op        uint8
	n         uint8         // directions in dirs
	at        int64         // when the worker queued it (the dataplane's clock)
	orig      conntrack.Key // the connection (DirOrig)
	svc, dest uint32
	dirs      [2]fastDir
}

// fastRing queues a worker's install and remove requests for the fast path's goroutine
// (spsc.go).
type fastRing = spscRing[fastReq]

func newFastRing(n int) *fastRing { return newSPSCRing[fastReq](n) }

// fastWorker is a worker's side of the fast path.
type fastWorker struct {
	ring   *fastRing
	offers [fastOffers]fastOffer
	req    fastReq // scratch
	// kern is the fast path's: the families whose NAT and FULLNAT entries pass their
	// packets to the kernel to forward (kernBit; bpf.FastKernel, Config.FastPathKernel).
	kern *atomic.Uint32
}

// kernBit is family's bit in fastPath.kern.
func kernBit(family uint8) uint32 {
	if family == 4 {
		return 1
	}
	return 2
}

type fastOffer struct {
	key conntrack.Key
	at  int64
}

// fastFlow is what the fast path's goroutine remembers of an installed entry.
type fastFlow struct {
	orig      conntrack.Key
	svc, dest uint32
	in        bool
	hop       [16]byte
	ifindex   uint32
	dmac      [6]byte
	tun       bool         // a TUN entry: also stale when the route's source or MTU changes
	encap     packet.Encap // a TUN entry's encapsulation: stale when the real server's changes
	tunSrc    [16]byte     // its outer source, the route's
	tunMTU    uint32       // the route's MTU it was installed with
	kernel    bool         // passes its packets to the kernel (bpf.FastKernel)
	packets   uint64       // the entry's counters as last accounted
	bytes     uint64
	lastSeen  uint64
}

// fastIf is what the fast path knows of an egress interface.
type fastIf struct {
	mtu   uint16
	flags uint8
}

// FastPathStats are the fast path's counters.
type FastPathStats struct {
	Entries   int    // entries in the map now
	Installed uint64 // entries installed (a NAT connection has two)
	Removed   uint64 // entries removed
	QueueFull uint64 // connections not offered: a worker's queue was full
	MapFull   uint64 // entries not installed: the map was full
	Failed    uint64 // map updates or deletes the kernel refused otherwise
	Cancelled uint64 // offers withdrawn before their install (the connection closed)
	Packets   uint64 // packets the program forwarded, as accounted so far
	Bytes     uint64 // their IP bytes
	Sweeps    uint64
}

// fastPath is the fast path's goroutine and its state.
type fastPath struct {
	d     *Dataplane
	cls   *bpf.Classifier
	rings []*fastRing
	kick  chan struct{}
	svc   []flowCtrs // what the program forwarded, by service ID
	dest  []flowCtrs // by destination ID

	installed, removed, mapFull, failed, packets, bytes, sweeps, entries ctr

	// kern: the families whose NAT and FULLNAT entries the kernel forwards (kernBit), set
	// by kernelFamilies at start and by each sweep (kernelRecheck); the workers read it
	// when they offer. ifnames: the managed interfaces, whose settings decide it.
	kern    atomic.Uint32
	ifnames []string

	// sync: on a sync master, the connections the sweeps send (DrainSync reads them);
	// produced by run only.
	sync *syncRing

	// owned by run
	svcOf       map[uint32]*Service // the services of svcSnap, by ID
	svcSnap     *Snapshot
	syncScratch SyncConn
	flows       map[bpf.FastKey]*fastFlow
	ifs         map[uint32]fastIf // egress interfaces, forgotten when the FIB changes
	fibGen      uint64
	reqs        []fastReq
	pending     []fastReq             // offers waiting for fastInstallDelay
	pendingAt   map[conntrack.Key]int // the index in pending of a connection's offer
	cancelled   ctr                   // offers withdrawn (the connection closed) before install
	keys        []bpf.FastKey         // removals of one drain, deleted in one batch
	stale       []bpf.FastKey
	insKeys     []bpf.FastKey // installs of one drain, written in one batch
	insVals     []bpf.FastVal
	insFlows    []fastFlow // what to remember of each once it is in
}

func newFastPath(d *Dataplane, cls *bpf.Classifier) *fastPath {
	return &fastPath{
		d: d, cls: cls, kick: make(chan struct{}, 1),
		svc: make([]flowCtrs, d.cfg.MaxServices), dest: make([]flowCtrs, d.cfg.MaxDests),
		flows: map[bpf.FastKey]*fastFlow{}, ifs: map[uint32]fastIf{},
		reqs: make([]fastReq, 256), pendingAt: map[conntrack.Key]int{},
		sync: newSyncRing(d.cfg.SyncQueue),
	}
}

// attachWorker gives worker w its queue.
func (f *fastPath) attachWorker(w *worker) {
	r := newFastRing(fastQueueLen)
	f.rings = append(f.rings, r)
	w.fp = &fastWorker{ring: r, kern: &f.kern}
}

// sysctlDir is where the kernel's network switches are read (per network namespace:
// the director's); a variable for tests.
var sysctlDir = "/proc/sys/net"

// kernelFamilies decides, for Config.FastPathKernel, which families' NAT and FULLNAT
// entries the kernel forwards (ifaces: the managed interfaces; kernelCheck says when a
// family qualifies): an error naming what is missing when neither family qualifies, a
// warning for a family left to the program. The sweeps check again (kernelRecheck).
func (f *fastPath) kernelFamilies(ifaces []string) error {
	f.ifnames = ifaces
	k, miss4, miss6 := kernelCheck(ifaces)
	f.kern.Store(k)
	switch {
	case k == 0:
		return fmt.Errorf("fast path forwarded by the kernel: the kernel would not forward the rewritten packets; set %s, or let the XDP program send them (--fastpath-forward xdp)", strings.Join(append(miss4, miss6...), ", "))
	case k&kernBit(4) == 0:
		f.d.log.Warn("fast path: the XDP program sends IPv4 NAT and FULLNAT packets itself: the kernel would not forward them", "needs", strings.Join(miss4, ", "))
	case k&kernBit(6) == 0:
		f.d.log.Warn("fast path: the XDP program sends IPv6 NAT and FULLNAT packets itself: the kernel would not forward them", "needs", strings.Join(miss6, ", "))
	}
	return nil
}

// kernelCheck reads the settings that decide whether the kernel would forward the fast
// path's rewritten packets, and returns the families that qualify (kernBit) and, for
// each family, what is missing. A family qualifies when its forwarding is on and, for
// IPv4, on every interface of ifaces accept_local is on and rp_filter is not strict — a
// NAT reply's new source is the VIP, which the director usually holds, and the kernel
// drops a packet from outside with a local source address as a martian unless
// accept_local lets it (net/ipv4/fib_frontend.c, fib_validate_source), and with strict
// reverse-path filtering also then (the VIP is not routed out of the interface it came in
// on).
func kernelCheck(ifaces []string) (kern uint32, miss4, miss6 []string) {
	read := func(rel string) int {
		b, err := os.ReadFile(sysctlDir + "/" + rel)
		if err != nil {
			return -1
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return -1
		}
		return v
	}
	if read("ipv4/ip_forward") != 1 {
		miss4 = append(miss4, "net.ipv4.ip_forward=1")
	}
	if read("ipv6/conf/all/forwarding") != 1 {
		miss6 = append(miss6, "net.ipv6.conf.all.forwarding=1")
	}
	all := read("ipv4/conf/all/accept_local") == 1
	for _, ifname := range ifaces {
		if !all && read("ipv4/conf/"+ifname+"/accept_local") != 1 {
			miss4 = append(miss4, "net.ipv4.conf."+ifname+".accept_local=1")
		}
		if max(read("ipv4/conf/all/rp_filter"), read("ipv4/conf/"+ifname+"/rp_filter")) == 1 {
			miss4 = append(miss4, "net.ipv4.conf."+ifname+".rp_filter=2 (and conf.all.rp_filter not 1)")
		}
	}
	if len(miss4) == 0 {
		kern |= kernBit(4)
	}
	if len(miss6) == 0 {
		kern |= kernBit(6)
	}
	return kern, miss4, miss6
}

// kernelRecheck is a sweep's check of kernelCheck's settings, which may have changed
// since start (forwarding turned off, say): it updates f.kern, logs a family that left or
// joined, and returns the families the kernel no longer forwards, whose installed
// entries the sweep removes (their connections come back through the workers, which
// offer them again for the program to send). 0 without Config.FastPathKernel.
func (f *fastPath) kernelRecheck() (lost uint32) {
	if !f.d.cfg.FastPathKernel {
		return 0
	}
	k, miss4, miss6 := kernelCheck(f.ifnames)
	old := f.kern.Swap(k)
	for _, fam := range []struct {
		family uint8
		miss   []string
	}{{4, miss4}, {6, miss6}} {
		bit := kernBit(fam.family)
		switch {
		case old&bit != 0 && k&bit == 0:
			f.d.log.Warn("fast path: the kernel would no longer forward these packets; the XDP program sends them from now on", "family", fmt.Sprintf("IPv%d", fam.family), "needs", strings.Join(fam.miss, ", "))
		case old&bit == 0 && k&bit != 0:
			f.d.log.Info("fast path: the kernel forwards these packets from now on (new connections)", "family", fmt.Sprintf("IPv%d", fam.family))
		}
	}
	return old &^ k
}

// Kick asks for a sweep soon (the configuration changed).
func (f *fastPath) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// sweepEvery is how often the map is swept: a quarter of the shortest timeout an entry
// can have (TCP ESTABLISHED, UDP), at most a second, at least 100 ms.
func (f *fastPath) sweepEvery() time.Duration {
	to := f.d.ct.Timeouts()
	s := time.Duration(min(to.Established, to.UDP)) * time.Second / 4
	return min(max(s, 100*time.Millisecond), time.Second)
}

// run drains and sweeps until ctx ends, then accounts for the map and empties it.
func (f *fastPath) run(ctx context.Context) {
	drain := time.NewTicker(fastDrainEvery)
	defer drain.Stop()
	every := f.sweepEvery()
	sweep := time.NewTicker(every)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			f.drain(f.d.now())
			f.sweep(true)
			return
		case <-drain.C:
			f.drain(f.d.now())
		case <-f.kick:
			f.drain(f.d.now())
			f.sweep(false)
		case <-sweep.C:
			f.sweep(false)
			if e := f.sweepEvery(); e != every {
				every = e
				sweep.Reset(every)
			}
		}
	}
}

// drain takes the workers' requests: a removal at once (withdrawing a pending offer of
// the connection), an offer once it is fastInstallDelay old (now: the dataplane's clock).
// The removals are deleted, then the installs written, each in one batch
// (BPF_MAP_DELETE_BATCH, BPF_MAP_UPDATE_BATCH: a system call per drain, not per entry).
func (f *fastPath) drain(now int64) {
	f.keys = f.keys[:0]
	for _, r := range f.rings {
		for {
			n := r.pop(f.reqs)
			for i := range f.reqs[:n] {
				f.take(&f.reqs[i])
			}
			if n < len(f.reqs) {
				break
			}
		}
	}
	if len(f.keys) > 0 {
		f.remove(f.keys)
		f.keys = f.keys[:0]
	}
	kept := f.pending[:0]
	for i := range f.pending {
		r := &f.pending[i]
		switch {
		case r.op == 0: // withdrawn
		case now-r.at >= fastInstallDelay:
			f.apply(r)
		default:
			f.pendingAt[r.orig] = len(kept)
			kept = append(kept, *r)
			continue
		}
		delete(f.pendingAt, r.orig)
	}
	f.pending = kept
	f.install()
}

// take queues an offer (a newer one of the same connection replaces the older, keeping
// its time) or applies a removal (queued for drain's batch).
func (f *fastPath) take(r *fastReq) {
	i, ok := f.pendingAt[r.orig]
	if r.op == fastInstall {
		if ok {
			// The newer offer's rewrite, the first one's time: a connection offered
			// again and again (two flows sharing a slot of a worker's offer table
			// re-offer each other's on every packet) must not keep restarting its
			// fastInstallDelay, or it is never installed.
			at := f.pending[i].at
			f.pending[i] = *r
			f.pending[i].at = at
		} else {
			f.pendingAt[r.orig] = len(f.pending)
			f.pending = append(f.pending, *r)
		}
		return
	}
	if ok {
		f.pending[i].op = 0
		delete(f.pendingAt, r.orig)
		f.cancelled.add(1)
	}
	f.apply(r)
}

// apply queues the installation or removal of the directions of one request: the
// removals in f.keys (drain deletes them), the installs for install.
func (f *fastPath) apply(r *fastReq) {
	if r.op == fastRemove {
		// Only what was installed: the map holds nothing else of ours (every closing
		// connection asks, most were never in the fast path).
		for i := range r.dirs[:r.n] {
			if _, ok := f.flows[r.dirs[i].key]; ok {
				f.keys = append(f.keys, r.dirs[i].key)
			}
		}
		return
	}
	for i := range r.dirs[:r.n] {
		dir := &r.dirs[i]
		if old, ok := f.flows[dir.key]; ok {
			// Installed already (offered again by another worker): keep it, and its counts.
			if old.dest == r.dest && old.ifindex == dir.val.Ifindex && old.dmac == dir.val.DMAC {
				continue
			}
			f.account(&dir.key, old)
		}
		mtu, flags := f.egress(dir.val.Ifindex)
		dir.val.MTU = mtu
		if dir.val.Flags&bpf.FastKernel == 0 {
			// The program sends it: out of this interface (a tunnel's checksum kept).
			dir.val.Flags = flags | dir.val.Flags&bpf.FastTunCsum
		}
		var enc packet.Encap
		if dir.val.Action == bpf.FastTUN {
			enc = fastEncap(&dir.val)
			dir.val.MTU = tunMTU(dir.val.MTU, dir.mtu, dir.val.Addr2, enc)
		}
		f.insKeys = append(f.insKeys, dir.key)
		f.insVals = append(f.insVals, dir.val)
		f.insFlows = append(f.insFlows, fastFlow{orig: r.orig, svc: r.svc, dest: r.dest, in: dir.in, hop: dir.hop,
			ifindex: dir.val.Ifindex, dmac: dir.val.DMAC,
			tun: dir.val.Action == bpf.FastTUN, encap: enc, tunSrc: dir.val.Addr, tunMTU: dir.mtu,
			kernel: dir.val.Flags&bpf.FastKernel != 0})
	}
}

// install writes the installs apply queued into the map, in one batch, and remembers
// them. An entry the kernel refuses (a full map: E2BIG) is counted and forgotten (a
// replaced entry's old value, if still in the map, is then not ours: the sweep removes
// it), and the batch goes on after it.
func (f *fastPath) install() {
	keys, vals, flows := f.insKeys, f.insVals, f.insFlows
	for len(keys) > 0 {
		n, err := f.cls.FastUpdate(keys, vals)
		for i := range keys[:n] {
			fl := new(fastFlow)
			*fl = flows[i]
			f.flows[keys[i]] = fl
		}
		f.installed.add(uint64(n))
		if err == nil || n >= len(keys) {
			break
		}
		if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOMEM) {
			f.mapFull.add(1)
		} else {
			f.failed.add(1)
		}
		delete(f.flows, keys[n])
		keys, vals, flows = keys[n+1:], vals[n+1:], flows[n+1:]
	}
	f.insKeys, f.insVals, f.insFlows = f.insKeys[:0], f.insVals[:0], f.insFlows[:0]
	f.entries.v.Store(uint64(len(f.flows)))
}

// egress is what the fast path needs to know of interface ifindex: the largest IP
// packet it sends out of it (the interface's MTU, and no more than an AF_XDP frame
// holds: the slow path's own limit), and the entry flags it needs (a veth: FastRedirect).
func (f *fastPath) egress(ifindex uint32) (uint16, uint8) {
	if e, ok := f.ifs[ifindex]; ok {
		return e.mtu, e.flags
	}
	m := f.d.cfg.Socket.FrameSize - xsk.XDPPacketHeadroom - packet.EthernetHeaderLen
	var flags uint8
	if l, err := netlink.LinkByIndex(int(ifindex)); err == nil {
		if mtu := l.Attrs().MTU; mtu > 0 {
			m = min(m, mtu)
		}
		if l.Type() == "veth" {
			flags = bpf.FastRedirect
		}
	}
	e := fastIf{mtu: uint16(max(min(m, 0xffff), 0)), flags: flags}
	f.ifs[ifindex] = e
	return e.mtu, e.flags
}

// setFastEncap makes TUN entry v encapsulate as enc, GUE from source port sport
// (packet.EncapSourcePort of the flow's packets, which the program does not compute:
// every packet of a flow it sees is a whole one, whose port is the flow's), and with
// enc.Csum the tunnel's checksum (bpf.FastTunCsum).
func setFastEncap(v *bpf.FastVal, enc packet.Encap, sport uint16) {
	if enc.Csum && enc.Type != packet.EncapIPIP {
		v.Flags |= bpf.FastTunCsum
	}
	switch enc.Type {
	case packet.EncapGUE:
		v.Tun = bpf.FastTunGUE
		binary.BigEndian.PutUint16(v.Port[:], enc.Port)
		binary.BigEndian.PutUint16(v.Port2[:], sport)
	case packet.EncapGRE:
		v.Tun = bpf.FastTunGRE
	default:
		v.Tun = bpf.FastTunIPIP
	}
}

// fastEncap is the encapsulation TUN entry v writes (setFastEncap's inverse, without
// the source port).
func fastEncap(v *bpf.FastVal) packet.Encap {
	csum := v.Flags&bpf.FastTunCsum != 0
	switch v.Tun {
	case bpf.FastTunGUE:
		return packet.Encap{Type: packet.EncapGUE, Port: binary.BigEndian.Uint16(v.Port[:]), Csum: csum}
	case bpf.FastTunGRE:
		return packet.Encap{Type: packet.EncapGRE, Csum: csum}
	}
	return packet.Encap{}
}

// tunMTU is the MTU of a TUN entry towards rs: the longest inner packet that still fits
// the egress (egress: the longest IP packet the interface sends) and the route's MTU
// (route, 0: unknown) once encapsulated by enc — the worker's tunnel answers longer ones
// with fragmentation needed / Packet Too Big, so they must reach it.
func tunMTU(egress uint16, route uint32, rs [16]byte, enc packet.Encap) uint16 {
	m := uint32(egress)
	if route != 0 {
		m = min(m, route)
	}
	hl := uint32(enc.HeaderLen(familyOfAddr(&rs)))
	if m <= hl {
		return 0
	}
	return uint16(m - hl)
}

// account reads the entry of k (if it is still there) and adds what it counted since
// last time to the counters; it returns the entry's last-seen time (0: never).
func (f *fastPath) account(k *bpf.FastKey, fl *fastFlow) {
	var v bpf.FastVal
	if ok, err := f.cls.FastLookup(k, &v); err == nil && ok {
		f.count(fl, &v)
	}
}

// count adds the packets and bytes v counted since fl last saw it.
func (f *fastPath) count(fl *fastFlow, v *bpf.FastVal) (pkts uint64) {
	if v.Packets <= fl.packets {
		return 0
	}
	p, b := v.Packets-fl.packets, v.Bytes-fl.bytes
	fl.packets, fl.bytes = v.Packets, v.Bytes
	for _, c := range [2]*flowCtrs{f.svcCtrs(fl.svc), f.destCtrs(fl.dest)} {
		if c == nil {
			continue
		}
		if fl.in {
			c.inPkts.add(p)
			c.inBytes.add(b)
		} else {
			c.outPkts.add(p)
			c.outBytes.add(b)
		}
	}
	f.packets.add(p)
	f.bytes.add(b)
	return p
}

// svcCtrs and destCtrs are the counters of service (destination) id; nil when there
// are none (or f is nil: no fast path).
func (f *fastPath) svcCtrs(id uint32) *flowCtrs {
	if f != nil && id < uint32(len(f.svc)) {
		return &f.svc[id]
	}
	return nil
}

func (f *fastPath) destCtrs(id uint32) *flowCtrs {
	if f != nil && id < uint32(len(f.dest)) {
		return &f.dest[id]
	}
	return nil
}

// remove accounts for and deletes the entries of keys.
func (f *fastPath) remove(keys []bpf.FastKey) {
	for i := range keys {
		if fl, ok := f.flows[keys[i]]; ok {
			f.account(&keys[i], fl)
			delete(f.flows, keys[i])
		}
	}
	n, err := f.cls.FastDelete(keys)
	if err != nil {
		f.failed.add(1)
	}
	f.removed.add(uint64(n))
	f.entries.v.Store(uint64(len(f.flows)))
}

// sweep accounts for every entry, refreshes its connection and removes what must go;
// all removes everything.
func (f *fastPath) sweep(all bool) {
	f.sweeps.add(1)
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return
	}
	mono := uint64(ts.Nano())
	now := f.d.now()
	snap := f.d.snap.Load()
	fib := f.d.fib.fib.Load()
	fibChanged := fib != nil && fib.gen != f.fibGen
	if fib != nil {
		f.fibGen = fib.gen
	}
	if fibChanged {
		clear(f.ifs)
	}
	ct := f.d.ct
	lost := f.kernelRecheck()
	var e conntrack.Entry
	f.stale = f.stale[:0]
	err := f.cls.FastWalk(func(k *bpf.FastKey, v *bpf.FastVal) bool {
		fl, ok := f.flows[*k]
		if !ok {
			f.stale = append(f.stale, *k) // not ours (a request raced a removal)
			return true
		}
		pkts := f.count(fl, v)
		if all {
			f.stale = append(f.stale, *k)
			return true
		}
		var live bool
		if v.LastSeen > fl.lastSeen && v.LastSeen <= mono {
			fl.lastSeen = v.LastSeen
			at := now - int64(mono-v.LastSeen)
			if !fl.in {
				pkts = 0 // a sync master counts the client's packets only
			}
			live = ct.Touch(conntrack.DirOrig, &fl.orig, at, now, pkts, &e)
			if live && e.Sync {
				f.syncConn(snap, fl, &e, now)
			}
			if svc := f.persistent(snap, fl.svc); live && svc != nil {
				// Activity keeps the client's persistence template alive, as a worker's
				// packet does (worker.request).
				var pk persistKey
				pk.set(svc.ID, &fl.orig.Src, svc.PersistBits)
				f.d.persist.lookup(&pk, at, svc.Persist)
			}
		} else {
			live = ct.Get(conntrack.DirOrig, &fl.orig, now, &e)
		}
		switch {
		case fl.kernel && lost&kernBit(familyOf(&fl.orig)) != 0:
			// The kernel would drop what the entry passes it now.
			f.stale = append(f.stale, *k)
		case !live, e.Dest != fl.dest,
			e.Orig.Proto == conntrack.ProtoTCP && e.State != conntrack.StateEstablished,
			e.Orig.Proto == conntrack.ProtoSCTP && e.State != conntrack.StateSCTPEstablished,
			snap == nil, fibChanged && !f.sameHop(fib, fl):
			f.stale = append(f.stale, *k)
		default:
			// A real server's tunnel edited (-e): its packets take the new encapsulation at
			// once, as IPVS's (which reads it from the destination per packet), from the
			// workers until offered again.
			if rs, ok := snap.dest(fl.dest); !ok || fl.tun && rs.Tun != fl.encap {
				f.stale = append(f.stale, *k)
			}
		}
		return true
	})
	if err != nil {
		f.failed.add(1)
	}
	if len(f.stale) > 0 {
		f.remove(f.stale)
	}
	if all {
		// Entries installed behind the walk (none: the workers have stopped) and the
		// remembered ones whose map entry vanished.
		clear(f.flows)
		f.entries.v.Store(0)
	}
}

// service returns service id of snap, nil when there is none.
func (f *fastPath) service(snap *Snapshot, id uint32) *Service {
	if snap == nil {
		return nil
	}
	if snap != f.svcSnap {
		f.svcSnap, f.svcOf = snap, make(map[uint32]*Service, len(snap.Services))
		for i := range snap.Services {
			f.svcOf[snap.Services[i].ID] = &snap.Services[i]
		}
	}
	return f.svcOf[id]
}

// persistent returns service id of snap when it is persistent, else nil.
func (f *fastPath) persistent(snap *Snapshot, id uint32) *Service {
	if svc := f.service(snap, id); svc != nil && svc.Persist > 0 {
		return svc
	}
	return nil
}

// syncConn queues connection e, which a sweep's Touch says a sync master sends now, as a
// worker queues the connections its packets make due (worker.syncConn): the packets the
// program forwarded count as those a worker sees. A connection whose service or real
// server has left the snapshot is not sent (the sweep removes its entry).
func (f *fastPath) syncConn(snap *Snapshot, fl *fastFlow, e *conntrack.Entry, now int64) {
	svc := f.service(snap, fl.svc)
	if svc == nil {
		return
	}
	rs, ok := snap.dest(e.Dest)
	if !ok {
		return
	}
	f.d.queueSync(f.sync, &f.syncScratch, e, svc, rs, now)
}

// sameHop tells whether fib still sends fl's packets out of the same interface to the
// same MAC address.
func (f *fastPath) sameHop(fib *FIB, fl *fastFlow) bool {
	rt := fib.route(&fl.hop)
	if rt == nil || uint32(rt.Ifindex) != fl.ifindex {
		return false
	}
	nh := fl.hop
	if rt.HasGW {
		nh = rt.Gateway
	}
	mac, ok := fib.Neighbour(rt.Ifindex, nh)
	if fl.tun && (!rt.HasSrc || rt.Src != fl.tunSrc || rt.MTU != fl.tunMTU) {
		return false
	}
	return ok && mac == fl.dmac
}

// Stats returns the fast path's counters.
func (f *fastPath) Stats() FastPathStats {
	s := FastPathStats{
		Entries: int(f.entries.load()), Installed: f.installed.load(), Removed: f.removed.load(),
		MapFull: f.mapFull.load(), Failed: f.failed.load(), Packets: f.packets.load(), Bytes: f.bytes.load(),
		Sweeps: f.sweeps.load(), Cancelled: f.cancelled.load(),
	}
	for _, r := range f.rings {
		s.QueueFull += r.full.Load()
	}
	return s
}

// FastPathStats returns the fast path's counters; ok is false when it is off.
func (d *Dataplane) FastPathStats() (s FastPathStats, ok bool) {
	if d.fast == nil {
		return s, false
	}
	return d.fast.Stats(), true
}

// The worker's side: offers, made while forwarding. None allocates.

// fastRequest offers connection e, whose client packet p the worker forwards to real
// server rs, when it is established; found tells whether the packet found the connection
// (it did not create it). A TCP FIN or RST that took the connection out of ESTABLISHED
// asks for its removal. A TUN real server's connections are offered only of the
// connection's own family (the program writes no IPv4-in-IPv6 or IPv6-in-IPv4 header:
// fastDir refuses those) and, with a GUE or GRE checksum, only TCP and UDP ones (the
// program takes the inner packet's sum from the transport pseudo-header: checked here);
// the others stay with the workers.
func (w *worker) fastRequest(p *pktDesc, e *conntrack.Entry, rs *destRef, found bool) {
	info := &p.info
	switch info.Proto {
	case packet.ProtoTCP:
		if e.State != conntrack.StateEstablished {
			if found && info.TCPFlags&(packet.TCPFlagFIN|packet.TCPFlagRST) != 0 {
				w.fastRemove(e)
			}
			return
		}
	case packet.ProtoUDP:
		// NAT, FULLNAT: when the real server has answered (fastReply); DR, TUN: from
		// the second packet.
		if e.Method != conntrack.MethodDR && e.Method != conntrack.MethodTUN || !found {
			return
		}
	case packet.ProtoSCTP:
		// Associations once established. The program forwards only the chunks that
		// leave ESTABLISHED as it is (NAT and FULLNAT: with the CRC32c updated for the
		// ports, bpf.FastVal.CRC); a packet that took the association out of it
		// (SHUTDOWN, ABORT) takes it out of the fast path.
		if e.State != conntrack.StateSCTPEstablished {
			if found && e.Prior == conntrack.StateSCTPEstablished {
				w.fastRemove(e)
			}
			return
		}
	default:
		return
	}
	switch e.Method {
	case conntrack.MethodNAT, conntrack.MethodFullNAT:
		w.fastOffer(p, e, rs.Addr, packet.Encap{}, true)
	case conntrack.MethodTUN:
		// With a GUE or GRE checksum the program takes the inner packet's sum from its
		// headers (TCP's and UDP's pseudo-header), which SCTP's CRC does not give.
		if !rs.Tun.Csum || rs.Tun.Type != packet.EncapIPIP && info.Proto != packet.ProtoSCTP {
			w.fastOffer(p, e, rs.Addr, rs.Tun, false)
		}
	case conntrack.MethodDR:
		w.fastOffer(p, e, rs.Addr, packet.Encap{}, false)
	}
}

// fastReply offers NAT or FULLNAT connection e, whose real server's packet p the worker
// forwards, when it is established (UDP: now, it has a packet each way).
func (w *worker) fastReply(p *pktDesc, e *conntrack.Entry) {
	if e.Method != conntrack.MethodNAT && e.Method != conntrack.MethodFullNAT {
		return
	}
	switch p.info.Proto {
	case packet.ProtoTCP:
		if e.State != conntrack.StateEstablished {
			if p.info.TCPFlags&(packet.TCPFlagFIN|packet.TCPFlagRST) != 0 {
				w.fastRemove(e)
			}
			return
		}
	case packet.ProtoUDP:
	case packet.ProtoSCTP:
		// Through NAT the real server's COOKIE ACK is what establishes the association
		// (IPVS's output table), and its SHUTDOWN or ABORT may end it.
		if e.State != conntrack.StateSCTPEstablished {
			if e.Prior == conntrack.StateSCTPEstablished {
				w.fastRemove(e)
			}
			return
		}
	default:
		return
	}
	w.fastOffer(p, e, e.Reply.Src, packet.Encap{}, true)
}

// fastOffer queues the installation of connection e: its client → real server direction
// (to rs; TUN: encapsulated as tun), and with both its reply
// direction too (NAT). Nothing is queued for a frame with a VLAN tag (the program leaves
// those to the sockets), for a next hop the FIB does not resolve yet, or when e was
// offered less than fastOfferEvery ago.
func (w *worker) fastOffer(p *pktDesc, e *conntrack.Entry, rs [16]byte, tun packet.Encap, both bool) {
	fib, now := p.fib, p.now
	if p.info.L3Off != packet.EthernetHeaderLen {
		return
	}
	o := &w.fp.offers[offerSlot(&e.Orig)]
	if o.key == e.Orig && now-o.at < fastOfferEvery {
		return
	}
	r := &w.fp.req
	*r = fastReq{op: fastInstall, orig: e.Orig, svc: e.Service, dest: e.Dest, at: now}
	family := familyOf(&e.Orig)
	switch {
	case e.Method == conntrack.MethodFullNAT:
		// Request: client:cport → VIP:vport becomes LIP:lport → RS:rport (the reply key
		// reversed); reply: the other way round.
		if !w.fastDir(&r.dirs[0], fib, &e.Orig, e.Reply.Src, bpf.FastFullNAT, e.Reply.Dst, e.Reply.DstPort, family, true) ||
			!w.fastDir(&r.dirs[1], fib, &e.Reply, e.Orig.Src, bpf.FastFullNAT, e.Orig.Dst, e.Orig.DstPort, family, false) {
			return
		}
		w.fastDst(&r.dirs[0], &e.Orig, e.Reply.Src, e.Reply.SrcPort, family)
		w.fastDst(&r.dirs[1], &e.Reply, e.Orig.Src, e.Orig.SrcPort, family)
		r.n = 2
		if e.Orig.Proto == conntrack.ProtoSCTP {
			// Request: the ports become the reply key's, reversed; reply: the original's.
			fastSCTP(&r.dirs[0], &e.Orig, e.Reply.DstPort, e.Reply.SrcPort)
			fastSCTP(&r.dirs[1], &e.Reply, e.Orig.DstPort, e.Orig.SrcPort)
		}
	case both:
		if !w.fastDir(&r.dirs[0], fib, &e.Orig, rs, bpf.FastNATDst, e.Reply.Src, e.Reply.SrcPort, family, true) ||
			!w.fastDir(&r.dirs[1], fib, &e.Reply, e.Orig.Src, bpf.FastNATSrc, e.Orig.Dst, e.Orig.DstPort, family, false) {
			return
		}
		r.n = 2
		if e.Orig.Proto == conntrack.ProtoSCTP {
			fastSCTP(&r.dirs[0], &e.Orig, e.Orig.SrcPort, e.Reply.SrcPort)
			fastSCTP(&r.dirs[1], &e.Reply, e.Orig.DstPort, e.Reply.DstPort)
		}
	default:
		action := uint8(bpf.FastDR)
		if e.Method == conntrack.MethodTUN {
			action = bpf.FastTUN
		}
		if !w.fastDir(&r.dirs[0], fib, &e.Orig, rs, action, [16]byte{}, 0, family, true) {
			return
		}
		if action == bpf.FastTUN {
			setFastEncap(&r.dirs[0].val, tun, packet.EncapSourcePort(&p.info))
		}
		r.n = 1
	}
	// Offered: not again for fastOfferEvery. Refused by a full queue (counted): again
	// after fastRetryFull, once the fast path's goroutine has drained the queue — when a
	// thousand connections become eligible at once, a second's wait would leave a
	// quarter of them out for that long.
	o.key, o.at = e.Orig, now
	if !w.fp.ring.push(r) {
		o.at = now - fastOfferEvery + int64(fastRetryFull)
	}
}

// fastRetryFull is how soon a connection whose offer found the queue full is offered
// again: a few of the goroutine's drains (fastDrainEvery).
const fastRetryFull = 4 * fastDrainEvery

// fastDir fills d for packets arriving with key k and sent towards hop: action with the
// new address and port (NAT). False when the next hop is not known or not managed, and
// for TUN when the worker's tunnel would not send the packet either (no source address on
// the route, a real server of the other family).
func (w *worker) fastDir(d *fastDir, fib *FIB, k *conntrack.Key, hop [16]byte, action uint8, addr [16]byte, port uint16, family uint8, in bool) bool {
	h := w.hop(fib, &hop)
	if !h.route || h.out < 0 || !h.neigh {
		return false
	}
	out := w.ports[h.out]
	d.key = fastKey(k)
	d.in, d.hop = in, hop
	d.val = bpf.FastVal{DMAC: h.mac, SMAC: out.mac, Ifindex: uint32(out.ifindex), Action: action}
	switch action {
	case bpf.FastTUN:
		if !h.hasSrc || packet.IsIPv4Mapped(hop) != (family == 4) {
			return false
		}
		// The outer header: from the route's source to the real server (worker.tunnel).
		d.val.Addr, d.val.Addr2, d.mtu = h.src, hop, h.mtu
		fallthrough
	case bpf.FastDR:
		if family == 4 {
			d.val.CsumL3 = bpf.FastTTLDelta // the TTL drops by one, as on the slow path
		}
		return true
	}
	d.val.Addr = addr
	binary.BigEndian.PutUint16(d.val.Port[:], port)
	old, oldPort := k.Dst, k.DstPort
	if action == bpf.FastNATSrc || action == bpf.FastFullNAT { // FULLNAT: addr is the source
		old, oldPort = k.Src, k.SrcPort
	}
	// Passed to the kernel, the packet keeps its TTL: the kernel's forward decrements it.
	kernel := w.fp.kern.Load()&kernBit(family) != 0
	if kernel {
		d.val.Flags = bpf.FastKernel
	}
	d.val.CsumL3, d.val.CsumL4 = bpf.FastDeltas(family, old, addr, oldPort, port, !kernel)
	return true
}

// fastDst completes FULLNAT direction d (packets arriving with key k): the destination
// becomes addr:port too, its delta added to the source's.
func (w *worker) fastDst(d *fastDir, k *conntrack.Key, addr [16]byte, port uint16, family uint8) {
	d.val.Addr2 = addr
	binary.BigEndian.PutUint16(d.val.Port2[:], port)
	l3, l4 := bpf.FastDeltas(family, k.Dst, addr, k.DstPort, port, false)
	d.val.CsumL3, d.val.CsumL4 = bpf.AddDeltas(d.val.CsumL3, l3), bpf.AddDeltas(d.val.CsumL4, l4)
}

// fastSCTP sets d.val.CRC for SCTP packets arriving with key k that leave with ports
// sport and dport: the term of the CRC32c's change the program scales by each packet's
// length (packet.SCTPPortsTerm).
func fastSCTP(d *fastDir, k *conntrack.Key, sport, dport uint16) {
	d.val.CRC = packet.SCTPPortsTerm(uint32(k.SrcPort)<<16|uint32(k.DstPort), uint32(sport)<<16|uint32(dport))
}

// fastRemove queues the removal of connection e's entries.
func (w *worker) fastRemove(e *conntrack.Entry) {
	r := &w.fp.req
	*r = fastReq{op: fastRemove, orig: e.Orig, n: 1}
	r.dirs[0].key = fastKey(&e.Orig)
	if e.Method == conntrack.MethodNAT || e.Method == conntrack.MethodFullNAT {
		r.dirs[1].key = fastKey(&e.Reply)
		r.n = 2
	}
	w.fp.ring.push(r)
	w.fp.offers[offerSlot(&e.Orig)] = fastOffer{}
}

// familyOf is the family of connection key k: 4 or 6.
func familyOf(k *conntrack.Key) uint8 { return familyOfAddr(&k.Src) }

// offerSlot is k's slot in a worker's table of recent offers.
func offerSlot(k *conntrack.Key) uint32 {
	h := uint32(k.SrcPort)<<16 | uint32(k.DstPort)
	h ^= binary.LittleEndian.Uint32(k.Src[12:16])*0x85EBCA6B ^ binary.LittleEndian.Uint32(k.Src[8:12])*0xC2B2AE35 ^
		binary.LittleEndian.Uint32(k.Dst[12:16]) ^ uint32(k.Proto)
	return (h * 0x9E3779B1) >> (32 - 12) // fastOffers = 1 << 12
}

var _ [fastOffers]struct{} = [1 << 12]struct{}{} // offerSlot's shift

// fastKey is the map key of packets arriving with key k.
func fastKey(k *conntrack.Key) bpf.FastKey {
	fk := bpf.FastKey{Src: k.Src, Dst: k.Dst, Proto: k.Proto}
	binary.BigEndian.PutUint16(fk.SPort[:], k.SrcPort)
	binary.BigEndian.PutUint16(fk.DPort[:], k.DstPort)
	return fk
}
