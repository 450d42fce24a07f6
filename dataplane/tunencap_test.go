package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// withEncap gives every TUN real server of spec encapsulation e.
func withEncap(spec *rigSpec, e packet.Encap) {
	for i := range spec.services {
		for j := range spec.services[i].Dests {
			if spec.services[i].Dests[j].Method == conntrack.MethodTUN {
				spec.services[i].Dests[j].Tun = e
			}
		}
	}
}

// newEncapRig is newL2Rig(MethodTUN) whose real servers use encapsulation e.
func newEncapRig(t testing.TB, e packet.Encap) *rig {
	t.Helper()
	spec := l2Spec(t, conntrack.MethodTUN, 1<<14, oneArmed)
	withEncap(&spec, e)
	return newRigSpec(t, spec)
}

// encaps are the GUE and GRE variants ipvsadm can configure (remcsum is csum in the
// dataplane: see packet.Encap).
var encaps = []packet.Encap{
	{Type: packet.EncapGUE, Port: 6080},
	{Type: packet.EncapGUE, Port: 5555, Csum: true},
	{Type: packet.EncapGRE},
	{Type: packet.EncapGRE, Csum: true},
}

// TestTUNEncap: a TUN real server with GUE or GRE gets each request inside an outer IP
// header (from the director's address, protocol UDP or GRE, TTL and DF as the inner
// packet's after its decrement) and the tunnel's header as IPVS writes it: GUE — UDP to
// the configured port from a port of [32768, 61000) that the flow keeps, its checksum
// (verified here against the pseudo-header) only with csum, else 0; a 4-byte GUE header
// naming the inner protocol; GRE — the C bit and a checksum that verifies only with csum,
// the inner EtherType. The inner packet is the request with its TTL decremented. TCP and
// UDP, IPv4 and IPv6.
func TestTUNEncap(t *testing.T) {
	for _, enc := range encaps {
		for _, fam := range tunFamilies {
			for _, udp := range []bool{false, true} {
				name := enc.Type.String() + map[bool]string{false: "/nocsum", true: "/csum"}[enc.Csum] + "/" + fam.name + map[bool]string{false: "/tcp", true: "/udp"}[udp]
				t.Run(name, func(t *testing.T) {
					r := newEncapRig(t, enc)
					var sports []uint16
					for i, payload := range []string{"hello", "odd-length payload!"} {
						ip := pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 40000, dport: 80, udp: udp, syn: i == 0 && !udp, ack: i > 0 && !udp, payload: []byte(payload)}
						sports = append(sports, sendEncap(t, r, ip, enc, fam.dir, fam.rs))
					}
					if sports[0] != sports[1] {
						t.Errorf("GUE source ports %d then %d for one flow", sports[0], sports[1])
					}
					if len(r.drops()) != 0 || r.w.st.encapsulated.load() != 2 {
						t.Fatalf("drops %v, encapsulated %d", r.drops(), r.w.st.encapsulated.load())
					}
					r.framesBack(t)
				})
			}
		}
	}
}

// sendEncap sends ip (TTL 9) through r, wants one frame out and checks it with
// checkEncapFrame (the inner packet ip with TTL 8), and returns its GUE source port.
func sendEncap(t *testing.T, r *rig, ip pkt, enc packet.Encap, dir, rs netip.Addr) uint16 {
	t.Helper()
	ip.ttl = 9
	r.eth.Inject(build(t, ip))
	ip.ttl = 8
	inner := ipPacket(build(t, ip))
	r.w.poll()
	out := r.eth.Sent()
	if len(out) != 1 {
		t.Fatalf("sent %d frames, want 1 (drops %v)", len(out), r.drops())
	}
	return checkEncapFrame(t, out[0], enc, dir, rs, inner)
}

// ipPacket is the IP packet of Ethernet frame f, without the frame's padding.
func ipPacket(f []byte) []byte {
	ip := f[14:]
	if ip[0]>>4 == 4 {
		return ip[:binary.BigEndian.Uint16(ip[2:])]
	}
	return ip[:40+int(binary.BigEndian.Uint16(ip[4:]))]
}

// checkEncapFrame checks frame f, sent to the first real server, as TestTUNEncap says,
// and returns its GUE source port (0 for GRE and IPIP). dir and rs are the outer
// addresses; inner, the packet expected inside, may be of the other family.
func checkEncapFrame(t *testing.T, f []byte, enc packet.Encap, dir, rs netip.Addr, inner []byte) uint16 {
	t.Helper()
	if macOf(f[0:6]) != macRS1 || macOf(f[6:12]) != macDir {
		t.Fatalf("MACs %x %x", f[0:6], f[6:12])
	}
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if p.ErrorLayer() != nil && enc.Type == packet.EncapGRE {
		t.Fatal(p.ErrorLayer().Error())
	}
	innerV4 := inner[0]>>4 == 4
	innerProto, et := byte(4), uint16(0x0800)
	if !innerV4 {
		innerProto, et = 41, 0x86DD
	}
	proto, hl := layers.IPProtocolUDP, 20
	switch enc.Type {
	case packet.EncapGRE:
		proto = layers.IPProtocolGRE
	case packet.EncapIPIP:
		proto = layers.IPProtocol(innerProto)
	}
	if dir.Is4() {
		o := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		df := layers.IPv4Flag(0)
		if innerV4 && inner[6]&0x40 != 0 {
			df = layers.IPv4DontFragment // copied from an inner IPv4 packet
		}
		if o.Protocol != proto || o.TTL != 8 || o.Flags != df || !o.SrcIP.Equal(dir.AsSlice()) || !o.DstIP.Equal(rs.AsSlice()) ||
			int(o.Length) != len(f)-14 || !packet.IPv4HeaderChecksumValid(packet.IPv4(f[14:])) {
			t.Fatalf("outer IPv4 %+v", o)
		}
	} else {
		hl = 40
		o := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if o.NextHeader != proto || o.HopLimit != 8 || !o.SrcIP.Equal(dir.AsSlice()) || !o.DstIP.Equal(rs.AsSlice()) || int(o.Length) != len(f)-14-40 {
			t.Fatalf("outer IPv6 %+v", o)
		}
	}
	x := f[14+hl:]
	var sport uint16
	rest := x
	switch enc.Type {
	case packet.EncapGUE:
		sport = binary.BigEndian.Uint16(x[0:])
		if sport < 32768 || sport >= 61000 || binary.BigEndian.Uint16(x[2:]) != enc.Port || int(binary.BigEndian.Uint16(x[4:])) != len(x) {
			t.Fatalf("UDP header % x: want a source port in [32768, 61000), port %d, length %d", x[:8], enc.Port, len(x))
		}
		sum := packet.PseudoHeaderSum(map[bool]uint8{true: 4, false: 6}[dir.Is4()], a16(dir), a16(rs), packet.ProtoUDP, uint32(len(x)))
		switch c := binary.BigEndian.Uint16(x[6:]); {
		case !enc.Csum && c != 0:
			t.Fatalf("UDP checksum %#04x without csum, want 0", c)
		case enc.Csum && (c == 0 || packet.Fold(packet.Checksum(x, sum)) != 0xFFFF):
			t.Fatalf("UDP checksum %#04x does not verify", c)
		}
		if !bytes.Equal(x[8:12], []byte{0, innerProto, 0, 0}) {
			t.Fatalf("GUE header % x, want 00 %02x 00 00", x[8:12], innerProto)
		}
		rest = x[12:]
	case packet.EncapGRE:
		g := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if g.ChecksumPresent != enc.Csum || g.KeyPresent || g.SeqPresent || g.RoutingPresent || g.Version != 0 || uint16(g.Protocol) != et {
			t.Fatalf("GRE header %+v", g)
		}
		n := 4
		if enc.Csum {
			n = 8
			if packet.Fold(packet.Checksum(x, 0)) != 0xFFFF {
				t.Fatal("GRE checksum does not verify")
			}
		}
		rest = x[n:]
	}
	if !bytes.Equal(rest, inner) {
		t.Fatalf("inner packet\n% x\nwant the input with TTL - 1\n% x", rest, inner)
	}
	return sport
}

// TestTUNEncapPathMTU: with GUE and GRE the path MTU left for the inner packet is the
// link's less everything the tunnel adds, as IPVS computes it: a packet one byte too big
// is answered with fragmentation-needed or Packet Too Big carrying that MTU, one that
// fits is encapsulated to exactly the link's MTU.
func TestTUNEncapPathMTU(t *testing.T) {
	for _, enc := range encaps {
		for _, fam := range tunFamilies {
			t.Run(enc.Type.String()+map[bool]string{false: "/nocsum", true: "/csum"}[enc.Csum]+"/"+fam.name, func(t *testing.T) {
				r := newEncapRig(t, enc)
				family := map[bool]uint8{true: 4, false: 6}[fam.client.Is4()]
				mtu := 1500 - enc.HeaderLen(family)
				hl := 20 + 8
				if fam.client.Is6() {
					hl = 40 + 8
				}
				fits := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 1, dport: 80, udp: true, payload: make([]byte, mtu-hl)})
				big := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 1, dport: 80, udp: true, payload: make([]byte, mtu-hl+1)})
				r.eth.Inject(fits)
				r.w.poll()
				if out := r.eth.Sent(); len(out) != 1 || len(out[0]) != 14+1500 {
					t.Fatalf("a %d-byte packet: sent %d frames (drops %v), want one of %d bytes", mtu, len(out), r.drops(), 14+1500)
				}
				r.eth.Inject(big)
				r.w.poll()
				out := r.eth.Sent()
				if len(out) != 1 || r.w.st.icmpSent.load() != 1 {
					t.Fatalf("a %d-byte packet: sent %d frames, icmp %d (drops %v)", mtu+1, len(out), r.w.st.icmpSent.load(), r.drops())
				}
				checkTooBig(t, out[0], fam.client.Is6(), mtu)
				r.framesBack(t)
			})
		}
	}
}

// checkTooBig checks that frame f is the director's ICMP error about a packet too big for
// a tunnel that leaves mtu bytes: Packet Too Big with max(mtu, 1280) for IPv6 (v6),
// fragmentation-needed with mtu for IPv4.
func checkTooBig(t *testing.T, f []byte, v6 bool, mtu int) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if v6 {
		m, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if !ok || m.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || binary.BigEndian.Uint32(m.Payload[:4]) != uint32(max(mtu, 1280)) {
			t.Fatalf("packet too big: %v, want MTU %d", p, mtu)
		}
		return
	}
	m, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ok || m.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || int(m.Seq) != mtu {
		t.Fatalf("fragmentation needed: %v, want MTU %d", p, mtu)
	}
}

// TestTUNEncapFragments: the later fragments of a datagram to a GUE or GRE real server
// leave as its first did: the same encapsulation and, for GUE, the same source port.
func TestTUNEncapFragments(t *testing.T) {
	for _, enc := range encaps {
		t.Run(enc.Type.String()+map[bool]string{false: "/nocsum", true: "/csum"}[enc.Csum], func(t *testing.T) {
			r := newEncapRig(t, enc)
			frags := fragments(t, build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 5000, dport: 80, udp: true, ttl: 9, payload: make([]byte, 3000)}), 1000, 77)
			var inners [][]byte
			for _, f := range frags {
				in := append([]byte(nil), ipPacket(f)...)
				in[8]-- // TTL
				packet.IPv4(in).ComputeChecksum()
				inners = append(inners, in)
				r.eth.Inject(f)
			}
			r.w.poll()
			out := r.eth.Sent()
			if len(out) != len(frags) {
				t.Fatalf("sent %d of %d fragments (drops %v)", len(out), len(frags), r.drops())
			}
			var first uint16
			for i, f := range out {
				sport := checkEncapFrame(t, f, enc, l2Dir, l2RS1, inners[i])
				if i == 0 {
					first = sport
				} else if sport != first {
					t.Fatalf("fragment %d left from GUE port %d, the first from %d", i, sport, first)
				}
			}
			r.framesBack(t)
		})
	}
}

// TestFastPathTUNEncapOffers: a GUE or GRE real server's TCP and UDP connections are
// offered to the fast path, with and without a tunnel checksum — the entry names the
// tunnel type, GUE its port and the source port the workers write for the flow (the
// worker's frame's), the checksum (bpf.FastTunCsum, kept when the fast path's goroutine
// sets the egress flags), and its MTU is the egress MTU less the whole tunnel header
// (GRE's 8 bytes with the checksum). An IPIP real server edited to GUE has its installed
// connections removed at the next sweep.
func TestFastPathTUNEncapOffers(t *testing.T) {
	for _, enc := range encaps {
		t.Run(enc.Type.String()+map[bool]string{false: "/nocsum", true: "/csum"}[enc.Csum], func(t *testing.T) {
			r := newEncapRig(t, enc)
			f := withFast(r.dp)
			for _, fam := range tunFamilies {
				for _, udp := range []bool{false, true} {
					p := pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 6000, dport: 80, udp: udp}
					var q []fastReq
					if udp {
						q = secondOffers(t, r, p, p, "the first datagram")
					} else {
						q = openOffers(t, r, p)
					}
					out := r.eth.Sent()
					if len(q) != 1 || q[0].n != 1 || len(out) == 0 {
						t.Fatalf("%s udp=%v: offered %+v (%d frames out), want one install", fam.name, udp, q, len(out))
					}
					v := q[0].dirs[0].val
					want := map[packet.EncapType]uint16{packet.EncapGUE: bpf.FastTunGUE, packet.EncapGRE: bpf.FastTunGRE}[enc.Type]
					if v.Action != bpf.FastTUN || v.Tun != want || fastEncap(&v) != enc {
						t.Fatalf("%s udp=%v: entry %+v, want FastTUN of type %d (%+v)", fam.name, udp, v, want, enc)
					}
					if enc.Type == packet.EncapGUE {
						// The worker's frame of the flow: its UDP source port after the outer IP header.
						f := out[len(out)-1]
						sport := binary.BigEndian.Uint16(f[14+packet.TunnelHeaderLen(map[bool]uint8{true: 4, false: 6}[fam.client.Is4()]):])
						if got := binary.BigEndian.Uint16(v.Port2[:]); got != sport {
							t.Fatalf("%s udp=%v: entry's GUE source port %d, the workers' %d", fam.name, udp, got, sport)
						}
					}
					if m := tunMTU(1500, q[0].dirs[0].mtu, v.Addr2, fastEncap(&v)); int(m) != 1500-enc.HeaderLen(map[bool]uint8{true: 4, false: 6}[fam.client.Is4()]) {
						t.Fatalf("%s udp=%v: entry MTU %d, want 1500 less %d", fam.name, udp, m, enc.HeaderLen(4))
					}
					if csum := v.Flags&bpf.FastTunCsum != 0; csum != enc.Csum {
						t.Fatalf("%s udp=%v: entry flags %#x, want the checksum flag %v", fam.name, udp, v.Flags, enc.Csum)
					}
					f.apply(&q[0])
					if got := f.insVals[len(f.insVals)-1]; got.Flags&bpf.FastTunCsum != v.Flags&bpf.FastTunCsum || fastEncap(&got) != enc {
						t.Fatalf("%s udp=%v: flags %#x once applied, want the checksum flag %v", fam.name, udp, got.Flags, enc.Csum)
					}
				}
			}
		})
	}

	t.Run("edited to gue", func(t *testing.T) {
		r := newL2Rig(t, conntrack.MethodTUN)
		f, cls := withFastMap(t, r, 64)
		fam := tunFamilies[0]
		// An IPIP connection, installed.
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 6001, dport: 80, syn: true}))
		r.w.poll()
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 6001, dport: 80, ack: true}))
		r.w.poll()
		f.drain(r.dp.now() + fastInstallDelay)
		k := fkey(fam.client, fam.vip, 6001, 80, 6)
		var v bpf.FastVal
		if ok, err := cls.FastLookup(&k, &v); !ok || err != nil {
			t.Fatalf("IPIP connection not installed: %v", err)
		}
		republish(t, r.dp, func(s *Service) {
			s.Dests = append([]Dest(nil), s.Dests...)
			for j := range s.Dests {
				s.Dests[j].Tun = packet.Encap{Type: packet.EncapGUE, Port: 6080}
			}
		})
		f.sweep(false)
		if ok, _ := cls.FastLookup(&k, &v); ok {
			t.Fatal("the connection stays in the fast path after its real server became GUE")
		}
		// Its next packet goes through a worker, encapsulated in GUE.
		r.eth.Sent()
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 6001, dport: 80, ack: true, payload: []byte("x")}))
		r.w.poll()
		out := r.eth.Sent()
		if len(out) != 1 || out[0][14+9] != packet.ProtoUDP {
			t.Fatalf("after the edit: sent %d frames (drops %v), want one GUE packet", len(out), r.drops())
		}
	})
}

// mixedSpec is the l2 rig with TUN real servers of the services' other family: the IPv4
// services tunnel to the IPv6 real servers, the IPv6 ones to the IPv4 ones, with e.
func mixedSpec(t testing.TB, e packet.Encap) rigSpec {
	spec := l2Spec(t, conntrack.MethodTUN, 1<<14, oneArmed)
	other := map[netip.Addr]netip.Addr{l2RS1: l2RS16, l2RS2: l2RS26, l2RS16: l2RS1, l2RS26: l2RS2}
	for i := range spec.services {
		ds := append([]Dest(nil), spec.services[i].Dests...)
		for j := range ds {
			ds[j].Addr = a16(other[netip.AddrFrom16(ds[j].Addr).Unmap()])
			ds[j].Tun = e
		}
		spec.services[i].Dests = ds
	}
	return spec
}

// TestTUNMixedFamily: a TUN real server of the service's other family (IPVS takes one
// for tunnelling only) gets IPv4 requests inside IPv6 and IPv6 ones inside IPv4, with
// IPIP (protocol 4 in IPv6, 41 in IPv4), GUE and GRE: the outer header of the real
// server's family from the director's address of that family, TTL (hop limit) and TOS
// from the inner packet after its decrement, DF only from an inner IPv4 packet; a
// request too big for the tunnel is answered in its own family with the MTU the outer
// family leaves. The fast path is offered none of these connections (the program
// writes same-family IPIP only).
func TestTUNMixedFamily(t *testing.T) {
	for _, enc := range []packet.Encap{{}, {Type: packet.EncapGUE, Port: 6080, Csum: true}, {Type: packet.EncapGRE, Csum: true}} {
		for _, fam := range tunFamilies {
			for _, udp := range []bool{false, true} {
				name := enc.Type.String() + "/" + fam.name + "-in-other" + map[bool]string{false: "/tcp", true: "/udp"}[udp]
				t.Run(name, func(t *testing.T) {
					r := newRigSpec(t, mixedSpec(t, enc))
					withFast(r.dp)
					dir, rs := l2Dir6, l2RS16
					if fam.client.Is6() {
						dir, rs = l2Dir, l2RS1
					}
					ip := pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 40000, dport: 80, udp: udp, syn: !udp, payload: []byte("mixed")}
					sendEncap(t, r, ip, enc, dir, rs)
					// A second datagram (UDP) or the ACK (TCP) would make the connection
					// eligible for the fast path: nothing is offered.
					ack := ip
					ack.syn, ack.ack = false, !udp
					r.eth.Inject(build(t, ack))
					r.w.poll()
					if q := requests(r.w); len(q) != 0 {
						t.Fatalf("offered %+v to the fast path", q)
					}
					r.eth.Sent()

					// Too big for the tunnel: the MTU left by the outer family's header.
					mtu := 1500 - enc.HeaderLen(map[bool]uint8{true: 4, false: 6}[rs.Is4()])
					hl := 20 + 8
					if fam.client.Is6() {
						hl = 40 + 8
					}
					r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 1, dport: 80, udp: true, payload: make([]byte, mtu-hl+1)}))
					r.w.poll()
					out := r.eth.Sent()
					if len(out) != 1 || r.w.st.icmpSent.load() != 1 {
						t.Fatalf("too big: sent %d frames, icmp %d (drops %v)", len(out), r.w.st.icmpSent.load(), r.drops())
					}
					checkTooBig(t, out[0], fam.client.Is6(), mtu)
					r.framesBack(t)
				})
			}
		}
	}
}

// BenchmarkPipelineTUNEncap is BenchmarkPipelineEstablished's TUN case with GUE and GRE
// real servers (their checksums on: the costlier variant, a sum over each packet), and
// with IPIP to a real server of the other family: ns/op per packet, the socket fake
// included.
func BenchmarkPipelineTUNEncap(b *testing.B) {
	for _, c := range []struct {
		name  string
		enc   packet.Encap
		mixed bool
	}{
		{"GUE-csum", packet.Encap{Type: packet.EncapGUE, Port: 6080, Csum: true}, false},
		{"GRE-csum", packet.Encap{Type: packet.EncapGRE, Csum: true}, false},
		{"IPIP-other-family", packet.Encap{}, true},
	} {
		for _, pc := range []pipeCase{{"v4", conntrack.MethodTUN, false}, {"v6", conntrack.MethodTUN, true}} {
			b.Run(c.name+"/"+pc.name, func(b *testing.B) {
				spec := l2Spec(b, conntrack.MethodTUN, 1<<14, oneArmed)
				withEncap(&spec, c.enc)
				if c.mixed {
					spec = mixedSpec(b, c.enc)
				}
				benchEstablishedSpec(b, pc, spec, 1)
			})
		}
	}
}

// TestSnapshotEncap: NewSnapshot refuses an encapsulation the dataplane cannot write,
// saying what is wrong: GUE without its port, a port on IPIP or GRE, a checksum on IPIP,
// an unknown type. Another method's real server ignores Tun.
func TestSnapshotEncap(t *testing.T) {
	for _, c := range []struct {
		enc  packet.Encap
		want string
	}{
		{packet.Encap{Type: packet.EncapGUE}, "needs its UDP port"},
		{packet.Encap{Type: packet.EncapGRE, Port: 6080}, "gre takes no port"},
		{packet.Encap{Port: 6080}, "ipip takes no port"},
		{packet.Encap{Csum: true}, "IPIP tunnel has no checksum option"},
		{packet.Encap{Type: 7}, "unknown tunnel type 7"},
	} {
		spec := l2Spec(t, conntrack.MethodTUN, 1<<10, oneArmed)
		withEncap(&spec, c.enc)
		if _, err := NewSnapshot(spec.services); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.enc, err, c.want)
		}
		dr := l2Spec(t, conntrack.MethodDR, 1<<10, oneArmed)
		for i := range dr.services {
			for j := range dr.services[i].Dests {
				dr.services[i].Dests[j].Tun = c.enc
			}
		}
		if _, err := NewSnapshot(dr.services); err != nil {
			t.Errorf("%+v on DR real servers: %v", c.enc, err)
		}
	}
}

// TestBurstGUEAfterFragment: a GUE run that a datagram's first fragment starts gives the
// whole packets of the flow that follow it the source port the full path gives them (the
// flow's, with its ports), not the fragment's (without them): the batch's frames are the
// same, byte for byte, as one packet per batch, and the whole packets took the run.
func TestBurstGUEAfterFragment(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		c := burstCase{method: conntrack.MethodTUN, v6: v6, udp: true, tun: packet.Encap{Type: packet.EncapGUE, Port: 6080}}
		t.Run(c.String(), func(t *testing.T) {
			client, vip := l2Client, l2VIP
			if v6 {
				client, vip = l2Client6, l2VIP6
			}
			seen := burstCompare(t, c, burstPrep{frames: func(netip.Addr) [][]byte {
				big := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: 1000, dport: 80, udp: true, payload: make([]byte, 2000)})
				first := fragments(t, big, 1000, 99)[0]
				fs := [][]byte{first}
				for _, p := range []string{"w1", "w2 longer"} {
					fs = append(fs, build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: 1000, dport: 80, udp: true, payload: []byte(p)}))
				}
				return fs
			}})
			if seen.bursts != 2 {
				t.Errorf("%d packets forwarded as a burst, want the 2 whole ones", seen.bursts)
			}
		})
	}
}
