package dataplane

import (
	"fmt"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane/packet"
	"xlvs/sched"
)

// SvcKey identifies a virtual service, or (for the reply path) a real server: address,
// port and protocol. Pointer-free and comparable.
type SvcKey struct {
	Addr  [16]byte
	Port  uint16
	Proto uint8
	_     uint8
}

// Dest is a real server of a service in a snapshot: what the workers forward to. Its
// scheduler's view of it is Sched (the same fields without Method).
type Dest struct {
	ID     uint32 // stable counter index (conntrack counts, stats)
	Addr   [16]byte
	Port   uint16
	Method conntrack.Method
	Weight int32
	// UThreshold and LThreshold are -x and -y (0: none). Publish gives them to the
	// connection table, which keeps the overload flag the schedulers read.
	UThreshold, LThreshold uint32
	// Tun is a TUN destination's encapsulation (ipvsadm --tun-type, --tun-port and the
	// checksum option); the zero value is IPIP. Ignored for other methods.
	Tun packet.Encap
}

// Sched returns d as the service's scheduler sees it: the one conversion from a
// snapshot's real server to a scheduler's.
func (d *Dest) Sched() sched.Dest {
	return sched.Dest{ID: d.ID, Weight: d.Weight, UThreshold: d.UThreshold, LThreshold: d.LThreshold, Addr: d.Addr, Port: d.Port}
}

// Service is a virtual service in a snapshot: destinations in the kernel's list order and
// the scheduler built over them.
type Service struct {
	ID    uint32 // stable counter index
	Key   SvcKey
	Dests []Dest
	Sched sched.Scheduler
	// Persist is the persistence timeout in nanoseconds (0: not persistent); clients are
	// grouped by their address's first PersistBits bits (128-bit space: IPv4 /32 is 128).
	Persist     int64
	PersistBits uint8
	// Laddrs are the service's FULLNAT local addresses (DPVS's laddrs), of the service's
	// family: a new connection to a FULLNAT destination leaves from one of them, on a
	// port the worker allocates. Empty: FULLNAT destinations get no new connections.
	Laddrs []Laddr
	// FWMark is a firewall-mark service's mark (ipvsadm -f; Key is then FWMarkKey of its
	// family): the packets SetMarks' rules give this mark are its (fwmark.go).
	FWMark uint32
	// OPS is one-packet scheduling (ipvsadm -o): every UDP datagram is scheduled on its
	// own and leaves no connection entry (ops.go).
	OPS bool
}

// Laddr is a FULLNAT local address of a service in a snapshot.
type Laddr struct {
	ID   uint32   // stable counter index (port conflicts), below Config.MaxLaddrs
	Addr [16]byte // IPv4-mapped for IPv4
	// ports lists the address's ports by connection-table shard; Publish sets it.
	ports *lportIndex
}

// Snapshot is one immutable configuration. Build it with NewSnapshot and hand it to
// Dataplane.Publish; never change it afterwards.
type Snapshot struct {
	Services []Service
	// Draining lists FULLNAT local addresses no longer configured on any service whose
	// connections may still live: the XDP program keeps handing real servers' replies to
	// them to the dataplane. Set it before Publish.
	Draining [][16]byte
	bySvc    map[SvcKey]int32
	byReal   map[SvcKey]int32 // NAT and FULLNAT real servers: replies from them are ours
	// svcTab and realTab hold what bySvc and byReal hold, for the per-packet path
	// (keytab.go: pointer-free open addressing, cheaper than a Go map's hashing).
	svcTab, realTab keyTable
	// bound is the connection table whose shards the local addresses' port indexes
	// follow (set by Publish).
	bound *conntrack.Table
	// laddrs: some service has local addresses (FULLNAT); set with bound
	laddrs bool
	// anyPort: some service (or NAT real server) has port 0, "every port" (a persistent
	// service of ipvsadm -t VIP:0 -p): lookups that miss try port 0 next.
	anyPort bool
	// byID holds every destination at its ID (dense, pointer-free): DR and TUN entries
	// carry no reply key, so the worker finds their real server here. A hole (live false)
	// is a destination that no longer exists: its connections' packets are dropped, as
	// IPVS does with expire_nodest_conn=0.
	byID []destRef
	// Marks are the mark rules SetMarks compiled into marks (fwmark.go); byMark finds a
	// fwmark service by mark and family. opsReal: NAT real servers of one-packet services.
	Marks   []MarkRule
	marks   *markTable
	byMark  map[markSvcKey]int32
	opsReal keyTable
}

// destRef is a destination as the per-packet path needs it. Pointer-free.
type destRef struct {
	Addr   [16]byte
	Port   uint16
	Method conntrack.Method
	live   bool
	Tun    packet.Encap // MethodTUN's encapsulation; zero for the other methods
}

// checkEncap validates a TUN destination's encapsulation.
func checkEncap(e packet.Encap) error {
	switch e.Type {
	case packet.EncapIPIP, packet.EncapGRE:
		if e.Port != 0 {
			return fmt.Errorf("tunnel type %v takes no port, got %d; only GUE has one", e.Type, e.Port)
		}
	case packet.EncapGUE:
		if e.Port == 0 {
			return fmt.Errorf("a GUE tunnel needs its UDP port (ipvsadm --tun-port), 1 to 65535")
		}
	default:
		return fmt.Errorf("unknown tunnel type %d; want IPIP, GUE or GRE", e.Type)
	}
	if e.Type == packet.EncapIPIP && e.Csum {
		return fmt.Errorf("an IPIP tunnel has no checksum option; only GUE and GRE have one")
	}
	return nil
}

// maxDestID bounds the IDs NewSnapshot indexes densely (the connection table's own
// limit is far below).
const maxDestID = 1 << 24

// NewSnapshot indexes services. Service keys must be unique.
func NewSnapshot(services []Service) (*Snapshot, error) {
	s := &Snapshot{
		Services: services,
		bySvc:    make(map[SvcKey]int32, len(services)),
		byReal:   make(map[SvcKey]int32),
		byMark:   map[markSvcKey]int32{},
	}
	opsReal := map[SvcKey]int32{}
	maxID := -1
	for i := range services {
		for _, d := range services[i].Dests {
			if d.ID >= maxDestID {
				return nil, fmt.Errorf("build snapshot: destination ID %d: must be below %d", d.ID, maxDestID)
			}
			maxID = max(maxID, int(d.ID))
		}
	}
	s.byID = make([]destRef, maxID+1)
	for i := range services {
		svc := &services[i]
		if svc.Sched == nil {
			return nil, fmt.Errorf("build snapshot: service %v has no scheduler", svc.Key)
		}
		if svc.FWMark != 0 {
			if err := s.addMarkService(svc, int32(i)); err != nil {
				return nil, err
			}
		} else if _, dup := s.bySvc[svc.Key]; dup {
			return nil, fmt.Errorf("build snapshot: service %v listed twice", svc.Key)
		} else {
			s.bySvc[svc.Key] = int32(i)
		}
		if svc.Key.Port == 0 && svc.FWMark == 0 {
			if svc.Persist == 0 {
				return nil, fmt.Errorf("build snapshot: service %v: port 0 (every port) needs persistence", svc.Key)
			}
			s.anyPort = true
		}
		for _, d := range svc.Dests {
			if d.Method > conntrack.MethodFullNAT {
				return nil, fmt.Errorf("build snapshot: destination %d: unknown forwarding method %v", d.ID, d.Method)
			}
			ref := destRef{Addr: d.Addr, Port: d.Port, Method: d.Method, live: true}
			if d.Method == conntrack.MethodTUN {
				if err := checkEncap(d.Tun); err != nil {
					return nil, fmt.Errorf("build snapshot: destination %d: %w", d.ID, err)
				}
				ref.Tun = d.Tun
			}
			if prev := s.byID[d.ID]; prev.live && prev != ref {
				return nil, fmt.Errorf("build snapshot: destination ID %d names two different real servers (service %v)", d.ID, svc.Key)
			}
			s.byID[d.ID] = ref
			if d.Method == conntrack.MethodNAT || d.Method == conntrack.MethodFullNAT {
				port := d.Port
				if svc.Key.Port == 0 && (svc.Persist > 0 || d.Port == 0) {
					port = 0 // replies come from whichever port the client asked for
					s.anyPort = true
				}
				for _, proto := range svcProtos(svc) {
					k := SvcKey{Addr: d.Addr, Port: port, Proto: proto}
					s.byReal[k] = int32(i)
					if svc.OPS && proto == packet.ProtoUDP && d.Method == conntrack.MethodNAT {
						opsReal[k] = int32(i)
					}
				}
			}
		}
		if err := checkLaddrs(svc); err != nil {
			return nil, err
		}
	}
	s.svcTab = newKeyTable(s.bySvc)
	s.realTab = newKeyTable(s.byReal)
	s.opsReal = newKeyTable(opsReal)
	if n := len(s.LaddrAddrs()); n > bpf.MaxLaddrs {
		return nil, fmt.Errorf("build snapshot: %d distinct FULLNAT local addresses: at most %d", n, bpf.MaxLaddrs)
	}
	return s, nil
}

// checkLaddrs validates a service's local addresses: valid, of the service's family,
// each listed once, IDs in range.
func checkLaddrs(svc *Service) error {
	v4 := packet.IsIPv4Mapped(svc.Key.Addr)
	for i, la := range svc.Laddrs {
		if la.ID >= maxDestID {
			return fmt.Errorf("build snapshot: service %v: local address ID %d: must be below %d", svc.Key, la.ID, maxDestID)
		}
		if la.Addr == ([16]byte{}) || la.Addr == v4Unspecified {
			return fmt.Errorf("build snapshot: service %v: local address %d is unspecified", svc.Key, i)
		}
		if packet.IsIPv4Mapped(la.Addr) != v4 {
			return fmt.Errorf("build snapshot: service %v: local address %v is not of the service's address family", svc.Key, netipFrom16(la.Addr))
		}
		for _, o := range svc.Laddrs[:i] {
			if o.Addr == la.Addr {
				return fmt.Errorf("build snapshot: service %v: local address %v listed twice", svc.Key, netipFrom16(la.Addr))
			}
		}
	}
	return nil
}

var v4Unspecified = [16]byte{10: 0xff, 11: 0xff}

// service returns the index of the service a client's packet to dst:port is for: the
// fwmark service of the mark the rules give it (IPVS looks the mark up first), else the
// service of that port, else a port-0 service of the address.
func (s *Snapshot) service(dst *[16]byte, port uint16, proto uint8) (int32, bool) {
	if s.marks != nil {
		if i, ok := s.markService(dst, port, proto); ok {
			return i, true
		}
	}
	return s.serviceNoMark(dst, port, proto)
}

// serviceNoMark is service for an unmarked packet.
func (s *Snapshot) serviceNoMark(dst *[16]byte, port uint16, proto uint8) (int32, bool) {
	if i, ok := s.svcTab.get(dst, port, proto); ok || !s.anyPort {
		return i, ok
	}
	return s.svcTab.get(dst, 0, proto)
}

// isReal tells whether a packet from src:port is a NAT or FULLNAT real server's (a reply).
func (s *Snapshot) isReal(src *[16]byte, port uint16, proto uint8) bool {
	if _, ok := s.realTab.get(src, port, proto); ok || !s.anyPort {
		return ok
	}
	_, ok := s.realTab.get(src, 0, proto)
	return ok
}

// dest returns the live destination with ID id.
func (s *Snapshot) dest(id uint32) (*destRef, bool) {
	if id >= uint32(len(s.byID)) || !s.byID[id].live {
		return nil, false
	}
	return &s.byID[id], true
}

// ServiceKeys and RealKeys list what the XDP program must redirect.
func (s *Snapshot) ServiceKeys() []SvcKey {
	out := make([]SvcKey, 0, len(s.bySvc))
	for k := range s.bySvc {
		out = append(out, k)
	}
	return out
}

// LaddrAddrs lists, once each, the FULLNAT local addresses of every service and the
// Draining ones: the XDP program redirects real servers' replies to them.
func (s *Snapshot) LaddrAddrs() [][16]byte {
	seen := map[[16]byte]bool{}
	var out [][16]byte
	add := func(a [16]byte) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for i := range s.Services {
		for _, la := range s.Services[i].Laddrs {
			add(la.Addr)
		}
	}
	for _, a := range s.Draining {
		add(a)
	}
	return out
}

// KeepReals adds real servers no service names any more whose connections may still
// live (a deleted NAT real server: IPVS keeps translating its replies while its
// connections last, expire_nodest_conn=0): the XDP program keeps handing their replies to
// the dataplane, which finds their connections. Call it before Publish.
func (s *Snapshot) KeepReals(keys []SvcKey) {
	if len(keys) == 0 {
		return
	}
	for _, k := range keys {
		if _, ok := s.byReal[k]; !ok {
			s.byReal[k] = -1
			if k.Port == 0 {
				s.anyPort = true
			}
		}
	}
	s.realTab = newKeyTable(s.byReal)
}

// RealKeys lists the NAT and FULLNAT real servers whose replies the XDP program must
// redirect.
func (s *Snapshot) RealKeys() []SvcKey {
	out := make([]SvcKey, 0, len(s.byReal))
	for k := range s.byReal {
		out = append(out, k)
	}
	return out
}

// destIndex returns the index of destination id in s.Dests, or -1.
func (s *Service) destIndex(id uint32) int {
	for i := range s.Dests {
		if s.Dests[i].ID == id {
			return i
		}
	}
	return -1
}
