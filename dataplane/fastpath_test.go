package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
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

// requests pops what worker w queued.
func requests(w *worker) []fastReq {
	out := make([]fastReq, 64)
	return out[:w.fp.ring.pop(out)]
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
			syn := p
			syn.syn = true
			r.eth.Inject(build(t, syn))
			r.w.poll()
			if q := requests(r.w); len(q) != 0 {
				t.Fatalf("offer on SYN: %+v", q)
			}
			ack := p
			ack.ack = true
			r.eth.Inject(build(t, ack))
			r.w.poll()
			q := requests(r.w)
			if len(q) != 1 || q[0].n != 1 || q[0].dirs[0].key != fkey(c.client, c.vip, 6000, 80, 6) ||
				q[0].dirs[0].val.Action != bpf.FastDR || q[0].dirs[0].val.DMAC != macRS1 || q[0].dirs[0].val.SMAC != macDir ||
				q[0].dirs[0].val.Ifindex != ifL2 || !q[0].dirs[0].in {
				t.Fatalf("after the ACK: %+v, want one DR install towards rs1", q)
			}
			u := p
			u.udp, u.sport = true, 6001
			r.eth.Inject(build(t, u))
			r.w.poll()
			if q := requests(r.w); len(q) != 0 {
				t.Fatalf("offer on a UDP connection's first packet: %+v", q)
			}
			r.eth.Inject(build(t, u))
			r.w.poll()
			if q := requests(r.w); len(q) != 1 || q[0].dirs[0].key != fkey(c.client, c.vip, 6001, 80, 17) {
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
	buf := make([]fastReq, 4)
	offered := 0
	n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(ack)
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
