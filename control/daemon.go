package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/control/syncd"
	"xlvs/dataplane"
	"xlvs/version"
)

// Version is xlvs's version (xlvs/version: git describe at build time), reported by the
// info op and the xlvs_build_info metric.
var Version = version.String()

// Options configure a Daemon. Zero values take the defaults noted.
type Options struct {
	MaxServices int    // service IDs; default dataplane.DefaultMaxServices
	MaxDests    int    // destination IDs; default dataplane.DefaultMaxDests
	MaxLaddrs   int    // FULLNAT (service, local address) IDs; default dataplane.DefaultMaxLaddrs
	ConnTable   int    // the "size=" the listing header shows
	StatePath   string // where the rule set is saved after every change; "" = not saved
	// ExpireNodestConn is IPVS's expire_nodest_conn: when a real server is deleted, its
	// connections are expired at once. Off (the kernel's default), they stay in the table
	// and their packets are dropped until they time out, so a server deleted and added
	// back quickly keeps its connections.
	ExpireNodestConn bool
	Log              *slog.Logger
	// SyncPorts is the sync daemon's number of sync threads (the kernel's sync_ports,
	// 1..64, a power of two; 0 = 1). SyncPolicy and SyncPersistMode are what a master
	// hands the dataplane (sync_threshold, sync_refresh_period, sync_retries;
	// sync_persist_mode); nil = conntrack.DefaultSyncPolicy.
	SyncPorts       int
	SyncPolicy      *conntrack.SyncPolicy
	SyncPersistMode bool

	// syncDP stands in for the dataplane's sync side in tests.
	syncDP syncd.Dataplane
}

// Daemon holds the rules and serves the control API (it implements api.Handler).
type Daemon struct {
	dp          *dataplane.Dataplane
	log         *slog.Logger
	statePath   string // the state file (Options.StatePath); "" = none
	expireNodes bool

	mu        sync.Mutex
	r         *rules
	svcIDs    idAlloc
	destIDs   idAlloc
	laddrIDs  idAlloc
	laddrBase map[uint32]uint64 // ID reuse: port conflicts are reported minus these
	// draining holds FULLNAT local addresses deleted from every service whose connections
	// may still live: snapshots keep them for the XDP program until reapDraining finds
	// them unused.
	draining map[netip.Addr]bool
	// drainingReals holds NAT/FULLNAT real servers no service names any more whose
	// connections may still live: snapshots keep their replies coming to the dataplane
	// (dataplane.Snapshot.KeepReals) until reapDraining finds them unused.
	drainingReals map[dataplane.SvcKey]bool
	svcBase       map[uint32]dataplane.FlowStats // -Z and ID reuse: counters are reported minus these
	destBase      map[uint32]dataplane.FlowStats
	svcEst        map[uint32]*estimator // rate estimators by ID
	healthEvents  atomic.Uint64         // health-check transitions applied
	destEst       map[uint32]*estimator
	down          map[uint32]bool        // destinations failed by --health-check (weight 0, not saved)
	scheds        map[uint32]*builtSched // the published scheduler of each service, by ID
	rc            *RuleChecks
	connTable     int

	// sync is the connection-sync daemon; daemons are its running roles as they were
	// asked for, for the state file (under mu).
	sync    *syncd.Daemon
	daemons map[syncd.Role]api.SyncDaemon
}

// New returns a Daemon over dp with no rules.
func New(dp *dataplane.Dataplane, o Options) *Daemon {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxServices == 0 {
		o.MaxServices = dataplane.DefaultMaxServices
	}
	if o.MaxDests == 0 {
		o.MaxDests = dataplane.DefaultMaxDests
	}
	if o.MaxLaddrs == 0 {
		o.MaxLaddrs = dataplane.DefaultMaxLaddrs
	}
	d := &Daemon{
		dp:            dp,
		log:           o.Log,
		statePath:     o.StatePath,
		expireNodes:   o.ExpireNodestConn,
		r:             &rules{timeouts: timeoutsOf(dp.Conntrack().Timeouts())},
		svcIDs:        newIDAlloc(o.MaxServices),
		destIDs:       newIDAlloc(o.MaxDests),
		laddrIDs:      newIDAlloc(o.MaxLaddrs),
		laddrBase:     map[uint32]uint64{},
		draining:      map[netip.Addr]bool{},
		drainingReals: map[dataplane.SvcKey]bool{},
		svcBase:       map[uint32]dataplane.FlowStats{},
		destBase:      map[uint32]dataplane.FlowStats{},
		svcEst:        map[uint32]*estimator{},
		destEst:       map[uint32]*estimator{},
		down:          map[uint32]bool{},
		scheds:        map[uint32]*builtSched{},
		connTable:     o.ConnTable,
		daemons:       map[syncd.Role]api.SyncDaemon{},
	}
	var sdp syncd.Dataplane = dp
	if o.syncDP != nil {
		sdp = o.syncDP
	}
	d.sync = syncd.New(sdp, syncd.Options{
		Ports: o.SyncPorts, Policy: o.SyncPolicy, PersistMode: o.SyncPersistMode,
		ApplyReasons: syncApplyReasons, Log: o.Log,
	})
	return d
}

func timeoutsOf(t conntrack.Timeouts) api.Timeouts {
	return api.Timeouts{TCP: uint32(t.Established), TCPFin: uint32(t.FinWait), UDP: uint32(t.UDP)}
}

// idAlloc hands out IDs below max, round robin, skipping IDs in use.
type idAlloc struct {
	used []bool
	next uint32
}

func newIDAlloc(max int) idAlloc { return idAlloc{used: make([]bool, max)} }

// alloc returns a free ID for which busy is false, or false when none is left.
func (a *idAlloc) alloc(busy func(uint32) bool) (uint32, bool) {
	n := uint32(len(a.used))
	for i := uint32(0); i < n; i++ {
		id := (a.next + i) % n
		if !a.used[id] && (busy == nil || !busy(id)) {
			a.used[id] = true
			a.next = id + 1
			return id, true
		}
	}
	return 0, false
}

func (a *idAlloc) free(id uint32) {
	if id < uint32(len(a.used)) {
		a.used[id] = false
	}
}

// Handle implements api.Handler.
func (d *Daemon) Handle(ctx context.Context, req *api.Request) *api.Response {
	resp := &api.Response{Version: api.Version}
	switch req.Op {
	case api.OpInfo:
		resp.Info = d.info()
	case api.OpList:
		svcs, err := d.list(req.Service)
		resp.Services, resp.Error = svcs, err
		resp.Info = d.info()
	case api.OpGetTimeouts:
		d.mu.Lock()
		t := d.r.timeouts
		d.mu.Unlock()
		resp.Timeouts = &t
	case api.OpListConns:
		resp.Conns = d.conns()
	case api.OpZero:
		resp.Error = d.zero(req.Service)
	case api.OpDataplaneStats:
		resp.Dataplane, resp.XDPStats = d.dataplaneStats()
		resp.Sync = d.syncStats()
	case api.OpGetLocalAddrs:
		resp.LocalAddrs, resp.Error = d.localAddrs(req.Service)
	case api.OpListMarks:
		resp.Marks = d.listMarks()
	case api.OpStartDaemon:
		resp.Error = d.startDaemon(req.Daemon)
	case api.OpStopDaemon:
		resp.Error = d.stopDaemon(req.Daemon)
	case api.OpGetDaemon:
		resp.Daemons = d.runningDaemons()
	default:
		resp.Error = d.change(req)
		if resp.Error == nil && d.rc != nil {
			d.rc.sync()
		}
	}
	return resp
}

// change applies a mutating request (or a restore batch) atomically: every operation on a
// copy of the rules, then one snapshot published; only then the side effects (timeouts,
// draining local addresses, counter bases, ID releases, expiring connections, the state
// file). A failing operation or publish leaves everything as it was.
func (d *Daemon) change(req *api.Request) *api.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := d.r.clone()
	ch := &changeSet{hooks: schedHooks{}}
	marks := [...]uint32{d.svcIDs.next, d.destIDs.next, d.laddrIDs.next}
	fail := func(e *api.Error) *api.Error {
		for _, undo := range ch.undo {
			undo()
		}
		d.svcIDs.next, d.destIDs.next, d.laddrIDs.next = marks[0], marks[1], marks[2]
		return e
	}
	reqs := []api.Request{*req}
	if req.Op == api.OpRestore {
		reqs = req.Batch
	}
	for i := range reqs {
		if err := d.apply(next, &reqs[i], ch); err != nil {
			if req.Op == api.OpRestore {
				err.Line = reqs[i].Line
				err.Message = fmt.Sprintf("line %d: %s", reqs[i].Line, err.Message)
			}
			return fail(err)
		}
	}
	draining := maps.Clone(d.draining)
	for _, a := range ch.retired {
		draining[a] = true
	}
	drainingReals := maps.Clone(d.drainingReals)
	if cur := d.dp.Snapshot(); cur != nil {
		// Every real server whose replies come to the dataplane now may lose its last
		// service here: snapshotOf keeps those no longer named.
		for _, k := range cur.RealKeys() {
			drainingReals[k] = true
		}
	}
	if req.Op == api.OpRestore && len(reqs) > 0 && reqs[0].Op == api.OpClear {
		// A whole new rule set (restart, --config): nothing of the old one drains.
		clear(draining)
		clear(drainingReals)
	}
	snap, built, err := d.snapshotOf(next, draining, drainingReals, ch.hooks)
	if err == nil {
		err = d.dp.Publish(snap)
	}
	if err != nil {
		return fail(apiErr(api.ErrCodeInternal, "publish configuration: %v", err))
	}
	// Committed: the side effects follow.
	d.drainingReals = drainingReals
	d.commit(req.Op, next, built, draining, ch)
	return nil
}

// commit makes next (published, with its schedulers built and the local addresses
// draining) the daemon's rules and does the side effects ch collected: the connection
// table's timeouts, expiring removed servers' connections, ID releases and counter bases,
// the state file, next-hop resolution. The caller holds d.mu.
func (d *Daemon) commit(op string, next *rules, built map[uint32]*builtSched, draining map[netip.Addr]bool, ch *changeSet) {
	prev := d.r
	d.r, d.scheds, d.draining = next, built, draining
	if next.timeouts != prev.timeouts {
		ct := d.dp.Conntrack()
		ts := ct.Timeouts()
		ts.Established, ts.FinWait, ts.UDP = int(next.timeouts.TCP), int(next.timeouts.TCPFin), int(next.timeouts.UDP)
		ct.SetTimeouts(ts)
	}
	if d.expireNodes {
		now := d.dp.Now()
		for _, id := range ch.gone {
			if n := d.dp.Conntrack().RemoveDest(id, now); n > 0 {
				d.log.Info("expired connections of a removed real server", "connections", n)
			}
		}
	}
	for _, f := range ch.commit {
		f()
	}
	d.log.Info("configuration changed", "op", op, "services", len(next.services))
	d.saveLocked()
	// Resolve every real server's next hop now, not on the first packet.
	for _, s := range next.services {
		for _, ds := range s.dests {
			d.dp.Resolve(ds.cfg.Addr.As16())
		}
	}
}

// changeSet collects what a change does besides the rules. Nothing outside the copy of
// the rules changes before the commit except ID allocations, which undo reverts.
type changeSet struct {
	undo    []func()     // ID allocations, reverted if the change fails
	commit  []func()     // done once the change is published: ID releases, counter bases
	gone    []uint32     // destinations removed by the change
	retired []netip.Addr // FULLNAT local addresses deleted from a service
	hooks   schedHooks   // scheduler hooks called
}

// snapshotOf builds the dataplane snapshot of r, with the draining local addresses that r
// no longer names and the scheduler hooks of the change (nil: none), and returns the
// schedulers for d.scheds once it is published. The caller holds d.mu.
func (d *Daemon) snapshotOf(r *rules, draining map[netip.Addr]bool, drainingReals map[dataplane.SvcKey]bool, hooks schedHooks) (*dataplane.Snapshot, map[uint32]*builtSched, error) {
	snap, built, err := r.snapshot(d.scheds, hooks, d.dp.Conntrack(), d.down)
	if err != nil {
		return nil, nil, err
	}
	// Real servers no service names any more keep their replies coming while their
	// connections may live (drainingReals); those named again drain no more.
	for _, k := range snap.RealKeys() {
		delete(drainingReals, k)
	}
	keep := make([]dataplane.SvcKey, 0, len(drainingReals))
	for k := range drainingReals {
		keep = append(keep, k)
	}
	snap.KeepReals(keep)
	inUse := r.laddrAddrs()
	for a := range draining {
		if inUse[a] {
			delete(draining, a) // configured again: not draining any more
			continue
		}
		snap.Draining = append(snap.Draining, a.As16())
	}
	return snap, built, nil
}

// apply applies one operation to r, recording in ch what it does besides: it picks the
// operation's function, each of which changes only r and ch (and allocates IDs, which
// ch.undo reverts); change commits.
func (d *Daemon) apply(r *rules, req *api.Request, ch *changeSet) *api.Error {
	switch req.Op {
	case api.OpAddService:
		return d.applyAddService(r, req, ch)
	case api.OpEditService:
		return d.applyEditService(r, req, ch)
	case api.OpDelService:
		return d.applyDelService(r, req, ch)
	case api.OpClear:
		d.applyClear(r, ch)
		return nil
	case api.OpAddMark, api.OpDelMark:
		return applyMark(r, req)
	case api.OpAddDest, api.OpEditDest, api.OpDelDest:
		return d.applyDest(r, req, ch)
	case api.OpAddLocalAddr:
		return d.applyAddLaddr(r, req, ch)
	case api.OpDelLocalAddr:
		return d.applyDelLaddr(r, req, ch)
	case api.OpSetTimeouts:
		return applySetTimeouts(r, req)
	case api.OpRestore:
		return apiErr(api.ErrCodeInvalid, "restore inside a restore")
	default:
		return apiErr(api.ErrCodeInvalid, "unknown operation %q", req.Op)
	}
}

// requestService is the request's service, its address unmapped.
func requestService(req *api.Request) (*api.Service, *api.Error) {
	if req.Service == nil {
		return nil, apiErr(api.ErrCodeInvalid, "%s: no service given (-t, -u or -f)", req.Op)
	}
	s := *req.Service
	s.Addr = s.Addr.Unmap()
	return &s, nil
}

// definedService is the request's service as r defines it now.
func definedService(r *rules, req *api.Request) (*ruleSvc, *api.Error) {
	s, e := requestService(req)
	if e != nil {
		return nil, e
	}
	_, cur := r.find(s.ServiceKey)
	if cur == nil {
		return nil, apiErr(api.ErrCodeNoService, "service %s is not defined: add it with -A first", keyString(s.ServiceKey))
	}
	return cur, nil
}

// applyAddService is -A: a new service with a fresh ID, its scheduler initialised.
func (d *Daemon) applyAddService(r *rules, req *api.Request, ch *changeSet) *api.Error {
	s, e := requestService(req)
	if e != nil {
		return e
	}
	if e := checkService(s); e != nil {
		return e
	}
	if _, cur := r.find(s.ServiceKey); cur != nil {
		return apiErr(api.ErrCodeServiceExists, "service %s already exists", keyString(s.ServiceKey))
	}
	id, ok := d.svcIDs.alloc(nil)
	if !ok {
		return apiErr(api.ErrCodeInvalid, "too many services: at most %d", len(d.svcIDs.used))
	}
	ch.undo = append(ch.undo, func() { d.svcIDs.free(id) })
	base := d.dp.ServiceStats(id)
	ch.commit = append(ch.commit, func() { d.svcBase[id], d.svcEst[id] = base, newEstimator(base) })
	cfg := *s
	cfg.Dests, cfg.Stats = nil, api.Stats{}
	ns := &ruleSvc{cfg: cfg, id: id}
	r.services = append(r.services, ns)
	ch.hooks[id] = &schedSteps{fresh: true}
	ch.hooks.call(ns, d.down, false) // init_service
	return nil
}

// applyEditService is -E: a defined service's settings replaced, its real servers kept.
func (d *Daemon) applyEditService(r *rules, req *api.Request, ch *changeSet) *api.Error {
	s, e := requestService(req)
	if e != nil {
		return e
	}
	if e := checkService(s); e != nil {
		return e
	}
	_, cur := r.find(s.ServiceKey)
	if cur == nil {
		return apiErr(api.ErrCodeNoService, "service %s is not defined: add it with -A first", keyString(s.ServiceKey))
	}
	cfg := *s
	cfg.Dests, cfg.Stats = nil, api.Stats{}
	if cfg.OnePacket {
		for _, ds := range cur.dests {
			if ds.cfg.Method == api.MethodFullNAT {
				return apiErr(api.ErrCodeInvalid, "service %s: one-packet scheduling (-o) does not combine with its full NAT real server %v: its replies need the connection entry", keyString(s.ServiceKey), ds.cfg.Addr)
			}
		}
	}
	if cfg.Scheduler != cur.cfg.Scheduler || schedFlags(&cfg) != schedFlags(&cur.cfg) {
		// ip_vs_edit_service binds the new scheduler; sh and mh read the flags at each
		// decision, which a rebuild over the same destinations gives. Anything else
		// (persistence, the flags of a scheduler without any) leaves it alone.
		ch.hooks.call(cur, d.down, false)
	}
	cur.cfg = cfg
	return nil
}

// applyDelService is -D: the service gone, its IDs released at commit.
func (d *Daemon) applyDelService(r *rules, req *api.Request, ch *changeSet) *api.Error {
	s, e := requestService(req)
	if e != nil {
		return e
	}
	i, cur := r.find(s.ServiceKey)
	if cur == nil {
		return apiErr(api.ErrCodeNoService, "service %s is not defined", keyString(s.ServiceKey))
	}
	r.services = append(r.services[:i], r.services[i+1:]...)
	d.releaseService(cur, ch)
	return nil
}

// applyClear is -C: every service and firewall-mark rule gone.
func (d *Daemon) applyClear(r *rules, ch *changeSet) {
	for _, s := range r.services {
		d.releaseService(s, ch)
	}
	r.services = nil
	r.marks = nil
}

// applyDest is -a, -e and -d: a real server of a defined service added, edited or
// deleted, the service's scheduler told (add_dest, upd_dest or del_dest).
func (d *Daemon) applyDest(r *rules, req *api.Request, ch *changeSet) *api.Error {
	cur, e := definedService(r, req)
	if e != nil {
		return e
	}
	if req.Dest == nil {
		return apiErr(api.ErrCodeInvalid, "%s: no real server given (-r)", req.Op)
	}
	dst := *req.Dest
	if req.Op != api.OpDelDest {
		if e := checkDest(cur, &dst); e != nil {
			return e
		}
	} else if dst.Port == 0 {
		dst.Port = cur.cfg.Port
	}
	i, old := cur.findDest(dst.Addr, dst.Port)
	ch.hooks.call(cur, d.down, req.Op == api.OpAddDest) // add_dest, upd_dest or del_dest
	switch req.Op {
	case api.OpAddDest:
		if old != nil {
			return apiErr(api.ErrCodeDestExists, "real server %s of service %s already exists", netip.AddrPortFrom(dst.Addr, dst.Port), keyString(cur.cfg.ServiceKey))
		}
		return d.addDest(cur, dst, ch)
	case api.OpEditDest:
		if old == nil {
			return apiErr(api.ErrCodeNoDest, "no real server %s in service %s", netip.AddrPortFrom(dst.Addr, dst.Port), keyString(cur.cfg.ServiceKey))
		}
		dst.ActiveConns, dst.InactConns, dst.PersistConns, dst.Stats = 0, 0, 0, api.Stats{}
		old.cfg = dst
	default: // api.OpDelDest
		if old == nil {
			return apiErr(api.ErrCodeNoDest, "no real server %s in service %s", netip.AddrPortFrom(dst.Addr, dst.Port), keyString(cur.cfg.ServiceKey))
		}
		cur.dests = append(cur.dests[:i], cur.dests[i+1:]...)
		id := old.id
		ch.commit = append(ch.commit, func() { d.destIDs.free(id) })
		ch.gone = append(ch.gone, id)
	}
	return nil
}

// addDest puts the checked real server dst at the head of cur's list (as the kernel
// does) with an ID no live connection still names.
func (d *Daemon) addDest(cur *ruleSvc, dst api.Dest, ch *changeSet) *api.Error {
	ct := d.dp.Conntrack()
	id, ok := d.destIDs.alloc(func(id uint32) bool { a, in := ct.Conns(id); return a+in > 0 })
	if !ok {
		return apiErr(api.ErrCodeInvalid, "too many real servers: at most %d", len(d.destIDs.used))
	}
	ch.undo = append(ch.undo, func() { d.destIDs.free(id) })
	base := d.dp.DestStats(id)
	ch.commit = append(ch.commit, func() { d.destBase[id], d.destEst[id] = base, newEstimator(base) })
	dst.ActiveConns, dst.InactConns, dst.PersistConns, dst.Stats = 0, 0, 0, api.Stats{}
	cur.dests = append([]*ruleDest{{cfg: dst, id: id}}, cur.dests...)
	return nil
}

// requestLaddr is the request's FULLNAT local address of a defined service, checked
// and unmapped, with the service and the address's index there (-1, nil: none yet).
func requestLaddr(r *rules, req *api.Request) (cur *ruleSvc, addr netip.Addr, i int, old *ruleLaddr, e *api.Error) {
	if cur, e = definedService(r, req); e != nil {
		return nil, addr, 0, nil, e
	}
	if req.LocalAddr == nil {
		return nil, addr, 0, nil, apiErr(api.ErrCodeInvalid, "%s: no local address given (-z)", req.Op)
	}
	addr = req.LocalAddr.Addr
	if e := checkLaddr(cur, addr); e != nil {
		return nil, addr, 0, nil, e
	}
	addr = addr.Unmap()
	i, old = cur.findLaddr(addr)
	return cur, addr, i, old, nil
}

// applyAddLaddr is -P: a FULLNAT local address added to a defined service.
func (d *Daemon) applyAddLaddr(r *rules, req *api.Request, ch *changeSet) *api.Error {
	cur, addr, _, old, e := requestLaddr(r, req)
	if e != nil {
		return e
	}
	if old != nil {
		return apiErr(api.ErrCodeLaddrExists, "local address %v of service %s already exists", addr, keyString(cur.cfg.ServiceKey))
	}
	if all := r.laddrAddrs(); !all[addr] && !d.draining[addr] && len(all)+len(d.draining) >= dataplane.MaxLaddrAddrs {
		return apiErr(api.ErrCodeInvalid, "local address %v: the director takes at most %d distinct local addresses (deleted ones count while their connections last)", addr, dataplane.MaxLaddrAddrs)
	}
	id, ok := d.laddrIDs.alloc(nil)
	if !ok {
		return apiErr(api.ErrCodeInvalid, "too many local addresses: at most %d over all services", len(d.laddrIDs.used))
	}
	ch.undo = append(ch.undo, func() { d.laddrIDs.free(id) })
	base := d.dp.LaddrConflicts(id)
	ch.commit = append(ch.commit, func() { d.laddrBase[id] = base })
	cur.laddrs = append(cur.laddrs, &ruleLaddr{cfg: api.LocalAddr{Addr: addr, Ifname: req.LocalAddr.Ifname}, id: id})
	return nil
}

// applyDelLaddr is -Q: a FULLNAT local address deleted from a service; its connections
// continue while it drains.
func (d *Daemon) applyDelLaddr(r *rules, req *api.Request, ch *changeSet) *api.Error {
	cur, addr, i, old, e := requestLaddr(r, req)
	if e != nil {
		return e
	}
	if old == nil {
		return apiErr(api.ErrCodeNoLocalAddr, "no local address %v in service %s", addr, keyString(cur.cfg.ServiceKey))
	}
	cur.laddrs = append(cur.laddrs[:i], cur.laddrs[i+1:]...)
	id := old.id
	ch.commit = append(ch.commit, func() { d.laddrIDs.free(id) })
	// Connections using it continue: the XDP program keeps handing their replies to
	// the dataplane while it drains.
	ch.retired = append(ch.retired, addr)
	return nil
}

// applySetTimeouts is --set: the non-zero timeouts replace r's; the connection table
// takes them when the change commits.
func applySetTimeouts(r *rules, req *api.Request) *api.Error {
	if req.Timeouts == nil {
		return apiErr(api.ErrCodeInvalid, "set-timeouts: no timeouts given")
	}
	t := *req.Timeouts
	for _, v := range []uint32{t.TCP, t.TCPFin, t.UDP} {
		if v > conntrack.MaxTimeout {
			return apiErr(api.ErrCodeInvalid, "timeout %d s: at most %d s", v, conntrack.MaxTimeout)
		}
	}
	if t.TCP != 0 {
		r.timeouts.TCP = t.TCP
	}
	if t.TCPFin != 0 {
		r.timeouts.TCPFin = t.TCPFin
	}
	if t.UDP != 0 {
		r.timeouts.UDP = t.UDP
	}
	return nil
}

func (d *Daemon) releaseService(s *ruleSvc, ch *changeSet) {
	id := s.id
	ch.commit = append(ch.commit, func() { d.svcIDs.free(id) })
	for _, l := range s.laddrs {
		lid := l.id
		ch.commit = append(ch.commit, func() { d.laddrIDs.free(lid) })
	}
	for _, ds := range s.dests {
		did := ds.id
		ch.commit = append(ch.commit, func() { d.destIDs.free(did) })
		ch.gone = append(ch.gone, did)
	}
}

func (d *Daemon) info() *api.Info {
	return &api.Info{Version: Version, IPVSLike: "1.2.1", ConnTable: d.connTable, Conns: d.dp.Conntrack().Len()}
}

func sub(a, b dataplane.FlowStats) api.Stats {
	return api.Stats{
		Conns: a.Conns - b.Conns, InPkts: a.InPkts - b.InPkts, OutPkts: a.OutPkts - b.OutPkts,
		InBytes: a.InBytes - b.InBytes, OutBytes: a.OutBytes - b.OutBytes,
	}
}

// list returns the services (one if only is set) with their destinations, counts and
// statistics, in the store's order.
func (d *Daemon) list(only *api.Service) ([]api.Service, *api.Error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ct := d.dp.Conntrack()
	persist := d.dp.PersistConns()
	var out []api.Service
	for _, s := range d.r.services {
		if only != nil && !sameKey(s.cfg.ServiceKey, only.ServiceKey) {
			continue
		}
		svc := s.cfg
		svc.SchedFlags = append([]string(nil), s.cfg.SchedFlags...)
		svc.Stats = sub(d.dp.ServiceStats(s.id), d.svcBase[s.id])
		withRates(&svc.Stats, d.svcEst[s.id])
		for _, ds := range s.dests {
			dst := ds.cfg
			a, in := ct.Conns(ds.id)
			dst.ActiveConns, dst.InactConns = uint32(max(a, 0)), uint32(max(in, 0))
			dst.PersistConns = persist[ds.id]
			if d.down[ds.id] {
				dst.Weight = 0 // failing its health check: listed as keepalived's inhibit_on_failure shows it
			}
			dst.Stats = sub(d.dp.DestStats(ds.id), d.destBase[ds.id])
			withRates(&dst.Stats, d.destEst[ds.id])
			svc.Dests = append(svc.Dests, dst)
		}
		out = append(out, svc)
	}
	if only != nil && out == nil {
		return nil, apiErr(api.ErrCodeNoService, "service %s is not defined", keyString(only.ServiceKey))
	}
	return out, nil
}

func withRates(s *api.Stats, e *estimator) {
	if e != nil {
		s.CPS, s.InPPS, s.OutPPS, s.InBPS, s.OutBPS = e.rates()
	}
}

// zero resets the statistics of every service (or one) and its destinations.
func (d *Daemon) zero(only *api.Service) *api.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	found := false
	for _, s := range d.r.services {
		if only != nil && !sameKey(s.cfg.ServiceKey, only.ServiceKey) {
			continue
		}
		found = true
		d.svcBase[s.id] = d.dp.ServiceStats(s.id)
		d.est(d.svcEst, s.id, d.svcBase[s.id]).reset(d.svcBase[s.id])
		for _, ds := range s.dests {
			d.destBase[ds.id] = d.dp.DestStats(ds.id)
			d.est(d.destEst, ds.id, d.destBase[ds.id]).reset(d.destBase[ds.id])
		}
	}
	if only != nil && !found {
		return apiErr(api.ErrCodeNoService, "service %s is not defined", keyString(only.ServiceKey))
	}
	return nil
}

// conns lists the connection table, one shard at a time (the dataplane keeps running).
func (d *Daemon) conns() []api.Conn {
	var out []api.Conn
	ct := d.dp.Conntrack()
	ct.Walk(d.dp.Now(), func(e *conntrack.Entry, expiresIn int64) bool {
		proto := "TCP"
		if e.Orig.Proto == 17 {
			proto = "UDP"
		}
		if e.Orig.Proto == conntrack.ProtoSCTP {
			proto = "SCTP"
		}
		dest := netip.AddrPortFrom(netip.AddrFrom16(e.Reply.Src).Unmap(), e.Reply.SrcPort)
		var local netip.AddrPort
		if e.Method == conntrack.MethodFullNAT {
			local = netip.AddrPortFrom(netip.AddrFrom16(e.Reply.Dst).Unmap(), e.Reply.DstPort)
		}
		out = append(out, api.Conn{
			Protocol:  proto,
			State:     e.State.String(),
			ExpiresMs: expiresIn / 1e6,
			Client:    netip.AddrPortFrom(netip.AddrFrom16(e.Orig.Src).Unmap(), e.Orig.SrcPort),
			Virtual:   netip.AddrPortFrom(netip.AddrFrom16(e.Orig.Dst).Unmap(), e.Orig.DstPort),
			Dest:      dest,
			Local:     local,
		})
		return len(out) < 1<<20
	})
	// Persistence templates, as IPVS lists them: client port 0, the service's port, the
	// real server's port, state NONE.
	type vkey struct {
		proto   string
		virtual netip.AddrPort
		fwmark  uint32
	}
	d.mu.Lock()
	svcs := map[uint32]vkey{}
	dests := map[uint32]netip.AddrPort{}
	for _, s := range d.r.services {
		if !s.cfg.Persistent {
			continue
		}
		if s.cfg.Protocol == api.ProtoFWMark {
			// IPVS's fwmark template: protocol IP, the mark in place of the address.
			svcs[s.id] = vkey{proto: "IP", fwmark: s.cfg.FWMark}
		} else {
			svcs[s.id] = vkey{proto: strings.ToUpper(s.cfg.Protocol), virtual: netip.AddrPortFrom(s.cfg.Addr, s.cfg.Port)}
		}
		for _, ds := range s.dests {
			dests[ds.id] = netip.AddrPortFrom(ds.cfg.Addr, ds.cfg.Port)
		}
	}
	d.mu.Unlock()
	d.dp.Templates(func(svc, dest uint32, client [16]byte, expiresIn int64) {
		v, ok := svcs[svc]
		rs, ok2 := dests[dest]
		if !ok || !ok2 || len(out) >= 1<<20 {
			return // a template of a service or server deleted since
		}
		out = append(out, api.Conn{
			Protocol:  v.proto,
			State:     "NONE",
			ExpiresMs: expiresIn / 1e6,
			Client:    netip.AddrPortFrom(netip.AddrFrom16(client).Unmap(), 0),
			Virtual:   v.virtual,
			Dest:      rs,
			Template:  true,
			FWMark:    v.fwmark,
		})
	})
	return out
}

func (d *Daemon) dataplaneStats() ([]api.QueueStats, []api.QueueStats) {
	ws, qs := d.dp.Stats()
	var out []api.QueueStats
	for _, q := range qs {
		out = append(out, api.QueueStats{Interface: q.Interface, Queue: q.Queue, Counters: q.Socket.Map()})
	}
	for _, w := range ws {
		c := map[string]uint64{"rx": w.RxPackets, "tx": w.TxPackets, "forwarded": w.Forwarded, "panics": w.Panics, "neigh_queued": w.NeighQueued, "encapsulated": w.Encapsulated, "icmp_sent": w.ICMPSent, "icmp_ratelimited": w.ICMPRateLimited,
			"icmp_forwarded": w.ICMPForwarded, "fragments_noted": w.FragmentsNoted, "fragments": w.Fragments, "ops_replies": w.OPSReplies, "burst": w.Burst,
			"toa_added": w.TOAAdded, "toa_skipped": w.TOASkipped}
		for k, v := range w.Drops {
			c["drop_"+k] = v
		}
		out = append(out, api.QueueStats{Interface: "worker", Queue: w.Queue, Counters: c})
	}
	if f, ok := d.dp.FastPathStats(); ok {
		out = append(out, api.QueueStats{Interface: "fastpath", Queue: -1, Counters: map[string]uint64{
			"fastpath_entries": uint64(f.Entries), "fastpath_installed": f.Installed, "fastpath_removed": f.Removed,
			"fastpath_queue_full": f.QueueFull, "fastpath_map_full": f.MapFull, "fastpath_failed": f.Failed,
			"fastpath_packets": f.Packets, "fastpath_bytes": f.Bytes, "fastpath_sweeps": f.Sweeps,
		}})
	}
	var xdp []api.QueueStats
	for name, c := range d.dp.XDPStats() {
		xdp = append(xdp, api.QueueStats{Interface: name, Queue: -1, Counters: map[string]uint64{
			"xdp_passed": c.Passed, "xdp_redirected": c.Redirected, "xdp_redirect_failed": c.RedirectFailed,
			"xdp_malformed": c.Malformed, "xdp_fragment": c.Fragment, "xdp_non_ip": c.NonIP,
			"xdp_local_reply": c.LocalReply, "xdp_held": c.Held, "xdp_fastpath_tx": c.FastPathTx,
			"xdp_other_host": c.OtherHost,
		}})
	}
	sort.Slice(xdp, func(i, j int) bool { return xdp[i].Interface < xdp[j].Interface })
	return out, xdp
}

// localAddrs lists the FULLNAT local addresses of every service (or one), with the
// connections using each (one walk of the connection table, outside the lock) and its
// port conflicts.
func (d *Daemon) localAddrs(only *api.Service) ([]api.LocalAddr, *api.Error) {
	type use struct {
		svc  uint32
		addr [16]byte
	}
	d.mu.Lock()
	var out []api.LocalAddr
	index := map[use]int{}
	found := false
	for _, s := range d.r.services {
		if only != nil && !sameKey(s.cfg.ServiceKey, only.ServiceKey) {
			continue
		}
		found = true
		for _, l := range s.laddrs {
			la := l.cfg
			la.Service = s.cfg.ServiceKey
			la.PortConflicts = d.dp.LaddrConflicts(l.id) - d.laddrBase[l.id]
			index[use{s.id, la.Addr.Unmap().As16()}] = len(out)
			out = append(out, la)
		}
	}
	d.mu.Unlock()
	if only != nil && !found {
		return nil, apiErr(api.ErrCodeNoService, "service %s is not defined", keyString(only.ServiceKey))
	}
	if len(out) == 0 {
		return out, nil
	}
	d.dp.Conntrack().Walk(d.dp.Now(), func(e *conntrack.Entry, _ int64) bool {
		if e.Method == conntrack.MethodFullNAT {
			if i, ok := index[use{e.Service, e.Reply.Dst}]; ok {
				out[i].Conns++
			}
		}
		return true
	})
	return out, nil
}

// drainEvery is how many estimator periods pass between looks for draining local
// addresses that no connection uses any more.
const drainEvery = 5

// reapDraining forgets the draining local addresses no connection uses (one walk of the
// connection table, outside the lock) and publishes a snapshot without them.
func (d *Daemon) reapDraining() {
	d.mu.Lock()
	if len(d.draining) == 0 && len(d.drainingReals) == 0 {
		d.mu.Unlock()
		return
	}
	look := map[[16]byte]bool{}
	for a := range d.draining {
		look[a.As16()] = true
	}
	lookReals := maps.Clone(d.drainingReals)
	d.mu.Unlock()
	used := map[[16]byte]bool{}
	usedReals := map[dataplane.SvcKey]bool{}
	d.dp.Conntrack().Walk(d.dp.Now(), func(e *conntrack.Entry, _ int64) bool {
		if e.Method == conntrack.MethodFullNAT && look[e.Reply.Dst] {
			used[e.Reply.Dst] = true
		}
		if e.Method == conntrack.MethodNAT || e.Method == conntrack.MethodFullNAT {
			for _, port := range []uint16{e.Reply.SrcPort, 0} {
				if k := (dataplane.SvcKey{Addr: e.Reply.Src, Port: port, Proto: e.Reply.Proto}); lookReals[k] {
					usedReals[k] = true
				}
			}
		}
		return true
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	next := maps.Clone(d.draining)
	for a := range next {
		if look[a.As16()] && !used[a.As16()] {
			delete(next, a)
		}
	}
	nextReals := maps.Clone(d.drainingReals)
	for k := range nextReals {
		if lookReals[k] && !usedReals[k] {
			delete(nextReals, k)
		}
	}
	if len(next) == len(d.draining) && len(nextReals) == len(d.drainingReals) {
		return
	}
	snap, built, err := d.snapshotOf(d.r, next, nextReals, nil)
	if err == nil {
		err = d.dp.Publish(snap)
	}
	if err != nil {
		d.log.Error("stop redirecting replies of unused local addresses and real servers", "err", err)
		return
	}
	d.draining, d.drainingReals, d.scheds = next, nextReals, built
	d.log.Info("local addresses and real servers drained", "still_draining", len(next), "real_servers_draining", len(nextReals))
}
