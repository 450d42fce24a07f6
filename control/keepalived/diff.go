package keepalived

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
)

// Changes says how a new configuration differs from the running one, so a reload applies
// only the difference. Virtual servers are matched by ServiceKey, real servers by address
// and port; positions (file and line) never count as a change.
type Changes struct {
	AddedServices   []VirtualServer
	RemovedServices []VirtualServer
	ChangedServices []ServiceChange // same key, something inside differs
}

// ServiceChange is a virtual server present in both configurations with differences.
type ServiceChange struct {
	Old, New VirtualServer
	// Fields names the virtual server's own settings that differ, with the keepalived
	// keyword when there is one ("lb_algo", "persistence_timeout", "quorum", ...).
	Fields         []string
	AddedServers   []RealServer
	RemovedServers []RealServer
	ChangedServers []ServerChange
	// AddedLocalAddrs and RemovedLocalAddrs are the FULLNAT local addresses (from
	// laddr_group_name's local_address_group) that the service gains and loses; their
	// order in the group does not count.
	AddedLocalAddrs   []netip.Addr
	RemovedLocalAddrs []netip.Addr
}

// ServerChange is a real server present in both configurations with differences.
type ServerChange struct {
	Old, New RealServer
	Fields   []string // "weight", "lvs_method", "inhibit_on_failure", "uthreshold", "checkers", ...
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.AddedServices) == 0 && len(c.RemovedServices) == 0 && len(c.ChangedServices) == 0
}

// RuleChanged reports whether the service's own rule (what ipvsadm -E sets: scheduler,
// its flags, persistence, one-packet scheduling) differs; health settings such as
// delay_loop or quorum do not count.
func (sc ServiceChange) RuleChanged() bool {
	for _, f := range sc.Fields {
		switch f {
		case "lb_algo", "sched_flags", "ops", "persistence_timeout", "persistence_granularity", "persistence_engine":
			return true
		}
	}
	return false
}

// RuleChanged reports whether the destination's rule (what ipvsadm -e sets: forwarding
// method, weight, thresholds) differs.
func (sc ServerChange) RuleChanged() bool {
	for _, f := range sc.Fields {
		switch f {
		case "weight", "lvs_method", "uthreshold", "lthreshold":
			return true
		}
	}
	return false
}

// Diff compares the running configuration old with new. A nil old means empty.
func Diff(old, new *Config) Changes {
	var ch Changes
	var oldVS, newVS []VirtualServer
	if old != nil {
		oldVS = old.VirtualServers
	}
	if new != nil {
		newVS = new.VirtualServers
	}
	oldByKey := map[ServiceKey]int{}
	for i, vs := range oldVS {
		oldByKey[vs.ServiceKey] = i
	}
	inNew := map[ServiceKey]bool{}
	for _, nv := range newVS {
		inNew[nv.ServiceKey] = true
		i, ok := oldByKey[nv.ServiceKey]
		if !ok {
			ch.AddedServices = append(ch.AddedServices, nv)
			continue
		}
		if sc, changed := diffService(oldVS[i], nv); changed {
			ch.ChangedServices = append(ch.ChangedServices, sc)
		}
	}
	for _, ov := range oldVS {
		if !inNew[ov.ServiceKey] {
			ch.RemovedServices = append(ch.RemovedServices, ov)
		}
	}
	return ch
}

func diffService(o, n VirtualServer) (ServiceChange, bool) {
	sc := ServiceChange{Old: o, New: n}
	field := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			sc.Fields = append(sc.Fields, name)
		}
	}
	field("lb_algo", o.Scheduler, n.Scheduler)
	field("sched_flags", o.SchedFlags, n.SchedFlags)
	field("ops", o.OnePacket, n.OnePacket)
	field("hashed", o.Hashed, n.Hashed)
	field("lb_kind", o.Method, n.Method)
	field("persistence_timeout", o.PersistenceTimeout, n.PersistenceTimeout)
	field("persistence_granularity", o.PersistenceGranularity, n.PersistenceGranularity)
	field("persistence_engine", o.PersistenceEngine, n.PersistenceEngine)
	field("delay_loop", o.DelayLoop, n.DelayLoop)
	field("quorum", o.Quorum, n.Quorum)
	field("hysteresis", o.Hysteresis, n.Hysteresis)
	field("quorum_up", o.QuorumUp, n.QuorumUp)
	field("quorum_down", o.QuorumDown, n.QuorumDown)
	field("alpha", o.Alpha, n.Alpha)
	field("omega", o.Omega, n.Omega)
	field("ha_suspend", o.HASuspend, n.HASuspend)
	field("virtualhost", o.VirtualHost, n.VirtualHost)
	field("sorry_server", sorryNoPos(o.SorryServer), sorryNoPos(n.SorryServer))
	field("laddr_group_name", o.LaddrGroup, n.LaddrGroup)
	sc.AddedLocalAddrs = missing(n.LocalAddrs, o.LocalAddrs)
	sc.RemovedLocalAddrs = missing(o.LocalAddrs, n.LocalAddrs)

	oldByAddr := map[string]int{}
	for i, rs := range o.RealServers {
		oldByAddr[rs.Addr.String()] = i
	}
	inNew := map[string]bool{}
	for _, nr := range n.RealServers {
		inNew[nr.Addr.String()] = true
		i, ok := oldByAddr[nr.Addr.String()]
		if !ok {
			sc.AddedServers = append(sc.AddedServers, nr)
			continue
		}
		if f := diffServer(o.RealServers[i], nr); len(f) > 0 {
			sc.ChangedServers = append(sc.ChangedServers, ServerChange{Old: o.RealServers[i], New: nr, Fields: f})
		}
	}
	for _, or := range o.RealServers {
		if !inNew[or.Addr.String()] {
			sc.RemovedServers = append(sc.RemovedServers, or)
		}
	}
	changed := len(sc.Fields) > 0 || len(sc.AddedServers) > 0 || len(sc.RemovedServers) > 0 || len(sc.ChangedServers) > 0 ||
		len(sc.AddedLocalAddrs) > 0 || len(sc.RemovedLocalAddrs) > 0
	return sc, changed
}

// missing returns the addresses of a that b lacks, in a's order.
func missing(a, b []netip.Addr) []netip.Addr {
	in := make(map[netip.Addr]bool, len(b))
	for _, x := range b {
		in[x] = true
	}
	var out []netip.Addr
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}

func diffServer(o, n RealServer) []string {
	var f []string
	field := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			f = append(f, name)
		}
	}
	field("weight", o.Weight, n.Weight)
	field("lvs_method", o.Method, n.Method)
	field("inhibit_on_failure", o.Inhibit, n.Inhibit)
	field("uthreshold", o.UThreshold, n.UThreshold)
	field("lthreshold", o.LThreshold, n.LThreshold)
	field("notify_up", o.NotifyUp, n.NotifyUp)
	field("notify_down", o.NotifyDown, n.NotifyDown)
	field("checkers", checkersNoPos(o.Checkers), checkersNoPos(n.Checkers))
	return f
}

func sorryNoPos(s *SorryServer) *SorryServer {
	if s == nil {
		return nil
	}
	c := *s
	c.Pos = Pos{}
	return &c
}

func checkersNoPos(cs []Checker) []Checker {
	out := make([]Checker, len(cs))
	for i, c := range cs {
		c.Pos = Pos{}
		out[i] = c
	}
	return out
}

// String describes the changes, one line each, for logs.
func (c Changes) String() string {
	var b strings.Builder
	for _, vs := range c.AddedServices {
		if len(vs.LocalAddrs) > 0 {
			fmt.Fprintf(&b, "add virtual_server %s (%d real servers, %d local addresses)\n", vs.ServiceKey, len(vs.RealServers), len(vs.LocalAddrs))
			continue
		}
		fmt.Fprintf(&b, "add virtual_server %s (%d real servers)\n", vs.ServiceKey, len(vs.RealServers))
	}
	for _, vs := range c.RemovedServices {
		fmt.Fprintf(&b, "remove virtual_server %s\n", vs.ServiceKey)
	}
	for _, sc := range c.ChangedServices {
		if len(sc.Fields) > 0 {
			fmt.Fprintf(&b, "change virtual_server %s: %s\n", sc.New.ServiceKey, strings.Join(sc.Fields, ", "))
		}
		for _, rs := range sc.AddedServers {
			fmt.Fprintf(&b, "add real_server %s to %s\n", rs.Addr, sc.New.ServiceKey)
		}
		for _, rs := range sc.RemovedServers {
			fmt.Fprintf(&b, "remove real_server %s from %s\n", rs.Addr, sc.New.ServiceKey)
		}
		for _, s := range sc.ChangedServers {
			fmt.Fprintf(&b, "change real_server %s of %s: %s\n", s.New.Addr, sc.New.ServiceKey, strings.Join(s.Fields, ", "))
		}
		for _, a := range sc.AddedLocalAddrs {
			fmt.Fprintf(&b, "add local address %s to %s\n", a, sc.New.ServiceKey)
		}
		for _, a := range sc.RemovedLocalAddrs {
			fmt.Fprintf(&b, "remove local address %s from %s\n", a, sc.New.ServiceKey)
		}
	}
	return b.String()
}
