package syncd

import (
	"net/netip"
	"testing"

	"xlvs/conntrack"
	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

func a16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// Flag values of include/uapi/linux/ip_vs.h, written here from the header, not taken from
// the package under test.
const (
	kMasq     = 0x0000
	kTunnel   = 0x0002
	kDroute   = 0x0003
	kNoOutput = 0x0080
	kInactive = 0x0100
	kTemplate = 0x1000
)

// kernelFlags is the model of the flags a kernel master sends for a connection: the
// destination's conn_flags (forwarding method, NOOUTPUT for every method but MASQ, and
// INACTIVE from creation) with INACTIVE cleared while a TCP connection is in an active
// state (tcp_state_active_table: SYN_SENT, SYN_RECV, SYNACK, ESTABLISHED); templates keep
// INACTIVE and add TEMPLATE.
func kernelFlags(m conntrack.Method, tpl bool, st conntrack.State, proto uint8) uint32 {
	var f uint32
	switch m {
	case conntrack.MethodDR:
		f = kDroute | kNoOutput
	case conntrack.MethodTUN:
		f = kTunnel | kNoOutput
	default:
		f = kMasq
	}
	f |= kInactive
	if tpl {
		return f | kTemplate
	}
	active := proto == 6 && (st == conntrack.StateSynSent || st == conntrack.StateSynRecv || st == conntrack.StateSynAck || st == conntrack.StateEstablished)
	if active {
		f &^= kInactive
	}
	return f
}

// kernelState is the wire state: IP_VS_TCP_S_* numbers for TCP (NONE 0, ESTABLISHED 1,
// SYN_SENT 2, SYN_RECV 3, FIN_WAIT 4, TIME_WAIT 5, CLOSE 6, CLOSE_WAIT 7, LAST_ACK 8,
// LISTEN 9, SYNACK 10), IP_VS_UDP_S_NORMAL 0 for UDP, 0 for a template.
func kernelState(tpl bool, st conntrack.State) uint16 {
	if tpl {
		return 0
	}
	names := map[conntrack.State]uint16{
		conntrack.StateNone: 0, conntrack.StateEstablished: 1, conntrack.StateSynSent: 2, conntrack.StateSynRecv: 3,
		conntrack.StateFinWait: 4, conntrack.StateTimeWait: 5, conntrack.StateClose: 6, conntrack.StateCloseWait: 7,
		conntrack.StateLastAck: 8, conntrack.StateListen: 9, conntrack.StateSynAck: 10, conntrack.StateUDP: 0,
	}
	return names[st]
}

// sample is a set of entries covering both families, every method, templates and states.
func sample() []dataplane.SyncConn {
	return []dataplane.SyncConn{
		{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Timeout: 900,
			Client: a16("198.18.1.2"), CPort: 40000, VAddr: a16("198.18.0.10"), VPort: 80, DAddr: a16("198.18.2.11"), DPort: 8080},
		{Proto: 6, Method: conntrack.MethodDR, State: conntrack.StateSynRecv, Timeout: 60,
			Client: a16("198.18.1.3"), CPort: 40001, VAddr: a16("198.18.0.10"), VPort: 443, DAddr: a16("198.18.2.12"), DPort: 443},
		{Proto: 17, Method: conntrack.MethodTUN, State: conntrack.StateUDP, Timeout: 300,
			Client: a16("198.18.1.4"), CPort: 5353, VAddr: a16("198.18.0.11"), VPort: 53, DAddr: a16("198.18.2.13"), DPort: 53},
		{Proto: 6, Method: conntrack.MethodFullNAT, State: conntrack.StateFinWait, Timeout: 120,
			Client: a16("198.18.1.5"), CPort: 40002, VAddr: a16("198.18.0.12"), VPort: 80, DAddr: a16("198.18.2.14"), DPort: 80,
			LAddr: a16("198.18.3.1"), LPort: 61000},
		{Proto: 6, Method: conntrack.MethodFullNAT, State: conntrack.StateEstablished, Timeout: 900,
			Client: a16("fd00:1::5"), CPort: 40003, VAddr: a16("fd00::12"), VPort: 80, DAddr: a16("fd00:2::14"), DPort: 80,
			LAddr: a16("fd00:3::1"), LPort: 61001},
		{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateTimeWait, Timeout: 120,
			Client: a16("fd00:1::6"), CPort: 40004, VAddr: a16("fd00::10"), VPort: 80, DAddr: a16("fd00:2::11"), DPort: 8080},
		{Proto: 17, Method: conntrack.MethodNAT, State: conntrack.StateUDP, Timeout: 300,
			Client: a16("fd00:1::7"), CPort: 5000, VAddr: a16("fd00::11"), VPort: 53, DAddr: a16("fd00:2::13"), DPort: 53},
		// Templates: client masked, client port 0, state NONE, persistence timeout.
		{Proto: 6, Template: true, Method: conntrack.MethodDR, Timeout: 360,
			Client: a16("198.18.1.0"), VAddr: a16("198.18.0.10"), VPort: 443, DAddr: a16("198.18.2.12"), DPort: 443},
		{Proto: 17, Template: true, Method: conntrack.MethodTUN, Timeout: 300,
			Client: a16("fd00:1::"), VAddr: a16("fd00::11"), VPort: 0, DAddr: a16("fd00:2::13"), DPort: 0},
		{Proto: 6, Template: true, Method: conntrack.MethodFullNAT, Timeout: 600,
			Client: a16("198.18.1.0"), VAddr: a16("198.18.0.12"), VPort: 80, DAddr: a16("198.18.2.14"), DPort: 80},
	}
}

func TestToWire(t *testing.T) {
	for i, e := range sample() {
		var c ipvssync.Conn
		if !toWire(&e, &c) {
			t.Fatalf("entry %d refused", i)
		}
		v4 := netip.AddrFrom16(e.VAddr).Is4In6()
		want := ipvssync.Conn{
			IPv6: !v4, Protocol: e.Proto, Flags: kernelFlags(e.Method, e.Template, e.State, e.Proto),
			State: kernelState(e.Template, e.State), CPort: e.CPort, VPort: e.VPort, DPort: e.DPort,
			Timeout: e.Timeout, CAddr: e.Client, VAddr: e.VAddr, DAddr: e.DAddr,
		}
		if e.Method == conntrack.MethodFullNAT {
			want.HasLocal, want.LAddr, want.LPort = true, e.LAddr, e.LPort
		}
		if c.IPv6 != want.IPv6 || c.Protocol != want.Protocol || c.Flags != want.Flags || c.State != want.State ||
			c.CPort != want.CPort || c.VPort != want.VPort || c.DPort != want.DPort || c.Timeout != want.Timeout ||
			c.CAddr != want.CAddr || c.VAddr != want.VAddr || c.DAddr != want.DAddr || c.FWMark != 0 ||
			c.HasLocal != want.HasLocal || c.LAddr != want.LAddr || c.LPort != want.LPort || c.PEData != nil || c.Skip {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, c, want)
		}
	}
	mixed := sample()[0]
	mixed.DAddr = a16("fd00:2::11")
	var c ipvssync.Conn
	if toWire(&mixed, &c) {
		t.Error("an IPv4 connection to an IPv6 real server was encoded; the format has one family per entry")
	}
}

func TestFromWire(t *testing.T) {
	// Every sample comes back as it was sent (Queued is the sender's alone).
	for i, e := range sample() {
		var c ipvssync.Conn
		toWire(&e, &c)
		var got dataplane.SyncConn
		if r := fromWire(&c, &got); r >= 0 {
			t.Fatalf("entry %d dropped: %s", i, backupDropNames[r])
		}
		if got != e {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got, e)
		}
	}
	base := ipvssync.Conn{Protocol: 6, State: 1, CAddr: a16("198.18.1.2"), VAddr: a16("198.18.0.10"), DAddr: a16("198.18.2.11")}
	for _, tc := range []struct {
		name string
		mod  func(*ipvssync.Conn)
		want int
	}{
		{"unknown mandatory option", func(c *ipvssync.Conn) { c.Skip = true }, dropSkipped},
		{"DCCP", func(c *ipvssync.Conn) { c.Protocol = 33 }, dropProtocol},
		{"TCP state 11 (IP_VS_TCP_S_LAST)", func(c *ipvssync.Conn) { c.State = 11 }, dropState},
		{"UDP state 1 (IP_VS_UDP_S_LAST)", func(c *ipvssync.Conn) { c.Protocol, c.State = 17, 1 }, dropState},
		{"template state 2 (IP_VS_CTPL_S_LAST)", func(c *ipvssync.Conn) { c.Flags, c.State = kTemplate, 2 }, dropState},
		{"local node", func(c *ipvssync.Conn) { c.Flags = 1 }, dropMethod},
		{"bypass", func(c *ipvssync.Conn) { c.Flags = 4 }, dropMethod},
	} {
		c := base
		tc.mod(&c)
		var e dataplane.SyncConn
		if got := fromWire(&c, &e); got != tc.want {
			t.Errorf("%s: reason %d, want %s", tc.name, got, backupDropNames[tc.want])
		}
	}
	// A template in state ASSURED (1) is taken, as NONE.
	c := base
	c.Flags, c.State = kTemplate|kDroute, 1
	var e dataplane.SyncConn
	if r := fromWire(&c, &e); r >= 0 || !e.Template || e.State != conntrack.StateNone || e.Method != conntrack.MethodDR {
		t.Errorf("template ASSURED: reason %d, %+v", r, e)
	}
}

// TestEncodeAllocs: the master's per-entry path — conversion, sender choice and Writer.Add,
// with the sends a full message makes replaced by a Reset — allocates nothing.
func TestEncodeAllocs(t *testing.T) {
	entries := sample()
	w := ipvssync.NewWriter(3, 1472)
	var c ipvssync.Conn
	i := 0
	allocs := testing.AllocsPerRun(10000, func() {
		e := &entries[i%len(entries)]
		i++
		if !toWire(e, &c) {
			panic("refused")
		}
		_ = senderOf(e, 4)
		ok, err := w.Add(&c)
		if err != nil {
			panic(err)
		}
		if !ok {
			w.Reset()
			w.Add(&c)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per entry, want 0", allocs)
	}
}

// TestSenderOf: one connection always goes to the same socket; sockets share the load.
func TestSenderOf(t *testing.T) {
	seen := map[int]int{}
	for p := range 1000 {
		e := dataplane.SyncConn{Client: a16("198.18.1.2"), CPort: uint16(10000 + p)}
		s := senderOf(&e, 4)
		if s2 := senderOf(&e, 4); s2 != s || s < 0 || s >= 4 {
			t.Fatalf("senderOf: %d then %d", s, s2)
		}
		seen[s]++
	}
	for s := range 4 {
		if seen[s] < 150 {
			t.Errorf("socket %d got %d of 1000 connections: %v", s, seen[s], seen)
		}
	}
}

// BenchmarkEncode is the master's per-entry cost: conversion, socket choice and Writer.Add
// (a full message is Reset where the daemon would send it).
func BenchmarkEncode(b *testing.B) {
	entries := sample()
	w := ipvssync.NewWriter(3, 1472)
	var c ipvssync.Conn
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := &entries[i%len(entries)]
		toWire(e, &c)
		_ = senderOf(e, 4)
		if ok, _ := w.Add(&c); !ok {
			w.Reset()
			w.Add(&c)
		}
	}
}

// TestFWMarkWire: the fwmark field goes out and comes back; a fwmark template, as IPVS
// writes one (protocol IPPROTO_IP, the mark as virtual address), is taken; protocol 0
// is refused otherwise.
func TestFWMarkWire(t *testing.T) {
	conn := sample()[0]
	conn.FWMark = 7
	tpl := dataplane.SyncConn{Proto: 0, Template: true, Method: conntrack.MethodNAT, State: conntrack.StateNone, Timeout: 300,
		Client: a16("198.18.1.0"), VAddr: a16("0.0.0.7"), DAddr: a16("198.18.2.11"), FWMark: 7}
	for _, e := range []dataplane.SyncConn{conn, tpl} {
		var c ipvssync.Conn
		if !toWire(&e, &c) || c.FWMark != 7 {
			t.Fatalf("toWire %+v: %+v", e, c)
		}
		var got dataplane.SyncConn
		if r := fromWire(&c, &got); r >= 0 || got != e {
			t.Fatalf("fromWire: reason %d\n got %+v\nwant %+v", r, got, e)
		}
	}
	var c ipvssync.Conn
	toWire(&tpl, &c)
	c.FWMark = 0
	var e dataplane.SyncConn
	if r := fromWire(&c, &e); r != dropProtocol {
		t.Fatalf("protocol 0 without a mark: reason %d", r)
	}
}
