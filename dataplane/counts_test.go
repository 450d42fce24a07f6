package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"xlvs/conntrack"
	"xlvs/sched"
)

// TestWLCSynBurstCountsHalfOpen: IPVS counts a half-open connection (SYN_RECV) as
// active, so wlc spreads a burst of SYNs over the servers by their half-open and
// established connections alike. rs1 holds one half-open connection, rs2 one
// established: 256 each. Each SYN of the burst must go to a server with the fewest active
// connections (ties to the first in list order, rs1), which alternates; counting
// half-open ones as inactive (1/256 of an active one) sent the whole burst to rs1.
func TestWLCSynBurstCountsHalfOpen(t *testing.T) {
	r := newRig(t, "wlc", 1, 1)
	ct := r.dp.Conntrack()
	if got := r.synFrom(t, client, 1000); got != rs1 { // both idle: the first
		t.Fatalf("first SYN went to %v, want %v", got, rs1)
	}
	if a, in := ct.Conns(1); a != 1 || in != 0 {
		t.Fatalf("rs1 after a SYN: ActiveConn %d InActConn %d, want 1 0 (SYN_RECV is active)", a, in)
	}
	if got := r.synFrom(t, client, 1001); got != rs2 {
		t.Fatalf("second SYN went to %v, want %v", got, rs2)
	}
	// rs2's connection completes its handshake.
	r.int.Inject(build(t, pkt{srcMAC: macRS2, dstMAC: macDirInt, src: rs2, dst: client, sport: 8080, dport: 1001, syn: true, ack: true}))
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1001, dport: 80, ack: true}))
	r.drain()
	r.ext.Sent()
	r.int.Sent()
	var e conntrack.Entry
	k := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 1001, DstPort: 80, Proto: 6}
	if !ct.Get(conntrack.DirOrig, &k, r.dp.Now(), &e) || e.State != conntrack.StateEstablished {
		t.Fatalf("rs2's connection is %v, want ESTABLISHED", e.State)
	}
	id := map[netip.Addr]uint32{rs1: 1, rs2: 2}
	for p := uint16(2000); p < 2008; p++ {
		a1, _ := ct.Conns(1)
		a2, _ := ct.Conns(2)
		want := rs1
		if a2 < a1 {
			want = rs2
		}
		got := r.synFrom(t, client, p)
		if got != want {
			t.Fatalf("SYN %d of the burst went to %v with ActiveConn %d/%d, want %v", p-2000, got, a1, a2, want)
		}
		if a, _ := ct.Conns(id[got]); a != map[netip.Addr]int32{rs1: a1, rs2: a2}[got]+1 {
			t.Fatalf("SYN %d: ActiveConn of %v %d, want one more than %d", p-2000, got, a, map[netip.Addr]int32{rs1: a1, rs2: a2}[got])
		}
	}
	a1, in1 := ct.Conns(1)
	a2, in2 := ct.Conns(2)
	if a1 != 5 || a2 != 5 || in1 != 0 || in2 != 0 {
		t.Fatalf("after the burst: rs1 %d/%d, rs2 %d/%d; want 5/0 each", a1, in1, a2, in2)
	}
}

// TestTemplateBoundConnectionSetsOverload: connections a persistence template sends to a
// server never go through the scheduler, and still bind to it: in the kernel
// (ip_vs_bind_dest) they set IP_VS_DEST_F_OVERLOAD when the server's total reaches -x, and
// the flag stays until an unbind takes the total below -y. rs1 has -x 3 -y 1; a client
// pinned to it opens three connections (one scheduled, two through its template), one of
// them ends (total 2, not below -y 1): rs1 stays overloaded, and fo, which prefers rs1 by
// weight, sends a new client to rs2. Inferring the flag at scheduling time saw a total of 2,
// under -x, and chose rs1.
func TestTemplateBoundConnectionSetsOverload(t *testing.T) {
	r := newRig(t, "fo", 2, 1)
	dests := []Dest{
		{ID: 1, Addr: a16(rs1), Port: 8080, Method: conntrack.MethodNAT, Weight: 2, UThreshold: 3, LThreshold: 1},
		{ID: 2, Addr: a16(rs2), Port: 8080, Method: conntrack.MethodNAT, Weight: 1},
	}
	sd := []sched.Dest{
		{ID: 1, Weight: 2, UThreshold: 3, LThreshold: 1, Addr: a16(rs1), Port: 8080},
		{ID: 2, Weight: 1, Addr: a16(rs2), Port: 8080},
	}
	s, err := sched.New("fo", sd, 0)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot([]Service{{ID: 6, Key: SvcKey{Addr: a16(vip), Port: 80, Proto: 6}, Dests: dests, Sched: s,
		Persist: int64(time.Hour), PersistBits: 128}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	ct := r.dp.Conntrack()
	for p := uint16(1000); p < 1003; p++ {
		if got := r.synFrom(t, client, p); got != rs1 {
			t.Fatalf("connection from port %d went to %v, want %v (fo, then the template)", p, got, rs1)
		}
	}
	if !ct.Overloaded(1) {
		t.Fatal("rs1 not overloaded with 3 connections bound and -x 3")
	}
	// One ends: its handshake completes, a reset closes it, and its CLOSE timeout runs
	// out (the other two, in SYN_RECV, have a minute).
	r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 1002, syn: true, ack: true}))
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1002, dport: 80, ack: true}))
	r.drain()
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 1002, dport: 80, rst: true}))
	r.drain()
	r.ext.Sent()
	r.int.Sent()
	if n := ct.Reap(r.dp.Now()+11*int64(time.Second), 1<<16); n != 1 {
		t.Fatalf("reaped %d connections, want the closed one", n)
	}
	if a, in := ct.Conns(1); a+in != 2 {
		t.Fatalf("rs1 holds %d connections, want 2", a+in)
	}
	if !ct.Overloaded(1) {
		t.Fatal("rs1 not overloaded with 2 connections: only an unbind below -y 1 clears the flag")
	}
	other := netip.MustParseAddr("198.18.1.3")
	if got := r.synFrom(t, other, 3000); got != rs2 {
		t.Fatalf("new client went to %v, want %v (rs1 overloaded)", got, rs2)
	}
	// The pinned client's template still sends it to rs1, overloaded or not (as the kernel).
	if got := r.synFrom(t, client, 1003); got != rs1 {
		t.Fatalf("pinned client went to %v, want %v", got, rs1)
	}
}
