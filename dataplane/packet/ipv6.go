package packet

import "encoding/binary"

// IPv6 next-header values that are extension headers or otherwise matter to
// the parser.
const (
	IPv6NextHopByHop = 0
	IPv6NextRouting  = 43
	IPv6NextFragment = 44
	IPv6NextNone     = 59
	IPv6NextDstOpts  = 60
)

// IPv6 is a view of the fixed IPv6 header (RFC 8200, section 3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+                         Source Address                        +
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+                      Destination Address                      +
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv6 []byte

const (
	ipv6VerTCFlow = 0
	ipv6PayLen    = 4
	ipv6NextHdr   = 6
	ipv6HopLimit  = 7
	ipv6Src       = 8
	ipv6Dst       = 24
)

// IsValid reports whether the view holds the whole fixed header, the version
// is 6, and the payload fits in pktSize bytes together with the header.
func (h IPv6) IsValid(pktSize int) bool {
	return len(h) >= IPv6HeaderLen && h[ipv6VerTCFlow]>>4 == 6 &&
		IPv6HeaderLen+int(h.PayloadLength()) <= pktSize
}

// Version returns the IP version field.
func (h IPv6) Version() uint8 { return h[ipv6VerTCFlow] >> 4 }

// SetVersionTrafficClassFlowLabel sets version 6 with the given traffic class
// and the low 20 bits of flow.
func (h IPv6) SetVersionTrafficClassFlowLabel(tc uint8, flow uint32) {
	binary.BigEndian.PutUint32(h[ipv6VerTCFlow:], 6<<28|uint32(tc)<<20|flow&0xFFFFF)
}

// TrafficClass returns the traffic class (DSCP and ECN) byte.
func (h IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(h[ipv6VerTCFlow:]) >> 4)
}

// FlowLabel returns the 20-bit flow label.
func (h IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(h[ipv6VerTCFlow:]) & 0xFFFFF }

// PayloadLength returns the length of the payload after the fixed header,
// extension headers included.
func (h IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(h[ipv6PayLen:]) }

// SetPayloadLength sets the payload length field.
func (h IPv6) SetPayloadLength(v uint16) { binary.BigEndian.PutUint16(h[ipv6PayLen:], v) }

// NextHeader returns the next-header field.
func (h IPv6) NextHeader() uint8 { return h[ipv6NextHdr] }

// SetNextHeader sets the next-header field.
func (h IPv6) SetNextHeader(v uint8) { h[ipv6NextHdr] = v }

// HopLimit returns the hop limit.
func (h IPv6) HopLimit() uint8 { return h[ipv6HopLimit] }

// SetHopLimit sets the hop limit.
func (h IPv6) SetHopLimit(v uint8) { h[ipv6HopLimit] = v }

// SourceAddress returns the source address.
func (h IPv6) SourceAddress() [16]byte { return [16]byte(h[ipv6Src : ipv6Src+16]) }

// DestinationAddress returns the destination address.
func (h IPv6) DestinationAddress() [16]byte { return [16]byte(h[ipv6Dst : ipv6Dst+16]) }

// SetSourceAddress sets the source address. Transport checksums are not
// updated; see RewriteSrc.
func (h IPv6) SetSourceAddress(a [16]byte) { copy(h[ipv6Src:ipv6Src+16], a[:]) }

// SetDestinationAddress sets the destination address. Transport checksums
// are not updated; see RewriteDst.
func (h IPv6) SetDestinationAddress(a [16]byte) { copy(h[ipv6Dst:ipv6Dst+16], a[:]) }

// Payload returns the bytes after the fixed header up to the payload length.
// The view must be valid (see IsValid).
func (h IPv6) Payload() []byte { return h[IPv6HeaderLen : IPv6HeaderLen+int(h.PayloadLength())] }
