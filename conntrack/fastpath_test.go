package conntrack

import "testing"

// TestTouch: packets the fast path forwarded extend a connection's timer as packets seen
// by Lookup would, in its current state, and nothing else. The timeouts are IPVS's
// (intel-lab-lkp/linux net/netfilter/ipvs/ip_vs_proto_tcp.c tcp_timeouts:
// ESTABLISHED 15*60*HZ; ip_vs_proto_udp.c udp_timeouts: NORMAL 5*60*HZ).
func TestTouch(t *testing.T) {
	const established, udp = 900 * sec, 300 * sec
	tb := mustNew(t, Config{MaxEntries: 1024})
	t0 := 10 * sec
	nat := mustInsert(t, tb, conn(1, ProtoTCP, MethodNAT, 3), 0x02, t0) // SYN
	forceState(t, tb, &nat.Orig, StateEstablished, t0)
	dr := mustInsert(t, tb, conn(2, ProtoUDP, MethodDR, 4), 0, t0)
	active, inactive := tb.Conns(3)

	// The fast path forwarded packets until t0+100 s; the sweep sees them at t0+101 s.
	var e Entry
	if !tb.Touch(DirReply, &nat.Reply, t0+100*sec, t0+101*sec, &e) {
		t.Fatal("Touch of a live NAT connection by its reply key: not found")
	}
	if e.State != StateEstablished || e.Orig != nat.Orig || e.Dest != 3 {
		t.Fatalf("Touch copied out %+v, want the ESTABLISHED connection %v to dest 3", e, nat.Orig)
	}
	if !tb.Touch(DirOrig, &dr.Orig, t0+100*sec, t0+101*sec, nil) {
		t.Fatal("Touch of a live DR connection: not found")
	}
	if a, i := tb.Conns(3); a != active || i != inactive {
		t.Fatalf("Touch changed the counts: %d/%d, were %d/%d", a, i, active, inactive)
	}
	// An older time never shortens the timer.
	tb.Touch(DirOrig, &nat.Orig, t0, t0+101*sec, nil)
	left := map[Key]int64{}
	tb.Walk(t0+101*sec, func(e *Entry, in int64) bool { left[e.Orig] = in; return true })
	if got, want := left[nat.Orig], established-sec; got != want {
		t.Errorf("NAT connection expires in %d ms, want %d ms (ESTABLISHED from the last fast-path packet)", got/1e6, want/1e6)
	}
	if got, want := left[dr.Orig], udp-sec; got != want {
		t.Errorf("UDP connection expires in %d ms, want %d ms", got/1e6, want/1e6)
	}
	// Without the touch the NAT connection would have expired at t0+900 s; the UDP one
	// expires at t0+400 s.
	if n := tb.Reap(t0+established+sec, tb.Cap()); n != 1 {
		t.Fatalf("Reap after the old timeout expired %d connections, want 1 (the UDP one)", n)
	}
	if n := tb.Reap(t0+100*sec+established, tb.Cap()); n != 1 {
		t.Fatalf("Reap after the new timeout expired %d, want 1", n)
	}
	// A connection gone is not brought back.
	if tb.Touch(DirOrig, &nat.Orig, t0+100*sec+established, t0+100*sec+established, &e) {
		t.Fatal("Touch of an expired connection: found")
	}
	if tb.Len() != 0 {
		t.Fatalf("table holds %d entries, want 0", tb.Len())
	}
	if tb.Touch(Dir(9), &nat.Orig, t0, t0, nil) {
		t.Fatal("Touch with a bad direction: found")
	}
	checkInvariants(t, tb)
}

// TestTouchAllocs: Touch allocates nothing.
func TestTouchAllocs(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1024})
	e := mustInsert(t, tb, conn(1, ProtoUDP, MethodNAT, 1), 0, sec)
	var out Entry
	if n := testing.AllocsPerRun(100, func() { tb.Touch(DirOrig, &e.Orig, 2*sec, 2*sec, &out) }); n != 0 {
		t.Fatalf("Touch allocates %v times, want 0", n)
	}
}
