package sched

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Dest is a real server as schedulers see it. Pointer-free.
type Dest struct {
	ID         uint32 // index of the destination's counters (conntrack, stats)
	Weight     int32  // 0 = quiesced
	UThreshold uint32 // -x: no new connections at or above this many (0 = off)
	LThreshold uint32 // -y: usable again below this many after overload (0 = off)
	Addr       [16]byte
	Port       uint16
}

// Counts gives a destination's connection counts: ActiveConn (ESTABLISHED) and InActConn
// (every other state). Implementations read them lock-free.
type Counts interface {
	Conns(id uint32) (active, inactive int32)
}

// Flow is what hashing schedulers (sh, dh, mh, lblc) look at.
type Flow struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// Scheduler picks the destination of a new connection.
type Scheduler interface {
	// Name is the ipvsadm name (rr, wrr, ...).
	Name() string
	// Schedule returns the index in the destination list of the chosen server, or -1 when
	// no server is available.
	Schedule(counts Counts, f *Flow) int
}

// Flags are the -b scheduler flags.
type Flags uint8

const (
	FlagSHFallback Flags = 1 << iota // sh-fallback
	FlagSHPort                       // sh-port
	FlagMHFallback                   // mh-fallback
	FlagMHPort                       // mh-port
)

var flagNames = []struct {
	f    Flags
	name string
}{{FlagSHFallback, "sh-fallback"}, {FlagSHPort, "sh-port"}, {FlagMHFallback, "mh-fallback"}, {FlagMHPort, "mh-port"}}

// ParseFlags parses ipvsadm's comma-separated -b value.
func ParseFlags(s string) (Flags, error) {
	var f Flags
	if s == "" {
		return 0, nil
	}
	for _, part := range strings.Split(s, ",") {
		ok := false
		for _, n := range flagNames {
			if part == n.name {
				f |= n.f
				ok = true
			}
		}
		if !ok {
			return 0, fmt.Errorf("unknown scheduler flag %q: valid flags are sh-fallback, sh-port, mh-fallback, mh-port", part)
		}
	}
	return f, nil
}

// Names returns the flag names in ipvsadm's order.
func (f Flags) Names() []string {
	var out []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// ErrUnknown is wrapped by New for a scheduler name it does not know.
var ErrUnknown = errors.New("unknown scheduler")

type factory func(dests []Dest, flags Flags) (Scheduler, error)

var registry = map[string]factory{}

func register(name string, f factory) { registry[name] = f }

// Names lists the schedulers this package implements, sorted.
func Names() []string {
	n := make([]string, 0, len(registry))
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// New builds the named scheduler over dests, given in the kernel's list order (the newest
// destination first). The slice must not change afterwards.
func New(name string, dests []Dest, flags Flags) (Scheduler, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("%w %q: valid schedulers are %s", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	return f(dests, flags)
}

// available reports whether d may take a new connection: weight above zero and not at or
// above its upper threshold.
func available(d *Dest, counts Counts) bool {
	if d.Weight <= 0 {
		return false
	}
	if d.UThreshold > 0 {
		a, i := counts.Conns(d.ID)
		if uint32(a)+uint32(i) >= d.UThreshold {
			return false
		}
	}
	return true
}
