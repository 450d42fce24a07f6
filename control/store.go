package control

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"xlvs/control/api"
	"xlvs/dataplane"
	"xlvs/sched"
)

// ruleDest is a real server of a service in the rule set: its configuration as the API
// gave it and its ID in the dataplane's tables. snapDest turns it into the snapshot's
// dataplane.Dest, whose Sched is the scheduler's view (ARCHITECTURE.md, "One real server,
// three types").
type ruleDest struct {
	cfg api.Dest
	id  uint32
}

// snapDest is d as a snapshot holds it, with its weight as scheduled (0 while its
// health checks fail: down lists those by ID). The only conversion from the rule set's
// real server to the dataplane's.
func (d *ruleDest) snapDest(down map[uint32]bool) dataplane.Dest {
	return dataplane.Dest{ID: d.id, Addr: d.cfg.Addr.As16(), Port: d.cfg.Port, Method: methodOf(d.cfg.Method),
		Weight: destWeight(d, down), UThreshold: d.cfg.UThreshold, LThreshold: d.cfg.LThreshold, Tun: encapOf(&d.cfg)}
}

// ruleLaddr is a FULLNAT local address of a service in the rule set.
type ruleLaddr struct {
	cfg api.LocalAddr // Addr and Ifname; Service, Conns and PortConflicts unused here
	id  uint32
}

// ruleSvc is a virtual service in the rule set, with its real servers and local
// addresses.
type ruleSvc struct {
	cfg    api.Service // Dests and Stats unused here
	id     uint32
	dests  []*ruleDest  // the kernel's list order: newest first
	laddrs []*ruleLaddr // FULLNAT local addresses, in the order added
}

// rules is the whole configuration. clone() gives a deep copy to change.
type rules struct {
	services []*ruleSvc
	timeouts api.Timeouts
	marks    []api.MarkRule // firewall-mark rules, in list order (marks.go)
}

func (r *rules) clone() *rules {
	c := &rules{timeouts: r.timeouts, services: make([]*ruleSvc, len(r.services)), marks: cloneMarks(r.marks)}
	for i, s := range r.services {
		ns := &ruleSvc{cfg: s.cfg, id: s.id, dests: make([]*ruleDest, len(s.dests))}
		ns.cfg.SchedFlags = slices.Clone(s.cfg.SchedFlags)
		for j, d := range s.dests {
			nd := *d
			ns.dests[j] = &nd
		}
		for _, l := range s.laddrs {
			nl := *l
			ns.laddrs = append(ns.laddrs, &nl)
		}
		c.services[i] = ns
	}
	return c
}

func (r *rules) find(k api.ServiceKey) (int, *ruleSvc) {
	for i, s := range r.services {
		if sameKey(s.cfg.ServiceKey, k) {
			return i, s
		}
	}
	return -1, nil
}

func sameKey(a, b api.ServiceKey) bool {
	if a.Protocol != b.Protocol {
		return false
	}
	if a.Protocol == api.ProtoFWMark {
		return a.FWMark == b.FWMark && a.Family == b.Family
	}
	return a.Addr.Unmap() == b.Addr.Unmap() && a.Port == b.Port
}

func (s *ruleSvc) findLaddr(addr netip.Addr) (int, *ruleLaddr) {
	for i, l := range s.laddrs {
		if l.cfg.Addr.Unmap() == addr.Unmap() {
			return i, l
		}
	}
	return -1, nil
}

// laddrAddrs returns every FULLNAT local address of r, once each.
func (r *rules) laddrAddrs() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, s := range r.services {
		for _, l := range s.laddrs {
			m[l.cfg.Addr.Unmap()] = true
		}
	}
	return m
}

// checkLaddr validates a FULLNAT local address for service s.
func checkLaddr(s *ruleSvc, a netip.Addr) *api.Error {
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
		return apiErr(api.ErrCodeInvalid, "local address %v: must be a unicast IPv4 or IPv6 address without a zone", a)
	}
	a = a.Unmap()
	if a.Is4() != svcAddr(&s.cfg).Is4() {
		return apiErr(api.ErrCodeInvalid, "local address %v and service %s are of different address families: an IPv%d service needs IPv%d local addresses",
			a, keyString(s.cfg.ServiceKey), familyOf(svcAddr(&s.cfg)), familyOf(svcAddr(&s.cfg)))
	}
	return nil
}

func familyOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// serviceOf returns the service of destination id, or nil.
func (r *rules) serviceOf(id uint32) *ruleSvc {
	for _, s := range r.services {
		for _, d := range s.dests {
			if d.id == id {
				return s
			}
		}
	}
	return nil
}

func (s *ruleSvc) findDest(addr netip.Addr, port uint16) (int, *ruleDest) {
	for i, d := range s.dests {
		if d.cfg.Addr.Unmap() == addr.Unmap() && d.cfg.Port == port {
			return i, d
		}
	}
	return -1, nil
}

// apiErr builds a typed API error.
func apiErr(code, format string, args ...any) *api.Error {
	return &api.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func keyString(k api.ServiceKey) string {
	switch k.Protocol {
	case api.ProtoFWMark:
		return fmt.Sprintf("FWM %d", k.FWMark)
	default:
		return fmt.Sprintf("%s %s", strings.ToUpper(k.Protocol), netip.AddrPortFrom(k.Addr.Unmap(), k.Port))
	}
}

// checkService validates a service's attributes (for add and edit) and fills defaults.
func checkService(s *api.Service) *api.Error {
	switch s.Protocol {
	case api.ProtoTCP, api.ProtoUDP, api.ProtoSCTP:
		if !s.Addr.IsValid() || s.Addr.IsUnspecified() {
			return apiErr(api.ErrCodeInvalid, "service address %v: must be a unicast IPv4 or IPv6 address", s.Addr)
		}
		s.Addr = s.Addr.Unmap()
	case api.ProtoFWMark:
		if e := checkMarkService(s); e != nil {
			return e
		}
	default:
		return apiErr(api.ErrCodeInvalid, "protocol %q: must be tcp (-t), udp (-u), sctp (--sctp-service) or fwmark (-f)", s.Protocol)
	}
	if s.Scheduler == "" {
		s.Scheduler = "wlc"
	}
	flags, err := sched.ParseFlags(strings.Join(s.SchedFlags, ","))
	if err != nil {
		return apiErr(api.ErrCodeInvalid, "%v", err)
	}
	if _, err := sched.New(s.Scheduler, nil, flags); err != nil {
		if isUnknownSched(err) {
			return apiErr(api.ErrCodeInvalid, "%v", err)
		}
		return apiErr(api.ErrCodeNotImplemented, "%v", err)
	}
	if s.Timeout != 0 {
		s.Persistent = true
	}
	if s.Persistent {
		if s.Timeout == 0 {
			s.Timeout = 300 // ipvsadm's default for -p without a value
		}
		if s.Timeout > 2_000_000 {
			return apiErr(api.ErrCodeInvalid, "persistence timeout %d s: at most 2000000", s.Timeout)
		}
		if _, err := persistBits(svcAddr(s), s.Netmask); err != nil {
			return apiErr(api.ErrCodeInvalid, "%v", err)
		}
	} else if s.Netmask != "" {
		return apiErr(api.ErrCodeInvalid, "netmask %s without persistence: -M needs -p", s.Netmask)
	}
	if s.Port == 0 && !s.Persistent && s.Protocol != api.ProtoFWMark {
		// ipvsadm: "Zero port specified for non-persistent service".
		return apiErr(api.ErrCodeInvalid, "service %s: port 0 (every port of the address) is only valid for a persistent service: add -p [timeout], or give the port", keyString(s.ServiceKey))
	}
	if s.OnePacket && s.Protocol == api.ProtoTCP {
		// ipvsadm: "One-Packet Scheduling is only for UDP virtual services".
		return apiErr(api.ErrCodeInvalid, "service %s: one-packet scheduling (-o) is only for UDP services (-u) and fwmark services (-f), whose UDP packets it schedules one by one", keyString(s.ServiceKey))
	}
	if s.PE != "" {
		return apiErr(api.ErrCodeNotImplemented, "persistence engines (--pe) are not supported")
	}
	return nil
}

func isUnknownSched(err error) bool {
	return err != nil && strings.Contains(err.Error(), sched.ErrUnknown.Error())
}

// checkDest validates a destination of service s and fills defaults.
func checkDest(s *ruleSvc, d *api.Dest) *api.Error {
	if !d.Addr.IsValid() || d.Addr.IsUnspecified() {
		return apiErr(api.ErrCodeInvalid, "real server address %v: must be a unicast address", d.Addr)
	}
	d.Addr = d.Addr.Unmap()
	if d.Port == 0 {
		d.Port = s.cfg.Port
	}
	if e := checkMethod(s, d); e != nil {
		return e
	}
	// IPVS takes a real server of the service's other family for tunnelling only
	// (IPv6 in IPv4, IPv4 in IPv6).
	if d.Addr.Is4() != svcAddr(&s.cfg).Is4() && d.Method != api.MethodTunnel {
		return apiErr(api.ErrCodeInvalid, "real server %v and service %s are of different address families: only a tunnelling (-i) real server may be; use one of the service's family", d.Addr, keyString(s.cfg.ServiceKey))
	}
	if s.cfg.OnePacket && d.Method == api.MethodFullNAT {
		return apiErr(api.ErrCodeInvalid, "real server %v: full NAT (--fullnat) does not combine with one-packet scheduling (-o) of service %s: its replies need the connection entry; use -m, -g or -i, or remove -o", d.Addr, keyString(s.cfg.ServiceKey))
	}
	if d.Weight < 0 || d.Weight > 65535 {
		return apiErr(api.ErrCodeInvalid, "weight %d: must be between 0 and 65535", d.Weight)
	}
	if d.LThreshold > 0 && d.UThreshold > 0 && d.LThreshold > d.UThreshold {
		return apiErr(api.ErrCodeInvalid, "lower threshold %d above upper threshold %d: -y must not exceed -x", d.LThreshold, d.UThreshold)
	}
	return nil
}

// snapshot turns rules into a dataplane snapshot, and returns each service's scheduler
// with its input (for the next snapshot, once this one is published). prev holds the
// published schedulers, hooks the scheduler hooks the change calls (by service ID).
//
// A service keeps its scheduler instance — wrr's and rr's positions included — unless
// its hooks are called or its input differs from the one prev was built from (a health
// check flipped one of its servers: the kernel's upd_dest, as keepalived's
// inhibit_on_failure edits the weight). Each hook is a Rebuild from the scheduler before
// it, in order, so a batch carries over exactly what the same commands one by one would
// (Rebuild documents what the kernel keeps across a hook); counts are the connection
// counts the schedulers read.
func (r *rules) snapshot(prev map[uint32]*builtSched, hooks schedHooks, counts sched.Counts, down map[uint32]bool) (*dataplane.Snapshot, map[uint32]*builtSched, error) {
	built := make(map[uint32]*builtSched, len(r.services))
	svcs := make([]dataplane.Service, 0, len(r.services))
	for _, s := range r.services {
		st, err := s.scheduler(prev[s.id], hooks[s.id], counts, s.schedInput(down))
		if err != nil {
			return nil, nil, err
		}
		built[s.id] = st
		ds := make([]dataplane.Dest, len(s.dests))
		for i, d := range s.dests {
			ds[i] = d.snapDest(down)
		}
		var persist int64
		var bits uint8
		if s.cfg.Persistent {
			persist = int64(s.cfg.Timeout) * 1e9
			bits, _ = persistBits(svcAddr(&s.cfg), s.cfg.Netmask)
		}
		var ls []dataplane.Laddr
		for _, l := range s.laddrs {
			ls = append(ls, dataplane.Laddr{ID: l.id, Addr: l.cfg.Addr.Unmap().As16()})
		}
		svcs = append(svcs, dataplane.Service{
			Persist:     persist,
			PersistBits: bits,
			ID:          s.id,
			Key:         dataplane.SvcKey{Addr: s.cfg.Addr.As16(), Port: s.cfg.Port, Proto: protoNum(s.cfg.Protocol)},
			Dests:       ds,
			Sched:       st.sched,
			Laddrs:      ls,
			OPS:         s.cfg.OnePacket,
		})
		if s.cfg.Protocol == api.ProtoFWMark {
			svcs[len(svcs)-1].Key = dataplane.FWMarkKey(uint8(s.cfg.Family))
			svcs[len(svcs)-1].FWMark = s.cfg.FWMark
		}
	}
	snap, err := dataplane.NewSnapshot(svcs)
	if err != nil {
		return nil, nil, err
	}
	if err := snap.SetMarks(dataplaneMarks(r.marks)); err != nil {
		return nil, nil, err
	}
	return snap, built, nil
}

func protoNum(p string) uint8 {
	if p == api.ProtoSCTP {
		return 132 // IPPROTO_SCTP
	}
	if p == api.ProtoUDP {
		return 17
	}
	return 6
}

// persistBits turns -M (an IPv4 netmask, or an IPv6 prefix length) into a prefix length
// in the 128-bit space the dataplane keys on (IPv4 /24 = 120). Empty: the whole address.
func persistBits(vip netip.Addr, mask string) (uint8, error) {
	if mask == "" {
		return 128, nil
	}
	if vip.Is4() {
		m, err := netip.ParseAddr(mask)
		if err != nil || !m.Is4() {
			return 0, fmt.Errorf("netmask %q: want an IPv4 netmask such as 255.255.255.0", mask)
		}
		b := m.As4()
		ones := 0
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		for v&0x80000000 != 0 {
			ones++
			v <<= 1
		}
		if v != 0 {
			return 0, fmt.Errorf("netmask %q: not a contiguous netmask", mask)
		}
		return uint8(96 + ones), nil
	}
	n, err := strconv.Atoi(mask)
	if err != nil || n < 1 || n > 128 {
		return 0, fmt.Errorf("netmask %q: want an IPv6 prefix length from 1 to 128", mask)
	}
	return uint8(n), nil
}
