package dataplane

import (
	"fmt"

	"xlvs/conntrack"
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

// Dest is a real server of a service in a snapshot.
type Dest struct {
	ID     uint32 // stable counter index (conntrack counts, stats)
	Addr   [16]byte
	Port   uint16
	Method conntrack.Method
	Weight int32
}

// Service is a virtual service in a snapshot: destinations in the kernel's list order and
// the scheduler built over them.
type Service struct {
	ID    uint32 // stable counter index
	Key   SvcKey
	Dests []Dest
	Sched sched.Scheduler
}

// Snapshot is one immutable configuration. Build it with NewSnapshot and hand it to
// Dataplane.Publish; never change it afterwards.
type Snapshot struct {
	Services []Service
	bySvc    map[SvcKey]int32
	byReal   map[SvcKey]int32 // NAT real servers: replies from them are ours
}

// NewSnapshot indexes services. Service keys must be unique.
func NewSnapshot(services []Service) (*Snapshot, error) {
	s := &Snapshot{
		Services: services,
		bySvc:    make(map[SvcKey]int32, len(services)),
		byReal:   make(map[SvcKey]int32),
	}
	for i := range services {
		svc := &services[i]
		if _, dup := s.bySvc[svc.Key]; dup {
			return nil, fmt.Errorf("build snapshot: service %v listed twice", svc.Key)
		}
		if svc.Sched == nil {
			return nil, fmt.Errorf("build snapshot: service %v has no scheduler", svc.Key)
		}
		s.bySvc[svc.Key] = int32(i)
		for _, d := range svc.Dests {
			if d.Method == conntrack.MethodNAT {
				s.byReal[SvcKey{Addr: d.Addr, Port: d.Port, Proto: svc.Key.Proto}] = int32(i)
			}
		}
	}
	return s, nil
}

// ServiceKeys and RealKeys list what the XDP program must redirect.
func (s *Snapshot) ServiceKeys() []SvcKey {
	out := make([]SvcKey, 0, len(s.bySvc))
	for k := range s.bySvc {
		out = append(out, k)
	}
	return out
}

// RealKeys lists the NAT real servers whose replies the XDP program must redirect.
func (s *Snapshot) RealKeys() []SvcKey {
	out := make([]SvcKey, 0, len(s.byReal))
	for k := range s.byReal {
		out = append(out, k)
	}
	return out
}
