package dataplane

import (
	"bytes"
	"net/netip"
	"testing"

	"xlvs/conntrack"
	"xlvs/sched"
)

// TestDR: the director changes only the MACs — the IP packet, TTL included, reaches the
// real server byte for byte — for TCP and UDP over IPv4 and IPv6; later packets of a flow
// follow its entry; the entry uses IPVS's input-only TCP states.
func TestDR(t *testing.T) {
	for _, tc := range []struct {
		name        string
		client, vip netip.Addr
		rs          [2]netip.Addr
		udp         bool
	}{
		{"tcp4", l2Client, l2VIP, [2]netip.Addr{l2RS1, l2RS2}, false},
		{"udp4", l2Client, l2VIP, [2]netip.Addr{l2RS1, l2RS2}, true},
		{"tcp6", l2Client6, l2VIP6, [2]netip.Addr{l2RS16, l2RS26}, false},
		{"udp6", l2Client6, l2VIP6, [2]netip.Addr{l2RS16, l2RS26}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newL2Rig(t, conntrack.MethodDR)
			p1 := pkt{srcMAC: macClient, dstMAC: macDir, src: tc.client, dst: tc.vip, sport: 40000, dport: 80, udp: tc.udp, syn: true, payload: []byte("hello")}
			p2 := pkt{srcMAC: macClient, dstMAC: macDir, src: tc.client, dst: tc.vip, sport: 40000, dport: 80, udp: tc.udp, ack: true, payload: []byte("world")}
			first, second := build(t, p1), build(t, p2)
			// What leaves: the same IP packet with its TTL (hop limit) one lower, as
			// IPVS's decrement_ttl in every method (ip_vs_xmit.c, Linux 4.10+); gopacket
			// computes the checksums.
			p1.ttl, p2.ttl = 63, 63
			wantIP := [][]byte{build(t, p1), build(t, p2)}
			r.eth.Inject(first)
			r.w.poll()
			r.eth.Inject(second)
			r.w.poll()
			out := r.eth.Sent()
			if len(out) != 2 {
				t.Fatalf("sent %d frames, want 2 (drops %v)", len(out), r.drops())
			}
			for i, in := range wantIP {
				check(t, out[i])
				if macOf(out[i][0:6]) != macRS1 || macOf(out[i][6:12]) != macDir {
					t.Fatalf("frame %d: MACs dst %x src %x, want %x from %x", i, out[i][0:6], out[i][6:12], macRS1, macDir)
				}
				if !bytes.Equal(out[i][12:], in[12:]) {
					t.Fatalf("frame %d: the IP packet is not the input with TTL - 1", i)
				}
			}
			var e conntrack.Entry
			k := conntrack.Key{Src: a16(tc.client), Dst: a16(tc.vip), SrcPort: 40000, DstPort: 80, Proto: 6}
			want := conntrack.StateEstablished
			if tc.udp {
				k.Proto, want = 17, conntrack.StateUDP
			}
			if !r.dp.ct.Get(conntrack.DirOrig, &k, r.dp.now(), &e) {
				t.Fatal("no connection entry")
			}
			if e.Method != conntrack.MethodDR || e.State != want || e.Reply != (conntrack.Key{}) {
				t.Fatalf("entry %+v: want method DR, state %v, no reply key", e, want)
			}
			if len(r.drops()) != 0 {
				t.Fatalf("drops %v", r.drops())
			}
			r.framesBack(t)
		})
	}
}

// TestDRDestGone: packets of a connection whose real server was deleted are dropped
// (IPVS's expire_nodest_conn=0), not sent to whoever holds the address now.
func TestDRDestGone(t *testing.T) {
	r := newL2Rig(t, conntrack.MethodDR)
	r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 5, dport: 80, udp: true}))
	r.w.poll()
	if n := len(r.eth.Sent()); n != 1 {
		t.Fatalf("sent %d, want 1", n)
	}
	// Publish the same services without destination 1.
	old := r.dp.Snapshot()
	svcs := append([]Service(nil), old.Services...)
	for i := range svcs {
		var keep []Dest
		for _, d := range svcs[i].Dests {
			if d.ID != 1 {
				keep = append(keep, d)
			}
		}
		svcs[i].Dests = keep
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	r.dp.Publish(snap)
	r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 5, dport: 80, udp: true}))
	r.w.poll()
	if n := len(r.eth.Sent()); n != 0 {
		t.Fatalf("sent %d frames for a deleted real server", n)
	}
	if d := r.drops(); d[DropDestGone.String()] != 1 || len(d) != 1 {
		t.Fatalf("drops %v, want one %s", d, DropDestGone)
	}
	r.framesBack(t)
}

// TestDRAllocs: the DR path allocates nothing.
func TestDRAllocs(t *testing.T) {
	r := newL2Rig(t, conntrack.MethodDR)
	r.eth.OnTransmit = func([]byte) {}
	syn := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client6, dst: l2VIP6, sport: 7, dport: 80, syn: true})
	ack := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
	r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80, syn: true}))
	r.eth.Inject(syn)
	r.w.poll()
	ack6 := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client6, dst: l2VIP6, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
	n := testing.AllocsPerRun(200, func() {
		r.eth.Inject(ack)
		r.eth.Inject(ack6)
		r.w.poll()
	})
	if n != 0 {
		t.Fatalf("%v allocations per DR pair", n)
	}
	if d := r.drops(); len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
}

func TestSnapshotDestIDs(t *testing.T) {
	s, _ := sched.New("rr", nil, 0)
	mk := func(dests ...Dest) error {
		_, err := NewSnapshot([]Service{{ID: 1, Key: SvcKey{Port: 1, Proto: 6}, Dests: dests, Sched: s}})
		return err
	}
	for _, tc := range []struct {
		name  string
		dests []Dest
		ok    bool
	}{
		{"distinct", []Dest{{ID: 1, Addr: a16(rs1)}, {ID: 2, Addr: a16(rs2)}}, true},
		{"same id same server", []Dest{{ID: 1, Addr: a16(rs1)}, {ID: 1, Addr: a16(rs1)}}, true},
		{"same id two servers", []Dest{{ID: 1, Addr: a16(rs1)}, {ID: 1, Addr: a16(rs2)}}, false},
		{"id too large", []Dest{{ID: maxDestID, Addr: a16(rs1)}}, false},
		{"unknown method", []Dest{{ID: 1, Addr: a16(rs1), Method: 9}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := mk(tc.dests...); (err == nil) != tc.ok {
				t.Fatalf("NewSnapshot: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
