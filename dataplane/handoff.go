package dataplane

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
)

// Restart handoff (hitless restart and upgrade). A stopping xlvsd stops its workers
// (StopWorkers), holds the XDP program (Hold: frames of the services that find no socket
// are dropped, not passed to the kernel's stack, which would reset NAT connections),
// writes its connections and templates by address (ExportHandoff, plus the statistics
// the control plane adds, EncodeHandoff) and hands them with its XDP links
// (HandoffLinks) to a keeper before it exits. Its successor adopts the links
// (Config.Adopt: its own program instance, loaded beside the running one), opens and
// registers its sockets, restores the rules, imports the table (ImportHandoff: by
// address, so service and real-server IDs need not match) and only then swaps its
// program onto the links (Activate). From the hold to the swap, frames of the services
// are dropped and counted (bpf Counters.Held); TCP retransmits them.
//
// Where the time goes (a successor under `systemctl restart` starts only once its
// predecessor has exited), measured on a loaded 2-vCPU VM with a 4Mi-entry table: the
// predecessor stops, holds, closes its sockets in parallel (ReleaseSockets: 8-45 ms, an
// RCU grace period per socket in the kernel) and exits; the successor creates its maps
// (bpf.New, 12 ms and more), loads a program instance per interface (10-40 ms each,
// meanwhile it opens its sockets: 10-35 ms each, their 16 MiB UMEMs populated and
// pinned), restores the rules (2-9 ms), imports (0.2 ms) and activates (15-30 ms). The
// table costs nothing on that path any more: it is made while the programs load, with
// base pages (conntrack.Config.BasePages: faulting in huge pages for the first imported
// entries took 5-190 ms), and made resident later (SettleTable). And the queues are free
// when the successor binds: xsk.Socket.Close now unmaps the rings asavie leaves mapped,
// which had kept the predecessor's sockets (and EBUSY) until its exit.
//
// Why frames are dropped, not kept, in between (issue 16 asks that they be queued in the
// kernel's rings). XDP has no verdict that keeps a frame for later: it can drop, pass
// (to the stack, which would reset NAT connections), transmit or redirect, and the only
// kernel buffer a redirected frame can wait in for userspace is an AF_XDP socket's RX
// ring, whose frame lands in that socket's UMEM. The predecessor's sockets would do
// (handed over as its links are, they would stay bound), but their UMEM is asavie/xdp
// v0.3.3's private anonymous mapping (MAP_PRIVATE|MAP_ANONYMOUS, registered by
// NewSocket), which no other process can map: the successor could read the RX ring's descriptors (the
// rings are mappable from the socket) but not the frames. It cannot bind a socket of its
// own beside them either: the kernel refuses a second UMEM on a queue that has one
// (EBUSY from xp_assign_dev), and XDP_SHARED_UMEM on the same queue means using the
// owner's UMEM memory and its fill and completion rings, the same dead end. Keeping the
// predecessor forwarding until the successor can bind only moves the gap: the queue is
// free only after the predecessor's socket is released, and under a plain restart the
// successor starts after the exit anyway. What would keep every frame: dataplane/xsk
// setting up its sockets itself with the UMEM in a memfd (MAP_SHARED), the predecessor
// handing the socket fds and the memfd to the successor with its links, and the
// successor mapping both and carrying on at the rings' indices (frame ownership — free
// list, fill ring, TX and completion — handed over too): no queue is released, and the
// frames arriving meanwhile wait in the RX ring, as many as the fill ring had posted
// (FillRing, 2048 by default). That replaces asavie's NewSocket and is left for an issue
// of its own. Until then the gap is minimised, and a TCP connection that loses a segment
// in it waits for its retransmission timer (at least 200 ms on Linux), however short the
// gap.

// AdoptLink is an XDP link handed over by a predecessor: Config.Adopt.
type AdoptLink struct {
	Ifname string
	FD     int      // the bpf_link; stays the caller's (the dataplane holds a duplicate)
	Mode   bpf.Mode // the predecessor's attach mode
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
	for i, xp := range d.xdp {
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
