package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is one unicast route as the dataplane uses it. Addresses are 16-byte (IPv4
// mapped); Bits counts in that 128-bit space (an IPv4 /24 is 120).
type Route struct {
	Dst     [16]byte
	Bits    uint8
	Ifindex int32
	Gateway [16]byte
	HasGW   bool
	// Src is the director's source address for packets it originates on this route
	// (tunnel outer headers, ICMP errors): the route's preferred source if it has one,
	// else NewFIBWithLinks picks one of the egress interface's addresses.
	Src    [16]byte
	HasSrc bool
	// MTU of the path: the route's own, else the egress interface's; 0 = unknown.
	MTU uint32
}

// Link is what the FIB needs of an interface: its MTU and its addresses.
type Link struct {
	Ifindex int32
	MTU     uint32
	Addrs   []netip.Prefix
}

// NeighKey is a neighbour: an address on an interface.
type NeighKey struct {
	Ifindex int32
	Addr    [16]byte
}

// FIB is an immutable copy of the routes and neighbours the dataplane needs: the main
// table's unicast routes, longest prefix first, and the resolved neighbours.
type FIB struct {
	routes []Route
	neigh  map[NeighKey][6]byte
	// gen is unique to this FIB (never 0): workers' next-hop caches (nexthop.go) hold
	// answers of the FIB with their generation and trust them only while it is current.
	gen uint64
}

// fibGens numbers FIBs as they are built.
var fibGens atomic.Uint64

// NewFIB builds a FIB; routes may come in any order.
func NewFIB(routes []Route, neigh map[NeighKey][6]byte) *FIB {
	return NewFIBWithLinks(routes, neigh, nil)
}

// NewFIBWithLinks builds a FIB and completes each route's source address and MTU from
// its egress link: the source is the link's address of the route's family whose prefix
// holds the next hop, else its first address of that family that is not a host route
// (/32, /128: VIPs), else its first of that family.
func NewFIBWithLinks(routes []Route, neigh map[NeighKey][6]byte, links []Link) *FIB {
	r := append([]Route(nil), routes...)
	sort.SliceStable(r, func(i, j int) bool { return r[i].Bits > r[j].Bits })
	byIf := make(map[int32]*Link, len(links))
	for i := range links {
		byIf[links[i].Ifindex] = &links[i]
	}
	for i := range r {
		r[i].Dst = maskAddr(r[i].Dst, r[i].Bits)
		l := byIf[r[i].Ifindex]
		if l == nil {
			continue
		}
		if r[i].MTU == 0 {
			r[i].MTU = l.MTU
		}
		if !r[i].HasSrc {
			r[i].Src, r[i].HasSrc = pickSource(&r[i], l.Addrs)
		}
	}
	if neigh == nil {
		neigh = map[NeighKey][6]byte{}
	}
	return &FIB{routes: r, neigh: neigh, gen: fibGens.Add(1)}
}

func maskAddr(a [16]byte, bits uint8) [16]byte {
	for i := 0; i < 16; i++ {
		switch {
		case int(bits) >= (i+1)*8:
		case int(bits) <= i*8:
			a[i] = 0
		default:
			a[i] &= byte(0xff << (8 - (int(bits) - i*8)))
		}
	}
	return a
}

func prefixMatch(a, p [16]byte, bits uint8) bool {
	full := int(bits) / 8
	for i := 0; i < full; i++ {
		if a[i] != p[i] {
			return false
		}
	}
	if rem := bits % 8; rem != 0 {
		m := byte(0xff << (8 - rem))
		if a[full]&m != p[full] {
			return false
		}
	}
	return true
}

// Lookup returns the egress interface and next hop for dst: the longest matching route,
// its gateway if it has one, else dst itself.
func (f *FIB) Lookup(dst [16]byte) (ifindex int32, nexthop [16]byte, ok bool) {
	for i := range f.routes {
		r := &f.routes[i]
		if prefixMatch(dst, r.Dst, r.Bits) {
			if r.HasGW {
				return r.Ifindex, r.Gateway, true
			}
			return r.Ifindex, dst, true
		}
	}
	return 0, dst, false
}

// route returns the longest matching route for dst, or nil.
func (f *FIB) route(dst *[16]byte) *Route {
	for i := range f.routes {
		if prefixMatch(*dst, f.routes[i].Dst, f.routes[i].Bits) {
			return &f.routes[i]
		}
	}
	return nil
}

// pickSource chooses the director's address for packets sent on route r.
func pickSource(r *Route, addrs []netip.Prefix) ([16]byte, bool) {
	v4 := packetIsV4(r.Dst)
	nh := netip.AddrFrom16(r.Dst).Unmap()
	if r.HasGW {
		nh = netip.AddrFrom16(r.Gateway).Unmap()
	}
	var host, other netip.Addr
	for _, p := range addrs {
		a := p.Addr().Unmap()
		if a.Is4() != v4 {
			continue
		}
		if p.Masked().Contains(nh) && p.Bits() < a.BitLen() {
			return a.As16(), true
		}
		if p.Bits() < a.BitLen() && !other.IsValid() {
			other = a
		}
		if !host.IsValid() {
			host = a
		}
	}
	if other.IsValid() {
		return other.As16(), true
	}
	if host.IsValid() {
		return host.As16(), true
	}
	return [16]byte{}, false
}

func packetIsV4(a [16]byte) bool { return netip.AddrFrom16(a).Is4In6() }

// Neighbour returns the MAC address of a resolved neighbour.
func (f *FIB) Neighbour(ifindex int32, addr [16]byte) ([6]byte, bool) {
	m, ok := f.neigh[NeighKey{Ifindex: ifindex, Addr: addr}]
	return m, ok
}

// Routes returns a copy of the routes, longest prefix first.
func (f *FIB) Routes() []Route { return append([]Route(nil), f.routes...) }

// fibWatcher keeps a *FIB current from the kernel through netlink and resolves neighbours
// on request.
type fibWatcher struct {
	log     *slog.Logger
	fib     atomic.Pointer[FIB]
	resolve chan NeighKey
	dirty   chan struct{}

	mu      sync.Mutex
	pending map[NeighKey]time.Time // last resolution request per neighbour
	errors  atomic.Uint64
	// resubscribed counts subscriptions renewed after they ended on their own (watch).
	resubscribed atomic.Uint64

	// onLocals, when set, receives the director's own addresses whenever they change
	// (the XDP program leaves real servers' answers to them to the kernel).
	onLocals   func([]netip.Addr) error
	lastLocals string
	// onLinks, when set, receives the link list on every reload (the XDP programs'
	// destination MACs, macs.go).
	onLinks func([]netlink.Link) error

	// wg counts the goroutines start runs; they end once ctx has ended and every
	// subscription has closed its channel (Dataplane.Close waits for them).
	wg sync.WaitGroup
}

func newFIBWatcher(log *slog.Logger) *fibWatcher {
	w := &fibWatcher{
		log:     log,
		resolve: make(chan NeighKey, 1024),
		dirty:   make(chan struct{}, 1),
		pending: map[NeighKey]time.Time{},
	}
	w.fib.Store(NewFIB(nil, nil))
	return w
}

// start loads the tables, subscribes to changes and serves resolution requests until ctx
// ends. The first load happens before start returns.
func (w *fibWatcher) start(ctx context.Context) error {
	if err := w.reload(); err != nil {
		return err
	}
	done := ctx.Done()
	onErr := func(err error) {
		if ctx.Err() != nil {
			// Stopping. The library closes each subscription's socket when done is
			// closed (never before), and its receive loop then reports the read it
			// was blocked in: the EAGAIN of its last recvfrom ("resource temporarily
			// unavailable"), or a closed file. That is the subscription ending as
			// asked, not an error.
			w.log.Debug("netlink subscription closed", "err", err)
			return
		}
		w.errors.Add(1)
		w.log.Warn("netlink subscription error", "err", err)
		w.markDirty()
	}
	// A socket buffer that holds a burst of updates (a few thousand neighbours or
	// routes): when the kernel cannot queue one it drops it and the next read fails
	// with ENOBUFS. SO_RCVBUFFORCE needs CAP_NET_ADMIN, which xlvsd has; without it
	// the subscription goes on with the default buffer.
	const rcvbuf = 4 << 20
	force := true
	try := func(sub func(size int, force bool) error) error {
		if err := sub(rcvbuf, force); err == nil || !force {
			return err
		}
		force = false
		return sub(0, false)
	}
	if err := watch(w, ctx, "routes", 256, func(ch chan netlink.RouteUpdate, done <-chan struct{}) error {
		return try(func(size int, force bool) error {
			return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: size, ReceiveBufferForceSize: force})
		})
	}); err != nil {
		return err
	}
	if err := watch(w, ctx, "neighbours", 256, func(ch chan netlink.NeighUpdate, done <-chan struct{}) error {
		return try(func(size int, force bool) error {
			return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: size, ReceiveBufferForceSize: force})
		})
	}); err != nil {
		return err
	}
	if err := watch(w, ctx, "links", 64, func(ch chan netlink.LinkUpdate, done <-chan struct{}) error {
		return try(func(size int, force bool) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: size, ReceiveBufferForceSize: force})
		})
	}); err != nil {
		return err
	}
	if err := watch(w, ctx, "addresses", 64, func(ch chan netlink.AddrUpdate, done <-chan struct{}) error {
		return try(func(size int, force bool) error {
			return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: size, ReceiveBufferForceSize: force})
		})
	}); err != nil {
		return err
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(30 * time.Second) // safety net: a lost update heals within this
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-w.dirty:
				time.Sleep(2 * time.Millisecond) // coalesce bursts of updates
			case <-tick.C:
			case k := <-w.resolve:
				w.doResolve(k)
				continue
			}
			if err := w.reload(); err != nil {
				w.errors.Add(1)
				w.log.Warn("reload routes and neighbours", "err", err)
			}
		}
	}()
	return nil
}

// watch keeps one netlink subscription alive until ctx ends: it reads the updates (each
// marks the FIB dirty: reloaded shortly) and, when the subscription ends on its own —
// the library ends one at its first receive error, ENOBUFS when the kernel dropped
// updates it could not queue — subscribes again and has the FIB reloaded, so that what
// was missed is read from the tables and later updates are heard again. Without this a
// lost subscription was healed only by the 30 s safety net. subscribe is called with a
// fresh channel and a done channel of the subscription's own (closed when it ends, which
// releases its socket).
func watch[T any](w *fibWatcher, ctx context.Context, what string, buf int, subscribe func(ch chan T, done <-chan struct{}) error) error {
	sub := func() (chan T, context.CancelFunc, error) {
		sctx, cancel := context.WithCancel(ctx)
		ch := make(chan T, buf)
		if err := subscribe(ch, sctx.Done()); err != nil {
			cancel()
			return nil, nil, err
		}
		return ch, cancel, nil
	}
	ch, cancel, err := sub()
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", what, err)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		backoff := 10 * time.Millisecond
		for {
			// Read until the subscription closes its channel (after done, or after a
			// receive error): a subscription blocked sending to a full channel would
			// otherwise never see its socket closed.
			for range ch {
				if ctx.Err() == nil {
					w.markDirty()
				}
			}
			cancel()
			for {
				if ctx.Err() != nil {
					return
				}
				w.resubscribed.Add(1)
				w.markDirty()
				if ch, cancel, err = sub(); err == nil {
					w.log.Info("netlink subscription renewed", "what", what)
					backoff = 10 * time.Millisecond
					break
				}
				w.errors.Add(1)
				w.log.Warn("netlink subscription lost, retrying", "what", what, "err", err, "in", backoff.String())
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, time.Second)
			}
		}
	}()
	return nil
}

func (w *fibWatcher) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// request asks for neighbour resolution without blocking; called from workers.
func (w *fibWatcher) request(k NeighKey) {
	select {
	case w.resolve <- k:
	default:
	}
}

// doResolve asks the kernel to resolve a neighbour (ARP / neighbour discovery), at most
// once per 100 ms per neighbour: a netlink neighbour "use" (NTF_USE) starts resolution
// exactly as traffic from the kernel itself would.
func (w *fibWatcher) doResolve(k NeighKey) {
	now := time.Now()
	w.mu.Lock()
	last, seen := w.pending[k]
	if seen && now.Sub(last) < 100*time.Millisecond {
		w.mu.Unlock()
		return
	}
	w.pending[k] = now
	if len(w.pending) > 4096 {
		for pk, t := range w.pending {
			if now.Sub(t) > 10*time.Second {
				delete(w.pending, pk)
			}
		}
	}
	w.mu.Unlock()
	ip := addrToIP(k.Addr)
	n := &netlink.Neigh{LinkIndex: int(k.Ifindex), IP: ip, Flags: netlink.NTF_USE}
	if ip.To4() != nil {
		n.Family = unix.AF_INET
	} else {
		n.Family = unix.AF_INET6
	}
	if err := netlink.NeighSet(n); err != nil {
		w.errors.Add(1)
		w.log.Debug("resolve neighbour", "addr", ip, "ifindex", k.Ifindex, "err", err)
	}
}

// Resolve requests resolution of addr's next hop now (control plane: called when a real
// server is added so its MAC is known before the first packet).
func (w *fibWatcher) Resolve(addr [16]byte) {
	f := w.fib.Load()
	if ifx, nh, ok := f.Lookup(addr); ok {
		if _, ok := f.Neighbour(ifx, nh); !ok {
			w.doResolve(NeighKey{Ifindex: ifx, Addr: nh})
		}
	}
}

func addrToIP(a [16]byte) net.IP {
	ad := netip.AddrFrom16(a).Unmap()
	return net.IP(ad.AsSlice())
}

func ipTo16(ip net.IP) ([16]byte, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return [16]byte{}, false
	}
	return a.As16(), true
}

// reload reads the main routing table and the neighbour table and publishes a new FIB.
func (w *fibWatcher) reload() error {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	var routes []Route
	for _, r := range rs {
		if r.Type != unix.RTN_UNICAST || r.LinkIndex == 0 && len(r.MultiPath) == 0 {
			continue
		}
		var rt Route
		ifx := r.LinkIndex
		gw := r.Gw
		if len(r.MultiPath) > 0 { // ECMP: use the first hop (one path per destination)
			ifx, gw = r.MultiPath[0].LinkIndex, r.MultiPath[0].Gw
		}
		rt.Ifindex = int32(ifx)
		if r.Dst != nil {
			a, ok := ipTo16(r.Dst.IP)
			if !ok {
				continue
			}
			ones, bits := r.Dst.Mask.Size()
			rt.Dst = a
			rt.Bits = uint8(ones + (128 - bits))
		} else if r.Family == unix.AF_INET {
			rt.Dst = netip.IPv4Unspecified().As16()
			rt.Bits = 96
		} else {
			rt.Bits = 0
		}
		if gw != nil {
			if a, ok := ipTo16(gw); ok {
				rt.Gateway, rt.HasGW = a, true
			}
		}
		if r.Src != nil {
			if a, ok := ipTo16(r.Src); ok {
				rt.Src, rt.HasSrc = a, true
			}
		}
		if r.MTU > 0 {
			rt.MTU = uint32(r.MTU)
		}
		routes = append(routes, rt)
	}
	ns, err := netlink.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	neigh := make(map[NeighKey][6]byte, len(ns))
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	for _, n := range ns {
		if n.State&usable == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		a, ok := ipTo16(n.IP)
		if !ok {
			continue
		}
		var mac [6]byte
		copy(mac[:], n.HardwareAddr)
		neigh[NeighKey{Ifindex: int32(n.LinkIndex), Addr: a}] = mac
	}
	links, ls, err := readLinks()
	if err != nil {
		return err
	}
	w.fib.Store(NewFIBWithLinks(routes, neigh, links))
	if w.onLocals != nil {
		var locals []netip.Addr
		for _, l := range links {
			for _, p := range l.Addrs {
				locals = append(locals, p.Addr())
			}
		}
		slices.SortFunc(locals, func(a, b netip.Addr) int { return a.Compare(b) })
		if key := fmt.Sprint(locals); key != w.lastLocals {
			if err := w.onLocals(locals); err != nil {
				return fmt.Errorf("update the XDP program's local addresses: %w", err)
			}
			w.lastLocals = key
		}
	}
	if w.onLinks != nil {
		if err := w.onLinks(ls); err != nil {
			return fmt.Errorf("update the XDP programs' destination MACs: %w", err)
		}
	}
	return nil
}

// readLinks reads every interface's MTU and usable addresses (not tentative, not
// deprecated), and returns netlink's list too.
func readLinks() ([]Link, []netlink.Link, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, nil, err
	}
	as, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Link, 0, len(ls))
	idx := make(map[int]int, len(ls))
	for _, l := range ls {
		idx[l.Attrs().Index] = len(out)
		out = append(out, Link{Ifindex: int32(l.Attrs().Index), MTU: uint32(l.Attrs().MTU)})
	}
	for _, a := range as {
		i, ok := idx[a.LinkIndex]
		if !ok || a.IPNet == nil || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DEPRECATED|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		ip = ip.Unmap()
		out[i].Addrs = append(out[i].Addrs, netip.PrefixFrom(ip, ones))
	}
	return out, ls, nil
}
