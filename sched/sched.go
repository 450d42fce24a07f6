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
	UThreshold uint32 // -x: overloaded at or above this many connections (0 = off)
	LThreshold uint32 // -y: usable again below this many after overload (0 = 3/4 of -x)
	Addr       [16]byte
	Port       uint16
}

// Counts gives what the kernel keeps in struct ip_vs_dest about a destination's
// connections, kept where connections bind to and unbind from it (conntrack.Table is the
// implementation). Implementations answer lock-free.
type Counts interface {
	// Conns returns ActiveConn and InActConn as the kernel counts them: a TCP connection
	// is active in SYN_SENT, SYN_RECV, SYNACK and ESTABLISHED (tcp_state_active_table in
	// ip_vs_proto_tcp.c), every other connection (UDP included) is inactive.
	Conns(id uint32) (active, inactive int32)
	// Overloaded returns IP_VS_DEST_F_OVERLOAD: set when binding a connection brings the
	// destination's ActiveConn+InActConn to its upper threshold, cleared when an unbind
	// takes it below the lower threshold (below 3/4 of the upper one when there is no
	// lower) and when an edit removes or raises the upper threshold.
	Overloaded(id uint32) bool
}

// Flow is what hashing and locality schedulers (sh, dh, mh, lblc, lblcr) look at.
// Addresses are 16 bytes; IPv4 is IPv4-mapped (::ffff:a.b.c.d). Ports are host order.
type Flow struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	// Now is the current monotonic time in nanoseconds (any fixed epoch): lblc and
	// lblcr age their entries with it.
	Now int64
}

// Scheduler picks the destination of a new connection.
type Scheduler interface {
	// Name is the ipvsadm name (rr, wrr, ...).
	Name() string
	// Schedule returns the index in the destination list of the server chosen for a new
	// connection, or -1 when no server is available. The caller binds the connection to
	// it (as the kernel's ip_vs_schedule does); counts keeps the counts and the overload
	// flag from then on. f may be nil for schedulers that do not hash.
	Schedule(counts Counts, f *Flow) int
}

// Flags are the -b scheduler flags, as the kernel's IP_VS_SVC_F_SCHED1..3 bits: sh and mh
// give the first two names of their own, other schedulers ignore them.
type Flags uint8

const (
	FlagSched1 Flags = 1 << iota // IP_VS_SVC_F_SCHED1: sh-fallback, mh-fallback, flag-1
	FlagSched2                   // IP_VS_SVC_F_SCHED2: sh-port, mh-port, flag-2
	FlagSched3                   // IP_VS_SVC_F_SCHED3: flag-3
)

// The scheduler-specific names of the flag bits (the kernel defines them the same way).
const (
	FlagSHFallback = FlagSched1 // sh-fallback: probe on when the hashed server is unavailable
	FlagSHPort     = FlagSched2 // sh-port: hash the source port too
	FlagMHFallback = FlagSched1 // mh-fallback
	FlagMHPort     = FlagSched2 // mh-port
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{FlagSHFallback, "sh-fallback"}, {FlagSHPort, "sh-port"},
	{FlagMHFallback, "mh-fallback"}, {FlagMHPort, "mh-port"},
	{FlagSched1, "flag-1"}, {FlagSched2, "flag-2"}, {FlagSched3, "flag-3"},
}

// ErrBadFlag is wrapped by ParseFlags for a name it does not know.
var ErrBadFlag = errors.New("unknown scheduler flag")

// ParseFlags parses ipvsadm's comma-separated -b value. sh-fallback and mh-fallback (and
// flag-1) are the same bit, as are sh-port, mh-port and flag-2; which scheduler a name
// suits is the command line's check, not this one's.
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
				break
			}
		}
		if !ok {
			return 0, fmt.Errorf("parse scheduler flags: %w %q: valid flags are sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3", ErrBadFlag, part)
		}
	}
	return f, nil
}

// Names returns the flag names as ipvsadm lists them for the named scheduler: sh-* for
// sh, mh-* for mh, flag-N for any other.
func (f Flags) Names(scheduler string) []string {
	var out []string
	for i, bit := range []Flags{FlagSched1, FlagSched2, FlagSched3} {
		if f&bit == 0 {
			continue
		}
		switch {
		case (scheduler == "sh" || scheduler == "mh") && i == 0:
			out = append(out, scheduler+"-fallback")
		case (scheduler == "sh" || scheduler == "mh") && i == 1:
			out = append(out, scheduler+"-port")
		default:
			out = append(out, fmt.Sprintf("flag-%d", i+1))
		}
	}
	return out
}

// ErrUnknown is wrapped by New for a scheduler name it does not know.
var ErrUnknown = errors.New("unknown scheduler")

// ErrTooMany is wrapped by New when a scheduler cannot hold that many destinations
// (mh: more than its lookup table has slots, which the kernel refuses with EINVAL).
var ErrTooMany = errors.New("too many destinations")

// factory builds a scheduler over b. prev is the instance it replaces when that one is
// of the same algorithm (Rebuild), else nil.
type factory func(b *base, flags Flags, prev Scheduler) (Scheduler, error)

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
	return Rebuild(nil, nil, name, dests, flags)
}

// Rebuild is New for a service that already had a scheduler, prev (nil: same as New):
// call it whenever the service's destination list, weights, thresholds, scheduler or
// flags change, with the same rules for dests as New. It carries over what the kernel
// keeps across such an edit, matching destinations by ID, address and port:
//   - every scheduler: each destination's last non-zero weight (mh builds its table
//     from it, so quiescing a server with weight 0 keeps the table); the overload flag
//     is the Counts implementation's (conntrack.Table.SetThresholds applies an edit of
//     -x and -y as ip_vs_ctl.c does), and counts is not used;
//   - rr: the position after the last server chosen (or after its predecessor, if that
//     server is gone); wrr: the current weight, from the list head (dest_changed);
//   - lblc, lblcr: the per-address tables, shared with prev from then on.
//
// prev may still be in use by other goroutines; it stays valid. Connections that prev
// binds after Rebuild returns are seen by the new scheduler in the counts only.
func Rebuild(prev Scheduler, counts Counts, name string, dests []Dest, flags Flags) (Scheduler, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("%w %q: valid schedulers are %s", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	var pb *base
	if c, ok := prev.(interface{ core() *base }); ok {
		pb = c.core()
	}
	b := newBase(dests, pb)
	if prev != nil && prev.Name() != name {
		prev = nil
	}
	return f(b, flags, prev)
}
