package packet

import "encoding/binary"

// ParseRepeat parses frame as a repeat of the packet prev describes: the next packet of
// the same flow, as a TCP stream's segments come one after the other in a batch. prev
// must be what Parse gave ResultOK for (not a fragment). When frame is a whole TCP or
// UDP packet with prev's headers in every field Parse reads but the IP length and the
// TCP flags — no VLAN tag, the same IP version and header length, protocol, addresses
// and ports, not a fragment — ParseRepeat fills info exactly as Parse would and returns
// true, having read a few words instead of walking the headers. Otherwise it returns
// false and info is undefined: call Parse. It never reads outside frame.
func ParseRepeat(prev *Info, frame []byte, info *Info) bool {
	// Ports first (TCP's and UDP's headers start alike, two ports in one word): they
	// tell apart most flows of one client.
	l4 := int(prev.L4Off)
	if len(frame) < l4+4 || binary.BigEndian.Uint32(frame[l4:]) != uint32(prev.SrcPort)<<16|uint32(prev.DstPort) {
		return false
	}
	return ParseRepeatPorts(prev, frame, info)
}

// ParseRepeatPorts is ParseRepeat for a caller that has found prev's ports in frame
// already (the word at prev.L4Off): it does the rest of ParseRepeat's checks. Given a
// frame without them there, it may return true.
func ParseRepeatPorts(prev *Info, frame []byte, info *Info) bool {
	const l3 = EthernetHeaderLen
	l4 := int(prev.L4Off)
	if prev.HasVLAN || prev.Frag || prev.L3Off != l3 || l4 < l3+IPv4MinHeaderLen || len(frame) < l4+UDPHeaderLen {
		return false
	}
	// Fixed offsets in arrays: no bounds checks past the one of each conversion.
	hl := l4 - l3
	var tl int
	switch prev.Family {
	case 4:
		h := (*[l3 + IPv4MinHeaderLen]byte)(frame)
		// Version 4 and prev's header length; protocol; neither MF nor an offset.
		if binary.BigEndian.Uint16(h[ethType:]) != EtherTypeIPv4 || int(h[l3+ipv4VerIHL]) != 0x40|hl>>2 ||
			h[l3+ipv4Proto] != prev.Proto || binary.BigEndian.Uint16(h[l3+ipv4FlagsFrag:])&(IPv4FlagMF|ipv4FragOffMask) != 0 ||
			binary.NativeEndian.Uint64(h[l3+ipv4Src:]) != uint64(binary.NativeEndian.Uint32(prev.Src[12:]))|uint64(binary.NativeEndian.Uint32(prev.Dst[12:]))<<32 {
			return false
		}
		tl = int(binary.BigEndian.Uint16(h[l3+ipv4TotalLen:]))
	case 6:
		if hl != IPv6HeaderLen {
			return false
		}
		h := (*[l3 + IPv6HeaderLen]byte)(frame)
		if binary.BigEndian.Uint16(h[ethType:]) != EtherTypeIPv6 || h[l3+ipv6VerTCFlow]>>4 != 6 || h[l3+ipv6NextHdr] != prev.Proto ||
			[16]byte(h[l3+ipv6Src:]) != prev.Src || [16]byte(h[l3+ipv6Dst:]) != prev.Dst {
			return false
		}
		tl = IPv6HeaderLen + int(binary.BigEndian.Uint16(h[l3+ipv6PayLen:]))
	default:
		return false
	}
	ip := frame[l3:]
	if tl < hl || tl > len(ip) || tl > 0xFFFF {
		return false
	}
	seg := ip[hl:tl]
	var flags uint8
	switch prev.Proto {
	case ProtoTCP:
		t := TCP(seg)
		if !t.IsValid(len(seg)) {
			return false
		}
		flags = t.Flags()
	case ProtoUDP:
		if !UDP(seg).IsValid(len(seg)) {
			return false
		}
	default:
		return false
	}
	*info = *prev
	info.L3Len, info.TCPFlags = uint16(tl), flags
	return true
}
