package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"xlvs/control/api"
	"xlvs/control/health"
	"xlvs/control/keepalived"
	"xlvs/control/vrrpfifo"
)

// Keepalived runs a keepalived.conf's LVS part: its virtual servers become rules, and
// the health checks decide which real servers are in them, with which weight, as
// keepalived's checker does. Reload applies only the difference of a changed file.
type Keepalived struct {
	d    *Daemon
	path string
	opts keepalived.Options
	log  *slog.Logger
	mon  *health.Monitor

	mu  sync.Mutex // serialises reloads; guards cfg, vs, members, starting and startErrs
	cfg *keepalived.Config
	vs  map[health.ServiceKey]keepalived.VirtualServer
	// members are the services a shared health entry (a virtual_server group's) stands
	// for; a key not in it stands for itself.
	members map[health.ServiceKey][]health.ServiceKey
	// starting: the monitor's first updates are being applied; the destinations the
	// daemon refuses then are collected in startErrs and stop the start.
	starting  bool
	startErrs []error
	// sync is the lvs_sync_daemon whose roles run (nil: none), for Reload.
	sync *keepalived.SyncDaemon
	// vrrp follows sync's VRRP instance through keepalived's notify FIFO (nil: not
	// followed); vrrpState is the instance's last state seen (guarded by vrrpMu).
	vrrp      *vrrpfifo.Watcher
	vrrpMu    sync.Mutex
	vrrpState string
}

// kaBatch is a restore batch whose requests remember the configuration line each comes
// from, so that a request the daemon refuses is reported as "file:line: what: why".
type kaBatch struct {
	req  api.Request
	pos  []keepalived.Pos
	what []string
}

func newKABatch() *kaBatch { return &kaBatch{req: api.Request{Op: api.OpRestore}} }

func (b *kaBatch) add(r api.Request, pos keepalived.Pos, what string) {
	b.pos = append(b.pos, pos)
	b.what = append(b.what, what)
	r.Line = len(b.pos)
	b.req.Batch = append(b.req.Batch, r)
}

// apply applies the batch atomically; an error names the position of the refused request.
func (b *kaBatch) apply(d *Daemon) error {
	if len(b.req.Batch) == 0 {
		return nil
	}
	e := d.change(&b.req)
	if e == nil {
		return nil
	}
	msg := strings.TrimPrefix(e.Message, fmt.Sprintf("line %d: ", e.Line))
	if i := e.Line - 1; i >= 0 && i < len(b.pos) {
		return fmt.Errorf("%s: %s: %s", b.pos[i], b.what[i], msg)
	}
	return errors.New(msg)
}

func kaVSName(vs keepalived.VirtualServer) string {
	if vs.Group != "" {
		return fmt.Sprintf("virtual_server group %s member %s (listed at %s)", vs.Group, vs.ServiceKey, vs.GroupEntry)
	}
	return "virtual_server " + vs.ServiceKey.String()
}

func kaServiceKey(k keepalived.ServiceKey) api.ServiceKey {
	if k.FWMark != 0 {
		fam := 4
		if k.Addr.Is6() {
			fam = 6
		}
		return api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: k.FWMark, Family: fam}
	}
	return api.ServiceKey{Protocol: strings.ToLower(k.Protocol), Addr: k.Addr.Unmap(), Port: k.Port}
}

func kaHealthKey(k keepalived.ServiceKey) health.ServiceKey {
	return health.ServiceKey{Protocol: strings.ToLower(k.Protocol), Addr: k.Addr, Port: k.Port, FWMark: k.FWMark}
}

// kaService is the rule of a virtual_server block.
func kaService(vs keepalived.VirtualServer) *api.Service {
	s := &api.Service{
		ServiceKey: kaServiceKey(vs.ServiceKey),
		Scheduler:  vs.Scheduler,
		SchedFlags: append([]string(nil), vs.SchedFlags...),
		OnePacket:  vs.OnePacket,
		PE:         vs.PersistenceEngine,
	}
	if vs.PersistenceTimeout > 0 {
		s.Persistent, s.Timeout, s.Netmask = true, vs.PersistenceTimeout, vs.PersistenceGranularity
	}
	return s
}

// kaMethod sets d's forwarding method, and its tunnel options for TUN, from m.
func kaMethod(d *api.Dest, m keepalived.Method) {
	switch m.Kind {
	case keepalived.MethodDR:
		d.Method = api.MethodRoute
	case keepalived.MethodTUN:
		d.Method, d.TunType, d.TunPort, d.TunFlags = api.MethodTunnel, m.TunType, m.TunPort, m.TunFlags
	case keepalived.MethodFNAT:
		d.Method = api.MethodFullNAT
	default:
		d.Method = api.MethodMasq
	}
}

// kaLaddrReq is the request that adds (or deletes) FULLNAT local address a of service key.
func kaLaddrReq(op string, key api.ServiceKey, a netip.Addr) api.Request {
	return api.Request{Op: op, Service: &api.Service{ServiceKey: key}, LocalAddr: &api.LocalAddr{Addr: a}}
}

// laddrsOf returns the FULLNAT local addresses the daemon has for service key; none when
// the service is not defined.
func (d *Daemon) laddrsOf(key api.ServiceKey) map[netip.Addr]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[netip.Addr]bool{}
	if _, s := d.r.find(key); s != nil {
		for _, l := range s.laddrs {
			m[l.cfg.Addr.Unmap()] = true
		}
	}
	return m
}

// StartKeepalived loads the file at path, adds its services with their FULLNAT local
// addresses (atomically: a service or address the daemon refuses stops the start with
// the reason, at the file and line of its virtual_server) and starts the health checks,
// which add the real servers that are up; a real server the daemon refuses then stops
// the start too, at its real_server line.
func (d *Daemon) StartKeepalived(path string) (*Keepalived, error) {
	k, vss, err := d.applyKeepalived(path, keepalived.Options{})
	if err != nil {
		return nil, err
	}
	if err := k.startMonitor(vss); err != nil {
		return nil, err
	}
	k.startSync(k.cfg.SyncDaemon)
	return k, nil
}

// KeepalivedSyncDaemons are the sync daemon roles xlvsd runs for keepalived.conf's
// lvs_sync_daemon: both, master and backup, with or without a VRRP instance.
//
// keepalived's VRRP process switches the kernel's roles with the instance
// (vrrp_state_become_master calls ipvs_syncd_master, which stops the backup thread and
// starts the master; vrrp_state_leave_master calls ipvs_syncd_backup, the other way
// round: keepalived/vrrp/vrrp.c and keepalived/check/ipvswrapper.c of acassen/keepalived
// at commit 0c0d5a5a163b5a355685235be3aba1f1bfdcd2a4); without an instance its checker
// runs both. xlvsd runs both always, because a director with only one role loses
// connections where VRRP is not yet settled: a master that does not receive learns
// nothing from its peer while both are MASTER (split brain), and a backup that does not
// send loses the connections that stale neighbour caches still bring it just after it
// left MASTER; a standby's master role sends nothing while no traffic reaches it. What
// the instance's transitions decide is the whole-table exchange (see followVRRP).
func KeepalivedSyncDaemons(sd *keepalived.SyncDaemon) []api.SyncDaemon {
	if sd == nil {
		return nil
	}
	base := api.SyncDaemon{Interface: sd.Interface, SyncID: sd.SyncID, MaxLen: sd.MaxLen, Port: sd.Port, TTL: sd.TTL, VRRPInstance: sd.VRRPInstance}
	if sd.Group.IsValid() {
		base.Group = sd.Group.String()
	}
	master, backup := base, base
	master.State, backup.State = "master", "backup"
	return []api.SyncDaemon{master, backup}
}

// startSync starts the roles of sd. As keepalived, which logs a sync daemon that does not
// start and carries on, a failure is logged with the statement's file and line and the
// rules keep serving. With a VRRP instance and a notify FIFO it follows the instance.
func (k *Keepalived) startSync(sd *keepalived.SyncDaemon) {
	k.mu.Lock()
	k.sync = sd
	k.mu.Unlock()
	for _, r := range KeepalivedSyncDaemons(sd) {
		if e := k.d.startDaemon(&r); e != nil {
			k.log.Error(fmt.Sprintf("%s: lvs_sync_daemon: the %s sync daemon did not start: %s", sd.Pos, r.State, e.Message))
			continue
		}
		k.log.Info("sync daemon started from keepalived.conf", "pos", sd.Pos.String(), "state", r.State, "mcast_ifn", r.Interface, "syncid", r.SyncID, "vrrp_instance", r.VRRPInstance)
	}
	if sd != nil && sd.VRRPInstance != "" && sd.NotifyFIFO != "" {
		k.followVRRP(sd)
	}
}

// followVRRP watches keepalived's notify FIFO for sd's VRRP instance and turns its
// transitions into whole-table exchanges (control/syncd: RequestTable, SendTable):
//
//   - entering BACKUP (at keepalived's start, after FAULT, or preempted): this director
//     may have missed connections — it was down, cut off, or its xlvsd restarted — and
//     may become MASTER again after VRRP's master-down interval (3 advert_int and a
//     skew), so it asks the MASTER for its whole table now;
//   - leaving MASTER (for BACKUP, FAULT or STOP): the director taking over may lack what
//     only this one saw (after a split brain, or while the peer's switch port was down),
//     so this one sends its whole table.
//
// The roles themselves stay as they are (KeepalivedSyncDaemons). MASTER itself needs
// nothing: the table should be there already. A FIFO that cannot be opened is logged
// and the roles run without it.
func (k *Keepalived) followVRRP(sd *keepalived.SyncDaemon) {
	inst := sd.VRRPInstance
	w, err := vrrpfifo.Watch(sd.NotifyFIFO, k.log, func(ev vrrpfifo.Event) { k.vrrpEvent(inst, ev) })
	if err != nil {
		k.log.Error(fmt.Sprintf("%s: lvs_sync_daemon inst %s: cannot follow the VRRP instance: %v", sd.Pos, inst, err))
		return
	}
	k.vrrpMu.Lock()
	k.vrrp, k.vrrpState = w, ""
	k.vrrpMu.Unlock()
	k.log.Info("following the VRRP instance of lvs_sync_daemon", "instance", inst, "fifo", sd.NotifyFIFO)
}

// vrrpEvent acts on one line of the notify FIFO (followVRRP).
func (k *Keepalived) vrrpEvent(inst string, ev vrrpfifo.Event) {
	if ev.Group || ev.Name != inst {
		return
	}
	switch ev.State {
	case vrrpfifo.Master, vrrpfifo.Backup, vrrpfifo.Fault, vrrpfifo.Stop:
	default:
		k.log.Debug("VRRP event", "instance", inst, "event", ev.State, "priority", ev.Priority)
		return
	}
	k.vrrpMu.Lock()
	prev := k.vrrpState
	k.vrrpState = ev.State
	k.vrrpMu.Unlock()
	k.log.Info("VRRP instance changed state", "instance", inst, "state", ev.State, "was", prev, "priority", ev.Priority)
	if prev == vrrpfifo.Master && ev.State != vrrpfifo.Master {
		if err := k.d.sync.SendTable(); err != nil {
			k.log.Error("VRRP instance left MASTER: send the whole table", "instance", inst, "err", err)
		}
	}
	if ev.State == vrrpfifo.Backup {
		if err := k.d.sync.RequestTable(); err != nil {
			k.log.Error("VRRP instance entered BACKUP: ask for the whole table", "instance", inst, "err", err)
		}
	}
}

// VRRPState is the last state of the followed VRRP instance ("" when none is followed or
// no line came yet).
func (k *Keepalived) VRRPState() string {
	k.vrrpMu.Lock()
	defer k.vrrpMu.Unlock()
	return k.vrrpState
}

// stopSync stops the roles started for sd (those still running) and stops following its
// VRRP instance.
func (k *Keepalived) stopSync(sd *keepalived.SyncDaemon) {
	k.unfollowVRRP()
	for _, r := range KeepalivedSyncDaemons(sd) {
		if e := k.d.stopDaemon(&r); e != nil && e.Code != api.ErrCodeNoDaemon {
			k.log.Error(fmt.Sprintf("%s: lvs_sync_daemon: stop the %s sync daemon: %s", sd.Pos, r.State, e.Message))
		}
	}
}

func (k *Keepalived) unfollowVRRP() {
	k.vrrpMu.Lock()
	w := k.vrrp
	k.vrrp, k.vrrpState = nil, ""
	k.vrrpMu.Unlock()
	if w != nil {
		w.Close()
	}
}

// sameSync tells whether two lvs_sync_daemon statements ask for the same daemon.
func sameSync(a, b *keepalived.SyncDaemon) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Pos, y.Pos = keepalived.Pos{}, keepalived.Pos{}
	return x == y
}

// CheckKeepalived does what StartKeepalived does — load the file at path, add its
// services and local addresses, and add the real servers the health checks start with
// (all but those waiting for an alpha check) — without running any check, then stops.
// It is xlvsd --check-config: run it on a Daemon whose dataplane is not attached. It
// returns the configuration (its Warnings included) or the error, naming file and line;
// opts are the parser's (opts.Warn sees the warnings also when the file has errors).
func (d *Daemon) CheckKeepalived(path string, opts keepalived.Options) (*keepalived.Config, error) {
	k, vss, err := d.applyKeepalived(path, opts)
	if err != nil {
		return nil, err
	}
	idle := make([]health.VirtualServer, len(vss))
	for i, vs := range vss {
		vs.Servers = slices.Clone(vs.Servers)
		for j := range vs.Servers {
			checks := slices.Clone(vs.Servers[j].Checks)
			for c := range checks {
				checks[c].Checker = idleChecker{checks[c].Checker.String()}
			}
			vs.Servers[j].Checks = checks
		}
		idle[i] = vs
	}
	if err := k.startMonitor(idle); err != nil {
		return nil, err
	}
	k.Close()
	return k.cfg, nil
}

// idleChecker stands in for a checker in CheckKeepalived: it reports nothing until it is
// stopped, so the pool keeps the state it starts with.
type idleChecker struct{ name string }

func (c idleChecker) Check(ctx context.Context) health.Result {
	<-ctx.Done()
	return health.Result{Err: ctx.Err()}
}

func (c idleChecker) String() string { return c.name }

// applyKeepalived loads the file at path and adds its services with their FULLNAT local
// addresses in one atomic change.
func (d *Daemon) applyKeepalived(path string, opts keepalived.Options) (*Keepalived, []health.VirtualServer, error) {
	k := &Keepalived{d: d, path: path, opts: opts, log: d.log.With("component", "keepalived")}
	cfg, vss, err := k.load()
	if err != nil {
		return nil, nil, err
	}
	b := newKABatch()
	for _, vs := range cfg.VirtualServers {
		b.add(api.Request{Op: api.OpAddService, Service: kaService(vs)}, vs.Pos, kaVSName(vs))
		for _, a := range vs.LocalAddrs {
			b.add(kaLaddrReq(api.OpAddLocalAddr, kaServiceKey(vs.ServiceKey), a), vs.Pos, kaVSName(vs)+" local address "+a.String())
		}
	}
	if err := b.apply(d); err != nil {
		return nil, nil, err // it names the file and line
	}
	k.setConfig(cfg, vss)
	return k, vss, nil
}

// startMonitor starts the health checks on vss. The monitor's first updates (the real
// servers that start up) are applied before it returns; a destination the daemon refuses
// then is an error, and nothing keeps running.
func (k *Keepalived) startMonitor(vss []health.VirtualServer) error {
	k.mu.Lock()
	k.starting = true
	k.mu.Unlock()
	k.mon = health.New(health.Options{Logger: k.log, OnUpdate: k.reconcile})
	err := k.mon.Apply(vss)
	k.mu.Lock()
	k.starting = false
	errs := k.startErrs
	k.startErrs = nil
	k.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("keepalived config %s: %w", k.path, err)
	} else if len(errs) > 0 {
		err = errors.Join(errs...) // each names the file and line
	}
	if err != nil {
		k.mon.Close()
	}
	return err
}

func (k *Keepalived) load() (*keepalived.Config, []health.VirtualServer, error) {
	cfg, err := keepalived.Load(k.path, k.opts)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range cfg.Warnings {
		k.log.Warn(w.String())
	}
	vss, err := health.FromKeepalived(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("keepalived config %s: %w", k.path, err)
	}
	return cfg, vss, nil
}

func (k *Keepalived) setConfig(cfg *keepalived.Config, vss []health.VirtualServer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cfg = cfg
	k.vs = map[health.ServiceKey]keepalived.VirtualServer{}
	for _, vs := range cfg.VirtualServers {
		k.vs[kaHealthKey(vs.ServiceKey)] = vs
	}
	k.members = map[health.ServiceKey][]health.ServiceKey{}
	for _, hv := range vss {
		if len(hv.Members) > 0 {
			k.members[hv.Key] = slices.Clone(hv.Members)
		}
	}
}

// destRule is the rule of the destination at addr of vs: a real server, or the sorry
// server.
func destRule(vs keepalived.VirtualServer, addr netip.AddrPort, sorry bool) api.Dest {
	d := api.Dest{Addr: addr.Addr().Unmap(), Port: addr.Port()}
	if sorry && vs.SorryServer != nil {
		kaMethod(&d, vs.SorryServer.Method)
		return d
	}
	for _, rs := range vs.RealServers {
		if rs.Addr == addr {
			kaMethod(&d, rs.Method)
			d.UThreshold, d.LThreshold = rs.UThreshold, rs.LThreshold
			return d
		}
	}
	kaMethod(&d, vs.Method)
	return d
}

// reconcile makes a service's destinations what the health checks want, in one atomic
// change; for a virtual_server group's shared checks, every member service's at once.
// It runs serially, in the order the Monitor decided.
func (k *Keepalived) reconcile(u health.Update) {
	if u.Removed {
		return
	}
	k.mu.Lock()
	keys, shared := k.members[u.Service]
	if !shared {
		keys = []health.ServiceKey{u.Service}
	}
	var vss []keepalived.VirtualServer
	for _, key := range keys {
		if vs, ok := k.vs[key]; ok {
			vss = append(vss, vs)
		}
	}
	k.mu.Unlock()
	b := newKABatch()
	for _, vs := range vss {
		k.reconcileOne(b, vs, u)
	}
	k.d.healthEvents.Add(uint64(len(u.Events)))
	if err := b.apply(k.d); err != nil {
		k.mu.Lock()
		starting := k.starting
		if starting {
			k.startErrs = append(k.startErrs, err)
		}
		k.mu.Unlock()
		if !starting {
			k.log.Error("apply health-check result", "service", u.Service, "err", err)
		}
	}
}

// reconcileOne adds to b what makes vs's destinations those of u.
func (k *Keepalived) reconcileOne(b *kaBatch, vs keepalived.VirtualServer, u health.Update) {
	key := kaServiceKey(vs.ServiceKey)
	cur, e := k.d.list(&api.Service{ServiceKey: key})
	if e != nil || len(cur) != 1 {
		k.log.Warn("health update for a service that is not defined", "service", key)
		return
	}
	have := map[netip.AddrPort]api.Dest{}
	for _, d := range cur[0].Dests {
		have[netip.AddrPortFrom(d.Addr, d.Port)] = d
	}
	svc := &api.Service{ServiceKey: key}
	for _, want := range u.Dests {
		addr := netip.AddrPortFrom(want.Addr.Addr().Unmap(), want.Addr.Port())
		old, present := have[addr]
		pos, what := destPos(vs, want.Addr, want.Sorry)
		switch {
		case want.InPool && !present:
			d := destRule(vs, want.Addr, want.Sorry)
			d.Weight = want.Weight
			b.add(api.Request{Op: api.OpAddDest, Service: svc, Dest: &d}, pos, what)
		case want.InPool && old.Weight != want.Weight:
			d := old
			d.Weight = want.Weight
			b.add(api.Request{Op: api.OpEditDest, Service: svc, Dest: &d}, pos, what)
		case !want.InPool && present:
			d := api.Dest{Addr: addr.Addr(), Port: addr.Port()}
			b.add(api.Request{Op: api.OpDelDest, Service: svc, Dest: &d}, pos, what)
		}
	}
}

// destPos is where the destination at addr of vs is configured, and its name.
func destPos(vs keepalived.VirtualServer, addr netip.AddrPort, sorry bool) (keepalived.Pos, string) {
	if ss := vs.SorryServer; ss != nil && (sorry || ss.Addr == addr) {
		if !sorry {
			for _, rs := range vs.RealServers {
				if rs.Addr == addr {
					return rs.Pos, fmt.Sprintf("real_server %s of %s", addr, kaVSName(vs))
				}
			}
		}
		return ss.Pos, fmt.Sprintf("sorry_server %s of %s", addr, kaVSName(vs))
	}
	for _, rs := range vs.RealServers {
		if rs.Addr == addr {
			return rs.Pos, fmt.Sprintf("real_server %s of %s", addr, kaVSName(vs))
		}
	}
	return vs.Pos, fmt.Sprintf("destination %s of %s", addr, kaVSName(vs))
}

// Reload re-reads the file and applies only what changed; services and servers that did
// not change are not touched, so their connections continue. A file that does not load
// keeps the running configuration. FULLNAT local addresses a service gains are added
// before its destinations change (so a service turning to FNAT has them when its
// destinations do); those it loses are deleted after (their connections drain). An
// address someone already added or deleted with xlvsadm is left as it is.
func (k *Keepalived) Reload() error {
	newCfg, vss, err := k.load()
	if err != nil {
		return fmt.Errorf("reload %s (keeping the running configuration): %w", k.path, err)
	}
	k.mu.Lock()
	oldCfg := k.cfg
	k.mu.Unlock()
	ch := keepalived.Diff(oldCfg, newCfg)
	b := newKABatch()
	for _, vs := range ch.AddedServices {
		b.add(api.Request{Op: api.OpAddService, Service: kaService(vs)}, vs.Pos, kaVSName(vs))
		for _, a := range vs.LocalAddrs {
			b.add(kaLaddrReq(api.OpAddLocalAddr, kaServiceKey(vs.ServiceKey), a), vs.Pos, kaVSName(vs)+" local address "+a.String())
		}
	}
	for _, sc := range ch.ChangedServices {
		if sc.RuleChanged() {
			b.add(api.Request{Op: api.OpEditService, Service: kaService(sc.New)}, sc.New.Pos, kaVSName(sc.New))
		}
		if len(sc.AddedLocalAddrs) == 0 {
			continue
		}
		key := kaServiceKey(sc.New.ServiceKey)
		have := k.d.laddrsOf(key)
		for _, a := range sc.AddedLocalAddrs {
			if !have[a.Unmap()] {
				b.add(kaLaddrReq(api.OpAddLocalAddr, key, a), sc.New.Pos, kaVSName(sc.New)+" local address "+a.String())
			}
		}
	}
	if err := b.apply(k.d); err != nil {
		return fmt.Errorf("reload %s (keeping the running configuration): %w", k.path, err)
	}
	// Destination rules that changed apart from the weight (method, thresholds): edit
	// them in place, keeping the weight the health checks gave them.
	for _, sc := range ch.ChangedServices {
		key := kaServiceKey(sc.New.ServiceKey)
		for _, srv := range sc.ChangedServers {
			if !srv.RuleChanged() {
				continue
			}
			cur, e := k.d.list(&api.Service{ServiceKey: key})
			if e != nil || len(cur) != 1 {
				continue
			}
			for _, d := range cur[0].Dests {
				if netip.AddrPortFrom(d.Addr, d.Port) == netip.AddrPortFrom(srv.New.Addr.Addr().Unmap(), srv.New.Addr.Port()) {
					nd := destRule(sc.New, srv.New.Addr, false)
					nd.Weight = d.Weight
					if e := k.d.change(&api.Request{Op: api.OpEditDest, Service: &api.Service{ServiceKey: key}, Dest: &nd}); e != nil {
						k.log.Error("reload: edit real server", "service", key, "server", srv.New.Addr, "err", e.Message)
					}
				}
			}
		}
	}
	k.setConfig(newCfg, vss)
	if err := k.mon.Apply(vss); err != nil {
		return fmt.Errorf("reload %s: %w", k.path, err)
	}
	del := &api.Request{Op: api.OpRestore}
	for _, sc := range ch.ChangedServices {
		if len(sc.RemovedLocalAddrs) == 0 {
			continue
		}
		key := kaServiceKey(sc.New.ServiceKey)
		have := k.d.laddrsOf(key)
		for _, a := range sc.RemovedLocalAddrs {
			if have[a.Unmap()] {
				del.Batch = append(del.Batch, kaLaddrReq(api.OpDelLocalAddr, key, a))
			}
		}
	}
	for _, vs := range ch.RemovedServices {
		del.Batch = append(del.Batch, api.Request{Op: api.OpDelService, Service: &api.Service{ServiceKey: kaServiceKey(vs.ServiceKey)}})
	}
	if len(del.Batch) > 0 {
		if e := k.d.change(del); e != nil {
			k.log.Error("reload: remove services and local addresses", "err", e.Message)
		}
	}
	k.mu.Lock()
	oldSync := k.sync
	k.mu.Unlock()
	if !sameSync(oldSync, newCfg.SyncDaemon) {
		// As keepalived on a reload that changes lvs_sync_daemon: stop, then start anew.
		k.stopSync(oldSync)
		k.startSync(newCfg.SyncDaemon)
	}
	k.log.Info("reloaded", "path", k.path, "changes", ch.String())
	return nil
}

// Close stops the health checks; the rules stay as they are.
func (k *Keepalived) Close() {
	k.unfollowVRRP()
	k.mon.Close()
}
