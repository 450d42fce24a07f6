package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"xlvs/conntrack"
)

// markedSample is sampleHandoff with entries of fwmark services after the others (where
// a decoder puts them): an IPv4 TCP connection, its template (protocol 0, the family's
// zero address, port 0, as a fwmark service's key), and an IPv6 template; and the
// statistics of the IPv4 service of mark 1 and of its real server, and of an IPv6
// service of the same mark, after the others.
func markedSample() *Handoff {
	h := sampleHandoff()
	v4 := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	h.Entries = append(h.Entries,
		HandoffEntry{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Left: 90 * time.Second,
			Client: v4("198.18.1.2"), CPort: 41000, VAddr: v4("198.18.1.100"), VPort: 443, DAddr: v4("198.18.2.11"), DPort: 443, FWMark: 1},
		HandoffEntry{Proto: 0, Method: conntrack.MethodNAT, State: conntrack.StateNone, Template: true, Left: time.Hour,
			Client: v4("198.18.1.2"), VAddr: FWMarkKey(4).Addr, DAddr: v4("198.18.2.11"), FWMark: 1},
		HandoffEntry{Proto: 0, Method: conntrack.MethodDR, State: conntrack.StateNone, Template: true, Left: time.Minute,
			Client: netip.MustParseAddr("2001:db8::").As16(), VAddr: FWMarkKey(6).Addr, DAddr: netip.MustParseAddr("2001:db8:2::11").As16(), FWMark: 0xfffffffe},
	)
	h.Stats = append(h.Stats,
		HandoffStat{Service: FWMarkKey(4), FWMark: 1, Stats: FlowStats{Conns: 7, InPkts: 70, OutPkts: 69, InBytes: 7000, OutBytes: 6900}},
		HandoffStat{Service: FWMarkKey(4), FWMark: 1, Dest: true, DAddr: v4("198.18.2.11"), DPort: 443, Stats: FlowStats{Conns: 7, InPkts: 70, OutPkts: 69, InBytes: 7000, OutBytes: 6900}},
		HandoffStat{Service: FWMarkKey(6), FWMark: 1, Stats: FlowStats{Conns: 1 << 40, InPkts: 1<<64 - 1}},
	)
	return h
}

// sections lists an encoded handoff's body sections: type → (record size, count).
func sections(t *testing.T, b []byte) map[uint16][2]int {
	t.Helper()
	le := binary.LittleEndian
	body := b[le.Uint16(b[10:]):]
	out := map[uint16][2]int{}
	for off := 0; off < len(body); {
		typ, n := le.Uint16(body[off:]), int(le.Uint32(body[off+4:]))
		p := body[off+8 : off+8+n]
		off += 8 + n
		if typ != secMeta {
			out[typ] = [2]int{int(le.Uint16(p)), int(le.Uint32(p[4:]))}
		}
	}
	return out
}

// TestHandoffFWMarkRoundTrip: entries of fwmark services keep their mark through the
// encoding, in a section of their own (4, 84-byte records); the entries section keeps
// its 80-byte records and holds only the unmarked entries, which is what a reader of
// version 1 from before marks reads (it skips section 4 whole).
func TestHandoffFWMarkRoundTrip(t *testing.T) {
	h := markedSample()
	b, err := EncodeHandoff(h)
	if err != nil {
		t.Fatal(err)
	}
	secs := sections(t, b)
	if want := map[uint16][2]int{secEntries: {80, 4}, secStats: {80, 2}, secMarkEntries: {84, 3}, secMarkStats: {84, 3}}; !reflect.DeepEqual(secs, want) {
		t.Fatalf("sections (type: record size, count) %v, want %v", secs, want)
	}
	got, err := DecodeHandoff(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	got.Written = h.Written
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip:\n got %+v %+v\nwant %+v %+v", got.Entries, got.Stats, h.Entries, h.Stats)
	}
	// Marked entries and statistics given first still come back, after the others.
	h2 := markedSample()
	h2.Entries = append(append([]HandoffEntry(nil), h2.Entries[4:]...), h2.Entries[:4]...)
	h2.Stats = append(append([]HandoffStat(nil), h2.Stats[2:]...), h2.Stats[:2]...)
	b2, _ := EncodeHandoff(h2)
	if !bytes.Equal(b2, b) {
		t.Fatal("the encoding depends on where the marked entries are in Entries")
	}
	// A handoff without marks has no section 4 or 5.
	if secs := sections(t, mustEncode(t, sampleHandoff())); secs[secMarkEntries] != [2]int{} || secs[secMarkStats] != [2]int{} {
		t.Fatalf("a handoff without marks has marked sections: %v", secs)
	}
	// A reader from before marked statistics skips section 5 (an unknown section):
	// what it reads is the handoff without them.
	noStats := markedSample()
	noStats.Stats = noStats.Stats[:2]
	if got := withoutSection(t, b, secMarkStats); !bytes.Equal(got, mustEncode(t, noStats)) {
		t.Fatal("the handoff less its section 5 differs from the handoff without marked statistics")
	}

	// A reader takes longer marked records (a newer writer's fields after the mark).
	le := binary.LittleEndian
	hl := int(le.Uint16(b[10:]))
	body := b[hl:]
	var out []byte
	for off := 0; off < len(body); {
		typ, n := le.Uint16(body[off:]), int(le.Uint32(body[off+4:]))
		p := body[off+8 : off+8+n]
		off += 8 + n
		if typ == secMarkEntries {
			cnt := int(le.Uint32(p[4:]))
			q := append([]byte(nil), p[:8]...)
			le.PutUint16(q, 84+4)
			for i := 0; i < cnt; i++ {
				q = append(q, p[8+i*84:8+(i+1)*84]...)
				q = append(q, 0xaa, 0xbb, 0xcc, 0xdd)
			}
			p = q
		}
		out = le.AppendUint16(out, typ)
		out = le.AppendUint16(out, 0)
		out = le.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	longer, err := DecodeHandoff(reseal(append(append([]byte(nil), b[:hl]...), out...)))
	if err != nil {
		t.Fatalf("longer marked records: %v", err)
	}
	longer.Written = h.Written
	if !reflect.DeepEqual(longer, h) {
		t.Fatalf("longer marked records:\n got %+v\nwant %+v", longer.Entries, h.Entries)
	}
}

// withoutSection returns the handoff b less its sections of type typ, resealed.
func withoutSection(t *testing.T, b []byte, typ uint16) []byte {
	t.Helper()
	le := binary.LittleEndian
	hl := int(le.Uint16(b[10:]))
	out := append([]byte(nil), b[:hl]...)
	for off := hl; off < len(b); {
		n := int(le.Uint32(b[off+4:]))
		if le.Uint16(b[off:]) != typ {
			out = append(out, b[off:off+8+n]...)
		}
		off += 8 + n
	}
	return reseal(out)
}

func mustEncode(t *testing.T, h *Handoff) []byte {
	t.Helper()
	b, err := EncodeHandoff(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// markRecordOffset is the offset in b of the first marked entry record.
func markRecordOffset(t *testing.T, b []byte) int {
	t.Helper()
	le := binary.LittleEndian
	hl := int(le.Uint16(b[10:]))
	for off := hl; off < len(b); {
		typ, n := le.Uint16(b[off:]), int(le.Uint32(b[off+4:]))
		if typ == secMarkEntries {
			return off + 8 + 8
		}
		off += 8 + n
	}
	t.Fatal("no marked entries section")
	return 0
}

// TestHandoffFWMarkHostile: marked records that break the rules are refused, naming
// what is wrong; so is a template of protocol 0 outside the marked section.
func TestHandoffFWMarkHostile(t *testing.T) {
	le := binary.LittleEndian
	for _, c := range []struct {
		name, want string
		edit       func(b []byte, rec int)
	}{
		{"mark 0", "mark 0", func(b []byte, rec int) { le.PutUint32(b[rec+80:], 0) }},
		{"template of TCP", "IPPROTO_IP", func(b []byte, rec int) { b[rec+84] = 6 }},
		{"connection of protocol 0", "protocol 0", func(b []byte, rec int) { b[rec] = 0 }},
		{"records of 80 bytes", "at least 84", func(b []byte, rec int) { le.PutUint16(b[rec-8:], 80) }},
	} {
		b := mustEncode(t, markedSample())
		c.edit(b, markRecordOffset(t, b))
		_, err := DecodeHandoff(reseal(b))
		if !errors.Is(err, ErrHandoffCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: %v, want ErrHandoffCorrupt naming %q", c.name, err, c.want)
		}
	}
	// A fwmark template (protocol 0) without its mark, in the entries section.
	h := sampleHandoff()
	h.Entries[3].Proto = 0
	if _, err := DecodeHandoff(mustEncode(t, h)); !errors.Is(err, ErrHandoffCorrupt) {
		t.Errorf("unmarked template of protocol 0: %v, want ErrHandoffCorrupt", err)
	}
}

// TestHandoffFWMarkStatsHostile: marked statistics records that break the rules are
// refused, naming what is wrong.
func TestHandoffFWMarkStatsHostile(t *testing.T) {
	le := binary.LittleEndian
	for _, c := range []struct {
		name, want string
		edit       func(b []byte, rec int)
	}{
		{"mark 0", "mark 0", func(b []byte, rec int) { le.PutUint32(b[rec+80:], 0) }},
		{"protocol TCP", "protocol 6", func(b []byte, rec int) { b[rec] = 6 }},
		{"a port", "port 80", func(b []byte, rec int) { le.PutUint16(b[rec+2:], 80) }},
		{"an address", "198.18.1.100", func(b []byte, rec int) {
			a := netip.MustParseAddr("198.18.1.100").As16()
			copy(b[rec+8:], a[:])
		}},
		{"records of 80 bytes", "at least 84", func(b []byte, rec int) { le.PutUint16(b[rec-8:], 80) }},
	} {
		b := mustEncode(t, markedSample())
		rec := -1
		hl := int(le.Uint16(b[10:]))
		for off := hl; off < len(b); {
			typ, n := le.Uint16(b[off:]), int(le.Uint32(b[off+4:]))
			if typ == secMarkStats {
				rec = off + 8 + 8
			}
			off += 8 + n
		}
		if rec < 0 {
			t.Fatal("no marked stats section")
		}
		c.edit(b, rec)
		_, err := DecodeHandoff(reseal(b))
		if !errors.Is(err, ErrHandoffCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: %v, want ErrHandoffCorrupt naming %q", c.name, err, c.want)
		}
	}
}

// TestHandoffFWMarkExportImport: connections and templates of fwmark services exported
// by one dataplane are imported by a successor, which finds their services by the mark
// (their packets' addresses name no service): the same real servers, states and
// services; the client's template keeps it on its server on another port of the mark;
// the imported connections' next packets go through.
func TestHandoffFWMarkExportImport(t *testing.T) {
	client2 := netip.MustParseAddr("198.18.1.3")
	a := fwmRig(t, time.Hour)
	syn := func(r *rig, src netip.Addr, dst netip.Addr, sport, dport uint16, udp bool) netip.Addr {
		t.Helper()
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: src, dst: dst, sport: sport, dport: dport, syn: !udp, udp: udp}))
		r.drain()
		out := r.int.Sent()
		if len(out) != 1 {
			t.Fatalf("%v:%d → %v:%d: sent %d frames, want 1 (drops %v)", src, sport, dst, dport, len(out), r.drops())
		}
		return netip.AddrFrom16(check(t, out[0]).Dst).Unmap()
	}
	// rr: client2 → rs1 (its template), then client → rs2 (its template), both on mark 1;
	// a UDP datagram to a prefix address of mark 2 (not persistent).
	if got := syn(a, client2, vip, 5001, 443, false); got != rs1 {
		t.Fatalf("client2 went to %v, want %v", got, rs1)
	}
	if got := syn(a, client, vip, 5000, 443, false); got != rs2 {
		t.Fatalf("client went to %v, want %v", got, rs2)
	}
	other := netip.MustParseAddr("198.18.1.98")
	syn(a, client, other, 6000, 1234, true)
	before := walkTable(a)
	if len(before) != 3 {
		t.Fatalf("A holds %d connections, want 3", len(before))
	}
	h, skipped := a.dp.ExportHandoff()
	if skipped != 0 || len(h.Entries) != 3+2 {
		t.Fatalf("exported %d entries (%d skipped), want 3 connections and 2 templates", len(h.Entries), skipped)
	}
	// Expected entries from the kernel's rules (ip_vs_sched_persist): a fwmark
	// connection keeps the packet's address and port, and the mark; a template is
	// <IPPROTO_IP, client, 0, the mark, 0>, here the service's key with the mark.
	wantMarks := map[string]uint32{}
	for _, e := range h.Entries {
		k := netip.AddrFrom16(e.Client).Unmap().String()
		if e.Template {
			if e.Proto != 0 || e.VAddr != FWMarkKey(4).Addr || e.VPort != 0 || e.CPort != 0 {
				t.Errorf("template %+v: want protocol 0, address %v, ports 0", e, netip.AddrFrom16(FWMarkKey(4).Addr))
			}
			k = "template " + k
		} else if e.VPort == 1234 {
			if e.VAddr != a16(other) || e.Proto != 17 || e.DPort != 53 {
				t.Errorf("UDP connection %+v", e)
			}
		} else if e.VAddr != a16(vip) || e.VPort != 443 || e.Proto != 6 {
			t.Errorf("TCP connection %+v", e)
		}
		wantMarks[fmt.Sprintf("%s %d", k, e.Proto)] = e.FWMark
	}
	if want := map[string]uint32{
		"198.18.1.3 6": 1, "198.18.1.2 6": 1, "198.18.1.2 17": 2,
		"template 198.18.1.3 0": 1, "template 198.18.1.2 0": 1,
	}; !reflect.DeepEqual(wantMarks, want) {
		t.Fatalf("marks exported %v, want %v", wantMarks, want)
	}
	h, err := DecodeHandoff(mustEncode(t, h))
	if err != nil {
		t.Fatal(err)
	}

	// The successor: the same services and rules under other IDs; rr starts afresh there.
	n := fwmRig(t, time.Hour)
	renumberMarks(t, n, a)
	res := n.dp.ImportHandoff(h)
	if res.Conns != 3 || res.Templates != 2 || res.Expired != 0 || len(res.Refused) != 0 {
		t.Fatalf("import: %+v, want 3 connections and 2 templates", res)
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
	}
	if pa, pn := a.dp.PersistConns(), n.dp.PersistConns(); pa[10] != pn[20] || pa[11] != pn[21] || pn[20]+pn[21] != 2 {
		t.Errorf("templates per real server: %v before, %v after (IDs +10)", pa, pn)
	}
	// client's template (rs2) holds on port 80 of the mark, where a fresh rr would give rs1.
	if got := syn(n, client, vip, 5100, 80, false); got != rs2 {
		t.Fatalf("client's new connection on port 80 went to %v, want %v (its template)", got, rs2)
	}
	// The imported connection's next segment goes through, to its real server.
	n.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5000, dport: 443, ack: true, payload: []byte("more")}))
	n.drain()
	if out := n.int.Sent(); len(out) != 1 || netip.AddrFrom16(check(t, out[0]).Dst).Unmap() != rs2 {
		t.Fatalf("next segment of the imported connection: %d frames (drops %v)", len(out), n.drops())
	}

	// A successor without the fwmark services refuses them all (the addresses name
	// no service of its own), and a successor of the format before marks would not
	// see them (TestHandoffFWMarkRoundTrip).
	u := newRig(t, "rr", 1, 1)
	if res := u.dp.ImportHandoff(h); res.Refused["no_service"] != 5 {
		t.Fatalf("import without fwmark services: %+v, want 5 refused for no service", res)
	}
}

// renumberMarks publishes on n the services of a (fwmRig's) with IDs +100, real
// servers +10, and a's mark rules.
func renumberMarks(t *testing.T, n, a *rig) {
	t.Helper()
	snap := a.dp.Snapshot()
	svcs := append([]Service(nil), snap.Services...)
	for i := range svcs {
		svcs[i].ID += 100
		svcs[i].Dests = append([]Dest(nil), svcs[i].Dests...)
		for j := range svcs[i].Dests {
			svcs[i].Dests[j].ID += 10
		}
	}
	s, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMarks(snap.Marks); err != nil {
		t.Fatal(err)
	}
	if err := n.dp.Publish(s); err != nil {
		t.Fatal(err)
	}
}

// TestHandoffOlderFormat: a handoff written before marked entries existed
// (testdata/handoff-v1-nomark.bin: version 1, the connections and templates of
// TestHandoffExportImport's first rig) still decodes and imports, and this build writes
// the same bytes for it: its unmarked entries are laid out as before.
func TestHandoffOlderFormat(t *testing.T) {
	old, err := os.ReadFile("testdata/handoff-v1-nomark.bin")
	if err != nil {
		t.Fatal(err)
	}
	h, err := DecodeHandoff(old)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(h.Entries) != 6 {
		t.Fatalf("%d entries, want 3 connections and 3 templates", len(h.Entries))
	}
	for _, e := range h.Entries {
		if e.FWMark != 0 {
			t.Fatalf("entry %+v has a mark", e)
		}
	}
	if again := mustEncode(t, h); !bytes.Equal(again, old) {
		t.Fatal("re-encoding the older handoff changes its bytes")
	}
	h.Written = time.Now() // the file's timers ran out long ago
	n := newRig(t, "rr", 1, 1)
	renumber(t, n, time.Hour, nil)
	if res := n.dp.ImportHandoff(h); res.Conns != 3 || res.Templates != 3 || len(res.Refused) != 0 {
		t.Fatalf("import: %+v, want 3 connections and 3 templates", res)
	}
}
