package packet

import "encoding/binary"

// FlowNAT is what DecrementTTL followed by RewriteDst, RewriteSrc or RewriteFullNAT
// does to each packet of one TCP or UDP flow, with the checksum deltas worked out once
// for the flow: the addresses and ports that change are the same in every packet of it,
// so the sums of ~old + new are too. A worker that forwards a burst of one flow's packets
// computes it from the first (NewFlowNAT, NewFlowFullNAT) and applies it to the others
// (Apply), which leaves them byte for byte as DecrementTTL and the rewrite would have.
// It holds no pointers.
type FlowNAT struct {
	src, dst      [16]byte // the new source and destination addresses (of the sides that change)
	sport, dport  uint16
	family, proto uint8
	sides         uint8  // sideSrc, sideDst or both
	l3            uint32 // IPv4: the header checksum's delta for the addresses
	l4            uint32 // the transport checksum's delta for the addresses and ports
}

// ttlDelta is what a TTL decrement adds to an IPv4 header's one's complement sum: the
// word of TTL and protocol goes from w to w-0x0100, and ^w + (w-0x0100) is 0xFEFF for
// every w with a TTL above 1. DecrementTTL folds it into the checksum, then the rewrite
// folds in its own delta d; one fold of ^checksum + ttlDelta + d gives the same 16 bits,
// since folding is addition modulo 0xFFFF and neither way can end at zero (ttlDelta is
// not), so neither meets one's complement's second zero.
const ttlDelta = 0xFEFF

// The sides of a packet a FlowNAT rewrites.
const (
	sideSrc uint8 = 1 << iota
	sideDst
)

// NewFlowNAT returns the rewrite of the flow of the packet info describes (not
// changed) to address addr (in the packet's family, IPv4-mapped for IPv4) and port:
// the source when src (RewriteSrc), else the destination (RewriteDst). It reports
// false for a packet Apply does not take: neither TCP nor UDP, a fragment, or a family
// other than 4 and 6.
func NewFlowNAT(info *Info, src bool, addr [16]byte, port uint16) (FlowNAT, bool) {
	n := FlowNAT{family: info.Family, proto: info.Proto, sides: sideDst}
	old, oldPort := &info.Dst, info.DstPort
	n.dst, n.dport = addr, port
	if src {
		n.sides, old, oldPort = sideSrc, &info.Src, info.SrcPort
		n.src, n.sport = addr, port
	}
	if info.Frag || info.Proto != ProtoTCP && info.Proto != ProtoUDP {
		return n, false
	}
	switch info.Family {
	case 4:
		n.l3 = addr4Delta(old[12:16], addr[12:16])
		n.l4 = n.l3
	case 6:
		n.l4 = addr16Delta(old[:], addr[:])
	default:
		return n, false
	}
	// As rewrite adds the port's words to the address's delta (unfolded).
	n.l4 += uint32(^oldPort) + uint32(port)
	return n, true
}

// NewFlowFullNAT is NewFlowNAT for RewriteFullNAT: both ends of the flow change, the
// source to src:sport and the destination to dst:dport.
func NewFlowFullNAT(info *Info, src [16]byte, sport uint16, dst [16]byte, dport uint16) (FlowNAT, bool) {
	n := FlowNAT{src: src, dst: dst, sport: sport, dport: dport, family: info.Family, proto: info.Proto, sides: sideSrc | sideDst}
	if info.Frag || info.Proto != ProtoTCP && info.Proto != ProtoUDP {
		return n, false
	}
	// As RewriteFullNAT sums them.
	switch info.Family {
	case 4:
		n.l3 = uint32(Fold(fieldDelta(info.Src[12:16], src[12:16]) + fieldDelta(info.Dst[12:16], dst[12:16])))
		n.l4 = n.l3
	case 6:
		n.l4 = uint32(Fold(fieldDelta(info.Src[:], src[:]) + fieldDelta(info.Dst[:], dst[:])))
	default:
		return n, false
	}
	n.l4 += uint32(^info.SrcPort) + uint32(sport)
	n.l4 += uint32(^info.DstPort) + uint32(dport)
	return n, true
}

// Apply decrements the TTL (hop limit) of the packet info describes and rewrites its
// addresses and ports, as DecrementTTL and then RewriteDst, RewriteSrc or RewriteFullNAT
// would, and stores the new ones in info. The packet must belong to the flow n was made
// for: the same family and protocol, and the addresses and ports that change equal to
// those NewFlowNAT saw (the caller knows it is the same connection). It reports false and
// changes nothing when the TTL is 1 or 0, the packet is a fragment or of another family
// or protocol, or its headers do not fit the frame: the caller then takes the packet
// through DecrementTTL and the rewrite, which say what is wrong with it.
func (n *FlowNAT) Apply(frame []byte, info *Info) bool {
	if info.Frag || info.Family != n.family || info.Proto != n.proto {
		return false
	}
	l3, l4 := int(info.L3Off), int(info.L4Off)
	csumOff, hdr := tcpChecksum, TCPMinHeaderLen
	if n.proto == ProtoUDP {
		csumOff, hdr = udpChecksum, UDPHeaderLen
	}
	if l4+hdr > len(frame) {
		return false
	}
	tp := frame[l4 : l4+hdr]
	if n.family == 4 {
		if l3+IPv4MinHeaderLen > l4 {
			return false
		}
		ip := frame[l3 : l3+IPv4MinHeaderLen : l3+IPv4MinHeaderLen]
		ttl := ip[ipv4TTL]
		if ttl <= 1 {
			return false
		}
		ip[ipv4TTL] = ttl - 1
		// DecrementTTL's update and rewrite's in one sum, which gives the same bytes as
		// the two steps (ttlDelta has why).
		hc := binary.BigEndian.Uint16(ip[ipv4Checksum:])
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], ^Fold(uint32(^hc)+ttlDelta+n.l3))
		if n.sides&sideSrc != 0 {
			binary.BigEndian.PutUint32(ip[ipv4Src:], binary.BigEndian.Uint32(n.src[12:16]))
		}
		if n.sides&sideDst != 0 {
			binary.BigEndian.PutUint32(ip[ipv4Dst:], binary.BigEndian.Uint32(n.dst[12:16]))
		}
	} else {
		if l3+IPv6HeaderLen > l4 {
			return false
		}
		ip := frame[l3 : l3+IPv6HeaderLen : l3+IPv6HeaderLen]
		hl := ip[ipv6HopLimit]
		if hl <= 1 {
			return false
		}
		ip[ipv6HopLimit] = hl - 1
		if n.sides&sideSrc != 0 {
			*(*[16]byte)(ip[ipv6Src:]) = n.src
		}
		if n.sides&sideDst != 0 {
			*(*[16]byte)(ip[ipv6Dst:]) = n.dst
		}
	}
	if n.sides&sideSrc != 0 {
		binary.BigEndian.PutUint16(tp[tcpSrcPort:], n.sport)
		info.Src, info.SrcPort = n.src, n.sport
	}
	if n.sides&sideDst != 0 {
		binary.BigEndian.PutUint16(tp[tcpDstPort:], n.dport)
		info.Dst, info.DstPort = n.dst, n.dport
	}
	patchL4Checksum(tp[csumOff:csumOff+2], info, n.l4)
	return true
}
