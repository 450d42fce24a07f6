package packet

import "encoding/binary"

// TCP flag bits (the low byte of the flags field).
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// TCP is a view of a TCP header (RFC 9293, section 3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	|       |       |R|E|G|K|H|T|N|N|                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           [Options]                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Data Offset counts 32-bit words (5..15).
type TCP []byte

const (
	tcpSrcPort  = 0
	tcpDstPort  = 2
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	tcpUrgent   = 18
)

// IsValid reports whether the view holds a whole TCP header, options
// included, within a segment of segSize bytes (header plus payload).
func (t TCP) IsValid(segSize int) bool {
	if len(t) < TCPMinHeaderLen {
		return false
	}
	off := t.DataOffset()
	return off >= TCPMinHeaderLen && off <= len(t) && off <= segSize
}

// SourcePort returns the source port.
func (t TCP) SourcePort() uint16 { return binary.BigEndian.Uint16(t[tcpSrcPort:]) }

// DestinationPort returns the destination port.
func (t TCP) DestinationPort() uint16 { return binary.BigEndian.Uint16(t[tcpDstPort:]) }

// SetSourcePort sets the source port. The checksum is not updated.
func (t TCP) SetSourcePort(p uint16) { binary.BigEndian.PutUint16(t[tcpSrcPort:], p) }

// SetDestinationPort sets the destination port. The checksum is not updated.
func (t TCP) SetDestinationPort(p uint16) { binary.BigEndian.PutUint16(t[tcpDstPort:], p) }

// SequenceNumber returns the sequence number.
func (t TCP) SequenceNumber() uint32 { return binary.BigEndian.Uint32(t[tcpSeq:]) }

// AckNumber returns the acknowledgment number.
func (t TCP) AckNumber() uint32 { return binary.BigEndian.Uint32(t[tcpAck:]) }

// DataOffset returns the header length in bytes (data offset * 4).
func (t TCP) DataOffset() int { return int(t[tcpDataOff]>>4) * 4 }

// Flags returns the flag byte (TCPFlagFIN ... TCPFlagCWR).
func (t TCP) Flags() uint8 { return t[tcpFlags] }

// SetFlags sets the flag byte. The checksum is not updated.
func (t TCP) SetFlags(f uint8) { t[tcpFlags] = f }

// WindowSize returns the raw (unscaled) window field.
func (t TCP) WindowSize() uint16 { return binary.BigEndian.Uint16(t[tcpWindow:]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[tcpChecksum:]) }

// SetChecksum sets the checksum field.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[tcpChecksum:], c) }

// UrgentPointer returns the urgent pointer.
func (t TCP) UrgentPointer() uint16 { return binary.BigEndian.Uint16(t[tcpUrgent:]) }

// Options returns the option bytes. The view must be valid (see IsValid).
func (t TCP) Options() []byte { return t[TCPMinHeaderLen:t.DataOffset()] }

// UDP is a view of a UDP header (RFC 768):
//
//	 0      7 8     15 16    23 24    31
//	+--------+--------+--------+--------+
//	|     Source      |   Destination   |
//	|      Port       |      Port       |
//	+--------+--------+--------+--------+
//	|                 |                 |
//	|     Length      |    Checksum     |
//	+--------+--------+--------+--------+
//
// Length covers header and payload. Over IPv4 a zero checksum means "none";
// a computed checksum of zero is sent as 0xFFFF.
type UDP []byte

const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6
)

// IsValid reports whether the view holds the header and the length field is
// between UDPHeaderLen and dgramSize (the bytes the IP layer carries).
func (u UDP) IsValid(dgramSize int) bool {
	if len(u) < UDPHeaderLen {
		return false
	}
	l := int(u.Length())
	return l >= UDPHeaderLen && l <= dgramSize
}

// SourcePort returns the source port.
func (u UDP) SourcePort() uint16 { return binary.BigEndian.Uint16(u[udpSrcPort:]) }

// DestinationPort returns the destination port.
func (u UDP) DestinationPort() uint16 { return binary.BigEndian.Uint16(u[udpDstPort:]) }

// SetSourcePort sets the source port. The checksum is not updated.
func (u UDP) SetSourcePort(p uint16) { binary.BigEndian.PutUint16(u[udpSrcPort:], p) }

// SetDestinationPort sets the destination port. The checksum is not updated.
func (u UDP) SetDestinationPort(p uint16) { binary.BigEndian.PutUint16(u[udpDstPort:], p) }

// Length returns the length field (header and payload).
func (u UDP) Length() uint16 { return binary.BigEndian.Uint16(u[udpLength:]) }

// SetLength sets the length field.
func (u UDP) SetLength(l uint16) { binary.BigEndian.PutUint16(u[udpLength:], l) }

// Checksum returns the checksum field.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[udpChecksum:]) }

// SetChecksum sets the checksum field.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[udpChecksum:], c) }

// ICMPv4 types and codes the dataplane uses.
const (
	ICMPv4EchoReply       = 0
	ICMPv4DestUnreachable = 3
	ICMPv4EchoRequest     = 8
	ICMPv4TimeExceeded    = 11
	ICMPv4CodeFragNeeded  = 4 // with ICMPv4DestUnreachable
	ICMPv4CodeTTLExceeded = 0 // with ICMPv4TimeExceeded
)

const (
	icmpv4Type       = 0
	icmpv4Code       = 1
	icmpv4Checksum   = 2
	icmpv4Unused     = 4
	icmpv4NextHopMTU = 6
)

// ICMPv4 is a view of an ICMPv4 message header (RFC 792; RFC 1191 for the
// next-hop MTU of "fragmentation needed"):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Rest of header (unused / identifier+sequence / next MTU)  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Data (for errors: the IP header and 8+ bytes of the      |
//	|      packet that caused it)                                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The checksum covers the whole ICMP message, without a pseudo-header.
type ICMPv4 []byte

// IsValid reports whether the view holds the 8-byte header.
func (m ICMPv4) IsValid() bool { return len(m) >= ICMPv4HeaderLen }

// Type returns the message type.
func (m ICMPv4) Type() uint8 { return m[icmpv4Type] }

// SetType sets the message type.
func (m ICMPv4) SetType(t uint8) { m[icmpv4Type] = t }

// Code returns the message code.
func (m ICMPv4) Code() uint8 { return m[icmpv4Code] }

// SetCode sets the message code.
func (m ICMPv4) SetCode(c uint8) { m[icmpv4Code] = c }

// Checksum returns the checksum field.
func (m ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(m[icmpv4Checksum:]) }

// SetChecksum sets the checksum field.
func (m ICMPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(m[icmpv4Checksum:], c) }

// NextHopMTU returns the next-hop MTU of a "fragmentation needed" message.
func (m ICMPv4) NextHopMTU() uint16 { return binary.BigEndian.Uint16(m[icmpv4NextHopMTU:]) }

// SetNextHopMTU sets the next-hop MTU and zeroes the unused word before it.
func (m ICMPv4) SetNextHopMTU(mtu uint16) {
	binary.BigEndian.PutUint16(m[icmpv4Unused:], 0)
	binary.BigEndian.PutUint16(m[icmpv4NextHopMTU:], mtu)
}

// Payload returns the bytes after the 8-byte header.
func (m ICMPv4) Payload() []byte { return m[ICMPv4HeaderLen:] }

// ComputeChecksum recomputes the checksum over the whole view. A view
// shorter than the header is left unchanged.
func (m ICMPv4) ComputeChecksum() {
	if !m.IsValid() {
		return
	}
	m.SetChecksum(0)
	m.SetChecksum(^Fold(Checksum(m, 0)))
}

// ChecksumValid reports whether the view holds a header and the checksum
// over the whole view verifies.
func (m ICMPv4) ChecksumValid() bool {
	return m.IsValid() && Fold(Checksum(m, 0)) == 0xFFFF
}
