package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/sched"
)

// sctpRig is newRig's two-armed NAT director with an SCTP service VIP:80 → rs1/rs2:8080
// as well (service id 132).
func sctpRig(t testing.TB) *rig {
	t.Helper()
	r := newRig(t, "rr", 1, 1)
	snap := r.dp.snap.Load()
	svcs := append([]Service(nil), snap.Services...)
	var sd []sched.Dest
	for _, d := range svcs[0].Dests {
		sd = append(sd, sched.Dest{ID: d.ID, Weight: d.Weight, Addr: d.Addr, Port: d.Port})
	}
	s, err := sched.New("rr", sd, 0)
	if err != nil {
		t.Fatal(err)
	}
	svcs = append(svcs, Service{ID: 132, Key: SvcKey{Addr: a16(vip), Port: 80, Proto: packet.ProtoSCTP}, Dests: svcs[0].Dests, Sched: s})
	ns, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(ns); err != nil {
		t.Fatal(err)
	}
	return r
}

// sctpFrame crafts an IPv4 SCTP packet with gopacket, its CRC32c right unless bad.
func sctpFrame(t testing.TB, srcMAC, dstMAC [6]byte, src, dst netip.Addr, sport, dport uint16, bad bool, chunks ...gopacket.SerializableLayer) []byte {
	t.Helper()
	ls := []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: net.HardwareAddr(srcMAC[:]), DstMAC: net.HardwareAddr(dstMAC[:]), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolSCTP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
		&layers.SCTP{SrcPort: layers.SCTPPort(sport), DstPort: layers.SCTPPort(dport), VerificationTag: 0x01020304},
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, append(ls, chunks...)...); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	var info packet.Info
	if res := packet.Parse(b, &info); res != packet.ResultOK {
		t.Fatalf("crafted SCTP frame: %v", res)
	}
	packet.ComputeL4Checksum(b, &info)
	if bad {
		b[info.L4Off+8] ^= 0x40
	}
	return b
}

func chunk(typ layers.SCTPChunkType) gopacket.SerializableLayer {
	switch typ {
	case layers.SCTPChunkTypeInit, layers.SCTPChunkTypeInitAck:
		return &layers.SCTPInit{SCTPChunk: layers.SCTPChunk{Type: typ}, InitiateTag: 7, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 1, InboundStreams: 1, InitialTSN: 1}
	case layers.SCTPChunkTypeCookieEcho:
		return &layers.SCTPCookieEcho{SCTPChunk: layers.SCTPChunk{Type: typ}, Cookie: []byte("a cookie")}
	case layers.SCTPChunkTypeShutdown:
		return &layers.SCTPShutdown{SCTPChunk: layers.SCTPChunk{Type: typ}, CumulativeTSNAck: 1}
	case layers.SCTPChunkTypeShutdownAck:
		return &layers.SCTPShutdownAck{SCTPChunk: layers.SCTPChunk{Type: typ}}
	case layers.SCTPChunkTypeSack:
		return &layers.SCTPSack{SCTPChunk: layers.SCTPChunk{Type: typ}, CumulativeTSNAck: 1, AdvertisedReceiverWindowCredit: 65536}
	case layers.SCTPChunkTypeData:
		return &layers.SCTPData{SCTPChunk: layers.SCTPChunk{Type: typ}, BeginFragment: true, EndFragment: true, TSN: 1}
	case layers.SCTPChunkTypeAbort:
		return &layers.SCTPError{SCTPChunk: layers.SCTPChunk{Type: typ}}
	}
	return &layers.SCTPEmptyLayer{SCTPChunk: layers.SCTPChunk{Type: typ}} // COOKIE ACK, SHUTDOWN COMPLETE
}

// TestSCTPNATAssociation runs one association through the NAT director: every packet
// leaves with the addresses and ports NAT gives and a right CRC32c; the connection's
// state and ActiveConn/InActConn follow IPVS's SCTP tables.
func TestSCTPNATAssociation(t *testing.T) {
	r := sctpRig(t)
	ct := r.dp.Conntrack()
	steps := []struct {
		fromClient bool
		typ        layers.SCTPChunkType
		state      conntrack.State
	}{
		{true, layers.SCTPChunkTypeInit, conntrack.StateSCTPInit1},
		{false, layers.SCTPChunkTypeInitAck, conntrack.StateSCTPCookieSent},
		{true, layers.SCTPChunkTypeCookieEcho, conntrack.StateSCTPCookieReplied},
		{false, layers.SCTPChunkTypeCookieAck, conntrack.StateSCTPEstablished},
		{true, layers.SCTPChunkTypeData, conntrack.StateSCTPEstablished},
		{false, layers.SCTPChunkTypeSack, conntrack.StateSCTPEstablished},
		{true, layers.SCTPChunkTypeShutdown, conntrack.StateSCTPShutdownReceived},
		{false, layers.SCTPChunkTypeShutdownAck, conntrack.StateSCTPShutdownAckSent},
		{true, layers.SCTPChunkTypeShutdownComplete, conntrack.StateSCTPClosed},
	}
	orig := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 5000, DstPort: 80, Proto: conntrack.ProtoSCTP}
	for i, st := range steps {
		var chunks []gopacket.SerializableLayer
		chunks = append(chunks, chunk(st.typ))
		if st.typ == layers.SCTPChunkTypeData {
			chunks = append(chunks, gopacket.Payload("some user data"))
		}
		if st.fromClient {
			r.ext.Inject(sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunks...))
		} else {
			r.int.Inject(sctpFrame(t, macRS1, macDirInt, rs1, client, 8080, 5000, false, chunks...))
		}
		r.w.poll()
		out := r.int.Sent()
		wantSrc, wantDst, sp, dp := client, rs1, uint16(5000), uint16(8080)
		if !st.fromClient {
			out = r.ext.Sent()
			wantSrc, wantDst, sp, dp = vip, client, 80, 5000
		}
		if len(out) != 1 {
			t.Fatalf("step %d (%v): %d frames out, drops %v", i, st.typ, len(out), r.drops())
		}
		info := check(t, out[0]) // the CRC32c and the IPv4 header checksum verify
		if netip.AddrFrom16(info.Src).Unmap() != wantSrc || netip.AddrFrom16(info.Dst).Unmap() != wantDst || info.SrcPort != sp || info.DstPort != dp {
			t.Fatalf("step %d: %v:%d -> %v:%d", i, netip.AddrFrom16(info.Src), info.SrcPort, netip.AddrFrom16(info.Dst), info.DstPort)
		}
		var e conntrack.Entry
		if !ct.Get(conntrack.DirOrig, &orig, r.dp.now(), &e) || e.State != st.state {
			t.Fatalf("step %d (%v): state %v, want %v", i, st.typ, e.State, st.state)
		}
		a, in := ct.Conns(e.Dest)
		if st.state == conntrack.StateSCTPEstablished && (a != 1 || in != 0) || st.state != conntrack.StateSCTPEstablished && (a != 0 || in != 1) {
			t.Fatalf("step %d in %v: ActiveConn %d InActConn %d", i, st.state, a, in)
		}
	}
	// A packet with a wrong CRC32c is forwarded with a wrong one: the real server's SCTP
	// drops it, as it would have without the director (the kernel would recompute it).
	r.ext.Inject(sctpFrame(t, macClient, macDirExt, client, vip, 5001, 80, true, chunk(layers.SCTPChunkTypeInit)))
	r.w.poll()
	out := r.int.Sent()
	if len(out) != 1 {
		t.Fatalf("corrupt INIT: %d frames out", len(out))
	}
	var info packet.Info
	if packet.Parse(out[0], &info) != packet.ResultOK || packet.L4ChecksumValid(out[0], &info) {
		t.Fatal("a corrupt packet left the director with a valid checksum")
	}
}

// TestSCTPDrops: SCTP packets the director must not forward are counted by reason.
// sctpDropCase is an SCTP packet the director must drop for reason want.
type sctpDropCase struct {
	name  string
	frame func(t *testing.T) []byte
	want  Drop
}

// sctpDropCases are TestSCTPDrops's cases (TestFrameAccounting reuses them).
func sctpDropCases() []sctpDropCase {
	return []sctpDropCase{
		{"DATA without an association", func(t *testing.T) []byte {
			return sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunk(layers.SCTPChunkTypeData), gopacket.Payload("x"))
		}, DropNoConn},
		{"ABORT without an association", func(t *testing.T) []byte {
			return sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunk(layers.SCTPChunkTypeAbort))
		}, DropNoConn},
		{"chunk length 3", func(t *testing.T) []byte {
			b := sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunk(layers.SCTPChunkTypeInit))
			binary.BigEndian.PutUint16(b[14+20+12+2:], 3)
			return b
		}, DropMalformed},
		{"chunk beyond the packet", func(t *testing.T) []byte {
			b := sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunk(layers.SCTPChunkTypeInit))
			binary.BigEndian.PutUint16(b[14+20+12+2:], 200)
			return b
		}, DropMalformed},
		{"no chunk", func(t *testing.T) []byte {
			b := sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunk(layers.SCTPChunkTypeCookieAck))
			binary.BigEndian.PutUint16(b[14+2:], 20+12)
			packet.IPv4(b[14:]).ComputeChecksum()
			return b[:14+20+12]
		}, DropMalformed},
		{"first fragment whose port NAT changes", func(t *testing.T) []byte {
			b := sctpFrame(t, macClient, macDirExt, client, vip, 5000, 80, false, chunk(layers.SCTPChunkTypeInit))
			binary.BigEndian.PutUint16(b[14+6:], packet.IPv4FlagMF)
			packet.IPv4(b[14:]).ComputeChecksum()
			return b
		}, DropSCTPFragment},
	}
}

func TestSCTPDrops(t *testing.T) {
	for _, tc := range sctpDropCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := sctpRig(t)
			r.ext.Inject(tc.frame(t))
			r.w.poll()
			if d := r.drops(); d[tc.want.String()] != 1 || len(d) != 1 {
				t.Fatalf("drops %v, want one %s", d, tc.want)
			}
			if n := len(r.int.Sent()); n != 0 {
				t.Fatalf("%d frames forwarded", n)
			}
		})
	}
}

// TestSCTPForwardAllocs: an established SCTP association's DATA and SACK, NAT both ways
// with the CRC32c updated, allocate nothing.
func TestSCTPForwardAllocs(t *testing.T) {
	r := sctpRig(t)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	r.ext.Inject(sctpFrame(t, macClient, macDirExt, client, vip, 7, 80, false, chunk(layers.SCTPChunkTypeInit)))
	r.w.poll()
	data := sctpFrame(t, macClient, macDirExt, client, vip, 7, 80, false, chunk(layers.SCTPChunkTypeData), gopacket.Payload(make([]byte, 1000)))
	sack := sctpFrame(t, macRS1, macDirInt, rs1, client, 8080, 7, false, chunk(layers.SCTPChunkTypeSack))
	n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(data)
		r.int.Inject(sack)
		r.w.poll()
	})
	if n != 0 {
		t.Fatalf("%v allocations per forwarded SCTP pair", n)
	}
	if d := r.drops(); len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
}

// TestFWMarkSCTP: an SCTP mark rule (--add-mark --sctp-service VIP:3868 -f 1) gives
// SCTP packets to fwmark service 1 (NAT real servers of port 0: the packet's port is
// kept); the real server's answer goes back from VIP:3868 with a right CRC32c; the
// client's template, one per mark whatever the protocol (IPVS's
// <IPPROTO_IP, client, 0, fwmark, 0>), keeps its TCP connection to the mark on the same
// real server; SCTP to a port no rule names is not the service's.
func TestFWMarkSCTP(t *testing.T) {
	r := fwmRig(t, time.Hour)
	old := r.dp.Snapshot()
	ns, err := NewSnapshot(append([]Service(nil), old.Services...))
	if err != nil {
		t.Fatal(err)
	}
	rules := append(append([]MarkRule(nil), old.Marks...), markRule(t, packet.ProtoSCTP, vip.String()+"/32", 1, PortRange{3868, 3868}))
	if err := ns.SetMarks(rules); err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(ns); err != nil {
		t.Fatal(err)
	}
	r.ext.Inject(sctpFrame(t, macClient, macDirExt, client, vip, 5000, 3868, false, chunk(layers.SCTPChunkTypeInit)))
	r.w.poll()
	out := r.int.Sent()
	if len(out) != 1 {
		t.Fatalf("SCTP INIT to the marked VIP:3868: %d frames out, drops %v", len(out), r.drops())
	}
	info := check(t, out[0])
	server := netip.AddrFrom16(info.Dst).Unmap()
	if server != rs1 && server != rs2 || info.DstPort != 3868 {
		t.Fatalf("INIT went to %v:%d, want a real server, port 3868", server, info.DstPort)
	}
	mac := macRS1
	if server == rs2 {
		mac = macRS2
	}
	r.int.Inject(sctpFrame(t, mac, macDirInt, server, client, 3868, 5000, false, chunk(layers.SCTPChunkTypeInitAck)))
	r.w.poll()
	back := r.ext.Sent()
	if len(back) != 1 {
		t.Fatalf("INIT ACK from the real server: %d frames out, drops %v", len(back), r.drops())
	}
	if bi := check(t, back[0]); netip.AddrFrom16(bi.Src).Unmap() != vip || bi.SrcPort != 3868 {
		t.Fatalf("INIT ACK left from %v:%d, want %v:3868", netip.AddrFrom16(bi.Src).Unmap(), bi.SrcPort, vip)
	}
	var e conntrack.Entry
	orig := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 5000, DstPort: 3868, Proto: conntrack.ProtoSCTP}
	if !r.dp.Conntrack().Get(conntrack.DirOrig, &orig, r.dp.now(), &e) || e.State != conntrack.StateSCTPCookieSent || e.Service != 1 {
		t.Fatalf("association: state %v service %d, want COOKIE_SENT on service 1", e.State, e.Service)
	}
	// TCP to the mark: the client's template holds (rr alone would pick the other).
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 6000, dport: 443, syn: true}))
	r.drain()
	if tcp := r.int.Sent(); len(tcp) != 1 || netip.AddrFrom16(check(t, tcp[0]).Dst).Unmap() != server {
		t.Fatalf("the client's TCP connection to the mark: %d frames, want one to %v", len(tcp), server)
	}
	// SCTP to port 3869: no rule, no service.
	r.ext.Inject(sctpFrame(t, macClient, macDirExt, client, vip, 5001, 3869, false, chunk(layers.SCTPChunkTypeInit)))
	r.w.poll()
	if out := r.int.Sent(); len(out) != 0 || r.drops()["no_service"] == 0 {
		t.Fatalf("SCTP to an unmarked port: %d frames out, drops %v", len(out), r.drops())
	}
}
