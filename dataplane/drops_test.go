package dataplane

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
	"xlvs/sched"
)

// The worker's drop paths, one case per reason: the packet is not sent (or, for no_dest,
// answered with an ICMP error), exactly the counter named for the reason moves, and
// every frame of both sockets is back (the worker frees what it drops).

// dropOpts shape a two-armed NAT dataplane over fake sockets (see newRig).
type dropOpts struct {
	extCfg, intCfg   xsk.Config // zero: smallCfg
	wrapExt, wrapInt func(*xsk.Fake) xsk.Socket
	entries          int    // connection table; 0: 1<<16
	dests            []Dest // 0: one NAT real server, rs1:8080
	routes           []Route
	neigh            map[NeighKey][6]byte
}

var smallCfg = xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 256, CompRing: 256, RxRing: 256, TxRing: 256}

// dropRig is the rig the drop tests use.
type dropRig = rig

func defaultRoutes() []Route {
	d1, b1 := prefix("198.18.1.0/24")
	d2, b2 := prefix("198.18.2.0/24")
	return []Route{{Dst: d1, Bits: b1, Ifindex: ifExt}, {Dst: d2, Bits: b2, Ifindex: ifInt}}
}

func defaultNeigh() map[NeighKey][6]byte {
	return map[NeighKey][6]byte{
		{Ifindex: ifExt, Addr: a16(client)}: macClient,
		{Ifindex: ifInt, Addr: a16(rs1)}:    macRS1,
	}
}

func newDropRig(t *testing.T, o dropOpts) *dropRig {
	t.Helper()
	if o.entries == 0 {
		o.entries = 1 << 16
	}
	if o.routes == nil {
		o.routes = defaultRoutes()
	}
	if o.neigh == nil {
		o.neigh = defaultNeigh()
	}
	if o.dests == nil {
		o.dests = []Dest{{ID: 1, Addr: a16(rs1), Port: 8080, Method: conntrack.MethodNAT, Weight: 1}}
	}
	ports := []rigPort{
		{name: "ext0", ifindex: ifExt, mac: macDirExt, sock: o.extCfg, wrap: o.wrapExt},
		{name: "int0", ifindex: ifInt, mac: macDirInt, sock: o.intCfg, wrap: o.wrapInt},
	}
	return newRigSpec(t, rigSpec{
		ports:    ports,
		cfg:      Config{Socket: smallCfg, Conntrack: conntrack.Config{MaxEntries: o.entries}},
		routes:   o.routes,
		neigh:    o.neigh,
		services: services(t, "rr", SvcKey{Addr: a16(vip), Port: 80}, o.dests, nil, []uint8{6, 17}, []uint32{6, 17}),
	})
}

// checkFrames: every frame of both sockets is free, in a ring, or completing.
func (r *dropRig) checkFrames(t *testing.T) {
	t.Helper()
	for name, f := range map[string]*xsk.Fake{"ext0": r.ext, "int0": r.int} {
		if got, want := f.FramesAccounted(), uint64(len(f.Umem())/f.FrameSize()); uint64(got) != want {
			t.Errorf("%s: %d frames accounted, want %d (a dropped frame was not released)", name, got, want)
		}
	}
}

var (
	udpReq = pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4000, dport: 80, udp: true, payload: []byte("ping")}
	synReq = pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4000, dport: 80, syn: true}
)

// ipv4Frame builds an Ethernet + IPv4 frame by hand (for headers gopacket will not
// write): proto, flags/fragment offset word, the IPv4 header length in bytes, and l4.
func ipv4Frame(proto uint8, fragWord uint16, ihl int, l4 []byte) []byte {
	f := make([]byte, 14+ihl+len(l4))
	copy(f[0:6], macDirExt[:])
	copy(f[6:12], macClient[:])
	f[12], f[13] = 0x08, 0x00
	ip := f[14:]
	ip[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4)))
	binary.BigEndian.PutUint16(ip[6:], fragWord)
	ip[8], ip[9] = 64, proto
	c4, v4 := client.As4(), vip.As4()
	copy(ip[12:16], c4[:])
	copy(ip[16:20], v4[:])
	if ihl >= 20 {
		packet.IPv4(ip[:ihl]).ComputeChecksum()
	}
	copy(ip[ihl:], l4)
	return f
}

// socketFunc wraps a Fake and overrides some of its methods.
type socketFunc struct {
	*xsk.Fake
	transmit func([]xsk.Desc) (int, error)
	alloc    func() (uint64, bool)
	receive  func([]xsk.Desc) int
}

func (s *socketFunc) Transmit(d []xsk.Desc) (int, error) {
	if s.transmit != nil {
		return s.transmit(d)
	}
	return s.Fake.Transmit(d)
}

func (s *socketFunc) Alloc() (uint64, bool) {
	if s.alloc != nil {
		return s.alloc()
	}
	return s.Fake.Alloc()
}

func (s *socketFunc) Receive(d []xsk.Desc) int {
	if s.receive != nil {
		return s.receive(d)
	}
	return s.Fake.Receive(d)
}

// dropCase is one way to make the worker drop a packet for reason want.
type dropCase struct {
	name   string
	opts   dropOpts
	before func(t *testing.T, r *dropRig) // traffic before the packet under test
	frames func(t *testing.T) [][]byte    // injected on ext0
	want   Drop
	n      uint64 // drops expected (default 1)
	sent   int    // frames sent back (an ICMP error)
}

// dropCases are TestDropPaths's cases (TestFrameAccounting reuses them).
func dropCases() []dropCase {
	rs6 := netip.MustParseAddr("2001:db8::11")
	return []dropCase{
		{name: "truncated Ethernet header", frames: raw(make([]byte, 10)), want: DropMalformed},
		{name: "truncated IPv4 header", frames: raw([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0, 0x45}), want: DropMalformed},
		{name: "IPv4 header length under 20", frames: func(*testing.T) [][]byte {
			f := ipv4Frame(17, 0, 20, make([]byte, 8))
			f[14] = 0x44 // IHL 4: 16 bytes
			return [][]byte{f}
		}, want: DropMalformed},
		{name: "IPv4 total length beyond the frame", frames: func(t *testing.T) [][]byte {
			f := build(t, udpReq)
			binary.BigEndian.PutUint16(f[16:], 1400)
			packet.IPv4(f[14:34]).ComputeChecksum()
			return [][]byte{f}
		}, want: DropMalformed},
		{name: "truncated UDP header", frames: raw(ipv4Frame(17, 0, 20, make([]byte, 4))), want: DropMalformed},
		{name: "truncated TCP header", frames: raw(ipv4Frame(6, 0, 20, make([]byte, 12))), want: DropMalformed},
		{name: "ARP", frames: raw(append(make([]byte, 12), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)), want: DropNotTCPUDP},
		{name: "GRE to the VIP", frames: raw(ipv4Frame(47, 0, 20, make([]byte, 8))), want: DropNotTCPUDP},
		{name: "later fragment of no datagram seen", frames: raw(ipv4Frame(17, 100, 20, make([]byte, 16))), want: DropFragment},
		{name: "no such service", frames: one(pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1, dport: 81, syn: true}), want: DropNoService},
		{name: "TCP without SYN and no connection", frames: one(pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1, dport: 80, ack: true}), want: DropNoConn},
		{name: "real server's packet of no connection", frames: func(t *testing.T) [][]byte {
			return [][]byte{build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 2, ack: true})}
		}, want: DropNoReplyConn},
		{name: "no real server: port unreachable", opts: dropOpts{dests: []Dest{}}, frames: one(udpReq), want: DropNoDest, sent: 1},
		{name: "TTL expired: time exceeded", frames: one(pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 3, dport: 80, udp: true, ttl: 1}), want: DropTTLExpired, sent: 1},
		{name: "no route to the real server", opts: dropOpts{routes: defaultRoutes()[:1]}, frames: one(udpReq), want: DropNoRoute},
		{name: "route through an interface xlvsd does not run on", opts: dropOpts{routes: func() []Route {
			rt := defaultRoutes()
			rt[1].Ifindex = 99
			return rt
		}()}, frames: one(udpReq), want: DropNotManaged},
		{name: "no free frame on the egress socket", opts: dropOpts{wrapInt: func(f *xsk.Fake) xsk.Socket {
			return &socketFunc{Fake: f, alloc: func() (uint64, bool) { return 0, false }}
		}}, frames: one(udpReq), want: DropNoFrame},
		{name: "egress TX ring full", opts: dropOpts{wrapInt: func(f *xsk.Fake) xsk.Socket {
			return &socketFunc{Fake: f, transmit: func(d []xsk.Desc) (int, error) { return 0, nil }}
		}}, frames: one(udpReq), want: DropTxFull},
		{name: "egress link down", opts: dropOpts{wrapInt: func(f *xsk.Fake) xsk.Socket {
			return &socketFunc{Fake: f, transmit: func(d []xsk.Desc) (int, error) { return 0, xsk.ErrLinkDown }}
		}}, frames: one(udpReq), want: DropTxError},
		{name: "larger than an egress frame", opts: dropOpts{extCfg: xsk.Config{Frames: 1024, FrameSize: 4096, FillRing: 256, CompRing: 256, RxRing: 256, TxRing: 256}},
			frames: one(pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5, dport: 80, udp: true, payload: make([]byte, 2500)}), want: DropTooBig},
		{name: "real server deleted", before: func(t *testing.T, r *dropRig) {
			r.ext.Inject(build(t, udpReq))
			r.settle()
			if n := len(r.int.Sent()); n != 1 {
				t.Fatalf("first packet: %d sent, want 1 (drops %v)", n, r.drops())
			}
			s, err := NewSnapshot([]Service{{ID: 17, Key: SvcKey{Addr: a16(vip), Port: 80, Proto: 17}, Sched: mustSched(t)}})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.dp.Publish(s); err != nil {
				t.Fatal(err)
			}
		}, frames: one(udpReq), want: DropDestGone},
		{name: "DR to a real server of the other family", opts: dropOpts{dests: []Dest{{ID: 1, Addr: a16(rs6), Port: 80, Method: conntrack.MethodDR, Weight: 1}}},
			frames: one(udpReq), want: DropBadMethod},
		{name: "TUN without a source address on the egress interface", opts: dropOpts{dests: []Dest{{ID: 1, Addr: a16(rs1), Port: 80, Method: conntrack.MethodTUN, Weight: 1}}},
			frames: one(udpReq), want: DropNoSource},
		{name: "TUN with no headroom in the frame", opts: dropOpts{
			dests: []Dest{{ID: 1, Addr: a16(rs1), Port: 80, Method: conntrack.MethodTUN, Weight: 1}},
			routes: func() []Route {
				rt := defaultRoutes()
				rt[1].Src, rt[1].HasSrc = a16(netip.MustParseAddr("198.18.2.1")), true
				return rt
			}(),
			wrapExt: func(f *xsk.Fake) xsk.Socket {
				s := &socketFunc{Fake: f}
				s.receive = func(d []xsk.Desc) int { // the data at the frame's very start
					n := f.Receive(d)
					for i := range d[:n] {
						base := d[i].Addr - d[i].Addr%uint64(f.FrameSize())
						copy(f.Umem()[base:], f.Umem()[d[i].Addr:d[i].Addr+uint64(d[i].Len)])
						d[i].Addr = base
					}
					return n
				}
				return s
			},
		}, frames: one(udpReq), want: DropNoHeadroom},
	}
}

func TestDropPaths(t *testing.T) {
	for _, tc := range dropCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := newDropRig(t, tc.opts)
			if tc.before != nil {
				tc.before(t, r)
			}
			before := r.drops()
			for _, f := range tc.frames(t) {
				if !r.ext.Inject(f) {
					t.Fatal("inject refused")
				}
			}
			r.settle()
			got := r.drops()
			want := tc.n
			if want == 0 {
				want = 1
			}
			if got[tc.want.String()]-before[tc.want.String()] != want {
				t.Errorf("%s drops %d, want %d (all: %v)", tc.want, got[tc.want.String()]-before[tc.want.String()], want, got)
			}
			for k, v := range got {
				if k != tc.want.String() && v != before[k] {
					t.Errorf("drop counter %s moved too (%d -> %d)", k, before[k], v)
				}
			}
			sent := len(r.ext.Sent()) + len(r.int.Sent())
			if sent != tc.sent {
				t.Errorf("%d frames sent, want %d", sent, tc.sent)
			}
			r.checkFrames(t)
		})
	}
}

// TestDropTableFull: once every entry of a shard of the table is ESTABLISHED, a new
// connection hashed to it is dropped as table_full, its frame released.
func TestDropTableFull(t *testing.T) {
	r := newDropRig(t, dropOpts{entries: 64})
	full := false
	for i := 0; i < 512 && !full; i++ {
		syn := synReq
		syn.sport = uint16(10000 + i)
		r.ext.Inject(build(t, syn))
		r.settle()
		if d := r.drops(); d["table_full"] > 0 {
			if d["table_full"] != 1 || len(d) != 1 {
				t.Fatalf("drops %v, want one table_full", d)
			}
			// The table refused (no entry was evicted: all are ESTABLISHED) with the i
			// connections before held. A shard fills first: at least one has room.
			if st := r.dp.ct.Stats(); st.Full != 1 || st.Evicted != 0 || st.Entries != i || i == 0 || i >= 64 {
				t.Fatalf("after %d connections: table stats %+v, want one refusal, no eviction, %d entries", i, st, i)
			}
			full = true
			break
		}
		ack := syn
		ack.syn, ack.ack = false, true
		r.ext.Inject(build(t, ack)) // the client's ACK: ESTABLISHED
		r.settle()
		if n := len(r.int.Sent()); n != 2 {
			t.Fatalf("connection %d: %d frames forwarded, want 2 (drops %v)", i, n, r.drops())
		}
	}
	if !full {
		t.Fatal("no table_full drop after 512 established connections in a 64-entry table")
	}
	r.checkFrames(t)
}

func raw(frames ...[]byte) func(*testing.T) [][]byte {
	return func(*testing.T) [][]byte { return frames }
}

func one(p pkt) func(*testing.T) [][]byte {
	return func(t *testing.T) [][]byte { return [][]byte{build(t, p)} }
}

func mustSched(t *testing.T) sched.Scheduler {
	t.Helper()
	s, err := sched.New("rr", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDropCrowded: a new connection from a client endpoint that already has about 256
// (the connection table refuses it with ErrCrowded) is dropped as crowded, its frame
// released; another endpoint of the same client still connects.
func TestDropCrowded(t *testing.T) {
	r := newDropRig(t, dropOpts{})
	crowd(t, r)
	r.ext.Inject(build(t, synReq))
	r.settle()
	if d := r.drops(); d["crowded"] != 1 || len(d) != 1 {
		t.Fatalf("drops %v, want one crowded", d)
	}
	if n := len(r.int.Sent()); n != 0 {
		t.Fatalf("%d frames forwarded, want none", n)
	}
	syn := synReq
	syn.sport++
	r.ext.Inject(build(t, syn))
	r.settle()
	if n := len(r.int.Sent()); n != 1 {
		t.Fatalf("a SYN from another port: %d frames forwarded, want 1 (drops %v)", n, r.drops())
	}
	r.checkFrames(t)
}

// crowd inserts NAT connections of synReq's client endpoint to other ports (as to a
// port-0 service) until the connection table refuses one with ErrCrowded.
func crowd(t *testing.T, r *dropRig) {
	t.Helper()
	for i := 0; ; i++ {
		if i > 1024 {
			t.Fatal("no ErrCrowded after 1024 connections of one client endpoint")
		}
		e := conntrack.Entry{
			Orig:   conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: synReq.sport, DstPort: uint16(1000 + i), Proto: 6},
			Reply:  conntrack.Key{Src: a16(rs1), Dst: a16(client), SrcPort: uint16(1000 + i), DstPort: synReq.sport, Proto: 6},
			Dest:   1,
			Method: conntrack.MethodNAT,
		}
		err := r.dp.ct.Insert(&e, conntrack.TCPSyn, r.dp.now())
		if errors.Is(err, conntrack.ErrCrowded) {
			return
		}
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
}
