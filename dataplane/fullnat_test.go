package dataplane

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/sched"
)

// checkGo parses a frame with gopacket and fails on any decoding error.
func checkGo(t testing.TB, frame []byte) {
	t.Helper()
	if p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default); p.ErrorLayer() != nil {
		t.Fatalf("gopacket: %v", p.ErrorLayer().Error())
	}
}

func isLaddr(f fnFamily, a [16]byte) bool {
	for _, l := range f.laddrs {
		if a16(l) == a {
			return true
		}
	}
	return false
}

func ttlOf(frame []byte, info packet.Info) uint8 {
	if info.Family == 4 {
		return frame[info.L3Off+8]
	}
	return frame[info.L3Off+7]
}

// TestFullNATBothDirections: a client's packet leaves towards the real server from a
// local address and a local port of the client's connection-table shard; the real
// server's reply to that endpoint reaches the client from VIP:port. TCP and UDP, IPv4
// and IPv6, checksums verified (ours and gopacket's), TTL decremented both ways, MACs,
// payload and counters right.
func TestFullNATBothDirections(t *testing.T) {
	for _, f := range fnFamilies {
		for _, udp := range []bool{false, true} {
			name := f.name + map[bool]string{false: "/tcp", true: "/udp"}[udp]
			t.Run(name, func(t *testing.T) {
				r := newFNRig(t, fnOpts{})
				ct := r.dp.Conntrack()
				r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80, udp: udp, syn: true, payload: []byte("hello")}))
				r.w.poll()
				out := r.int.Sent()
				if len(out) != 1 {
					t.Fatalf("int0 sent %d frames, want 1 (drops %v)", len(out), r.drops())
				}
				info := check(t, out[0])
				checkGo(t, out[0])
				if !isLaddr(f, info.Src) || info.SrcPort < lportMin {
					t.Fatalf("source %v, want a local address of %v and a port ≥ %d", ap(info.Src, info.SrcPort), f.laddrs, lportMin)
				}
				if ct.ShardOf(info.Src, info.SrcPort) != ct.ShardOf(a16(f.client), 40000) {
					t.Fatalf("local endpoint %v in shard %d, client in %d", ap(info.Src, info.SrcPort), ct.ShardOf(info.Src, info.SrcPort), ct.ShardOf(a16(f.client), 40000))
				}
				if ap(info.Dst, info.DstPort) != netip.AddrPortFrom(f.rs1, 8080) {
					t.Fatalf("destination %v, want %v:8080", ap(info.Dst, info.DstPort), f.rs1)
				}
				if ttlOf(out[0], info) != 63 || macOf(out[0][0:6]) != macRS1 || macOf(out[0][6:12]) != macDirInt {
					t.Fatalf("TTL %d, MACs %x <- %x", ttlOf(out[0], info), out[0][0:6], out[0][6:12])
				}
				if !bytes.HasSuffix(out[0], []byte("hello")) {
					t.Fatal("payload changed")
				}
				local := ap(info.Src, info.SrcPort)

				// A second packet of the flow takes the same local endpoint.
				r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80, udp: udp, ack: true, payload: []byte("more")}))
				r.w.poll()
				if out := r.int.Sent(); len(out) != 1 {
					t.Fatalf("second packet: %d frames (drops %v)", len(out), r.drops())
				} else if i2 := check(t, out[0]); ap(i2.Src, i2.SrcPort) != local {
					t.Fatalf("second packet from %v, first from %v", ap(i2.Src, i2.SrcPort), local)
				}

				// The reply.
				r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: f.rs1, dst: local.Addr(), sport: 8080, dport: local.Port(), udp: udp, syn: true, ack: true, payload: []byte("world")}))
				r.w.poll()
				back := r.ext.Sent()
				if len(back) != 1 {
					t.Fatalf("ext0 sent %d frames, want 1 (drops %v)", len(back), r.drops())
				}
				bi := check(t, back[0])
				checkGo(t, back[0])
				if ap(bi.Src, bi.SrcPort) != netip.AddrPortFrom(f.vip, 80) || ap(bi.Dst, bi.DstPort) != netip.AddrPortFrom(f.client, 40000) {
					t.Fatalf("reply %v → %v, want %v:80 → %v:40000", ap(bi.Src, bi.SrcPort), ap(bi.Dst, bi.DstPort), f.vip, f.client)
				}
				if ttlOf(back[0], bi) != 63 || macOf(back[0][0:6]) != macClient || macOf(back[0][6:12]) != macDirExt {
					t.Fatal("reply TTL or MACs wrong")
				}
				if !bytes.HasSuffix(back[0], []byte("world")) {
					t.Fatal("reply payload changed")
				}
				svc := f.svcTCP
				if udp {
					svc = f.svcUDP
				}
				if s := r.dp.ServiceStats(svc); s.Conns != 1 || s.InPkts != 2 || s.OutPkts != 1 {
					t.Fatalf("service stats %+v", s)
				}
				var e conntrack.Entry
				key := conntrack.Key{Src: a16(f.client), Dst: a16(f.vip), SrcPort: 40000, DstPort: 80, Proto: 6}
				if udp {
					key.Proto = 17
				}
				if !ct.Get(conntrack.DirOrig, &key, r.dp.now(), &e) || e.Method != conntrack.MethodFullNAT || ap(e.Reply.Dst, e.Reply.DstPort) != local {
					t.Fatalf("entry %+v", e)
				}
				if !udp && e.State != conntrack.StateEstablished {
					t.Fatalf("state %v after SYN, ACK, SYN-ACK; want ESTABLISHED", e.State)
				}
				r.w.poll()
				if r.ext.FramesAccounted() != 1024 || r.int.FramesAccounted() != 1024 {
					t.Fatal("frames leaked")
				}
			})
		}
	}
}

// TestFullNATDrops: without local addresses a new FULLNAT connection is dropped and
// counted (no_laddr); an expired TTL is dropped both ways; a reply to an unknown local
// endpoint is no_reply_conn.
func TestFullNATDrops(t *testing.T) {
	t.Run("no local address", func(t *testing.T) {
		r := newFNRig(t, fnOpts{noLaddrs: true})
		for _, f := range fnFamilies {
			r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80, syn: true}))
		}
		r.drain()
		if n := len(r.int.Sent()); n != 0 || r.drops()["no_laddr"] != 2 || len(r.drops()) != 1 {
			t.Fatalf("sent %d, drops %v; want none sent and 2 no_laddr", n, r.drops())
		}
		if r.dp.Conntrack().Len() != 0 {
			t.Fatal("a connection was created")
		}
	})
	t.Run("ttl", func(t *testing.T) {
		r := newFNRig(t, fnOpts{})
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: true, ttl: 1}))
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40001, dport: 80, udp: true}))
		r.drain()
		out := r.int.Sent()
		if len(out) != 1 || r.drops()["ttl_expired"] != 1 {
			t.Fatalf("sent %d, drops %v", len(out), r.drops())
		}
		info := check(t, out[0])
		r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: netip.AddrFrom16(info.Dst).Unmap(), dst: netip.AddrFrom16(info.Src).Unmap(), sport: 8080, dport: info.SrcPort, udp: true, ttl: 1}))
		r.drain()
		if len(r.ext.Sent()) != 0 || r.drops()["ttl_expired"] != 2 {
			t.Fatalf("reply with TTL 1: drops %v", r.drops())
		}
	})
	t.Run("unknown local endpoint", func(t *testing.T) {
		r := newFNRig(t, fnOpts{})
		r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: lip4a, sport: 8080, dport: 5555, udp: true}))
		r.drain()
		if d := r.drops(); d["no_reply_conn"] != 1 || len(d) != 1 {
			t.Fatalf("drops %v", d)
		}
	})
}

// clientsInShard returns n client ports (of addr) whose endpoints fall in shard s.
func clientsInShard(ct *conntrack.Table, addr netip.Addr, s, n int) []uint16 {
	var out []uint16
	for p := 1; p < 1<<16 && len(out) < n; p++ {
		if ct.ShardOf(a16(addr), uint16(p)) == s {
			out = append(out, uint16(p))
		}
	}
	return out
}

// TestFullNATPortExhaustion: clients of one connection-table shard to one real server
// through one local address can have at most the ports of that shard; each gets a
// distinct one (no tuple handed out twice), the rest are dropped (no_lport) and counted
// as port conflicts of the local address. Ports come free when connections end.
func TestFullNATPortExhaustion(t *testing.T) {
	r := newFNRig(t, fnOpts{entries: 1 << 17, shards: 64, oneRS: true})
	ct := r.dp.Conntrack()
	const shard = 5
	capacity := len(r.dp.Snapshot().Services[1].Laddrs[0].ports.shard(shard)) // v4 UDP, lip4a
	if capacity < 500 || capacity > 2000 {
		t.Fatalf("%d ports in shard %d: expected about 64512/64", capacity, shard)
	}
	// One local address only: drop lip4b.
	if err := r.dp.Publish(r.snapshot(t, map[netip.Addr]bool{lip4b: true})); err != nil {
		t.Fatal(err)
	}
	clients := []netip.Addr{client, netip.MustParseAddr("198.18.1.3"), netip.MustParseAddr("198.18.1.4")}
	total := 0
	for _, c := range clients {
		for _, p := range clientsInShard(ct, c, shard, capacity/2+100) {
			r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: c, dst: vip, sport: p, dport: 80, udp: true}))
			if total++; total%64 == 0 {
				r.drain()
			}
		}
	}
	r.drain()
	out := r.int.Sent()
	seen := map[uint16]bool{}
	for _, f := range out {
		info := check(t, f)
		if netip.AddrFrom16(info.Src).Unmap() != lip4a || ct.ShardOf(info.Src, info.SrcPort) != shard {
			t.Fatalf("local endpoint %v (shard %d)", ap(info.Src, info.SrcPort), ct.ShardOf(info.Src, info.SrcPort))
		}
		if seen[info.SrcPort] {
			t.Fatalf("local port %d handed out twice", info.SrcPort)
		}
		seen[info.SrcPort] = true
	}
	drops := r.drops()
	if len(out) > capacity || len(out) < capacity*3/4 || len(out)+int(drops["no_lport"]) != total || len(drops) != 1 {
		t.Fatalf("%d of %d connections forwarded with %d ports in the shard; drops %v", len(out), total, capacity, drops)
	}
	t.Logf("%d of %d connections got one of the shard's %d ports", len(out), total, capacity)
	id := r.dp.Snapshot().Services[1].Laddrs[0].ID
	if got := r.dp.LaddrConflicts(id); got != drops["no_lport"] {
		t.Fatalf("port conflicts %d, want one per failed allocation (%d)", got, drops["no_lport"])
	}

	// The connections end: their ports serve new clients.
	if n := ct.RemoveDest(fnFamilies[0].destID1, r.dp.now()); n != len(out) {
		t.Fatalf("removed %d connections, want %d", n, len(out))
	}
	for _, p := range clientsInShard(ct, netip.MustParseAddr("198.18.1.9"), shard, 64) {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: netip.MustParseAddr("198.18.1.9"), dst: vip, sport: p, dport: 80, udp: true}))
	}
	r.drain()
	if n := len(r.int.Sent()); n != 64 {
		t.Fatalf("after the connections ended, %d of 64 new ones forwarded (drops %v)", n, r.drops())
	}
}

// TestFullNATPortCursor: a worker hands out a shard's local ports in the order of the
// shard's port list (lportIndex, checked against ShardOf by TestLportIndex), each new
// connection going on from the port after the last one's. A port so comes back only
// after every other port of the shard has been handed out: connections that live
// shorter than that never meet a port in use, and no insert is refused (the table's
// Exists count stays 0). Once the connections end, the next ones take the ports never
// used yet before the ones just freed.
func TestFullNATPortCursor(t *testing.T) {
	r := newFNRig(t, fnOpts{entries: 1 << 17, shards: 64, oneRS: true})
	ct := r.dp.Conntrack()
	const shard = 9
	// One local address only: drop lip4b.
	if err := r.dp.Publish(r.snapshot(t, map[netip.Addr]bool{lip4b: true})); err != nil {
		t.Fatal(err)
	}
	list := r.dp.Snapshot().Services[1].Laddrs[0].ports.shard(shard) // v4 UDP, lip4a
	pos := map[uint16]int{}
	for i, p := range list {
		pos[p] = i
	}
	send := func(c netip.Addr, ports []uint16) []packet.Info {
		t.Helper()
		for i, p := range ports {
			r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: c, dst: vip, sport: p, dport: 80, udp: true}))
			if i%64 == 63 {
				r.drain()
			}
		}
		r.drain()
		var out []packet.Info
		for _, f := range r.int.Sent() {
			out = append(out, check(t, f))
		}
		return out
	}
	// The shard's ports less 8, from two clients (each client port once).
	n := len(list) - 8
	half := clientsInShard(ct, client, shard, n/2)
	out := send(client, half)
	out = append(out, send(netip.MustParseAddr("198.18.1.3"), clientsInShard(ct, netip.MustParseAddr("198.18.1.3"), shard, n-len(half)))...)
	if len(out) != n {
		t.Fatalf("%d of %d connections forwarded (drops %v)", len(out), n, r.drops())
	}
	first, ok := pos[out[0].SrcPort]
	if !ok {
		t.Fatalf("local port %d is not one of shard %d's", out[0].SrcPort, shard)
	}
	for i, info := range out {
		if want := list[(first+i)%len(list)]; info.SrcPort != want || netip.AddrFrom16(info.Src).Unmap() != lip4a {
			t.Fatalf("connection %d left from %v, want %v:%d (the port after the last one's)", i, ap(info.Src, info.SrcPort), lip4a, want)
		}
	}
	if st := ct.Stats(); st.Exists != 0 || st.Inserts != uint64(n) {
		t.Fatalf("%d inserts refused (a local port in use) and %d made for %d connections: want 0 and %d", st.Exists, st.Inserts, n, n)
	}
	// They end; the next 16 take the 8 ports never used, then the first ones freed.
	if got := ct.RemoveDest(fnFamilies[0].destID1, r.dp.now()); got != n {
		t.Fatalf("removed %d connections, want %d", got, n)
	}
	c := netip.MustParseAddr("198.18.1.9")
	again := send(c, clientsInShard(ct, c, shard, 16))
	if len(again) != 16 {
		t.Fatalf("%d of 16 connections forwarded after the others ended (drops %v)", len(again), r.drops())
	}
	for i, info := range again {
		if want := list[(first+n+i)%len(list)]; info.SrcPort != want {
			t.Fatalf("after the others ended, connection %d left from port %d, want %d", i, info.SrcPort, want)
		}
	}
}

// TestFullNATPortCursorSkipsRun: a worker's cursor that meets a port in use goes on
// from a random port of the shard, not from the next one. A successor director holds
// its predecessor's connections (sync, handoff), whose ports lie in runs of
// consecutive ones, as that director's own cursor handed them out; walking such a run
// port by port would drop new connections (no_lport) until the cursor left it. Here 400
// ports in a row from the worker's cursor are in use (connections inserted into the
// table as a predecessor's), with one local address. Two batches of 64 new connections
// must all get a port. (Walking the run, 12 of the first 64 were dropped. The first
// batch's endpoints are drawn before any is inserted, predrawFullNAT, so most of them
// meet the run once before a random port.)
func TestFullNATPortCursorSkipsRun(t *testing.T) {
	r := newFNRig(t, fnOpts{entries: 1 << 17, shards: 64, oneRS: true, batch: 64})
	ct := r.dp.Conntrack()
	const shard = 9
	if err := r.dp.Publish(r.snapshot(t, map[netip.Addr]bool{lip4b: true})); err != nil {
		t.Fatal(err)
	}
	x := r.dp.Snapshot().Services[1].Laddrs[0].ports // v4 UDP, lip4a
	list := x.shard(shard)
	cur := x.cursor(0, shard)
	if cur == nil {
		t.Fatal("no cursor for worker 0")
	}
	const run = 400
	old := netip.MustParseAddr("198.18.1.7")
	for k, cport := range clientsInShard(ct, old, shard, run) {
		e := conntrack.Entry{
			Orig:    conntrack.Key{Src: a16(old), Dst: a16(vip), SrcPort: cport, DstPort: 80, Proto: 17},
			Reply:   conntrack.Key{Src: a16(rs1), Dst: a16(lip4a), SrcPort: 8080, DstPort: list[(int(*cur)+k)%len(list)], Proto: 17},
			Method:  conntrack.MethodFullNAT,
			Service: fnFamilies[0].svcUDP,
			Dest:    fnFamilies[0].destID1,
		}
		if err := ct.Insert(&e, 0, r.dp.now()); err != nil {
			t.Fatalf("a predecessor's connection %d: %v", k, err)
		}
	}
	const n = 64
	cports := clientsInShard(ct, client, shard, 2*n)
	for b := range 2 {
		before := ct.Stats().Exists
		for _, p := range cports[b*n : (b+1)*n] {
			r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: p, dport: 80, udp: true}))
		}
		r.w.poll() // one batch
		r.drain()
		out := r.int.Sent()
		if len(out) != n {
			t.Fatalf("batch %d: %d of %d new connections forwarded (drops %v)", b, len(out), n, r.drops())
		}
		for _, f := range out {
			info := check(t, f)
			var e conntrack.Entry
			k := conntrack.Key{Src: a16(rs1), Dst: info.Src, SrcPort: 8080, DstPort: info.SrcPort, Proto: 17}
			if !ct.Get(conntrack.DirReply, &k, r.dp.now(), &e) || e.Orig.Src != a16(client) {
				t.Fatalf("local endpoint %v: its entry is not the new client's (%+v)", ap(info.Src, info.SrcPort), e.Orig)
			}
		}
		t.Logf("batch %d: %d inserts refused", b, ct.Stats().Exists-before)
	}
}

// TestFullNATSpread: new connections spread over the local addresses and over the ports
// of their shard, always in the client's shard.
func TestFullNATSpread(t *testing.T) {
	r := newFNRig(t, fnOpts{})
	ct := r.dp.Conntrack()
	const n = 400
	for i := 0; i < n; i++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: uint16(20000 + i), dport: 80, syn: true}))
		if i%64 == 63 {
			r.drain()
		}
	}
	r.drain()
	out := r.int.Sent()
	if len(out) != n {
		t.Fatalf("sent %d of %d (drops %v)", len(out), n, r.drops())
	}
	byLaddr := map[netip.Addr]int{}
	byPair := map[string]int{} // "local address → real server"
	ports := map[uint16]bool{}
	for _, f := range out {
		info := check(t, f)
		byLaddr[netip.AddrFrom16(info.Src).Unmap()]++
		byPair[netip.AddrFrom16(info.Src).Unmap().String()+" → "+netip.AddrFrom16(info.Dst).Unmap().String()]++
		ports[info.SrcPort] = true
		var dst conntrack.Entry
		key := conntrack.Key{Src: info.Dst, Dst: info.Src, SrcPort: info.DstPort, DstPort: info.SrcPort, Proto: 6}
		if !ct.Get(conntrack.DirReply, &key, r.dp.now(), &dst) || ct.ShardOf(info.Src, info.SrcPort) != ct.ShardOf(dst.Orig.Src, dst.Orig.SrcPort) {
			t.Fatalf("local endpoint %v: no entry or another shard than its client", ap(info.Src, info.SrcPort))
		}
	}
	if byLaddr[lip4a] < n/3 || byLaddr[lip4b] < n/3 {
		t.Fatalf("local addresses used %v: want both about half the time", byLaddr)
	}
	// rr alternates the two real servers, as the local addresses alternate: each local
	// address must still meet both servers (laddrSkipEvery), about a quarter each.
	for _, la := range []netip.Addr{lip4a, lip4b} {
		for _, rs := range []netip.Addr{rs1, rs2} {
			if byPair[la.String()+" → "+rs.String()] < n/8 {
				t.Fatalf("(local address, real server) pairs used %v: want all four about a quarter of the time", byPair)
			}
		}
	}
	if len(ports) < n/2 {
		t.Fatalf("%d distinct local ports for %d connections: not spread", len(ports), n)
	}
}

// TestFullNATRemovedLaddr: a local address removed from the service (listed as
// draining) takes no new connections, and the ones using it continue both ways.
func TestFullNATRemovedLaddr(t *testing.T) {
	r := newFNRig(t, fnOpts{})
	var local netip.AddrPort
	for p := uint16(30000); ; p++ { // find a connection that uses lip4a
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: p, dport: 80, udp: true}))
		r.w.poll()
		info := check(t, r.int.Sent()[0])
		if local = ap(info.Src, info.SrcPort); local.Addr() == lip4a {
			break
		}
	}
	snap := r.snapshot(t, map[netip.Addr]bool{lip4a: true})
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	if got := snap.LaddrAddrs(); len(got) != 3 {
		t.Fatalf("LaddrAddrs %v: want the remaining two and the draining one", got)
	}
	r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: local.Addr(), sport: 8080, dport: local.Port(), udp: true}))
	r.w.poll()
	if n := len(r.ext.Sent()); n != 1 {
		t.Fatalf("reply to a removed local address: %d sent (drops %v)", n, r.drops())
	}
	for p := uint16(50000); p < 50100; p++ {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: p, dport: 80, udp: true}))
		if p%64 == 0 {
			r.drain()
		}
	}
	r.drain()
	for _, f := range r.int.Sent() {
		if info := check(t, f); netip.AddrFrom16(info.Src).Unmap() != lip4b {
			t.Fatalf("new connection from %v after lip4a was removed", netip.AddrFrom16(info.Src).Unmap())
		}
	}
}

// TestFullNATInsertRace: insertFullNAT reports ErrExists when the connection itself
// exists (another worker created it between lookup and insert), never a second entry.
func TestFullNATInsertRace(t *testing.T) {
	r := newFNRig(t, fnOpts{})
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: true}))
	r.w.poll()
	if len(r.int.Sent()) != 1 {
		t.Fatal("first packet not forwarded")
	}
	w := r.w
	frame := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: true})
	p := &pktDesc{q: &conntrack.Query{}, now: r.dp.now()}
	if packet.Parse(frame, &p.info) != packet.ResultOK {
		t.Fatal("parse")
	}
	p.q.Key = conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 40000, DstPort: 80, Proto: 17}
	svc := &r.dp.Snapshot().Services[1]
	p.q.Entry = conntrack.Entry{Orig: p.q.Key, Reply: conntrack.Key{Src: a16(rs2), Dst: a16(client), SrcPort: 8080, DstPort: 40000, Proto: 17},
		Dest: 2, Service: svc.ID, Method: conntrack.MethodFullNAT}
	if err := w.insertFullNAT(p, svc); !errors.Is(err, conntrack.ErrExists) {
		t.Fatalf("insertFullNAT of an existing connection: %v, want ErrExists", err)
	}
	if n := r.dp.Conntrack().Len(); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
}

// TestLportIndex: the index lists every port lportMin..65535 exactly once, each under
// its shard (differential against ShardOf), for several table sizes.
func TestLportIndex(t *testing.T) {
	for _, tc := range []struct {
		name            string
		entries, shards int
	}{{"1 shard", 1024, 1}, {"64 shards", 1 << 16, 64}, {"256 shards", 1 << 18, 256}} {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := conntrack.New(conntrack.Config{MaxEntries: tc.entries, Shards: tc.shards})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range []netip.Addr{lip4a, lip6} {
				x := newLportIndex(ct, a16(a), 2)
				seen := make([]bool, 1<<16)
				for s := 0; s < ct.Shards(); s++ {
					for _, p := range x.shard(s) {
						if p < lportMin || seen[p] || ct.ShardOf(a16(a), p) != s {
							t.Fatalf("%v: port %d under shard %d (ShardOf %d, seen %v)", a, p, s, ct.ShardOf(a16(a), p), seen[p])
						}
						seen[p] = true
					}
				}
				for p := lportMin; p < 1<<16; p++ {
					if !seen[p] {
						t.Fatalf("%v: port %d missing", a, p)
					}
				}
				if x.shard(-1) != nil || x.shard(ct.Shards()) != nil {
					t.Fatal("shard out of range returned ports")
				}
			}
		})
	}
}

// TestFullNATSnapshot: local addresses must be of the service's family and listed once;
// FULLNAT real servers' replies are redirected (RealKeys); a snapshot belongs to one
// dataplane.
func TestFullNATSnapshot(t *testing.T) {
	s, _ := sched.New("rr", nil, 0)
	base := func(ls ...Laddr) []Service {
		return []Service{{ID: 1, Key: SvcKey{Addr: a16(vip), Port: 80, Proto: 6}, Sched: s, Laddrs: ls,
			Dests: []Dest{{ID: 1, Addr: a16(rs1), Port: 8080, Method: conntrack.MethodFullNAT, Weight: 1}}}}
	}
	for _, tc := range []struct {
		name string
		ls   []Laddr
		ok   bool
	}{
		{"none", nil, true},
		{"two", []Laddr{{ID: 1, Addr: a16(lip4a)}, {ID: 2, Addr: a16(lip4b)}}, true},
		{"ipv6 on an ipv4 service", []Laddr{{ID: 1, Addr: a16(lip6)}}, false},
		{"twice", []Laddr{{ID: 1, Addr: a16(lip4a)}, {ID: 2, Addr: a16(lip4a)}}, false},
		{"unspecified", []Laddr{{ID: 1, Addr: a16(netip.IPv4Unspecified())}}, false},
		{"zero", []Laddr{{ID: 1}}, false},
		{"id out of range", []Laddr{{ID: maxDestID, Addr: a16(lip4a)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := NewSnapshot(base(tc.ls...))
			if (err == nil) != tc.ok {
				t.Fatalf("NewSnapshot: %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				return
			}
			if rk := snap.RealKeys(); len(rk) != 1 || rk[0] != (SvcKey{Addr: a16(rs1), Port: 8080, Proto: 6}) {
				t.Fatalf("RealKeys %v: want the FULLNAT real server", rk)
			}
			if !snap.isReal(ptr(a16(rs1)), 8080, 6) {
				t.Fatal("FULLNAT real server not recognised")
			}
			if got := len(snap.LaddrAddrs()); got != len(tc.ls) {
				t.Fatalf("LaddrAddrs: %d, want %d", got, len(tc.ls))
			}
		})
	}
	snap, err := NewSnapshot(base(Laddr{ID: 1, Addr: a16(lip4a)}))
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := newFNRig(t, fnOpts{}), newFNRig(t, fnOpts{})
	if err := r1.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	if err := r1.dp.Publish(snap); err != nil {
		t.Fatalf("publishing a snapshot again on its dataplane: %v", err)
	}
	if err := r2.dp.Publish(snap); err == nil {
		t.Fatal("a snapshot bound to one dataplane was published on another")
	}
}

func ptr[T any](v T) *T { return &v }

// TestFullNATICMP: errors about a FULLNAT connection reach the other party translated,
// with every checksum right: from the real server's side the client gets the error from
// VIP:port quoting its own packet; from the client's side the real server gets it from
// the local address quoting its own packet. The TCP state does not move.
func TestFullNATICMP(t *testing.T) {
	for _, f := range fnFamilies {
		for _, fromRS := range []bool{true, false} {
			name := f.name + map[bool]string{true: "/from real server", false: "/from client"}[fromRS]
			t.Run(name, func(t *testing.T) {
				r := newFNRig(t, fnOpts{})
				r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80, syn: true, payload: []byte("hello")}))
				r.w.poll()
				out := r.int.Sent()
				if len(out) != 1 {
					t.Fatalf("request not forwarded: %v", r.drops())
				}
				info := check(t, out[0])
				local := ap(info.Src, info.SrcPort)
				key := conntrack.Key{Src: a16(f.client), Dst: a16(f.vip), SrcPort: 40000, DstPort: 80, Proto: 6}
				var before, after conntrack.Entry
				if !r.dp.ct.Get(conntrack.DirOrig, &key, r.dp.now(), &before) {
					t.Fatal("no entry")
				}
				unreach, port := uint8(3), uint8(3)
				if f.client.Is6() {
					unreach, port = 1, 4
				}
				var sent [][]byte
				var wantOuterSrc, wantOuterDst netip.Addr
				var wantQSrc, wantQDst netip.AddrPort
				if fromRS {
					// rs1 quotes what the director sent it: LIP:lport → rs1:8080.
					q := ipOnly(out[0])
					r.int.Inject(icmpErrFrame(t, macRS1, macDirInt, f.rs1, local.Addr(), unreach, port, q, 0))
					r.w.poll()
					sent = r.ext.Sent()
					wantOuterSrc, wantOuterDst = f.vip, f.client
					wantQSrc, wantQDst = netip.AddrPortFrom(f.client, 40000), netip.AddrPortFrom(f.vip, 80)
				} else {
					// The client quotes a reply the director sent: VIP:80 → client:40000.
					q := ipOnly(build(t, pkt{src: f.vip, dst: f.client, sport: 80, dport: 40000, syn: true, ack: true}))
					r.ext.Inject(icmpErrFrame(t, macClient, macDirExt, f.client, f.vip, unreach, port, q, 0))
					r.w.poll()
					sent = r.int.Sent()
					wantOuterSrc, wantOuterDst = local.Addr(), f.rs1
					wantQSrc, wantQDst = netip.AddrPortFrom(f.rs1, 8080), local
				}
				if len(sent) != 1 {
					t.Fatalf("%d frames forwarded, want 1 (drops %v)", len(sent), r.drops())
				}
				oi, e := checkICMP(t, sent[0])
				if netip.AddrFrom16(oi.Src).Unmap() != wantOuterSrc || netip.AddrFrom16(oi.Dst).Unmap() != wantOuterDst {
					t.Fatalf("outer %v → %v, want %v → %v", netip.AddrFrom16(oi.Src).Unmap(), netip.AddrFrom16(oi.Dst).Unmap(), wantOuterSrc, wantOuterDst)
				}
				if ap(e.Src, e.SrcPort) != wantQSrc || ap(e.Dst, e.DstPort) != wantQDst {
					t.Fatalf("quote %v → %v, want %v → %v", ap(e.Src, e.SrcPort), ap(e.Dst, e.DstPort), wantQSrc, wantQDst)
				}
				if ttlOf(sent[0], oi) != 63 {
					t.Fatalf("TTL %d, want 63", ttlOf(sent[0], oi))
				}
				if !r.dp.ct.Get(conntrack.DirOrig, &key, r.dp.now(), &after) || after.State != before.State {
					t.Fatalf("state %v → %v: an ICMP error moved the connection", before.State, after.State)
				}
				if ws, _ := r.dp.Stats(); ws[0].ICMPForwarded != 1 {
					t.Fatalf("icmp_forwarded %d", ws[0].ICMPForwarded)
				}
			})
		}
	}
}

// TestFullNATFragments: a UDP datagram fragmented by the client reaches the real server
// from the local address (every fragment rewritten; reassembled, its checksum verifies),
// and the real server's fragmented reply reaches the client from the VIP.
func TestFullNATFragments(t *testing.T) {
	for _, f := range fnFamilies {
		t.Run(f.name, func(t *testing.T) {
			r := newFNRig(t, fnOpts{})
			payload := bytes.Repeat([]byte("0123456789abcdef"), 200)
			req := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80, udp: true, payload: payload})
			frags := fragments(t, req, 1232, 0x7777)
			for _, fr := range frags {
				r.ext.Inject(fr)
			}
			r.drain()
			out := r.int.Sent()
			if len(out) != len(frags) {
				t.Fatalf("int0 sent %d of %d (drops %v)", len(out), len(frags), r.drops())
			}
			whole := reassemble(t, out)
			var info packet.Info
			if packet.Parse(whole, &info) != packet.ResultOK || !packet.L4ChecksumValid(whole, &info) {
				t.Fatal("reassembled request does not parse or its UDP checksum is wrong")
			}
			local := ap(info.Src, info.SrcPort)
			if !isLaddr(f, info.Src) || ap(info.Dst, info.DstPort) != netip.AddrPortFrom(f.rs1, 8080) || !bytes.Equal(whole[info.L4Off+8:], payload) {
				t.Fatalf("reassembled %v → %v", local, ap(info.Dst, info.DstPort))
			}
			rep := build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: f.rs1, dst: local.Addr(), sport: 8080, dport: local.Port(), udp: true, payload: payload})
			for _, fr := range fragments(t, rep, 1232, 0x9999) {
				r.int.Inject(fr)
			}
			r.drain()
			back := r.ext.Sent()
			if len(back) != len(frags) {
				t.Fatalf("ext0 sent %d (drops %v)", len(back), r.drops())
			}
			whole = reassemble(t, back)
			if packet.Parse(whole, &info) != packet.ResultOK || !packet.L4ChecksumValid(whole, &info) {
				t.Fatal("reassembled reply does not parse or its UDP checksum is wrong")
			}
			if ap(info.Src, info.SrcPort) != netip.AddrPortFrom(f.vip, 80) || ap(info.Dst, info.DstPort) != netip.AddrPortFrom(f.client, 40000) {
				t.Fatalf("reply %v → %v", ap(info.Src, info.SrcPort), ap(info.Dst, info.DstPort))
			}
			if s := r.dp.ServiceStats(f.svcUDP); s.InPkts != uint64(len(frags)) || s.OutPkts != uint64(len(frags)) {
				t.Fatalf("service stats %+v", s)
			}
		})
	}
}

// TestFullNATAllocs: established FULLNAT flows (both directions) and new FULLNAT
// connections (port allocation included) allocate nothing.
func TestFullNATAllocs(t *testing.T) {
	r := newFNRig(t, fnOpts{})
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, syn: true}))
	r.w.poll()
	var e conntrack.Entry
	key := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 7, DstPort: 80, Proto: 6}
	if !r.dp.ct.Get(conntrack.DirOrig, &key, r.dp.now(), &e) {
		t.Fatal("no connection")
	}
	ack := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
	rep := build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: netip.AddrFrom16(e.Reply.Dst).Unmap(), sport: 8080, dport: e.Reply.DstPort, ack: true, payload: make([]byte, 100)})
	if n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(ack)
		r.int.Inject(rep)
		r.w.poll()
	}); n != 0 {
		t.Fatalf("%v allocations per established pair", n)
	}
	syns := make([][]byte, 256)
	for i := range syns {
		syns[i] = build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client6, dst: vip6, sport: uint16(10000 + i), dport: 80, syn: true})
	}
	i := 0
	if n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(syns[i%len(syns)])
		i++
		r.w.poll()
	}); n != 0 {
		t.Fatalf("%v allocations per new connection", n)
	}
	if d := r.drops(); len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
}

func BenchmarkFullNAT(b *testing.B) {
	b.Run("established", func(b *testing.B) {
		r := newFNRig(b, fnOpts{})
		r.ext.OnTransmit = func([]byte) {}
		r.int.OnTransmit = func([]byte) {}
		r.ext.Inject(build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, syn: true}))
		r.w.poll()
		ack := build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 7, dport: 80, ack: true, payload: make([]byte, 18)})
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += pipeBatch {
			for j := 0; j < pipeBatch; j++ {
				r.ext.Inject(ack)
			}
			r.w.poll()
		}
	})
	b.Run("new", func(b *testing.B) {
		r := newFNRig(b, fnOpts{entries: 1 << 20})
		r.ext.OnTransmit = func([]byte) {}
		r.int.OnTransmit = func([]byte) {}
		syns := make([][]byte, 1024)
		for i := range syns {
			syns[i] = build(b, pkt{srcMAC: macClient, dstMAC: macDirExt, src: netip.AddrFrom4([4]byte{198, 18, 1, byte(2 + i/256)}), dst: vip, sport: uint16(i), dport: 80, syn: true})
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += pipeBatch {
			for j := 0; j < pipeBatch; j++ {
				r.ext.Inject(syns[(i+j)%len(syns)])
			}
			r.w.poll()
			if (i/pipeBatch)%(len(syns)/pipeBatch) == len(syns)/pipeBatch-1 {
				b.StopTimer()
				r.dp.ct.RemoveDest(1, r.dp.now())
				r.dp.ct.RemoveDest(2, r.dp.now())
				b.StartTimer()
			}
		}
	})
}
