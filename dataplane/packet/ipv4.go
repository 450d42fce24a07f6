package packet

import "encoding/binary"

// IP protocol numbers.
const (
	ProtoICMP   = 1
	ProtoIPIP   = 4
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// IPv4 flag bits, as they appear in the high bits of FlagsFragmentOffset.
const (
	IPv4FlagDF = 0x4000 // don't fragment
	IPv4FlagMF = 0x2000 // more fragments
)

// ipv4FragOffMask selects the fragment offset (in 8-byte units) from the
// flags and fragment offset word.
const ipv4FragOffMask = 0x1FFF

// IPv4 is a view of an IPv4 header (RFC 791, section 3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// IHL counts 32-bit words (5..15). Addresses are returned and taken as
// IPv4-mapped [16]byte values.
type IPv4 []byte

const (
	ipv4VerIHL    = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Proto     = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16
)

// v4InV6Prefix is the first 12 bytes of an IPv4-mapped IPv6 address.
var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// IsValid reports whether the view holds a whole, self-consistent IPv4
// header of a packet that fits in pktSize bytes: version 4, IHL >= 5, the
// header (options included) within the view, and header length <= total
// length <= pktSize.
func (h IPv4) IsValid(pktSize int) bool {
	if len(h) < IPv4MinHeaderLen || h[ipv4VerIHL]>>4 != 4 {
		return false
	}
	hl := h.HeaderLength()
	tl := int(h.TotalLength())
	return hl >= IPv4MinHeaderLen && hl <= len(h) && hl <= tl && tl <= pktSize
}

// Version returns the IP version field.
func (h IPv4) Version() uint8 { return h[ipv4VerIHL] >> 4 }

// HeaderLength returns the header length in bytes (IHL * 4).
func (h IPv4) HeaderLength() int { return int(h[ipv4VerIHL]&0x0F) * 4 }

// SetVersionIHL sets version 4 and the header length in bytes, which must be
// a multiple of 4 between 20 and 60.
func (h IPv4) SetVersionIHL(headerLen int) { h[ipv4VerIHL] = 0x40 | uint8(headerLen/4)&0x0F }

// TOS returns the type-of-service (DSCP and ECN) byte.
func (h IPv4) TOS() uint8 { return h[ipv4TOS] }

// SetTOS sets the type-of-service byte. The checksum is not updated.
func (h IPv4) SetTOS(v uint8) { h[ipv4TOS] = v }

// TotalLength returns the length of the packet, header included.
func (h IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(h[ipv4TotalLen:]) }

// SetTotalLength sets the total length. The checksum is not updated.
func (h IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(h[ipv4TotalLen:], v) }

// ID returns the identification field.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[ipv4ID:]) }

// SetID sets the identification field. The checksum is not updated.
func (h IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(h[ipv4ID:], v) }

// FlagsFragmentOffset returns the raw flags and fragment offset word.
func (h IPv4) FlagsFragmentOffset() uint16 { return binary.BigEndian.Uint16(h[ipv4FlagsFrag:]) }

// SetFlagsFragmentOffset sets the raw flags and fragment offset word
// (for example IPv4FlagDF). The checksum is not updated.
func (h IPv4) SetFlagsFragmentOffset(v uint16) { binary.BigEndian.PutUint16(h[ipv4FlagsFrag:], v) }

// DontFragment reports whether the DF flag is set.
func (h IPv4) DontFragment() bool { return h.FlagsFragmentOffset()&IPv4FlagDF != 0 }

// MoreFragments reports whether the MF flag is set.
func (h IPv4) MoreFragments() bool { return h.FlagsFragmentOffset()&IPv4FlagMF != 0 }

// FragmentOffset returns the fragment offset in bytes.
func (h IPv4) FragmentOffset() uint16 { return (h.FlagsFragmentOffset() & ipv4FragOffMask) * 8 }

// IsFragment reports whether the packet is a fragment: MF set or a non-zero
// fragment offset.
func (h IPv4) IsFragment() bool {
	return h.FlagsFragmentOffset()&(IPv4FlagMF|ipv4FragOffMask) != 0
}

// TTL returns the time-to-live field.
func (h IPv4) TTL() uint8 { return h[ipv4TTL] }

// SetTTL sets the time-to-live field. The checksum is not updated.
func (h IPv4) SetTTL(v uint8) { h[ipv4TTL] = v }

// Protocol returns the protocol of the payload (ProtoTCP, ProtoUDP, ...).
func (h IPv4) Protocol() uint8 { return h[ipv4Proto] }

// SetProtocol sets the protocol field. The checksum is not updated.
func (h IPv4) SetProtocol(v uint8) { h[ipv4Proto] = v }

// Checksum returns the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[ipv4Checksum:]) }

// SetChecksum sets the header checksum field.
func (h IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[ipv4Checksum:], v) }

// SourceAddress returns the source address, IPv4-mapped.
func (h IPv4) SourceAddress() [16]byte { return mapped4(h[ipv4Src : ipv4Src+4]) }

// DestinationAddress returns the destination address, IPv4-mapped.
func (h IPv4) DestinationAddress() [16]byte { return mapped4(h[ipv4Dst : ipv4Dst+4]) }

// mapped4 returns the IPv4-mapped form of the 4-byte address b.
func mapped4(b []byte) (a [16]byte) {
	putMapped4(&a, b)
	return a
}

// putMapped4 stores the IPv4-mapped form of the 4-byte address b in a.
func putMapped4(a *[16]byte, b []byte) {
	binary.BigEndian.PutUint64(a[0:8], 0)
	binary.BigEndian.PutUint64(a[8:16], 0x0000FFFF<<32|uint64(binary.BigEndian.Uint32(b)))
}

// SetSourceAddress writes the last four bytes of a as the source address.
// The checksum is not updated; see RewriteSrc for a rewrite that updates it.
func (h IPv4) SetSourceAddress(a [16]byte) { copy(h[ipv4Src:ipv4Src+4], a[12:]) }

// SetDestinationAddress writes the last four bytes of a as the destination
// address. The checksum is not updated; see RewriteDst.
func (h IPv4) SetDestinationAddress(a [16]byte) { copy(h[ipv4Dst:ipv4Dst+4], a[12:]) }

// Payload returns the bytes after the header up to the total length. The
// view must be valid (see IsValid).
func (h IPv4) Payload() []byte { return h[h.HeaderLength():h.TotalLength()] }

// ComputeChecksum recomputes the header checksum over HeaderLength bytes and
// stores it. A view too short for its header is left unchanged.
func (h IPv4) ComputeChecksum() {
	hl := h.headerLenChecked()
	if hl == 0 {
		return
	}
	h.SetChecksum(0)
	if hl == IPv4MinHeaderLen {
		h.SetChecksum(^sum20(h[:IPv4MinHeaderLen:IPv4MinHeaderLen]))
		return
	}
	h.SetChecksum(^Fold(Checksum(h[:hl], 0)))
}

// sum20 is Fold(Checksum(b, 0)) for a 20-byte b (an IPv4 header without options, what
// every header the director writes is): five 32-bit words, whose sum folds to that of
// their 16-bit halves since 2^16 ≡ 1 modulo 0xFFFF.
func sum20(b []byte) uint16 {
	b = b[:20:20]
	s := uint64(binary.BigEndian.Uint32(b[0:])) + uint64(binary.BigEndian.Uint32(b[4:])) +
		uint64(binary.BigEndian.Uint32(b[8:])) + uint64(binary.BigEndian.Uint32(b[12:])) +
		uint64(binary.BigEndian.Uint32(b[16:]))
	s = s>>32 + s&0xFFFFFFFF // < 2^32 + 5
	s = s>>32 + s&0xFFFFFFFF
	return Fold(uint32(s))
}

// IPv4HeaderChecksumValid reports whether h holds a whole IPv4 header (IHL
// included) whose checksum verifies.
func IPv4HeaderChecksumValid(h IPv4) bool {
	hl := h.headerLenChecked()
	return hl != 0 && Fold(Checksum(h[:hl], 0)) == 0xFFFF
}

// headerLenChecked returns the header length when the view holds at least
// the minimal header and the IHL-sized header, and zero otherwise.
func (h IPv4) headerLenChecked() int {
	if len(h) < IPv4MinHeaderLen {
		return 0
	}
	hl := h.HeaderLength()
	if hl < IPv4MinHeaderLen || hl > len(h) {
		return 0
	}
	return hl
}

// IsIPv4Mapped reports whether a is an IPv4-mapped address (::ffff:a.b.c.d).
func IsIPv4Mapped(a [16]byte) bool { return [12]byte(a[:12]) == v4InV6Prefix }
