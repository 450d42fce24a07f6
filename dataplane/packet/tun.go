package packet

import (
	"encoding/binary"
	"strconv"
)

// ProtoIPv6Encap is the IP protocol number of an encapsulated IPv6 packet (ip6ip6).
const ProtoIPv6Encap = 41

// ProtoGRE is the IP protocol number of GRE (RFC 2784).
const ProtoGRE = 47

// EncapType is a TUN real server's tunnel type (ipvsadm --tun-type).
type EncapType uint8

// Tunnel types.
const (
	// EncapIPIP: IPv4-in-IPv4 (protocol 4) or IPv6-in-IPv6 (next header 41), the outer IP
	// header alone.
	EncapIPIP EncapType = iota
	// EncapGUE: an outer IP header, UDP to the real server's Port and a 4-byte GUE header
	// (version 0, no options: draft-ietf-intarea-gue) naming the inner protocol.
	EncapGUE
	// EncapGRE: an outer IP header and a GRE header (RFC 2784: version 0, no key or
	// sequence number) whose protocol type is the inner packet's EtherType.
	EncapGRE
)

// Encap is how a TUN real server's packets are encapsulated: ipvsadm's --tun-type,
// --tun-port and checksum option. The zero value is IPIP.
type Encap struct {
	Type EncapType
	// Csum: GUE computes the outer UDP checksum (without it the field is 0, over IPv6 too,
	// as IPVS sends it); GRE sets the checksum-present bit and computes the GRE checksum.
	// IPVS's remcsum (remote checksum offload) applies only to a packet whose checksum its
	// kernel left partial (sent locally, or merged by GRO), and IPVS computes the UDP
	// checksum for the others as with csum; every packet xlvs forwards has its checksums
	// complete, so remcsum is csum here.
	Csum bool
	Port uint16 // GUE: the UDP destination port; 0 otherwise
}

// Sizes of the headers between the outer IP header and the inner packet.
const (
	udpHeaderLen = 8
	gueHeaderLen = 4
	greHeaderLen = 4 // flags and version, protocol type
	greCsumLen   = 4 // checksum and reserved, when the C bit is set
)

// GUE source ports are picked, as Linux's udp_flow_src_port does, from its default
// local port range [32768, 61000) by the inner flow's hash.
const (
	gueSportMin = 32768
	gueSportMax = 61000
)

// extraLen is what e adds between the outer IP header and the inner packet.
func (e Encap) extraLen() int {
	switch e.Type {
	case EncapGUE:
		return udpHeaderLen + gueHeaderLen
	case EncapGRE:
		if e.Csum {
			return greHeaderLen + greCsumLen
		}
		return greHeaderLen
	}
	return 0
}

// HeaderLen is the length of everything e puts in front of an inner packet of family:
// the outer IPv4 (20) or IPv6 (40) header and, for GUE, UDP and GUE (12), for GRE, 4
// bytes, or 8 with its checksum. A packet of n bytes fits a path MTU m once
// encapsulated when n+HeaderLen ≤ m, which is the MTU IPVS derives too.
func (e Encap) HeaderLen(family uint8) int { return TunnelHeaderLen(family) + e.extraLen() }

// TunnelHeaderLen is the outer header IPIP (20) or ip6ip6 (40) adds for family 4 or 6.
func TunnelHeaderLen(family uint8) int {
	if family == 6 {
		return IPv6HeaderLen
	}
	return IPv4MinHeaderLen
}

// PutTunnelHeader writes the outer IP header of an IPIP (family 4) or ip6ip6 (family 6)
// tunnel packet into hdr, which must hold TunnelHeaderLen(family) bytes and be directly
// followed by the inner packet inner (whole, of the same family). It sets the outer
// fields as IPVS's tunnel transmit does: IPv4 — protocol 4, TOS and TTL copied from the
// inner header, DF copied from the inner packet, no fragment offset or MF, identification
// id, header checksum; IPv6 — next header 41, traffic class and hop limit copied, flow
// label 0; the ECN field of the TOS or traffic class copied unless it is CE, which
// becomes ECT(0) (RFC 3168 section 9.1.1's full-functionality option, the kernel's
// INET_ECN_encapsulate). src and dst are 16-byte addresses (IPv4-mapped for family 4). It reports false
// and writes nothing if hdr or inner is too short for family.
func PutTunnelHeader(hdr, inner []byte, family uint8, src, dst [16]byte, id uint16) bool {
	// Every same-family IPIP packet (the fast path's too) comes here: the fields are read
	// and written without putOuterIP's family switches.
	switch family {
	case 4:
		if len(hdr) < IPv4MinHeaderLen || len(inner) < IPv4MinHeaderLen || len(inner) > 0xFFFF-IPv4MinHeaderLen {
			return false
		}
		in := (*[IPv4MinHeaderLen]byte)(inner)
		df := binary.BigEndian.Uint16(in[ipv4FlagsFrag:]) & IPv4FlagDF
		putOuter4((*[IPv4MinHeaderLen]byte)(hdr), ecnEncap(in[ipv4TOS]), in[ipv4TTL], df, uint16(IPv4MinHeaderLen+len(inner)), id, ProtoIPIP, &src, &dst)
		return true
	case 6:
		if len(hdr) < IPv6HeaderLen || len(inner) < IPv6HeaderLen || len(inner) > 0xFFFF {
			return false
		}
		in := IPv6(inner)
		putOuter6(IPv6(hdr[:IPv6HeaderLen]), ecnEncap(in.TrafficClass()), in.HopLimit(), uint16(len(inner)), ProtoIPv6Encap, &src, &dst)
		return true
	}
	return false
}

// innerProto is the IP protocol number of an encapsulated packet of family: 4 (IPv4) or
// 41 (IPv6), whatever the outer header's family.
func innerProto(family uint8) uint8 {
	if family == 6 {
		return ProtoIPv6Encap
	}
	return ProtoIPIP
}

// PutEncapHeader writes everything e puts in front of inner into hdr, which must hold
// e.HeaderLen(outer) bytes and be directly followed by inner (whole, of family
// innerFam): the outer IP header of family outer as PutTunnelHeader writes it — with
// protocol 4 or 41 by the inner family for IPIP (IPv4 in IPv6 and IPv6 in IPv4 too, as
// IPVS tunnels to a real server of the service's other family), UDP for GUE, GRE for GRE;
// TOS (traffic class) and TTL (hop limit) from the inner header whatever its family, DF
// only from an inner IPv4 packet — then for GUE the UDP header (source port sport, see
// EncapSourcePort; destination e.Port; checksum with e.Csum, else 0) and a GUE header
// (version 0, no flags or options, protocol 4 or 41), for GRE the GRE header (protocol
// type 0x0800 or 0x86DD; with e.Csum the C bit and the checksum over the GRE header and
// inner), as IPVS's ip_vs_tunnel_xmit(_v6), ipvs_gue_encap and ipvs_gre_encap build them
// (net/netfilter/ipvs/ip_vs_xmit.c). It reports false and writes nothing if hdr or inner
// is too short, or a family is neither 4 nor 6.
func PutEncapHeader(hdr, inner []byte, outer, innerFam uint8, src, dst [16]byte, id uint16, e Encap, sport uint16) bool {
	ipl := TunnelHeaderLen(outer)
	x := e.extraLen()
	if len(hdr) < ipl+x || innerFam != 4 && innerFam != 6 {
		return false
	}
	etherType := uint16(EtherTypeIPv4)
	if innerFam == 6 {
		etherType = EtherTypeIPv6
	}
	switch e.Type {
	case EncapGUE:
		if !putOuterIP(hdr, inner, outer, innerFam, src, dst, id, ProtoUDP, x) {
			return false
		}
		u := hdr[ipl : ipl+x]
		ulen := uint32(x + len(inner))
		binary.BigEndian.PutUint16(u[0:], sport)
		binary.BigEndian.PutUint16(u[2:], e.Port)
		binary.BigEndian.PutUint16(u[4:], uint16(ulen))
		u[6], u[7] = 0, 0
		u[8], u[9], u[10], u[11] = 0, innerProto(innerFam), 0, 0
		if e.Csum {
			sum := Checksum(inner, Checksum(u, PseudoHeaderSum(outer, src, dst, ProtoUDP, ulen)))
			c := ^Fold(sum)
			if c == 0 {
				c = 0xFFFF // RFC 768: a computed 0 is sent as all ones
			}
			binary.BigEndian.PutUint16(u[6:], c)
		}
	case EncapGRE:
		if !putOuterIP(hdr, inner, outer, innerFam, src, dst, id, ProtoGRE, x) {
			return false
		}
		g := hdr[ipl : ipl+x]
		binary.BigEndian.PutUint16(g[2:], etherType)
		if !e.Csum {
			g[0], g[1] = 0, 0
			break
		}
		g[0], g[1] = 0x80, 0 // C: checksum present
		g[4], g[5], g[6], g[7] = 0, 0, 0, 0
		binary.BigEndian.PutUint16(g[4:], ^Fold(Checksum(inner, Checksum(g, 0))))
	default:
		return putOuterIP(hdr, inner, outer, innerFam, src, dst, id, innerProto(innerFam), 0)
	}
	return true
}

// putOuterIP writes the outer IP header of family outer into hdr[:TunnelHeaderLen(outer)]
// for a packet whose protocol is proto and whose payload is extra bytes of tunnel
// headers followed by inner, an IP packet of family innerFam: the fields PutEncapHeader
// lists, taken from inner.
func putOuterIP(hdr, inner []byte, outer, innerFam uint8, src, dst [16]byte, id uint16, proto uint8, extra int) bool {
	var tos, ttl uint8
	var df uint16
	switch innerFam {
	case 4:
		if len(inner) < IPv4MinHeaderLen {
			return false
		}
		in := (*[IPv4MinHeaderLen]byte)(inner)
		tos, ttl = in[ipv4TOS], in[ipv4TTL]
		df = binary.BigEndian.Uint16(in[ipv4FlagsFrag:]) & IPv4FlagDF
	case 6:
		if len(inner) < IPv6HeaderLen {
			return false
		}
		// IPVS writes DF 0 over an IPv6 packet (ip_vs_prepare_tunneled_skb): its path MTU
		// was checked against the tunnel's.
		in := IPv6(inner)
		tos, ttl = in.TrafficClass(), in.HopLimit()
	default:
		return false
	}
	switch outer {
	case 4:
		if len(hdr) < IPv4MinHeaderLen || len(inner)+extra > 0xFFFF-IPv4MinHeaderLen {
			return false
		}
		putOuter4((*[IPv4MinHeaderLen]byte)(hdr), ecnEncap(tos), ttl, df, uint16(IPv4MinHeaderLen+extra+len(inner)), id, proto, &src, &dst)
		return true
	case 6:
		if len(hdr) < IPv6HeaderLen || len(inner)+extra > 0xFFFF {
			return false
		}
		putOuter6(IPv6(hdr[:IPv6HeaderLen]), ecnEncap(tos), ttl, uint16(extra+len(inner)), proto, &src, &dst)
		return true
	}
	return false
}

// putOuter4 writes an outer IPv4 header of total length tl: field by field at fixed
// offsets, the checksum from the words as they are written (every tunnel packet pays for
// this header).
func putOuter4(h *[IPv4MinHeaderLen]byte, tos, ttl uint8, df, tl, id uint16, proto uint8, src, dst *[16]byte) {
	h[ipv4VerIHL], h[ipv4TOS] = 0x45, tos
	binary.BigEndian.PutUint16(h[ipv4TotalLen:], tl)
	binary.BigEndian.PutUint16(h[ipv4ID:], id)
	binary.BigEndian.PutUint16(h[ipv4FlagsFrag:], df)
	h[ipv4TTL], h[ipv4Proto] = ttl, proto
	s4, d4 := binary.BigEndian.Uint32(src[12:]), binary.BigEndian.Uint32(dst[12:])
	binary.BigEndian.PutUint32(h[ipv4Src:], s4)
	binary.BigEndian.PutUint32(h[ipv4Dst:], d4)
	sum := uint32(0x45)<<8 | uint32(tos)
	sum += uint32(tl) + uint32(id) + uint32(df) + (uint32(ttl)<<8 | uint32(proto))
	sum += s4>>16 + s4&0xFFFF + d4>>16 + d4&0xFFFF
	binary.BigEndian.PutUint16(h[ipv4Checksum:], ^Fold(sum))
}

// putOuter6 writes an outer IPv6 header (flow label 0) with payload length pl.
func putOuter6(h IPv6, tc, hops uint8, pl uint16, next uint8, src, dst *[16]byte) {
	h.SetVersionTrafficClassFlowLabel(tc, 0)
	h.SetPayloadLength(pl)
	h.SetNextHeader(next)
	h.SetHopLimit(hops)
	h.SetSourceAddress(*src)
	h.SetDestinationAddress(*dst)
}

// ecnEncap is the outer TOS or traffic class for an inner one: the same, but an ECN
// field of CE (3) becomes ECT(0) (2).
func ecnEncap(tos uint8) uint8 {
	if tos&3 == 3 {
		return tos ^ 1
	}
	return tos
}

// EncapSourcePort is the GUE source port for the packet info describes: from the
// range Linux's udp_flow_src_port uses by default, [32768, 61000), by a hash of the
// inner flow, so that a connection's packets keep one port (a real server's NIC spreads
// tunnels over its queues by it). Like the kernel's flow hash it leaves the ports out
// for a fragment, so that every fragment of a datagram leaves with the same port.
func EncapSourcePort(info *Info) uint16 {
	h := binary.LittleEndian.Uint64(info.Src[8:]) ^ binary.LittleEndian.Uint64(info.Dst[8:])*0x9E3779B97F4A7C15
	h ^= binary.LittleEndian.Uint64(info.Src[:8]) ^ binary.LittleEndian.Uint64(info.Dst[:8])<<1
	h ^= uint64(info.Proto) << 56
	if !info.Frag {
		h ^= uint64(info.SrcPort)<<16 | uint64(info.DstPort)<<32
	}
	h *= 0xFF51AFD7ED558CCD
	h ^= h >> 33
	return uint16(uint64(uint32(h))*(gueSportMax-gueSportMin)>>32 + gueSportMin)
}

// ICMP error quoting limits: an ICMPv4 error is at most 576 bytes (RFC 1812), an ICMPv6
// error at most the IPv6 minimum MTU, 1280 (RFC 4443).
const (
	icmp4MaxLen = 576
	icmp6MaxLen = 1280
)

// ICMP types and codes xlvs sends.
const (
	ICMPv4DestUnreach  uint8 = 3
	ICMPv4FragNeeded   uint8 = 4 // code of ICMPv4DestUnreach
	ICMPv4PortUnreach  uint8 = 3 // code of ICMPv4DestUnreach
	ICMPv6DestUnreach  uint8 = 1
	ICMPv6PortUnreach  uint8 = 4 // code of ICMPv6DestUnreach
	ICMPv6PacketTooBig uint8 = 2
)

// ICMPErrorLen is the length of the IP packet PutICMPError builds about an offending IP
// packet of origLen bytes in family: IP header + 8 bytes of ICMP + as much of the
// original as the limits allow.
func ICMPErrorLen(family uint8, origLen int) int {
	hl, max := IPv4MinHeaderLen, icmp4MaxLen
	if family == 6 {
		hl, max = IPv6HeaderLen, icmp6MaxLen
	}
	return min(hl+8+origLen, max)
}

// PutICMPError builds, in out, an ICMP error (IPv4 or ICMPv6 by family) about the IP
// packet orig, addressed back to orig's source from orig's destination (what a host
// answers about a packet sent to one of its addresses): typ and code, the 32-bit field
// rest (the next-hop MTU of fragmentation-needed, the MTU of Packet Too Big, else 0), and
// as much of orig as fits the limits. out must hold ICMPErrorLen(family, len(orig))
// bytes and may overlap orig only if out starts at or before orig (the quote is copied
// forward with copy's memmove semantics). It returns the IP packet's length, or 0 if orig
// is too short to be answered.
func PutICMPError(out, orig []byte, family, typ, code uint8, rest uint32, ttl uint8) int {
	n := ICMPErrorLen(family, len(orig))
	if len(out) < n {
		return 0
	}
	switch family {
	case 4:
		if len(orig) < IPv4MinHeaderLen {
			return 0
		}
		o := IPv4(orig)
		src, dst := o.DestinationAddress(), o.SourceAddress()
		tos := o.TOS()
		copy(out[IPv4MinHeaderLen+8:n], orig) // first: out may overlap orig
		h := IPv4(out[:IPv4MinHeaderLen])
		h.SetVersionIHL(IPv4MinHeaderLen)
		h.SetTOS(tos & 0xFC)
		h.SetTotalLength(uint16(n))
		h.SetID(0)
		h.SetFlagsFragmentOffset(0)
		h.SetTTL(ttl)
		h.SetProtocol(ProtoICMP)
		h.SetSourceAddress(src)
		h.SetDestinationAddress(dst)
		h.ComputeChecksum()
		m := out[IPv4MinHeaderLen:n]
		m[0], m[1] = typ, code
		binary.BigEndian.PutUint32(m[4:8], rest)
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:4], ^Fold(Checksum(m, 0)))
	case 6:
		if len(orig) < IPv6HeaderLen {
			return 0
		}
		o := IPv6(orig)
		src, dst := o.DestinationAddress(), o.SourceAddress()
		copy(out[IPv6HeaderLen+8:n], orig)
		h := IPv6(out[:IPv6HeaderLen])
		h.SetVersionTrafficClassFlowLabel(0, 0)
		h.SetPayloadLength(uint16(n - IPv6HeaderLen))
		h.SetNextHeader(ProtoICMPv6)
		h.SetHopLimit(ttl)
		h.SetSourceAddress(src)
		h.SetDestinationAddress(dst)
		m := out[IPv6HeaderLen:n]
		m[0], m[1] = typ, code
		binary.BigEndian.PutUint32(m[4:8], rest)
		m[2], m[3] = 0, 0
		sum := PseudoHeaderSum(6, src, dst, ProtoICMPv6, uint32(len(m)))
		binary.BigEndian.PutUint16(m[2:4], ^Fold(Checksum(m, sum)))
	default:
		return 0
	}
	return n
}

// String returns ipvsadm's name of t: "ipip", "gue" or "gre".
func (t EncapType) String() string {
	switch t {
	case EncapIPIP:
		return "ipip"
	case EncapGUE:
		return "gue"
	case EncapGRE:
		return "gre"
	}
	return "EncapType(" + strconv.Itoa(int(t)) + ")"
}
