package dataplane

import (
	"context"
	"net/netip"
	"testing"

	"xlvs/dataplane/xsk"
)

func TestNATBothDirections(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	// Client SYN to the VIP arrives on ext0.
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, syn: true, payload: []byte("hello")}))
	r.w.poll()
	out := r.int.Sent()
	if len(out) != 1 {
		t.Fatalf("int0 sent %d frames, want 1 (drops: %v)", len(out), r.drops())
	}
	info := check(t, out[0])
	if netip.AddrFrom16(info.Dst).Unmap() != rs1 || info.DstPort != 8080 {
		t.Fatalf("DNAT to %v:%d, want %v:8080", netip.AddrFrom16(info.Dst).Unmap(), info.DstPort, rs1)
	}
	if netip.AddrFrom16(info.Src).Unmap() != client || info.SrcPort != 40000 {
		t.Fatal("source changed on the request path")
	}
	if macOf(out[0][0:6]) != macRS1 || macOf(out[0][6:12]) != macDirInt {
		t.Fatalf("MACs dst %x src %x", out[0][0:6], out[0][6:12])
	}
	if ttl := out[0][info.L3Off+8]; ttl != 63 {
		t.Fatalf("TTL %d, want 63", ttl)
	}
	if string(out[0][len(out[0])-5:]) != "hello" {
		t.Fatal("payload changed")
	}
	// The reply from rs1 arrives on int0 and leaves ext0 from the VIP.
	r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 40000, syn: true, ack: true}))
	r.w.poll()
	back := r.ext.Sent()
	if len(back) != 1 {
		t.Fatalf("ext0 sent %d frames, want 1 (drops: %v)", len(back), r.drops())
	}
	bi := check(t, back[0])
	if netip.AddrFrom16(bi.Src).Unmap() != vip || bi.SrcPort != 80 || netip.AddrFrom16(bi.Dst).Unmap() != client || bi.DstPort != 40000 {
		t.Fatalf("SNAT wrong: %v:%d -> %v:%d", netip.AddrFrom16(bi.Src).Unmap(), bi.SrcPort, netip.AddrFrom16(bi.Dst).Unmap(), bi.DstPort)
	}
	if macOf(back[0][0:6]) != macClient || macOf(back[0][6:12]) != macDirExt {
		t.Fatal("reply MACs wrong")
	}
	s := r.dp.ServiceStats(6)
	if s.Conns != 1 || s.InPkts != 1 || s.OutPkts != 1 {
		t.Fatalf("service stats %+v", s)
	}
	if d := r.dp.DestStats(1); d.Conns != 1 {
		t.Fatalf("dest stats %+v", d)
	}
	// Frames: nothing leaked after completion.
	r.w.poll()
	for _, f := range []*xsk.Fake{r.ext, r.int} {
		if got := f.FramesAccounted(); got != 1024 {
			t.Fatalf("frames accounted %d, want 1024", got)
		}
	}
}

func TestDrops(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    pkt
		raw  []byte
		want Drop
		sent int // ICMP answers (time exceeded)
	}{
		{"tcp without syn and no connection", pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1, dport: 80, ack: true}, nil, DropNoConn, 0},
		{"reply without connection", pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 2, ack: true}, nil, DropNoReplyConn, 0},
		{"not ours", pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1, dport: 81, syn: true}, nil, DropNoService, 0},
		{"ttl expired", pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 3, dport: 80, udp: true, ttl: 1}, nil, DropTTLExpired, 1},
		{"truncated", pkt{}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0, 0x45}, DropMalformed, 0},
		{"arp", pkt{}, append(make([]byte, 12), 0x08, 0x06, 0, 1), DropNotTCPUDP, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "rr", 1, 1)
			f := tc.raw
			if f == nil {
				f = build(t, tc.p)
			}
			r.ext.Inject(f)
			r.w.poll()
			if n := len(r.int.Sent()) + len(r.ext.Sent()); n != tc.sent {
				t.Fatalf("%d frames sent, want %d", n, tc.sent)
			}
			if got := r.drops(); got[tc.want.String()] != 1 || len(got) != 1 {
				t.Fatalf("drops %v, want only %s", got, tc.want)
			}
		})
	}
}

func TestNoNeighbourHoldsThenSends(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	full := r.dp.FIB()
	d2, b2 := prefix("198.18.2.0/24")
	d1, b1 := prefix("198.18.1.0/24")
	routes := []Route{{Dst: d1, Bits: b1, Ifindex: ifExt}, {Dst: d2, Bits: b2, Ifindex: ifInt}}
	r.dp.SetFIB(NewFIB(routes, nil))
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5, dport: 80, udp: true}))
	r.w.poll()
	if n := len(r.int.Sent()); n != 0 {
		t.Fatalf("sent %d frames without a neighbour", n)
	}
	if len(r.drops()) != 0 || r.w.st.neighQueued.load() != 1 {
		t.Fatalf("drops %v, queued %d; want the frame held", r.drops(), r.w.st.neighQueued.load())
	}
	select {
	case k := <-r.dp.fib.resolve:
		if k.Ifindex != ifInt || netip.AddrFrom16(k.Addr).Unmap() != rs1 {
			t.Fatalf("resolution requested for %+v", k)
		}
	default:
		t.Fatal("no resolution requested")
	}
	// The neighbour appears: the held frame goes out on the next poll.
	r.dp.SetFIB(full)
	r.w.poll()
	out := r.int.Sent()
	if len(out) != 1 {
		t.Fatalf("sent %d frames after resolution, want 1", len(out))
	}
	check(t, out[0])
	if macOf(out[0][0:6]) != macRS1 {
		t.Fatal("held frame sent with the wrong MAC")
	}

	// Overflow and timeout are drops.
	r.dp.SetFIB(NewFIB(routes, nil))
	for i := 0; i < pendingCap+3; i++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5, dport: 80, udp: true}))
	}
	r.drain()
	if got := r.drops()["no_neighbour"]; got != 3 {
		t.Fatalf("no_neighbour drops %d after overflowing the queue, want 3", got)
	}
	for i := range r.w.pend {
		r.w.pend[i].deadline = 0
	}
	r.w.poll()
	if got := r.drops()["no_neighbour"]; got != 3+pendingCap {
		t.Fatalf("no_neighbour drops %d after the deadline, want %d", got, 3+pendingCap)
	}
	r.w.poll()
	for _, f := range []*xsk.Fake{r.ext, r.int} {
		if got := f.FramesAccounted(); got != 1024 {
			t.Fatalf("frames accounted %d, want 1024", got)
		}
	}
}

// TestStopReleasesHeld: a worker that stops gives the frames waiting for a neighbour
// back to their socket (counted as no_neighbour), so a socket handed over at a restart
// has every frame on its free list or in a ring.
func TestStopReleasesHeld(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	d2, b2 := prefix("198.18.2.0/24")
	d1, b1 := prefix("198.18.1.0/24")
	r.dp.SetFIB(NewFIB([]Route{{Dst: d1, Bits: b1, Ifindex: ifExt}, {Dst: d2, Bits: b2, Ifindex: ifInt}}, nil))
	for i := 0; i < 5; i++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: uint16(5 + i), dport: 80, udp: true}))
	}
	r.w.poll()
	if len(r.w.pend) != 5 {
		t.Fatalf("%d frames held, want 5", len(r.w.pend))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.w.run(ctx) // stopped at once: only its exit runs
	if len(r.w.pend) != 0 || r.drops()["no_neighbour"] != 5 {
		t.Fatalf("after the stop: %d held, drops %v; want none held, 5 no_neighbour", len(r.w.pend), r.drops())
	}
	for i, f := range r.ports {
		if err := f.CheckFrames(); err != nil {
			t.Errorf("%s: %v", r.names[i], err)
		}
	}
}

func TestWRRSplitThroughDataplane(t *testing.T) {
	r := newRig(t, "wrr", 3, 1)
	for i := 0; i < 400; i++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: uint16(10000 + i), dport: 80, syn: true}))
		if i%64 == 63 {
			r.drain()
		}
	}
	r.drain()
	count := map[netip.Addr]int{}
	for _, f := range r.int.Sent() {
		info := check(t, f)
		count[netip.AddrFrom16(info.Dst).Unmap()]++
	}
	if count[rs1] != 300 || count[rs2] != 100 {
		t.Fatalf("split %v, want 300:100 (drops %v, ext dropped %d)", count, r.drops(), r.ext.Dropped)
	}
}

// TestForwardAllocs: the established-flow path allocates nothing.
func TestForwardAllocs(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	syn := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, syn: true})
	ack := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
	rep := build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 7, ack: true, payload: make([]byte, 100)})
	r.ext.Inject(syn)
	r.w.poll()
	n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(ack)
		r.int.Inject(rep)
		r.w.poll()
	})
	// Inject (the fake kernel) copies into existing frames; nothing in poll may allocate.
	if n != 0 {
		t.Fatalf("%v allocations per forwarded pair", n)
	}
	if d := r.drops(); len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
}

func BenchmarkForwardEstablished(b *testing.B) {
	r := newRig(b, "rr", 1, 1)
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
