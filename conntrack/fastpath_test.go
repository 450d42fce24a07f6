package conntrack

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

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
	if !tb.Touch(DirReply, &nat.Reply, t0+100*sec, t0+101*sec, 0, &e) {
		t.Fatal("Touch of a live NAT connection by its reply key: not found")
	}
	if e.State != StateEstablished || e.Orig != nat.Orig || e.Dest != 3 {
		t.Fatalf("Touch copied out %+v, want the ESTABLISHED connection %v to dest 3", e, nat.Orig)
	}
	if e.Sync {
		t.Fatal("Touch with sync off set Sync")
	}
	if !tb.Touch(DirOrig, &dr.Orig, t0+100*sec, t0+101*sec, 5, nil) {
		t.Fatal("Touch of a live DR connection: not found")
	}
	if a, i := tb.Conns(3); a != active || i != inactive {
		t.Fatalf("Touch changed the counts: %d/%d, were %d/%d", a, i, active, inactive)
	}
	// An older time never shortens the timer.
	tb.Touch(DirOrig, &nat.Orig, t0, t0+101*sec, 0, nil)
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
	if tb.Touch(DirOrig, &nat.Orig, t0+100*sec+established, t0+100*sec+established, 1, &e) {
		t.Fatal("Touch of an expired connection: found")
	}
	if tb.Len() != 0 {
		t.Fatalf("table holds %d entries, want 0", tb.Len())
	}
	if tb.Touch(Dir(9), &nat.Orig, t0, t0, 1, nil) {
		t.Fatal("Touch with a bad direction: found")
	}
	checkInvariants(t, tb)
}

// TestTouchAllocs: Touch allocates nothing.
func TestTouchAllocs(t *testing.T) {
	tb := mustNew(t, Config{MaxEntries: 1024})
	e := mustInsert(t, tb, conn(1, ProtoUDP, MethodNAT, 1), 0, sec)
	var out Entry
	if n := testing.AllocsPerRun(100, func() { tb.Touch(DirOrig, &e.Orig, 2*sec, 2*sec, 3, &out) }); n != 0 {
		t.Fatalf("Touch allocates %v times, want 0", n)
	}
	p := DefaultSyncPolicy()
	tb.SetSync(&p)
	if n := testing.AllocsPerRun(100, func() { tb.Touch(DirOrig, &e.Orig, 3*sec, 3*sec, 70, &out) }); n != 0 {
		t.Fatalf("Touch with sync on allocates %v times, want 0", n)
	}
}

// touch is the model's Touch: pkts client packets of connection k (original key) at time
// at, each counted in the kernel's in_pkts and asked ip_vs_sync_conn_needed (syncNeeded)
// in the connection's current state, packet by packet, as ip_vs_in_hook would for
// packets that leave the state as it is; the timer as such a packet sets it, unless it
// already runs longer. Sync is whether any packet's answer was yes.
func (m *model) touch(k Key, at, now int64, pkts uint64) (bool, Entry) {
	c := m.byOrig[k]
	if c == nil || m.dead(c, now) {
		return false, Entry{}
	}
	if exp := at/1e6 + int64(m.timeouts.Of(c.e.State))*1000; exp > c.expires {
		c.expires = exp
	}
	out := c.e
	if m.sync != nil {
		for range pkts {
			c.inPkts++
			if m.syncNeeded(c, at) {
				out.Sync = true
			}
		}
	}
	return true, out
}

// setInPkts sets the incoming-packet count of the connection with original key k, in
// the table and in the model, so that the tests can reach the count's wrap.
func setInPkts(t *testing.T, tb *Table, m *model, k *Key, v int32) {
	t.Helper()
	sh := &tb.shards[tb.shardOf(&k.Src, k.SrcPort)].shard
	sh.mu.Lock()
	ref := tb.find(sh, tb.origHash(k), DirOrig, k)
	if ref != noIdx {
		sh.slot(ref).pkts = v
	}
	sh.mu.Unlock()
	if ref == noIdx || m.byOrig[*k] == nil {
		t.Fatalf("setInPkts: %v not found", k)
	}
	m.byOrig[*k].inPkts = v
}

// TestTouchSync: a sync master's decisions for the packets the fast path forwarded
// (Touch with pkts) are the model's, which asks the kernel's ip_vs_sync_conn_needed after
// each packet, under every policy of the sync tests and a few more (a threshold of 0,
// whose count matches on both sides of the wrap; a negative threshold, which the kernel
// takes without a check, sync_refresh_period of 40 and 50 ms, below what the sysctl can set,
// which lets one tick send twice), mixed with packets through Lookup (ACKs, and FINs
// that move the state), counts set just below the int32 wrap, and runs of up to
// 2^16 packets. Every eighth step, and at the end, the table's and the model's connections agree.
func TestTouchSync(t *testing.T) {
	policies := append([]*SyncPolicy{
		{Threshold: 0, Period: 7},
		{Threshold: -3, Period: 0},
		{Threshold: -2, Period: 5},
		{Threshold: 5, Period: 0},
		{Threshold: 1, Period: 3, RefreshPeriod: 50 * time.Millisecond, Retries: 3},
		{Threshold: 3, Period: 0, RefreshPeriod: 40 * time.Millisecond, Retries: 2},
	}, syncPolicies...)
	runs := []uint64{1, 1, 2, 3, 4, 5, 7, 47, 49, 50, 51, 53, 100, 997, 1 << 12, 1 << 16}
	forSyncPolicies(t, policies, 7, func(t *testing.T, tb *Table, m *model, rng *rand.Rand, proto uint8, p *SyncPolicy) {
		now := int64(1000 * sec)
		conns := []Entry{conn(1, proto, MethodNAT, 0), conn(2, proto, MethodDR, 1), conn(3, proto, MethodTUN, 2)}
		opener := uint8(0)
		if proto == ProtoTCP {
			opener = TCPSyn
		}
		open := func(e Entry) {
			ein := e
			errT, errM := tb.Insert(&ein, opener, now), m.insert(e, opener, now)
			if errT != nil || errM != nil || ein.Sync != m.insertSync {
				t.Fatalf("Insert: table %v sync %v, model %v sync %v", errT, ein.Sync, errM, m.insertSync)
			}
		}
		packet := func(e Entry, fl uint8) {
			var out Entry
			st := tb.Lookup(DirOrig, &e.Orig, fl, now, &out)
			wst, wout := m.lookup(DirOrig, e.Orig, fl, now)
			if st != wst || st == Found && out != wout {
				t.Fatalf("%s at %d: table %v %+v, model %v %+v", flagString(fl), now, st, out, wst, wout)
			}
			if st != Found {
				open(e)
			}
		}
		for _, e := range conns {
			open(e)
			packet(e, TCPAck) // the handshake's ACK: ESTABLISHED
		}
		syncs, multi := 0, 0
		for i := range 1000 {
			now += syncSteps[rng.IntN(len(syncSteps))]
			e := conns[rng.IntN(len(conns))]
			switch r := rng.IntN(16); {
			case r == 0:
				packet(e, TCPFin|TCPAck)
			case r < 4:
				packet(e, TCPAck)
			case r == 4:
				if m.byOrig[e.Orig] != nil && !m.dead(m.byOrig[e.Orig], now) {
					v := math.MaxInt32 - int32(rng.IntN(120))
					if rng.IntN(2) == 0 {
						v = int32(p.Threshold) - 1 - int32(rng.IntN(4))
					}
					setInPkts(t, tb, m, &e.Orig, v)
				}
			default:
				pkts := runs[rng.IntN(len(runs))]
				if pkts == 1<<16 && rng.IntN(4) != 0 {
					pkts = 60
				}
				at := now - int64(rng.IntN(3))*sec/2
				var out Entry
				ok := tb.Touch(DirOrig, &e.Orig, at, now, pkts, &out)
				wok, wout := m.touch(e.Orig, at, now, pkts)
				if ok != wok || ok && out != wout {
					t.Fatalf("Touch of %d packets at %d (now %d), state %v: table %v %+v, model %v %+v", pkts, at, now, wout.State, ok, out, wok, wout)
				}
				if !ok {
					packet(e, opener) // open it again
					packet(e, TCPAck)
					continue
				}
				if out.Sync {
					syncs++
					if pkts > 1 {
						multi++
					}
				}
			}
			if i%8 == 0 {
				m.compare(tb, now, 3, false)
			}
		}
		m.compare(tb, now, 3, true)
		checkInvariants(t, tb)
		if multi == 0 {
			t.Fatal("no run of several packets was sent: the sequence tests nothing")
		}
	})
}
