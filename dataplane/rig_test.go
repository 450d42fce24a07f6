package dataplane

// The dataplane's one unit-test rig: a Dataplane and its worker over in-memory
// xsk.Fake sockets, with the services, real servers, routes and neighbours a test
// gives (rigSpec), or one of the standard layouts below:
//
//   - two-armed (newRig, newFNRig): clients on ext0 (198.18.1.0/24, fd00:1::/64), real
//     servers on int0 (198.18.2.0/24, fd00:2::/64), NAT or FULLNAT real servers on 8080;
//   - one-armed L2 (newL2Rig): clients, director and real servers on eth0
//     (198.18.0.0/24, fd00::/64), as DR and TUN use it, real servers on port 80.
//
// A test injects frames (rig.ext/int/eth.Inject), runs the worker (poll, drain), reads
// what each port transmitted (Sent) and the counters (drops). Every rig's cleanup
// settles the worker (expiring held frames) and runs xsk.Fake.CheckFrames on each
// socket: a frame the worker lost or gave back twice fails the test that leaked it.
// The golden frame tables (golden_test.go) run on these layouts.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
	"xlvs/sched"
)

var (
	macDirExt = [6]byte{2, 0, 0, 0, 0, 1}
	macDirInt = [6]byte{2, 0, 0, 0, 0, 2}
	macDir    = [6]byte{2, 0, 0, 0, 0, 9} // the one-armed director's MAC
	macClient = [6]byte{2, 0, 0, 0, 1, 1}
	macRS1    = [6]byte{2, 0, 0, 0, 2, 1}
	macRS2    = [6]byte{2, 0, 0, 0, 2, 2}

	// Two-armed layout.
	client  = netip.MustParseAddr("198.18.1.2")
	vip     = netip.MustParseAddr("198.18.1.100")
	rs1     = netip.MustParseAddr("198.18.2.11")
	rs2     = netip.MustParseAddr("198.18.2.12")
	client6 = netip.MustParseAddr("fd00:1::2")
	vip6    = netip.MustParseAddr("fd00:1::100")
	rs16    = netip.MustParseAddr("fd00:2::11")
	rs26    = netip.MustParseAddr("fd00:2::12")
	lip4a   = netip.MustParseAddr("198.18.2.50") // FULLNAT local addresses, in the real servers' subnet
	lip4b   = netip.MustParseAddr("198.18.2.51")
	lip6    = netip.MustParseAddr("fd00:2::50")

	// One-armed (L2) layout.
	l2Client  = netip.MustParseAddr("198.18.0.2")
	l2VIP     = netip.MustParseAddr("198.18.0.100")
	l2RS1     = netip.MustParseAddr("198.18.0.11")
	l2RS2     = netip.MustParseAddr("198.18.0.12")
	l2Dir     = netip.MustParseAddr("198.18.0.1")
	l2Client6 = netip.MustParseAddr("fd00::2")
	l2VIP6    = netip.MustParseAddr("fd00::100")
	l2RS16    = netip.MustParseAddr("fd00::11")
	l2RS26    = netip.MustParseAddr("fd00::12")
	l2Dir6    = netip.MustParseAddr("fd00::1")
)

const (
	ifExt = 10
	ifInt = 20
	ifL2  = 30
)

// rigSocket is every rig socket's size unless its rigPort says otherwise.
var rigSocket = xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 256, CompRing: 256, RxRing: 256, TxRing: 256}

func a16(a netip.Addr) [16]byte { return a.As16() }

func prefix(s string) (dst [16]byte, bits uint8) {
	p := netip.MustParsePrefix(s)
	bits = uint8(p.Bits())
	if p.Addr().Is4() {
		bits += 96
	}
	return p.Addr().As16(), bits
}

// routes maps "prefix" → ifindex pairs to Routes.
func routes(pairs ...any) []Route {
	var out []Route
	for i := 0; i+1 < len(pairs); i += 2 {
		d, b := prefix(pairs[i].(string))
		out = append(out, Route{Dst: d, Bits: b, Ifindex: int32(pairs[i+1].(int))})
	}
	return out
}

// rigPort is one managed interface of a rig, with one fake socket.
type rigPort struct {
	name    string
	ifindex int32
	mac     [6]byte
	sock    xsk.Config                 // zero: rigSocket
	wrap    func(*xsk.Fake) xsk.Socket // what the dataplane sees instead of the fake, if set
	// real, if set, is the port's socket instead of a fake (a real AF_XDP socket): the
	// rig's ports has nil in its place, and the cleanup leaves its frames alone.
	real xsk.Socket
}

var (
	twoArmed = []rigPort{{name: "ext0", ifindex: ifExt, mac: macDirExt}, {name: "int0", ifindex: ifInt, mac: macDirInt}}
	oneArmed = []rigPort{{name: "eth0", ifindex: ifL2, mac: macDir}}
)

// rigSpec is what a rig is built from.
type rigSpec struct {
	ports  []rigPort // nil: twoArmed
	cfg    Config    // zero Socket, Batch, Conntrack.MaxEntries: rigSocket, 32, 1<<16
	routes []Route
	neigh  map[NeighKey][6]byte
	links  []Link
	// services are published when set (a test that needs a Snapshot's other fields
	// publishes its own).
	services []Service
}

// rig is a dataplane with one worker over fake sockets.
type rig struct {
	dp    *Dataplane
	w     *worker
	ports []*xsk.Fake // in rigSpec.ports' order
	names []string
	// ext, int: the two-armed layout's ports; eth: the one-armed layout's port.
	ext, int, eth *xsk.Fake
}

// l2Rig is the name the one-armed tests (and pipeline_bench_test.go) use.
type l2Rig = rig

// newRigSpec builds a rig from spec; its cleanup checks that every frame came back.
func newRigSpec(t testing.TB, spec rigSpec) *rig {
	t.Helper()
	if spec.ports == nil {
		spec.ports = twoArmed
	}
	cfg := spec.cfg
	if cfg.Socket == (xsk.Config{}) {
		cfg.Socket = rigSocket
	}
	if cfg.Batch == 0 {
		cfg.Batch = 32
	}
	if cfg.Conntrack.MaxEntries == 0 {
		cfg.Conntrack.MaxEntries = 1 << 16
	}
	r := &rig{}
	var ports []Port
	for _, p := range spec.ports {
		if p.real != nil {
			r.ports = append(r.ports, nil)
			r.names = append(r.names, p.name)
			ports = append(ports, Port{Name: p.name, Ifindex: p.ifindex, MAC: p.mac, Sockets: []xsk.Socket{p.real}})
			continue
		}
		sc := p.sock
		if sc == (xsk.Config{}) {
			sc = rigSocket
		}
		f, err := xsk.NewFake(sc)
		if err != nil {
			t.Fatal(err)
		}
		var s xsk.Socket = f
		if p.wrap != nil {
			s = p.wrap(f)
		}
		r.ports = append(r.ports, f)
		r.names = append(r.names, p.name)
		ports = append(ports, Port{Name: p.name, Ifindex: p.ifindex, MAC: p.mac, Sockets: []xsk.Socket{s}})
	}
	dp, err := NewWithPorts(cfg, ports)
	if err != nil {
		t.Fatal(err)
	}
	r.dp, r.w = dp, dp.workers[0]
	if len(r.ports) == 1 {
		r.eth = r.ports[0]
	} else {
		r.ext, r.int = r.ports[0], r.ports[1]
	}
	dp.SetFIB(NewFIBWithLinks(spec.routes, spec.neigh, spec.links))
	if spec.services != nil {
		r.publish(t, spec.services)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return // the failure said what went wrong; a leak report would only add noise
		}
		r.quiesce()
		for i, f := range r.ports {
			if f == nil {
				continue
			}
			if err := f.CheckFrames(); err != nil {
				t.Errorf("%s: %v", r.names[i], err)
			}
		}
	})
	return r
}

// publish makes svcs the rig's snapshot.
func (r *rig) publish(t testing.TB, svcs []Service) {
	t.Helper()
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
}

// drain polls until the worker finds nothing left to receive.
func (r *rig) drain() {
	for r.w.poll() > 0 {
	}
}

// settle polls until nothing is left to receive, then once more so the fakes complete
// what was transmitted.
func (r *rig) settle() {
	r.drain()
	r.w.poll()
}

// quiesce settles and lets the frames held for a neighbour time out: the worker then
// holds no frame (the rig's cleanup checks every frame is back).
func (r *rig) quiesce() {
	r.settle()
	for i := range r.w.pend {
		r.w.pend[i].deadline = 0
	}
	r.settle()
}

// sent returns what each port transmitted since the last call, in port order.
func (r *rig) sent() [][][]byte {
	out := make([][][]byte, len(r.ports))
	for i, f := range r.ports {
		out[i] = f.Sent()
	}
	return out
}

func (r *rig) drops() map[string]uint64 { return nonzeroDrops(r.dp) }

// framesBack polls once (completions) and checks every frame of every port is back.
func (r *rig) framesBack(t *testing.T) {
	t.Helper()
	r.w.poll()
	for i, f := range r.ports {
		if err := f.CheckFrames(); err != nil {
			t.Fatalf("%s: %v", r.names[i], err)
		}
	}
}

// nonzeroDrops sums the dataplane's drop counters over its workers, leaving out zeros.
func nonzeroDrops(dp *Dataplane) map[string]uint64 {
	ws, _ := dp.Stats()
	out := map[string]uint64{}
	for _, w := range ws {
		for k, v := range w.Drops {
			if v != 0 {
				out[k] += v
			}
		}
	}
	return out
}

// services returns one service per protocol of protos (ID ids[i], key's address and
// port), each with dests scheduled by its own schedName scheduler and with laddrs.
func services(t testing.TB, schedName string, key SvcKey, dests []Dest, laddrs []Laddr, protos []uint8, ids []uint32) []Service {
	t.Helper()
	var sd []sched.Dest
	for _, d := range dests {
		sd = append(sd, d.Sched())
	}
	var svcs []Service
	for i, proto := range protos {
		s, err := sched.New(schedName, sd, 0)
		if err != nil {
			t.Fatal(err)
		}
		k := key
		k.Proto = proto
		svcs = append(svcs, Service{ID: ids[i], Key: k, Dests: dests, Sched: s, Laddrs: laddrs})
	}
	return svcs
}

// newRig is the two-armed IPv4 NAT director: TCP and UDP services VIP:80 (IDs 6 and
// 17) scheduled by schedName over rs1, rs2 (dest IDs 1, 2) on port 8080, one per weight.
func newRig(t testing.TB, schedName string, weights ...int32) *rig {
	t.Helper()
	var dests []Dest
	for i, rs := range []netip.Addr{rs1, rs2}[:len(weights)] {
		dests = append(dests, Dest{ID: uint32(i + 1), Addr: a16(rs), Port: 8080, Method: conntrack.MethodNAT, Weight: weights[i]})
	}
	return newRigSpec(t, rigSpec{
		routes: routes("198.18.1.0/24", ifExt, "198.18.2.0/24", ifInt),
		neigh: map[NeighKey][6]byte{
			{Ifindex: ifExt, Addr: a16(client)}: macClient,
			{Ifindex: ifInt, Addr: a16(rs1)}:    macRS1,
			{Ifindex: ifInt, Addr: a16(rs2)}:    macRS2,
		},
		services: services(t, schedName, SvcKey{Addr: a16(vip), Port: 80}, dests, nil, []uint8{6, 17}, []uint32{6, 17}),
	})
}

// newL2Rig is the one-armed director: services on port 80 (TCP and UDP, IPv4 IDs 1, 2
// and IPv6 IDs 3, 4), each with two real servers of the given method on port 80 (dest
// IDs 1, 2 for IPv4, 3, 4 for IPv6), scheduled round robin.
func newL2Rig(t testing.TB, method conntrack.Method) *l2Rig {
	t.Helper()
	return newL2RigSized(t, method, 1<<14)
}

// newL2RigSized is newL2Rig with a connection table of entries entries.
func newL2RigSized(t testing.TB, method conntrack.Method, entries int) *l2Rig {
	t.Helper()
	return newRigSpec(t, l2Spec(t, method, entries, oneArmed))
}

// l2Spec is newL2RigSized's rig on ports (one port, ifindex ifL2: oneArmed, or one with a
// real socket).
func l2Spec(t testing.TB, method conntrack.Method, entries int, ports []rigPort) rigSpec {
	t.Helper()
	var svcs []Service
	for fi, fam := range [][3]netip.Addr{{l2VIP, l2RS1, l2RS2}, {l2VIP6, l2RS16, l2RS26}} {
		var dests []Dest
		for i, rs := range fam[1:] {
			dests = append(dests, Dest{ID: uint32(fi*2 + i + 1), Addr: a16(rs), Port: 80, Method: method, Weight: 1})
		}
		id := uint32(fi*2 + 1)
		var ls []Laddr
		if method == conntrack.MethodFullNAT {
			// two local addresses per family, so that a new-flow benchmark's 64 Ki
			// connections take a quarter of the (local address, port, real server) tuples
			for i, a := range l2Laddrs[fi] {
				ls = append(ls, Laddr{ID: id*10 + uint32(i), Addr: a16(a)})
			}
		}
		svcs = append(svcs, services(t, "rr", SvcKey{Addr: a16(fam[0]), Port: 80}, dests, ls, []uint8{6, 17}, []uint32{id, id + 1})...)
	}
	addrs := []netip.Prefix{netip.PrefixFrom(l2VIP, 32), netip.PrefixFrom(l2Dir, 24), netip.PrefixFrom(l2VIP6, 128), netip.PrefixFrom(l2Dir6, 64)}
	for _, fam := range l2Laddrs {
		for _, a := range fam {
			addrs = append(addrs, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return rigSpec{
		ports:  ports,
		cfg:    Config{Conntrack: conntrack.Config{MaxEntries: entries}},
		routes: routes("198.18.0.0/24", ifL2, "fd00::/64", ifL2),
		neigh: map[NeighKey][6]byte{
			{Ifindex: ifL2, Addr: a16(l2Client)}:  macClient,
			{Ifindex: ifL2, Addr: a16(l2RS1)}:     macRS1,
			{Ifindex: ifL2, Addr: a16(l2RS2)}:     macRS2,
			{Ifindex: ifL2, Addr: a16(l2Client6)}: macClient,
			{Ifindex: ifL2, Addr: a16(l2RS16)}:    macRS1,
			{Ifindex: ifL2, Addr: a16(l2RS26)}:    macRS2,
		},
		links:    []Link{{Ifindex: ifL2, MTU: 1500, Addrs: addrs}},
		services: svcs,
	}
}

// l2Laddrs are the l2 rig's FULLNAT local addresses, IPv4 and IPv6.
var l2Laddrs = [2][]netip.Addr{
	{netip.MustParseAddr("198.18.0.50"), netip.MustParseAddr("198.18.0.51")},
	{netip.MustParseAddr("fd00::50"), netip.MustParseAddr("fd00::51")},
}

// fnFamily is one address family of the two-armed dual-stack layout.
type fnFamily struct {
	name             string
	client, vip      netip.Addr
	rs1, rs2         netip.Addr
	laddrs           []netip.Addr
	svcTCP, svcUDP   uint32 // service IDs
	destID1, destID2 uint32
}

var fnFamilies = []fnFamily{
	{"v4", client, vip, rs1, rs2, []netip.Addr{lip4a, lip4b}, 1, 2, 1, 2},
	{"v6", client6, vip6, rs16, rs26, []netip.Addr{lip6}, 3, 4, 3, 4},
}

// fnOpts shape a two-armed dual-stack rig (newFNRig, newDualRig).
type fnOpts struct {
	method          conntrack.Method // set by newFNRig / newDualRig
	entries, shards int              // connection table; 0: 1<<16 entries, default shards
	oneRS           bool             // one real server per service (every connection shares RS:rport)
	noLaddrs        bool             // services without local addresses
	shardKey        [conntrack.ShardKeyLen]byte
	batch           int    // the worker's batch; 0: the rig's default
	mtu             uint32 // the MTU of the routes to the real servers' side; 0: unknown
	noTOA           bool   // Config.NoTOA
}

// fnRig is a two-armed dual-stack rig whose services (TCP and UDP port 80, IPv4 and
// IPv6) have real servers of one method on port 8080, scheduled round robin, and, for
// FULLNAT, the families' local addresses.
type fnRig struct {
	*rig
	opts fnOpts
}

// newFNRig is the two-armed dual-stack layout with FULLNAT real servers.
func newFNRig(t testing.TB, o fnOpts) *fnRig {
	t.Helper()
	return newDualRig(t, conntrack.MethodFullNAT, o)
}

// newDualRig is the two-armed dual-stack layout with real servers of method m.
func newDualRig(t testing.TB, m conntrack.Method, o fnOpts) *fnRig {
	t.Helper()
	o.method = m
	r := &fnRig{opts: o}
	rts := routes("198.18.1.0/24", ifExt, "fd00:1::/64", ifExt, "198.18.2.0/24", ifInt, "fd00:2::/64", ifInt)
	for i := range rts {
		if rts[i].Ifindex == ifInt {
			rts[i].MTU = o.mtu
		}
	}
	r.rig = newRigSpec(t, rigSpec{
		cfg:    Config{Batch: o.batch, NoTOA: o.noTOA, Conntrack: conntrack.Config{MaxEntries: o.entries, Shards: o.shards, ShardKey: o.shardKey}},
		routes: rts,
		neigh: map[NeighKey][6]byte{
			{Ifindex: ifExt, Addr: a16(client)}: macClient, {Ifindex: ifExt, Addr: a16(client6)}: macClient,
			{Ifindex: ifInt, Addr: a16(rs1)}: macRS1, {Ifindex: ifInt, Addr: a16(rs16)}: macRS1,
			{Ifindex: ifInt, Addr: a16(rs2)}: macRS2, {Ifindex: ifInt, Addr: a16(rs26)}: macRS2,
		},
	})
	if err := r.dp.Publish(r.snapshot(t, nil)); err != nil {
		t.Fatal(err)
	}
	return r
}

// rewindLports sets every worker's port cursor of every local address in use to the
// first port of its shard: two rigs then hand out the same local ports.
func (r *fnRig) rewindLports() {
	s := r.dp.Snapshot()
	for i := range s.Services {
		for _, la := range s.Services[i].Laddrs {
			if la.ports != nil {
				clear(la.ports.cur)
			}
		}
	}
}

// snapshot builds the rig's services; drop names local addresses to leave out (they
// are listed as draining).
func (r *fnRig) snapshot(t testing.TB, drop map[netip.Addr]bool) *Snapshot {
	t.Helper()
	var svcs []Service
	var draining [][16]byte
	for _, f := range fnFamilies {
		var dests []Dest
		for i, rs := range []netip.Addr{f.rs1, f.rs2} {
			if i == 1 && r.opts.oneRS {
				break
			}
			id := []uint32{f.destID1, f.destID2}[i]
			dests = append(dests, Dest{ID: id, Addr: a16(rs), Port: 8080, Method: r.opts.method, Weight: 1})
		}
		var ls []Laddr
		for i, a := range f.laddrs {
			if drop[a] {
				draining = append(draining, a16(a))
				continue
			}
			ls = append(ls, Laddr{ID: f.svcTCP*10 + uint32(i), Addr: a16(a)})
		}
		if r.opts.noLaddrs || r.opts.method != conntrack.MethodFullNAT {
			ls = nil
		}
		svcs = append(svcs, services(t, "rr", SvcKey{Addr: a16(f.vip), Port: 80}, dests, ls, []uint8{6, 17}, []uint32{f.svcTCP, f.svcUDP})...)
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	snap.Draining = draining
	return snap
}

// pkt describes a frame for build: Ethernet, IPv4 (DF set, identification id) or
// IPv6 (by the addresses' family), TCP or UDP, payload; with tun, inside an IPIP or
// ip6ip6 header.
type pkt struct {
	srcMAC, dstMAC [6]byte
	src, dst       netip.Addr
	sport, dport   uint16
	udp            bool
	syn, ack, fin  bool
	rst            bool
	payload        []byte
	ttl            uint8 // 0: 64
	id             uint16
	tun            *tunHdr
	tcpOpts        []layers.TCPOption // TCP options, in order
}

// withTOA is p with the TOA option for client:cport first among its TCP options (DPVS's
// TCP Option Address, kind 254: port, then the 4- or 16-byte address), as FULLNAT sends
// the SYN and the handshake's ACK to the real server.
func withTOA(p pkt, client netip.Addr, cport uint16) pkt {
	data := binary.BigEndian.AppendUint16(nil, cport)
	data = append(data, client.AsSlice()...)
	p.tcpOpts = append([]layers.TCPOption{{OptionType: 254, OptionLength: uint8(2 + len(data)), OptionData: data}}, p.tcpOpts...)
	return p
}

// tunHdr is the outer header of an encapsulated pkt.
type tunHdr struct {
	src, dst netip.Addr
	ttl      uint8
	id       uint16 // IPv4 identification
}

func build(t testing.TB, p pkt) []byte {
	t.Helper()
	b, err := buildFrame(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildFrame serializes p with gopacket (lengths and checksums computed by gopacket).
func buildFrame(p pkt) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(p.srcMAC[:]), DstMAC: net.HardwareAddr(p.dstMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	proto := layers.IPProtocolTCP
	if p.udp {
		proto = layers.IPProtocolUDP
	}
	ls := []gopacket.SerializableLayer{eth}
	if o := p.tun; o != nil {
		next := layers.IPProtocolIPv4
		if p.src.Is6() {
			next = layers.IPProtocolIPv6
		}
		if o.src.Is6() {
			eth.EthernetType = layers.EthernetTypeIPv6
			ls = append(ls, &layers.IPv6{Version: 6, HopLimit: o.ttl, SrcIP: o.src.AsSlice(), DstIP: o.dst.AsSlice(), NextHeader: next})
		} else {
			ls = append(ls, &layers.IPv4{Version: 4, IHL: 5, TTL: o.ttl, Id: o.id, SrcIP: o.src.AsSlice(), DstIP: o.dst.AsSlice(), Protocol: next, Flags: layers.IPv4DontFragment})
		}
	}
	var ip gopacket.NetworkLayer
	if p.src.Is6() {
		if p.tun == nil {
			eth.EthernetType = layers.EthernetTypeIPv6
		}
		v6 := &layers.IPv6{Version: 6, HopLimit: ttl, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), NextHeader: proto}
		ip = v6
		ls = append(ls, v6)
	} else {
		v4 := &layers.IPv4{Version: 4, TTL: ttl, Id: p.id, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), Protocol: proto, Flags: layers.IPv4DontFragment}
		ip = v4
		ls = append(ls, v4)
	}
	if p.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		u.SetNetworkLayerForChecksum(ip)
		ls = append(ls, u)
	} else {
		tc := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), SYN: p.syn, ACK: p.ack, FIN: p.fin, RST: p.rst, Window: 1000, Seq: 1, Options: p.tcpOpts}
		tc.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tc)
	}
	ls = append(ls, gopacket.Payload(p.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...); err != nil {
		return nil, fmt.Errorf("build %+v: %w", p, err)
	}
	return buf.Bytes(), nil
}

// unpadded is frame without the Ethernet padding gopacket adds to short frames: the
// director transmits the IP packet's length (the NIC pads), as the kernel does after
// ip_rcv trimmed the padding.
func unpadded(frame []byte) []byte {
	if len(frame) < 14+20 {
		return frame
	}
	var n int
	switch frame[14] >> 4 {
	case 4:
		n = 14 + int(binary.BigEndian.Uint16(frame[16:18]))
	case 6:
		n = 14 + 40 + int(binary.BigEndian.Uint16(frame[18:20]))
	default:
		return frame
	}
	return frame[:min(n, len(frame))]
}

// check parses a transmitted frame and verifies its checksums.
func check(t testing.TB, frame []byte) packet.Info {
	t.Helper()
	var info packet.Info
	if r := packet.Parse(frame, &info); r != packet.ResultOK {
		t.Fatalf("transmitted frame does not parse: %v", r)
	}
	if info.Family == 4 && !packet.IPv4HeaderChecksumValid(packet.IPv4(frame[info.L3Off:])) {
		t.Fatal("bad IPv4 header checksum")
	}
	if !packet.L4ChecksumValid(frame, &info) {
		t.Fatal("bad L4 checksum")
	}
	return info
}

func macOf(b []byte) [6]byte { var m [6]byte; copy(m[:], b); return m }

// frameString is frame decoded by gopacket, one layer a line.
func frameString(frame []byte) string {
	var b strings.Builder
	for _, l := range gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default).Layers() {
		fmt.Fprintf(&b, "  %s\n", gopacket.LayerString(l))
	}
	return b.String()
}

// frameDiff is "" when got and want are the same bytes, else a readable account:
// the first differing offset and, layer by layer as gopacket decodes them, the layers
// that differ (both versions).
func frameDiff(got, want []byte) string {
	if string(got) == string(want) {
		return ""
	}
	var b strings.Builder
	off := 0
	for off < min(len(got), len(want)) && got[off] == want[off] {
		off++
	}
	fmt.Fprintf(&b, "%d bytes, want %d; first difference at byte %d\n", len(got), len(want), off)
	gl := gopacket.NewPacket(got, layers.LayerTypeEthernet, gopacket.Default).Layers()
	wl := gopacket.NewPacket(want, layers.LayerTypeEthernet, gopacket.Default).Layers()
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var gs, ws string
		if i < len(gl) {
			gs = gopacket.LayerString(gl[i])
		}
		if i < len(wl) {
			ws = gopacket.LayerString(wl[i])
		}
		if gs != ws {
			fmt.Fprintf(&b, "layer %d:\n  got  %s\n  want %s\n", i, gs, ws)
		}
	}
	return b.String()
}
