package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// toaOf returns the TOA option of a transmitted frame (gopacket's parse): whether it has
// one, and the address and port it carries. It fails the test on a TOA option that is
// not the first TCP option or has a wrong length.
func toaOf(t testing.TB, frame []byte) (netip.AddrPort, bool) {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil {
		t.Fatalf("no TCP layer:\n%s", frameString(frame))
	}
	for i, o := range tcp.Options {
		if o.OptionType != packet.TOAKind {
			continue
		}
		if i != 0 || (o.OptionLength != 8 && o.OptionLength != 20) || len(o.OptionData) != int(o.OptionLength)-2 {
			t.Fatalf("TOA option %d of length %d:\n%s", i, o.OptionLength, frameString(frame))
		}
		a, _ := netip.AddrFromSlice(o.OptionData[2:])
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(o.OptionData)), true
	}
	return netip.AddrPort{}, false
}

func (r *rig) toaCounts() (added, skipped uint64) {
	ws, _ := r.dp.Stats()
	for _, w := range ws {
		added += w.TOAAdded
		skipped += w.TOASkipped
	}
	return added, skipped
}

// TestFullNATTOA: a FULLNAT client's SYN and handshake ACK reach the real server with
// the TOA option (the client's address and port, DPVS's kind 254, first among the TCP
// options), every checksum valid and payload intact; the segments that follow the ACK
// in its burst, and later packets, go without it (as the run they form); the real
// server's packets never get it; a SYN whose TCP header is full, or an ACK that the
// option would make longer than the path MTU, goes without it and is counted.
func TestFullNATTOA(t *testing.T) {
	for _, f := range fnFamilies {
		t.Run(f.name, func(t *testing.T) {
			r := newFNRig(t, fnOpts{})
			client := netip.AddrPortFrom(f.client, 40000)
			in := func(p pkt) pkt {
				p.srcMAC, p.dstMAC, p.src, p.dst, p.sport, p.dport = macClient, macDirExt, f.client, f.vip, 40000, 80
				return p
			}
			mss := []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
				{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}}
			syn := in(pkt{syn: true, tcpOpts: mss})
			r.ext.Inject(build(t, syn))
			r.w.poll()
			out := r.int.Sent()
			if len(out) != 1 {
				t.Fatalf("SYN: %d frames (drops %v)", len(out), r.drops())
			}
			info := check(t, out[0])
			if got, ok := toaOf(t, out[0]); !ok || got != client {
				t.Fatalf("SYN's TOA %v (%v), want %v:\n%s", got, ok, client, frameString(out[0]))
			}
			local := ap(info.Src, info.SrcPort)
			// The SYN's own options follow the TOA option, unchanged.
			pk := gopacket.NewPacket(out[0], layers.LayerTypeEthernet, gopacket.Default)
			if opts := pk.Layer(layers.LayerTypeTCP).(*layers.TCP).Options; fmt.Sprint(opts[1:]) != fmt.Sprint(mss) {
				t.Fatalf("options after TOA %v, want %v", opts[1:], mss)
			}

			// The real server's SYN+ACK: no option added.
			r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: f.rs1, dst: local.Addr(), sport: 8080, dport: local.Port(), syn: true, ack: true}))
			r.w.poll()
			back := r.ext.Sent()
			if len(back) != 1 {
				t.Fatalf("SYN+ACK: %d frames (drops %v)", len(back), r.drops())
			}
			check(t, back[0])
			if _, ok := toaOf(t, back[0]); ok {
				t.Fatal("the real server's SYN+ACK got a TOA option")
			}

			// The handshake's ACK and three segments in one batch: only the ACK gets it.
			r.ext.Inject(build(t, in(pkt{ack: true})))
			for i := range 3 {
				r.ext.Inject(build(t, in(pkt{ack: true, payload: bytes.Repeat([]byte{byte('a' + i)}, 100+i)})))
			}
			r.w.poll()
			out = r.int.Sent()
			if len(out) != 4 {
				t.Fatalf("ACK and data: %d frames (drops %v)", len(out), r.drops())
			}
			for i, fr := range out {
				fi := check(t, fr)
				got, ok := toaOf(t, fr)
				if ok != (i == 0) || ok && got != client {
					t.Fatalf("frame %d: TOA %v (%v), want one on the ACK only:\n%s", i, got, ok, frameString(fr))
				}
				if ap(fi.Src, fi.SrcPort) != local || ap(fi.Dst, fi.DstPort) != netip.AddrPortFrom(f.rs1, 8080) {
					t.Fatalf("frame %d: %v → %v", i, ap(fi.Src, fi.SrcPort), ap(fi.Dst, fi.DstPort))
				}
				if i > 0 && !bytes.HasSuffix(fr, bytes.Repeat([]byte{byte('a' + i - 1)}, 99+i)) {
					t.Fatalf("frame %d: payload changed", i)
				}
			}
			if added, skipped := r.toaCounts(); added != 2 || skipped != 0 {
				t.Fatalf("toa_added %d, toa_skipped %d; want 2, 0", added, skipped)
			}

			// A SYN of another connection whose TCP header is full (40 bytes of options)
			// goes without the option, counted.
			full := in(pkt{syn: true, tcpOpts: append(append([]layers.TCPOption{}, mss...),
				layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
				layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)})})
			full.sport = 40001
			r.ext.Inject(build(t, full))
			r.w.poll()
			if out = r.int.Sent(); len(out) != 1 {
				t.Fatalf("full SYN: %d frames (drops %v)", len(out), r.drops())
			}
			check(t, out[0])
			if _, ok := toaOf(t, out[0]); ok {
				t.Fatal("a SYN with a full TCP header got a TOA option")
			}
			if added, skipped := r.toaCounts(); added != 2 || skipped != 1 {
				t.Fatalf("toa_added %d, toa_skipped %d; want 2, 1", added, skipped)
			}

			// A SYN and its retransmission in one batch: the second follows the first's
			// run, and gets the option too.
			syn.sport = 40002
			r.ext.Inject(build(t, syn))
			r.ext.Inject(build(t, syn))
			r.w.poll()
			if out = r.int.Sent(); len(out) != 2 {
				t.Fatalf("two SYNs: %d frames (drops %v)", len(out), r.drops())
			}
			for i, fr := range out {
				check(t, fr)
				if got, ok := toaOf(t, fr); !ok || got != netip.AddrPortFrom(f.client, 40002) {
					t.Fatalf("SYN %d: TOA %v (%v)", i, got, ok)
				}
			}
		})
	}
}

// TestFullNATTOAMTU: an ACK in SYN_RECV that the option would make longer than the
// path MTU to the real server goes without it (counted); one that fits gets it.
func TestFullNATTOAMTU(t *testing.T) {
	for _, f := range fnFamilies {
		t.Run(f.name, func(t *testing.T) {
			const mtu = 600
			r := newFNRig(t, fnOpts{mtu: mtu})
			hdr := 20 + 20 // IPv4 and TCP headers
			n := packet.TOALen4
			if f.vip.Is6() {
				hdr, n = 40+20, packet.TOALen6
			}
			for i, size := range []int{mtu - n, mtu - n + 1} { // IP packet lengths
				p := pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: uint16(41000 + i), dport: 80}
				p.syn = true
				r.ext.Inject(build(t, p))
				p.syn, p.ack, p.payload = false, true, make([]byte, size-hdr)
				r.ext.Inject(build(t, p))
				r.w.poll()
				out := r.int.Sent()
				if len(out) != 2 {
					t.Fatalf("%d frames (drops %v)", len(out), r.drops())
				}
				info := check(t, out[1])
				_, ok := toaOf(t, out[1])
				if ok != (i == 0) || int(info.L3Len) > mtu {
					t.Fatalf("an ACK of %d bytes: TOA %v, %d bytes sent (MTU %d)", size, ok, info.L3Len, mtu)
				}
			}
			if added, skipped := r.toaCounts(); added != 3 || skipped != 1 {
				t.Fatalf("toa_added %d, toa_skipped %d; want 3 (two SYNs, one ACK), 1", added, skipped)
			}
		})
	}
}

// TestFullNATNoTOA: with Config.NoTOA (xlvsd --fullnat-toa=false) a FULLNAT SYN and
// handshake ACK, in one batch with data, reach the real server without the option,
// their TCP headers as the client sent them, and nothing is counted.
func TestFullNATNoTOA(t *testing.T) {
	for _, f := range fnFamilies {
		t.Run(f.name, func(t *testing.T) {
			r := newFNRig(t, fnOpts{noTOA: true})
			p := pkt{srcMAC: macClient, dstMAC: macDirExt, src: f.client, dst: f.vip, sport: 40000, dport: 80, syn: true}
			r.ext.Inject(build(t, p))
			r.w.poll()
			p.syn, p.ack = false, true
			r.ext.Inject(build(t, p))
			p.payload = []byte("after the handshake")
			r.ext.Inject(build(t, p))
			r.w.poll()
			out := r.int.Sent()
			if len(out) != 3 {
				t.Fatalf("%d frames (drops %v)", len(out), r.drops())
			}
			for i, fr := range out {
				info := check(t, fr)
				if _, ok := toaOf(t, fr); ok || packet.TCP(fr[info.L4Off:]).DataOffset() != packet.TCPMinHeaderLen {
					t.Fatalf("frame %d: a TOA option or a grown header:\n%s", i, frameString(fr))
				}
			}
			if added, skipped := r.toaCounts(); added != 0 || skipped != 0 {
				t.Fatalf("toa_added %d, toa_skipped %d; want 0, 0", added, skipped)
			}
		})
	}
}

// TestFullNATTOAOneArm: on a one-armed director the frame goes back out of the port it
// came in on, in place: the option is written with the Ethernet header moved back into
// the headroom, a VLAN tag kept where it was, every checksum valid, and the frame's
// descriptor (what the TX ring gets) covering the grown packet exactly.
func TestFullNATTOAOneArm(t *testing.T) {
	spec := l2Spec(t, conntrack.MethodFullNAT, 1<<12, oneArmed)
	lip := netip.MustParseAddr("198.18.0.50")
	dests := []Dest{{ID: 9, Addr: a16(l2RS1), Port: 8080, Method: conntrack.MethodFullNAT, Weight: 1}}
	spec.services = services(t, "rr", SvcKey{Addr: a16(l2VIP), Port: 80}, dests, []Laddr{{ID: 1, Addr: a16(lip)}}, []uint8{packet.ProtoTCP}, []uint32{7})
	r := newRigSpec(t, spec)
	for _, vlan := range []bool{false, true} {
		t.Run(fmt.Sprintf("vlan=%v", vlan), func(t *testing.T) {
			sport := uint16(41000)
			if vlan {
				sport++
			}
			frame := func(p pkt) []byte {
				b := build(t, p)
				if !vlan {
					return b
				}
				// An 802.1Q tag (VLAN 42) after the MACs.
				return append(append(append([]byte(nil), b[:12]...), 0x81, 0x00, 0x00, 42), b[12:]...)
			}
			p := pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: sport, dport: 80, syn: true}
			r.eth.Inject(frame(p))
			p.syn, p.ack = false, true
			r.eth.Inject(frame(p))
			r.w.poll()
			out := r.eth.Sent()
			if len(out) != 2 {
				t.Fatalf("%d frames (drops %v)", len(out), r.drops())
			}
			for i, fr := range out {
				info := check(t, fr)
				if info.HasVLAN != vlan || vlan && info.VLANTCI&0xfff != 42 {
					t.Fatalf("frame %d: VLAN %v (TCI %d), want %v:\n%s", i, info.HasVLAN, info.VLANTCI, vlan, frameString(fr))
				}
				if got, ok := toaOf(t, fr); !ok || got != netip.AddrPortFrom(l2Client, sport) {
					t.Fatalf("frame %d: TOA %v (%v):\n%s", i, got, ok, frameString(fr))
				}
				if macOf(fr[0:6]) != macRS1 || ap(info.Src, info.SrcPort).Addr() != lip || ap(info.Dst, info.DstPort) != netip.AddrPortFrom(l2RS1, 8080) {
					t.Fatalf("frame %d: %x, %v → %v", i, fr[0:6], ap(info.Src, info.SrcPort), ap(info.Dst, info.DstPort))
				}
				if len(fr) != int(info.L3Off)+int(info.L3Len) {
					t.Fatalf("frame %d: %d bytes for a %d-byte packet at %d", i, len(fr), info.L3Len, info.L3Off)
				}
			}
		})
	}
	r.w.poll()
	if r.eth.FramesAccounted() != 1024 {
		t.Fatal("frames leaked")
	}
}
