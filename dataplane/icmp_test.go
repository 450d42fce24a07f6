package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/sched"
)

// ipOnly returns the IP packet of a frame built by build (no Ethernet header).
func ipOnly(frame []byte) []byte { return frame[packet.EthernetHeaderLen:] }

// icmpErrFrame builds an Ethernet frame with an ICMP (IPv4) or ICMPv6 error from src to
// dst quoting quote (an IP packet, cut to quoteLen bytes when quoteLen > 0).
func icmpErrFrame(t testing.TB, srcMAC, dstMAC [6]byte, src, dst netip.Addr, typ, code uint8, quote []byte, quoteLen int) []byte {
	t.Helper()
	if quoteLen > 0 && quoteLen < len(quote) {
		quote = quote[:quoteLen]
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(srcMAC[:]), DstMAC: net.HardwareAddr(dstMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	var err error
	if src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: layers.IPProtocolICMPv6}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		err = gopacket.SerializeLayers(buf, opts, eth, ip, ic, gopacket.Payload(append(make([]byte, 4), quote...)))
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: layers.IPProtocolICMPv4}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
		err = gopacket.SerializeLayers(buf, opts, eth, ip, ic, gopacket.Payload(quote))
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkICMP parses a transmitted ICMP error, verifies every checksum it can (outer and
// quoted IPv4 headers, ICMP/ICMPv6) and returns the outer Info and the quote.
func checkICMP(t testing.TB, frame []byte) (packet.Info, packet.ICMPError) {
	t.Helper()
	var info packet.Info
	if r := packet.Parse(frame, &info); r != packet.ResultUnsupportedProto {
		t.Fatalf("transmitted frame parses as %v", r)
	}
	var e packet.ICMPError
	if !packet.ParseICMPError(frame, &info, &e) {
		t.Fatal("transmitted frame is no ICMP error")
	}
	if !packet.ICMPChecksumValid(frame, &info) {
		t.Fatal("bad ICMP checksum")
	}
	if info.Family == 4 && (!packet.IPv4HeaderChecksumValid(packet.IPv4(frame[info.L3Off:])) || !packet.IPv4HeaderChecksumValid(packet.IPv4(frame[e.InnerL3Off:]))) {
		t.Fatal("bad IPv4 header checksum (outer or quoted)")
	}
	if p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default); p.ErrorLayer() != nil {
		t.Fatalf("gopacket: %v", p.ErrorLayer().Error())
	}
	return info, e
}

func ap(a [16]byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
}

// TestICMPNAT: errors about a NAT connection, from either side, reach the other party
// translated, with every checksum right and the TTL decremented; the connection's TCP
// state does not move.
func TestICMPNAT(t *testing.T) {
	for _, tc := range []struct {
		name    string
		udp     bool
		typ     uint8
		code    uint8
		quote   int
		fromRS  bool
		viaHost netip.Addr // the error's sender; zero: the client or rs1 itself
	}{
		{"udp port unreachable from the real server", true, 3, 3, 0, true, netip.Addr{}},
		{"tcp time exceeded from a router before the real server", false, 11, 0, 28, true, netip.MustParseAddr("198.18.2.1")},
		{"udp port unreachable from the client", true, 3, 3, 0, false, netip.Addr{}},
		{"tcp fragmentation needed from a router before the client", false, 3, 4, 0, false, netip.MustParseAddr("198.18.1.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "rr", 1, 1)
			r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: tc.udp, syn: true, payload: []byte("hello")}))
			r.w.poll()
			if len(r.int.Sent()) != 1 {
				t.Fatalf("request not forwarded: %v", r.drops())
			}
			key := conntrack.Key{Src: a16(client), Dst: a16(vip), SrcPort: 40000, DstPort: 80, Proto: 6}
			if tc.udp {
				key.Proto = 17
			}
			var before conntrack.Entry
			if !r.dp.ct.Get(conntrack.DirOrig, &key, r.dp.now(), &before) {
				t.Fatal("no entry")
			}
			var frame []byte
			if tc.fromRS {
				// Quoting what the director sent to rs1: client:40000 → rs1:8080.
				q := ipOnly(build(t, pkt{src: client, dst: rs1, sport: 40000, dport: 8080, udp: tc.udp, syn: true, ttl: 63, payload: []byte("hello")}))
				from := rs1
				if tc.viaHost.IsValid() {
					from = tc.viaHost
				}
				frame = icmpErrFrame(t, macRS1, macDirInt, from, client, tc.typ, tc.code, q, tc.quote)
				r.int.Inject(frame)
			} else {
				// Quoting a reply the director sent: VIP:80 → client:40000.
				q := ipOnly(build(t, pkt{src: vip, dst: client, sport: 80, dport: 40000, udp: tc.udp, syn: true, ack: true}))
				from := client
				if tc.viaHost.IsValid() {
					from = tc.viaHost
				}
				frame = icmpErrFrame(t, macClient, macDirExt, from, vip, tc.typ, tc.code, q, tc.quote)
				r.ext.Inject(frame)
			}
			r.w.poll()
			var out [][]byte
			var wantMAC [6]byte
			if tc.fromRS {
				out, wantMAC = r.ext.Sent(), macClient
			} else {
				out, wantMAC = r.int.Sent(), macRS1
			}
			if len(out) != 1 {
				t.Fatalf("sent %d frames, want 1 (drops %v)", len(out), r.drops())
			}
			info, e := checkICMP(t, out[0])
			if macOf(out[0][0:6]) != wantMAC {
				t.Fatalf("dst MAC %x", out[0][0:6])
			}
			if ttl := out[0][info.L3Off+8]; ttl != 63 {
				t.Fatalf("TTL %d, want 63", ttl)
			}
			if e.Type != tc.typ || e.Code != tc.code {
				t.Fatalf("type/code %d/%d", e.Type, e.Code)
			}
			if tc.fromRS {
				if ap(info.Src, 0) != netip.AddrPortFrom(vip, 0) || ap(info.Dst, 0) != netip.AddrPortFrom(client, 0) {
					t.Fatalf("outer %v → %v, want %v → %v", ap(info.Src, 0), ap(info.Dst, 0), vip, client)
				}
				if ap(e.Src, e.SrcPort) != netip.AddrPortFrom(client, 40000) || ap(e.Dst, e.DstPort) != netip.AddrPortFrom(vip, 80) {
					t.Fatalf("quote %v → %v", ap(e.Src, e.SrcPort), ap(e.Dst, e.DstPort))
				}
			} else {
				if ap(info.Dst, 0) != netip.AddrPortFrom(rs1, 0) {
					t.Fatalf("outer destination %v, want %v", ap(info.Dst, 0), rs1)
				}
				if ap(e.Src, e.SrcPort) != netip.AddrPortFrom(rs1, 8080) || ap(e.Dst, e.DstPort) != netip.AddrPortFrom(client, 40000) {
					t.Fatalf("quote %v → %v", ap(e.Src, e.SrcPort), ap(e.Dst, e.DstPort))
				}
			}
			// The quoted UDP checksum stays right for the translated datagram.
			if tc.udp && tc.quote == 0 {
				var qi packet.Info
				qf := append(make([]byte, 14), out[0][e.InnerL3Off:]...)
				qf[12] = 0x08
				if packet.Parse(qf, &qi) != packet.ResultOK || !packet.L4ChecksumValid(qf, &qi) {
					t.Fatal("quoted UDP checksum does not verify after translation")
				}
			}
			var after conntrack.Entry
			if !r.dp.ct.Get(conntrack.DirOrig, &key, r.dp.now(), &after) || after.State != before.State {
				t.Fatalf("state %v → %v: an ICMP error moved the connection", before.State, after.State)
			}
			if got := r.w.st.icmpForwarded.load(); got != 1 || len(r.drops()) != 0 {
				t.Fatalf("icmp forwarded %d, drops %v", got, r.drops())
			}
		})
	}
}

func TestICMPDrops(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	// An error quoting a packet of no connection.
	q := ipOnly(build(t, pkt{src: vip, dst: client, sport: 80, dport: 40000, udp: true}))
	r.ext.Inject(icmpErrFrame(t, macClient, macDirExt, client, vip, 3, 3, q, 0))
	// A bad ICMP checksum.
	bad := icmpErrFrame(t, macClient, macDirExt, client, vip, 3, 3, q, 0)
	bad[len(bad)-1] ^= 0xFF
	r.ext.Inject(bad)
	// An echo request.
	r.ext.Inject(icmpErrFrame(t, macClient, macDirExt, client, vip, 8, 0, []byte("pingpingpingping"), 0))
	r.drain()
	want := map[string]uint64{"icmp_no_conn": 1, "malformed": 1, "not_tcp_udp": 1}
	if got := r.drops(); len(got) != len(want) || got["icmp_no_conn"] != 1 || got["malformed"] != 1 || got["not_tcp_udp"] != 1 {
		t.Fatalf("drops %v, want %v", got, want)
	}
	if n := len(r.int.Sent()) + len(r.ext.Sent()); n != 0 {
		t.Fatalf("%d frames sent", n)
	}
}

// TestICMPDRTUN: an error from the client side about a DR/TUN connection goes to the real
// server like the flow: unchanged (DR) or encapsulated (TUN).
func TestICMPDRTUN(t *testing.T) {
	for _, method := range []conntrack.Method{conntrack.MethodDR, conntrack.MethodTUN} {
		for _, fam := range []struct {
			name        string
			client, vip netip.Addr
			typ, code   uint8
		}{{"v4", l2Client, l2VIP, 3, 4}, {"v6", l2Client6, l2VIP6, packet.ICMPv6PacketTooBig, 0}} {
			t.Run(method.String()+"/"+fam.name, func(t *testing.T) {
				r := newL2Rig(t, method)
				r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 40000, dport: 80, syn: true}))
				r.w.poll()
				if len(r.eth.Sent()) != 1 {
					t.Fatalf("request not forwarded: %v", r.drops())
				}
				q := ipOnly(build(t, pkt{src: fam.vip, dst: fam.client, sport: 80, dport: 40000, syn: true, ack: true}))
				in := icmpErrFrame(t, macClient, macDir, fam.client, fam.vip, fam.typ, fam.code, q, 0)
				r.eth.Inject(in)
				r.w.poll()
				out := r.eth.Sent()
				if len(out) != 1 {
					t.Fatalf("sent %d, want 1 (drops %v)", len(out), r.drops())
				}
				f := out[0]
				if macOf(f[0:6]) != macRS1 {
					t.Fatalf("dst MAC %x, want rs1's", f[0:6])
				}
				inner := f[14:]
				if method == conntrack.MethodTUN {
					inner = f[14+packet.TunnelHeaderLen(map[bool]uint8{true: 4, false: 6}[fam.client.Is4()]):]
				}
				if !bytes.Equal(inner, in[14:]) {
					t.Fatalf("ICMP error changed on its way:\n%x\n%x", inner, in[14:])
				}
				if r.w.st.icmpForwarded.load() != 1 || len(r.drops()) != 0 {
					t.Fatalf("forwarded %d drops %v", r.w.st.icmpForwarded.load(), r.drops())
				}
				r.framesBack(t)
			})
		}
	}
}

// TestNoRealServer: with no available real server the client gets ICMP port unreachable
// from the VIP quoting its packet (ip_vs_leave), TCP and UDP, IPv4 and IPv6.
func TestNoRealServer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		client, vip netip.Addr
		udp         bool
	}{{"tcp4", l2Client, l2VIP, false}, {"udp4", l2Client, l2VIP, true}, {"tcp6", l2Client6, l2VIP6, false}, {"udp6", l2Client6, l2VIP6, true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newL2Rig(t, conntrack.MethodDR)
			// Quiesce every real server: weight 0 takes no new connections.
			snap := r.dp.Snapshot()
			svcs := append([]Service(nil), snap.Services...)
			for i := range svcs {
				ds := append([]Dest(nil), svcs[i].Dests...)
				for j := range ds {
					ds[j].Weight = 0
				}
				svcs[i].Dests = ds
				svcs[i].Sched = noneSched{}
			}
			s2, err := NewSnapshot(svcs)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.dp.Publish(s2); err != nil {
				t.Fatal(err)
			}
			in := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: tc.client, dst: tc.vip, sport: 40000, dport: 80, udp: tc.udp, syn: true, payload: []byte("anyone?")})
			r.eth.Inject(in)
			r.w.poll()
			out := r.eth.Sent()
			if len(out) != 1 {
				t.Fatalf("sent %d, want 1 (drops %v)", len(out), r.drops())
			}
			info, e := checkICMP(t, out[0])
			wantType, wantCode := packet.ICMPv4DestUnreach, packet.ICMPv4PortUnreach
			if tc.client.Is6() {
				wantType, wantCode = packet.ICMPv6DestUnreach, packet.ICMPv6PortUnreach
			}
			if e.Type != wantType || e.Code != wantCode {
				t.Fatalf("type/code %d/%d", e.Type, e.Code)
			}
			if ap(info.Src, 0).Addr() != tc.vip || ap(info.Dst, 0).Addr() != tc.client || macOf(out[0][0:6]) != macClient {
				t.Fatalf("answer %v → %v", ap(info.Src, 0), ap(info.Dst, 0))
			}
			if ap(e.Src, e.SrcPort) != netip.AddrPortFrom(tc.client, 40000) || ap(e.Dst, e.DstPort) != netip.AddrPortFrom(tc.vip, 80) {
				t.Fatal("the answer does not quote the client's packet")
			}
			if d := r.drops(); d["no_dest"] != 1 || len(d) != 1 || r.w.st.icmpSent.load() != 1 {
				t.Fatalf("drops %v, icmp sent %d", d, r.w.st.icmpSent.load())
			}
			r.framesBack(t)
		})
	}
}

// noneSched never finds a real server.
type noneSched struct{}

func (noneSched) Name() string { return "none" }

// fragments splits the IP packet of frame (built by build) into fragments of at most
// size payload bytes (a multiple of 8), IPv4 or IPv6 (fragment header), identification id.
func fragments(t testing.TB, frame []byte, size int, id uint32) [][]byte {
	t.Helper()
	eth, ip := frame[:14], frame[14:]
	var hdr, data []byte
	v6 := ip[0]>>4 == 6
	if v6 {
		hdr, data = ip[:40], ip[40:]
	} else {
		hl := int(ip[0]&15) * 4
		hdr, data = ip[:hl], ip[hl:]
	}
	var out [][]byte
	for off := 0; off < len(data); off += size {
		end := min(off+size, len(data))
		more := end < len(data)
		f := append([]byte(nil), eth...)
		h := append([]byte(nil), hdr...)
		if v6 {
			fh := make([]byte, 8)
			fh[0] = h[6]
			m := uint16(off)
			if more {
				m |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], m)
			binary.BigEndian.PutUint32(fh[4:], id)
			h[6] = 44
			binary.BigEndian.PutUint16(h[4:], uint16(8+end-off))
			h = append(h, fh...)
		} else {
			ff := uint16(off / 8)
			if more {
				ff |= packet.IPv4FlagMF
			}
			binary.BigEndian.PutUint16(h[6:], ff)
			binary.BigEndian.PutUint16(h[4:], uint16(id))
			binary.BigEndian.PutUint16(h[2:], uint16(len(h)+end-off))
			packet.IPv4(h).ComputeChecksum()
		}
		f = append(f, h...)
		out = append(out, append(f, data[off:end]...))
	}
	return out
}

func (noneSched) Schedule(sched.Counts, *sched.Flow) int { return -1 }
