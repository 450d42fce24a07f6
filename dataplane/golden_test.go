package dataplane

// Golden frames, one table for every forwarding method (katran's packet fixtures): each
// row is a description, the frames that set the connection up, the input frame, and the
// expected verdict — the frames each port transmits, compared byte for byte, or one
// drop reason. Input and expected frames are both written here as header fields and
// serialized by gopacket (lengths and checksums by gopacket, never by the code under
// test); a mismatch prints the layers that differ. Adding a case is adding a row.
//
// The expected rewrites follow IPVS's net/netfilter/ipvs/ip_vs_xmit.c (read in a
// v6.10+ tree through the code search; torvalds/linux): ip_vs_nat_xmit and the reply
// path rewrite the destination / source, and __ip_vs_get_out_rt's decrement_ttl takes
// one off the request's TTL (hop limit), ip_forward the reply's; ip_vs_tunnel_xmit and
// ip_vs_prepare_tunneled_skb put an IPIP / ip6ip6 header from the route's source
// address to the real server in front of the packet, copying DF, the DS field and the
// TTL / hop limit of the inner header; ip_vs_dr_xmit changes only the link layer.
// FULLNAT (not in the mainline kernel) follows the Alibaba / DPVS model fullnat.go
// describes: source to a local address and port, destination to the real server, TTL
// decremented; replies the reverse.
//
// DR and TUN take one off the TTL too: since 8d8e20e2d7bb ("ipvs: Decrement ttl",
// Linux 4.10) __ip_vs_get_out_rt calls decrement_ttl for every method whose real server
// is not local (ip_vs_dr_xmit and ip_vs_tunnel_xmit included; the tunnel's outer header
// then copies the decremented TTL), and a client's packet with TTL (hop limit) <= 1 is
// answered with ICMP time exceeded (icmp_send / icmpv6_send, from the address it was
// sent to: the input route is local) and dropped. Read in a SUSE livepatch copy of a
// 6.x ip_vs_xmit.c through the code search (the index names no mainline commit for it);
// the logic is mainline's since 4.10.
//
// Two fields of an expected frame are left to the code, because the model leaves them
// free, and are read back before the comparison: a FULLNAT local port (written as
// anyLport; the runner takes it from the connection's entry and checks it is ≥ lportMin
// and in the client's connection-table shard), and the identification of an IPIP outer
// header (the kernel's ip_select_ident; the runner takes it from the frame). The
// checksums covering them are still gopacket's. Ethernet padding (after the IP packet's
// length) is not compared: NAT and FULLNAT transmit the packet's length, DR and TUN keep
// the received frame's padding, and the NIC pads short frames either way.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// Port indices of the layouts (rig.ports).
const (
	pExt = 0 // two-armed: clients' side
	pInt = 1 // two-armed: real servers' side
	pEth = 0 // one-armed
)

// anyLport in an expected (or later input) frame of a FULLNAT row stands for the local
// port of the row's connection.
const anyLport = 0

// The golden flow: client port 40000 to service port 80.
const (
	gCPort = 40000
	gVPort = 80
)

type gkind uint8

const (
	gSYN gkind = iota
	gSYNACK
	gACK
	gUDP
)

// seg is a golden packet: the given MACs, endpoints, kind and TTL, IPv4 identification
// 0x1234 (IPv4 only) and a payload.
func seg(smac, dmac [6]byte, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, k gkind, ttl uint8) pkt {
	p := pkt{srcMAC: smac, dstMAC: dmac, src: src, dst: dst, sport: sport, dport: dport, ttl: ttl, payload: []byte("golden payload")}
	if src.Is4() {
		p.id = 0x1234
	}
	switch k {
	case gSYN:
		p.syn = true
	case gSYNACK:
		p.syn, p.ack = true, true
	case gACK:
		p.ack = true
	case gUDP:
		p.udp = true
	}
	return p
}

// encap puts p in an IPIP / ip6ip6 header from src to dst with p's TTL, p's MACs on
// the outer frame.
func encap(p pkt, src, dst netip.Addr) pkt {
	p.tun = &tunHdr{src: src, dst: dst, ttl: p.ttl}
	return p
}

// frameAt is a frame on one port of a rig.
type frameAt struct {
	port int
	p    pkt
}

func at(port int, p pkt) frameAt { return frameAt{port, p} }

// verdict is what a row expects: frames sent, or exactly one drop of one reason, and
// with icmp an ICMP error of that type back to the input's source (from the address it
// was sent to, quoting the input's IP packet from its start).
type verdict struct {
	out  []frameAt
	drop *Drop
	icmp uint8
}

func send(fs ...frameAt) verdict { return verdict{out: fs} }
func drop(d Drop) verdict        { return verdict{drop: &d} }

// timeExceeded: dropped as DropTTLExpired and answered with ICMP time exceeded (ICMPv4
// type 11, ICMPv6 type 3).
func timeExceeded(v6 bool) verdict {
	d := DropTTLExpired
	if v6 {
		return verdict{drop: &d, icmp: 3}
	}
	return verdict{drop: &d, icmp: 11}
}

// Layouts the rows run on.
func natRig(t testing.TB) *rig          { return newDualRig(t, conntrack.MethodNAT, fnOpts{}).rig }
func fnatRig(t testing.TB) *rig         { return newFNRig(t, fnOpts{}).rig }
func fnatNoLA(t testing.TB) *rig        { return newFNRig(t, fnOpts{noLaddrs: true}).rig }
func drRig(t testing.TB) *rig           { return newL2Rig(t, conntrack.MethodDR) }
func tunRig(t testing.TB) *rig          { return newL2Rig(t, conntrack.MethodTUN) }
func withSetup(fs ...frameAt) []frameAt { return fs }

// Client-side frames of the golden flow (two-armed and one-armed layouts).
var (
	cSYN4  = seg(macClient, macDirExt, client, gCPort, vip, gVPort, gSYN, 64)
	cUDP4  = seg(macClient, macDirExt, client, gCPort, vip, gVPort, gUDP, 64)
	cSYN6  = seg(macClient, macDirExt, client6, gCPort, vip6, gVPort, gSYN, 64)
	cUDP6  = seg(macClient, macDirExt, client6, gCPort, vip6, gVPort, gUDP, 64)
	lSYN4  = seg(macClient, macDir, l2Client, gCPort, l2VIP, gVPort, gSYN, 64)
	lUDP4  = seg(macClient, macDir, l2Client, gCPort, l2VIP, gVPort, gUDP, 64)
	lSYN6  = seg(macClient, macDir, l2Client6, gCPort, l2VIP6, gVPort, gSYN, 64)
	lUDP6  = seg(macClient, macDir, l2Client6, gCPort, l2VIP6, gVPort, gUDP, 64)
	lACK4  = seg(macClient, macDir, l2Client, gCPort, l2VIP, gVPort, gACK, 64)
	lACK6  = seg(macClient, macDir, l2Client6, gCPort, l2VIP6, gVPort, gACK, 64)
	cACK4  = seg(macClient, macDirExt, client, gCPort, vip, gVPort, gACK, 64)
	cACK6  = seg(macClient, macDirExt, client6, gCPort, vip6, gVPort, gACK, 64)
	setNAT = withSetup(at(pExt, cSYN4))
)

var golden = []struct {
	name  string
	rig   func(testing.TB) *rig
	setup []frameAt // sent first, their output not compared
	in    frameAt
	want  verdict
}{
	// NAT: the request's destination becomes the real server, the reply's source VIP:port; TTL − 1 both ways.
	{"NAT/v4/TCP/request", natRig, nil, at(pExt, cSYN4), send(at(pInt, seg(macDirInt, macRS1, client, gCPort, rs1, 8080, gSYN, 63)))},
	{"NAT/v4/UDP/request", natRig, nil, at(pExt, cUDP4), send(at(pInt, seg(macDirInt, macRS1, client, gCPort, rs1, 8080, gUDP, 63)))},
	{"NAT/v6/TCP/request", natRig, nil, at(pExt, cSYN6), send(at(pInt, seg(macDirInt, macRS1, client6, gCPort, rs16, 8080, gSYN, 63)))},
	{"NAT/v6/UDP/request", natRig, nil, at(pExt, cUDP6), send(at(pInt, seg(macDirInt, macRS1, client6, gCPort, rs16, 8080, gUDP, 63)))},
	{"NAT/v4/TCP/established", natRig, withSetup(at(pExt, cSYN4)), at(pExt, cACK4), send(at(pInt, seg(macDirInt, macRS1, client, gCPort, rs1, 8080, gACK, 63)))},
	{"NAT/v6/TCP/established", natRig, withSetup(at(pExt, cSYN6)), at(pExt, cACK6), send(at(pInt, seg(macDirInt, macRS1, client6, gCPort, rs16, 8080, gACK, 63)))},
	{"NAT/v4/TCP/reply", natRig, withSetup(at(pExt, cSYN4)), at(pInt, seg(macRS1, macDirInt, rs1, 8080, client, gCPort, gSYNACK, 64)), send(at(pExt, seg(macDirExt, macClient, vip, gVPort, client, gCPort, gSYNACK, 63)))},
	{"NAT/v4/UDP/reply", natRig, withSetup(at(pExt, cUDP4)), at(pInt, seg(macRS1, macDirInt, rs1, 8080, client, gCPort, gUDP, 30)), send(at(pExt, seg(macDirExt, macClient, vip, gVPort, client, gCPort, gUDP, 29)))},
	{"NAT/v6/TCP/reply", natRig, withSetup(at(pExt, cSYN6)), at(pInt, seg(macRS1, macDirInt, rs16, 8080, client6, gCPort, gSYNACK, 64)), send(at(pExt, seg(macDirExt, macClient, vip6, gVPort, client6, gCPort, gSYNACK, 63)))},
	{"NAT/v6/UDP/reply", natRig, withSetup(at(pExt, cUDP6)), at(pInt, seg(macRS1, macDirInt, rs16, 8080, client6, gCPort, gUDP, 64)), send(at(pExt, seg(macDirExt, macClient, vip6, gVPort, client6, gCPort, gUDP, 63)))},

	// FULLNAT: the request leaves from a local address (round robin from the first), the reply from VIP:port.
	// A TCP SYN, and the client's packet that finds SYN_RECV (the handshake's ACK), carry
	// the client's address and port in the TOA option (DPVS's tcp_in_add_toa).
	{"FULLNAT/v4/TCP/request", fnatRig, nil, at(pExt, cSYN4), send(at(pInt, withTOA(seg(macDirInt, macRS1, lip4a, anyLport, rs1, 8080, gSYN, 63), client, gCPort)))},
	{"FULLNAT/v4/UDP/request", fnatRig, nil, at(pExt, cUDP4), send(at(pInt, seg(macDirInt, macRS1, lip4a, anyLport, rs1, 8080, gUDP, 63)))},
	{"FULLNAT/v6/TCP/request", fnatRig, nil, at(pExt, cSYN6), send(at(pInt, withTOA(seg(macDirInt, macRS1, lip6, anyLport, rs16, 8080, gSYN, 63), client6, gCPort)))},
	{"FULLNAT/v6/UDP/request", fnatRig, nil, at(pExt, cUDP6), send(at(pInt, seg(macDirInt, macRS1, lip6, anyLport, rs16, 8080, gUDP, 63)))},
	{"FULLNAT/v4/TCP/established", fnatRig, withSetup(at(pExt, cSYN4)), at(pExt, cACK4), send(at(pInt, withTOA(seg(macDirInt, macRS1, lip4a, anyLport, rs1, 8080, gACK, 63), client, gCPort)))},
	{"FULLNAT/v6/TCP/established", fnatRig, withSetup(at(pExt, cSYN6)), at(pExt, cACK6), send(at(pInt, withTOA(seg(macDirInt, macRS1, lip6, anyLport, rs16, 8080, gACK, 63), client6, gCPort)))},
	{"FULLNAT/v4/TCP/after the handshake", fnatRig, withSetup(at(pExt, cSYN4), at(pExt, cACK4)), at(pExt, cACK4), send(at(pInt, seg(macDirInt, macRS1, lip4a, anyLport, rs1, 8080, gACK, 63)))},
	{"FULLNAT/v6/TCP/after the handshake", fnatRig, withSetup(at(pExt, cSYN6), at(pExt, cACK6)), at(pExt, cACK6), send(at(pInt, seg(macDirInt, macRS1, lip6, anyLport, rs16, 8080, gACK, 63)))},
	{"FULLNAT/v4/TCP/reply", fnatRig, withSetup(at(pExt, cSYN4)), at(pInt, seg(macRS1, macDirInt, rs1, 8080, lip4a, anyLport, gSYNACK, 64)), send(at(pExt, seg(macDirExt, macClient, vip, gVPort, client, gCPort, gSYNACK, 63)))},
	{"FULLNAT/v4/UDP/reply", fnatRig, withSetup(at(pExt, cUDP4)), at(pInt, seg(macRS1, macDirInt, rs1, 8080, lip4a, anyLport, gUDP, 64)), send(at(pExt, seg(macDirExt, macClient, vip, gVPort, client, gCPort, gUDP, 63)))},
	{"FULLNAT/v6/TCP/reply", fnatRig, withSetup(at(pExt, cSYN6)), at(pInt, seg(macRS1, macDirInt, rs16, 8080, lip6, anyLport, gSYNACK, 64)), send(at(pExt, seg(macDirExt, macClient, vip6, gVPort, client6, gCPort, gSYNACK, 63)))},
	{"FULLNAT/v6/UDP/reply", fnatRig, withSetup(at(pExt, cUDP6)), at(pInt, seg(macRS1, macDirInt, rs16, 8080, lip6, anyLport, gUDP, 64)), send(at(pExt, seg(macDirExt, macClient, vip6, gVPort, client6, gCPort, gUDP, 63)))},

	// DR: the MACs change and the TTL drops by one (decrement_ttl); nothing else.
	{"DR/v4/TCP/request", drRig, nil, at(pEth, lSYN4), send(at(pEth, seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gSYN, 63)))},
	{"DR/v4/UDP/request", drRig, nil, at(pEth, lUDP4), send(at(pEth, seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gUDP, 63)))},
	{"DR/v6/TCP/request", drRig, nil, at(pEth, lSYN6), send(at(pEth, seg(macDir, macRS1, l2Client6, gCPort, l2VIP6, gVPort, gSYN, 63)))},
	{"DR/v6/UDP/request", drRig, nil, at(pEth, lUDP6), send(at(pEth, seg(macDir, macRS1, l2Client6, gCPort, l2VIP6, gVPort, gUDP, 63)))},
	{"DR/v4/TCP/established", drRig, withSetup(at(pEth, lSYN4)), at(pEth, lACK4), send(at(pEth, seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gACK, 63)))},
	{"DR/v6/TCP/established", drRig, withSetup(at(pEth, lSYN6)), at(pEth, lACK6), send(at(pEth, seg(macDir, macRS1, l2Client6, gCPort, l2VIP6, gVPort, gACK, 63)))},
	{"DR/v4/UDP/established", drRig, withSetup(at(pEth, lUDP4)), at(pEth, lUDP4), send(at(pEth, seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gUDP, 63)))},

	// TUN: the packet, its TTL decremented, inside an IPIP / ip6ip6 header (the same TTL) from the director's address to the real server.
	{"TUN/v4/TCP/request", tunRig, nil, at(pEth, lSYN4), send(at(pEth, encap(seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gSYN, 63), l2Dir, l2RS1)))},
	{"TUN/v4/UDP/request", tunRig, nil, at(pEth, lUDP4), send(at(pEth, encap(seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gUDP, 63), l2Dir, l2RS1)))},
	{"TUN/v6/TCP/request", tunRig, nil, at(pEth, lSYN6), send(at(pEth, encap(seg(macDir, macRS1, l2Client6, gCPort, l2VIP6, gVPort, gSYN, 63), l2Dir6, l2RS16)))},
	{"TUN/v6/UDP/request", tunRig, nil, at(pEth, lUDP6), send(at(pEth, encap(seg(macDir, macRS1, l2Client6, gCPort, l2VIP6, gVPort, gUDP, 63), l2Dir6, l2RS16)))},
	{"TUN/v4/TCP/established", tunRig, withSetup(at(pEth, lSYN4)), at(pEth, lACK4), send(at(pEth, encap(seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gACK, 63), l2Dir, l2RS1)))},
	{"TUN/v6/TCP/established", tunRig, withSetup(at(pEth, lSYN6)), at(pEth, lACK6), send(at(pEth, encap(seg(macDir, macRS1, l2Client6, gCPort, l2VIP6, gVPort, gACK, 63), l2Dir6, l2RS16)))},
	{"TUN/v4/TCP/ttl 9 leaves 8", tunRig, nil, at(pEth, seg(macClient, macDir, l2Client, gCPort, l2VIP, gVPort, gSYN, 9)), send(at(pEth, encap(seg(macDir, macRS1, l2Client, gCPort, l2VIP, gVPort, gSYN, 8), l2Dir, l2RS1)))},

	// Drops: no frame leaves, exactly one counter moves.
	{"drop/NAT/v4/TCP ACK without connection", natRig, nil, at(pExt, cACK4), drop(DropNoConn)},
	{"drop/NAT/v6/TCP ACK without connection", natRig, nil, at(pExt, cACK6), drop(DropNoConn)},
	{"drop/TUN/v6/TCP ACK without connection", tunRig, nil, at(pEth, lACK6), drop(DropNoConn)},
	{"drop/NAT/v4/reply without connection", natRig, nil, at(pInt, seg(macRS1, macDirInt, rs1, 8080, client, gCPort, gACK, 64)), drop(DropNoReplyConn)},
	{"drop/NAT/v4/no service on the port", natRig, nil, at(pExt, seg(macClient, macDirExt, client, gCPort, vip, 81, gSYN, 64)), drop(DropNoService)},
	{"drop/DR/v4/no service on the port", drRig, nil, at(pEth, seg(macClient, macDir, l2Client, gCPort, l2VIP, 81, gSYN, 64)), drop(DropNoService)},
	{"drop/NAT/v4/TTL 1", natRig, nil, at(pExt, seg(macClient, macDirExt, client, gCPort, vip, gVPort, gUDP, 1)), timeExceeded(false)},
	{"drop/NAT/v6/hop limit 1", natRig, nil, at(pExt, seg(macClient, macDirExt, client6, gCPort, vip6, gVPort, gUDP, 1)), timeExceeded(true)},
	{"drop/DR/v4/TTL 1", drRig, nil, at(pEth, seg(macClient, macDir, l2Client, gCPort, l2VIP, gVPort, gSYN, 1)), timeExceeded(false)},
	{"drop/DR/v6/established, hop limit 1", drRig, withSetup(at(pEth, lSYN6)), at(pEth, seg(macClient, macDir, l2Client6, gCPort, l2VIP6, gVPort, gACK, 1)), timeExceeded(true)},
	{"drop/TUN/v4/TTL 1", tunRig, nil, at(pEth, seg(macClient, macDir, l2Client, gCPort, l2VIP, gVPort, gUDP, 1)), timeExceeded(false)},
	{"drop/TUN/v6/hop limit 1", tunRig, nil, at(pEth, seg(macClient, macDir, l2Client6, gCPort, l2VIP6, gVPort, gSYN, 1)), timeExceeded(true)},
	{"drop/NAT/v4/reply TTL 1", natRig, setNAT, at(pInt, seg(macRS1, macDirInt, rs1, 8080, client, gCPort, gSYNACK, 1)), drop(DropTTLExpired)},
	{"drop/FULLNAT/v4/no local address", fnatNoLA, nil, at(pExt, cSYN4), drop(DropNoLaddr)},
	{"drop/FULLNAT/v6/no local address", fnatNoLA, nil, at(pExt, cUDP6), drop(DropNoLaddr)},
	{"drop/FULLNAT/v4/reply to an unknown local port", fnatRig, nil, at(pInt, seg(macRS1, macDirInt, rs1, 8080, lip4a, 5555, gUDP, 64)), drop(DropNoReplyConn)},
}

// TestGolden runs the golden table.
func TestGolden(t *testing.T) {
	for _, row := range golden {
		t.Run(row.name, func(t *testing.T) {
			r := row.rig(t)
			for _, s := range row.setup {
				r.ports[s.port].Inject(build(t, goldenFill(t, r, s.p)))
				r.drain()
			}
			r.sent()
			if d := r.drops(); len(d) != 0 {
				t.Fatalf("setup dropped %v", d)
			}
			inFrame := build(t, goldenFill(t, r, row.in.p))
			r.ports[row.in.port].Inject(inFrame)
			r.drain()
			got := r.sent()
			if row.want.icmp != 0 {
				checkICMPAnswer(t, r, got, row.in, inFrame, row.want.icmp)
				got[row.in.port] = nil
			}
			want := make([][]pkt, len(r.ports))
			for _, f := range row.want.out {
				want[f.port] = append(want[f.port], goldenFill(t, r, f.p))
			}
			for port := range r.ports {
				if len(got[port]) != len(want[port]) {
					var sent strings.Builder
					for _, f := range got[port] {
						sent.WriteString(frameString(f))
					}
					t.Fatalf("%s sent %d frames, want %d (drops %v)\n%s", r.names[port], len(got[port]), len(want[port]), r.drops(), sent.String())
				}
				for i, w := range want[port] {
					if w.tun != nil && w.tun.src.Is4() && len(got[port][i]) >= 20 {
						w.tun.id = binary.BigEndian.Uint16(got[port][i][18:20]) // the outer identification: free
					}
					if d := frameDiff(unpadded(got[port][i]), unpadded(build(t, w))); d != "" {
						t.Errorf("%s frame %d: %s", r.names[port], i, d)
					}
				}
			}
			d := r.drops()
			switch {
			case row.want.drop == nil && len(d) != 0:
				t.Errorf("drops %v, want none", d)
			case row.want.drop != nil && (len(d) != 1 || d[row.want.drop.String()] != 1):
				t.Errorf("drops %v, want one %s", d, row.want.drop)
			}
		})
	}
}

// checkICMPAnswer checks that got holds exactly one frame, on in's port: an ICMP error
// of type typ (code 0: TTL / hop limit exceeded in transit) from in's destination to
// in's source, back to the sender's MAC, whose quote starts with in's IP packet. gopacket
// decodes it and the checksums are checked here (IPv4 header, ICMP, ICMPv6 with its
// pseudo-header), not taken from the code.
func checkICMPAnswer(t *testing.T, r *rig, got [][][]byte, in frameAt, inFrame []byte, typ uint8) {
	t.Helper()
	for port, fs := range got {
		if want := map[bool]int{true: 1, false: 0}[port == in.port]; len(fs) != want {
			t.Fatalf("%s sent %d frames, want %d (drops %v)", r.names[port], len(fs), want, r.drops())
		}
	}
	f := got[in.port][0]
	pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil || macOf(eth.DstMAC) != in.p.srcMAC {
		t.Fatalf("answer not back to the sender's MAC: %s", frameString(f))
	}
	var quote []byte
	if in.p.src.Is4() {
		ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		ic, _ := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ip == nil || ic == nil || ip.SrcIP.String() != in.p.dst.String() || ip.DstIP.String() != in.p.src.String() ||
			ic.TypeCode.Type() != typ || ic.TypeCode.Code() != 0 || !packet.IPv4HeaderChecksumValid(packet.IPv4(f[14:])) ||
			onesSum(f[14+int(ip.IHL)*4:14+int(ip.Length)]) != 0xFFFF {
			t.Fatalf("not ICMP type %d from %v to %v with valid checksums: %s", typ, in.p.dst, in.p.src, frameString(f))
		}
		quote = ic.Payload // gopacket keeps the unused word in the ICMPv4 layer
	} else {
		ip, _ := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		ic, _ := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if ip == nil || ic == nil || ip.SrcIP.String() != in.p.dst.String() || ip.DstIP.String() != in.p.src.String() ||
			ic.TypeCode.Type() != typ || ic.TypeCode.Code() != 0 {
			t.Fatalf("not ICMPv6 type %d from %v to %v: %s", typ, in.p.dst, in.p.src, frameString(f))
		}
		body := f[14+40 : 14+40+int(ip.Length)]
		pseudo := append(append(append([]byte{}, ip.SrcIP...), ip.DstIP...), 0, 0, byte(len(body)>>8), byte(len(body)), 0, 0, 0, 58)
		if onesSum(append(pseudo, body...)) != 0xFFFF {
			t.Fatalf("ICMPv6 checksum wrong: %s", frameString(f))
		}
		quote = ic.Payload[4:] // after the unused word
	}
	orig := unpadded(inFrame)[14:]
	if n := min(len(quote), len(orig)); n < 28 || !bytes.Equal(quote[:n], orig[:n]) {
		t.Fatalf("the answer quotes % x, want the input's IP packet % x", quote, orig)
	}
}

// onesSum is the 16-bit one's complement sum of b (RFC 1071): 0xFFFF over data that
// includes its correct checksum.
func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return uint16(s)
}

// goldenFill returns p with anyLport replaced by the local port of the golden flow's
// connection (client:40000 → VIP:80 of p's family and protocol) after checking that
// port is one the allocator may hand out: ≥ lportMin and in the client's shard.
func goldenFill(t *testing.T, r *rig, p pkt) pkt {
	t.Helper()
	if p.sport != anyLport && p.dport != anyLport {
		return p
	}
	k := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: gCPort, DstPort: gVPort, Proto: 6}
	if p.src.Is6() {
		k.Src, k.Dst = a16(client6), a16(vip6)
	}
	if p.udp {
		k.Proto = 17
	}
	var e conntrack.Entry
	if !r.dp.ct.Get(conntrack.DirOrig, &k, r.dp.now(), &e) {
		t.Fatalf("no connection %+v to take the local port from", k)
	}
	lp := e.Reply.DstPort
	if ct := r.dp.ct; lp < lportMin || ct.ShardOf(e.Reply.Dst, lp) != ct.ShardOf(k.Src, k.SrcPort) {
		t.Fatalf("local port %d: below %d or outside the client's shard", lp, lportMin)
	}
	if p.sport == anyLport {
		p.sport = lp
	}
	if p.dport == anyLport {
		p.dport = lp
	}
	return p
}
