package dataplane

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// Firewall-mark services (ipvsadm -f MARK).
//
// IPVS matches a fwmark service by the netfilter mark of the packet, which iptables -t
// mangle rules set (-j MARK --set-mark N). XDP runs before netfilter, so there is no
// mark to read: xlvs assigns marks itself from MarkRules (protocol, destination prefix,
// destination ports → mark), in the XDP program (which redirects a packet whose mark has
// a service) and again here (which finds the service). Both use the table Compile
// builds, so they agree.
//
// Rules are kept in the order given; when several match a packet the last one's mark
// wins, as with a list of "iptables -t mangle -A PREROUTING ... -j MARK --set-mark N"
// rules (MARK does not stop the chain, so the last matching rule's mark stays).
//
// Kernel rules followed (intel-lab-lkp/linux, net/netfilter/ipvs/ip_vs_ctl.c at
// 08edf79843c2f642c0ee77bbaecc8bfa9b7037df, ip_vs_core.c at
// 07f10f88bedef187ba21c2c3e91a24bc8ab9065a):
//   - ip_vs_service_find looks the mark up first (__ip_vs_svc_fwm_find: the mark and the
//     address family), then <protocol, address, port>, then port 0: a marked packet
//     whose mark has no service of its family falls back to the other services.
//   - ip_vs_schedule (not persistent): the real server gets dest->port, or the packet's
//     port when dest->port is 0. ip_vs_sched_persist: a fwmark service's port is 0, so a
//     persistent fwmark connection always keeps the packet's port; its template is
//     <IPPROTO_IP, client net, 0, fwmark, 0>, one per mark: a client stays on one real
//     server across every port and address of the mark.

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// MarkRule assigns Mark to the packets of protocol Proto to a destination in Addr/Bits
// whose port is in Ports (none: every port).
type MarkRule struct {
	Proto  uint8    // packet.ProtoTCP, ProtoUDP or ProtoSCTP
	Family uint8    // 4 or 6
	Addr   [16]byte // IPv4-mapped for IPv4; the bits after the prefix are zero
	Bits   uint8    // prefix length in the family's space: 0..32 (IPv4), 0..128 (IPv6)
	Ports  []PortRange
	Mark   uint32 // 1..2^32-1
}

// Limits of a compiled mark table (the XDP maps' capacities; bpf.MaxMarkPrefixes and
// bpf.MaxMarkPorts).
const (
	MaxMarkPrefixes = bpf.MaxMarkPrefixes
	MaxMarkPorts    = bpf.MaxMarkPorts
)

// markProto reports whether p is a protocol mark rules may name.
func markProto(p uint8) bool { return p == packet.ProtoTCP || p == packet.ProtoUDP || p == 132 }

// bits128 is r's prefix length in the 128-bit space IPv4-mapped addresses live in.
func (r *MarkRule) bits128() uint8 {
	if r.Family == 4 {
		return 96 + r.Bits
	}
	return r.Bits
}

// Check validates r.
func (r *MarkRule) Check() error {
	switch {
	case r.Mark == 0:
		return fmt.Errorf("mark rule: mark 0: marks start at 1")
	case !markProto(r.Proto):
		return fmt.Errorf("mark rule: protocol %d: want 6 (tcp), 17 (udp) or 132 (sctp)", r.Proto)
	case r.Family != 4 && r.Family != 6:
		return fmt.Errorf("mark rule: family %d: want 4 or 6", r.Family)
	case r.Family == 4 && (r.Bits > 32 || !packet.IsIPv4Mapped(r.Addr)):
		return fmt.Errorf("mark rule: an IPv4 rule needs an IPv4-mapped address and a prefix length of at most 32")
	case r.Family == 6 && (r.Bits > 128 || packet.IsIPv4Mapped(r.Addr) && r.Bits > 96):
		return fmt.Errorf("mark rule: an IPv6 rule needs an IPv6 address and a prefix length of at most 128")
	case maskAddr(r.Addr, r.bits128()) != r.Addr:
		return fmt.Errorf("mark rule: address %v has bits set after the /%d prefix", netipFrom16(r.Addr), r.Bits)
	}
	for _, p := range r.Ports {
		if p.Lo > p.Hi {
			return fmt.Errorf("mark rule: port range %d-%d: the first port is above the last", p.Lo, p.Hi)
		}
	}
	return nil
}

// markTable is a set of mark rules compiled for lookups: for every distinct prefix of
// the rules (per protocol and family), the mark each port gets, from all the rules whose
// prefix contains it. The longest matching prefix therefore decides alone. Pointer-free
// slices; built once, read by every worker.
type markTable struct {
	lens   []markLen  // the prefix lengths present, per protocol and family, longest first
	slots  []markNode // open addressing, power of two, at most half full
	mask   uint32
	ranges []markRange // per node, sorted, disjoint
}

type markLen struct{ proto, family, bits uint8 } // bits in the 128-bit space

type markNode struct {
	addr          [16]byte // masked to bits
	proto, family uint8
	bits          uint8
	used          bool
	first, n      uint32 // the node's ranges
}

type markRange struct {
	lo, hi uint16
	mark   uint32
	si     int32 // the snapshot's service of (mark, family); -1: none
}

func markHash(a *[16]byte, proto, family, bits uint8) uint32 {
	x := binary.LittleEndian.Uint64(a[0:8])
	y := binary.LittleEndian.Uint64(a[8:16])
	h := (x*0x9E3779B97F4A7C15 ^ y ^ uint64(proto)<<16 ^ uint64(family)<<8 ^ uint64(bits)) * 0xBF58476D1CE4E5B9
	return uint32(h >> 32)
}

// compileMarks builds the table of rules (checked), with each mark's service looked up
// by svcOf (mark, family → snapshot index, -1 for none).
func compileMarks(rules []MarkRule, svcOf func(mark uint32, family uint8) int32) (*markTable, error) {
	type nodeKey struct {
		addr                [16]byte
		proto, family, bits uint8
	}
	var keys []nodeKey
	seen := map[nodeKey]bool{}
	for i := range rules {
		r := &rules[i]
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		k := nodeKey{r.Addr, r.Proto, r.Family, r.bits128()}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) > MaxMarkPrefixes {
		return nil, fmt.Errorf("mark rules: %d distinct prefixes, at most %d", len(keys), MaxMarkPrefixes)
	}
	t := &markTable{}
	n := 8
	for n < 2*len(keys) {
		n <<= 1
	}
	t.slots, t.mask = make([]markNode, n), uint32(n-1)
	lens := map[markLen]bool{}
	var paint []markRange
	for _, k := range keys {
		// The mark of every port at this prefix: the rules whose prefix contains it, in
		// order, each painting its ports over the earlier ones.
		paint = paint[:0]
		for i := range rules {
			r := &rules[i]
			if r.Proto != k.proto || r.Family != k.family || r.bits128() > k.bits || maskAddr(k.addr, r.bits128()) != r.Addr {
				continue
			}
			if len(r.Ports) == 0 {
				paint = paintRange(paint, 0, 65535, r.Mark)
			}
			for _, p := range r.Ports {
				paint = paintRange(paint, p.Lo, p.Hi, r.Mark)
			}
		}
		first := uint32(len(t.ranges))
		for _, p := range paint {
			p.si = svcOf(p.mark, k.family)
			t.ranges = append(t.ranges, p)
		}
		i := markHash(&k.addr, k.proto, k.family, k.bits) & t.mask
		for t.slots[i].used {
			i = (i + 1) & t.mask
		}
		t.slots[i] = markNode{addr: k.addr, proto: k.proto, family: k.family, bits: k.bits, used: true, first: first, n: uint32(len(t.ranges)) - first}
		lens[markLen{k.proto, k.family, k.bits}] = true
	}
	for l := range lens {
		t.lens = append(t.lens, l)
	}
	slices.SortFunc(t.lens, func(a, b markLen) int {
		return cmp.Or(cmp.Compare(b.bits, a.bits), cmp.Compare(a.proto, b.proto), cmp.Compare(a.family, b.family))
	})
	return t, nil
}

// paintRange gives the ports lo..hi the mark m in rs (sorted, disjoint ranges), over
// what they had, and merges neighbours of one mark.
func paintRange(rs []markRange, lo, hi uint16, m uint32) []markRange {
	out := make([]markRange, 0, len(rs)+2)
	placed := false
	for _, r := range rs {
		if r.hi < lo || r.lo > hi { // apart
			if r.lo > hi && !placed {
				out = append(out, markRange{lo: lo, hi: hi, mark: m})
				placed = true
			}
			out = append(out, r)
			continue
		}
		if r.lo < lo { // the part before
			out = append(out, markRange{lo: r.lo, hi: lo - 1, mark: r.mark})
		}
		if !placed {
			out = append(out, markRange{lo: lo, hi: hi, mark: m})
			placed = true
		}
		if r.hi > hi { // the part after
			out = append(out, markRange{lo: hi + 1, hi: r.hi, mark: r.mark})
		}
	}
	if !placed {
		out = append(out, markRange{lo: lo, hi: hi, mark: m})
	}
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && merged[n-1].mark == r.mark && uint32(merged[n-1].hi)+1 == uint32(r.lo) {
			merged[n-1].hi = r.hi
			continue
		}
		merged = append(merged, r)
	}
	return append(rs[:0], merged...)
}

// lookup returns the range of dst:port (protocol proto) in the table: its mark and the
// mark's service; nil when no rule marks the packet. Zero allocations.
func (t *markTable) lookup(dst *[16]byte, port uint16, proto uint8) *markRange {
	fam := uint8(6)
	if packet.IsIPv4Mapped(*dst) {
		fam = 4
	}
	for li := range t.lens {
		l := &t.lens[li]
		if l.proto != proto || l.family != fam {
			continue
		}
		a := maskAddr(*dst, l.bits)
		for i := markHash(&a, proto, fam, l.bits) & t.mask; ; i = (i + 1) & t.mask {
			s := &t.slots[i]
			if !s.used {
				break
			}
			if s.bits != l.bits || s.proto != proto || s.family != fam || s.addr != a {
				continue
			}
			// The longest matching prefix holds every rule that matches: it decides.
			rs := t.ranges[s.first : s.first+s.n]
			lo, hi := 0, len(rs)
			for lo < hi {
				m := int(uint(lo+hi) >> 1)
				if rs[m].hi < port {
					lo = m + 1
				} else {
					hi = m
				}
			}
			if lo < len(rs) && rs[lo].lo <= port {
				return &rs[lo]
			}
			return nil
		}
	}
	return nil
}

// markSvcKey is a fwmark service's key: the mark and the address family.
type markSvcKey struct {
	mark   uint32
	family uint8
}

// familyZero is the Key.Addr of a fwmark service of family (4 or 6): the unspecified
// address, IPv4-mapped for IPv4, so that family checks read it as any service's address.
func familyZero(family uint8) [16]byte {
	if family == 4 {
		return v4Unspecified
	}
	return [16]byte{}
}

// FWMarkKey is the SvcKey a fwmark service of the family (4 or 6) has in a snapshot:
// the family's unspecified address, port 0, protocol 0 (no virtual service has
// protocol 0).
func FWMarkKey(family uint8) SvcKey { return SvcKey{Addr: familyZero(family)} }

// SetMarks compiles rules into the snapshot: packets they mark for a fwmark service of
// the snapshot go to that service. Call it once, before Publish; nil or empty: none.
func (s *Snapshot) SetMarks(rules []MarkRule) error {
	if len(rules) == 0 {
		s.Marks, s.marks = nil, nil
		return nil
	}
	t, err := compileMarks(rules, func(mark uint32, family uint8) int32 {
		if i, ok := s.byMark[markSvcKey{mark, family}]; ok {
			return i
		}
		return -1
	})
	if err != nil {
		return fmt.Errorf("build snapshot: %w", err)
	}
	n := 0
	for _, r := range t.ranges {
		if r.si >= 0 {
			n += len(bpf.PortBlocks(r.lo, r.hi))
		}
	}
	if n > MaxMarkPorts {
		return fmt.Errorf("build snapshot: mark rules need %d port entries in the XDP program, at most %d: use fewer or wider port ranges", n, MaxMarkPorts)
	}
	s.Marks, s.marks = slices.Clone(rules), t
	return nil
}

// markService returns the fwmark service a client's packet to dst:port is for.
func (s *Snapshot) markService(dst *[16]byte, port uint16, proto uint8) (int32, bool) {
	if r := s.marks.lookup(dst, port, proto); r != nil && r.si >= 0 {
		return r.si, true
	}
	return 0, false
}

// serviceByMark returns the fwmark service of mark and family (4 or 6).
func (s *Snapshot) serviceByMark(mark uint32, family uint8) (int32, bool) {
	i, ok := s.byMark[markSvcKey{mark, family}]
	return i, ok
}

// MarkEntries lists the snapshot's compiled marks as the XDP program's maps hold them:
// every prefix of the rules, and the port ranges of each whose mark has a service of
// the snapshot (the program redirects those).
func (s *Snapshot) MarkEntries() ([]bpf.MarkPrefix, []bpf.MarkPorts) {
	t := s.marks
	if t == nil {
		return nil, nil
	}
	var pre []bpf.MarkPrefix
	var ports []bpf.MarkPorts
	for _, n := range t.slots {
		if !n.used {
			continue
		}
		bits := n.bits
		if n.family == 4 {
			bits -= 96
		}
		p := bpf.MarkPrefix{Proto: bpf.Proto(n.proto), Family: n.family, Addr: n.addr, Bits: bits}
		pre = append(pre, p)
		for _, r := range t.ranges[n.first : n.first+n.n] {
			if r.si >= 0 {
				ports = append(ports, bpf.MarkPorts{MarkPrefix: p, Lo: r.lo, Hi: r.hi, Mark: r.mark})
			}
		}
	}
	return pre, ports
}

// addMarkService indexes the fwmark service svc (index i) by mark and family.
func (s *Snapshot) addMarkService(svc *Service, i int32) error {
	fam := uint8(6)
	if packet.IsIPv4Mapped(svc.Key.Addr) {
		fam = 4
	}
	if svc.Key != FWMarkKey(fam) {
		return fmt.Errorf("build snapshot: fwmark service %d: its key must be FWMarkKey(%d), not %v", svc.FWMark, fam, svc.Key)
	}
	k := markSvcKey{svc.FWMark, fam}
	if _, dup := s.byMark[k]; dup {
		return fmt.Errorf("build snapshot: fwmark service %d (IPv%d) listed twice", svc.FWMark, fam)
	}
	s.byMark[k] = i
	return nil
}

// markServiceProtos are the protocols a fwmark service's packets may have (a mark is
// given to packets of any protocol the rules name): its NAT real servers' replies of
// each are recognised.
var markServiceProtos = []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP}

// svcProtos are the protocols of svc's packets.
func svcProtos(svc *Service) []uint8 {
	if svc.FWMark != 0 {
		return markServiceProtos
	}
	return []uint8{svc.Key.Proto}
}

// markTemplate writes the template c of fwmark service svc as IPVS's
// ip_vs_sched_persist makes it: <IPPROTO_IP, client net, 0, fwmark, 0>, real server port
// 0 (the template's port: a fwmark service's connections keep the packet's port).
func markTemplate(c *SyncConn, svc *Service) {
	c.Proto = 0
	c.VAddr = familyZero(4)
	if !packet.IsIPv4Mapped(svc.Key.Addr) {
		c.VAddr = [16]byte{}
		binary.BigEndian.PutUint32(c.VAddr[0:4], svc.FWMark)
	} else {
		binary.BigEndian.PutUint32(c.VAddr[12:16], svc.FWMark)
	}
	c.VPort, c.DPort = 0, 0
}

// syncService finds the service of a received sync entry as ip_vs_find_dest does: by
// its mark first (the mark and the address family of the entry), then by protocol,
// address and port (no mark rules: a backup does not mark what it is told).
func syncService(snap *Snapshot, c *SyncConn) (int32, bool) {
	if c.FWMark != 0 {
		fam := uint8(6)
		if packet.IsIPv4Mapped(c.VAddr) || c.Template && packet.IsIPv4Mapped(c.Client) {
			fam = 4
		}
		if i, ok := snap.serviceByMark(c.FWMark, fam); ok {
			return i, true
		}
		if c.Proto == 0 {
			return 0, false
		}
	}
	return snap.serviceNoMark(&c.VAddr, c.VPort, c.Proto)
}

// markSyncDest finds the real server of a received connection of fwmark service svc as
// ip_vs_find_dest does: by address and port, where a fwmark service's real server may
// have port 0 (the packet's port); NAT tries the entry's port first, the other methods
// port 0 first. -1: none.
func markSyncDest(svc *Service, c *SyncConn) int {
	ports := [2]uint16{c.DPort, 0}
	if c.Method != conntrack.MethodNAT {
		ports = [2]uint16{0, c.DPort}
	}
	for _, p := range ports {
		for i := range svc.Dests {
			if t := &svc.Dests[i]; t.Addr == c.DAddr && t.Port == p {
				return i
			}
		}
	}
	return -1
}
