package health

import (
	"fmt"
	"net/netip"
	"time"
)

// EventKind is the kind of a transition.
type EventKind uint8

// Transitions, each emitted exactly once when it happens.
const (
	// CheckDown: one check of a real server failed after its retries.
	CheckDown EventKind = iota + 1
	// CheckUp: a failed check passed again.
	CheckUp
	// ServerDown: a real server left scheduling (removed, or weight 0 when Inhibit).
	ServerDown
	// ServerUp: a real server is usable again (every check passes).
	ServerUp
	// WeightChanged: a dynamic check (misc_dynamic) changed a server's weight.
	WeightChanged
	// QuorumLost: the live weight fell below the quorum (minus hysteresis).
	QuorumLost
	// QuorumGained: the live weight reached the quorum (plus hysteresis).
	QuorumGained
	// SorryServerIn: the sorry server took the traffic (the real servers left).
	SorryServerIn
	// SorryServerOut: the sorry server left; the live real servers are back.
	SorryServerOut
)

var kindNames = [...]string{
	CheckDown: "check-down", CheckUp: "check-up", ServerDown: "server-down", ServerUp: "server-up",
	WeightChanged: "weight-changed", QuorumLost: "quorum-lost", QuorumGained: "quorum-gained",
	SorryServerIn: "sorry-server-in", SorryServerOut: "sorry-server-out",
}

// String is a short name fit for a metric label ("server-down", ...).
func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("event-%d", k)
}

// Event is one transition.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Service ServiceKey
	// Server is the real or sorry server concerned; invalid for quorum events.
	Server netip.AddrPort
	// Check describes the check (CheckDown, CheckUp).
	Check string
	// Err is why the check failed (CheckDown).
	Err error
	// Inhibit: the server stays listed with weight 0 rather than leaving (ServerDown,
	// ServerUp).
	Inhibit bool
	// Weight is the server's weight after the event (ServerUp, WeightChanged).
	Weight int32
	// WeightSum and Threshold are the live weight and the threshold it crossed (quorum
	// events).
	WeightSum, Threshold int64
}

// String is a log line in keepalived's words.
func (e Event) String() string {
	switch e.Kind {
	case CheckDown:
		return fmt.Sprintf("%s on %s of %s failed: %v", e.Check, e.Server, e.Service, e.Err)
	case CheckUp:
		return fmt.Sprintf("%s on %s of %s succeeded", e.Check, e.Server, e.Service)
	case ServerDown:
		if e.Inhibit {
			return fmt.Sprintf("Disabling service %s of VS %s (weight 0)", e.Server, e.Service)
		}
		return fmt.Sprintf("Removing service %s from VS %s", e.Server, e.Service)
	case ServerUp:
		if e.Inhibit {
			return fmt.Sprintf("Enabling service %s of VS %s (weight %d)", e.Server, e.Service, e.Weight)
		}
		return fmt.Sprintf("Adding service %s to VS %s (weight %d)", e.Server, e.Service, e.Weight)
	case WeightChanged:
		return fmt.Sprintf("Changing weight to %d for service %s of VS %s", e.Weight, e.Server, e.Service)
	case QuorumLost:
		return fmt.Sprintf("Lost quorum for VS %s: live weight %d < %d", e.Service, e.WeightSum, e.Threshold)
	case QuorumGained:
		return fmt.Sprintf("Gained quorum for VS %s: live weight %d >= %d", e.Service, e.WeightSum, e.Threshold)
	case SorryServerIn:
		return fmt.Sprintf("Adding sorry server %s to VS %s", e.Server, e.Service)
	case SorryServerOut:
		return fmt.Sprintf("Removing sorry server %s from VS %s", e.Server, e.Service)
	}
	return e.Kind.String()
}

// DestState is what one destination of a service should be, as the pool decides it.
type DestState struct {
	Addr netip.AddrPort
	// Sorry marks the sorry server (when it is not also a real server).
	Sorry bool
	// InPool: the destination must exist in the service; otherwise it must not.
	InPool bool
	// Weight when InPool; 0 for an inhibited server that is down.
	Weight int32
}

// Update tells the owner of the rules what to change for one service. Dests is the full
// desired state of every destination the Monitor manages for the service (its real
// servers and sorry server, in configuration order): add those InPool and missing, set
// the weight of those present, delete those present and not InPool. Destinations the
// Monitor does not manage are not listed and must be left alone.
type Update struct {
	Service ServiceKey
	// Events that led to this update, in order; empty for the first update of a service
	// added by Apply and for a reconfiguration that changed only the desired state.
	Events []Event
	Dests  []DestState
	// Removed: the service is no longer monitored (Apply without it); Dests is nil and
	// the rules are the caller's to keep or delete.
	Removed bool
}
