package packet

import "encoding/binary"

// ProtoSCTP is SCTP's IP protocol number.
const ProtoSCTP = 132

// SCTP header sizes (RFC 9260 sections 3.1 and 3.2).
const (
	SCTPHeaderLen      = 12
	SCTPChunkHeaderLen = 4
)

// SCTP chunk types the dataplane tells apart (RFC 9260 section 3.2).
const (
	SCTPChunkData             = 0
	SCTPChunkInit             = 1
	SCTPChunkInitAck          = 2
	SCTPChunkSack             = 3
	SCTPChunkAbort            = 6
	SCTPChunkShutdown         = 7
	SCTPChunkShutdownAck      = 8
	SCTPChunkCookieEcho       = 10
	SCTPChunkCookieAck        = 11
	SCTPChunkShutdownComplete = 14
)

const (
	sctpSrcPort  = 0
	sctpDstPort  = 2
	sctpVTag     = 4
	sctpChecksum = 8
)

// SCTP is a view of an SCTP packet: the common header (RFC 9260 section 3.1) and the
// chunks after it.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Source Port Number        |     Destination Port Number   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Verification Tag                         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           Checksum                            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Chunk Type  | Chunk  Flags  |        Chunk Length           |  (one or more
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   chunks, each
//	|                          Chunk Value ...                      |   padded to 4)
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The checksum is CRC32c (Castagnoli) over the whole packet with the field zeroed,
// stored least significant byte first (RFC 9260 appendix A): Checksum returns it as the
// CRC's value. It covers no pseudo-header, so rewriting IP addresses leaves it alone.
type SCTP []byte

// SourcePort returns the source port.
func (s SCTP) SourcePort() uint16 { return binary.BigEndian.Uint16(s[sctpSrcPort:]) }

// DestinationPort returns the destination port.
func (s SCTP) DestinationPort() uint16 { return binary.BigEndian.Uint16(s[sctpDstPort:]) }

// VerificationTag returns the verification tag.
func (s SCTP) VerificationTag() uint32 { return binary.BigEndian.Uint32(s[sctpVTag:]) }

// Checksum returns the CRC32c the packet carries.
func (s SCTP) Checksum() uint32 { return binary.LittleEndian.Uint32(s[sctpChecksum:]) }

// SetChecksum stores a CRC32c.
func (s SCTP) SetChecksum(c uint32) { binary.LittleEndian.PutUint32(s[sctpChecksum:], c) }

// ChunkType returns the type of the first chunk (the view must hold one, see
// ValidSCTP).
func (s SCTP) ChunkType() uint8 { return s[SCTPHeaderLen] }

// ValidSCTP reports whether seg, the bytes the IP layer carries after its header, is a
// well-formed SCTP packet: the common header and at least one chunk; every chunk's
// length at least its 4-byte header, each chunk but the last followed by its padding to
// a multiple of 4, the last one ending within seg. With first (the first fragment of a
// fragmented datagram, which holds only its start) only the common header and the first
// chunk's header are checked.
func ValidSCTP(seg []byte, first bool) bool {
	if len(seg) < SCTPHeaderLen+SCTPChunkHeaderLen {
		return false
	}
	if first {
		return binary.BigEndian.Uint16(seg[SCTPHeaderLen+2:]) >= SCTPChunkHeaderLen
	}
	for off := SCTPHeaderLen; off < len(seg); {
		left := len(seg) - off
		if left < SCTPChunkHeaderLen {
			return false
		}
		n := int(binary.BigEndian.Uint16(seg[off+2:]))
		if n < SCTPChunkHeaderLen || n > left {
			return false
		}
		off += (n + 3) &^ 3
	}
	return true
}

// SCTPChunk returns the chunk type that IPVS's state machine takes for the SCTP packet
// seg (valid, see ValidSCTP): the first chunk's type, but ABORT when a COOKIE ECHO or
// COOKIE ACK is followed by an ABORT chunk (the kernel's set_sctp_state; RFC 9260
// allows control chunks before an ABORT). The connection table takes it where TCP
// passes its flags (conntrack's SCTP chunk constants are the same numbers).
func SCTPChunk(seg []byte) uint8 {
	t := seg[SCTPHeaderLen]
	if t != SCTPChunkCookieEcho && t != SCTPChunkCookieAck {
		return t
	}
	n := int(binary.BigEndian.Uint16(seg[SCTPHeaderLen+2:]))
	next := SCTPHeaderLen + (n+3)&^3
	if next+SCTPChunkHeaderLen <= len(seg) && seg[next] == SCTPChunkAbort {
		return SCTPChunkAbort
	}
	return t
}

// SCTPPortsFixable reports whether the packet Parse described in info may have its
// ports rewritten to sport and dport with a right checksum: always, unless it is the
// first fragment of a fragmented SCTP packet and a port changes (its CRC32c covers the
// whole packet, which the frame does not hold; IPVS reassembles first, xlvs does not).
// Such a packet is to be dropped; DR and TUN, which leave ports alone, forward it.
func SCTPPortsFixable(info *Info, sport, dport uint16) bool {
	return info.Proto != ProtoSCTP || !info.Frag || sport == info.SrcPort && dport == info.DstPort
}
