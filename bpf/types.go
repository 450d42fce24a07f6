package bpf

import (
	"errors"
	"fmt"
	"net/netip"
)

// Proto is an IP protocol number as the classifier matches it.
type Proto uint8

// The protocols the classifier understands.
const (
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
	ProtoSCTP Proto = 132
)

// String returns "tcp", "udp", "sctp" or the number.
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Key names a virtual service (services map: destination of a request) or a real server
// (reals map: source of a NAT reply). An IPv4 address and its IPv4-mapped IPv6 form
// (::ffff:a.b.c.d) are the same key. The port is matched exactly: port 0 matches only
// packets whose port is 0.
type Key struct {
	Addr  netip.Addr
	Port  uint16
	Proto Proto
}

// String formats k as "tcp 198.18.0.1:80" or "udp [2001:db8::1]:53".
func (k Key) String() string {
	return k.Proto.String() + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// Mode is how a program is attached to an interface.
type Mode int

const (
	// ModeAuto tries native (driver) XDP and falls back to generic XDP.
	ModeAuto Mode = iota
	// ModeNative attaches in the driver's receive path (XDP_FLAGS_DRV_MODE).
	ModeNative
	// ModeGeneric attaches after the kernel built an skb (XDP_FLAGS_SKB_MODE): works on
	// every interface, costs more per packet.
	ModeGeneric
)

// String returns "auto", "native" or "generic".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode is the inverse of Mode.String.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto":
		return ModeAuto, nil
	case "native":
		return ModeNative, nil
	case "generic":
		return ModeGeneric, nil
	}
	return 0, fmt.Errorf("parse xdp mode %q: want auto, native or generic", s)
}

// Counters are a Port's classifier counters, summed over CPUs. Every frame the program
// sees increments exactly one of them.
type Counters struct {
	Passed         uint64 // parsed TCP/UDP or other IP traffic that matched nothing: XDP_PASS
	Redirected     uint64 // matched and redirected to the queue's AF_XDP socket
	RedirectFailed uint64 // matched, but the queue has no socket: XDP_PASS
	Malformed      uint64 // truncated or invalid headers: XDP_PASS
	Fragment       uint64 // non-first IPv4/IPv6 fragment (no ports to match): XDP_PASS
	NonIP          uint64 // neither IPv4 nor IPv6 (ARP...): XDP_PASS
	LocalReply     uint64 // a real server's packet to the director's own address (health checks): XDP_PASS
	Held           uint64 // matched, no socket, while a restart hands over (Classifier.Hold): XDP_DROP
	FastPathTx     uint64 // an established flow of the fastpath map rewritten and sent by the program: XDP_TX or XDP_REDIRECT
	OtherHost      uint64 // destination MAC not one the Port takes (Port.SetMACs): XDP_PASS
}

// Total is the number of frames the program saw.
func (c Counters) Total() uint64 {
	return c.Passed + c.Redirected + c.RedirectFailed + c.Malformed + c.Fragment + c.NonIP + c.LocalReply + c.Held + c.FastPathTx + c.OtherHost
}

// Slots of the stats map (see doc.go); they are ABI shared with xlvs.c.
const (
	statPassed = iota
	statRedirected
	statRedirectFailed
	statMalformed
	statFragment
	statNonIP
	statLocalReply
	statHeld
	statFastPathTx
	statOtherHost
	statCount
)

// Capacities of the maps, as declared in xlvs.c.
const (
	MaxServices = 65536 // entries of the services map
	MaxReals    = 65536 // entries of the reals map
	MaxLocals   = 4096  // entries of the locals map (the director's own addresses)
	MaxLaddrs   = 256   // entries of the laddrs map (FULLNAT local addresses)
	MaxQueues   = 64    // receive queues per Port (entries of its xsks map)
	MaxMACs     = 8     // destination MACs a Port takes frames for (its macs map)
)

var (
	// ErrNoXDP means the kernel refused to create BPF maps or load or attach the XDP
	// program: not root (CAP_BPF and CAP_NET_ADMIN needed), or a kernel too old (bpf_link
	// for XDP needs Linux 5.9).
	ErrNoXDP = errors.New("kernel refused BPF/XDP (run as root or with CAP_BPF and CAP_NET_ADMIN, on Linux 5.9 or later)")
	// ErrInvalidKey means a Key cannot be put in a map.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidQueue means a queue index is outside 0..MaxQueues-1.
	ErrInvalidQueue = errors.New("invalid queue index")
	// ErrClosed means the Classifier or Port was closed.
	ErrClosed = errors.New("use of closed classifier or port")
)

// mapKey is the binary key of the services and reals maps: struct svc_key in xlvs.c.
// 20 bytes, no implicit padding, the same on every architecture.
type mapKey struct {
	Addr  [16]byte // IPv4 as IPv4-mapped IPv6
	Port  [2]byte  // network byte order
	Proto uint8
	Pad   uint8 // always 0
}

// vaddrKey is struct vaddr_key in xlvs.c, the key of the vaddrs map: 20 bytes, no
// implicit padding.
type vaddrKey struct {
	Addr  [16]byte // IPv4 as IPv4-mapped IPv6
	Proto uint8
	Role  uint8 // roleService or roleReal
	Pad   [2]byte
}

// Roles of vaddrs entries (ADDR_SERVICE, ADDR_REAL in xlvs.c).
const (
	roleService = 1
	roleReal    = 2
)

// maxVaddrs is the capacity of the vaddrs map: every service and real server address.
const maxVaddrs = MaxServices + MaxReals

// mapVal is struct svc_val in xlvs.c. Flags is reserved and written as 0.
type mapVal struct {
	Flags uint32
}

// encode validates k and returns its map key.
func (k Key) encode() (mapKey, error) {
	if !k.Addr.IsValid() {
		return mapKey{}, fmt.Errorf("%w: %v: address is not set", ErrInvalidKey, k)
	}
	if k.Addr.Zone() != "" {
		return mapKey{}, fmt.Errorf("%w: %v: address has a zone; use the address without %%zone", ErrInvalidKey, k)
	}
	if k.Proto != ProtoTCP && k.Proto != ProtoUDP && k.Proto != ProtoSCTP {
		return mapKey{}, fmt.Errorf("%w: %v: protocol %d is not supported; want 6 (tcp), 17 (udp) or 132 (sctp)", ErrInvalidKey, k, uint8(k.Proto))
	}
	return mapKey{
		Addr:  k.Addr.As16(),
		Port:  [2]byte{byte(k.Port >> 8), byte(k.Port)},
		Proto: uint8(k.Proto),
	}, nil
}

// decode is the inverse of encode. IPv4-mapped addresses come back as IPv4.
func (m mapKey) decode() Key {
	return Key{
		Addr:  netip.AddrFrom16(m.Addr).Unmap(),
		Port:  uint16(m.Port[0])<<8 | uint16(m.Port[1]),
		Proto: Proto(m.Proto),
	}
}

// MarkPrefix is a destination prefix of the firewall-mark rules, per protocol: the
// fwm_addrs map of the program (xlvs.c). The program takes the longest prefix that
// contains a packet's destination and looks its port up in the prefix's MarkPorts.
type MarkPrefix struct {
	Proto  Proto
	Family uint8    // 4 or 6
	Addr   [16]byte // IPv4-mapped for IPv4; the bits after the prefix are zero
	Bits   uint8    // prefix length in the family's space (IPv4: 0..32)
}

// MarkPorts gives the ports Lo..Hi of a prefix a mark that has a fwmark service: the
// program redirects such packets.
type MarkPorts struct {
	MarkPrefix
	Lo, Hi uint16
	Mark   uint32
}

// Capacities of the mark maps (xlvs.c).
const (
	MaxMarkPrefixes = 16384 // fwm_addrs
	MaxMarkPorts    = 65536 // fwm_ports: aligned port blocks
)

// PortBlock is an aligned block of 2^(16-Bits) ports starting at First.
type PortBlock struct {
	First uint16
	Bits  uint8
}

// PortBlocks splits lo..hi (lo <= hi) into the fewest aligned blocks, as an LPM trie
// keyed by port holds a range (at most 30).
func PortBlocks(lo, hi uint16) []PortBlock {
	var out []PortBlock
	a, b := uint32(lo), uint32(hi)
	for a <= b {
		size, bits := uint32(1), uint8(16)
		for bits > 0 && a%(size*2) == 0 && a+size*2-1 <= b {
			size *= 2
			bits--
		}
		out = append(out, PortBlock{First: uint16(a), Bits: bits})
		a += size
	}
	return out
}

// fwmAKey and fwmAVal are struct fwm_akey and fwm_aval in xlvs.c (24 and 20 bytes, no
// implicit padding); fwmPKey is struct fwm_pkey (28 bytes).
type fwmAKey struct {
	Prefixlen uint32
	Proto     uint8
	Family    uint8
	Addr      [16]byte
	Pad       [2]byte
}

type fwmAVal struct {
	Addr [16]byte
	Bits uint8 // over the 128-bit space
	Pad  [3]byte
}

type fwmPKey struct {
	Prefixlen uint32
	Proto     uint8
	Family    uint8
	Bits      uint8
	Pad0      uint8 // always 0
	Addr      [16]byte
	Port      [2]byte // network byte order
	Pad       [2]byte
}

// encode validates p and returns its fwm_addrs entry.
func (p MarkPrefix) encode() (fwmAKey, fwmAVal, error) {
	bits := uint32(p.Bits)
	switch {
	case p.Proto == 0:
		return fwmAKey{}, fwmAVal{}, fmt.Errorf("%w: mark prefix without a protocol", ErrInvalidKey)
	case p.Family == 4 && p.Bits <= 32 && netip.AddrFrom16(p.Addr).Is4In6():
		bits += 96
	case p.Family == 6 && p.Bits <= 128:
	default:
		return fwmAKey{}, fwmAVal{}, fmt.Errorf("%w: mark prefix %v/%d of family %d", ErrInvalidKey, netip.AddrFrom16(p.Addr).Unmap(), p.Bits, p.Family)
	}
	pre, err := netip.AddrFrom16(p.Addr).Prefix(int(bits))
	if err != nil || pre.Addr().As16() != p.Addr {
		return fwmAKey{}, fwmAVal{}, fmt.Errorf("%w: mark prefix %v/%d: bits set after the prefix", ErrInvalidKey, netip.AddrFrom16(p.Addr).Unmap(), p.Bits)
	}
	return fwmAKey{Prefixlen: 16 + bits, Proto: uint8(p.Proto), Family: p.Family, Addr: p.Addr},
		fwmAVal{Addr: p.Addr, Bits: uint8(bits)}, nil
}
