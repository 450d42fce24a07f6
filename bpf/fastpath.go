//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
)

// The fast path (xlvs.c: fast_path): established connections the dataplane installs in
// the fastpath map are rewritten and sent by the program itself, without AF_XDP. The
// dataplane stays the authority: it installs and removes entries, and reads their
// counters and last-seen times back into its connection table and statistics.

// FastKey is struct fp_key in xlvs.c: a packet's flow as it arrives. 40 bytes, no
// implicit padding.
type FastKey struct {
	Src, Dst     [16]byte // IPv4 as IPv4-mapped IPv6
	SPort, DPort [2]byte  // network byte order
	Proto        uint8
	Pad          [3]byte // always 0
}

// Fast-path actions (FP_* in xlvs.c).
const (
	FastDR     = 0 // MACs rewritten, TTL / hop limit decremented (IPv4: CsumL3 FastTTLDelta)
	FastNATDst = 1 // destination address and port rewritten, TTL / hop limit decremented
	FastNATSrc = 2 // source address and port rewritten, TTL / hop limit decremented
	// FastFullNAT: source to Addr:Port and destination to Addr2:Port2, TTL / hop limit
	// decremented (CsumL3, CsumL4: both changes, FastDeltas of each added).
	FastFullNAT = 3
	// FastTUN: TTL / hop limit decremented (IPv4: CsumL3 FastTTLDelta), then an IPIP
	// (IPv4) or ip6ip6 header from Addr (the director) to Addr2 (the real server)
	// pushed in front, or with Tun a GUE or GRE tunnel's headers, as the dataplane's
	// tunnel writes them (packet.PutTunnelHeader, packet.PutEncapHeader without
	// checksums) except the IPv4 identification, which is the entry's packet count. MTU
	// bounds the inner packet: the egress MTU less the tunnel's headers.
	FastTUN = 4
)

// FastTUN's tunnel types (FastVal.Tun; FP_TUN_* in xlvs.c); with FastTunCsum, GUE and GRE
// carry their checksums.
const (
	FastTunIPIP = 0 // the outer IP header alone
	FastTunGUE  = 1 // UDP from Port2 to Port (network byte order), checksum 0, then a 4-byte GUE header
	FastTunGRE  = 2 // a 4-byte GRE header, no flags
)

// FastRedirect (FastVal.Flags) sends a packet back out of the interface it came in on
// through the tx_ports device map instead of XDP_TX: a veth's XDP_TX reaches a peer
// without an XDP program of its own only when something else wakes it (FP_F_REDIRECT in
// xlvs.c).
const FastRedirect = 1

// FastKernel (FastVal.Flags; FastNATDst, FastNATSrc and FastFullNAT only): the program
// rewrites the addresses, ports and checksums but not the TTL or the MACs, and passes
// the packet to the kernel (XDP_PASS), whose routing forwards it: TTL, next hop, MTU, and
// on a veth GRO before the forward. CsumL3 then covers the address change alone
// (FastDeltas with decTTL false). FP_F_KERNEL in xlvs.c.
const FastKernel = 2

// FastTunCsum (FastVal.Flags; FastTUN with FastTunGUE or FastTunGRE): the tunnel carries a
// checksum over the inner packet, as packet.PutEncapHeader writes it with Encap.Csum (GRE:
// the 8-byte header). The program reads no payload: it takes the inner packet's sum from
// its headers (the IP header, and the complement of the transport pseudo-header's sum,
// which a segment with a right checksum sums to), so it sends only TCP and UDP packets
// with a checksum and leaves the others (SCTP, UDP without checksum, IPv4 options) to the
// dataplane. FP_F_TUN_CSUM in xlvs.c.
const FastTunCsum = 4

// FastVal is struct fp_val in xlvs.c: what the program does to a packet of the flow. 104
// bytes. CsumL3 and CsumL4 are RFC 1624 deltas (FastDelta); for SCTP the program
// multiplies CRC by x^(8(n-4)) (n: the SCTP packet's length) and xors that into its
// CRC32c, and CsumL4 is unused. Packets, Bytes and LastSeen (CLOCK_MONOTONIC
// nanoseconds) are the program's; write them as 0.
type FastVal struct {
	DMAC, SMAC [6]byte
	Ifindex    uint32
	Action     uint8
	Flags      uint8    // FastRedirect, FastKernel
	MTU        uint16   // longer IP packets go to AF_XDP (FastTUN: inner packets)
	Addr       [16]byte // FastNAT*, FastFullNAT: the new (source) address; FastTUN: the outer source
	Port       [2]byte  // network byte order; FastTUN with FastTunGUE: the UDP destination port
	CsumL3     uint16
	CsumL4     uint16
	Tun        uint16 // FastTUN: FastTun*
	Cookie     uint32 // the caller's
	CRC        uint32 // SCTP of FastNAT*, FastFullNAT: packet.SCTPPortsTerm of the ports as they arrive and leave
	Pad2       uint32
	Packets    uint64
	Bytes      uint64
	LastSeen   uint64
	Addr2      [16]byte // FastFullNAT: the new destination address; FastTUN: the outer destination
	Port2      [2]byte  // FastFullNAT: the new destination port; FastTunGUE: the UDP source port; network byte order
	Pad3       [3]uint16
}

// DefaultFastPathEntries is the fastpath map's size in xlvs.c: two entries per NAT
// connection, one per DR or TUN connection.
const DefaultFastPathEntries = 65536

// MaxFastPathEntries bounds EnableFastPath: the map allocates its entries as they are
// added (BPF_F_NO_PREALLOC), about 250 bytes each in the kernel.
const MaxFastPathEntries = 1 << 24

// ErrFastPathOff is returned by the fast-path methods of a Classifier without
// EnableFastPath.
var ErrFastPathOff = errors.New("fast path not enabled")

// EnableFastPath gives the programs loaded from c from now on a fastpath map of entries
// entries (the map the programs loaded earlier use is replaced for those loaded later:
// call it before the first Load or Attach) and makes FastUpdate and the rest work.
func (c *Classifier) EnableFastPath(entries int) error {
	if entries < 1 || entries > MaxFastPathEntries {
		return fmt.Errorf("enable fast path: %d entries; want 1 to %d", entries, MaxFastPathEntries)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("enable fast path: %w", ErrClosed)
	}
	spec := c.spec.Maps[xlvsMapFastpath].Copy()
	spec.MaxEntries = uint32(entries)
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return fmt.Errorf("enable fast path: create map %s of %d entries: %w", xlvsMapFastpath, entries, err)
	}
	if err := c.fpOn.Update(uint32(0), uint32(1), ebpf.UpdateAny); err != nil {
		m.Close()
		return fmt.Errorf("enable fast path: %w", err)
	}
	c.fastpath.Close()
	c.fastpath = m
	c.fastOn = true
	return nil
}

// FastPathOn reports whether EnableFastPath was called.
func (c *Classifier) FastPathOn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fastOn
}

// SetTxPorts makes the tx_ports device map hold exactly ifindexes: the interfaces the
// fast path may redirect to (another interface than the receiving one).
func (c *Classifier) SetTxPorts(ifindexes []int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("set fast-path egress interfaces: %w", ErrClosed)
	}
	if len(ifindexes) > MaxQueues {
		return fmt.Errorf("set fast-path egress interfaces: %d interfaces, at most %d", len(ifindexes), MaxQueues)
	}
	want := map[uint32]bool{}
	for _, i := range ifindexes {
		if i < 1 {
			return fmt.Errorf("set fast-path egress interfaces: ifindex %d; interface indexes start at 1", i)
		}
		want[uint32(i)] = true
	}
	var k, v uint32
	var stale []uint32
	it := c.txPorts.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("set fast-path egress interfaces: %w", err)
	}
	for _, s := range stale {
		if err := c.txPorts.Delete(s); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set fast-path egress interfaces: delete %d: %w", s, err)
		}
	}
	for i := range want {
		if err := c.txPorts.Update(i, i, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set fast-path egress interfaces: add ifindex %d: %w", i, err)
		}
	}
	return nil
}

// fastMap returns the fastpath map, or an error when the fast path is off or c closed.
func (c *Classifier) fastMap(op string) (*ebpf.Map, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	case !c.fastOn:
		return nil, fmt.Errorf("%s: %w", op, ErrFastPathOff)
	}
	return c.fastpath, nil
}

// noBatch is set once the kernel refused the map batch commands (BPF_MAP_UPDATE_BATCH,
// BPF_MAP_DELETE_BATCH: hash maps have them since Linux 5.6): from then on the fast path's
// updates and deletes take one system call per entry.
var noBatch atomic.Bool

// FastUpdate installs (or replaces) the entries vals[i] of keys[i] and returns how many
// it installed; it stops at the first failure (a full map: the kernel says E2BIG), which
// it returns. One system call for them all (BPF_MAP_UPDATE_BATCH, which stops at the
// first failure too), one per entry on a kernel without it.
func (c *Classifier) FastUpdate(keys []FastKey, vals []FastVal) (int, error) {
	m, err := c.fastMap("update fast path")
	if err != nil {
		return 0, err
	}
	if len(keys) != len(vals) {
		return 0, fmt.Errorf("update fast path: %d keys but %d values", len(keys), len(vals))
	}
	return fastUpdate(m, keys, vals, !noBatch.Load())
}

// fastUpdate is FastUpdate on m: batched, or one system call per entry.
func fastUpdate(m *ebpf.Map, keys []FastKey, vals []FastVal, batch bool) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if batch && len(keys) > 1 {
		n, err := m.BatchUpdate(keys, vals, nil)
		switch {
		case err == nil:
			return n, nil
		case !errors.Is(err, ebpf.ErrNotSupported):
			return n, fmt.Errorf("update fast path: entry %d of %d: %w", n, len(keys), err)
		}
		noBatch.Store(true)
	}
	for i := range keys {
		if err := m.Update(&keys[i], &vals[i], ebpf.UpdateAny); err != nil {
			return i, fmt.Errorf("update fast path: %w", err)
		}
	}
	return len(keys), nil
}

// FastDelete removes the entries of keys; a missing one is not an error. It returns how
// many it removed. One system call for them all (BPF_MAP_DELETE_BATCH; it stops at a
// missing key, and goes on after it with another), one per entry on a kernel without it.
func (c *Classifier) FastDelete(keys []FastKey) (int, error) {
	m, err := c.fastMap("delete from fast path")
	if err != nil {
		return 0, err
	}
	return fastDelete(m, keys, !noBatch.Load())
}

// fastDelete is FastDelete on m: batched, or one system call per entry.
func fastDelete(m *ebpf.Map, keys []FastKey, batch bool) (int, error) {
	n := 0
	for batch && len(keys) > 1 {
		d, err := m.BatchDelete(keys, nil)
		n += d
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			keys = keys[d+1:] // keys[d] is not there: on with the rest
			continue
		case !errors.Is(err, ebpf.ErrNotSupported):
			return n, fmt.Errorf("delete from fast path: %w", err)
		}
		noBatch.Store(true)
		keys = keys[d:]
		break
	}
	for i := range keys {
		err := m.Delete(&keys[i])
		switch {
		case err == nil:
			n++
		case errors.Is(err, ebpf.ErrKeyNotExist):
		default:
			return n, fmt.Errorf("delete from fast path: %w", err)
		}
	}
	return n, nil
}

// FastWalk calls f with every entry of the fastpath map (the value as read at that
// moment; f must not keep the pointers). f returns false to stop.
func (c *Classifier) FastWalk(f func(k *FastKey, v *FastVal) bool) error {
	m, err := c.fastMap("read fast path")
	if err != nil {
		return err
	}
	var k FastKey
	var v FastVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !f(&k, &v) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read fast path: %w", err)
	}
	return nil
}

// FastLookup reads the entry of k; false if there is none.
func (c *Classifier) FastLookup(k *FastKey, v *FastVal) (bool, error) {
	m, err := c.fastMap("read fast path")
	if err != nil {
		return false, err
	}
	if err := m.Lookup(k, v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("read fast path: %w", err)
	}
	return true, nil
}

var (
	_ [40]byte  = [unsafe.Sizeof(FastKey{})]byte{}
	_ [104]byte = [unsafe.Sizeof(FastVal{})]byte{}
)
