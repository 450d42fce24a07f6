package dataplane

import (
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
)

// withFast gives dp a fast path without a classifier: the workers queue their requests,
// which the tests read from the queues (nothing drains them into a map).
func withFast(dp *Dataplane) *fastPath {
	f := newFastPath(dp, nil)
	for _, w := range dp.workers {
		f.attachWorker(w)
	}
	dp.fast = f
	return f
}

// withFastMap gives r's dataplane a fast path over a real fastpath map of size entries
// (a classifier with no program: tests write what the program would), and returns both.
func withFastMap(t *testing.T, r *rig, size int) (*fastPath, *bpf.Classifier) {
	t.Helper()
	needRoot(t)
	cls, err := bpf.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cls.Close() })
	if err := cls.EnableFastPath(size); err != nil {
		t.Fatal(err)
	}
	f := newFastPath(r.dp, cls)
	for _, w := range r.dp.workers {
		f.attachWorker(w)
	}
	r.dp.fast = f
	return f, cls
}

// natSend injects p into the two-armed NAT rig r, as the client's (to the VIP's port
// 80) or rs1's answer (from port 8080), client port sport, and polls.
func natSend(t *testing.T, r *rig, sport uint16, fromClient bool, p pkt) {
	t.Helper()
	if fromClient {
		p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macClient, macDirExt, client, vip, sport, 80
		r.ext.Inject(build(t, p))
	} else {
		p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macRS1, macDirInt, rs1, client, 8080, sport
		r.int.Inject(build(t, p))
	}
	r.w.poll()
}

// requests pops what worker w queued.
// republish publishes a copy of dp's snapshot with each service changed by edit (which
// must copy what it changes of a service's slices: the snapshot's are shared).
func republish(t *testing.T, dp *Dataplane, edit func(*Service)) {
	t.Helper()
	svcs := append([]Service(nil), dp.Snapshot().Services...)
	for i := range svcs {
		edit(&svcs[i])
	}
	ns, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Publish(ns); err != nil {
		t.Fatal(err)
	}
}

func requests(w *worker) []fastReq {
	out := make([]fastReq, 64)
	return out[:w.fp.ring.pop(out)]
}

// openOffers opens p's TCP connection on r's one port (a SYN, checked to offer
// nothing, then an ACK) and returns what the ACK offered the fast path.
func openOffers(t *testing.T, r *rig, p pkt) []fastReq {
	t.Helper()
	syn, ack := p, p
	syn.syn, ack.ack = true, true
	return secondOffers(t, r, syn, ack, "SYN")
}

// secondOffers sends first on r's one port, checks it offered the fast path nothing (the
// failure names it as firstName), sends second and returns what that offered.
func secondOffers(t *testing.T, r *rig, first, second pkt, firstName string) []fastReq {
	t.Helper()
	r.eth.Inject(build(t, first))
	r.w.poll()
	if q := requests(r.w); len(q) != 0 {
		t.Fatalf("offer on %s: %+v", firstName, q)
	}
	r.eth.Inject(build(t, second))
	r.w.poll()
	return requests(r.w)
}

func fkey(src, dst netip.Addr, sport, dport uint16, proto uint8) bpf.FastKey {
	return fastKey(&conntrack.Key{Src: a16(src), Dst: a16(dst), SrcPort: sport, DstPort: dport, Proto: proto})
}

// csumAfter applies an RFC 1624 delta to checksum c (HC' = ~(~HC + delta)).
func csumAfter(c, delta uint16) uint16 {
	s := uint32(^c) + uint32(delta)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// TestFastPathNATOffers: a NAT TCP connection is offered (both directions) when the
// client's ACK makes it ESTABLISHED — IPVS's NAT state table: SYN → SYN_RECV, the
// server's SYN-ACK keeps SYN_RECV, the client's ACK → ESTABLISHED
// (intel-lab-lkp/linux net/netfilter/ipvs/ip_vs_proto_tcp.c tcp_states) — not before,
// once per second at most, and withdrawn by the client's FIN. The rewrite it offers is the
// one the slow path makes: the deltas turn the arriving packet's checksums into those
// gopacket computes for the rewritten packet.
func TestFastPathNATOffers(t *testing.T) {
	r := newRig(t, "rr", 1)
	withFast(r.dp)
	req := func(p pkt) pkt {
		p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macClient, macDirExt, client, vip, 40000, 80
		return p
	}
	rep := func(p pkt) pkt {
		p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macRS1, macDirInt, rs1, client, 8080, 40000
		return p
	}
	r.ext.Inject(build(t, req(pkt{syn: true})))
	r.w.poll()
	r.int.Inject(build(t, rep(pkt{syn: true, ack: true})))
	r.w.poll()
	if q := requests(r.w); len(q) != 0 {
		t.Fatalf("offers before ESTABLISHED: %+v", q)
	}
	ackPkt := req(pkt{ack: true, payload: []byte("data")})
	ack := build(t, ackPkt)
	r.ext.Inject(ack)
	r.w.poll()
	q := requests(r.w)
	if len(q) != 1 || q[0].op != fastInstall || q[0].n != 2 {
		t.Fatalf("after the ACK: %d requests %+v, want one install of two directions", len(q), q)
	}
	in, out := q[0].dirs[0], q[0].dirs[1]
	if in.key != fkey(client, vip, 40000, 80, 6) || !in.in || in.val.Action != bpf.FastNATDst ||
		in.val.Ifindex != ifInt || in.val.DMAC != macRS1 || in.val.SMAC != macDirInt ||
		in.val.Addr != a16(rs1) || binary.BigEndian.Uint16(in.val.Port[:]) != 8080 {
		t.Fatalf("request direction %+v", in)
	}
	if out.key != fkey(rs1, client, 8080, 40000, 6) || out.in || out.val.Action != bpf.FastNATSrc ||
		out.val.Ifindex != ifExt || out.val.DMAC != macClient || out.val.SMAC != macDirExt ||
		out.val.Addr != a16(vip) || binary.BigEndian.Uint16(out.val.Port[:]) != 80 {
		t.Fatalf("reply direction %+v", out)
	}
	// The deltas against gopacket's checksums of the packet as the real server gets it.
	want := ackPkt
	want.dst, want.dport, want.ttl = rs1, 8080, 63
	checkDeltas(t, ack, build(t, want), in.val)
	repPkt := rep(pkt{ack: true, payload: []byte("answer")})
	wantRep := repPkt
	wantRep.src, wantRep.sport, wantRep.ttl = vip, 80, 63
	checkDeltas(t, build(t, repPkt), build(t, wantRep), out.val)
	if q[0].svc != 6 || q[0].dest != 1 || q[0].orig.SrcPort != 40000 {
		t.Fatalf("request's connection: svc %d dest %d orig %+v", q[0].svc, q[0].dest, q[0].orig)
	}

	// More packets of the connection within the second: no new offer.
	r.ext.Inject(ack)
	r.int.Inject(build(t, repPkt))
	r.w.poll()
	if q := requests(r.w); len(q) != 0 {
		t.Fatalf("offered again at once: %+v", q)
	}
	// The client's FIN: out of ESTABLISHED, removed.
	r.ext.Inject(build(t, req(pkt{fin: true, ack: true})))
	r.w.poll()
	q = requests(r.w)
	if len(q) != 1 || q[0].op != fastRemove || q[0].n != 2 ||
		q[0].dirs[0].key != fkey(client, vip, 40000, 80, 6) || q[0].dirs[1].key != fkey(rs1, client, 8080, 40000, 6) {
		t.Fatalf("after the FIN: %+v, want one removal of both directions", q)
	}
}

// checkDeltas: v's deltas turn the checksums of frame in into those of frame want (IPv4
// header and TCP/UDP).
func checkDeltas(t *testing.T, in, want []byte, v bpf.FastVal) {
	t.Helper()
	var ii, wi packet.Info
	if packet.Parse(in, &ii) != packet.ResultOK || packet.Parse(want, &wi) != packet.ResultOK {
		t.Fatal("frames do not parse")
	}
	if ii.Family == 4 {
		hc := binary.BigEndian.Uint16(in[ii.L3Off+10:])
		if got, exp := csumAfter(hc, v.CsumL3), binary.BigEndian.Uint16(want[wi.L3Off+10:]); got != exp {
			t.Errorf("IPv4 header checksum %#04x after the delta, want %#04x", got, exp)
		}
	}
	off := 16 // TCP
	if ii.Proto == packet.ProtoUDP {
		off = 6
	}
	c := binary.BigEndian.Uint16(in[int(ii.L4Off)+off:])
	if got, exp := csumAfter(c, v.CsumL4), binary.BigEndian.Uint16(want[int(wi.L4Off)+off:]); got != exp {
		t.Errorf("transport checksum %#04x after the delta, want %#04x", got, exp)
	}
}

// TestFastPathUDPNATOffer: a NAT UDP connection is offered once its real server answered
// (a packet each way), not on the client's packets alone.
func TestFastPathUDPNATOffer(t *testing.T) {
	r := newRig(t, "rr", 1)
	withFast(r.dp)
	c := pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5000, dport: 80, udp: true, payload: []byte("q")}
	for range 2 {
		r.ext.Inject(build(t, c))
		r.w.poll()
	}
	if q := requests(r.w); len(q) != 0 {
		t.Fatalf("offers before the answer: %+v", q)
	}
	r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 5000, udp: true, payload: []byte("a")}))
	r.w.poll()
	q := requests(r.w)
	if len(q) != 1 || q[0].op != fastInstall || q[0].n != 2 || q[0].dirs[0].key != fkey(client, vip, 5000, 80, 17) || q[0].dirs[1].key != fkey(rs1, client, 8080, 5000, 17) {
		t.Fatalf("after the answer: %+v, want one install of both directions", q)
	}
}

// TestFastPathRetryAfterFull: an offer refused by a full queue is made again
// fastRetryFull later (once the goroutine has drained the queue), not a second later as
// an accepted one.
func TestFastPathRetryAfterFull(t *testing.T) {
	r := newRig(t, "rr", 1)
	withFast(r.dp)
	for r.w.fp.ring.push(&fastReq{op: fastRemove}) {
	}
	c := pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5001, dport: 80, udp: true, payload: []byte("q")}
	a := pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 5001, udp: true, payload: []byte("a")}
	r.ext.Inject(build(t, c))
	r.w.poll()
	r.int.Inject(build(t, a)) // eligible now: refused, the queue is full
	r.w.poll()
	drained := func() (installs int) {
		out := make([]fastReq, 4096)
		for _, q := range out[:r.w.fp.ring.pop(out)] {
			if q.op == fastInstall {
				installs++
			}
		}
		return installs
	}
	if n := drained(); n != 0 {
		t.Fatalf("%d installs queued into a full queue", n)
	}
	r.int.Inject(build(t, a))
	r.w.poll()
	if n := drained(); n != 0 {
		t.Fatalf("offered again %d times at once after a refusal, want after %v", n, fastRetryFull)
	}
	r.dp.epoch = r.dp.epoch.Add(-fastRetryFull) // fastRetryFull later
	r.int.Inject(build(t, a))
	r.w.poll()
	if n := drained(); n != 1 {
		t.Fatalf("%d installs %v after the refusal, want 1", n, fastRetryFull)
	}
	r.int.Inject(build(t, a)) // accepted: not again for fastOfferEvery
	r.w.poll()
	if n := drained(); n != 0 {
		t.Fatalf("offered again right after an accepted offer: %d", n)
	}
	r.framesBack(t)
}

// TestFastPathReofferKeepsTime: a connection offered again while its first offer waits
// out fastInstallDelay keeps the first offer's time (and takes the newer rewrite): offers
// repeated faster than the delay — two flows sharing a slot of the offer table, each
// re-offering on every packet — would otherwise never be installed (a quarter of 1000
// DR flows stayed out in the bench).
func TestFastPathReofferKeepsTime(t *testing.T) {
	r := newRig(t, "rr", 1)
	f := newFastPath(r.dp, nil)
	t0 := int64(1_000_000_000)
	k := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 7000, DstPort: 80, Proto: 17}
	first := fastReq{op: fastInstall, orig: k, at: t0, n: 1}
	first.dirs[0].val.DMAC = [6]byte{1}
	again := first
	again.at = t0 + fastInstallDelay - 1
	again.dirs[0].val.DMAC = [6]byte{2}
	f.take(&first)
	f.take(&again)
	if len(f.pending) != 1 || f.pending[0].at != t0 || f.pending[0].dirs[0].val.DMAC != again.dirs[0].val.DMAC {
		t.Fatalf("pending %+v: want one offer with the first offer's time and the newer rewrite", f.pending)
	}
}

// TestFastPathDROffers: DR connections are offered in their one direction, MACs only:
// TCP when the client's ACK makes it ESTABLISHED (IPVS's input-only table), UDP from the
// second packet; a connection whose real server was deleted is not.
func TestFastPathDROffers(t *testing.T) {
	r := newL2Rig(t, conntrack.MethodDR)
	withFast(r.dp)
	for _, c := range []struct {
		name        string
		client, vip netip.Addr
		rs          netip.Addr
	}{{"ipv4", l2Client, l2VIP, l2RS1}, {"ipv6", l2Client6, l2VIP6, l2RS16}} {
		t.Run(c.name, func(t *testing.T) {
			p := pkt{srcMAC: macClient, dstMAC: macDir, src: c.client, dst: c.vip, sport: 6000, dport: 80}
			q := openOffers(t, r, p)
			if len(q) != 1 || q[0].n != 1 || q[0].dirs[0].key != fkey(c.client, c.vip, 6000, 80, 6) ||
				q[0].dirs[0].val.Action != bpf.FastDR || q[0].dirs[0].val.DMAC != macRS1 || q[0].dirs[0].val.SMAC != macDir ||
				q[0].dirs[0].val.Ifindex != ifL2 || !q[0].dirs[0].in {
				t.Fatalf("after the ACK: %+v, want one DR install towards rs1", q)
			}
			u := p
			u.udp, u.sport = true, 6001
			if q := secondOffers(t, r, u, u, "a UDP connection's first packet"); len(q) != 1 || q[0].dirs[0].key != fkey(c.client, c.vip, 6001, 80, 17) {
				t.Fatalf("after the second UDP packet: %+v", q)
			}
		})
	}
	r.framesBack(t)
}

// TestFastPathOfferAllocs: offering allocates nothing.
func TestFastPathOfferAllocs(t *testing.T) {
	r := newRig(t, "rr", 1)
	withFast(r.dp)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, syn: true}))
	r.w.poll()
	ack := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
	checkOfferAllocs(t, r, r.ext, ack)
}

// checkOfferAllocs injects frame (a packet of an established connection) into in again
// and again, each time with the worker's table of recent offers cleared, and checks
// that every packet was offered and that forwarding and offering allocated nothing.
func checkOfferAllocs(t *testing.T, r *rig, in *xsk.Fake, frame []byte) {
	t.Helper()
	buf := make([]fastReq, 4)
	offered := 0
	n := testing.AllocsPerRun(200, func() {
		in.Inject(frame)
		r.w.poll()
		r.w.fp.offers = [fastOffers]fastOffer{} // offer again every time
		offered += r.w.fp.ring.pop(buf)
	})
	if offered < 200 {
		t.Fatalf("%d offers for 201 packets, want one each", offered)
	}
	if n != 0 {
		t.Fatalf("%v allocations per offered packet", n)
	}
}

// TestFastPathSyncMaster: a sync master offers its established connections to the fast
// path like any director, and its sweeps send them as IPVS's master would have sent them
// for the client packets the program forwarded: with the default sync_threshold 3 50 a
// connection is sent when its count of client packets reaches 3, 53, 103, ...
// (ip_vs_sync_conn_needed: in_pkts % sync_period == sync_threshold), counting the
// handshake's two packets the worker saw; reply packets do not count.
func TestFastPathSyncMaster(t *testing.T) {
	r := newRig(t, "rr", 1)
	f, cls := withFastMap(t, r, 64)
	r.dp.SetSyncMaster(&conntrack.SyncPolicy{Threshold: 3, Period: 50}, false)
	send := func(fromClient bool, p pkt) { natSend(t, r, 40000, fromClient, p) }
	send(true, pkt{syn: true})             // count 1
	send(false, pkt{syn: true, ack: true}) // a reply: not counted
	send(true, pkt{ack: true})             // count 2: ESTABLISHED, not sent
	buf := make([]SyncConn, 8)
	if n := r.dp.DrainSync(buf); n != 0 {
		t.Fatalf("the handshake queued %d sync entries, want 0 (the default policy sends at the third packet): %+v", n, buf[:n])
	}
	f.drain(r.dp.now() + fastInstallDelay)
	in, out := fkey(client, vip, 40000, 80, 6), fkey(rs1, client, 8080, 40000, 6)
	var v bpf.FastVal
	for _, k := range []bpf.FastKey{in, out} {
		if ok, err := cls.FastLookup(&k, &v); !ok || err != nil {
			t.Fatalf("a sync master did not install %+v: %v", k, err)
		}
	}
	// counted sets what the program counted for key k, the last packet now.
	counted := func(k bpf.FastKey, pkts uint64) {
		t.Helper()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		if _, err := cls.FastLookup(&k, &v); err != nil {
			t.Fatal(err)
		}
		v.Packets, v.Bytes, v.LastSeen = pkts, pkts*100, uint64(ts.Nano())
		if _, err := cls.FastUpdate([]bpf.FastKey{k}, []bpf.FastVal{v}); err != nil {
			t.Fatal(err)
		}
	}
	sweep := func() []SyncConn {
		f.sweep(false)
		return buf[:r.dp.DrainSync(buf)]
	}
	want := SyncConn{
		Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Timeout: 900,
		Client: a16(client), CPort: 40000, VAddr: a16(vip), VPort: 80, DAddr: a16(rs1), DPort: 8080,
	}
	steps := []struct {
		in, out uint64 // the program's counts after the step
		sent    bool
	}{
		{1, 0, true},     // count 3
		{1, 40, false},   // replies only
		{50, 40, false},  // counts 4 to 52
		{51, 40, true},   // 53
		{100, 90, false}, // 54 to 102
		{260, 90, true},  // 103 to 262: 103, 153, 203 and 253 send once
		{261, 90, false},
	}
	for i, st := range steps {
		time.Sleep(time.Millisecond) // a later last-seen time
		counted(in, st.in)
		counted(out, st.out)
		got := sweep()
		if !st.sent {
			if len(got) != 0 {
				t.Fatalf("step %d (%d client packets in the fast path): queued %+v, want nothing", i, st.in, got)
			}
			continue
		}
		if len(got) != 1 {
			t.Fatalf("step %d (%d client packets in the fast path): queued %d entries, want the connection once: %+v", i, st.in, len(got), got)
		}
		got[0].Queued = 0
		if got[0] != want {
			t.Fatalf("step %d: queued %+v, want %+v", i, got[0], want)
		}
	}
	if st := r.dp.SyncStats(); st.Queued != 3 || st.QueueFull != 0 {
		t.Fatalf("sync stats %+v, want 3 queued (by the sweeps)", st)
	}
	if st := f.Stats(); st.Entries != 2 || st.Packets != 261+90 {
		t.Fatalf("fast path stats %+v, want its 2 entries kept, 351 packets", st)
	}
	// A FIN still goes through the worker, which sends the state change at once and
	// removes the entries.
	send(true, pkt{fin: true, ack: true})
	if n := r.dp.DrainSync(buf); n != 1 || buf[0].State != conntrack.StateCloseWait {
		t.Fatalf("after the FIN: %d entries %+v, want the connection in CLOSE_WAIT (IPVS: a client FIN on ESTABLISHED)", n, buf[:n])
	}
	f.drain(r.dp.now())
	if st := f.Stats(); st.Entries != 0 {
		t.Fatalf("after the FIN: %+v, want no entry", st)
	}
}

// TestFastPathManager drives the fast path's goroutine steps (drain, sweep) over a real
// fastpath map (no XDP program: the test writes the counters the program would): an
// established connection is installed in both directions, the counts the map holds reach
// the service's and real server's counters once (-L --stats), a FIN removes both entries,
// and a deleted real server's connection leaves the map at the next sweep.
func TestFastPathManager(t *testing.T) {
	r := newRig(t, "rr", 1)
	f, cls := withFastMap(t, r, 64)
	send := func(sport uint16, fromClient bool, p pkt) { natSend(t, r, sport, fromClient, p) }
	entries := 0
	establish := func(sport uint16) {
		send(sport, true, pkt{syn: true})
		send(sport, false, pkt{syn: true, ack: true})
		send(sport, true, pkt{ack: true})
		f.drain(r.dp.now())
		if st := f.Stats(); st.Entries != entries {
			t.Fatalf("installed before fastInstallDelay: %+v", st)
		}
		f.drain(r.dp.now() + fastInstallDelay)
		entries += 2
	}
	establish(40000)
	in, out := fkey(client, vip, 40000, 80, 6), fkey(rs1, client, 8080, 40000, 6)
	var v bpf.FastVal
	for _, k := range []bpf.FastKey{in, out} {
		if ok, err := cls.FastLookup(&k, &v); !ok || err != nil {
			t.Fatalf("entry %+v not installed: %v", k, err)
		}
	}
	if st := f.Stats(); st.Installed != 2 || st.Entries != 2 {
		t.Fatalf("stats %+v, want 2 installed", st)
	}
	s0, d0 := r.dp.ServiceStats(6), r.dp.DestStats(1)

	// What the program would have counted: 10 packets in, 7 out, just now.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		k            bpf.FastKey
		pkts, nbytes uint64
	}{{in, 10, 1000}, {out, 7, 7000}} {
		if _, err := cls.FastLookup(&c.k, &v); err != nil {
			t.Fatal(err)
		}
		v.Packets, v.Bytes, v.LastSeen = c.pkts, c.nbytes, uint64(ts.Nano())
		if _, err := cls.FastUpdate([]bpf.FastKey{c.k}, []bpf.FastVal{v}); err != nil {
			t.Fatal(err)
		}
	}
	f.sweep(false)
	f.sweep(false) // nothing new: nothing added twice
	s1, d1 := r.dp.ServiceStats(6), r.dp.DestStats(1)
	for _, c := range []struct {
		name     string
		got, was FlowStats
	}{{"service", s1, s0}, {"real server", d1, d0}} {
		if c.got.InPkts-c.was.InPkts != 10 || c.got.InBytes-c.was.InBytes != 1000 || c.got.OutPkts-c.was.OutPkts != 7 || c.got.OutBytes-c.was.OutBytes != 7000 {
			t.Errorf("%s counters moved by %d/%d packets, %d/%d bytes; want 10/7 and 1000/7000", c.name,
				c.got.InPkts-c.was.InPkts, c.got.OutPkts-c.was.OutPkts, c.got.InBytes-c.was.InBytes, c.got.OutBytes-c.was.OutBytes)
		}
	}
	if st := f.Stats(); st.Entries != 2 || st.Packets != 17 {
		t.Fatalf("after the sweeps: %+v, want 2 entries, 17 packets", st)
	}

	// The client's FIN goes through the worker: both entries go.
	send(40000, true, pkt{fin: true, ack: true})
	f.drain(r.dp.now())
	entries = 0
	for _, k := range []bpf.FastKey{in, out} {
		if ok, _ := cls.FastLookup(&k, &v); ok {
			t.Fatalf("entry %+v still there after the FIN", k)
		}
	}

	// A second connection; then its real server is deleted.
	establish(40001)
	if st := f.Stats(); st.Entries != 2 {
		t.Fatalf("second connection: %+v, want 2 entries", st)
	}
	snap := r.dp.Snapshot()
	republish(t, r.dp, func(s *Service) { s.Dests = nil })
	f.sweep(false)
	if st := f.Stats(); st.Entries != 0 || st.Removed != 4 {
		t.Fatalf("after the real server's deletion: %+v, want no entry, 4 removed", st)
	}

	// A connection that closes within fastInstallDelay is never installed.
	r.dp.Publish(snap)
	send(40002, true, pkt{syn: true})
	send(40002, false, pkt{syn: true, ack: true})
	send(40002, true, pkt{ack: true})
	f.drain(r.dp.now())
	send(40002, true, pkt{fin: true, ack: true})
	f.drain(r.dp.now() + fastInstallDelay)
	if st := f.Stats(); st.Installed != 4 || st.Cancelled != 1 || st.Entries != 0 {
		t.Fatalf("a connection closed before its install: %+v, want it cancelled, nothing installed", st)
	}
	n := 0
	cls.FastWalk(func(*bpf.FastKey, *bpf.FastVal) bool { n++; return true })
	if n != 0 {
		t.Fatalf("the map holds %d entries, want 0", n)
	}
}

// BenchmarkForwardEstablishedFastPath is BenchmarkForwardEstablished with the fast path
// on: what a packet that still reaches a worker pays for the offer check (the connection
// was offered already; its queue is never drained here).
func BenchmarkForwardEstablishedFastPath(b *testing.B) {
	r := newRig(b, "rr", 1, 1)
	withFast(r.dp)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	r.ext.Inject(build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, syn: true}))
	r.w.poll()
	ack := build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, ack: true, payload: make([]byte, 18)})
	b.ReportAllocs()
	b.ResetTimer()
	const batch = 32
	for i := 0; i < b.N; i += batch {
		for j := 0; j < batch; j++ {
			r.ext.Inject(ack)
		}
		r.w.poll()
	}
}

// TestFastPathFullNATOffers: a FULLNAT TCP connection is offered, both directions, when it
// becomes ESTABLISHED: the request rewritten to LIP:lport → RS:rport, the reply to
// VIP:vport → client:cport, with deltas that turn the arriving packets' checksums into
// gopacket's for the rewritten ones; a UDP one once its real server answered.
func TestFastPathFullNATOffers(t *testing.T) {
	r := newFNRig(t, fnOpts{oneRS: true})
	withFast(r.dp)
	req := func(p pkt) pkt {
		p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macClient, macDirExt, client, vip, 40000, 80
		return p
	}
	r.ext.Inject(build(t, req(pkt{syn: true})))
	r.w.poll()
	sent := r.int.Sent()
	if len(sent) != 1 {
		t.Fatalf("int0 sent %d frames, want the SYN", len(sent))
	}
	si := check(t, sent[0])
	lip, lport := netip.AddrFrom16(si.Src).Unmap(), si.SrcPort
	rep := func(p pkt) pkt {
		p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macRS1, macDirInt, rs1, lip, 8080, lport
		return p
	}
	r.int.Inject(build(t, rep(pkt{syn: true, ack: true})))
	r.w.poll()
	if q := requests(r.w); len(q) != 0 {
		t.Fatalf("offers before ESTABLISHED: %+v", q)
	}
	ackPkt := req(pkt{ack: true, payload: []byte("data")})
	r.ext.Inject(build(t, ackPkt))
	r.w.poll()
	q := requests(r.w)
	if len(q) != 1 || q[0].op != fastInstall || q[0].n != 2 {
		t.Fatalf("after the ACK: %+v, want one install of two directions", q)
	}
	in, out := q[0].dirs[0], q[0].dirs[1]
	if in.key != fkey(client, vip, 40000, 80, 6) || in.val.Action != bpf.FastFullNAT || in.val.Ifindex != ifInt || in.val.DMAC != macRS1 ||
		in.val.Addr != a16(lip) || binary.BigEndian.Uint16(in.val.Port[:]) != lport || in.val.Addr2 != a16(rs1) || binary.BigEndian.Uint16(in.val.Port2[:]) != 8080 {
		t.Fatalf("request direction %+v", in)
	}
	if out.key != fkey(rs1, lip, 8080, lport, 6) || out.val.Action != bpf.FastFullNAT || out.val.Ifindex != ifExt || out.val.DMAC != macClient ||
		out.val.Addr != a16(vip) || binary.BigEndian.Uint16(out.val.Port[:]) != 80 || out.val.Addr2 != a16(client) || binary.BigEndian.Uint16(out.val.Port2[:]) != 40000 {
		t.Fatalf("reply direction %+v", out)
	}
	want := ackPkt
	want.src, want.sport, want.dst, want.dport, want.ttl = lip, lport, rs1, 8080, 63
	checkDeltas(t, build(t, ackPkt), build(t, want), in.val)
	repPkt := rep(pkt{ack: true, payload: []byte("answer")})
	wantRep := repPkt
	wantRep.src, wantRep.sport, wantRep.dst, wantRep.dport, wantRep.ttl = vip, 80, client, 40000, 63
	checkDeltas(t, build(t, repPkt), build(t, wantRep), out.val)
	r.drain()
}

// TestFastPathKernelOffers: with the kernel forwarding IPv4 fast-path packets
// (Config.FastPathKernel, kernelFamilies), a NAT connection's two directions are offered
// with bpf.FastKernel and deltas that leave the TTL to the kernel's forward: they turn the
// arriving checksums into those of the packet rewritten with its TTL unchanged. With the
// family left to the program, the flag is off and the deltas include the decrement. The
// flag survives apply, which otherwise sets the egress interface's flags.
func TestFastPathKernelOffers(t *testing.T) {
	for _, kernel := range []bool{true, false} {
		r := newRig(t, "rr", 1)
		f := newFastPath(r.dp, nil)
		if kernel {
			f.kern.Store(kernBit(4))
		} else {
			f.kern.Store(kernBit(6))
		}
		for _, w := range r.dp.workers {
			f.attachWorker(w)
		}
		r.dp.fast = f
		syn := pkt{syn: true}
		natSend(t, r, 40000, true, syn)
		natSend(t, r, 40000, false, pkt{syn: true, ack: true})
		ack := pkt{ack: true, payload: []byte("data")}
		natSend(t, r, 40000, true, ack)
		q := requests(r.w)
		if len(q) != 1 || q[0].n != 2 {
			t.Fatalf("kernel %v: offers %+v, want one install of two directions", kernel, q)
		}
		ttl := uint8(63)
		flags := uint8(0)
		if kernel {
			ttl, flags = 64, bpf.FastKernel
		}
		in, out := q[0].dirs[0], q[0].dirs[1]
		if in.val.Flags != flags || out.val.Flags != flags {
			t.Fatalf("kernel %v: flags %d and %d, want %d", kernel, in.val.Flags, out.val.Flags, flags)
		}
		reqIn := pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, ack: true, payload: []byte("data")}
		want := reqIn
		want.dst, want.dport, want.ttl = rs1, 8080, ttl
		checkDeltas(t, build(t, reqIn), build(t, want), in.val)
		repIn := pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 40000, ack: true, payload: []byte("answer")}
		wantRep := repIn
		wantRep.src, wantRep.sport, wantRep.ttl = vip, 80, ttl
		checkDeltas(t, build(t, repIn), build(t, wantRep), out.val)
		f.apply(&q[0])
		if len(f.insVals) != 2 || f.insVals[0].Flags != flags || f.insVals[1].Flags != flags {
			t.Fatalf("kernel %v: applied %+v, want flags %d", kernel, f.insVals, flags)
		}
		r.drain()
	}
}

// TestKernelFamilies: --fastpath-forward kernel takes a family when the kernel would
// forward its rewritten packets (forwarding on; IPv4: accept_local on every interface,
// by conf.all or its own, and rp_filter not strict by either), refuses to start when
// neither family qualifies, naming the settings, and warns for a family left out.
func TestKernelFamilies(t *testing.T) {
	for _, tc := range []struct {
		name       string
		set        map[string]string
		want4      bool
		want6      bool
		wantErr    string
		wantWarnOf string
	}{
		{"everything set", map[string]string{"ipv4/ip_forward": "1", "ipv6/conf/all/forwarding": "1", "ipv4/conf/all/accept_local": "1"}, true, true, "", ""},
		{"accept_local per interface, loose rp_filter", map[string]string{"ipv4/ip_forward": "1", "ipv4/conf/eth0/accept_local": "1", "ipv4/conf/eth1/accept_local": "1",
			"ipv4/conf/all/rp_filter": "2"}, true, false, "", "IPv6"},
		{"one interface without accept_local", map[string]string{"ipv4/ip_forward": "1", "ipv6/conf/all/forwarding": "1", "ipv4/conf/eth0/accept_local": "1"}, false, true, "", "IPv4"},
		{"strict rp_filter on one", map[string]string{"ipv4/ip_forward": "1", "ipv6/conf/all/forwarding": "1", "ipv4/conf/all/accept_local": "1",
			"ipv4/conf/eth1/rp_filter": "1"}, false, true, "", "IPv4"},
		{"nothing forwards", map[string]string{"ipv4/conf/all/accept_local": "1"}, false, false,
			"fast path forwarded by the kernel: the kernel would not forward the rewritten packets; set net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1, or let the XDP program send them (--fastpath-forward xdp)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeSysctls(t, tc.set)
			var log strings.Builder
			dp := &Dataplane{log: slog.New(slog.NewTextHandler(&log, nil))}
			f := newFastPath(dp, nil)
			err := f.kernelFamilies([]string{"eth0", "eth1"})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			k := f.kern.Load()
			if err != nil || k&kernBit(4) != 0 != tc.want4 || k&kernBit(6) != 0 != tc.want6 {
				t.Fatalf("families %b (%v), want IPv4 %v IPv6 %v", k, err, tc.want4, tc.want6)
			}
			if tc.wantWarnOf == "" && log.Len() != 0 || tc.wantWarnOf != "" && !strings.Contains(log.String(), "sends "+tc.wantWarnOf) {
				t.Fatalf("log %q, want a warning about %q", log.String(), tc.wantWarnOf)
			}
		})
	}
}

// fakeSysctls makes kernelCheck read, until the test ends, a directory holding the
// settings it reads for interfaces eth0 and eth1: those of set, every other one 0.
// It returns a function that changes one.
func fakeSysctls(t *testing.T, set map[string]string) (change func(k, v string)) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"ipv4/conf/all", "ipv4/conf/eth0", "ipv4/conf/eth1", "ipv6/conf/all"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	change = func(k, v string) {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv4/conf/all/accept_local", "ipv4/conf/eth0/accept_local",
		"ipv4/conf/eth1/accept_local", "ipv4/conf/all/rp_filter", "ipv4/conf/eth0/rp_filter", "ipv4/conf/eth1/rp_filter"} {
		v, ok := set[k]
		if !ok {
			v = "0"
		}
		change(k, v)
	}
	old := sysctlDir
	sysctlDir = dir
	t.Cleanup(func() { sysctlDir = old })
	return change
}

// TestKernelRecheck: a sweep checks the settings again. A family whose forwarding was
// turned off leaves the kernel (kernelRecheck returns it, so the sweep removes its
// entries; new offers are the program's, with a warning), and joins again when it is
// turned back on; without Config.FastPathKernel nothing is checked.
func TestKernelRecheck(t *testing.T) {
	change := fakeSysctls(t, map[string]string{"ipv4/ip_forward": "1", "ipv6/conf/all/forwarding": "1", "ipv4/conf/all/accept_local": "1"})
	var log strings.Builder
	dp := &Dataplane{cfg: Config{FastPathKernel: true}, log: slog.New(slog.NewTextHandler(&log, nil))}
	f := newFastPath(dp, nil)
	if err := f.kernelFamilies([]string{"eth0", "eth1"}); err != nil || f.kern.Load() != kernBit(4)|kernBit(6) {
		t.Fatalf("start: families %b (%v), want both", f.kern.Load(), err)
	}
	if lost := f.kernelRecheck(); lost != 0 || log.Len() != 0 {
		t.Fatalf("unchanged settings: lost %b, log %q", lost, log.String())
	}
	change("ipv4/ip_forward", "0")
	if lost := f.kernelRecheck(); lost != kernBit(4) || f.kern.Load() != kernBit(6) ||
		!strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "family=IPv4") || !strings.Contains(log.String(), "net.ipv4.ip_forward=1") {
		t.Fatalf("IPv4 forwarding off: lost %b, families %b, log %q", lost, f.kern.Load(), log.String())
	}
	log.Reset()
	change("ipv4/ip_forward", "1")
	if lost := f.kernelRecheck(); lost != 0 || f.kern.Load() != kernBit(4)|kernBit(6) || !strings.Contains(log.String(), "level=INFO") {
		t.Fatalf("IPv4 forwarding on again: lost %b, families %b, log %q", lost, f.kern.Load(), log.String())
	}
	dp.cfg.FastPathKernel = false
	change("ipv6/conf/all/forwarding", "0")
	if lost := f.kernelRecheck(); lost != 0 {
		t.Fatalf("without FastPathKernel: lost %b, want nothing checked", lost)
	}
}

// TestFastPathSCTPOffers: an SCTP association is offered once ESTABLISHED and taken out
// by the packet that ends ESTABLISHED (SHUTDOWN, ABORT). DR and TUN: the client's COOKIE
// ECHO establishes it (the input-only table), one direction. NAT: the real server's
// COOKIE ACK does (the output table), both directions, each with the CRC32c term of its
// ports' change, and an end from either side takes both out. A TUN real server with a
// GUE checksum never has them offered: the program takes the inner packet's sum from the
// transport pseudo-header, which SCTP's CRC does not give.
func TestFastPathSCTPOffers(t *testing.T) {
	for _, c := range []struct {
		m   conntrack.Method
		tun packet.Encap
	}{{m: conntrack.MethodDR}, {m: conntrack.MethodTUN}, {m: conntrack.MethodNAT},
		{conntrack.MethodTUN, packet.Encap{Type: packet.EncapGUE, Port: 6080, Csum: true}}} {
		m := c.m
		name := m.String()
		if c.tun.Csum {
			name += "-gue-csum"
		}
		for _, end := range []layers.SCTPChunkType{layers.SCTPChunkTypeShutdown, layers.SCTPChunkTypeAbort} {
			t.Run(name+"/"+end.String(), func(t *testing.T) {
				spec := l2Spec(t, m, 1<<12, oneArmed)
				dests := []Dest{{ID: 9, Addr: a16(l2RS1), Port: 80, Method: m, Weight: 1, Tun: c.tun}}
				if m == conntrack.MethodNAT {
					dests[0].Port = 2905
				}
				spec.services = append(spec.services, services(t, "rr", SvcKey{Addr: a16(l2VIP), Port: 80}, dests, nil, []uint8{packet.ProtoSCTP}, []uint32{132})...)
				r := newRigSpec(t, spec)
				withFast(r.dp)
				k := conntrack.Key{Src: a16(l2Client), Dst: a16(l2VIP), SrcPort: 5000, DstPort: 80, Proto: conntrack.ProtoSCTP}
				poll := func(what string) ([]fastReq, conntrack.State) {
					t.Helper()
					r.w.poll()
					if d := r.drops(); len(d) != 0 {
						t.Fatalf("%s: drops %v", what, d)
					}
					var e conntrack.Entry
					r.dp.ct.Get(conntrack.DirOrig, &k, r.dp.now(), &e)
					return requests(r.w), e.State
				}
				send := func(typ layers.SCTPChunkType) ([]fastReq, conntrack.State) {
					t.Helper()
					r.eth.Inject(sctpFrame(t, macClient, macDir, l2Client, l2VIP, 5000, 80, false, chunk(typ)))
					return poll("client's " + typ.String())
				}
				answer := func(typ layers.SCTPChunkType) ([]fastReq, conntrack.State) {
					t.Helper()
					r.eth.Inject(sctpFrame(t, macRS1, macDir, l2RS1, l2Client, 2905, 5000, false, chunk(typ)))
					return poll("real server's " + typ.String())
				}
				if q, st := send(layers.SCTPChunkTypeInit); len(q) != 0 || st == conntrack.StateSCTPEstablished {
					t.Fatalf("INIT: state %v, offers %+v", st, q)
				}
				reqKey := fkey(l2Client, l2VIP, 5000, 80, packet.ProtoSCTP)
				if m == conntrack.MethodNAT {
					repKey := fkey(l2RS1, l2Client, 2905, 5000, packet.ProtoSCTP)
					for _, step := range []func() ([]fastReq, conntrack.State){
						func() ([]fastReq, conntrack.State) { return answer(layers.SCTPChunkTypeInitAck) },
						func() ([]fastReq, conntrack.State) { return send(layers.SCTPChunkTypeCookieEcho) },
					} {
						if q, st := step(); len(q) != 0 || st == conntrack.StateSCTPEstablished {
							t.Fatalf("before the COOKIE ACK: state %v, offers %+v", st, q)
						}
					}
					q, st := answer(layers.SCTPChunkTypeCookieAck)
					if st != conntrack.StateSCTPEstablished || len(q) != 1 || q[0].op != fastInstall || q[0].n != 2 ||
						q[0].dirs[0].key != reqKey || q[0].dirs[0].val.Action != bpf.FastNATDst ||
						q[0].dirs[1].key != repKey || q[0].dirs[1].val.Action != bpf.FastNATSrc {
						t.Fatalf("COOKIE ACK: state %v, offers %+v; want ESTABLISHED and one install of both directions", st, q)
					}
					// The terms, from hash/crc32: the CRC of the 4 bytes of port difference
					// without its inversions, crc(d) ^ crc(0000).
					if got, want := q[0].dirs[0].val.CRC, rawCRC32c(5000, 80, 5000, 2905); got != want {
						t.Errorf("request CRC term %#x, want %#x (5000→80 becoming 5000→2905)", got, want)
					}
					if got, want := q[0].dirs[1].val.CRC, rawCRC32c(2905, 5000, 80, 5000); got != want {
						t.Errorf("reply CRC term %#x, want %#x (2905→5000 becoming 80→5000)", got, want)
					}
					for _, typ := range []layers.SCTPChunkType{layers.SCTPChunkTypeData, layers.SCTPChunkTypeSack} {
						if q, _ := send(typ); len(q) != 0 {
							t.Fatalf("%v offered again within the second: %+v", typ, q)
						}
					}
					// SHUTDOWN from the client, ABORT from the real server.
					if end == layers.SCTPChunkTypeShutdown {
						q, st = send(end)
					} else {
						q, st = answer(end)
					}
					if st == conntrack.StateSCTPEstablished || len(q) != 1 || q[0].op != fastRemove || q[0].n != 2 ||
						q[0].dirs[0].key != reqKey || q[0].dirs[1].key != repKey {
						t.Fatalf("%v: state %v, requests %+v; want the removal of both directions", end, st, q)
					}
					return
				}
				q, st := send(layers.SCTPChunkTypeCookieEcho)
				if c.tun.Csum {
					q2, _ := send(layers.SCTPChunkTypeData)
					if st != conntrack.StateSCTPEstablished || len(q)+len(q2) != 0 {
						t.Fatalf("through a GUE tunnel with a checksum: state %v, offers %+v %+v; want ESTABLISHED and none", st, q, q2)
					}
					return
				}
				want := uint8(bpf.FastDR)
				if m == conntrack.MethodTUN {
					want = bpf.FastTUN
				}
				if st != conntrack.StateSCTPEstablished || len(q) != 1 || q[0].op != fastInstall || q[0].n != 1 ||
					q[0].dirs[0].key != reqKey || q[0].dirs[0].val.Action != want || q[0].dirs[0].val.CRC != 0 {
					t.Fatalf("COOKIE ECHO: state %v, offers %+v; want ESTABLISHED and one install (action %d, no CRC term)", st, q, want)
				}
				for _, typ := range []layers.SCTPChunkType{layers.SCTPChunkTypeData, layers.SCTPChunkTypeSack} {
					if q, _ := send(typ); len(q) != 0 {
						t.Fatalf("%v offered again within the second: %+v", typ, q)
					}
				}
				q, st = send(end)
				if st == conntrack.StateSCTPEstablished || len(q) != 1 || q[0].op != fastRemove || q[0].dirs[0].key != reqKey {
					t.Fatalf("%v: state %v, requests %+v; want the removal", end, st, q)
				}
				if q, _ := send(layers.SCTPChunkTypeShutdownComplete); len(q) != 0 {
					t.Fatalf("after SHUTDOWN COMPLETE: %+v", q)
				}
			})
		}
	}
}

// rawCRC32c is the CRC32c, without its initial and final inversions, of the 4 bytes by
// which ports (sport, dport) differ from (nsport, ndport): crc(d) ^ crc(0000), by
// linearity, from the standard library.
func rawCRC32c(sport, dport, nsport, ndport uint16) uint32 {
	var d, zero [4]byte
	binary.BigEndian.PutUint16(d[0:], sport^nsport)
	binary.BigEndian.PutUint16(d[2:], dport^ndport)
	tab := crc32.MakeTable(crc32.Castagnoli)
	return crc32.Checksum(d[:], tab) ^ crc32.Checksum(zero[:], tab)
}
