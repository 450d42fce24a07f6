package dataplane

// ICMP rate limit. The ICMP errors the director writes itself (port unreachable when a
// service has no real server, fragmentation needed / packet too big before a tunnel)
// are limited per worker by a token bucket, as the kernel limits the ICMP it sends
// (net.ipv4.icmp_msgs_per_sec and icmp_msgs_burst: 1000 per second, bursts of 50): a
// flood of packets to a service without real servers must not become a flood of
// answers. An error over the limit is not sent; its frame is freed and counted
// (icmp_ratelimited). Errors about tracked connections that are forwarded (icmp.go)
// are not the director's own and are not limited.

// Defaults and limits of Config.ICMPRate and Config.ICMPBurst: 0 takes the default,
// NoICMPLimit (or any negative rate) sends every error. xlvsd's --icmp-rate takes the
// same values (its 0 is refused, as its flags refuse a 0 that would mean a default).
const (
	DefaultICMPRate  = 1000 // errors per second per worker
	DefaultICMPBurst = 50
	NoICMPLimit      = -1  // Config.ICMPRate: no limit
	MaxICMPRate      = 1e9 // one error per nanosecond: the token bucket's resolution
)

// tokenBucket allows rate events per second with bursts of burst. Time is the
// dataplane's monotonic clock in nanoseconds. The credit is kept in nanoseconds, each
// event costing 1e9/rate: integer arithmetic only, no allocation. A rate of 0 or below
// (NoICMPLimit; Config's defaults turn 0 into DefaultICMPRate first) allows everything.
// Single owner (a worker): no locking.
type tokenBucket struct {
	cost   int64 // nanoseconds of credit one event takes
	max    int64 // burst * cost
	credit int64
	last   int64
}

func newTokenBucket(rate, burst int) tokenBucket {
	if rate <= 0 {
		return tokenBucket{}
	}
	burst = max(burst, 1)
	cost := int64(1e9) / int64(rate)
	cost = max(cost, 1)
	return tokenBucket{cost: cost, max: int64(burst) * cost, credit: int64(burst) * cost}
}

// allow reports whether an event may happen at now, taking its token if so.
func (b *tokenBucket) allow(now int64) bool {
	if b.cost == 0 {
		return true
	}
	if now > b.last {
		b.credit = min(b.credit+(now-b.last), b.max)
		b.last = now
	}
	if b.credit < b.cost {
		return false
	}
	b.credit -= b.cost
	return true
}
