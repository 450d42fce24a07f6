package dataplane

import (
	"net/netip"
	"testing"

	"xlvs/conntrack"
)

// TestBatchSeesConnectionsItMakes: a connection's SYN and the packets after it in one
// receive batch are forwarded as if they came in separate batches: the lookups done for
// the whole batch before the SYN made the connection are redone (mayBeMade), so the ACK
// finds the entry (established) instead of being dropped as no_conn, and a retransmitted
// SYN does not make a second connection.
func TestBatchSeesConnectionsItMakes(t *testing.T) {
	for _, m := range []conntrack.Method{conntrack.MethodNAT, conntrack.MethodDR, conntrack.MethodTUN} {
		t.Run(m.String(), func(t *testing.T) {
			r := newL2Rig(t, m)
			syn := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 40001, dport: 80, syn: true})
			ack := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 40001, dport: 80, ack: true, payload: []byte("x")})
			other := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 40002, dport: 80, syn: true})
			for _, f := range [][]byte{syn, syn, ack, other, ack} {
				r.eth.Inject(f)
			}
			if n := r.w.poll(); n != 5 {
				t.Fatalf("poll saw %d frames, want all 5 in one batch", n)
			}
			if out := r.eth.Sent(); len(out) != 5 {
				t.Fatalf("sent %d frames, want 5 (drops %v)", len(out), r.drops())
			}
			if len(r.drops()) != 0 {
				t.Fatalf("drops %v", r.drops())
			}
			if n := r.dp.ct.Len(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
			var e conntrack.Entry
			k := conntrack.Key{Src: a16(l2Client), Dst: a16(l2VIP), SrcPort: 40001, DstPort: 80, Proto: 6}
			if !r.dp.ct.Get(conntrack.DirOrig, &k, r.dp.now(), &e) || e.State != conntrack.StateEstablished {
				t.Fatalf("entry %+v: want established after SYN, SYN, ACK in one batch", e)
			}
			if s := r.dp.ServiceStats(1); s.Conns != 2 || s.InPkts != 5 {
				t.Fatalf("service counters %+v: want 2 connections, 5 packets in", s)
			}
		})
	}
}

// TestNextHopCacheFollowsFIB: the worker's next-hop cache answers only for the FIB it
// was filled from: a new FIB (here the real server's MAC changed, then its neighbour
// entry and then its route went away) is used from the next batch on.
func TestNextHopCacheFollowsFIB(t *testing.T) {
	r := newL2Rig(t, conntrack.MethodDR)
	send := func() []byte {
		t.Helper()
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 40003, dport: 80, udp: true, payload: []byte("x")}))
		r.w.poll()
		out := r.eth.Sent()
		if len(out) == 0 {
			return nil
		}
		return out[0]
	}
	if f := send(); f == nil || macOf(f[0:6]) != macRS1 {
		t.Fatalf("first frame %x: want it sent to %x (drops %v)", f, macRS1, r.drops())
	}
	p4, b4 := prefix("198.18.0.0/24")
	newMAC := [6]byte{2, 0, 0, 0, 9, 9}
	links := []Link{{Ifindex: ifL2, MTU: 1500, Addrs: []netip.Prefix{netip.PrefixFrom(l2Dir, 24)}}}
	r.dp.SetFIB(NewFIBWithLinks([]Route{{Dst: p4, Bits: b4, Ifindex: ifL2}}, map[NeighKey][6]byte{{Ifindex: ifL2, Addr: a16(l2RS1)}: newMAC}, links))
	if f := send(); f == nil || macOf(f[0:6]) != newMAC {
		t.Fatalf("after the MAC changed: frame %x, want it sent to %x (drops %v)", f, newMAC, r.drops())
	}
	r.dp.SetFIB(NewFIBWithLinks([]Route{{Dst: p4, Bits: b4, Ifindex: ifL2}}, nil, links))
	if f := send(); f != nil {
		t.Fatalf("with no neighbour entry: frame sent to %x, want it held", f[0:6])
	}
	if ws, _ := r.dp.Stats(); ws[0].NeighQueued != 1 {
		t.Fatalf("neighbour-queued %d, want 1", ws[0].NeighQueued)
	}
	r.dp.SetFIB(NewFIBWithLinks(nil, nil, links))
	send()
	if d := r.drops(); d["no_route"] != 1 {
		t.Fatalf("drops %v: want one no_route once the route is gone", d)
	}
}
