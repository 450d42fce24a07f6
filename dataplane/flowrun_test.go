package dataplane

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// burstCase is one connection shape TestBurstMatchesOnePacketBatches sends bursts of.
type burstCase struct {
	method  conntrack.Method
	v6      bool
	udp     bool
	persist bool         // TestBurstAllocs: persistent services (a /24 per template)
	tun     packet.Encap // TUN: the real servers' encapsulation
	mixed   bool         // TUN: real servers of the services' other family (mixedSpec)
}

func (c burstCase) String() string {
	m := map[conntrack.Method]string{conntrack.MethodNAT: "NAT", conntrack.MethodDR: "DR", conntrack.MethodTUN: "TUN"}[c.method]
	s := fmt.Sprintf("%s/v6=%v/udp=%v", m, c.v6, c.udp)
	if c.tun != (packet.Encap{}) {
		s += fmt.Sprintf("/%v/csum=%v", c.tun.Type, c.tun.Csum)
	}
	if c.mixed {
		s += "/other-family"
	}
	if c.persist {
		s += "/persistent"
	}
	return s
}

// burstFrames returns the frames of case c for a director r that opened the
// connections (open, as burstOpen sends them): the client's flows from ports 1000 (A)
// and 1001 (B), a new connection C from port 1002, and for NAT real server rsA's replies
// to A. A's packets come in runs that the run must take (a1-a3, a6, a8, r1-r3) and ones
// it must leave to the full path: B's between them, a TTL of 1 (time exceeded) and, for
// TCP, a FIN (the connection's state changes; the packet is forwarded all the same) and
// one after it. C's first packet makes the connection that the two after it follow.
func (c burstCase) burstFrames(t *testing.T, rsA netip.Addr) [][]byte {
	client, vip := l2Client, l2VIP
	if c.v6 {
		client, vip = l2Client6, l2VIP6
	}
	req := func(sport uint16, payload string, ttl uint8, fin bool) []byte {
		return build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: sport, dport: 80,
			udp: c.udp, ack: !c.udp, fin: fin && !c.udp, ttl: ttl, payload: []byte(payload)})
	}
	fs := [][]byte{
		req(1000, "a1", 0, false), req(1000, "a2 longer", 0, false), req(1000, "a3", 0, false),
		req(1001, "b1", 0, false),
		req(1000, "a4", 0, false), req(1000, "a5 ttl 1", 1, false), req(1000, "a6", 0, false),
		req(1000, "a7 fin", 0, true), req(1000, "a8 after the fin", 0, false),
		// C opens in the batch: its first packet is scheduled, the two after it follow.
		build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: 1002, dport: 80,
			udp: c.udp, syn: !c.udp, payload: []byte("c1 opens")}),
		req(1002, "c2", 0, false), req(1002, "c3", 0, false),
	}
	if c.method == conntrack.MethodTUN {
		// A 1500-byte packet of A after a3: it fits the link (MTU 1500), not the
		// tunnel, so it leaves the run for the full path's ICMP error.
		hl := 20 + 8
		if c.v6 {
			hl = 40 + 8
		}
		if !c.udp {
			hl += 12
		}
		big := req(1000, string(make([]byte, 1500-hl)), 0, false)
		fs = append(fs[:3], append([][]byte{big}, fs[3:]...)...)
	}
	if c.method == conntrack.MethodNAT {
		for i, p := range []string{"r1", "r2 a longer reply", "r3"} {
			fs = append(fs, build(t, pkt{srcMAC: macRS1, dstMAC: macDir, src: rsA, dst: client, sport: 80, dport: 1000,
				udp: c.udp, ack: !c.udp, ttl: uint8(64 - i), payload: []byte(p)}))
		}
		fs = append(fs, req(1000, "a9 after the replies", 0, false))
	}
	return fs
}

// burstOpen opens c's connections A and B on r, a packet per poll, and returns A's real
// server.
func (c burstCase) burstOpen(t *testing.T, r *rig) netip.Addr {
	client, vip := l2Client, l2VIP
	if c.v6 {
		client, vip = l2Client6, l2VIP6
	}
	for _, sport := range []uint16{1000, 1001} {
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: sport, dport: 80,
			udp: c.udp, syn: !c.udp, payload: []byte("open")}))
		r.drain()
	}
	proto := conntrack.ProtoTCP
	if c.udp {
		proto = conntrack.ProtoUDP
	}
	var e conntrack.Entry
	k := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 1000, DstPort: 80, Proto: proto}
	if !r.dp.Conntrack().Get(conntrack.DirOrig, &k, r.dp.Now(), &e) {
		t.Fatal("connection A not made")
	}
	rs := netip.AddrFrom16(e.Reply.Src).Unmap()
	if c.method != conntrack.MethodNAT {
		s, _ := r.dp.Snapshot().dest(e.Dest)
		rs = netip.AddrFrom16(s.Addr).Unmap()
	}
	if !c.udp {
		// The handshake: the real server's SYN-ACK (NAT: through the director), the
		// client's ACK. Both connections ESTABLISHED.
		for _, sport := range []uint16{1000, 1001} {
			if c.method == conntrack.MethodNAT {
				var eb conntrack.Entry
				kb := k
				kb.SrcPort = sport
				r.dp.Conntrack().Get(conntrack.DirOrig, &kb, r.dp.Now(), &eb)
				r.eth.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDir, src: netip.AddrFrom16(eb.Reply.Src).Unmap(), dst: client,
					sport: 80, dport: sport, syn: true, ack: true}))
				r.drain()
			}
			r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: sport, dport: 80, ack: true}))
			r.drain()
		}
	}
	r.eth.Sent()
	return rs
}

// TestBurstMatchesOnePacketBatches: packets forwarded as their flow's burst (the run,
// flowrun.go) leave the director exactly as the same packets do when each comes in a
// batch of its own, where every one takes the full path: the same frames out, byte for
// byte and in the same order (rewritten addresses, TTL, checksums, MACs; the ICMP time
// exceeded for the TTL of 1), the same service and real-server counts, connection states
// and drops. NAT (both directions), DR and TUN (a packet too big for the tunnel among
// them), IPv4
// and IPv6, TCP and UDP. The burst counter shows which packets the run forwarded.
func TestBurstMatchesOnePacketBatches(t *testing.T) {
	check := func(t *testing.T, c burstCase) {
		// Followers: a2 a3, a7 a8 (after a6 in full: a5's TTL kept a6 out of
		// the run a4 started), c2 c3, and for NAT r2 r3. TUN's 1500-byte
		// packet after a3 takes the full path.
		want := map[conntrack.Method]uint64{conntrack.MethodNAT: 8, conntrack.MethodDR: 6, conntrack.MethodTUN: 6}[c.method]
		// Repeats (ParseRepeat): every packet after one of its flow — a2 a3,
		// a5-a8 (a4 follows b1), c2 c3, TUN's big one, NAT's r2 r3. Shared
		// (nothing to look up): a repeat with the flags of the packet before,
		// which the state machine left as it was, after a repeat (the
		// lookup afresh of a3's, a6's or r1's packet does not say whether it
		// left the state): a3 a6, TUN's big one, NAT's r3, and for UDP (no
		// flags, no FIN) a7 a8 too.
		wantRepeats := map[conntrack.Method]int{conntrack.MethodNAT: 10, conntrack.MethodDR: 8, conntrack.MethodTUN: 9}[c.method]
		wantShared := map[conntrack.Method]int{conntrack.MethodNAT: 3, conntrack.MethodDR: 2, conntrack.MethodTUN: 3}[c.method]
		if c.udp {
			wantShared += 2
		}
		got := burstCompare(t, c, burstPrep{})
		if got.bursts != want {
			t.Errorf("%d packets forwarded as a burst, want %d", got.bursts, want)
		}
		if got.repeats != wantRepeats || got.shared != wantShared {
			t.Errorf("%d repeats, %d shared; want %d and %d", got.repeats, got.shared, wantRepeats, wantShared)
		}
	}
	eachBurstCase(t, check)
	// TUN with GUE and GRE: the run writes the headers the full path writes (the GUE
	// source port, the UDP and GRE checksums over each packet).
	// And to real servers of the services' other family.
	for _, tun := range []packet.Encap{{Type: packet.EncapGUE, Port: 6080}, {Type: packet.EncapGUE, Port: 6080, Csum: true}, {Type: packet.EncapGRE, Csum: true}} {
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				c := burstCase{method: conntrack.MethodTUN, v6: v6, udp: udp, tun: tun}
				t.Run(c.String(), func(t *testing.T) { check(t, c) })
			}
		}
	}
	for _, tun := range []packet.Encap{{}, {Type: packet.EncapGRE}} {
		for _, v6 := range []bool{false, true} {
			c := burstCase{method: conntrack.MethodTUN, v6: v6, tun: tun, mixed: true}
			t.Run(c.String(), func(t *testing.T) { check(t, c) })
		}
	}
}

// eachBurstCase runs f in a subtest for every method (NAT, DR, TUN), family and
// protocol (TCP, UDP).
func eachBurstCase(t *testing.T, f func(t *testing.T, c burstCase)) {
	for _, m := range []conntrack.Method{conntrack.MethodNAT, conntrack.MethodDR, conntrack.MethodTUN} {
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				c := burstCase{method: m, v6: v6, udp: udp}
				t.Run(c.String(), func(t *testing.T) { f(t, c) })
			}
		}
	}
}

// TestBurstFastPath: with the XDP fast path, a flow's burst is forwarded as a run as
// without it, as many of its packets, and the requests queued for the fast path (offers,
// and a FIN's withdrawal) are those one packet per batch queues, in the same order: NAT,
// DR and TUN, IPv4 and IPv6, TCP and UDP.
func TestBurstFastPath(t *testing.T) {
	eachBurstCase(t, func(t *testing.T, c burstCase) {
		plain := burstCompare(t, c, burstPrep{}).bursts
		got := burstCompare(t, c, burstPrep{rig: func(r *rig) { withFast(r.dp) }})
		if got.bursts != plain || got.bursts == 0 {
			t.Errorf("%d packets forwarded as a burst with the fast path, %d without", got.bursts, plain)
		}
		if got.offered == 0 {
			t.Error("nothing was queued for the fast path: the burst tests nothing")
		}
	})
	// The real server's FIN in a run of its replies withdraws the NAT connection, as
	// one reply per batch does.
	for _, v6 := range []bool{false, true} {
		c := burstCase{method: conntrack.MethodNAT, v6: v6}
		t.Run(c.String()+"/reply FIN", func(t *testing.T) {
			client := l2Client
			if v6 {
				client = l2Client6
			}
			frames := func(rs netip.Addr) [][]byte {
				var fs [][]byte
				for _, r := range []struct {
					payload string
					fin     bool
				}{{"r1", false}, {"r2", false}, {"r3 fin", true}, {"r4 after the fin", false}} {
					fs = append(fs, build(t, pkt{srcMAC: macRS1, dstMAC: macDir, src: rs, dst: client, sport: 80, dport: 1000,
						ack: true, fin: r.fin, payload: []byte(r.payload)}))
				}
				return fs
			}
			got := burstCompare(t, c, burstPrep{rig: func(r *rig) { withFast(r.dp) }, frames: frames})
			if got.bursts < 2 || got.offered < 2 {
				t.Errorf("%d replies forwarded as a burst, %d fast-path requests; want the FIN in the run (at least 2) and an offer and a withdrawal", got.bursts, got.offered)
			}
		})
	}
}

// TestBurstSyncMaster: on a sync master a flow's burst is forwarded as a run as on any
// director, as many of its packets, and the connections queued for the sync daemon are
// those one packet per batch queues, in the same order (burstCompare): the default
// policy (sync_threshold 3 50), every client packet (0 1), every third (1 3), each with
// and without sync_persist_mode on persistent services.
func TestBurstSyncMaster(t *testing.T) {
	persist := func(s *rigSpec) {
		for i := range s.services {
			s.services[i].Persist, s.services[i].PersistBits = int64(time.Hour), 128
		}
	}
	for _, c := range []burstCase{{method: conntrack.MethodNAT}, {method: conntrack.MethodDR, v6: true}, {method: conntrack.MethodTUN, udp: true}} {
		plain := burstCompare(t, c, burstPrep{}).bursts
		for _, pol := range []conntrack.SyncPolicy{conntrack.DefaultSyncPolicy(), {Threshold: 0, Period: 1}, {Threshold: 1, Period: 3}} {
			for _, persistMode := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/%d_%d/persist=%v", c, pol.Threshold, pol.Period, persistMode), func(t *testing.T) {
					prep := burstPrep{rig: func(r *rig) { r.dp.SetSyncMaster(&pol, persistMode) }}
					if persistMode {
						prep.spec = persist
					}
					got := burstCompare(t, c, prep)
					if got.bursts != plain || got.bursts == 0 {
						t.Errorf("%d packets forwarded as a burst on a sync master, %d without sync", got.bursts, plain)
					}
					if got.synced == 0 {
						t.Error("nothing was queued for the sync daemon: the burst tests nothing")
					}
				})
			}
		}
	}
}

// TestBurstPersist: a persistent service's packets are forwarded as their flow's burst
// as a service without persistence's are, as many of them, and exactly as one packet per
// batch forwards them (burstCompare); and the client's template was refreshed at the
// batch's clock, the expiry each follower's refresh would have set again.
func TestBurstPersist(t *testing.T) {
	persist := func(s *rigSpec) {
		for i := range s.services {
			s.services[i].Persist, s.services[i].PersistBits = int64(time.Hour), 128
		}
	}
	for _, c := range []burstCase{{method: conntrack.MethodNAT}, {method: conntrack.MethodDR, v6: true, udp: true}} {
		t.Run(c.String(), func(t *testing.T) {
			plain := burstCompare(t, c, burstPrep{}).bursts
			if got := burstCompare(t, c, burstPrep{spec: persist}).bursts; got != plain || got == 0 {
				t.Errorf("%d packets forwarded as a burst on a persistent service, %d without persistence", got, plain)
			}
			spec := l2Spec(t, c.method, 1<<14, oneArmed)
			persist(&spec)
			r := newRigSpec(t, spec)
			// A's first three packets, a run: the burst's other packets include a new
			// connection, whose scheduling refreshes the template too.
			fs := c.burstFrames(t, c.burstOpen(t, r))[:3]
			for _, f := range fs {
				if !r.eth.Inject(f) {
					t.Fatal("inject refused")
				}
			}
			before := r.dp.now()
			if n := r.w.poll(); n != len(fs) {
				t.Fatalf("one poll took %d of %d frames", n, len(fs))
			}
			after := r.dp.now()
			if ws, _ := r.dp.Stats(); ws[0].Burst != 2 {
				t.Errorf("%d packets forwarded as a burst, want 2 (a2, a3)", ws[0].Burst)
			}
			n := 0
			r.dp.persist.walk(after, func(svc, dest uint32, client [16]byte, in int64) {
				n++
				if at := after + in - int64(time.Hour); at < before || at > after {
					t.Errorf("template of %x (service %d) last refreshed %v before the batch, want during it", client, svc, time.Duration(before-at))
				}
			})
			if n != 1 {
				t.Errorf("%d templates, want 1 (one client of one service)", n)
			}
		})
	}
}

// burstPrep changes both directors of burstCompare: spec before it is built, the rig
// once its connections are open, just before the burst (each if set).
type burstPrep struct {
	spec func(*rigSpec)
	rig  func(*rig)
	// frames, when set, makes the batch instead of burstFrames (no count of the frames
	// out is expected then); it must give both directors the same frames.
	frames func(rs netip.Addr) [][]byte
}

// burstCompare sends case c's connections and burst (burstOpen, burstFrames) to two
// directors prepared by prep, one taking the burst in one batch, the other a packet per
// batch; it fails t unless both forwarded, counted and queued for the sync daemon and
// the XDP fast path alike, and returns what it saw of the first (burstSeen).
func burstCompare(t *testing.T, c burstCase, prep burstPrep) burstSeen {
	t.Helper()
	var rigs [2]*rig
	for i := range rigs {
		spec := l2Spec(t, c.method, 1<<14, oneArmed)
		withEncap(&spec, c.tun)
		if c.mixed {
			spec = mixedSpec(t, c.tun)
		}
		if i == 1 {
			spec.cfg.Batch = 1
		}
		if prep.spec != nil {
			prep.spec(&spec)
		}
		rigs[i] = newRigSpec(t, spec)
	}
	var out [2][][]byte
	var bursts [2]uint64
	var synced [2][]SyncConn // what each queued for the sync daemon, in order
	var offered [2][]fastReq // what each queued for the XDP fast path, in order
	var seen burstSeen
	for i, r := range rigs {
		rs := c.burstOpen(t, r)
		var fs [][]byte
		if prep.frames != nil {
			fs = prep.frames(rs)
		} else {
			fs = c.burstFrames(t, rs)
		}
		if prep.rig != nil {
			prep.rig(r) // the burst's batch is the first after it
		}
		if i == 0 {
			for _, f := range fs {
				if !r.eth.Inject(f) {
					t.Fatal("inject refused")
				}
			}
			if n := r.w.poll(); n != len(fs) {
				t.Fatalf("one poll took %d of %d frames", n, len(fs))
			}
			for _, q := range r.w.qs[:r.w.nq] {
				seen.repeats += b2i(q.Repeat)
				seen.shared += b2i(q.Shared)
			}
		} else {
			for _, f := range fs {
				r.eth.Inject(f)
				if n := r.w.poll(); n != 1 {
					t.Fatalf("a poll of batch 1 took %d frames", n)
				}
			}
		}
		r.drain()
		out[i] = r.eth.Sent()
		ws, _ := r.dp.Stats()
		bursts[i] = ws[0].Burst
		buf := make([]SyncConn, 256)
		synced[i] = buf[:r.dp.DrainSync(buf)]
		for j := range synced[i] {
			synced[i][j].Queued = 0
		}
		if r.w.fp != nil {
			offered[i] = requests(r.w)
			for j := range offered[i] {
				offered[i][j].at = 0
			}
		}
	}
	if len(out[0]) != len(out[1]) {
		t.Fatalf("%d frames out of the batch, %d one at a time", len(out[0]), len(out[1]))
	}
	for i := range out[0] {
		if !bytes.Equal(out[0][i], out[1][i]) {
			t.Fatalf("frame %d differs:\nbatch %x\n  one %x", i, out[0][i], out[1][i])
		}
	}
	wantOut := 12 // the client's packets: 11 forwarded, the TTL of 1 answered
	switch c.method {
	case conntrack.MethodNAT:
		wantOut += 4 // the replies, a9
	case conntrack.MethodTUN:
		wantOut++ // the big one answered
	}
	if prep.frames == nil && len(out[0]) != wantOut {
		t.Fatalf("%d frames out, want %d", len(out[0]), wantOut)
	}
	for id := uint32(1); id <= 4; id++ {
		if a, b := rigs[0].dp.ServiceStats(id), rigs[1].dp.ServiceStats(id); a != b {
			t.Errorf("service %d: %+v in the batch, %+v one at a time", id, a, b)
		}
		if a, b := rigs[0].dp.DestStats(id), rigs[1].dp.DestStats(id); a != b {
			t.Errorf("real server %d: %+v in the batch, %+v one at a time", id, a, b)
		}
	}
	var states [2]map[string]conntrack.State
	for i, r := range rigs {
		states[i] = map[string]conntrack.State{}
		r.dp.Conntrack().Walk(r.dp.Now(), func(e *conntrack.Entry, _ int64) bool {
			states[i][fmt.Sprint(e.Orig)] = e.State
			return true
		})
	}
	if fmt.Sprint(states[0]) != fmt.Sprint(states[1]) {
		t.Errorf("connection states %v in the batch, %v one at a time", states[0], states[1])
	}
	if a, b := fmt.Sprint(rigs[0].drops()), fmt.Sprint(rigs[1].drops()); a != b {
		t.Errorf("drops %s in the batch, %s one at a time", a, b)
	}
	if a, b := fmt.Sprintf("%+v", synced[0]), fmt.Sprintf("%+v", synced[1]); a != b {
		t.Errorf("queued for the sync daemon in the batch:\n%s\none at a time:\n%s", a, b)
	}
	if a, b := fmt.Sprintf("%+v", offered[0]), fmt.Sprintf("%+v", offered[1]); a != b {
		t.Errorf("queued for the fast path in the batch:\n%s\none at a time:\n%s", a, b)
	}
	if bursts[1] != 0 {
		t.Errorf("%d packets forwarded as a burst one packet per batch", bursts[1])
	}
	seen.bursts, seen.synced, seen.offered = bursts[0], len(synced[0]), len(offered[0])
	return seen
}

// burstSeen is what burstCompare saw of the batch: the packets forwarded as a burst,
// the queries that were Repeats (ParseRepeat took the packet) and those LookupBatch
// found Shared, the entries queued for the sync daemon and the XDP fast path.
type burstSeen struct {
	bursts          uint64
	repeats, shared int
	synced          int // entries queued for the sync daemon
	offered         int // requests queued for the XDP fast path
}

// TestBurstAllocs: forwarding a flow's burst as a run allocates nothing (NAT requests
// and replies, DR requests), and the run is what forwarded them.
func TestBurstAllocs(t *testing.T) {
	for _, c := range []burstCase{{method: conntrack.MethodNAT}, {method: conntrack.MethodNAT, v6: true, udp: true}, {method: conntrack.MethodDR}, {method: conntrack.MethodNAT, persist: true}} {
		t.Run(c.String(), func(t *testing.T) {
			spec := l2Spec(t, c.method, 1<<14, oneArmed)
			if c.persist {
				for i := range spec.services {
					spec.services[i].Persist, spec.services[i].PersistBits = int64(time.Hour), 120
				}
			}
			r := newRigSpec(t, spec)
			rs := c.burstOpen(t, r)
			fs := c.burstFrames(t, rs)
			burst, followers := [][]byte{fs[0], fs[1], fs[2]}, uint64(2) // a1 a2 a3: a2, a3 follow
			if c.method == conntrack.MethodNAT {
				burst, followers = append(burst, fs[len(fs)-4:len(fs)-1]...), 4 // r1 r2 r3: r2, r3 follow
			}
			r.eth.OnTransmit = func([]byte) {}
			before := r.dp.workers[0].st.burst.load()
			n := testing.AllocsPerRun(200, func() {
				for _, f := range burst {
					r.eth.Inject(f)
				}
				r.w.poll()
			})
			if n != 0 {
				t.Fatalf("%v allocations per burst", n)
			}
			got := r.dp.workers[0].st.burst.load() - before
			if want := followers * 201; got != want { // AllocsPerRun's warm-up and 200 runs
				t.Fatalf("%d packets forwarded as a burst over 201 bursts, want %d", got, want)
			}
		})
	}
}

// TestBurstFullNAT is TestBurstMatchesOnePacketBatches for FULLNAT, on the two-armed
// rig: a client's burst (interrupted by a TTL of 1, which FULLNAT drops) and the real
// server's burst back to the local endpoint, in one batch each against one packet per
// batch, byte for byte on both interfaces, counts and drops alike. Both directors
// choose the same local port (cursors rewound, the same shard key).
func TestBurstFullNAT(t *testing.T) {
	for _, f := range fnFamilies {
		for _, udp := range []bool{false, true} {
			t.Run(f.name+map[bool]string{false: "/tcp", true: "/udp"}[udp], func(t *testing.T) {
				key := [conntrack.ShardKeyLen]byte{1, 2, 3}
				rigs := [2]*fnRig{newFNRig(t, fnOpts{shardKey: key}), newFNRig(t, fnOpts{shardKey: key, batch: 1})}
				var ext, in [2][][]byte
				var bursts [2]uint64
				for i, r := range rigs {
					r.rewindLports()
					cpkt := func(payload string, ttl uint8, syn bool) []byte {
						return build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80,
							udp: udp, syn: syn && !udp, ack: !syn && !udp, ttl: ttl, payload: []byte(payload)})
					}
					r.ext.Inject(cpkt("open", 0, true))
					r.w.poll()
					out := r.int.Sent()
					if len(out) != 1 {
						t.Fatalf("the first packet: %d frames (drops %v)", len(out), r.drops())
					}
					li := check(t, out[0])
					local := ap(li.Src, li.SrcPort)
					spkt := func(payload string, syn bool) []byte {
						return build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: f.rs1, dst: local.Addr(), sport: 8080, dport: local.Port(),
							udp: udp, syn: syn && !udp, ack: !udp, payload: []byte(payload)})
					}
					if !udp {
						r.int.Inject(spkt("", true))
						r.w.poll()
						r.ext.Inject(cpkt("", 0, false))
						r.w.poll()
					}
					r.ext.Sent()
					r.int.Sent()
					fromClient := [][]byte{cpkt("a1", 0, false), cpkt("a2 longer", 0, false), cpkt("a3", 0, false),
						cpkt("a4 ttl 1", 1, false), cpkt("a5", 0, false), cpkt("a6", 0, false)}
					fromServer := [][]byte{spkt("r1", false), spkt("r2 a longer reply", false), spkt("r3", false)}
					if i == 0 {
						for _, fr := range fromClient {
							r.ext.Inject(fr)
						}
						for _, fr := range fromServer {
							r.int.Inject(fr)
						}
						r.w.poll()
					} else {
						for _, fr := range fromClient {
							r.ext.Inject(fr)
							r.w.poll()
						}
						for _, fr := range fromServer {
							r.int.Inject(fr)
							r.w.poll()
						}
					}
					r.drain()
					ext[i], in[i] = r.ext.Sent(), r.int.Sent()
					ws, _ := r.dp.Stats()
					bursts[i] = ws[0].Burst
				}
				for _, side := range []struct {
					name string
					out  [2][][]byte
					want int
				}{{"ext0 (to the client)", ext, 3}, {"int0 (to the real server)", in, 5}} {
					if len(side.out[0]) != side.want || len(side.out[1]) != side.want {
						t.Fatalf("%s: %d frames from the batch, %d one at a time, want %d", side.name, len(side.out[0]), len(side.out[1]), side.want)
					}
					for j := range side.out[0] {
						if !bytes.Equal(side.out[0][j], side.out[1][j]) {
							t.Fatalf("%s frame %d differs:\nbatch %x\n  one %x", side.name, j, side.out[0][j], side.out[1][j])
						}
						checkGo(t, side.out[0][j])
					}
				}
				for _, id := range []uint32{f.svcTCP, f.svcUDP} {
					if a, b := rigs[0].dp.ServiceStats(id), rigs[1].dp.ServiceStats(id); a != b {
						t.Errorf("service %d: %+v in the batch, %+v one at a time", id, a, b)
					}
				}
				if a, b := fmt.Sprint(rigs[0].drops()), fmt.Sprint(rigs[1].drops()); a != b {
					t.Errorf("drops %s in the batch, %s one at a time", a, b)
				}
				// Followers: a2 a3, a6 (a5 in full after a4's TTL), r2 r3.
				if bursts[0] != 5 || bursts[1] != 0 {
					t.Errorf("burst counters %d (batch) and %d (one at a time), want 5 and 0", bursts[0], bursts[1])
				}
			})
		}
	}
}

// TestBatchMatchesOnePacketRandom: random batches of 32 frames over a connection's two
// flows A and B, a new one C and, for NAT, A's replies — mostly in runs of one flow, with
// random TCP flags (a FIN, an RST or a SYN among the ACKs), TTLs of 1 and 2, payloads of
// any size (TUN: some too big for the tunnel), and some frames cut short or with a header
// byte changed — leave the director exactly as the same frames one per batch do: frames
// out byte for byte, counts, connection states and drops (burstCompare). The runs,
// repeats and shared lookups of a batch are thus held to the full path on inputs no one
// chose.
func TestBatchMatchesOnePacketRandom(t *testing.T) {
	seeds := 25
	if testing.Short() {
		seeds = 4
	}
	for _, m := range []conntrack.Method{conntrack.MethodNAT, conntrack.MethodDR, conntrack.MethodTUN} {
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				c := burstCase{method: m, v6: v6, udp: udp}
				t.Run(c.String(), func(t *testing.T) {
					var sum burstSeen
					for seed := range seeds {
						frames := func(rs netip.Addr) [][]byte { return c.randomFrames(t, rs, uint64(seed)) }
						got := burstCompare(t, c, burstPrep{frames: frames})
						sum.bursts += got.bursts
						sum.repeats += got.repeats
						sum.shared += got.shared
					}
					if sum.repeats == 0 || sum.shared == 0 || sum.bursts == 0 {
						t.Fatalf("%d seeds: %d repeats, %d shared, %d forwarded as a burst: the test does not test them", seeds, sum.repeats, sum.shared, sum.bursts)
					}
					t.Logf("%d batches of 32: %d repeats, %d shared, %d forwarded as a burst", seeds, sum.repeats, sum.shared, sum.bursts)
				})
			}
		}
	}
}

// randomFrames returns the 32 frames of TestBatchMatchesOnePacketRandom's batch seed for
// case c, whose connection A's real server is rsA.
func (c burstCase) randomFrames(t *testing.T, rsA netip.Addr, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	client, vip := l2Client, l2VIP
	if c.v6 {
		client, vip = l2Client6, l2VIP6
	}
	var fs [][]byte
	flow := 0
	for range 32 {
		if r.IntN(10) >= 6 { // runs: most frames are of the flow before
			flow = []int{0, 0, 0, 1, 1, 2, 3, 3}[r.IntN(8)]
		}
		p := pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: uint16(1000 + min(flow, 2)), dport: 80, udp: c.udp, ack: !c.udp}
		if flow == 3 {
			if c.method != conntrack.MethodNAT {
				flow = 0
			} else { // A's reply
				p = pkt{srcMAC: macRS1, dstMAC: macDir, src: rsA, dst: client, sport: 80, dport: 1000, udp: c.udp, ack: !c.udp}
			}
		}
		if !c.udp {
			switch r.IntN(40) {
			case 0:
				p.fin = true
			case 1:
				p.rst, p.ack = true, false
			case 2:
				p.syn, p.ack = true, false
			case 3:
				p.ack = false
			}
		}
		switch r.IntN(20) {
		case 0:
			p.ttl = 1
		case 1:
			p.ttl = 2
		}
		n := r.IntN(300)
		if c.method == conntrack.MethodTUN && r.IntN(10) == 0 {
			n = 1400 + r.IntN(40) // too big for the tunnel, or about
		}
		p.payload = make([]byte, n)
		for i := range p.payload {
			p.payload[i] = byte(r.IntN(256))
		}
		p.id = uint16(r.IntN(1 << 16))
		f := build(t, p)
		switch r.IntN(30) {
		case 0:
			f = f[:r.IntN(len(f))]
		case 1:
			f[r.IntN(min(len(f), 60))] ^= byte(1 + r.IntN(255))
		}
		fs = append(fs, f)
	}
	return fs
}
