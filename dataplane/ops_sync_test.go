package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"xlvs/conntrack"
)

// Expected values here come from ip_vs_sync_conn and ip_vs_sync_conn_needed as read in
// codesnas/linux-6.18.y net/netfilter/ipvs/ip_vs_sync.c @
// 33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e (protocol version 1): a ONE_PACKET connection
// is never sent ("goto control"); its controller, the template, is considered with
// pkts = ++in_pkts of the template; a template has no forced state, bypasses the
// in_pkts % sync_period test when sync_period > 0, and otherwise (no refresh period)
// is sent only when in_pkts == sync_threshold.

// opsMaster is a sync master's rig whose services are one-packet and persistent (an
// hour, /128).
func opsMaster(t *testing.T, p conntrack.SyncPolicy, persist time.Duration) *rig {
	t.Helper()
	r := masterRig(t, p)
	svcs := append([]Service(nil), r.dp.Snapshot().Services...)
	for i := range svcs {
		svcs[i].OPS, svcs[i].Persist, svcs[i].PersistBits = true, int64(persist), 128
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOnePacketSyncTemplate: with the kernel's default policy (sync_threshold 3 50) each
// datagram of a persistent -o service sends the client's template and never the
// datagram's connection; with sync_threshold 3 0 the template goes once, at the third
// datagram; an -o service without persistence sends nothing; TCP connections of the
// service are synced as ever.
func TestOnePacketSyncTemplate(t *testing.T) {
	r := opsMaster(t, conntrack.DefaultSyncPolicy(), time.Hour)
	var dest netip.Addr
	for i := 0; i < 5; i++ {
		r.send(t, pkt{sport: 4000 + uint16(i), udp: true})
		got := r.synced()
		if len(got) != 1 {
			t.Fatalf("datagram %d: %d entries queued, want its template alone: %+v", i+1, len(got), got)
		}
		c := got[0]
		if !c.Template || c.Proto != 17 || c.CPort != 0 || c.VPort != 80 || c.Timeout != 3600 || c.State != conntrack.StateNone ||
			netip.AddrFrom16(c.Client).Unmap() != client || netip.AddrFrom16(c.VAddr).Unmap() != vip {
			t.Fatalf("datagram %d: queued %+v, want the UDP template of %v to %v:80, 3600 s", i+1, c, client, vip)
		}
		d := netip.AddrFrom16(c.DAddr).Unmap()
		if i > 0 && d != dest {
			t.Fatalf("datagram %d: template names %v, the earlier ones %v", i+1, d, dest)
		}
		dest = d
	}
	if dest != rs1 && dest != rs2 {
		t.Fatalf("template names %v, want a real server of the service", dest)
	}
	// TCP of the same service: an ordinary connection (its template with it at the
	// third packet, as before).
	r.send(t, pkt{sport: 5000, syn: true})
	r.send(t, pkt{sport: 5000, ack: true})
	if got := r.synced(); len(got) != 0 {
		t.Fatalf("TCP SYN, ACK: queued %+v, want nothing before the third packet", got)
	}
	r.send(t, pkt{sport: 5000, ack: true, payload: []byte("x")})
	if got := r.synced(); len(got) != 2 || got[0].Template || got[0].Proto != 6 || !got[1].Template || got[1].Proto != 6 {
		t.Fatalf("TCP third packet: queued %+v, want the connection and its template", got)
	}

	// sync_threshold 3 0: the template once, at the third datagram.
	r = opsMaster(t, conntrack.SyncPolicy{Threshold: 3}, time.Hour)
	for i := 0; i < 6; i++ {
		r.send(t, pkt{sport: 4000 + uint16(i), udp: true})
		n := len(r.synced())
		if want := map[bool]int{true: 1, false: 0}[i == 2]; n != want {
			t.Fatalf("threshold 3 0, datagram %d: %d entries queued, want %d", i+1, n, want)
		}
	}

	// No persistence: no template, nothing to send.
	r = opsMaster(t, conntrack.DefaultSyncPolicy(), 0)
	for i := 0; i < 4; i++ {
		r.send(t, pkt{sport: 4000 + uint16(i), udp: true})
	}
	if got := r.synced(); len(got) != 0 {
		t.Fatalf("-o without persistence: queued %+v, want nothing", got)
	}

	// Not a master: nothing queued.
	r = opsMaster(t, conntrack.DefaultSyncPolicy(), time.Hour)
	r.dp.SetSyncMaster(nil, false)
	r.send(t, pkt{udp: true})
	if got := r.synced(); len(got) != 0 {
		t.Fatalf("sync off: queued %+v", got)
	}
}

// TestTemplateSyncDue: the template branch of ip_vs_sync_conn_needed with a refresh
// period: the first datagram after the template's creation sends it (its end time moved
// by the whole timeout); further ones within min(refresh, max(timeout/2, 10 s)) of the
// end last sent send nothing without retries, and with retries are sent again at most
// that many times, none before end - timeout + refresh/8; once the end time moved far
// enough it is sent again.
func TestTemplateSyncDue(t *testing.T) {
	const s = int64(time.Second)
	timeout := 300 * s
	pol := &conntrack.SyncPolicy{Threshold: 3, Period: 50, RefreshPeriod: 60 * time.Second}
	created := 1000 * s
	end, retries := created, uint8(0)
	due := func(now int64) bool { return templateSyncDue(pol, &end, &retries, 1, now, timeout) }
	if !due(created) {
		t.Fatal("first datagram: not sent, want sent (end time moved by the timeout)")
	}
	if end != created+timeout || retries != 0 {
		t.Fatalf("after the first send: end %d, retries %d; want %d, 0", end, retries, created+timeout)
	}
	// min(60 s, max(150 s, 10 s)) = 60 s: within it, no retries → nothing.
	if due(created + 59*s) {
		t.Fatal("59 s later, no retries: sent, want nothing")
	}
	if !due(created + 61*s) {
		t.Fatal("61 s later: not sent, want sent (end time moved by 61 s)")
	}
	// Retries 2: twice more within the window, each after end - timeout + 7.5 s.
	pol.Retries = 2
	base := end - timeout // the last send's time
	if due(base + 7*s) {
		t.Fatal("retries 2, 7 s after the send: sent, want nothing before 7.5 s")
	}
	if !due(base+8*s) || retries != 1 {
		t.Fatalf("retries 2, 8 s after the send: want sent with retries 1 (retries %d)", retries)
	}
	if !due(base+17*s) || retries != 2 {
		t.Fatalf("retries 2, 17 s after: want sent with retries 2 (retries %d)", retries)
	}
	if due(base + 30*s) {
		t.Fatal("retries used up: sent, want nothing")
	}
	// Period 0 and no refresh period: in_pkts == threshold only.
	pol = &conntrack.SyncPolicy{Threshold: 3}
	for pkts := uint32(1); pkts <= 5; pkts++ {
		if got := templateSyncDue(pol, &end, &retries, pkts, created, timeout); got != (pkts == 3) {
			t.Fatalf("threshold 3 0, in_pkts %d: sent %v", pkts, got)
		}
	}
}

// TestOnePacketSyncAllocs: a sync master's one-packet datagram, its template counted and
// queued, allocates nothing.
func TestOnePacketSyncAllocs(t *testing.T) {
	r := opsMaster(t, conntrack.DefaultSyncPolicy(), time.Hour)
	r.int.OnTransmit = func([]byte) {}
	frame := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 4000, dport: 80, udp: true, payload: make([]byte, 18)})
	r.ext.Inject(frame)
	r.w.poll()
	out := make([]SyncConn, 64)
	n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(frame)
		r.w.poll()
		r.dp.DrainSync(out)
	})
	if n != 0 {
		t.Fatalf("%v allocations per one-packet datagram on a sync master", n)
	}
	if st := r.dp.SyncStats(); st.Queued < 200 {
		t.Fatalf("%d entries queued over 201 datagrams, want a template each", st.Queued)
	}
}
