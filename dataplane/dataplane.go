package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
)

// Config configures a Dataplane. Zero values take the defaults noted.
type Config struct {
	Interfaces  []string   // interfaces to attach to (at least one)
	Queues      int        // queues per interface; 0 = every RX queue the interface has
	Socket      xsk.Config // ring and frame sizes (zero: xsk.DefaultConfig)
	Batch       int        // packets per receive batch; default DefaultBatch
	XDPMode     bpf.Mode   // native, generic or auto (native, falling back to generic)
	CPUs        []int      // CPUs to pin workers to, round robin; empty = unpinned
	Conntrack   conntrack.Config
	SloppyTCP   bool // accept mid-stream TCP packets as new connections (IPVS sloppy_tcp)
	SloppySCTP  bool // accept SCTP packets whose first chunk is not INIT (ABORT excepted) as new connections (IPVS sloppy_sctp)
	MaxServices int  // service IDs are below this; default DefaultMaxServices
	MaxDests    int  // destination IDs are below this; default DefaultMaxDests
	MaxLaddrs   int  // FULLNAT local address IDs are below this; default DefaultMaxLaddrs
	// NoTOA keeps FULLNAT from writing the TOA option (the client's address and port,
	// fullnat.go: wantsTOA) into TCP SYNs and handshake ACKs; the zero value writes it,
	// as DPVS does. xlvsd's --fullnat-toa=false.
	NoTOA bool
	// ICMPRate and ICMPBurst limit the ICMP errors each worker writes itself (port
	// unreachable, fragmentation needed) to ICMPRate per second (at most MaxICMPRate) in
	// bursts of ICMPBurst; 0 takes DefaultICMPRate / DefaultICMPBurst, and NoICMPLimit
	// (any negative ICMPRate) turns the limit off. xlvsd's --icmp-rate means the same.
	ICMPRate  int
	ICMPBurst int
	// SyncQueue is how many entries each worker holds for the sync daemon (SetSyncMaster);
	// 0 takes DefaultSyncQueue. A full queue drops the entry and counts it.
	SyncQueue int
	ReapEvery time.Duration
	Logger    *slog.Logger
	// Adopt takes over the XDP links a predecessor handed over (restart handoff,
	// handoff.go) on the interfaces they name, instead of attaching; Activate swaps the
	// program in.
	Adopt []AdoptLink
	// AdoptSockets are the AF_XDP sockets a predecessor handed over (handoff.go): New
	// uses the one of each (interface, queue) it binds instead of opening a socket, and
	// closes the ones it does not use. They are New's from the call on, error or not (it
	// clears the slice's elements).
	AdoptSockets []AdoptSocket
	// BusyWait is how long to keep trying to bind a queue whose previous socket the
	// kernel is still releasing (EBUSY: a predecessor that has just exited; handoff.go).
	// 0: no retry.
	BusyWait time.Duration
	// FastPath is the size of the XDP fast path's map (fastpath.go): established NAT,
	// FULLNAT, DR and TUN connections are forwarded by the XDP program itself. 0: off. Needs
	// the XDP program (New), not given sockets.
	FastPath int
	// FastPathKernel: with FastPath, established NAT and FULLNAT connections' packets are
	// rewritten in XDP and passed to the kernel, whose routing forwards them
	// (bpf.FastKernel), instead of sent out by the program; for the families whose
	// packets the kernel would forward when New runs (fastPath.kernelFamilies: forwarding
	// on; IPv4 also accept_local, and rp_filter not strict), and New refuses it when
	// neither qualifies; every sweep checks again (a family that no longer qualifies goes
	// back to the program). DR and TUN entries are sent by the program either way.
	FastPathKernel bool
}

func (c *Config) defaults() {
	if c.SyncQueue <= 0 {
		c.SyncQueue = DefaultSyncQueue
	}
	if c.Socket == (xsk.Config{}) {
		c.Socket = xsk.DefaultConfig()
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.MaxServices == 0 {
		c.MaxServices = DefaultMaxServices
	}
	if c.MaxDests == 0 {
		c.MaxDests = DefaultMaxDests
	}
	if c.MaxLaddrs == 0 {
		c.MaxLaddrs = DefaultMaxLaddrs
	}
	if c.ICMPRate == 0 {
		c.ICMPRate = DefaultICMPRate
	}
	if c.ICMPBurst == 0 {
		c.ICMPBurst = DefaultICMPBurst
	}
	if c.Conntrack.MaxDests == 0 {
		c.Conntrack.MaxDests = c.MaxDests
	}
	if c.Conntrack.MaxEntries == 0 {
		c.Conntrack.MaxEntries = 1 << 20
	}
	if c.Conntrack.Timeouts == (conntrack.Timeouts{}) {
		c.Conntrack.Timeouts = conntrack.DefaultTimeouts()
	}
	c.Conntrack.SloppyTCP = c.SloppyTCP
	c.Conntrack.SloppySCTP = c.SloppySCTP
	if c.ReapEvery == 0 {
		c.ReapEvery = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate checks c before anything is opened.
func (c *Config) Validate() error {
	if c.Batch < 1 || c.Batch > MaxBatch {
		return fmt.Errorf("batch %d: must be between 1 and %d", c.Batch, MaxBatch)
	}
	if c.Batch > c.Socket.RxRing {
		return fmt.Errorf("batch %d: must not exceed the rx ring (%d)", c.Batch, c.Socket.RxRing)
	}
	if c.Queues < 0 || c.Queues > MaxQueues {
		return fmt.Errorf("queues %d: must be between 1 and %d (0 = all)", c.Queues, MaxQueues)
	}
	for _, cpu := range c.CPUs {
		if cpu < 0 || cpu >= 1024 {
			return fmt.Errorf("cpu %d: out of range", cpu)
		}
	}
	return c.Socket.Validate()
}

// Defaults of Config, the one source for the daemon (control.Options) and xlvsd's flags.
const (
	DefaultBatch       = 64                        // Config.Batch
	DefaultMaxServices = 4096                      // Config.MaxServices
	DefaultMaxDests    = conntrack.DefaultMaxDests // Config.MaxDests, and so the connection table's
)

// Limits of Config that Validate enforces (xlvsd's flags take their ranges from here).
const (
	MaxBatch  = 1024 // Config.Batch (and at most the socket's rx ring)
	MaxQueues = 64   // Config.Queues
)

// DefaultMaxLaddrs is Config.MaxLaddrs's default: FULLNAT (service, local address)
// pairs, each with its own counters. Distinct local addresses are fewer: at most
// bpf.MaxLaddrs, each with a port index of 126 KiB.
const DefaultMaxLaddrs = 4096

// MaxLaddrAddrs bounds the distinct FULLNAT local addresses of a snapshot (draining ones
// included): the XDP program's laddrs map holds that many.
const MaxLaddrAddrs = bpf.MaxLaddrs

// Port describes an interface's sockets for NewWithPorts: one socket per queue.
type Port struct {
	Name    string
	Ifindex int32
	MAC     [6]byte
	Sockets []xsk.Socket
}

// Dataplane is the running forwarder.
type Dataplane struct {
	cfg     Config
	log     *slog.Logger
	ct      *conntrack.Table
	persist *persistTable
	snap    atomic.Pointer[Snapshot]
	fib     *fibWatcher
	workers []*worker
	ports   []Port
	cls     *bpf.Classifier
	fast    *fastPath // nil: no fast path
	// xdp holds each port's program instance (nil while a deferred one loads); xdpMu
	// guards it against Activate filling in the deferred ones.
	xdp      []*bpf.Port
	xdpMu    sync.Mutex
	deferred []deferredPort
	// adoptedSockets counts the sockets taken over from a predecessor (adoptSocket):
	// frames already wait in them, so Start leaves the workers to StartForwarding.
	adoptedSockets int
	workCtx        context.Context // Start's, for StartForwarding
	forwarding     bool            // the workers were started
	macKeys        []string        // per xdp, the MACs last given to it (macs.go)
	epoch          time.Time

	// the sync master (sync.go): workers queue connections while syncMaster is set
	syncMaster      atomic.Bool
	syncPersistMode atomic.Bool
	syncPol         atomic.Pointer[conntrack.SyncPolicy] // the master's, for templates (sync.go)

	lastPanic atomic.Pointer[string]
	mu        sync.Mutex               // serialises Publish
	lports    map[[16]byte]*lportIndex // FULLNAT local ports by shard, per local address (under mu)
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New attaches the XDP program to every interface, opens one AF_XDP socket per queue and
// registers it, and starts watching routes and neighbours. Call Start to forward.
func New(cfg Config) (*Dataplane, error) {
	// The handed-over sockets setupPort does not take (adoptSocket empties their
	// slots, which this slice shares), on success or error.
	defer closeSockets(cfg.AdoptSockets)
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("no interface: Config.Interfaces must name at least one")
	}
	type ifc struct {
		link   netlink.Link
		queues int
	}
	var ifcs []ifc
	for _, name := range cfg.Interfaces {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w (list interfaces with `ip link`)", name, err)
		}
		q, err := queuesFor(l, cfg.Queues)
		if err != nil {
			return nil, err
		}
		ifcs = append(ifcs, ifc{l, q})
	}
	names, counts := make([]string, len(ifcs)), make([]int, len(ifcs))
	for i, f := range ifcs {
		names[i], counts[i] = f.link.Attrs().Name, f.queues
	}
	if err := sameQueues(names, counts); err != nil {
		return nil, err
	}
	// The connection table is made while the programs load and the sockets open (a
	// successor's sockets may wait for its predecessor's to be released, openSocket).
	type made struct {
		ct  *conntrack.Table
		err error
	}
	table := make(chan made, 1)
	go func() {
		ct, err := conntrack.New(cfg.Conntrack)
		table <- made{ct, err}
	}()
	takeTable := func() (*conntrack.Table, error) {
		m := <-table
		if m.err != nil {
			return nil, fmt.Errorf("connection table: %w", m.err)
		}
		return m.ct, nil
	}
	cls, err := bpf.New()
	if err != nil {
		if ct, _ := takeTable(); ct != nil {
			ct.Close()
		}
		return nil, err
	}
	d := &Dataplane{cfg: cfg, log: cfg.Logger, cls: cls}
	fail := func(err error) (*Dataplane, error) {
		d.closeResources()
		return nil, err
	}
	if cfg.FastPath > 0 {
		if err := cls.EnableFastPath(cfg.FastPath); err != nil {
			return fail(err)
		}
		var ifx []int
		var names []string
		for _, f := range ifcs {
			ifx = append(ifx, f.link.Attrs().Index)
			names = append(names, f.link.Attrs().Name)
			if f.link.Type() == "veth" {
				cfg.Logger.Warn("fast path on a veth: its peer must have GRO on (ethtool -K PEER gro on) or an XDP program, else the kernel drops what the fast path sends", "interface", f.link.Attrs().Name)
			}
		}
		if err := cls.SetTxPorts(ifx); err != nil {
			return fail(err)
		}
		d.fast = newFastPath(d, cls)
		if cfg.FastPathKernel {
			if err := d.fast.kernelFamilies(names); err != nil {
				return fail(err)
			}
		}
	}
	// The program instances of adopted links (a successor's) load meanwhile too: loading
	// needs no namespace, and attaching happens only with the predecessor's links.
	// Not those whose link and every socket were handed over (deferPort): their
	// instances load once the workers forward (Activate), so that the verifier's CPU
	// time is not on the path to the first forwarded frame.
	pre := make([]chan preloaded, len(ifcs))
	deferPort := make([]bool, len(ifcs))
	for i, f := range ifcs {
		name := f.link.Attrs().Name
		switch {
		case d.adopted(name) == nil:
		case d.socketsHandedOver(name, f.queues):
			deferPort[i] = true
		default:
			pre[i] = make(chan preloaded, 1)
		}
	}
	for _, ch := range pre {
		if ch != nil {
			go func() { // each on its own: the verifier's work is per instance
				p, err := cls.Load()
				ch <- preloaded{p, err}
			}()
		}
	}
	defer func() {
		for i := range pre { // what setupPort did not take
			if pre[i] != nil {
				if l := <-pre[i]; l.p != nil {
					l.p.Close()
				}
			}
		}
	}()
	// One interface after another, in the calling thread's network namespace (a
	// goroutine of our own could run on a thread in another one).
	var perr error
	for i, f := range ifcs {
		if deferPort[i] {
			port, err := d.adoptPort(f.link.Attrs(), f.queues)
			d.ports = append(d.ports, port)
			if err != nil {
				perr = err
				break
			}
			// Its program instance comes with Activate (finishDeferred).
			d.deferred = append(d.deferred, deferredPort{idx: len(d.xdp), ifindex: f.link.Attrs().Index, link: d.adopted(port.Name)})
			d.xdp = append(d.xdp, nil)
			cfg.Logger.Info("sockets and XDP link adopted", "interface", port.Name, "queues", f.queues)
			continue
		}
		xp, port, err := d.setupPort(cls, f.link.Attrs(), f.queues, pre[i])
		pre[i] = nil
		if xp != nil {
			d.xdp = append(d.xdp, xp)
		}
		d.ports = append(d.ports, port)
		if err != nil {
			perr = err
			break
		}
		cfg.Logger.Info("attached", "interface", port.Name, "xdp_mode", xp.Mode().String(), "queues", f.queues)
	}
	if perr == nil {
		perr = d.readMACs()
	}
	ct, err := takeTable()
	if perr != nil {
		if ct != nil {
			ct.Close()
		}
		return fail(perr)
	}
	if err != nil {
		return fail(err)
	}
	if err := d.init(ct); err != nil {
		ct.Close()
		return fail(err)
	}
	return d, nil
}

// preloaded is a program instance loaded for an adopted link (New).
type preloaded struct {
	p   *bpf.Port
	err error
}

// setupPort attaches (or adopts) the XDP program of one interface and opens and
// registers its queues' sockets. An adopted link's sockets open first, while its
// program instance loads (pre); an attached one's program is attached first, as the
// sockets of some drivers expect. On error it returns what it made, for
// closeResources (the sockets are in the Port).
func (d *Dataplane) setupPort(cls *bpf.Classifier, attrs *netlink.LinkAttrs, queues int, pre chan preloaded) (*bpf.Port, Port, error) {
	p := Port{Name: attrs.Name, Ifindex: int32(attrs.Index)}
	copy(p.MAC[:], attrs.HardwareAddr)
	open := func() error {
		for q := 0; q < queues; q++ {
			if s := d.adoptSocket(attrs.Name, q); s != nil {
				p.Sockets = append(p.Sockets, s)
				continue
			}
			s, err := d.openSocket(attrs.Index, q)
			if err != nil {
				return fmt.Errorf("interface %s: %w", attrs.Name, err)
			}
			p.Sockets = append(p.Sockets, s)
		}
		return nil
	}
	var xp *bpf.Port
	if a := d.adopted(attrs.Name); a != nil {
		err := open()
		l := <-pre
		switch {
		case l.err != nil:
			return nil, p, fmt.Errorf("attach XDP to %s: adopt xdp link of ifindex %d: %w", attrs.Name, attrs.Index, l.err)
		case err != nil:
			l.p.Close()
			return nil, p, err
		}
		if err := cls.AdoptLoaded(l.p, attrs.Index, a.FD, a.Mode); err != nil {
			l.p.Close()
			return nil, p, fmt.Errorf("attach XDP to %s: %w", attrs.Name, err)
		}
		xp = l.p
	} else {
		var err error
		if xp, err = cls.Attach(attrs.Index, d.cfg.XDPMode); err != nil {
			return nil, p, fmt.Errorf("attach XDP to %s: %w", attrs.Name, err)
		}
		if err := open(); err != nil {
			return xp, p, err
		}
	}
	for q, s := range p.Sockets {
		if err := xp.RegisterSocket(q, s.FD()); err != nil {
			return xp, p, fmt.Errorf("register socket of %s queue %d: %w", attrs.Name, q, err)
		}
	}
	return xp, p, nil
}

// NewWithPorts builds a Dataplane over given sockets (fakes in tests and benchmarks):
// no XDP program, no netlink; set routes with SetFIB.
func NewWithPorts(cfg Config, ports []Port) (*Dataplane, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: cfg, log: cfg.Logger, ports: ports}
	ct, err := conntrack.New(cfg.Conntrack)
	if err != nil {
		return nil, fmt.Errorf("connection table: %w", err)
	}
	if err := d.init(ct); err != nil {
		ct.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dataplane) init(ct *conntrack.Table) error {
	d.ct = ct
	d.persist = newPersistTable(1 << 16)
	d.epoch = time.Now()
	d.fib = newFIBWatcher(d.log)
	if d.cls != nil {
		d.fib.onLocals = d.cls.SetLocals
		d.fib.onLinks = d.setMACs
	}
	queues := 0
	for _, p := range d.ports {
		if len(p.Sockets) > queues {
			queues = len(p.Sockets)
		}
	}
	for q := 0; q < queues; q++ {
		var ps []*port
		for _, p := range d.ports {
			if q < len(p.Sockets) {
				ps = append(ps, &port{ifindex: p.Ifindex, name: p.Name, mac: p.MAC, sock: p.Sockets[q]})
			}
		}
		cpu := -1
		if len(d.cfg.CPUs) > 0 {
			cpu = d.cfg.CPUs[q%len(d.cfg.CPUs)]
		}
		d.workers = append(d.workers, newWorker(d, q, cpu, ps))
		if d.fast != nil {
			d.fast.attachWorker(d.workers[q])
		}
	}
	return nil
}

func (d *Dataplane) now() int64 { return int64(time.Since(d.epoch)) }

// Now is the dataplane's monotonic clock in nanoseconds (the connection table's time).
func (d *Dataplane) Now() int64 { return d.now() }

// Start begins forwarding: the route watcher (real sockets only), the reaper and one
// goroutine per queue. They stop when ctx ends or Close is called.
func (d *Dataplane) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	d.cancel = cancel
	if d.cls != nil {
		if err := d.fib.start(ctx); err != nil {
			cancel()
			return fmt.Errorf("watch routes and neighbours: %w", err)
		}
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.cfg.ReapEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A budget that sweeps the whole table about every few seconds.
				budget := d.cfg.Conntrack.MaxEntries / 64
				if budget < 1024 {
					budget = 1024
				}
				d.ct.Reap(d.now(), budget)
			}
		}
	}()
	if d.fast != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.fast.run(ctx)
		}()
	}
	d.workCtx = ctx
	if d.adoptedSockets > 0 {
		return nil // StartForwarding, once the rules and the table are in
	}
	d.StartForwarding()
	return nil
}

// StartForwarding starts the workers, after Start. Start does so itself, unless the
// dataplane took over a predecessor's sockets (Config.AdoptSockets), whose frames —
// those that arrived during the handoff — must not be forwarded before the rules are
// published and the table imported (ImportHandoff): then call it once they are. A
// second call does nothing.
func (d *Dataplane) StartForwarding() {
	if d.workCtx == nil || d.forwarding {
		return
	}
	d.forwarding = true
	for _, w := range d.workers {
		d.wg.Add(1)
		go func(w *worker) {
			defer d.wg.Done()
			w.run(d.workCtx)
		}(w)
	}
}

// Publish installs a new configuration: the XDP maps first (so new services are
// redirected), then the snapshot the workers read. It binds the snapshot's FULLNAT local
// addresses to their port indexes (built once per address, 126 KiB each, and kept while
// a published snapshot names the address), so a snapshot belongs to one Dataplane.
func (d *Dataplane) Publish(s *Snapshot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.bound != nil && s.bound != d.ct {
		return errors.New("publish snapshot: it was published on another dataplane; build a new one with NewSnapshot")
	}
	laddrs := s.LaddrAddrs()
	if len(laddrs) > MaxLaddrAddrs {
		return fmt.Errorf("publish snapshot: %d distinct FULLNAT local addresses (draining ones included): at most %d", len(laddrs), MaxLaddrAddrs)
	}
	if d.cls != nil {
		if err := d.cls.SetServices(toBPFKeys(s.ServiceKeys())); err != nil {
			return fmt.Errorf("update XDP service map: %w", err)
		}
		if err := d.cls.SetReals(toBPFKeys(s.RealKeys())); err != nil {
			return fmt.Errorf("update XDP real-server map: %w", err)
		}
		addrs := make([]netip.Addr, len(laddrs))
		for i, a := range laddrs {
			addrs[i] = netipFrom16(a)
		}
		if err := d.cls.SetLaddrs(addrs); err != nil {
			return fmt.Errorf("update XDP local-address map: %w", err)
		}
		if err := d.cls.SetMarks(s.MarkEntries()); err != nil {
			return fmt.Errorf("update XDP firewall-mark maps: %w", err)
		}
	}
	if s.bound == nil { // published again: its indexes are bound, and workers may read it
		d.bindLaddrs(s)
	}
	// Thresholds before the schedulers that read the flags they govern. Giving a
	// destination the thresholds it has already changes nothing, as in the kernel, where
	// an edit of one real server leaves the others alone.
	for i := range s.Services {
		for _, ds := range s.Services[i].Dests {
			d.ct.SetThresholds(ds.ID, ds.UThreshold, ds.LThreshold)
		}
	}
	d.snap.Store(s)
	if d.fast != nil {
		d.fast.Kick() // deleted real servers' connections leave the fast path
	}
	return nil
}

// bindLaddrs gives every local address of s its port index, building the missing ones,
// and forgets the indexes of addresses s does not name (older snapshots keep theirs).
func (d *Dataplane) bindLaddrs(s *Snapshot) {
	s.bound = d.ct
	used := map[[16]byte]*lportIndex{}
	for i := range s.Services {
		ls := s.Services[i].Laddrs
		for j := range ls {
			x := used[ls[j].Addr]
			if x == nil {
				if x = d.lports[ls[j].Addr]; x == nil {
					x = newLportIndex(d.ct, ls[j].Addr, len(d.workers))
				}
				used[ls[j].Addr] = x
			}
			ls[j].ports = x
			s.laddrs = true
		}
	}
	d.lports = used
}

// Snapshot returns the configuration the workers use now.
func (d *Dataplane) Snapshot() *Snapshot { return d.snap.Load() }

// SetFIB replaces the routes and neighbours (tests; the watcher does it otherwise).
func (d *Dataplane) SetFIB(f *FIB) { d.fib.fib.Store(f) }

// FIB returns the routes and neighbours in use.
func (d *Dataplane) FIB() *FIB { return d.fib.fib.Load() }

// Resolve asks the kernel to resolve the next hop towards addr if it is not known yet.
func (d *Dataplane) Resolve(addr [16]byte) {
	if d.cls != nil {
		d.fib.Resolve(addr)
	}
}

// Conntrack is the connection table.
func (d *Dataplane) Conntrack() *conntrack.Table { return d.ct }

// ServiceStats sums a service's counters over the workers.
func (d *Dataplane) ServiceStats(id uint32) FlowStats {
	var s FlowStats
	for _, w := range d.workers {
		if id < uint32(len(w.st.svc)) {
			w.st.svc[id].addTo(&s)
		}
	}
	if c := d.fast.svcCtrs(id); c != nil {
		c.addTo(&s) // what the XDP program forwarded itself
	}
	return s
}

// DestStats sums a destination's counters over the workers.
func (d *Dataplane) DestStats(id uint32) FlowStats {
	var s FlowStats
	for _, w := range d.workers {
		if id < uint32(len(w.st.dest)) {
			w.st.dest[id].addTo(&s)
		}
	}
	if c := d.fast.destCtrs(id); c != nil {
		c.addTo(&s)
	}
	return s
}

// LaddrConflicts sums, over the workers, how many times the FULLNAT port allocator found
// no free port on local address id (DPVS's port_conflict).
func (d *Dataplane) LaddrConflicts(id uint32) uint64 {
	var n uint64
	for _, w := range d.workers {
		if id < uint32(len(w.st.laddrConflicts)) {
			n += w.st.laddrConflicts[id].load()
		}
	}
	return n
}

// QueueStats describes one socket: its interface, queue and counters.
type QueueStats struct {
	Interface string
	Queue     int
	Socket    xsk.Stats
}

// Stats returns per-worker and per-socket counters.
func (d *Dataplane) Stats() ([]WorkerStats, []QueueStats) {
	var ws []WorkerStats
	var qs []QueueStats
	for _, w := range d.workers {
		s := WorkerStats{
			Queue: w.queue, RxPackets: w.st.rx.load(), TxPackets: w.st.tx.load(),
			Forwarded: w.st.forwarded.load(), Panics: w.st.panics.load(), NeighQueued: w.st.neighQueued.load(),
			Encapsulated: w.st.encapsulated.load(), OPSReplies: w.st.opsReplies.load(), Burst: w.st.burst.load(), ICMPSent: w.st.icmpSent.load(), ICMPForwarded: w.st.icmpForwarded.load(),
			ICMPRateLimited: w.st.icmpLimited.load(), TOAAdded: w.st.toaAdded.load(), TOASkipped: w.st.toaSkipped.load(),
			FragmentsNoted: w.st.fragNoted.load(), Fragments: w.st.fragments.load(), Drops: map[string]uint64{},
		}
		for i := Drop(0); i < numDrops; i++ {
			s.Drops[i.String()] = w.st.drops[i].load()
		}
		ws = append(ws, s)
		for _, p := range w.ports {
			qs = append(qs, QueueStats{Interface: p.name, Queue: w.queue, Socket: p.sock.Stats()})
		}
	}
	return ws, qs
}

// XDPStats returns the XDP program's counters per interface (those of this process's
// programs: none yet for a port whose program is still loading after a takeover).
func (d *Dataplane) XDPStats() map[string]bpf.Counters {
	out := map[string]bpf.Counters{}
	d.xdpMu.Lock()
	defer d.xdpMu.Unlock()
	for i, xp := range d.xdp {
		if xp == nil {
			continue
		}
		if c, err := xp.Counters(); err == nil {
			out[d.ports[i].Name] = c
		}
	}
	return out
}

// Close stops the workers, detaches XDP (traffic then goes to the kernel) and closes the
// sockets.
func (d *Dataplane) Close() error {
	d.closeOnce.Do(func() {
		if d.cancel != nil {
			d.cancel()
		}
		d.wg.Wait()
		d.fib.wg.Wait() // no reload touches the XDP program once it is closed
		d.closeResources()
	})
	return nil
}

func (d *Dataplane) closeResources() {
	d.xdpMu.Lock()
	for _, xp := range d.xdp {
		if xp != nil {
			xp.Close()
		}
	}
	d.xdp = nil
	d.xdpMu.Unlock()
	d.deferred = nil
	for _, p := range d.ports {
		for _, s := range p.Sockets {
			s.Close()
		}
	}
	if d.cls != nil {
		d.cls.Close()
	}
}

func toBPFKeys(ks []SvcKey) []bpf.Key {
	out := make([]bpf.Key, len(ks))
	for i, k := range ks {
		out[i] = bpf.Key{Addr: netipFrom16(k.Addr), Port: k.Port, Proto: bpf.Proto(k.Proto)}
	}
	return out
}

func netipFrom16(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }

// PersistConns counts the live persistence templates per destination ID.
func (d *Dataplane) PersistConns() map[uint32]uint32 { return d.persist.count(d.now()) }

// Templates calls f with every live persistence template: the service and destination
// IDs, the client address masked by the service's -M, and the time left in nanoseconds.
// Shards are copied in small chunks under their locks; f runs with no lock held.
func (d *Dataplane) Templates(f func(svc, dest uint32, client [16]byte, expiresIn int64)) {
	d.persist.walk(d.now(), f)
}
