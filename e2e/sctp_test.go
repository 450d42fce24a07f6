package e2e

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
	"xlvs/control/api"
)

// SCTP services end to end. This kernel has no SCTP sockets, so the associations are
// crafted with gopacket and sent from AF_PACKET sockets on both sides (the client's and
// the real server's namespace), through the director's real XDP program and AF_XDP
// sockets; what arrives on the other side is captured the same way and checked: the
// CRC32c (computed here with hash/crc32's Castagnoli table, not the dataplane's code),
// addresses and ports, and after each packet the connection's state and timer in
// xlvsadm -L -n -c and ActiveConn/InActConn of the real server.
//
// The expected states, timers and counts are a model written here from the kernel's
// rules (net/netfilter/ipvs/ip_vs_proto_sctp.c at intel-lab-lkp/linux
// e0cc369553c8344fbedb63fc62b4d37aed1cb5a6): the transitions an association's packets
// make, sctp_timeouts (INIT1 and REJECTED 4 s, ESTABLISHED 900 s, the others 61 s) and
// set_sctp_state's activity rule (active only in ESTABLISHED).

// The virtual service's port, and the NAT real server's (different, so that NAT rewrites
// ports and the CRC32c with them).
const (
	sctpPort  = 38412
	sctpRPort = 36412
)

var sctpTimeout = map[string]int{"INIT1": 4, "REJECTED": 4, "ESTABLISHED": 900, "C-SENT": 61,
	"C-REPLIED": 61, "S-RECEIVED": 61, "S-ACK-SENT": 61, "CLOSED": 61}

// rawSock is an AF_PACKET socket on one interface of a namespace: it sends frames as
// they are and receives the frames the interface receives (not the ones it sends).
type rawSock struct {
	fd   int
	name string
}

func openRaw(t *testing.T, ns *testbed.NS, ifname string) *rawSock {
	t.Helper()
	idx, err := ns.Ifindex(ifname)
	if err != nil {
		t.Fatal(err)
	}
	all := uint16(unix.ETH_P_ALL)
	proto := all<<8 | all>>8 // htons
	var fd int
	if err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto)); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: idx, Protocol: proto})
	}); err != nil {
		t.Fatalf("packet socket on %s in %s: %v", ifname, ns.Name(), err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &rawSock{fd: fd, name: ns.Name() + "/" + ifname}
}

func (r *rawSock) send(t *testing.T, frame []byte) {
	t.Helper()
	if _, err := unix.Write(r.fd, frame); err != nil {
		t.Fatalf("send on %s: %v", r.name, err)
	}
}

// recvSCTP returns the next SCTP frame the interface receives within wait (nil if none);
// other frames (ICMP, neighbour discovery, ...) are skipped.
func (r *rawSock) recvSCTP(t *testing.T, wait time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		f := r.recvAny(t, time.Until(deadline))
		if f == nil {
			return nil
		}
		if p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy); p.Layer(layers.LayerTypeSCTP) != nil {
			return f
		}
	}
}

// sctpSeg is the SCTP packet of an Ethernet frame (the IP payload, without Ethernet
// padding), and the IP header's source and destination.
func sctpSeg(t *testing.T, frame []byte) (seg []byte, src, dst netip.Addr) {
	t.Helper()
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		ip := frame[14:]
		hl, tl := int(ip[0]&15)*4, int(binary.BigEndian.Uint16(ip[2:]))
		return ip[hl:tl], netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	case 0x86dd:
		ip := frame[14:]
		return ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:]))], netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	}
	t.Fatalf("frame of EtherType %#x", binary.BigEndian.Uint16(frame[12:]))
	return nil, netip.Addr{}, netip.Addr{}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpCRC is RFC 9260's checksum of seg: CRC32c with the checksum field zeroed.
func sctpCRC(seg []byte) uint32 {
	c := append([]byte(nil), seg...)
	binary.LittleEndian.PutUint32(c[8:], 0)
	return crc32.Checksum(c, castagnoli)
}

// chunkOf builds one chunk of type typ with gopacket's SCTP layers.
func chunkOf(typ layers.SCTPChunkType) []gopacket.SerializableLayer {
	c := layers.SCTPChunk{Type: typ}
	switch typ {
	case layers.SCTPChunkTypeInit, layers.SCTPChunkTypeInitAck:
		return []gopacket.SerializableLayer{&layers.SCTPInit{SCTPChunk: c, InitiateTag: 0x5ca1ab1e, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 2, InboundStreams: 2, InitialTSN: 100}}
	case layers.SCTPChunkTypeCookieEcho:
		return []gopacket.SerializableLayer{&layers.SCTPCookieEcho{SCTPChunk: c, Cookie: []byte("state cookie, opaque to the director")}}
	case layers.SCTPChunkTypeData:
		return []gopacket.SerializableLayer{&layers.SCTPData{SCTPChunk: c, BeginFragment: true, EndFragment: true, TSN: 100, PayloadProtocol: 18}, gopacket.Payload("an S1AP message, or so")}
	case layers.SCTPChunkTypeSack:
		return []gopacket.SerializableLayer{&layers.SCTPSack{SCTPChunk: c, CumulativeTSNAck: 100, AdvertisedReceiverWindowCredit: 65536}}
	case layers.SCTPChunkTypeShutdown:
		return []gopacket.SerializableLayer{&layers.SCTPShutdown{SCTPChunk: c, CumulativeTSNAck: 100}}
	case layers.SCTPChunkTypeShutdownAck:
		return []gopacket.SerializableLayer{&layers.SCTPShutdownAck{SCTPChunk: c}}
	case layers.SCTPChunkTypeAbort:
		return []gopacket.SerializableLayer{&layers.SCTPError{SCTPChunk: c}}
	}
	return []gopacket.SerializableLayer{&layers.SCTPEmptyLayer{SCTPChunk: c}} // COOKIE ACK, SHUTDOWN COMPLETE
}

// sctpFrame is an Ethernet frame of an SCTP packet carrying one chunk of type typ, with
// a right CRC32c (or, with corrupt, a wrong one).
func sctpFrame(t *testing.T, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, typ layers.SCTPChunkType, corrupt bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.SerializableLayer = &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolSCTP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolSCTP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	ls := []gopacket.SerializableLayer{eth, ip, &layers.SCTP{SrcPort: layers.SCTPPort(sport), DstPort: layers.SCTPPort(dport), VerificationTag: 0x5ca1ab1e}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, append(ls, chunkOf(typ)...)...); err != nil {
		t.Fatal(err)
	}
	frame := append([]byte(nil), buf.Bytes()...)
	seg, _, _ := sctpSeg(t, frame)
	c := sctpCRC(seg)
	if corrupt {
		c ^= 0x00010000
	}
	binary.LittleEndian.PutUint32(seg[8:], c)
	return frame
}

// arrival checks a captured frame: one SCTP packet src:sport → dst:dport whose first
// chunk is typ, whose CRC32c verifies unless corrupt (then it must not).
func arrival(t *testing.T, what string, frame []byte, src, dst netip.Addr, sport, dport uint16, typ layers.SCTPChunkType, corrupt bool) {
	t.Helper()
	if frame == nil {
		t.Fatalf("%s: nothing arrived", what)
	}
	seg, s, d := sctpSeg(t, frame)
	gotSport, gotDport := binary.BigEndian.Uint16(seg[0:]), binary.BigEndian.Uint16(seg[2:])
	if s != src || d != dst || gotSport != sport || gotDport != dport {
		t.Fatalf("%s: arrived %v:%d → %v:%d, want %v:%d → %v:%d", what, s, gotSport, d, gotDport, src, sport, dst, dport)
	}
	if len(seg) < 16 || layers.SCTPChunkType(seg[12]) != typ {
		t.Fatalf("%s: first chunk %d, want %v", what, seg[12], typ)
	}
	valid := binary.LittleEndian.Uint32(seg[8:]) == sctpCRC(seg)
	if valid == corrupt {
		t.Fatalf("%s: CRC32c valid %v, want %v", what, valid, !corrupt)
	}
}

// sctpConn is one line of xlvsadm -L -n -c.
type sctpConn struct {
	state  string
	expire int // seconds
}

// sctpConns reads xlvsadm -L -n -c: the SCTP connections by client endpoint.
func (e *env) sctpConns() map[string]sctpConn {
	e.t.Helper()
	out := map[string]sctpConn{}
	for _, line := range strings.Split(e.adm("-L", "-n", "-c"), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 && len(f) != 7 || f[0] != "SCTP" { // 7: with FULLNAT's local column
			continue
		}
		mm, ss, _ := strings.Cut(f[1], ":")
		m, _ := strconv.Atoi(mm)
		s, _ := strconv.Atoi(ss)
		out[f[3]] = sctpConn{state: f[2], expire: m*60 + s}
	}
	return out
}

// sctpAssoc is the model's view of one association: its client endpoint, its state and
// when the packet that last refreshed its timer was sent.
type sctpAssoc struct {
	client netip.AddrPort
	state  string
	at     time.Time
}

func (a *sctpAssoc) set(state string) { a.state, a.at = state, time.Now() }

// checkSCTP compares -L -n -c and the real server's ActiveConn/InActConn with the model.
func (e *env) checkSCTP(what string, vip netip.Addr, rs netip.Addr, assocs []*sctpAssoc) {
	e.t.Helper()
	conns := e.sctpConns()
	active, inactive := 0, 0
	for _, a := range assocs {
		c, ok := conns[a.client.String()]
		if !ok {
			e.t.Fatalf("%s: %v not in -L -n -c: %v", what, a.client, conns)
		}
		// -L -c shows the whole seconds left of the state's timeout since the last packet.
		to := sctpTimeout[a.state]
		if c.state != a.state || c.expire > to || c.expire < to-int(time.Since(a.at).Seconds())-2 {
			e.t.Fatalf("%s: %v in %s expiring in %d s; the kernel's rules: %s, %d s from %v ago", what, a.client, c.state, c.expire, a.state, to, time.Since(a.at).Round(time.Millisecond))
		}
		if a.state == "ESTABLISHED" {
			active++
		} else {
			inactive++
		}
	}
	svc := e.service(api.ProtoSCTP, vip, sctpPort)
	for _, d := range svc.Dests {
		if d.Addr == rs && (int(d.ActiveConns) != active || int(d.InactConns) != inactive) {
			e.t.Fatalf("%s: %v ActiveConn %d InActConn %d, want %d %d", what, rs, d.ActiveConns, d.InactConns, active, inactive)
		}
	}
}

// TestSCTPNAT: SCTP associations through a two-armed NAT director, IPv4 and IPv6: every
// chunk of an association's life, a rejected association (ABORT), a corrupted packet
// (forwarded still corrupt) and a malformed one (dropped, counted).
func TestSCTPNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	b := e.bed
	rs := b.Reals[0]
	cli := openRaw(t, b.Client.NS, b.Client.Iface)
	srv := openRaw(t, rs.NS, rs.Iface)
	for _, v6 := range []bool{false, true} {
		vip, caddr, raddr := b.VIP, b.Client.Addr, rs.Addr
		if v6 {
			vip, caddr, raddr = b.VIP6, b.Client.Addr6, rs.Addr6
		}
		svc := netip.AddrPortFrom(vip, sctpPort).String()
		e.adm("-A", "--sctp-service", svc, "-s", "rr")
		e.adm("-a", "--sctp-service", svc, "-r", netip.AddrPortFrom(raddr, sctpRPort).String(), "-m")
		if out := e.adm("-L", "-n"); !strings.Contains(out, "SCTP  "+svc+" rr\n") {
			t.Fatalf("-L -n lacks the SCTP service:\n%s", out)
		}
		var assocs []*sctpAssoc
		// fromClient sends typ from the client to the VIP and checks what reaches rs1;
		// fromServer sends typ from rs1 to the client and checks what the client gets.
		fromClient := func(a *sctpAssoc, typ layers.SCTPChunkType, corrupt bool) {
			t.Helper()
			cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, caddr, vip, a.client.Port(), sctpPort, typ, corrupt))
			arrival(t, fmt.Sprintf("v6=%v %v from the client at rs1", v6, typ), srv.recvSCTP(t, 2*time.Second),
				caddr, raddr, a.client.Port(), sctpRPort, typ, corrupt)
		}
		fromServer := func(a *sctpAssoc, typ layers.SCTPChunkType) {
			t.Helper()
			srv.send(t, sctpFrame(t, rs.MAC, b.Int.MAC, raddr, caddr, sctpRPort, a.client.Port(), typ, false))
			arrival(t, fmt.Sprintf("v6=%v %v from rs1 at the client", v6, typ), cli.recvSCTP(t, 2*time.Second),
				vip, caddr, sctpPort, a.client.Port(), typ, false)
		}
		a := &sctpAssoc{client: netip.AddrPortFrom(caddr, 5000)}
		assocs = append(assocs, a)
		for _, step := range []struct {
			client bool
			typ    layers.SCTPChunkType
			state  string
		}{
			{true, layers.SCTPChunkTypeInit, "INIT1"},
			{false, layers.SCTPChunkTypeInitAck, "C-SENT"},
			{true, layers.SCTPChunkTypeCookieEcho, "C-REPLIED"},
			{false, layers.SCTPChunkTypeCookieAck, "ESTABLISHED"},
			{true, layers.SCTPChunkTypeData, "ESTABLISHED"},
			{false, layers.SCTPChunkTypeSack, "ESTABLISHED"},
			{true, layers.SCTPChunkTypeShutdown, "S-RECEIVED"},
			{false, layers.SCTPChunkTypeShutdownAck, "S-ACK-SENT"},
			{true, layers.SCTPChunkTypeShutdownComplete, "CLOSED"},
		} {
			if step.client {
				fromClient(a, step.typ, false)
			} else {
				fromServer(a, step.typ)
			}
			a.set(step.state)
			e.checkSCTP(fmt.Sprintf("v6=%v after %v", v6, step.typ), vip, raddr, assocs)
			if step.typ == layers.SCTPChunkTypeData {
				// A corrupted DATA reaches the real server still corrupt (its SCTP drops it),
				// with the ports NAT gives; the state does not care.
				fromClient(a, layers.SCTPChunkTypeData, true)
				a.set("ESTABLISHED")
			}
		}
		// A real server that refuses an association answers its INIT with ABORT: REJECTED,
		// 4 s (the OUTPUT table's ABORT from INIT1).
		r := &sctpAssoc{client: netip.AddrPortFrom(caddr, 5001)}
		assocs = append(assocs, r)
		fromClient(r, layers.SCTPChunkTypeInit, false)
		fromServer(r, layers.SCTPChunkTypeAbort)
		r.set("REJECTED")
		e.checkSCTP(fmt.Sprintf("v6=%v after ABORT", v6), vip, raddr, assocs)
		// A DATA chunk opens nothing.
		cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, caddr, vip, 5002, sctpPort, layers.SCTPChunkTypeData, false))
		if f := srv.recvSCTP(t, 300*time.Millisecond); f != nil {
			t.Fatalf("v6=%v: a DATA without an association reached rs1", v6)
		}
		e.checkSCTP(fmt.Sprintf("v6=%v after a stray DATA", v6), vip, raddr, assocs)
	}
	// A malformed packet (an INIT whose chunk length is 3) is dropped and counted.
	before := e.dataplaneCounters()["drop_malformed"]
	bad := sctpFrame(t, b.Client.MAC, b.Ext.MAC, b.Client.Addr, b.VIP, 5003, sctpPort, layers.SCTPChunkTypeInit, false)
	binary.BigEndian.PutUint16(bad[14+20+12+2:], 3)
	cli.send(t, bad)
	if f := srv.recvSCTP(t, 300*time.Millisecond); f != nil {
		t.Fatal("a malformed SCTP packet reached rs1")
	}
	if after := e.dataplaneCounters()["drop_malformed"]; after != before+1 {
		t.Fatalf("drop_malformed %d → %d, want one more", before, after)
	}
	// -S saves what -R restores.
	if out := e.adm("-S", "-n"); !strings.Contains(out, "-A --sctp-service "+netip.AddrPortFrom(b.VIP, sctpPort).String()+" -s rr\n") {
		t.Fatalf("-S -n:\n%s", out)
	}
}

// TestSCTPDR: an SCTP association through a DR director (L2 layout): the client's
// packets reach the real server unchanged, its answers go straight to the client; the
// director follows the association with IPVS's INPUT-ONLY table.
func TestSCTPDR(t *testing.T) {
	e, rs, cli, srv := sctpDR(t)
	b := e.bed
	a := &sctpAssoc{client: netip.AddrPortFrom(b.Client.Addr, 6000)}
	assocs := []*sctpAssoc{a}
	for _, step := range []struct {
		client bool
		typ    layers.SCTPChunkType
		state  string // after the packet; replies bypass the director and change nothing
	}{
		{true, layers.SCTPChunkTypeInit, "INIT1"},
		{false, layers.SCTPChunkTypeInitAck, "INIT1"},
		{true, layers.SCTPChunkTypeCookieEcho, "ESTABLISHED"},
		{false, layers.SCTPChunkTypeCookieAck, "ESTABLISHED"},
		{true, layers.SCTPChunkTypeData, "ESTABLISHED"},
		{false, layers.SCTPChunkTypeSack, "ESTABLISHED"},
		{true, layers.SCTPChunkTypeShutdown, "S-RECEIVED"},
		{false, layers.SCTPChunkTypeShutdownAck, "S-RECEIVED"},
		{true, layers.SCTPChunkTypeShutdownComplete, "CLOSED"},
	} {
		if step.client {
			cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, b.Client.Addr, b.VIP, a.client.Port(), sctpPort, step.typ, false))
			f := srv.recvSCTP(t, 2*time.Second)
			arrival(t, fmt.Sprintf("%v from the client at rs1", step.typ), f, b.Client.Addr, b.VIP, a.client.Port(), sctpPort, step.typ, false)
			if got := net.HardwareAddr(f[0:6]).String(); got != rs.MAC.String() {
				t.Fatalf("%v reached rs1 for MAC %s, want its own %s", step.typ, got, rs.MAC)
			}
		} else {
			srv.send(t, sctpFrame(t, rs.MAC, b.Client.MAC, b.VIP, b.Client.Addr, sctpPort, a.client.Port(), step.typ, false))
			arrival(t, fmt.Sprintf("%v from rs1 at the client", step.typ), cli.recvSCTP(t, 2*time.Second), b.VIP, b.Client.Addr, sctpPort, a.client.Port(), step.typ, false)
		}
		if step.client {
			a.set(step.state) // replies bypass the director: they refresh nothing
		}
		if a.state != step.state {
			t.Fatalf("model: %s after %v, want %s", a.state, step.typ, step.state)
		}
		e.checkSCTP(fmt.Sprintf("after %v", step.typ), b.VIP, rs.Addr, assocs)
	}
	// An INIT on the CLOSED association starts a new one (is_new_conn_expected).
	cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, b.Client.Addr, b.VIP, a.client.Port(), sctpPort, layers.SCTPChunkTypeInit, false))
	arrival(t, "a new INIT", srv.recvSCTP(t, 2*time.Second), b.Client.Addr, b.VIP, a.client.Port(), sctpPort, layers.SCTPChunkTypeInit, false)
	a.set("INIT1")
	e.checkSCTP("after a new INIT", b.VIP, rs.Addr, assocs)
	if st := e.service(api.ProtoSCTP, b.VIP, sctpPort).Stats; st.Conns != 2 || st.OutPkts != 0 {
		t.Fatalf("service stats %+v: want 2 connections, no packets out (DR)", st)
	}
}

// TestSCTPFullNAT: an SCTP association through a FULLNAT director: the real server sees
// it from a local address and port, both endpoints rewritten each way with the CRC32c.
func TestSCTPFullNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	b := e.bed
	rs := b.Reals[0]
	if out, err := b.Director.Run(e.ctx, "ip", "-4", "addr", "add", fullnatLIP4.String()+"/24", "dev", b.Int.Iface); err != nil {
		t.Fatalf("add a local address on the director: %v %s", err, out)
	}
	cli := openRaw(t, b.Client.NS, b.Client.Iface)
	srv := openRaw(t, rs.NS, rs.Iface)
	svc := netip.AddrPortFrom(b.VIP, sctpPort).String()
	e.adm("-A", "--sctp-service", svc, "-s", "rr")
	e.adm("-a", "--sctp-service", svc, "-r", netip.AddrPortFrom(rs.Addr, sctpRPort).String(), "--fullnat")
	e.adm("-P", "--sctp-service", svc, "-z", fullnatLIP4.String())
	a := &sctpAssoc{client: netip.AddrPortFrom(b.Client.Addr, 7000)}
	assocs := []*sctpAssoc{a}
	var lport uint16
	for _, step := range []struct {
		client bool
		typ    layers.SCTPChunkType
		state  string
	}{
		{true, layers.SCTPChunkTypeInit, "INIT1"},
		{false, layers.SCTPChunkTypeInitAck, "C-SENT"},
		{true, layers.SCTPChunkTypeCookieEcho, "C-REPLIED"},
		{false, layers.SCTPChunkTypeCookieAck, "ESTABLISHED"},
		{true, layers.SCTPChunkTypeData, "ESTABLISHED"},
		{false, layers.SCTPChunkTypeAbort, "CLOSED"},
	} {
		if step.client {
			cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, b.Client.Addr, b.VIP, a.client.Port(), sctpPort, step.typ, false))
			f := srv.recvSCTP(t, 2*time.Second)
			if f != nil && lport == 0 {
				seg, _, _ := sctpSeg(t, f)
				lport = binary.BigEndian.Uint16(seg)
			}
			arrival(t, fmt.Sprintf("%v from the client at rs1", step.typ), f, fullnatLIP4, rs.Addr, lport, sctpRPort, step.typ, false)
		} else {
			srv.send(t, sctpFrame(t, rs.MAC, b.Int.MAC, rs.Addr, fullnatLIP4, sctpRPort, lport, step.typ, false))
			arrival(t, fmt.Sprintf("%v from rs1 at the client", step.typ), cli.recvSCTP(t, 2*time.Second), b.VIP, b.Client.Addr, sctpPort, a.client.Port(), step.typ, false)
		}
		a.set(step.state)
		e.checkSCTP(fmt.Sprintf("after %v", step.typ), b.VIP, rs.Addr, assocs)
	}
}

// sctpDR is the DR bed of the SCTP tests, xlvsd started with daemonArgs: an SCTP service
// on the VIP with rs1 (direct routing), and raw sockets on the client's and rs1's
// interfaces.
func sctpDR(t *testing.T, daemonArgs ...string) (e *env, rs *testbed.Host, cli, srv *rawSock) {
	t.Helper()
	e = setup(t, testbed.L2, daemonArgs...)
	b := e.bed
	rs = b.Reals[0]
	cli = openRaw(t, b.Client.NS, b.Client.Iface)
	srv = openRaw(t, rs.NS, rs.Iface)
	svc := netip.AddrPortFrom(b.VIP, sctpPort).String()
	e.adm("-A", "--sctp-service", svc, "-s", "rr")
	e.adm("-a", "--sctp-service", svc, "-r", rs.Addr.String(), "-g")
	return e, rs, cli, srv
}

// TestSCTPSloppy: with --sloppy-sctp (IPVS's sloppy_sctp) a director picks up SCTP
// associations it has no connection for from any packet but an ABORT — after a restart
// or a failover without sync, an association's DATA goes on to a real server — and the
// connection starts in the state the kernel's INPUT-ONLY table (DR) gives the packet's
// chunk from NONE: ESTABLISHED for DATA, S-RECEIVED for a SHUTDOWN. An ABORT creates
// nothing and is dropped (drop_no_conn). Without the flag only an INIT creates a
// connection: the DATA is dropped too.
func TestSCTPSloppy(t *testing.T) {
	for _, sloppy := range []bool{true, false} {
		t.Run(fmt.Sprintf("sloppy=%v", sloppy), func(t *testing.T) {
			var args []string
			if sloppy {
				args = []string{"--sloppy-sctp"}
			}
			e, rs, cli, srv := sctpDR(t, args...)
			b := e.bed
			send := func(port uint16, typ layers.SCTPChunkType) []byte {
				t.Helper()
				cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, b.Client.Addr, b.VIP, port, sctpPort, typ, false))
				return srv.recvSCTP(t, time.Second)
			}
			drops := func() uint64 { return e.dataplaneCounters()["drop_no_conn"] }
			drops0 := drops()
			var assocs []*sctpAssoc
			for _, step := range []struct {
				port  uint16
				typ   layers.SCTPChunkType
				state string // with --sloppy-sctp; "" for no connection
			}{
				{6100, layers.SCTPChunkTypeData, "ESTABLISHED"},
				{6101, layers.SCTPChunkTypeShutdown, "S-RECEIVED"},
				{6102, layers.SCTPChunkTypeAbort, ""},
			} {
				f := send(step.port, step.typ)
				what := fmt.Sprintf("%v opening association %d", step.typ, step.port)
				if !sloppy || step.state == "" {
					if f != nil {
						t.Fatalf("%s: forwarded to the real server, want it dropped", what)
					}
					continue
				}
				arrival(t, what, f, b.Client.Addr, b.VIP, step.port, sctpPort, step.typ, false)
				a := &sctpAssoc{client: netip.AddrPortFrom(b.Client.Addr, step.port)}
				a.set(step.state)
				assocs = append(assocs, a)
				e.checkSCTP(what, b.VIP, rs.Addr, assocs)
			}
			conns := e.sctpConns()
			if _, ok := conns[netip.AddrPortFrom(b.Client.Addr, 6102).String()]; ok {
				t.Fatalf("an ABORT made a connection: %v", conns)
			}
			wantConns, wantDrops := 2, uint64(1)
			if !sloppy {
				wantConns, wantDrops = 0, 3
			}
			if len(conns) != wantConns {
				t.Fatalf("%d SCTP connections %v, want %d", len(conns), conns, wantConns)
			}
			if d := drops() - drops0; d != wantDrops {
				t.Fatalf("drop_no_conn counted %d, want %d", d, wantDrops)
			}
			if sloppy {
				// The picked-up association goes on: more DATA, to the same real server.
				arrival(t, "DATA of the picked-up association", send(6100, layers.SCTPChunkTypeData), b.Client.Addr, b.VIP, 6100, sctpPort, layers.SCTPChunkTypeData, false)
			}
		})
	}
}

// TestFastPathSCTP: with --fastpath, an SCTP association through a DR director, IPv4 and
// IPv6: once ESTABLISHED (the client's COOKIE ECHO) it is installed, and 200 DATA packets
// reach the real server from the XDP program (xdp_fastpath_tx counts each), unchanged but
// for the MACs and the TTL, their CRC32c right; the sweep adds them to -L --stats; the
// client's SHUTDOWN goes to the workers, which take the association out of the fast path.
func TestFastPathSCTP(t *testing.T) {
	e := setup(t, testbed.L2, "--fastpath")
	e.fastPathPeers()
	b := e.bed
	rs := b.Reals[0]
	cli := openRaw(t, b.Client.NS, b.Client.Iface)
	srv := openRaw(t, rs.NS, rs.Iface)
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip, client, real := b.VIPFor(v6), b.Client.AddrFor(v6), rs.AddrFor(v6)
		svc := netip.AddrPortFrom(vip, sctpPort).String()
		e.adm("-A", "--sctp-service", svc, "-s", "rr")
		e.adm("-a", "--sctp-service", svc, "-r", real.String(), "-g")
		cport := uint16(6100)
		if v6 {
			cport++
		}
		toRS := func(typ layers.SCTPChunkType) {
			t.Helper()
			cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, client, vip, cport, sctpPort, typ, false))
			f := srv.recvSCTP(t, 2*time.Second)
			arrival(t, fmt.Sprintf("%v from the client at rs1", typ), f, client, vip, cport, sctpPort, typ, false)
			if got := net.HardwareAddr(f[0:6]).String(); got != rs.MAC.String() {
				t.Fatalf("%v reached rs1 for MAC %s, want its own %s", typ, got, rs.MAC)
			}
		}
		toClient := func(typ layers.SCTPChunkType) {
			t.Helper()
			srv.send(t, sctpFrame(t, rs.MAC, b.Client.MAC, vip, client, sctpPort, cport, typ, false))
			arrival(t, fmt.Sprintf("%v from rs1 at the client", typ), cli.recvSCTP(t, 2*time.Second), vip, client, sctpPort, cport, typ, false)
		}
		before := e.fastCounters()
		toRS(layers.SCTPChunkTypeInit)
		toClient(layers.SCTPChunkTypeInitAck)
		toRS(layers.SCTPChunkTypeCookieEcho)
		toClient(layers.SCTPChunkTypeCookieAck)
		e.waitFast("the association is in the fast path", func(c map[string]uint64) bool {
			return c["fastpath_entries"] == before["fastpath_entries"]+1
		})
		mid := e.fastCounters()
		// The workers' count so far: the client's INIT and COOKIE ECHO, and over IPv4 the
		// client kernel's ICMP protocol unreachables about the real server's packets
		// (this kernel has no SCTP), which xlvs forwards as the connection's.
		st0 := e.service(api.ProtoSCTP, vip, sctpPort).Stats
		const n = 200
		for range n {
			toRS(layers.SCTPChunkTypeData)
		}
		after := e.waitFast("the sweep counts the DATA", func(c map[string]uint64) bool {
			return c["fastpath_packets"]-mid["fastpath_packets"] >= n
		})
		if tx := after["xdp_fastpath_tx"] - mid["xdp_fastpath_tx"]; tx != n {
			t.Errorf("xdp_fastpath_tx moved by %d, want the %d DATA packets", tx, n)
		}
		if st := e.service(api.ProtoSCTP, vip, sctpPort).Stats; st.Conns != 1 || st.InPkts-st0.InPkts != n || st0.InPkts < 2 {
			t.Errorf("service stats %+v, %+v before the DATA: want 1 connection and the %d DATA packets in", st, st0, n)
		}
		// The SHUTDOWN is the workers' (it leaves ESTABLISHED): the entry goes.
		e.fastSCTPShutdown(func() { toRS(layers.SCTPChunkTypeShutdown) }, before, after, netip.AddrPortFrom(client, cport))
	})
	e.t = t
	e.checkDrops()
}

// TestFastPathSCTPNAT: SCTP associations through NAT and FULLNAT with the fast path,
// IPv4 and IPv6. The handshake goes through the workers; once the real server's COOKIE
// ACK establishes an association (IPVS's output table), the XDP program sends its DATA
// and SACK chunks both ways itself, ports rewritten and CRC32c updated: every packet
// arrives with the endpoints NAT (FULLNAT) gives it and a CRC32c the test's own
// computation finds valid, a corrupted DATA arrives as corrupt, and xdp_fastpath_tx and
// the service's InPkts and OutPkts move by exactly the packets sent. A SHUTDOWN goes
// through a worker and takes both directions out.
func TestFastPathSCTPNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm, "--fastpath")
	e.fastPathPeers()
	b := e.bed
	rs := b.Reals[0]
	for _, args := range [][]string{
		{"-4", "addr", "add", fullnatLIP4.String() + "/24", "dev", b.Int.Iface},
		{"-6", "addr", "add", fullnatLIP6.String() + "/64", "dev", b.Int.Iface, "nodad"},
	} {
		if out, err := b.Director.Run(e.ctx, "ip", args...); err != nil {
			t.Fatalf("add a local address on the director (ip %s): %v %s", strings.Join(args, " "), err, out)
		}
	}
	// The client's and the real server's kernels have no SCTP: they would answer every
	// packet with an ICMP error, which the director forwards as the association's and
	// counts. Dropped on their way out, the counts are the test's packets alone.
	for _, ns := range []*testbed.NS{b.Client.NS, rs.NS} {
		for _, rule := range [][]string{
			{"add", "table", "inet", "quiet"},
			{"add", "chain", "inet", "quiet", "out", "{", "type", "filter", "hook", "output", "priority", "0", ";", "}"},
			{"add", "rule", "inet", "quiet", "out", "icmp", "type", "destination-unreachable", "drop"},
			{"add", "rule", "inet", "quiet", "out", "icmpv6", "type", "{", "destination-unreachable", ",", "parameter-problem", "}", "drop"},
		} {
			if out, err := ns.Run(e.ctx, "nft", rule...); err != nil {
				t.Fatalf("nft %s in %s: %v %s", strings.Join(rule, " "), ns.Name(), err, out)
			}
		}
	}
	cli := openRaw(t, b.Client.NS, b.Client.Iface)
	srv := openRaw(t, rs.NS, rs.Iface)
	for i, c := range []struct {
		name     string
		v6, full bool
	}{{"nat/ipv4", false, false}, {"nat/ipv6", true, false}, {"fullnat/ipv4", false, true}, {"fullnat/ipv6", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			vip, caddr, raddr := b.VIPFor(c.v6), b.Client.AddrFor(c.v6), rs.AddrFor(c.v6)
			vport, cport := uint16(sctpPort+1+i), uint16(7100+i)
			svc := netip.AddrPortFrom(vip, vport).String()
			e.adm("-A", "--sctp-service", svc, "-s", "rr")
			// What the real server sees as its peer: the client (NAT) or a local address.
			peer, pport := caddr, cport
			if c.full {
				peer, pport = fullnatLIP4, 0 // learnt from the INIT
				if c.v6 {
					peer = fullnatLIP6
				}
				e.adm("-a", "--sctp-service", svc, "-r", netip.AddrPortFrom(raddr, sctpRPort).String(), "--fullnat")
				e.adm("-P", "--sctp-service", svc, "-z", peer.String())
			} else {
				e.adm("-a", "--sctp-service", svc, "-r", netip.AddrPortFrom(raddr, sctpRPort).String(), "-m")
			}
			fromClient := func(typ layers.SCTPChunkType, corrupt bool) {
				t.Helper()
				cli.send(t, sctpFrame(t, b.Client.MAC, b.Ext.MAC, caddr, vip, cport, vport, typ, corrupt))
				f := srv.recvSCTP(t, 2*time.Second)
				if f != nil && pport == 0 {
					seg, _, _ := sctpSeg(t, f)
					pport = binary.BigEndian.Uint16(seg)
				}
				arrival(t, fmt.Sprintf("%v from the client at rs1", typ), f, peer, raddr, pport, sctpRPort, typ, corrupt)
			}
			fromServer := func(typ layers.SCTPChunkType) {
				t.Helper()
				srv.send(t, sctpFrame(t, rs.MAC, b.Int.MAC, raddr, peer, sctpRPort, pport, typ, false))
				arrival(t, fmt.Sprintf("%v from rs1 at the client", typ), cli.recvSCTP(t, 2*time.Second), vip, caddr, vport, cport, typ, false)
			}
			before := e.fastCounters()
			fromClient(layers.SCTPChunkTypeInit, false)
			fromServer(layers.SCTPChunkTypeInitAck)
			fromClient(layers.SCTPChunkTypeCookieEcho, false)
			fromServer(layers.SCTPChunkTypeCookieAck)
			e.waitFast("both directions are in the fast path", func(c map[string]uint64) bool {
				return c["fastpath_entries"] == before["fastpath_entries"]+2
			})
			mid := e.fastCounters()
			st0 := e.service(api.ProtoSCTP, vip, int(vport)).Stats
			if st0.InPkts != 2 || st0.OutPkts != 2 {
				t.Fatalf("service stats after the handshake %+v, want 2 packets each way", st0)
			}
			const n = 100
			for range n {
				fromClient(layers.SCTPChunkTypeData, false)
				fromServer(layers.SCTPChunkTypeSack)
			}
			fromClient(layers.SCTPChunkTypeData, true)
			after := e.waitFast("the sweep counts the DATA and SACKs", func(c map[string]uint64) bool {
				return c["fastpath_packets"]-mid["fastpath_packets"] >= 2*n+1
			})
			if tx := after["xdp_fastpath_tx"] - mid["xdp_fastpath_tx"]; tx != 2*n+1 {
				t.Errorf("xdp_fastpath_tx moved by %d, want the %d DATA and SACK packets", tx, 2*n+1)
			}
			if st := e.service(api.ProtoSCTP, vip, int(vport)).Stats; st.Conns != 1 || st.InPkts-st0.InPkts != n+1 || st.OutPkts-st0.OutPkts != n {
				t.Errorf("service stats %+v, %+v before: want 1 connection, %d packets in and %d out", st, st0, n+1, n)
			}
			// The SHUTDOWN is the workers' (it leaves ESTABLISHED): both entries go.
			e.fastSCTPShutdown(func() { fromClient(layers.SCTPChunkTypeShutdown, false) }, before, after, netip.AddrPortFrom(caddr, cport))
		})
	}
	e.t = t
	e.checkDrops()
}

// fastSCTPShutdown sends the client's SHUTDOWN of a fast-path association (send) and
// checks that a worker took it: the fast path's entries back to before's count, the
// program's xdp_fastpath_tx still after's, and -L -c showing client's association in
// S-RECEIVED.
func (e *env) fastSCTPShutdown(send func(), before, after map[string]uint64, client netip.AddrPort) {
	e.t.Helper()
	send()
	e.waitFast("the SHUTDOWN takes it out", func(c map[string]uint64) bool {
		return c["fastpath_entries"] == before["fastpath_entries"]
	})
	if c := e.fastCounters(); c["xdp_fastpath_tx"] != after["xdp_fastpath_tx"] {
		e.t.Errorf("the program sent the SHUTDOWN (xdp_fastpath_tx %d → %d)", after["xdp_fastpath_tx"], c["xdp_fastpath_tx"])
	}
	conns := e.sctpConns()
	if a, ok := conns[client.String()]; !ok || a.state != "S-RECEIVED" {
		e.t.Errorf("-L -c: %+v, want the association in S-RECEIVED", conns)
	}
}
