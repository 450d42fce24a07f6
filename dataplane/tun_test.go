package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// TestTUN: requests leave encapsulated (IPIP / ip6ip6) from the director's address on
// the egress interface to the real server, the inner packet unchanged, with the MACs of
// the real server and the director.
func TestTUN(t *testing.T) {
	for _, tc := range []struct {
		name             string
		client, vip, dir netip.Addr
		rs               netip.Addr
		udp              bool
	}{
		{"tcp4", l2Client, l2VIP, l2Dir, l2RS1, false},
		{"udp4", l2Client, l2VIP, l2Dir, l2RS1, true},
		{"tcp6", l2Client6, l2VIP6, l2Dir6, l2RS16, false},
		{"udp6", l2Client6, l2VIP6, l2Dir6, l2RS16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newL2Rig(t, conntrack.MethodTUN)
			ip := pkt{srcMAC: macClient, dstMAC: macDir, src: tc.client, dst: tc.vip, sport: 40000, dport: 80, udp: tc.udp, syn: true, ttl: 9, payload: []byte("hello")}
			in := build(t, ip)
			// The inner packet leaves with TTL 8 (IPVS's decrement_ttl), which the outer
			// header copies (ip_vs_prepare_tunneled_skb).
			ip.ttl = 8
			inner := build(t, ip)
			r.eth.Inject(in)
			r.w.poll()
			out := r.eth.Sent()
			if len(out) != 1 {
				t.Fatalf("sent %d frames, want 1 (drops %v)", len(out), r.drops())
			}
			f := out[0]
			if macOf(f[0:6]) != macRS1 || macOf(f[6:12]) != macDir {
				t.Fatalf("MACs %x %x", f[0:6], f[6:12])
			}
			var outer packet.Info
			if res := packet.Parse(f, &outer); res != packet.ResultUnsupportedProto {
				t.Fatalf("outer parse %v", res)
			}
			if outer.Src != a16(tc.dir) || outer.Dst != a16(tc.rs) {
				t.Fatalf("outer %v → %v, want %v → %v", netip.AddrFrom16(outer.Src), netip.AddrFrom16(outer.Dst), tc.dir, tc.rs)
			}
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			if p.ErrorLayer() != nil {
				t.Fatal(p.ErrorLayer().Error())
			}
			if outer.Family == 4 {
				o := p.Layers()[1].(*layers.IPv4)
				if o.Protocol != 4 || o.TTL != 8 || o.Flags != layers.IPv4DontFragment || !packet.IPv4HeaderChecksumValid(packet.IPv4(f[14:])) {
					t.Fatalf("outer IPv4 %+v", o)
				}
			} else if o := p.Layers()[1].(*layers.IPv6); o.NextHeader != 41 || o.HopLimit != 8 {
				t.Fatalf("outer IPv6 %+v", o)
			}
			if !bytes.Equal(f[outer.L4Off:], inner[14:14+int(outer.L3Len)-int(outer.L4Off-outer.L3Off)]) {
				t.Fatal("inner packet is not the input with TTL - 1")
			}
			if len(r.drops()) != 0 || r.w.st.encapsulated.load() != 1 {
				t.Fatalf("drops %v, encapsulated %d", r.drops(), r.w.st.encapsulated.load())
			}
			r.framesBack(t)
		})
	}
}

// TestTUNPathMTU: a packet that would not fit the egress MTU once encapsulated is
// answered with fragmentation-needed (MTU − 20) when DF is set, Packet Too Big (MTU − 40)
// for IPv6, and dropped as too big without DF.
func TestTUNPathMTU(t *testing.T) {
	for _, tc := range []struct {
		name        string
		client, vip netip.Addr
		noDF        bool
		wantMTU     uint32
	}{
		{"ipv4 DF", l2Client, l2VIP, false, 1480},
		{"ipv4 no DF", l2Client, l2VIP, true, 0},
		{"ipv6", l2Client6, l2VIP6, false, 1460},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newL2Rig(t, conntrack.MethodTUN)
			hl := 20 + 8
			if tc.client.Is6() {
				hl = 40 + 8
			}
			// A 1500-byte IP packet: fits the link, not the tunnel.
			in := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: tc.client, dst: tc.vip, sport: 1, dport: 80, udp: true, payload: make([]byte, 1500-hl)})
			if tc.noDF {
				binary.BigEndian.PutUint16(in[14+6:], 0)
				packet.IPv4(in[14:]).ComputeChecksum()
			}
			r.eth.Inject(in)
			r.w.poll()
			out := r.eth.Sent()
			if tc.noDF {
				if len(out) != 0 || r.drops()[DropTooBig.String()] != 1 {
					t.Fatalf("sent %d, drops %v; want one too_big drop", len(out), r.drops())
				}
				r.framesBack(t)
				return
			}
			if len(out) != 1 || r.w.st.icmpSent.load() != 1 {
				t.Fatalf("sent %d frames, icmp %d (drops %v)", len(out), r.w.st.icmpSent.load(), r.drops())
			}
			f := out[0]
			if macOf(f[0:6]) != macClient || macOf(f[6:12]) != macDir {
				t.Fatal("ICMP MACs")
			}
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			if tc.client.Is6() {
				m, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
				ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if !ok || m.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || binary.BigEndian.Uint32(m.Payload[:4]) != tc.wantMTU ||
					!ip.SrcIP.Equal(tc.vip.AsSlice()) || !ip.DstIP.Equal(tc.client.AsSlice()) || len(f)-14 != 1280 {
					t.Fatalf("packet too big: %v", p)
				}
			} else {
				m, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !ok || m.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || uint32(m.Seq) != tc.wantMTU ||
					!ip.SrcIP.Equal(tc.vip.AsSlice()) || !ip.DstIP.Equal(tc.client.AsSlice()) || len(f)-14 != 576 {
					t.Fatalf("fragmentation needed: %v", p)
				}
				if !packet.IPv4HeaderChecksumValid(packet.IPv4(f[14:])) || packet.Fold(packet.Checksum(f[34:], 0)) != 0xFFFF {
					t.Fatal("checksums")
				}
			}
			r.framesBack(t)
		})
	}
}

// TestTUNAllocs: encapsulation allocates nothing: IPIP (a packet too big for the tunnel
// answered too), GUE and GRE with their checksums, IPIP to the other family.
func TestTUNAllocs(t *testing.T) {
	for _, c := range []struct {
		enc   packet.Encap
		mixed bool
	}{{}, {enc: packet.Encap{Type: packet.EncapGUE, Port: 6080, Csum: true}}, {enc: packet.Encap{Type: packet.EncapGRE, Csum: true}}, {mixed: true}} {
		spec := l2Spec(t, conntrack.MethodTUN, 1<<14, oneArmed)
		withEncap(&spec, c.enc)
		if c.mixed {
			spec = mixedSpec(t, c.enc)
		}
		r := newRigSpec(t, spec)
		r.eth.OnTransmit = func([]byte) {}
		r.w.icmpLimit = newTokenBucket(-1, 0) // every fragmentation-needed is sent (the limit: ratelimit_test.go)
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80, syn: true}))
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client6, dst: l2VIP6, sport: 7, dport: 80, syn: true}))
		r.w.poll()
		ack := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
		ack6 := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client6, dst: l2VIP6, sport: 7, dport: 80, ack: true, payload: make([]byte, 100)})
		big := build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80, ack: true, payload: make([]byte, 1460)})
		n := testing.AllocsPerRun(200, func() {
			r.eth.Inject(ack)
			r.eth.Inject(ack)
			r.eth.Inject(ack6)
			r.eth.Inject(big)
			r.w.poll()
		})
		if n != 0 {
			t.Fatalf("%+v (other family %v): %v allocations per TUN batch", c.enc, c.mixed, n)
		}
		if d := r.drops(); len(d) != 0 {
			t.Fatalf("%+v (other family %v): drops %v", c.enc, c.mixed, d)
		}
	}
}
