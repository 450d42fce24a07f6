//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

type classifyCase struct {
	name     string
	frame    func(testing.TB) []byte
	wantSlot int // the verdict is XDP_PASS in every case: an unattached Port has no socket
}

// ipv4Opts makes IHL 7: router alert (4 bytes) and 4 no-ops.
var ipv4Opts = []layers.IPv4Option{
	{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
	{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1},
}

// fromFlow builds f's frame, then lets mutate change it (nil: unchanged).
func fromFlow(f flow, mutate func(b []byte, l3 int)) func(testing.TB) []byte {
	return func(tb testing.TB) []byte {
		b := f.frame(tb)
		if mutate != nil {
			mutate(b, f.l3())
		}
		return b
	}
}

func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }

// frag4 is an IPv4 fragment to vip4 with offset off (8-byte units) and MF set, carrying
// a UDP header only when off is 0.
func frag4(off uint16) func(testing.TB) []byte {
	return func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: cip4.AsSlice(), DstIP: vip4.AsSlice(),
			Flags: layers.IPv4MoreFragments, FragOffset: off}
		ls := ethernet(false, layers.EthernetTypeIPv4)
		ls = append(ls, ip)
		if off == 0 {
			udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
			udp.SetNetworkLayerForChecksum(ip)
			ls = append(ls, udp)
		}
		return serialize(tb, append(ls, gopacket.Payload(make([]byte, 16)))...)
	}
}

// frag6 is an IPv6 packet to vip6 with a fragment header (offset off, M set) before a
// UDP header to port 53 (first fragment) or plain data.
func frag6(off uint16) func(testing.TB) []byte {
	return func(tb testing.TB) []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: 44, SrcIP: cip6.AsSlice(), DstIP: vip6.AsSlice()}
		fh := []byte{17, 0, 0, 0, 0, 0, 0, 7}
		put16(fh[2:], off<<3|1)
		body := append(fh, 0x9c, 0x40, 0, 53, 0, 16, 0, 0) // UDP 40000 -> 53, length 16
		body = append(body, make([]byte, 8)...)
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv6), ip, gopacket.Payload(body))...)
	}
}

// laterFrag is a later IPv4 UDP fragment (offset 24 bytes, no transport header).
func laterFrag(src, dst netip.Addr) func(testing.TB) []byte {
	return func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), FragOffset: 3}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))...)
	}
}

// icmpErr is an ICMP (IPv4) or ICMPv6 message of type typ/code from src to dst quoting
// the IP packet of f, cut to quote bytes when quote > 0.
func icmpErr(src, dst netip.Addr, typ, code uint8, f flow, quote int) func(testing.TB) []byte {
	return func(tb testing.TB) []byte {
		q := f.frame(tb)[14:]
		if quote > 0 {
			q = q[:quote]
		}
		if src.Is4() {
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
			ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
			return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, ic, gopacket.Payload(q))...)
		}
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
			tb.Fatal(err)
		}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv6), ip, ic, gopacket.Payload(append(make([]byte, 4), q...)))...)
	}
}

var classifyCases = []classifyCase{
	// Service hits: matched, no socket on the queue → passed, counted redirect_failed.
	{"v4 tcp service", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, nil), statRedirectFailed},
	{"v4 udp service", fromFlow(flow{proto: ProtoUDP, src: cip4, dst: vip4, sport: 40000, dport: 53}, nil), statRedirectFailed},
	{"v6 tcp service", fromFlow(flow{proto: ProtoTCP, src: cip6, dst: vip6, sport: 40000, dport: 443}, nil), statRedirectFailed},
	{"v6 udp service", fromFlow(flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 53}, nil), statRedirectFailed},
	{"v4 tcp service with payload", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 1400}, nil), statRedirectFailed},
	{"v4 udp service ethernet padding", func(tb testing.TB) []byte {
		b := flow{proto: ProtoUDP, src: cip4, dst: vip4, sport: 40000, dport: 53}.frame(tb)
		return append(b, make([]byte, 60-len(b))...) // 42 bytes padded to the 60-byte minimum
	}, statRedirectFailed},
	{"v4 tcp service vlan", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, vlan: true}, nil), statRedirectFailed},
	{"v6 udp service vlan", fromFlow(flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 53, vlan: true}, nil), statRedirectFailed},
	{"v4 tcp service ip options", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, ipv4Opts: ipv4Opts}, nil), statRedirectFailed},
	{"v4 tcp service tcp options", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 4}, func(b []byte, l3 int) {
		// Claim 24 bytes of TCP header: the first 4 payload bytes become options.
		b[l3+20+12] = 6 << 4
	}), statRedirectFailed},
	{"v4 first fragment to service", frag4(0), statRedirectFailed},

	// SCTP: ports from the common header (the chunks are the dataplane's to check).
	{"v4 sctp service", fromFlow(flow{proto: ProtoSCTP, src: cip4, dst: vip4, sport: 40000, dport: 38412}, nil), statRedirectFailed},
	{"v6 sctp service", fromFlow(flow{proto: ProtoSCTP, src: cip6, dst: vip6, sport: 40000, dport: 38412, vlan: true}, nil), statRedirectFailed},
	{"v4 sctp reply from real", fromFlow(flow{proto: ProtoSCTP, src: rip4, dst: cip4, sport: 38412, dport: 40000}, nil), statRedirectFailed},
	{"v4 sctp other port", fromFlow(flow{proto: ProtoSCTP, src: cip4, dst: vip4, sport: 40000, dport: 38413}, nil), statPassed},
	{"v4 sctp to a tcp service's port", fromFlow(flow{proto: ProtoSCTP, src: cip4, dst: vip4, sport: 40000, dport: 80}, nil), statPassed},
	{"v4 tcp to an sctp service's port", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 38412}, nil), statPassed},
	{"v4 sctp common header cut", fromFlow(flow{proto: ProtoSCTP, src: cip4, dst: vip4, sport: 40000, dport: 38412}, func(b []byte, l3 int) {
		put16(b[l3+2:], 20+11)
	}), statMalformed},
	{"v4 sctp non-first fragment to service address", func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolSCTP, SrcIP: cip4.AsSlice(), DstIP: vip4.AsSlice(), FragOffset: 3}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))...)
	}, statRedirectFailed},
	{"v4 port unreachable about an sctp service's reply", icmpErr(cip4, vip4, 3, 3, flow{proto: ProtoSCTP, src: vip4, dst: cip4, sport: 38412, dport: 40000}, 0), statRedirectFailed},
	{"v4 time exceeded about an sctp real's request", icmpErr(rip4, cip4, 11, 0, flow{proto: ProtoSCTP, src: cip4, dst: rip4, sport: 40000, dport: 38412}, 0), statRedirectFailed},

	// Reply path: the source is a real server.
	{"v4 tcp reply from real", fromFlow(flow{proto: ProtoTCP, src: rip4, dst: cip4, sport: 8080, dport: 40000}, nil), statRedirectFailed},
	{"v4 udp reply from real", fromFlow(flow{proto: ProtoUDP, src: rip4, dst: cip4, sport: 5353, dport: 40000}, nil), statRedirectFailed},
	{"v6 tcp reply from real", fromFlow(flow{proto: ProtoTCP, src: rip6, dst: cip6, sport: 8080, dport: 40000}, nil), statRedirectFailed},
	{"v6 tcp reply from real vlan", fromFlow(flow{proto: ProtoTCP, src: rip6, dst: cip6, sport: 8080, dport: 40000, vlan: true}, nil), statRedirectFailed},

	// FULLNAT: a real server answers a local address (laddrs), which is also one of the
	// director's own (locals): still the dataplane's. A real server's packet to the
	// director's other addresses is the kernel's (an answer to a health check).
	{"v4 fullnat reply to a local address", fromFlow(flow{proto: ProtoTCP, src: rip4, dst: lip4, sport: 8080, dport: 40000}, nil), statRedirectFailed},
	{"v4 fullnat udp reply to a local address", fromFlow(flow{proto: ProtoUDP, src: rip4, dst: lip4, sport: 5353, dport: 1024}, nil), statRedirectFailed},
	{"v6 fullnat reply to a local address", fromFlow(flow{proto: ProtoTCP, src: rip6, dst: lip6, sport: 8080, dport: 65535}, nil), statRedirectFailed},
	{"v4 real to the director's own address", fromFlow(flow{proto: ProtoTCP, src: rip4, dst: dir4, sport: 8080, dport: 40000}, nil), statLocalReply},
	{"v6 real to the director's own address", fromFlow(flow{proto: ProtoUDP, src: rip6, dst: dir6, sport: 5353, dport: 40000}, nil), statLocalReply},
	{"v4 client to a local address", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: lip4, sport: 40000, dport: 22}, nil), statPassed},
	{"v4 other real port to a local address", fromFlow(flow{proto: ProtoTCP, src: rip4, dst: lip4, sport: 22, dport: 40000}, nil), statPassed},
	{"v4 non-first fragment from real to a local address", laterFrag(rip4, lip4), statRedirectFailed},
	{"v4 non-first fragment from real to the director", laterFrag(rip4, dir4), statLocalReply},
	{"v4 port unreachable from a fullnat real", icmpErr(rip4, lip4, 3, 3, flow{proto: ProtoUDP, src: lip4, dst: rip4, sport: 40000, dport: 5353}, 0), statRedirectFailed},
	{"v6 port unreachable from a fullnat real", icmpErr(rip6, lip6, 1, 4, flow{proto: ProtoUDP, src: lip6, dst: rip6, sport: 40000, dport: 5353}, 0), statRedirectFailed},
	{"v4 port unreachable from a real to the director", icmpErr(rip4, dir4, 3, 3, flow{proto: ProtoUDP, src: dir4, dst: rip4, sport: 40000, dport: 5353}, 0), statLocalReply},

	// Port-0 entries match every port of their address (and protocol).
	{"v4 tcp port-0 service, port 22", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: any4, sport: 40000, dport: 22}, nil), statRedirectFailed},
	{"v4 tcp port-0 service, port 443", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: any4, sport: 40000, dport: 443}, nil), statRedirectFailed},
	{"v4 tcp reply from port-0 real", fromFlow(flow{proto: ProtoTCP, src: anyr4, dst: cip4, sport: 22, dport: 40000}, nil), statRedirectFailed},
	{"v4 udp to port-0 tcp service", fromFlow(flow{proto: ProtoUDP, src: cip4, dst: any4, sport: 40000, dport: 22}, nil), statPassed},
	{"v4 time exceeded about a port-0 real's request", icmpErr(anyr4, cip4, 11, 0, flow{proto: ProtoTCP, src: cip4, dst: anyr4, sport: 40000, dport: 993}, 0), statRedirectFailed},

	// Misses.
	{"v4 other port", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 81}, nil), statPassed},
	{"v4 other proto", fromFlow(flow{proto: ProtoUDP, src: cip4, dst: vip4, sport: 40000, dport: 80}, nil), statPassed},
	{"v4 other addr", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: other, sport: 40000, dport: 80}, nil), statPassed},
	{"v6 other port", fromFlow(flow{proto: ProtoTCP, src: cip6, dst: vip6, sport: 40000, dport: 80}, nil), statPassed},
	{"v6 other proto", fromFlow(flow{proto: ProtoTCP, src: cip6, dst: vip6, sport: 40000, dport: 53}, nil), statPassed},
	{"v6 other addr", fromFlow(flow{proto: ProtoTCP, src: cip6, dst: rip6, sport: 40000, dport: 443}, nil), statPassed},
	{"v4 service as source", fromFlow(flow{proto: ProtoTCP, src: vip4, dst: cip4, sport: 80, dport: 40000}, nil), statPassed},
	{"v4 real as destination", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: rip4, sport: 40000, dport: 8080}, nil), statPassed},
	{"v4 real other source port", fromFlow(flow{proto: ProtoTCP, src: rip4, dst: cip4, sport: 8081, dport: 40000}, nil), statPassed},
	{"v4 real other proto", fromFlow(flow{proto: ProtoUDP, src: rip4, dst: cip4, sport: 8080, dport: 40000}, nil), statPassed},
	{"v4 icmp echo to vip", func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: cip4.AsSlice(), DstIP: vip4.AsSlice()}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload("ping"))...)
	}, statPassed},
	{"v6 first fragment to service", frag6(0), statRedirectFailed},

	// Fragments without an L4 header: matched by address and protocol.
	{"v4 non-first fragment to service address", frag4(185), statRedirectFailed},
	{"v4 non-first fragment vlan", func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cip4.AsSlice(), DstIP: vip4.AsSlice(), FragOffset: 3}
		return serialize(tb, append(ethernet(true, layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))...)
	}, statRedirectFailed},
	{"v6 non-first fragment to service address", frag6(185), statRedirectFailed},
	{"v4 non-first fragment from real", func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: rip4.AsSlice(), DstIP: cip4.AsSlice(), FragOffset: 3}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))...)
	}, statRedirectFailed},
	{"v4 non-first fragment other address", func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: cip4.AsSlice(), DstIP: other.AsSlice(), FragOffset: 3}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))...)
	}, statFragment},
	{"v4 non-first fragment other proto", func(tb testing.TB) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolGRE, SrcIP: cip4.AsSlice(), DstIP: vip4.AsSlice(), FragOffset: 3}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))...)
	}, statFragment},

	// ICMP errors quoting a packet of a service (from the client side) or to a real server.
	{"v4 port unreachable about a service's reply", icmpErr(cip4, vip4, 3, 3, flow{proto: ProtoUDP, src: vip4, dst: cip4, sport: 53, dport: 40000}, 0), statRedirectFailed},
	{"v4 frag needed about a service's reply, 8 bytes quoted", icmpErr(other, vip4, 3, 4, flow{proto: ProtoTCP, src: vip4, dst: cip4, sport: 80, dport: 40000}, 28), statRedirectFailed},
	{"v4 time exceeded about a real's request", icmpErr(rip4, cip4, 11, 0, flow{proto: ProtoTCP, src: cip4, dst: rip4, sport: 40000, dport: 8080}, 0), statRedirectFailed},
	{"v6 packet too big about a service's reply", icmpErr(cip6, vip6, 2, 0, flow{proto: ProtoTCP, src: vip6, dst: cip6, sport: 443, dport: 40000}, 0), statRedirectFailed},
	{"v6 port unreachable about a real's request", icmpErr(rip6, cip6, 1, 4, flow{proto: ProtoUDP, src: cip6, dst: rip6, sport: 40000, dport: 5353}, 0), statRedirectFailed},
	{"v6 time exceeded about a real's request", icmpErr(rip6, cip6, 3, 0, flow{proto: ProtoTCP, src: cip6, dst: rip6, sport: 40000, dport: 8080}, 0), statRedirectFailed},
	{"v4 port unreachable about another port", icmpErr(cip4, vip4, 3, 3, flow{proto: ProtoUDP, src: vip4, dst: cip4, sport: 54, dport: 40000}, 0), statPassed},
	{"v4 redirect about a service's reply", icmpErr(cip4, vip4, 5, 0, flow{proto: ProtoUDP, src: vip4, dst: cip4, sport: 53, dport: 40000}, 0), statPassed},
	{"v4 error quoting 3 port bytes", icmpErr(cip4, vip4, 3, 3, flow{proto: ProtoUDP, src: vip4, dst: cip4, sport: 53, dport: 40000}, 23), statPassed},
	{"v6 echo request to vip", icmpErr(cip6, vip6, 128, 0, flow{proto: ProtoUDP, src: vip6, dst: cip6, sport: 53, dport: 40000}, 0), statPassed},

	// Not IP.
	{"arp", func(tb testing.TB) []byte {
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: cip4.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: vip4.AsSlice()}
		return serialize(tb, append(ethernet(false, layers.EthernetTypeARP), arp)...)
	}, statNonIP},
	{"arp vlan", func(tb testing.TB) []byte {
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: cip4.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: vip4.AsSlice()}
		return serialize(tb, append(ethernet(true, layers.EthernetTypeARP), arp)...)
	}, statNonIP},
	{"double vlan tag", func(tb testing.TB) []byte {
		// Only one 802.1Q tag is parsed: an inner tag's EtherType is not IP.
		b := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, vlan: true}.frame(tb)
		out := append([]byte{}, b[:16]...)
		out = append(out, 0x81, 0x00, 0x00, 0x2b)
		return append(out, b[16:]...)
	}, statNonIP},
	{"802.1ad tag", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, vlan: true}, func(b []byte, _ int) {
		put16(b[12:], 0x88a8)
	}), statNonIP},
	{"ethernet header only, unknown type", func(testing.TB) []byte {
		return append(append(append([]byte{}, macB...), macA...), 0x88, 0xcc)
	}, statNonIP},

	// Malformed headers.
	{"ethernet header only, ipv4 type", func(testing.TB) []byte {
		return append(append(append([]byte{}, macB...), macA...), 0x08, 0x00)
	}, statMalformed},
	{"truncated vlan tag", func(testing.TB) []byte {
		return append(append(append([]byte{}, macB...), macA...), 0x81, 0x00, 0x00)
	}, statMalformed},
	{"v4 version 5", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		b[l3] = 0x55
	}), statMalformed},
	{"v4 version 6 in ipv4 ethertype", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		b[l3] = 0x65
	}), statMalformed},
	{"v4 ihl 4", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		b[l3] = 0x44
	}), statMalformed},
	{"v4 ihl beyond total length", fromFlow(flow{proto: ProtoUDP, src: cip4, dst: vip4, sport: 40000, dport: 53}, func(b []byte, l3 int) {
		b[l3] = 0x4f // 60-byte header in a 28-byte packet
	}), statMalformed},
	{"v4 total length beyond frame", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		put16(b[l3+2:], uint16(len(b)-l3+1))
	}), statMalformed},
	{"v4 total length below header", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		put16(b[l3+2:], 19)
	}), statMalformed},
	{"v4 total length cuts tcp header", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		put16(b[l3+2:], 20+19)
	}), statMalformed},
	{"v4 total length cuts udp header", fromFlow(flow{proto: ProtoUDP, src: cip4, dst: vip4, sport: 40000, dport: 53}, func(b []byte, l3 int) {
		put16(b[l3+2:], 20+7)
	}), statMalformed},
	{"v4 tcp data offset 4", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}, func(b []byte, l3 int) {
		b[l3+20+12] = 4 << 4
	}), statMalformed},
	{"v4 tcp data offset beyond packet", fromFlow(flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 8}, func(b []byte, l3 int) {
		b[l3+20+12] = 15 << 4 // 60 bytes claimed, 28 present
	}), statMalformed},
	{"v6 version 4 in ipv6 ethertype", fromFlow(flow{proto: ProtoTCP, src: cip6, dst: vip6, sport: 40000, dport: 443}, func(b []byte, l3 int) {
		b[l3] = 0x40
	}), statMalformed},
	{"v6 payload length beyond frame", fromFlow(flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 53}, func(b []byte, l3 int) {
		put16(b[l3+4:], uint16(len(b)-l3-40+1))
	}), statMalformed},
	{"v6 payload length cuts udp header", fromFlow(flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 53}, func(b []byte, l3 int) {
		put16(b[l3+4:], 7)
	}), statMalformed},
	{"v6 fragment header cut", func(tb testing.TB) []byte {
		b := frag6(185)(tb)
		put16(b[14+4:], 7)
		return b
	}, statMalformed},
}

func TestClassify(t *testing.T) {
	h := newHarness(t)
	for _, tc := range classifyCases {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame(t)
			ret, slot := classify(t, h.p, frame, nil)
			if ret != xdpPass || slot != tc.wantSlot {
				t.Errorf("got verdict %d slot %d, want %d slot %d", ret, slot, xdpPass, tc.wantSlot)
			}
			// The reference model must agree with the table, or one of them is wrong.
			if rret, rslot := h.ref.classify(frame, false); rret != ret || rslot != slot {
				t.Errorf("reference model says verdict %d slot %d, program %d slot %d", rret, rslot, ret, slot)
			}
		})
	}
}

// TestClassifyPrefixes cuts every frame that has a valid IP packet at every length from
// the Ethernet header on: a cut header is always malformed, never matched.
func TestClassifyPrefixes(t *testing.T) {
	h := newHarness(t)
	start, err := h.p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, tc := range classifyCases {
		if tc.wantSlot == statMalformed || tc.wantSlot == statNonIP {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame(t)
			ip := frame[14:]
			if be16(frame[12:]) == 0x8100 {
				ip = frame[18:]
			}
			ipLen := len(ip)
			if ip[0]>>4 == 4 {
				ipLen = int(be16(ip[2:]))
			}
			full := len(frame) - len(ip) + ipLen // frame without Ethernet padding
			for n := 14; n < full; n++ {
				ret, slot := classify(t, h.p, frame[:n], nil)
				runs++
				if ret != xdpPass || slot != statMalformed {
					t.Errorf("prefix of %d of %d bytes: verdict %d slot %d, want %d slot %d (malformed)",
						n, full, ret, slot, xdpPass, statMalformed)
				}
				if rret, rslot := h.ref.classify(frame[:n], false); rret != ret || rslot != slot {
					t.Errorf("prefix of %d bytes: reference says verdict %d slot %d, program %d slot %d", n, rret, rslot, ret, slot)
				}
			}
		})
	}
	end, err := h.p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := end.Total() - start.Total(); got != uint64(runs) {
		t.Errorf("counters grew by %d over %d runs; every run must count exactly once", got, runs)
	}
	if end.Malformed-start.Malformed != uint64(runs) {
		t.Errorf("malformed grew by %d over %d runs of cut frames", end.Malformed-start.Malformed, runs)
	}
}

// TestClassifyShortFrame documents the kernel's limit: BPF_PROG_TEST_RUN refuses XDP
// input shorter than an Ethernet header, so such prefixes cannot be run at all.
func TestClassifyShortFrame(t *testing.T) {
	h := newHarness(t)
	for n := 0; n < 14; n++ {
		_, err := h.p.Program().Run(&ebpf.RunOptions{Data: make([]byte, n)})
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("%d-byte frame: got error %v, want EINVAL", n, err)
		}
	}
}

// FuzzClassify compares the program with the reference model on arbitrary frames.
func FuzzClassify(f *testing.F) {
	h := newHarness(f)
	for _, tc := range classifyCases {
		f.Add(tc.frame(f))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 1514 {
			return // the kernel refuses < 14; > 1514 adds nothing
		}
		ret, slot := classify(t, h.p, frame, nil)
		if rret, rslot := h.ref.classify(frame, false); rret != ret || rslot != slot {
			t.Fatalf("frame % x: program verdict %d slot %d, reference %d slot %d", frame, ret, slot, rret, rslot)
		}
		if ret != xdpPass {
			t.Fatalf("frame % x: verdict %d without a socket, want XDP_PASS", frame, ret)
		}
	})
}
