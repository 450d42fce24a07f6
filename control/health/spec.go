package health

import (
	"fmt"
	"net/netip"
	"time"
)

// ServiceKey identifies a virtual service. Protocol uses the control API's names ("tcp",
// "udp"); the fields match api.ServiceKey's so converting is a struct literal.
type ServiceKey struct {
	Protocol string
	Addr     netip.Addr
	Port     uint16
	// FWMark is a firewall-mark service's mark; Addr is then the unspecified address of
	// its family and Port 0.
	FWMark uint32
	// Group names a keepalived virtual_server_group whose services share their checks:
	// the key of a VirtualServer whose Members are those services; Addr is then the
	// unspecified address of their family and Port 0.
	Group string
}

func (k ServiceKey) String() string {
	if k.Group != "" {
		fam := 4
		if k.Addr.Is6() {
			fam = 6
		}
		return fmt.Sprintf("%s group %s (IPv%d)", k.Protocol, k.Group, fam)
	}
	if k.FWMark != 0 {
		if k.Addr.Is6() {
			return fmt.Sprintf("FWM %d IPv6", k.FWMark)
		}
		return fmt.Sprintf("FWM %d", k.FWMark)
	}
	return fmt.Sprintf("%s %s", k.Protocol, netip.AddrPortFrom(k.Addr, k.Port))
}

// VirtualServer is what the Monitor watches for one service: its real servers with their
// checks, and the keepalived pool settings.
type VirtualServer struct {
	Key ServiceKey
	// Quorum is the least total weight of live real servers for the service to be "up";
	// 0 means 1 (keepalived's default).
	Quorum uint32
	// Hysteresis dampens quorum flapping: quorum is lost below Quorum-Hysteresis and
	// regained at Quorum+Hysteresis.
	Hysteresis uint32
	// Sorry takes the traffic while the quorum is lost; nil for none.
	Sorry   *SorryServer
	Servers []RealServer
	// Members are the services this entry's checks and pool stand for, when it is a
	// keepalived virtual_server_group's (Key.Group set): every Update for it applies to
	// each of them. The Monitor only carries them: an Apply that changes them delivers
	// an Update, so a service joining the group gets the group's destinations.
	Members []ServiceKey
}

// RealServer is one real server and its checks. It is up while every check passes; with
// no checks it is always up.
type RealServer struct {
	Addr netip.AddrPort
	// Weight is the configured weight (0..65535), used while the server is up.
	Weight int32
	// Inhibit (inhibit_on_failure) keeps a failed server in the service with weight 0
	// instead of removing it.
	Inhibit bool
	Checks  []Check
}

// SorryServer is keepalived's sorry_server.
type SorryServer struct {
	Addr netip.AddrPort
	// Weight while in use; 0 means 1 (keepalived's).
	Weight int32
	// Inhibit (sorry_server_inhibit) keeps it in the service with weight 0 while not in
	// use.
	Inhibit bool
}

// Check is a Checker with keepalived's timing.
type Check struct {
	Checker Checker
	// Interval between checks (delay_loop); must be positive.
	Interval time.Duration
	// Retry is how many more failures, after the first, take the check down while it is
	// up; they are RetryDelay apart (delay_before_retry).
	Retry      int
	RetryDelay time.Duration
	// Warmup bounds the random delay before the first check, so a large table does not
	// check everything at once; 0 checks at once.
	Warmup time.Duration
	// Alpha starts the check failed: the server is used only after it passes once.
	Alpha bool
}

func (c Check) String() string {
	return fmt.Sprintf("%s interval %v retry %d retry-delay %v warmup %v alpha %v",
		c.Checker, c.Interval, c.Retry, c.RetryDelay, c.Warmup, c.Alpha)
}

// quorum is the effective quorum.
func (vs *VirtualServer) quorum() int64 {
	if vs.Quorum == 0 {
		return 1
	}
	return int64(vs.Quorum)
}

func (s *SorryServer) weight() int32 {
	if s.Weight == 0 {
		return 1
	}
	return s.Weight
}

// Validate checks a set of virtual servers: unique keys, unique real servers per
// service, weights in range, checks with a Checker and a positive interval.
func Validate(vss []VirtualServer) error {
	keys := map[ServiceKey]bool{}
	for i := range vss {
		vs := &vss[i]
		if !vs.Key.Addr.IsValid() {
			return fmt.Errorf("%w: virtual server %d has no address", ErrSpec, i)
		}
		if keys[vs.Key] {
			return fmt.Errorf("%w: virtual server %s given twice", ErrSpec, vs.Key)
		}
		keys[vs.Key] = true
		if vs.Hysteresis > 0 && int64(vs.Hysteresis) >= vs.quorum() {
			return fmt.Errorf("%w: %s: hysteresis %d must be below quorum %d", ErrSpec, vs.Key, vs.Hysteresis, vs.quorum())
		}
		if s := vs.Sorry; s != nil && (!s.Addr.IsValid() || s.Weight < 0 || s.Weight > 65535) {
			return fmt.Errorf("%w: %s: sorry server %v weight %d: expected an address and a weight from 0 to 65535", ErrSpec, vs.Key, s.Addr, s.Weight)
		}
		seen := map[netip.AddrPort]bool{}
		for _, rs := range vs.Servers {
			if !rs.Addr.IsValid() {
				return fmt.Errorf("%w: %s: real server without an address", ErrSpec, vs.Key)
			}
			if seen[rs.Addr] {
				return fmt.Errorf("%w: %s: real server %s given twice", ErrSpec, vs.Key, rs.Addr)
			}
			seen[rs.Addr] = true
			if rs.Weight < 0 || rs.Weight > 65535 {
				return fmt.Errorf("%w: %s: real server %s weight %d: expected 0 to 65535", ErrSpec, vs.Key, rs.Addr, rs.Weight)
			}
			for _, c := range rs.Checks {
				switch {
				case c.Checker == nil:
					return fmt.Errorf("%w: %s: real server %s: a check without a checker", ErrSpec, vs.Key, rs.Addr)
				case c.Interval <= 0:
					return fmt.Errorf("%w: %s: real server %s: %s: interval (delay_loop) %v must be positive", ErrSpec, vs.Key, rs.Addr, c.Checker, c.Interval)
				case c.Retry < 0 || c.RetryDelay < 0 || c.Warmup < 0:
					return fmt.Errorf("%w: %s: real server %s: %s: negative retry, retry delay or warmup", ErrSpec, vs.Key, rs.Addr, c.Checker)
				}
			}
		}
	}
	return nil
}

// sameChecks reports whether two check lists are the same checks with the same timing.
func sameChecks(a, b []Check) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].String() != b[i].String() {
			return false
		}
	}
	return true
}
