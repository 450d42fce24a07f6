package dataplane

import (
	"errors"
	"time"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// SyncConn is a connection, or a persistence template, as the connection-sync daemon
// (IPVS's sync master and backup) sees it: what the workers hand over to be sent, and what
// a backup applies. Pointer-free. Addresses are IPv4-mapped for IPv4.
type SyncConn struct {
	Proto    uint8
	Template bool             // a persistence template (IP_VS_CONN_F_TEMPLATE)
	Method   conntrack.Method // forwarding method
	State    conntrack.State  // templates: StateNone
	// Timeout is in seconds: the state's timeout for a connection, the persistence
	// timeout for a template; 0 on a received entry means "the state's own" (version 0).
	Timeout uint32
	Client  [16]byte // templates: the client's address masked by the service's netmask
	CPort   uint16   // templates: 0
	VAddr   [16]byte
	VPort   uint16
	DAddr   [16]byte // real server
	DPort   uint16
	// LAddr and LPort are a FULLNAT connection's local address and port (Method
	// MethodFullNAT).
	LAddr [16]byte
	LPort uint16
	// FWMark is the connection's firewall mark (ip_vs_sync_v4.fwmark): the mark of its
	// fwmark service, 0 for others. A fwmark service's template has Proto 0 (IPPROTO_IP),
	// the mark as VAddr (IPv4: ::ffff:m.m.m.m; IPv6: its first four bytes) and ports 0,
	// as IPVS writes it; a backup finds the service by FWMark first (ip_vs_find_dest).
	FWMark uint32
	// Queued is when a worker queued the entry (the dataplane's monotonic clock, ns): the
	// sender's lag is its send time minus Queued. Zero on received entries.
	Queued int64
}

// Errors of ApplySync. Sentinels: returning them allocates nothing.
var (
	ErrSyncNoService = errors.New("sync: no such virtual service here (the backup needs the master's services)")
	ErrSyncNoDest    = errors.New("sync: no such real server in the service here (the backup needs the master's real servers)")
	ErrSyncBadState  = errors.New("sync: invalid entry (protocol, state or method)")
	ErrSyncNoPersist = errors.New("sync: persistence template for a service that is not persistent here")
)

// DefaultSyncQueue is Config.SyncQueue's default: entries each worker can hold for the
// sync daemon (about 100 bytes each).
const DefaultSyncQueue = 4096

// SyncStats are the workers' sync counters, summed, cumulative.
type SyncStats struct {
	Queued    uint64 // entries queued for the sync daemon
	QueueFull uint64 // entries dropped because a worker's queue was full
}

// syncRing queues a worker's entries for the sync daemon (spsc.go).
type syncRing = spscRing[SyncConn]

func newSyncRing(n int) *syncRing { return newSPSCRing[SyncConn](n) }

// SetSyncMaster makes the workers hand connections to the sync daemon as IPVS's master
// does (p: which packets; persistMode: sync_persist_mode, connections of persistent
// services are not sent, only their templates), or stops it (p nil). Entries queued
// before a stop stay for DrainSync.
func (d *Dataplane) SetSyncMaster(p *conntrack.SyncPolicy, persistMode bool) {
	d.syncPersistMode.Store(persistMode)
	if p != nil {
		pol := *p
		d.syncPol.Store(&pol)
	} else {
		d.syncPol.Store(nil)
	}
	d.ct.SetSync(p)
	d.syncMaster.Store(p != nil)
}

// DrainSync moves up to len(out) queued entries into out, worker by worker (each worker's
// in the order it queued them), then the fast path's (the connections its sweeps send),
// and returns how many. One consumer at a time; it allocates nothing.
func (d *Dataplane) DrainSync(out []SyncConn) int {
	n := 0
	for _, w := range d.workers {
		if n == len(out) {
			break
		}
		n += w.sync.pop(out[n:])
	}
	if d.fast != nil && n < len(out) {
		n += d.fast.sync.pop(out[n:])
	}
	return n
}

// SyncStats sums the workers' and the fast path's sync counters.
func (d *Dataplane) SyncStats() SyncStats {
	var s SyncStats
	for _, w := range d.workers {
		s.Queued += w.sync.tail.Load()
		s.QueueFull += w.sync.full.Load()
	}
	if d.fast != nil {
		s.Queued += d.fast.sync.tail.Load()
		s.QueueFull += d.fast.sync.full.Load()
	}
	return s
}

// syncConn queues connection e (just looked up or inserted, of service svc
// and real server rs) for the sync daemon when the table says a master sends it now, and
// with it the client's persistence template when the service is persistent. The kernel
// (ip_vs_sync_conn) also sends a template on every packet of the connections it controls
// unless sync_refresh_period is set; xlvs sends it with its connection only, but for
// the datagrams of a one-packet service, which have no connection to send: their
// templates go by the kernel's rule (syncOnePacket).
func (w *worker) syncConn(e *conntrack.Entry, svc *Service, rs *destRef, now int64) {
	if !e.Sync {
		// A one-packet datagram (ops.go) is never in the table, so never Sync (nor in a
		// state: schedule leaves it NONE), but it counts for its template.
		if svc.Persist > 0 && e.State == conntrack.StateNone && opsProto(svc, e.Method, e.Orig.Proto) {
			w.syncOnePacket(e, svc, rs, now)
		}
		return
	}
	w.dp.queueSync(w.sync, &w.syncScratch, e, svc, rs, now)
}

// queueSync queues connection e of service svc and real server rs, which the table says a
// master sends now, on ring r (c is its producer's scratch): the connection unless the
// service is persistent under sync_persist_mode, and a persistent service's client
// template.
func (d *Dataplane) queueSync(r *syncRing, c *SyncConn, e *conntrack.Entry, svc *Service, rs *destRef, now int64) {
	fillSyncConn(c, e, svc, rs, d.ct.StateTimeout(e.State))
	c.Queued = now
	persistent := svc.Persist > 0
	if !(persistent && d.syncPersistMode.Load()) {
		r.push(c)
	}
	if persistent {
		fillSyncTemplate(c, svc, rs, maskPersist(e.Orig.Src, svc.PersistBits), uint32(svc.Persist/int64(time.Second)))
		r.push(c)
	}
}

// syncOnePacket queues the persistence template of one-packet datagram e
// when IPVS would send it. ip_vs_sync_conn (codesnas/linux-6.18.y
// net/netfilter/ipvs/ip_vs_sync.c @ 33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e) never
// sends a ONE_PACKET connection but goes on to its controller, the template, with
// pkts = ++template.in_pkts through ip_vs_sync_conn_needed (protocol version 1; xlvs
// writes no version 0, where ip_vs_sync_conn_v0 returns before the template). With the
// default sync_period (50) that sends the template on every datagram, as the kernel does.
func (w *worker) syncOnePacket(e *conntrack.Entry, svc *Service, rs *destRef, now int64) {
	pol := w.dp.syncPol.Load()
	if pol == nil {
		return
	}
	var pk persistKey
	pk.set(svc.ID, &e.Orig.Src, svc.PersistBits)
	if !w.dp.persist.syncOnePacket(&pk, now, svc.Persist, pol) {
		return
	}
	c := &w.syncScratch
	c.Queued = now
	fillSyncTemplate(c, svc, rs, pk.addr, uint32(svc.Persist/int64(time.Second)))
	w.sync.push(c)
}

// templateSyncDue is ip_vs_sync_conn_needed for a template (same source as
// syncOnePacket), in nanoseconds: *end is its sync_endtime without the retries, which
// are in *retries; pkts its in_pkts after this packet; timeout its timeout. A template
// has no state to force a send. With RefreshPeriod, a template whose end time moved by
// less than min(RefreshPeriod, max(timeout/2, 10 s)) since it was last sent is sent
// again only Retries times, and not before end - timeout + RefreshPeriod/8. Then a
// template passes any nonzero Period (connections must match the count there); with
// neither Period nor RefreshPeriod it is sent when pkts equals Threshold. A send
// records the new end time.
func templateSyncDue(pol *conntrack.SyncPolicy, end *int64, retries *uint8, pkts uint32, now, timeout int64) bool {
	n := now + timeout
	var r uint8
	if refresh := int64(pol.RefreshPeriod); refresh > 0 {
		diff := n - *end
		if diff < 0 {
			diff = -diff
		}
		if diff < min(refresh, max(timeout/2, int64(10*time.Second))) {
			if int(*retries) >= pol.Retries {
				return false
			}
			if now < *end-timeout+refresh/8 {
				return false
			}
			r = *retries + 1
		}
	}
	if pol.Period == 0 && pol.RefreshPeriod <= 0 && int64(pkts) != int64(pol.Threshold) {
		return false
	}
	*end, *retries = n, r
	return true
}

// fillSyncConn writes connection e of service svc and real server rs into c as a master
// sends it, with timeout seconds; c.Queued is left as it was. It does not allocate.
func fillSyncConn(c *SyncConn, e *conntrack.Entry, svc *Service, rs *destRef, timeout uint32) {
	q := c.Queued
	*c = SyncConn{
		Proto:  e.Orig.Proto,
		Method: e.Method,
		State:  e.State,
		Client: e.Orig.Src, CPort: e.Orig.SrcPort,
		VAddr: e.Orig.Dst, VPort: e.Orig.DstPort,
		DAddr: rs.Addr, DPort: rs.Port,
		FWMark:  svc.FWMark,
		Timeout: timeout,
		Queued:  q,
	}
	switch e.Method {
	case conntrack.MethodNAT:
		c.DPort = e.Reply.SrcPort
	case conntrack.MethodFullNAT:
		c.DPort = e.Reply.SrcPort
		c.LAddr, c.LPort = e.Reply.Dst, e.Reply.DstPort
	default:
		if svc.Key.Port == 0 && (svc.Persist > 0 || rs.Port == 0) {
			c.DPort = e.Orig.DstPort
		}
	}
}

// fillSyncTemplate turns c into the persistence template of client (already masked) on
// service svc, real server rs: no client port, the service's port (0 for a port-0
// service, whose real servers take the client's port), state NONE, timeout seconds. The
// forwarding method is rs's; c.Queued is kept.
func fillSyncTemplate(c *SyncConn, svc *Service, rs *destRef, client [16]byte, timeout uint32) {
	*c = SyncConn{
		Proto:    svc.Key.Proto,
		Template: true,
		Method:   rs.Method,
		State:    conntrack.StateNone,
		Client:   client,
		VAddr:    svc.Key.Addr, VPort: svc.Key.Port,
		DAddr: rs.Addr, DPort: rs.Port,
		FWMark:  svc.FWMark,
		Timeout: timeout,
		Queued:  c.Queued,
	}
	if svc.FWMark != 0 {
		markTemplate(c, svc)
	}
}

// WalkSync calls f with every live connection and persistence template of the tables, as
// a sync master sends them (sync_persist_mode honoured: a persistent service's
// connections are left out in it, its templates never), for a whole-table send to a
// peer that joins (xlvs's table request; IPVS has none). Unlike a master's per-packet
// entries, each entry's Timeout is the time its timer has left (seconds, rounded up, at
// least 1), so a backup's copy expires when the original does; Queued is when f is
// called. Entries whose service or real server is no longer in the published snapshot
// are left out (the backup could not place them). Connections come first, then
// templates.
//
// f runs with no lock held and may take its time (it may send); the connection table is
// copied one shard at a time (conntrack.Table.Walk), so a walk does not stop the
// workers, and other table walks (-L -c) wait for it. f returns false to stop. *SyncConn
// is reused between calls.
func (d *Dataplane) WalkSync(f func(c *SyncConn) bool) {
	snap := d.snap.Load()
	if snap == nil {
		return
	}
	byID := make(map[uint32]*Service, len(snap.Services))
	for i := range snap.Services {
		byID[snap.Services[i].ID] = &snap.Services[i]
	}
	persistMode := d.syncPersistMode.Load()
	left := func(ns int64) uint32 {
		s := (ns + int64(time.Second) - 1) / int64(time.Second)
		return uint32(min(max(s, 1), int64(conntrack.MaxTimeout)))
	}
	var c SyncConn
	stopped := false
	d.ct.Walk(d.now(), func(e *conntrack.Entry, expiresIn int64) bool {
		svc, ok := byID[e.Service]
		if !ok || (persistMode && svc.Persist > 0) {
			return true
		}
		rs, ok := snap.dest(e.Dest)
		if !ok {
			return true
		}
		c.Queued = d.now()
		fillSyncConn(&c, e, svc, rs, left(expiresIn))
		stopped = !f(&c)
		return !stopped
	})
	if stopped {
		return
	}
	d.persist.walk(d.now(), func(svcID, dest uint32, client [16]byte, expiresIn int64) {
		if stopped {
			return
		}
		svc, ok := byID[svcID]
		if !ok || svc.Persist == 0 {
			return
		}
		rs, ok := snap.dest(dest)
		if !ok {
			return
		}
		c.Queued = d.now()
		fillSyncTemplate(&c, svc, rs, client, left(expiresIn))
		stopped = !f(&c)
	})
}

// ApplySync applies an entry received from a sync master (IPVS's ip_vs_proc_conn): a
// connection is created or updated in the connection table with the state and timer
// given, its real server looked up by address and port in the virtual service, no
// scheduler asked; a template restarts or creates the client's persistence. The
// backup's configuration must hold the master's services and real servers; an entry for
// one it does not have is refused (ErrSyncNoService, ErrSyncNoDest), where the kernel
// keeps it unbound. Safe concurrently with the workers; it allocates nothing.
func (d *Dataplane) ApplySync(c *SyncConn) error {
	snap := d.snap.Load()
	if snap == nil {
		return ErrSyncNoService
	}
	if c.Proto != packet.ProtoTCP && c.Proto != packet.ProtoUDP && c.Proto != packet.ProtoSCTP && !(c.Proto == 0 && c.Template && c.FWMark != 0) {
		return ErrSyncBadState
	}
	si, ok := syncService(snap, c)
	if !ok {
		return ErrSyncNoService
	}
	svc := &snap.Services[si]
	di := -1
	if svc.FWMark != 0 && !c.Template {
		di = markSyncDest(svc, c)
	} else {
		for i := range svc.Dests {
			if t := &svc.Dests[i]; t.Addr == c.DAddr && (t.Port == c.DPort || svc.Key.Port == 0 || c.Template) {
				di = i
				break
			}
		}
	}
	if di < 0 {
		return ErrSyncNoDest
	}
	dst := &svc.Dests[di]
	now := d.now()
	if c.Template {
		if svc.Persist == 0 {
			return ErrSyncNoPersist
		}
		timeout := int64(c.Timeout) * int64(time.Second)
		if timeout == 0 {
			timeout = svc.Persist
		}
		var pk persistKey
		pk.set(svc.ID, &c.Client, svc.PersistBits)
		d.persist.set(&pk, dst.ID, now, timeout)
		return nil
	}
	if c.Method > conntrack.MethodFullNAT {
		return ErrSyncBadState
	}
	e := conntrack.Entry{
		Orig:    conntrack.Key{Src: c.Client, Dst: c.VAddr, SrcPort: c.CPort, DstPort: c.VPort, Proto: c.Proto},
		Dest:    dst.ID,
		Service: svc.ID,
		Method:  c.Method,
		State:   c.State,
	}
	switch c.Method {
	case conntrack.MethodNAT:
		e.Reply = conntrack.Key{Src: c.DAddr, Dst: c.Client, SrcPort: c.DPort, DstPort: c.CPort, Proto: c.Proto}
	case conntrack.MethodFullNAT:
		e.Reply = conntrack.Key{Src: c.DAddr, Dst: c.LAddr, SrcPort: c.DPort, DstPort: c.LPort, Proto: c.Proto}
	}
	_, err := d.ct.Apply(&e, c.Timeout, now)
	return err
}
