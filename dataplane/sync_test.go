package dataplane

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"xlvs/conntrack"
)

func TestSyncRing(t *testing.T) {
	r := newSyncRing(5) // rounds up to 8
	if len(r.buf) != 8 {
		t.Fatalf("ring of %d, want 8", len(r.buf))
	}
	var out [3]SyncConn
	next, want := uint16(0), uint16(0)
	for round := 0; round < 10; round++ {
		// Fill it up: 8 fit, the 9th and 10th are counted drops.
		pushed := 0
		for i := 0; i < 10; i++ {
			c := SyncConn{CPort: next}
			if r.push(&c) {
				next++
				pushed++
			}
		}
		if pushed != 8 {
			t.Fatalf("round %d: %d pushed into an empty ring of 8", round, pushed)
		}
		if got := r.tail.Load() - r.head.Load(); got != 8 {
			t.Fatalf("round %d: %d queued, want 8", round, got)
		}
		// Take them out three at a time, in order.
		for {
			n := r.pop(out[:])
			if n == 0 {
				break
			}
			for _, c := range out[:n] {
				if c.CPort != want {
					t.Fatalf("round %d: popped %d, want %d", round, c.CPort, want)
				}
				want++
			}
		}
	}
	if want != next || r.full.Load() == 0 {
		t.Fatalf("popped up to %d of %d pushed; %d drops counted", want, next, r.full.Load())
	}
	if f := r.full.Load(); f != 10*10-uint64(next) {
		t.Fatalf("%d drops counted, want %d", f, 100-int(next))
	}
}

// masterRig is a rig whose dataplane queues connections as a sync master does.
func masterRig(t *testing.T, p conntrack.SyncPolicy) *rig {
	r := newRig(t, "rr", 1, 1)
	r.dp.SetSyncMaster(&p, false)
	return r
}

func (r *rig) send(t *testing.T, p pkt) {
	t.Helper()
	p.srcMAC, p.dstMAC, p.dst, p.dport = macClient, macDirExt, vip, 80
	if !p.src.IsValid() {
		p.src = client
	}
	r.ext.Inject(build(t, p))
	r.drain()
	r.int.Sent()
}

func (r *rig) synced() []SyncConn {
	out := make([]SyncConn, 64)
	return out[:r.dp.DrainSync(out)]
}

// TestSyncMasterTCP: with IPVS's default policy (sync_threshold 3 50) a TCP connection
// is handed over at its third incoming packet once ESTABLISHED, again every 50 packets,
// and at once when it moves to CLOSE_WAIT (a forced state change) — ip_vs_sync_conn_needed.
func TestSyncMasterTCP(t *testing.T) {
	r := masterRig(t, conntrack.DefaultSyncPolicy())
	r.send(t, pkt{sport: 5000, syn: true})
	r.send(t, pkt{sport: 5000, ack: true})
	if got := r.synced(); len(got) != 0 {
		t.Fatalf("synced after 2 packets: %+v", got)
	}
	r.send(t, pkt{sport: 5000, ack: true, payload: []byte("x")})
	got := r.synced()
	if len(got) != 1 {
		t.Fatalf("%d entries after the 3rd packet, want 1", len(got))
	}
	c := got[0]
	want := SyncConn{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Timeout: 900,
		Client: a16(client), CPort: 5000, VAddr: a16(vip), VPort: 80, DAddr: a16(rs1), DPort: 8080, Queued: c.Queued}
	if c != want || c.Queued <= 0 || c.Queued > r.dp.Now() {
		t.Fatalf("synced %+v\nwant    %+v", c, want)
	}
	for i := 4; i <= 52; i++ {
		r.send(t, pkt{sport: 5000, ack: true})
		if n := len(r.synced()); n != 0 && i != 53 {
			t.Fatalf("packet %d synced", i)
		}
	}
	r.send(t, pkt{sport: 5000, ack: true}) // 53: 53 % 50 == 3
	if got := r.synced(); len(got) != 1 || got[0].State != conntrack.StateEstablished {
		t.Fatalf("packet 53: %+v", got)
	}
	// 54: the client's FIN moves it to CLOSE_WAIT (IPVS's input table), a forced sync.
	r.send(t, pkt{sport: 5000, ack: true, fin: true})
	if got := r.synced(); len(got) != 1 || got[0].State != conntrack.StateCloseWait || got[0].Timeout != 60 {
		t.Fatalf("FIN: %+v", got)
	}
	// Stopped: nothing more is queued.
	r.dp.SetSyncMaster(nil, false)
	r.send(t, pkt{sport: 5001, syn: true})
	r.send(t, pkt{sport: 5001, ack: true})
	r.send(t, pkt{sport: 5001, ack: true})
	if got := r.synced(); len(got) != 0 {
		t.Fatalf("stopped master queued %+v", got)
	}
	if s := r.dp.SyncStats(); s.Queued != 3 || s.QueueFull != 0 {
		t.Fatalf("stats %+v, want 3 queued", s)
	}
}

// TestSyncMasterPersist: a persistent service's connection goes with its template (the
// client's masked address, port 0, the persistence timeout); sync_persist_mode sends the
// template only.
func TestSyncMasterPersist(t *testing.T) {
	for _, mode := range []bool{false, true} {
		r := newRig(t, "rr", 1, 1)
		r.persistent(t, 300*time.Second, 120) // /24
		p := conntrack.SyncPolicy{Threshold: 1, Period: 0}
		r.dp.SetSyncMaster(&p, mode)
		r.send(t, pkt{sport: 6000, udp: true})
		got := r.synced()
		wantN := 2
		if mode {
			wantN = 1
		}
		if len(got) != wantN {
			t.Fatalf("persist mode %v: %d entries %+v, want %d", mode, len(got), got, wantN)
		}
		tpl := got[len(got)-1]
		masked := a16(netip.MustParseAddr("198.18.1.0"))
		if !tpl.Template || tpl.Client != masked || tpl.CPort != 0 || tpl.VPort != 80 || tpl.DAddr != a16(rs1) || tpl.DPort != 8080 || tpl.Timeout != 300 || tpl.State != conntrack.StateNone {
			t.Fatalf("template %+v", tpl)
		}
		if !mode && (got[0].Template || got[0].State != conntrack.StateUDP || got[0].Timeout != 300 || got[0].CPort != 6000) {
			t.Fatalf("connection %+v", got[0])
		}
	}
}

// TestApplySync: what a master queued, applied on a backup, makes the backup forward the
// connection's next packet (an ACK: no new connection could start from it) to the same
// real server; a template sends the client's next connection to its server.
func TestApplySync(t *testing.T) {
	m := masterRig(t, conntrack.SyncPolicy{Threshold: 0, Period: 1}) // every packet in a synced state
	b := newRig(t, "rr", 1, 1)
	// Steer the master's connection to rs2 (rr gave rs1 to the first).
	m.send(t, pkt{sport: 7000, syn: true})
	m.synced()
	m.send(t, pkt{sport: 7001, syn: true})
	m.send(t, pkt{sport: 7001, ack: true})
	got := m.synced()
	if len(got) != 1 || got[0].DAddr != a16(rs2) || got[0].State != conntrack.StateEstablished {
		t.Fatalf("master queued %+v", got)
	}
	// Before: the backup drops the ACK (no connection).
	b.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7001, dport: 80, ack: true}))
	b.drain()
	if out := b.int.Sent(); len(out) != 0 {
		t.Fatal("backup forwarded an ACK of a connection it does not have")
	}
	c := got[0]
	c.Queued = 0
	if err := b.dp.ApplySync(&c); err != nil {
		t.Fatal(err)
	}
	if a, _ := b.dp.Conntrack().Conns(2); a != 1 {
		t.Fatalf("backup counts %d active connections on rs2, want 1", a)
	}
	b.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7001, dport: 80, ack: true}))
	b.drain()
	out := b.int.Sent()
	if len(out) != 1 {
		t.Fatalf("backup sent %d frames after the sync, want 1 (drops %v)", len(out), b.drops())
	}
	if info := check(t, out[0]); netip.AddrFrom16(info.Dst).Unmap() != rs2 || info.DstPort != 8080 {
		t.Fatalf("backup forwarded to %v:%d, want %v:8080", netip.AddrFrom16(info.Dst).Unmap(), info.DstPort, rs2)
	}
	// Entries the backup cannot place.
	bad := c
	bad.VPort = 81
	if err := b.dp.ApplySync(&bad); !errors.Is(err, ErrSyncNoService) {
		t.Fatalf("unknown service: %v", err)
	}
	bad = c
	bad.DAddr = a16(netip.MustParseAddr("198.18.2.99"))
	if err := b.dp.ApplySync(&bad); !errors.Is(err, ErrSyncNoDest) {
		t.Fatalf("unknown real server: %v", err)
	}
	bad = c
	bad.Proto = 1
	if err := b.dp.ApplySync(&bad); !errors.Is(err, ErrSyncBadState) {
		t.Fatalf("ICMP entry: %v", err)
	}
	tpl := c
	tpl.Template = true
	if err := b.dp.ApplySync(&tpl); !errors.Is(err, ErrSyncNoPersist) {
		t.Fatalf("template for a service that is not persistent: %v", err)
	}
	// A template pins the client to rs2 on the backup, where rr would start with rs1.
	b.persistent(t, time.Hour, 128)
	tpl.Client, tpl.CPort, tpl.Timeout = a16(client), 0, 3600
	if err := b.dp.ApplySync(&tpl); err != nil {
		t.Fatal(err)
	}
	for p := uint16(8000); p < 8003; p++ {
		if got := b.synFrom(t, client, p); got != rs2 {
			t.Fatalf("connection %d of the pinned client went to %v, want %v", p, got, rs2)
		}
	}
}

// TestSyncAllocs: a master's per-packet work, queueing included, allocates nothing, and
// a full queue drops and counts.
func TestSyncAllocs(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	p := conntrack.SyncPolicy{Threshold: 0, Period: 1} // every packet
	r.dp.SetSyncMaster(&p, false)
	udp := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 9, dport: 80, udp: true, payload: make([]byte, 50)})
	n := testing.AllocsPerRun(300, func() {
		for i := 0; i < 16; i++ {
			r.ext.Inject(udp)
		}
		r.w.poll()
	})
	if n != 0 {
		t.Fatalf("%v allocations per batch with sync on", n)
	}
	s := r.dp.SyncStats()
	if s.Queued != uint64(len(r.w.sync.buf)) || s.QueueFull == 0 {
		t.Fatalf("stats %+v: want the queue (%d) full and drops counted", s, len(r.w.sync.buf))
	}
}

// BenchmarkForwardEstablishedSync is BenchmarkForwardEstablished on a sync master with
// IPVS's default policy (one packet in 50 queues its connection; the queue is drained
// as the sync daemon would, every 1024 packets).
func BenchmarkForwardEstablishedSync(b *testing.B) {
	r := newRig(b, "rr", 1, 1)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	p := conntrack.DefaultSyncPolicy()
	r.dp.SetSyncMaster(&p, false)
	r.ext.Inject(build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, syn: true}))
	r.w.poll()
	ack := build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, ack: true, payload: make([]byte, 18)})
	out := make([]SyncConn, 256)
	b.ReportAllocs()
	b.ResetTimer()
	const batch = 32
	for i := 0; i < b.N; i += batch {
		for j := 0; j < batch; j++ {
			r.ext.Inject(ack)
		}
		r.w.poll()
		if i%1024 == 0 {
			r.dp.DrainSync(out)
		}
	}
	b.StopTimer()
	if s := r.dp.SyncStats(); b.N > 1000 && (s.Queued == 0 || s.QueueFull != 0) {
		b.Fatalf("sync stats %+v", s)
	}
}

// TestSyncFullNAT: a FULLNAT connection goes with its local address and port; a backup
// whose table shares the master's shard key takes it, and forwards the real server's
// reply to that local endpoint back to the client.
func TestSyncFullNAT(t *testing.T) {
	key := [conntrack.ShardKeyLen]byte{7, 7, 7}
	m := newFNRig(t, fnOpts{shardKey: key})
	b := newFNRig(t, fnOpts{shardKey: key})
	p := conntrack.SyncPolicy{Threshold: 0, Period: 1}
	m.dp.SetSyncMaster(&p, false)
	m.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4242, dport: 80, udp: true, payload: []byte("q")}))
	m.drain()
	m.int.Sent()
	got := m.synced()
	if len(got) != 1 {
		t.Fatalf("master queued %+v", got)
	}
	c := got[0]
	if c.Method != conntrack.MethodFullNAT || !isLaddr(fnFamilies[0], c.LAddr) || c.LPort < lportMin || c.DAddr != a16(rs1) || c.DPort != 8080 {
		t.Fatalf("FULLNAT entry %+v", c)
	}
	if err := b.dp.ApplySync(&c); err != nil {
		t.Fatal(err)
	}
	// The real server answers the local endpoint; the backup sends it to the client.
	lip := netip.AddrFrom16(c.LAddr).Unmap()
	b.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: lip, sport: 8080, dport: c.LPort, udp: true, payload: []byte("a")}))
	b.drain()
	out := b.ext.Sent()
	if len(out) != 1 {
		t.Fatalf("backup sent %d frames for the reply, want 1 (drops %v)", len(out), b.drops())
	}
	info := check(t, out[0])
	if netip.AddrFrom16(info.Src).Unmap() != vip || info.SrcPort != 80 || netip.AddrFrom16(info.Dst).Unmap() != client || info.DstPort != 4242 {
		t.Fatalf("reply left as %v:%d -> %v:%d", netip.AddrFrom16(info.Src).Unmap(), info.SrcPort, netip.AddrFrom16(info.Dst).Unmap(), info.DstPort)
	}
}
