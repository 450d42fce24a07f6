package dataplane

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
)

// Restart handoff (hitless restart and upgrade). A stopping xlvsd stops its workers
// (StopWorkers: every frame back with its socket), sets its XDP program's hold (Hold:
// for a while, frames of the services that find no socket are dropped, not passed to
// the kernel's stack, which would reset NAT connections; after it, even registered
// sockets are not used), writes its connections and templates by address
// (ExportHandoff, plus the statistics the control plane adds, EncodeHandoff) and hands
// them to a keeper (systemd's fd store) with its AF_XDP sockets (HandoffSockets: each
// socket's descriptor, its UMEM's memfd and its free list) and its XDP links
// (HandoffLinks) before it exits. Its program keeps redirecting into the sockets
// meanwhile: the frames wait in their RX rings, as many as the fill rings had posted
// (2048 per socket by default), and none goes to the kernel.
//
// Its successor adopts the sockets (xsk.Adopt, Config.AdoptSockets: the queues were
// never released) and the links (Config.Adopt: its own program instance, loaded beside
// the running one), registers the sockets in its own program's maps, restores the
// rules, imports the table (ImportHandoff: by address, so service and real-server IDs
// need not match), only then starts its workers (StartForwarding: the waiting frames
// must find the rules and the connections) and swaps its program onto the links
// (Activate; for an interface whose sockets were all handed over the program instance
// is loaded there too, deferredPort).
//
// A successor configured otherwise (other ring or frame sizes, another mode,
// --private-umem) or a predecessor with asavie's private sockets does not hand over
// sockets: the predecessor closes its sockets (ReleaseSockets), the successor opens its
// own (openSocket waits while the kernel frees the queues), and the frames of that gap
// are dropped and counted (bpf Counters.Held); TCP retransmits them after its
// retransmission timeout (at least 200 ms on Linux).
//
// Where the time goes, measured on the 2-vCPU VM (e2e TestHitlessRestart): the
// predecessor hands over in about a millisecond and has exited about 8 ms after SIGTERM;
// the successor is running 13-24 ms later, and forwards about 20 ms after that: its maps
// (bpf.New, 5-10 ms), the adopted sockets, the rules (5 ms) and the import (under a
// millisecond). When an interface's link and every one of its sockets were handed over
// (deferredPort), its program instance is loaded only then, at Activate — the kernel's
// verifier takes 16-19 ms of CPU per instance, which on two cores had delayed the first
// forwarded frame by 30-45 ms — and swapped onto the link (12-25 ms, an RCU grace
// period) while the workers forward. The forwarding gap over 30 restarts with the
// default 4Mi-entry table: median 59 ms, 35-80 ms. A large table costs nothing on that
// path: it is made while the rest starts, with base pages (conntrack.Config.BasePages),
// and made resident later (SettleTable).

// AdoptLink is an XDP link handed over by a predecessor: Config.Adopt.
type AdoptLink struct {
	Ifname string
	FD     int      // the bpf_link; stays the caller's (the dataplane holds a duplicate)
	Mode   bpf.Mode // the predecessor's attach mode
}

// AdoptSocket is an AF_XDP socket handed over by a predecessor (xsk.Adopt), with the
// interface and queue it is bound to: Config.AdoptSockets.
type AdoptSocket struct {
	Ifname string
	Queue  int
	Socket xsk.Socket
}

// adoptSocket takes the predecessor's socket of (interface, queue) out of
// Config.AdoptSockets, nil when there is none.
func (d *Dataplane) adoptSocket(ifname string, queue int) xsk.Socket {
	for i := range d.cfg.AdoptSockets {
		a := &d.cfg.AdoptSockets[i]
		if a.Ifname == ifname && a.Queue == queue && a.Socket != nil {
			s := a.Socket
			a.Socket = nil
			d.adoptedSockets++
			return s
		}
	}
	return nil
}

func closeSockets(as []AdoptSocket) {
	for i := range as {
		if as[i].Socket != nil {
			as[i].Socket.Close()
			as[i].Socket = nil
		}
	}
}

// HandoffSockets lists the sockets to hand over with their interfaces and queues (stop
// the workers first), nil when any cannot be handed over (xsk.Config.Private): then
// they are released (ReleaseSockets) and the successor opens its own.
func (d *Dataplane) HandoffSockets() []HandoffSocket {
	var out []HandoffSocket
	for i := range d.ports {
		for q, s := range d.ports[i].Sockets {
			sh, ok := s.(xsk.Shareable)
			if !ok {
				return nil
			}
			sockFD, memFD, info := sh.Handover()
			out = append(out, HandoffSocket{Ifname: d.ports[i].Name, Queue: q, SockFD: sockFD, MemFD: memFD, Info: info})
		}
	}
	return out
}

// HandoffSocket is a socket to hand over: its descriptors (the dataplane's: a keeper
// takes duplicates) and what xsk.Adopt needs.
type HandoffSocket struct {
	Ifname        string
	Queue         int
	SockFD, MemFD int
	Info          xsk.ShareInfo
}

// adopted returns the predecessor's link of the interface (Config.Adopt), nil when the
// interface is to be attached afresh.
func (d *Dataplane) adopted(name string) *AdoptLink {
	for i := range d.cfg.Adopt {
		if d.cfg.Adopt[i].Ifname == name {
			return &d.cfg.Adopt[i]
		}
	}
	return nil
}

// openSocket opens the AF_XDP socket of (ifindex, queue), retrying for up to
// Config.BusyWait while the kernel still holds the queue for a predecessor's socket: it
// releases an exited process's sockets (their buffer pools) from a work queue, after the
// process is gone.
func (d *Dataplane) openSocket(ifindex, queue int) (xsk.Socket, error) {
	deadline := time.Now().Add(d.cfg.BusyWait)
	for {
		s, err := xsk.Open(ifindex, queue, d.cfg.Socket)
		if err == nil || !errors.Is(err, unix.EBUSY) && !strings.Contains(err.Error(), unix.EBUSY.Error()) || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Activate puts this dataplane's XDP program on the adopted links (Config.Adopt) in place
// of the predecessor's, every interface at once (a link update waits for an RCU grace
// period, about 10 ms here): call it once the rules are published and the table
// imported. Attached links need nothing.
func (d *Dataplane) Activate() error {
	if err := d.finishDeferred(); err != nil {
		return err
	}
	d.xdpMu.Lock()
	defer d.xdpMu.Unlock()
	errs := make([]error, len(d.xdp))
	var wg sync.WaitGroup
	for i, xp := range d.xdp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := xp.Activate(); err != nil {
				errs[i] = fmt.Errorf("interface %s: %w", d.ports[i].Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deferredPort is an interface whose link and every socket were handed over: New
// adopts the sockets (adoptPort) but loads no program instance for it, so the
// successor forwards sooner — the predecessor's program, still on the link, feeds the
// sockets meanwhile. Activate loads the instance and adopts the link with it
// (finishDeferred).
type deferredPort struct {
	idx     int // in d.ports and d.xdp
	ifindex int
	link    *AdoptLink
}

// socketsHandedOver tells whether Config.AdoptSockets holds a socket for each of the
// interface's queues.
func (d *Dataplane) socketsHandedOver(ifname string, queues int) bool {
	for q := 0; q < queues; q++ {
		found := false
		for _, a := range d.cfg.AdoptSockets {
			found = found || a.Ifname == ifname && a.Queue == q && a.Socket != nil
		}
		if !found {
			return false
		}
	}
	return true
}

// adoptPort is setupPort for a deferred port: the handed-over sockets, no program yet.
func (d *Dataplane) adoptPort(attrs *netlink.LinkAttrs, queues int) (Port, error) {
	p := Port{Name: attrs.Name, Ifindex: int32(attrs.Index)}
	copy(p.MAC[:], attrs.HardwareAddr)
	for q := 0; q < queues; q++ {
		s := d.adoptSocket(attrs.Name, q)
		if s == nil {
			return p, fmt.Errorf("interface %s: no handed-over socket for queue %d", attrs.Name, q)
		}
		p.Sockets = append(p.Sockets, s)
	}
	return p, nil
}

// finishDeferred loads the deferred ports' program instances (in parallel: the
// verifier's work is per instance), adopts their links with them, registers their
// sockets and gives them their MACs.
func (d *Dataplane) finishDeferred() error {
	if len(d.deferred) == 0 {
		return nil
	}
	loaded := make([]preloaded, len(d.deferred))
	var wg sync.WaitGroup
	for i := range d.deferred {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loaded[i].p, loaded[i].err = d.cls.Load()
		}()
	}
	wg.Wait()
	var errs []error
	for i, dp := range d.deferred {
		port := &d.ports[dp.idx]
		l := loaded[i]
		if l.err != nil {
			errs = append(errs, fmt.Errorf("attach XDP to %s: adopt xdp link of ifindex %d: %w", port.Name, dp.ifindex, l.err))
			continue
		}
		if err := d.cls.AdoptLoaded(l.p, dp.ifindex, dp.link.FD, dp.link.Mode); err != nil {
			l.p.Close()
			errs = append(errs, fmt.Errorf("attach XDP to %s: %w", port.Name, err))
			continue
		}
		d.xdpMu.Lock()
		d.xdp[dp.idx] = l.p // closed with the dataplane from here on
		d.xdpMu.Unlock()
		for q, s := range port.Sockets {
			if err := l.p.RegisterSocket(q, s.FD()); err != nil {
				errs = append(errs, fmt.Errorf("register socket of %s queue %d: %w", port.Name, q, err))
			}
		}
		d.log.Info("attached", "interface", port.Name, "xdp_mode", l.p.Mode().String(), "queues", len(port.Sockets))
	}
	d.deferred = nil
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return d.readMACs()
}

// StopWorkers stops the workers and the reaper and waits for them: nothing reads the
// sockets or changes the table from then on (Close still releases everything).
func (d *Dataplane) StopWorkers() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
}

// ReleaseSockets closes the AF_XDP sockets (stop the workers first): the kernel
// releases a socket's buffer pool, and with it the queue a successor's socket binds to,
// in a work queue after the close, so closing them before the rest of a handoff lets
// that run while the handoff is written and the process exits, not while the successor
// waits (openSocket). The XDP program's socket maps lose them at once: a Hold drops
// their frames from then on. Close does not close them again.
//
// The kernel's release of a socket waits for a network RCU grace period (measured: 10 to
// 50 ms a socket on a loaded 2-core machine), so they are closed all at once.
func (d *Dataplane) ReleaseSockets() {
	var wg sync.WaitGroup
	for i := range d.ports {
		for _, s := range d.ports[i].Sockets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Close()
			}()
		}
		d.ports[i].Sockets = nil
	}
	wg.Wait()
}

// SettleTable makes the connection table resident and backed by huge pages while it is
// in use (conntrack.Table.Settle): for a successor that made it with
// Config.Conntrack.BasePages, once it has taken over. It returns when done (or the
// dataplane is closed): run it in a goroutine of its own.
func (d *Dataplane) SettleTable() { d.ct.Settle() }

// Hold makes the XDP program drop, instead of pass to the kernel, the frames of services
// and real servers that find no socket, for dur (bpf.Classifier.Hold).
func (d *Dataplane) Hold(dur time.Duration) error {
	if d.cls == nil {
		return errors.New("hold: no XDP program (a dataplane over given sockets)")
	}
	return d.cls.Hold(dur)
}

// HandoffLinks lists the XDP links to hand over, with their interfaces (the fds are the
// dataplane's: a keeper takes duplicates).
func (d *Dataplane) HandoffLinks() ([]AdoptLink, []HandoffIface) {
	var links []AdoptLink
	var ifcs []HandoffIface
	d.xdpMu.Lock()
	defer d.xdpMu.Unlock()
	for i, xp := range d.xdp {
		if xp == nil {
			continue // not taken over yet (Activate): the predecessor's link is not ours to pass
		}
		fd := xp.LinkFD()
		if fd < 0 {
			continue
		}
		links = append(links, AdoptLink{Ifname: d.ports[i].Name, FD: fd, Mode: xp.Mode()})
		ifcs = append(ifcs, HandoffIface{Name: d.ports[i].Name, Ifindex: d.ports[i].Ifindex, Mode: xp.Mode()})
	}
	return links, ifcs
}

// ExportHandoff copies the connection table and the persistence templates out by
// address (those of fwmark services with their mark), with the shard key and the interfaces: stop the workers first, so nothing
// changes behind it. A connection whose real server is gone from the configuration is
// left out (its packets are dropped here; the successor could not bind it), as is a
// template of a deleted service; skipped counts them.
func (d *Dataplane) ExportHandoff() (h *Handoff, skipped int) {
	h = &Handoff{Written: time.Now(), ShardKey: d.cfg.Conntrack.ShardKey, Shards: d.ct.Shards()}
	_, h.Interfaces = d.HandoffLinks()
	snap := d.snap.Load()
	if snap == nil {
		return h, 0
	}
	svcs := make(map[uint32]*Service, len(snap.Services))
	for i := range snap.Services {
		svcs[snap.Services[i].ID] = &snap.Services[i]
	}
	now := d.now()
	h.Entries = make([]HandoffEntry, 0, d.ct.Len())
	d.ct.Walk(now, func(e *conntrack.Entry, left int64) bool {
		x := HandoffEntry{
			Proto: e.Orig.Proto, Method: e.Method, State: e.State, Left: time.Duration(left),
			Client: e.Orig.Src, CPort: e.Orig.SrcPort, VAddr: e.Orig.Dst, VPort: e.Orig.DstPort,
		}
		switch e.Method {
		case conntrack.MethodNAT:
			x.DAddr, x.DPort = e.Reply.Src, e.Reply.SrcPort
		case conntrack.MethodFullNAT:
			x.DAddr, x.DPort = e.Reply.Src, e.Reply.SrcPort
			x.LAddr, x.LPort = e.Reply.Dst, e.Reply.DstPort
		default:
			rs, ok := snap.dest(e.Dest)
			if !ok {
				skipped++
				return true
			}
			x.DAddr, x.DPort = rs.Addr, rs.Port
		}
		if _, ok := snap.dest(e.Dest); !ok {
			skipped++
			return true
		}
		if s, ok := svcs[e.Service]; ok {
			x.FWMark = s.FWMark // the packet's address and port stay: only the mark finds the service
		}
		h.Entries = append(h.Entries, x)
		return true
	})
	d.persist.walk(now, func(svc, dest uint32, client [16]byte, left int64) {
		s, ok := svcs[svc]
		rs, ok2 := snap.dest(dest)
		if !ok || !ok2 {
			skipped++
			return
		}
		h.Entries = append(h.Entries, HandoffEntry{
			Proto: s.Key.Proto, Method: rs.Method, State: conntrack.StateNone, Template: true, Left: time.Duration(left),
			Client: client, VAddr: s.Key.Addr, VPort: s.Key.Port, DAddr: rs.Addr, DPort: rs.Port,
			FWMark: s.FWMark, // a fwmark service's Key: protocol 0, its family's zero address, port 0
		})
	})
	return h, skipped
}

// HandoffImport counts what ImportHandoff did with the entries.
type HandoffImport struct {
	Conns, Templates int            // applied
	Expired          int            // whose time ran out between the writing and now
	Refused          map[string]int // not applied, by reason
}

// ImportHandoff applies the handed-over entries to the table and the templates, as a
// sync backup applies a master's (ApplySync: services and real servers by address, in
// the configuration published now), with their timers less the time since the handoff
// was written. Publish the rules first. Entries that do not fit (no such service or
// real server any more, table full, a FULLNAT entry of another shard layout) are
// counted by reason, the rest applied.
func (d *Dataplane) ImportHandoff(h *Handoff) HandoffImport {
	res := HandoffImport{Refused: map[string]int{}}
	elapsed := max(time.Since(h.Written), 0)
	for i := range h.Entries {
		e := &h.Entries[i]
		left := e.Left - elapsed
		if left <= 0 {
			res.Expired++
			continue
		}
		c := SyncConn{
			Proto: e.Proto, Template: e.Template, Method: e.Method, State: e.State,
			// ApplySync takes seconds: round up, so nothing ends early.
			Timeout: uint32(min((left+time.Second-1)/time.Second, conntrack.MaxTimeout)),
			Client:  e.Client, CPort: e.CPort, VAddr: e.VAddr, VPort: e.VPort,
			DAddr: e.DAddr, DPort: e.DPort, LAddr: e.LAddr, LPort: e.LPort,
			FWMark: e.FWMark, // found by the mark first, as ApplySync does for a master's entries
		}
		if err := d.ApplySync(&c); err != nil {
			res.Refused[handoffReason(err)]++
			continue
		}
		if e.Template {
			res.Templates++
		} else {
			res.Conns++
		}
	}
	return res
}

func handoffReason(err error) string {
	switch {
	case errors.Is(err, ErrSyncNoService):
		return "no_service"
	case errors.Is(err, ErrSyncNoDest):
		return "no_dest"
	case errors.Is(err, ErrSyncNoPersist):
		return "not_persistent"
	case errors.Is(err, conntrack.ErrFull):
		return "table_full"
	case errors.Is(err, conntrack.ErrExists):
		return "exists"
	case errors.Is(err, conntrack.ErrShardMismatch):
		return "shard_mismatch"
	}
	return "invalid"
}
