package packet

import "encoding/binary"

// Header lengths in bytes.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
	IPv4MinHeaderLen  = 20
	IPv4MaxHeaderLen  = 60
	IPv6HeaderLen     = 40
	TCPMinHeaderLen   = 20
	TCPMaxHeaderLen   = 60
	UDPHeaderLen      = 8
	ICMPv4HeaderLen   = 8
	ICMPv6HeaderLen   = 8

	IPv6FragmentHeaderLen = 8
)

// EtherType values.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86DD
	EtherTypeVLAN = 0x8100
	EtherTypeARP  = 0x0806
)

// Ethernet is a view of an Ethernet II header:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                   Destination MAC address                     |
//	+                               +-------------------------------+
//	|                               |                               |
//	+-------------------------------+                               +
//	|                      Source MAC address                       |
//	+-------------------------------+-------------------------------+
//	|           EtherType           |
//	+-------------------------------+
//
// With an 802.1Q tag, the EtherType field holds EtherTypeVLAN and is followed
// by the tag control information (PCP, DEI, VLAN ID) and the real EtherType:
//
//	+-------------------------------+-------------------------------+
//	|      EtherType = 0x8100       | PCP |D|        VLAN ID        |
//	+-------------------------------+-------------------------------+
//	|      EtherType (inner)        |
//	+-------------------------------+
type Ethernet []byte

const (
	ethDst    = 0
	ethSrc    = 6
	ethType   = 12
	ethVLANCI = 14
	ethVLANTy = 16
)

// IsValid reports whether the view holds a whole untagged Ethernet header.
func (e Ethernet) IsValid() bool { return len(e) >= EthernetHeaderLen }

// Destination returns the destination MAC address.
func (e Ethernet) Destination() (mac [6]byte) {
	copy(mac[:], e[ethDst:ethDst+6])
	return mac
}

// Source returns the source MAC address.
func (e Ethernet) Source() (mac [6]byte) {
	copy(mac[:], e[ethSrc:ethSrc+6])
	return mac
}

// SetDestination sets the destination MAC address.
func (e Ethernet) SetDestination(mac [6]byte) { copy(e[ethDst:ethDst+6], mac[:]) }

// SetSource sets the source MAC address.
func (e Ethernet) SetSource(mac [6]byte) { copy(e[ethSrc:ethSrc+6], mac[:]) }

// Type returns the outer EtherType (EtherTypeVLAN for a tagged frame).
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[ethType:]) }

// SetType sets the outer EtherType.
func (e Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(e[ethType:], t) }

// VLANTCI returns the tag control information of an 802.1Q-tagged frame.
// The view must hold EthernetHeaderLen+VLANTagLen bytes.
func (e Ethernet) VLANTCI() uint16 { return binary.BigEndian.Uint16(e[ethVLANCI:]) }

// InnerType returns the EtherType that follows the 802.1Q tag.
// The view must hold EthernetHeaderLen+VLANTagLen bytes.
func (e Ethernet) InnerType() uint16 { return binary.BigEndian.Uint16(e[ethVLANTy:]) }

// SetEthernet writes the destination and source MAC addresses at frame[0:12].
// A frame shorter than 12 bytes is left unchanged.
func SetEthernet(frame []byte, dst, src [6]byte) {
	if len(frame) < 12 {
		return
	}
	h := (*[12]byte)(frame) // one bounds check for both
	*(*[6]byte)(h[ethDst:]) = dst
	*(*[6]byte)(h[ethSrc:]) = src
}
