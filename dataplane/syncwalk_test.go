package dataplane

import (
	"net/netip"
	"sort"
	"testing"
	"time"

	"xlvs/conntrack"
)

// walkedSync collects what WalkSync hands over, copies of each entry.
func walkedSync(dp *Dataplane) []SyncConn {
	var out []SyncConn
	dp.WalkSync(func(c *SyncConn) bool {
		out = append(out, *c)
		return true
	})
	return out
}

// TestWalkSync: a whole-table walk hands over every connection as a master sends it —
// service, real server (rr: the first connection to rs1, the second to rs2), state —
// with the time its timer has left instead of the state's whole timeout, then every
// persistence template; sync_persist_mode leaves a persistent service's connections out;
// a connection whose real server was deleted is left out; f can stop the walk. Applied
// on a backup, the walked entries make it forward the connections' next packets to the
// same real servers.
func TestWalkSync(t *testing.T) {
	m := newRig(t, "rr", 1, 1)
	m.send(t, pkt{sport: 7000, syn: true})
	m.send(t, pkt{sport: 7000, ack: true}) // ESTABLISHED, rs1
	m.send(t, pkt{sport: 7001, syn: true}) // SYN_RECV, rs2
	m.send(t, pkt{sport: 7002, udp: true}) // UDP, rs1
	// The expected entries, from IPVS's rules: NAT, the real server's port 8080, the
	// state the packets left each connection in, and the state's timeout (IPVS's
	// defaults: ESTABLISHED 900 s, SYN_RECV 60 s, UDP 300 s) less the time since.
	base := SyncConn{Method: conntrack.MethodNAT, Client: a16(client), VAddr: a16(vip), VPort: 80, DPort: 8080}
	want := map[uint16]SyncConn{}
	for _, w := range []struct {
		port    uint16
		proto   uint8
		state   conntrack.State
		rs      netip.Addr
		timeout uint32
	}{
		{7000, 6, conntrack.StateEstablished, rs1, 900},
		{7001, 6, conntrack.StateSynRecv, rs2, 60},
		{7002, 17, conntrack.StateUDP, rs1, 300},
	} {
		c := base
		c.Proto, c.CPort, c.State, c.DAddr, c.Timeout = w.proto, w.port, w.state, a16(w.rs), w.timeout
		want[w.port] = c
	}
	check := func(got []SyncConn, ports ...uint16) {
		t.Helper()
		sort.Slice(got, func(i, j int) bool { return got[i].CPort < got[j].CPort })
		if len(got) != len(ports) {
			t.Fatalf("walked %d entries %+v, want ports %v", len(got), got, ports)
		}
		for i, p := range ports {
			g, w := got[i], want[p]
			if g.Queued <= 0 || g.Queued > m.dp.Now() {
				t.Errorf("entry %d: Queued %d, want the walk's time", p, g.Queued)
			}
			// The timer has run for at most the test's time; rounded up, it shows the
			// whole timeout for the first second.
			if g.Timeout > w.Timeout || g.Timeout < w.Timeout-5 {
				t.Errorf("entry %d: timeout %d s, want about %d s", p, g.Timeout, w.Timeout)
			}
			g.Queued, g.Timeout, w.Timeout = 0, 0, 0
			if g != w {
				t.Errorf("entry %d:\n got %+v\nwant %+v", p, g, w)
			}
		}
	}
	check(walkedSync(m.dp), 7000, 7001, 7002)

	// Stopped after the first.
	n := 0
	m.dp.WalkSync(func(*SyncConn) bool { n++; return false })
	if n != 1 {
		t.Fatalf("a walk told to stop went on: %d calls", n)
	}

	// Applied on a backup: its next packets go to the same real servers.
	b := newRig(t, "rr", 1, 1)
	for _, c := range walkedSync(m.dp) {
		if err := b.dp.ApplySync(&c); err != nil {
			t.Fatalf("apply %+v: %v", c, err)
		}
	}
	for _, p := range []struct {
		port uint16
		udp  bool
		rs   netip.Addr
	}{{7000, false, rs1}, {7001, false, rs2}, {7002, true, rs1}} {
		b.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: p.port, dport: 80, ack: !p.udp, udp: p.udp}))
		b.drain()
		out := b.int.Sent()
		if len(out) != 1 {
			t.Fatalf("backup sent %d frames for port %d, want 1 (drops %v)", len(out), p.port, b.drops())
		}
		if info := check2(t, out[0]); info != p.rs {
			t.Fatalf("backup forwarded port %d to %v, want %v", p.port, info, p.rs)
		}
	}

	// Persistent: the template comes after the connections, with the client's address
	// masked (/24), no client port, the service's port, the real server's port and the
	// persistence timer's time left; in sync_persist_mode only templates.
	for _, mode := range []bool{false, true} {
		r := newRig(t, "rr", 1, 1)
		r.persistent(t, 300*time.Second, 120)
		if mode {
			r.dp.SetSyncMaster(&conntrack.SyncPolicy{Threshold: 3, Period: 50}, true)
		}
		r.send(t, pkt{sport: 6000, udp: true})
		got := walkedSync(r.dp)
		wantN := 2
		if mode {
			wantN = 1
		}
		if len(got) != wantN {
			t.Fatalf("persist mode %v: walked %+v, want %d entries", mode, got, wantN)
		}
		tpl := got[len(got)-1]
		wantTpl := SyncConn{Proto: 17, Template: true, Method: conntrack.MethodNAT, State: conntrack.StateNone,
			Client: a16(netip.MustParseAddr("198.18.1.0")), VAddr: a16(vip), VPort: 80, DAddr: a16(rs1), DPort: 8080}
		if tpl.Timeout > 300 || tpl.Timeout < 295 {
			t.Errorf("template timeout %d s, want about 300", tpl.Timeout)
		}
		tpl.Timeout, tpl.Queued = 0, 0
		if tpl != wantTpl {
			t.Errorf("template\n got %+v\nwant %+v", tpl, wantTpl)
		}
		if !mode && (got[0].Template || got[0].CPort != 6000 || got[0].State != conntrack.StateUDP) {
			t.Errorf("connection %+v", got[0])
		}
	}

	// rs2 deleted: its connection (7001) is no longer walked.
	old := m.dp.Snapshot()
	svcs := append([]Service(nil), old.Services...)
	for i := range svcs {
		svcs[i].Dests = svcs[i].Dests[:1]
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	check(walkedSync(m.dp), 7000, 7002)
}

// check2 returns the destination address of a frame the backup sent.
func check2(t *testing.T, frame []byte) netip.Addr {
	t.Helper()
	info := check(t, frame)
	return netip.AddrFrom16(info.Dst).Unmap()
}
