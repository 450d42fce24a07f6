package dataplane

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
	"xlvs/sched"
)

func sampleHandoff() *Handoff {
	v4 := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	h := &Handoff{
		Written:  time.Unix(1_700_000_000, 123_456_789),
		Writer:   "xlvsd 0.1.0 (test)",
		Shards:   64,
		ShardKey: [conntrack.ShardKeyLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Interfaces: []HandoffIface{
			{Name: "ext0", Ifindex: 3, Mode: bpf.ModeNative},
			{Name: "int0", Ifindex: 12, Mode: bpf.ModeGeneric},
		},
		Entries: []HandoffEntry{
			{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Left: 899_001 * time.Millisecond,
				Client: v4("198.18.1.2"), CPort: 40000, VAddr: v4("198.18.1.100"), VPort: 80, DAddr: v4("198.18.2.11"), DPort: 8080},
			{Proto: 17, Method: conntrack.MethodFullNAT, State: conntrack.StateUDP, Left: time.Second,
				Client: netip.MustParseAddr("2001:db8::7").As16(), CPort: 53000, VAddr: netip.MustParseAddr("2001:db8::100").As16(), VPort: 53,
				DAddr: netip.MustParseAddr("2001:db8:2::11").As16(), DPort: 5353, LAddr: netip.MustParseAddr("2001:db8:2::1").As16(), LPort: 2048},
			{Proto: 6, Method: conntrack.MethodDR, State: conntrack.StateFinWait, Left: 2 * time.Minute,
				Client: v4("198.18.1.3"), CPort: 1, VAddr: v4("198.18.1.100"), VPort: 443, DAddr: v4("198.18.2.12"), DPort: 443},
			{Proto: 6, Method: conntrack.MethodTUN, State: conntrack.StateNone, Template: true, Left: time.Hour,
				Client: v4("198.18.1.0"), VAddr: v4("198.18.1.100"), DAddr: v4("198.18.2.12"), DPort: 443},
		},
		Stats: []HandoffStat{
			{Service: SvcKey{Addr: v4("198.18.1.100"), Port: 80, Proto: 6}, Stats: FlowStats{Conns: 5000, InPkts: 25027, OutPkts: 24989, InBytes: 1801404, OutBytes: 2109428}},
			{Service: SvcKey{Addr: v4("198.18.1.100"), Port: 80, Proto: 6}, Dest: true, DAddr: v4("198.18.2.11"), DPort: 8080, Stats: FlowStats{Conns: 1<<64 - 1, InPkts: 1}},
		},
	}
	return h
}

func TestHandoffRoundTrip(t *testing.T) {
	h := sampleHandoff()
	b, err := EncodeHandoff(h)
	if err != nil {
		t.Fatal(err)
	}
	want := HandoffHeaderLen + (8 + 16 + 4 + 2 + len(h.Writer) + 2 + 6 + 4 + 6 + 4) + (16 + 4*handoffEntrySize) + (16 + 2*handoffStatSize)
	if len(b) != want {
		t.Errorf("encoded %d bytes, want %d", len(b), want)
	}
	got, err := DecodeHandoff(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !got.Written.Equal(h.Written) {
		t.Errorf("written %v, want %v", got.Written, h.Written)
	}
	got.Written = h.Written
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, h)
	}
	// Empty: no entries, no stats, no interfaces.
	b, err = EncodeHandoff(&Handoff{Written: h.Written})
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeHandoff(b)
	if err != nil || len(e.Entries)+len(e.Stats)+len(e.Interfaces) != 0 {
		t.Fatalf("empty handoff: %+v, %v", e, err)
	}
	// Timers are rounded up to milliseconds, never down.
	h2 := &Handoff{Entries: []HandoffEntry{{Proto: 17, State: conntrack.StateUDP, Left: 1500 * time.Microsecond}}}
	b, _ = EncodeHandoff(h2)
	if d, err := DecodeHandoff(b); err != nil || d.Entries[0].Left != 2*time.Millisecond {
		t.Fatalf("1.5 ms left decoded as %v (%v), want 2ms", d.Entries[0].Left, err)
	}
}

// reseal rewrites the body length and checksum of an encoded handoff after a test
// changed it, so that only the change is wrong.
func reseal(b []byte) []byte {
	hl := int(binary.LittleEndian.Uint16(b[10:]))
	binary.LittleEndian.PutUint64(b[16:], uint64(len(b)-hl))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[hl:], castagnoli))
	return b
}

func TestHandoffTruncated(t *testing.T) {
	b, err := EncodeHandoff(sampleHandoff())
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		_, err := DecodeHandoff(b[:n])
		if !errors.Is(err, ErrHandoffCorrupt) {
			t.Fatalf("first %d of %d bytes: %v, want ErrHandoffCorrupt", n, len(b), err)
		}
	}
	_, err = DecodeHandoff(append(append([]byte{}, b...), 0))
	if err == nil || !strings.Contains(err.Error(), "truncated or padded") {
		t.Fatalf("one byte too many: %v", err)
	}
}

// TestHandoffBitFlips: every single-byte change is refused, except in the fields the
// checksum does not cover and no reader needs (the reserved word, the time written).
func TestHandoffBitFlips(t *testing.T) {
	b, err := EncodeHandoff(sampleHandoff())
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		c := append([]byte{}, b...)
		c[i] ^= 0x5a
		_, err := DecodeHandoff(c)
		if i >= 28 && i < 40 {
			continue // must simply not panic
		}
		if err == nil {
			t.Fatalf("byte %d changed: accepted", i)
		}
		if !errors.Is(err, ErrHandoffCorrupt) && !errors.Is(err, ErrHandoffVersion) {
			t.Fatalf("byte %d changed: %v, want a corrupt or version error", i, err)
		}
	}
}

func TestHandoffVersion(t *testing.T) {
	b, err := EncodeHandoff(sampleHandoff())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint16{0, 2, 0xffff} {
		c := append([]byte{}, b...)
		binary.LittleEndian.PutUint16(c[8:], v)
		_, err := DecodeHandoff(c)
		if !errors.Is(err, ErrHandoffVersion) {
			t.Fatalf("version %d: %v, want ErrHandoffVersion", v, err)
		}
		if !strings.Contains(err.Error(), "reads version 1") {
			t.Fatalf("version %d: %q does not say which version this build reads", v, err)
		}
	}
	if _, err := DecodeHandoff([]byte("#!/bin/sh\necho not a handoff\n")); !errors.Is(err, ErrHandoffCorrupt) || !strings.Contains(err.Error(), "not an xlvsd handoff") {
		t.Fatalf("another file: %v", err)
	}
}

// TestHandoffNewerWriter: what a newer writer of the same version may add — a longer
// header, longer records, sections of new types, fields after the meta section's
// interfaces — is skipped, and the rest read as before.
func TestHandoffNewerWriter(t *testing.T) {
	h := sampleHandoff()
	b, err := EncodeHandoff(h)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// Re-lay the body: meta with 4 extra bytes, an unknown section, entries and stats
	// with 8 extra bytes per record; a header 8 bytes longer.
	body := b[HandoffHeaderLen:]
	var out []byte
	for off := 0; off < len(body); {
		typ, n := le.Uint16(body[off:]), int(le.Uint32(body[off+4:]))
		p := body[off+8 : off+8+n]
		off += 8 + n
		switch typ {
		case secMeta:
			p = append(append([]byte{}, p...), 0xde, 0xad, 0xbe, 0xef)
			out = le.AppendUint16(out, typ)
			out = le.AppendUint16(out, 0)
			out = le.AppendUint32(out, uint32(len(p)))
			out = append(out, p...)
			out = le.AppendUint16(out, 99) // a section of the future
			out = le.AppendUint16(out, 0)
			out = le.AppendUint32(out, 3)
			out = append(out, 1, 2, 3)
		default:
			size, cnt := int(le.Uint16(p)), int(le.Uint32(p[4:]))
			var recs []byte
			for i := 0; i < cnt; i++ {
				recs = append(recs, p[8+i*size:8+(i+1)*size]...)
				recs = append(recs, 9, 9, 9, 9, 9, 9, 9, 9)
			}
			out = le.AppendUint16(out, typ)
			out = le.AppendUint16(out, 0)
			out = le.AppendUint32(out, uint32(8+len(recs)))
			out = le.AppendUint16(out, uint16(size+8))
			out = le.AppendUint16(out, 0)
			out = le.AppendUint32(out, uint32(cnt))
			out = append(out, recs...)
		}
	}
	hdr := append(append([]byte{}, b[:HandoffHeaderLen]...), 7, 7, 7, 7, 7, 7, 7, 7)
	le.PutUint16(hdr[10:], HandoffHeaderLen+8)
	got, err := DecodeHandoff(reseal(append(hdr, out...)))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	got.Written = h.Written
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("newer writer:\n got %+v\nwant %+v", got, h)
	}
}

// TestHandoffHostile: well-sealed input (valid checksum) whose contents are wrong is
// refused with an error that names what is wrong; nothing panics or allocates by a
// count it was told.
func TestHandoffHostile(t *testing.T) {
	good, err := EncodeHandoff(sampleHandoff())
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// Offsets in the sample: the meta section starts the body.
	metaLen := int(le.Uint32(good[HandoffHeaderLen+4:]))
	entries := HandoffHeaderLen + 8 + metaLen // the entries section header
	rec0 := entries + 16                      // the first entry record
	stats := rec0 + 4*handoffEntrySize
	for _, tc := range []struct {
		name, want string
		mutate     func(b []byte) []byte
	}{
		{"short header length", "header length 8", func(b []byte) []byte { le.PutUint16(b[10:], 8); return b }},
		{"huge record count", "records of 80 bytes announced", func(b []byte) []byte { le.PutUint32(b[entries+12:], 0xffffffff); return b }},
		{"small records", "records of 40 bytes, at least 80", func(b []byte) []byte { le.PutUint16(b[entries+8:], 40); return b }},
		{"section longer than the body", "announced", func(b []byte) []byte { le.PutUint32(b[entries+4:], 1<<31); return b }},
		{"no meta first", "before the meta section", func(b []byte) []byte { le.PutUint16(b[HandoffHeaderLen:], secEntries); return b }},
		{"two metas", "second meta", func(b []byte) []byte {
			return append(b, b[HandoffHeaderLen:HandoffHeaderLen+8+metaLen]...)
		}},
		{"protocol", "protocol 1", func(b []byte) []byte { b[rec0] = 1; return b }},
		{"method", "forwarding method 7", func(b []byte) []byte { b[rec0+1] = 7; return b }},
		{"TCP state", "want a TCP state", func(b []byte) []byte { b[rec0+2] = uint8(conntrack.StateUDP); return b }},
		{"UDP state", "want UDP", func(b []byte) []byte { b[rec0+handoffEntrySize+2] = uint8(conntrack.StateEstablished); return b }},
		{"template state", "want NONE", func(b []byte) []byte { b[rec0+3*handoffEntrySize+2] = 1; return b }},
		{"entry flags", "flags 0x3", func(b []byte) []byte { b[rec0+3] = 3; return b }},
		{"stats protocol", "stats record 1: handoff malformed: protocol 0", func(b []byte) []byte { b[stats+16] = 0; return b }},
		{"interface name", "name of 200 bytes", func(b []byte) []byte {
			// the first interface: after key, shards, writer length, writer, count
			off := HandoffHeaderLen + 8 + 16 + 4 + 2 + len(sampleHandoff().Writer) + 2
			b[off+5] = 200
			return b
		}},
		{"interface mode", "mode 0", func(b []byte) []byte {
			off := HandoffHeaderLen + 8 + 16 + 4 + 2 + len(sampleHandoff().Writer) + 2
			b[off+4] = 0
			return b
		}},
		{"writer length", "writer of 65535 bytes", func(b []byte) []byte { le.PutUint16(b[HandoffHeaderLen+8+20:], 0xffff); return b }},
	} {
		b := tc.mutate(append([]byte{}, good...))
		if tc.name != "short header length" {
			b = reseal(b)
		}
		_, err := DecodeHandoff(b)
		if !errors.Is(err, ErrHandoffCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrHandoffCorrupt saying %q", tc.name, err, tc.want)
		}
	}
	// The encoder refuses what the format cannot carry.
	if _, err := EncodeHandoff(&Handoff{Interfaces: []HandoffIface{{Name: ""}}}); err == nil {
		t.Error("empty interface name encoded")
	}
	if _, err := EncodeHandoff(&Handoff{Writer: strings.Repeat("x", 2000)}); err == nil {
		t.Error("2000-byte writer encoded")
	}
}

func FuzzDecodeHandoff(f *testing.F) {
	good, _ := EncodeHandoff(sampleHandoff())
	f.Add(good)
	f.Add(good[:100])
	withSockets := sampleHandoff()
	withSockets.Sockets = []HandoffSocket{{Ifname: "ext0", Queue: 1, Info: xsk.ShareInfo{Ifindex: 3, Queue: 1,
		Config: xsk.Config{Frames: 32, FrameSize: 2048, FillRing: 8, CompRing: 8, RxRing: 8, TxRing: 8}, Free: []uint64{0, 4096}}}}
	socks, _ := EncodeHandoff(withSockets)
	f.Add(socks)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHandoff(b)
		if err != nil {
			return
		}
		again, err := EncodeHandoff(h)
		if err != nil {
			t.Fatalf("decoded handoff does not encode: %v", err)
		}
		if _, err := DecodeHandoff(again); err != nil {
			t.Fatalf("re-encoded handoff does not decode: %v", err)
		}
	})
}

// renumber republishes r's services with other IDs (services +100, real servers +10) and
// persistence, as a restarted xlvsd may number the same rules.
func renumber(t *testing.T, r *rig, persist time.Duration, keep func(*Service) bool) {
	t.Helper()
	var svcs []Service
	for _, s := range r.dp.Snapshot().Services {
		if keep != nil && !keep(&s) {
			continue
		}
		s.ID += 100
		var sd []sched.Dest
		s.Dests = append([]Dest(nil), s.Dests...)
		for i := range s.Dests {
			s.Dests[i].ID += 10
			sd = append(sd, sched.Dest{ID: s.Dests[i].ID, Weight: s.Dests[i].Weight, Addr: s.Dests[i].Addr, Port: s.Dests[i].Port})
		}
		sc, err := sched.New("rr", sd, 0)
		if err != nil {
			t.Fatal(err)
		}
		s.Sched, s.Persist, s.PersistBits = sc, int64(persist), 128
		svcs = append(svcs, s)
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
}

type walked struct {
	e    conntrack.Entry
	rs   [16]byte
	left time.Duration
}

func walkTable(r *rig) map[conntrack.Key]walked {
	out := map[conntrack.Key]walked{}
	snap := r.dp.Snapshot()
	r.dp.Conntrack().Walk(r.dp.Now(), func(e *conntrack.Entry, left int64) bool {
		rs, _ := snap.dest(e.Dest)
		out[e.Orig] = walked{e: *e, rs: rs.Addr, left: time.Duration(left)}
		return true
	})
	return out
}

// TestHandoffExportImport: connections and templates exported by one dataplane and
// imported (through the encoding) by another whose IDs differ land on the same real
// servers with the same states and timers, are counted as the first counted them, and
// their next packets are forwarded both ways.
func TestHandoffExportImport(t *testing.T) {
	client2 := netip.MustParseAddr("198.18.1.3")
	a := newRig(t, "rr", 1, 1)
	a.persistent(t, time.Hour, 128)
	// client → rs1 (TCP, its template); client2 → rs2 over TCP and, the UDP service's rr
	// starting afresh, → rs1 over UDP (their templates).
	a.send(t, pkt{sport: 5000, syn: true})
	a.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 5000, syn: true, ack: true}))
	a.drain()
	a.ext.Sent()
	a.send(t, pkt{sport: 5000, ack: true})
	a.send(t, pkt{src: client2, sport: 5001, syn: true})
	a.send(t, pkt{src: client2, sport: 6000, udp: true, payload: []byte("q")})
	before := walkTable(a)
	if len(before) != 3 {
		t.Fatalf("rig A holds %d connections, want 3: %+v", len(before), before)
	}
	if w := before[conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 5000, DstPort: 80, Proto: 6}]; w.e.State != conntrack.StateEstablished || w.rs != a16(rs1) {
		t.Fatalf("client's connection on A: %+v", w)
	}
	a.dp.StopWorkers() // a rig's workers were never started: a no-op, as it must be
	h, skipped := a.dp.ExportHandoff()
	if skipped != 0 || len(h.Entries) != 3+3 {
		t.Fatalf("exported %d entries (%d skipped), want 3 connections and 3 templates", len(h.Entries), skipped)
	}
	if h.ShardKey != a.dp.cfg.Conntrack.ShardKey || h.Shards != a.dp.Conntrack().Shards() {
		t.Fatal("shard key or count not exported")
	}
	b, err := EncodeHandoff(h)
	if err != nil {
		t.Fatal(err)
	}
	h, err = DecodeHandoff(b)
	if err != nil {
		t.Fatal(err)
	}

	n := newRig(t, "rr", 1, 1)
	renumber(t, n, time.Hour, nil)
	res := n.dp.ImportHandoff(h)
	if res.Conns != 3 || res.Templates != 3 || res.Expired != 0 || len(res.Refused) != 0 {
		t.Fatalf("import: %+v, want 3 connections, 3 templates", res)
	}
	after := walkTable(n)
	for k, w := range before {
		g, ok := after[k]
		if !ok {
			t.Fatalf("connection %+v missing after the import", k)
		}
		if g.e.State != w.e.State || g.e.Method != w.e.Method || g.e.Reply != w.e.Reply || g.rs != w.rs || g.e.Dest != w.e.Dest+10 || g.e.Service != w.e.Service+100 {
			t.Errorf("connection %v: imported %+v (rs %v), exported %+v (rs %v)", k, g.e, g.rs, w.e, w.rs)
		}
		// Seconds are rounded up: up to a second more, never less (minus the test's time).
		if g.left < w.left-time.Second || g.left > w.left+time.Second+100*time.Millisecond {
			t.Errorf("connection %v: %v left after the import, %v before", k, g.left, w.left)
		}
	}
	for id := uint32(1); id <= 2; id++ {
		a1, i1 := a.dp.Conntrack().Conns(id)
		a2, i2 := n.dp.Conntrack().Conns(id + 10)
		if a1 != a2 || i1 != i2 {
			t.Errorf("real server %d: active/inactive %d/%d after, %d/%d before", id, a2, i2, a1, i1)
		}
	}
	if pa, pn := a.dp.PersistConns(), n.dp.PersistConns(); pa[1] != pn[11] || pa[2] != pn[12] || pn[11]+pn[12] != 3 {
		t.Errorf("templates per real server: %v before, %v after (IDs +10)", pa, pn)
	}
	// The client's next segment and the server's answer go through.
	n.send(t, pkt{sport: 5000, ack: true, payload: []byte("more")}) // send() checks one frame left
	n.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 5000, ack: true}))
	n.drain()
	if out := n.ext.Sent(); len(out) != 1 {
		t.Fatalf("reply after the import: %d frames sent (drops %v)", len(out), n.drops())
	} else if info := check(t, out[0]); netip.AddrFrom16(info.Src).Unmap() != vip {
		t.Fatalf("reply left from %v, want the VIP", netip.AddrFrom16(info.Src).Unmap())
	}
	// client2's TCP template keeps it on rs2.
	if got := n.synFrom(t, client2, 5002); got != rs2 {
		t.Fatalf("client2's new connection went to %v, want %v (its template)", got, rs2)
	}

	// A successor without the UDP service refuses its connection and template, and
	// takes the rest.
	u := newRig(t, "rr", 1, 1)
	renumber(t, u, time.Hour, func(s *Service) bool { return s.Key.Proto == 6 })
	res = u.dp.ImportHandoff(h)
	if res.Conns != 2 || res.Templates != 2 || res.Refused["no_service"] != 2 {
		t.Fatalf("import without the UDP service: %+v", res)
	}
	// Time that passed since the writing counts: an hour later nothing is left.
	late := *h
	late.Written = late.Written.Add(-time.Hour)
	if res := newRig(t, "rr", 1, 1).dp.ImportHandoff(&late); res.Expired != 6 || res.Conns+res.Templates != 0 {
		t.Fatalf("import an hour late: %+v, want all 6 expired", res)
	}
}

// TestHandoffSockets: the sockets section round-trips (descriptors travel beside it,
// not in it), and values no socket can have are refused as corrupt.
func TestHandoffSockets(t *testing.T) {
	h := sampleHandoff()
	cfg := xsk.Config{Frames: 64, FrameSize: 2048, FillRing: 16, CompRing: 16, RxRing: 32, TxRing: 16, Copy: true}
	h.Sockets = []HandoffSocket{
		{Ifname: "ext0", Queue: 0, Info: xsk.ShareInfo{Ifindex: 3, Queue: 0, Config: cfg, Free: []uint64{0, 2048, 63 * 2048}}},
		{Ifname: "int0", Queue: 5, Info: xsk.ShareInfo{Ifindex: 12, Queue: 5, Config: cfg, Free: []uint64{}}},
	}
	b, err := EncodeHandoff(h)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := EncodeHandoff(sampleHandoff())
	// section header 8, count 4; per socket: name length 1 + name, flags 1, queue 2,
	// ifindex 4, seven u32, four bytes per free frame.
	if want := len(plain) + 8 + 4 + (1 + 4 + 1 + 2 + 4 + 28 + 12) + (1 + 4 + 1 + 2 + 4 + 28); len(b) != want {
		t.Errorf("encoded %d bytes, want %d", len(b), want)
	}
	got, err := DecodeHandoff(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	got.Written = h.Written
	if !reflect.DeepEqual(got.Sockets, h.Sockets) {
		t.Fatalf("sockets round trip:\n got %+v\nwant %+v", got.Sockets, h.Sockets)
	}
	// Hostile values, each alone.
	sockAt := len(plain) + 8 + 4 // the first socket
	for _, c := range []struct {
		name string
		edit func(b []byte)
		want string
	}{
		{"free frame out of range", func(b []byte) { binary.LittleEndian.PutUint32(b[sockAt+1+4+1+2+4+28:], 64) }, "free frame 64 of 64"},
		{"ring not a power of two", func(b []byte) { binary.LittleEndian.PutUint32(b[sockAt+1+4+1+2+4+8:], 17) }, "fill ring 17"},
		{"more free frames than frames", func(b []byte) { binary.LittleEndian.PutUint32(b[sockAt+1+4+1+2+4+24:], 65) }, "lists 65 free frames of 64"},
		{"interface index 0", func(b []byte) { binary.LittleEndian.PutUint32(b[sockAt+1+4+1+2:], 0) }, "interface index 0"},
	} {
		x := append([]byte(nil), b...)
		c.edit(x)
		if _, err := DecodeHandoff(reseal(x)); !errors.Is(err, ErrHandoffCorrupt) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want corrupt saying %q", c.name, err, c.want)
		}
	}
}
