package gen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"xlvs/dataplane/packet"
)

const (
	ethLen  = 14
	ipv4Len = 20
	udpLen  = 8
	// MinFrame is the smallest frame BuildUDP4 makes (64 bytes on the wire with the FCS,
	// as "64-byte packets" are counted): Ethernet, IPv4, UDP and 18 bytes of payload.
	MinFrame = 60
	// MaxFrame is the largest: a 1500-byte IPv4 packet in an Ethernet frame.
	MaxFrame = 1514
)

// ErrBadFlow is returned (wrapped) for a flow or size BuildUDP4 cannot make.
var ErrBadFlow = errors.New("bad flow")

// Flow is one UDP flow from Src to Dst, sent between two MACs.
type Flow struct {
	SrcMAC, DstMAC [6]byte
	Src, Dst       netip.AddrPort
}

// WireSize converts a size as benchmarks name it ("64-byte packets": the Ethernet frame
// with its 4-byte FCS; "1500-byte packets": the IP packet) to the frame length without FCS
// that BuildUDP4 takes: 64 → 60, 1500 → 1514.
func WireSize(size int) int {
	if size <= 64+4 && size >= 64 {
		return size - 4
	}
	if size <= 1500 {
		return size + ethLen
	}
	return size
}

// BuildUDP4 writes flow f as a frame of exactly size bytes (MinFrame..MaxFrame) into
// frame, which must be at least size long, and returns the frame. The IPv4 header has DF
// set, TTL 64 and a valid checksum; the UDP checksum is valid; the payload is a counter
// pattern.
func BuildUDP4(frame []byte, f Flow, size int) ([]byte, error) {
	if size < MinFrame || size > MaxFrame {
		return nil, fmt.Errorf("build udp frame: %w: size %d, want %d to %d", ErrBadFlow, size, MinFrame, MaxFrame)
	}
	if len(frame) < size {
		return nil, fmt.Errorf("build udp frame: %w: buffer of %d bytes for a %d-byte frame", ErrBadFlow, len(frame), size)
	}
	if !f.Src.Addr().Is4() || !f.Dst.Addr().Is4() {
		return nil, fmt.Errorf("build udp frame: %w: %v → %v, want IPv4 addresses", ErrBadFlow, f.Src, f.Dst)
	}
	frame = frame[:size]
	packet.SetEthernet(frame, f.DstMAC, f.SrcMAC)
	binary.BigEndian.PutUint16(frame[12:], packet.EtherTypeIPv4)
	ip := packet.IPv4(frame[ethLen:])
	l3 := size - ethLen
	ip.SetVersionIHL(ipv4Len)
	ip.SetTOS(0)
	ip.SetTotalLength(uint16(l3))
	ip.SetID(0)
	ip.SetFlagsFragmentOffset(packet.IPv4FlagDF)
	ip.SetTTL(64)
	ip.SetProtocol(packet.ProtoUDP)
	src, dst := f.Src.Addr().As16(), f.Dst.Addr().As16()
	ip.SetSourceAddress(src)
	ip.SetDestinationAddress(dst)
	ip.ComputeChecksum()
	udp := frame[ethLen+ipv4Len:]
	l4 := l3 - ipv4Len
	binary.BigEndian.PutUint16(udp[0:], f.Src.Port())
	binary.BigEndian.PutUint16(udp[2:], f.Dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(l4))
	binary.BigEndian.PutUint16(udp[6:], 0)
	for i := udpLen; i < l4; i++ {
		udp[i] = byte(i)
	}
	sum := packet.Fold(packet.Checksum(udp[:l4], packet.PseudoHeaderSum(4, src, dst, packet.ProtoUDP, uint32(l4))))
	cs := ^sum
	if cs == 0 {
		cs = 0xFFFF // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(udp[6:], cs)
	return frame, nil
}

// Flows returns n distinct flows from base to dst, varying source ports and addresses:
// flow i comes from base address + i/250, base port + i mod 250. The caller keeps
// base address + (n-1)/250 inside a prefix the path under test accepts.
func Flows(n int, srcMAC, dstMAC [6]byte, base, dst netip.AddrPort) []Flow {
	out := make([]Flow, n)
	a := base.Addr()
	for i := range out {
		if i > 0 && i%250 == 0 {
			a = a.Next()
		}
		out[i] = Flow{SrcMAC: srcMAC, DstMAC: dstMAC, Src: netip.AddrPortFrom(a, base.Port()+uint16(i%250)), Dst: dst}
	}
	return out
}

// FlowRange is N flows made on the fly, for more flows than a UMEM has frames (Run rewrites
// each frame's source before sending it again): flow i comes from the base address
// + i mod Addrs and the base port + i / Addrs.
type FlowRange struct {
	N              int
	Addrs          int // distinct source addresses, 1 or more
	SrcMAC, DstMAC [6]byte
	Base, Dst      netip.AddrPort
}

// Check tells whether r can be generated: IPv4, and every address and port in range.
func (r FlowRange) Check() error {
	switch {
	case r.N < 1 || r.Addrs < 1:
		return fmt.Errorf("flow range: %w: %d flows over %d addresses, want at least 1 of each", ErrBadFlow, r.N, r.Addrs)
	case !r.Base.Addr().Is4() || !r.Dst.Addr().Is4():
		return fmt.Errorf("flow range: %w: %v → %v, want IPv4 addresses", ErrBadFlow, r.Base, r.Dst)
	case int(r.Base.Port())+(r.N-1)/r.Addrs > 65535:
		return fmt.Errorf("flow range: %w: %d flows over %d addresses from port %d run past port 65535: use more addresses", ErrBadFlow, r.N, r.Addrs, r.Base.Port())
	case uint64(binary.BigEndian.Uint32(r.Base.Addr().AsSlice()))+uint64(r.Addrs-1) > 0xffffffff:
		return fmt.Errorf("flow range: %w: %d addresses from %v run past 255.255.255.255", ErrBadFlow, r.Addrs, r.Base.Addr())
	}
	return nil
}

// At returns flow i (0 ≤ i < N).
func (r FlowRange) At(i int) Flow {
	b := r.Base.Addr().As4()
	a := binary.BigEndian.Uint32(b[:]) + uint32(i%r.Addrs)
	binary.BigEndian.PutUint32(b[:], a)
	return Flow{SrcMAC: r.SrcMAC, DstMAC: r.DstMAC, Src: netip.AddrPortFrom(netip.AddrFrom4(b), r.Base.Port()+uint16(i/r.Addrs)), Dst: r.Dst}
}

// setSource rewrites frame's IPv4 source address and UDP source port to f's, updating both
// checksums incrementally. info is the frame's parse (scratch, reused).
func setSource(frame []byte, info *packet.Info, f Flow) bool {
	if packet.Parse(frame, info) != packet.ResultOK {
		return false
	}
	packet.RewriteSrc(frame, info, f.Src.Addr().As16(), f.Src.Port())
	return true
}
