package bench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"xlvs/bench/testbed"
	"xlvs/sched"
)

// Real servers. Every measurement balances over n real server addresses that all live in
// the sink namespace, on the sink's one interface, so the sink counts (packet rate) or
// answers (connections) for all of them: the sink's own address 198.18.2.11 first, then
// 198.18.2.12–99, then 198.18.2.200–254. The rest of the sink subnet is taken: .1 is the
// director, .100–.199 are FULLNAT's local addresses (fullnatFirstLIP). The director gets a
// permanent neighbour entry for each address (the sink's MAC), as for every neighbour of
// a chain: no ARP while measuring.
var (
	firstReal  = netip.MustParseAddr("198.18.2.11")
	realRanges = [][2]netip.Addr{
		{firstReal, netip.MustParseAddr("198.18.2.99")},
		{netip.MustParseAddr("198.18.2.200"), netip.MustParseAddr("198.18.2.254")},
	}
)

// MaxReals is the most real servers a measurement can balance over (the free addresses of
// the sink subnet: 198.18.2.11–99 and .200–254).
const MaxReals = 89 + 55

// DefaultSched is the xlvs scheduler the harness uses unless told otherwise.
const DefaultSched = "rr"

// realAddrs returns the addresses of n real servers (see MaxReals), the sink's own first.
func realAddrs(n int) ([]netip.Addr, error) {
	if n < 1 || n > MaxReals {
		return nil, fmt.Errorf("%d real servers: want 1 to %d (the free addresses of the sink subnet 198.18.2.0/24)", n, MaxReals)
	}
	out := make([]netip.Addr, 0, n)
	for _, r := range realRanges {
		for a := r[0]; len(out) < n && a.Compare(r[1]) <= 0; a = a.Next() {
			out = append(out, a)
		}
	}
	return out, nil
}

// ParseReals parses the --reals flag: a comma-separated list of real-server counts, each
// 1 to MaxReals, no repeats ("1,16"); the harness measures the balancing targets once per
// count.
func ParseReals(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > MaxReals {
			return nil, fmt.Errorf("--reals %q: %q is not a count of real servers; want comma-separated numbers from 1 to %d, e.g. 1,16", s, f, MaxReals)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("--reals %q: %d given twice; want each count once", s, n)
		}
		out = append(out, n)
	}
	return out, nil
}

// CheckSched returns an error unless name is one of xlvs's schedulers (xlvsadm -s NAME).
func CheckSched(name string) error {
	if !slices.Contains(sched.Names(), name) {
		return fmt.Errorf("--sched %q: unknown scheduler; want one of %s", name, strings.Join(sched.Names(), ", "))
	}
	return nil
}

// balances reports whether t balances over real servers, so that the number of real
// servers applies to it (kernel forwarding and the minimal forwarder send to the sink).
func balances(t Target) bool {
	t = t.base()
	return isXLVS(t) || t == TargetIptables || t == TargetNftables || t == TargetIPVS
}

// realsOf is n, or 1 where n is 0 (reports written before the setting existed).
func realsOf(n int) int { return max(1, n) }

// realsLabel is the label suffix of a cell measured over n real servers: none for one.
func realsLabel(n int) string {
	if n <= 1 {
		return ""
	}
	return " [" + strconv.Itoa(n) + " reals]"
}

// realsTestbed puts reals[1:] on the sink's interface (reals[0] is the sink's own
// address) and gives the director a permanent neighbour entry for each. It checks that
// reals[0] is the sink's address, so the address plan and the testbed's cannot drift.
func realsTestbed(ctx context.Context, bed *testbed.Bed, reals []netip.Addr) error {
	sink := bed.Reals[0]
	if len(reals) == 0 || reals[0] != sink.Addr {
		return fmt.Errorf("real servers %v: the first must be the sink's address %v", reals, sink.Addr)
	}
	if len(reals) == 1 {
		return nil
	}
	var sk, dir strings.Builder
	for _, a := range reals[1:] {
		fmt.Fprintf(&sk, "addr add %s/24 dev %s\n", a, sink.Iface)
		fmt.Fprintf(&dir, "neigh replace %s lladdr %s dev %s nud permanent\n", a, sink.MAC, bed.Int.Iface)
	}
	if err := ipBatch(ctx, sink.NS, sk.String()); err != nil {
		return fmt.Errorf("real server addresses on the sink: %w", err)
	}
	if err := ipBatch(ctx, bed.Director, dir.String()); err != nil {
		return fmt.Errorf("real server neighbours on the director: %w", err)
	}
	return nil
}

// iptablesRules returns the arguments of the iptables commands that DNAT proto traffic
// for vip:port evenly over reals: rule i (of n) takes every (n-i)-th packet of those the
// rules before it left, so each gets 1/n of the new flows.
func iptablesRules(vip netip.Addr, proto string, port uint16, reals []netip.Addr) [][]string {
	out := make([][]string, len(reals))
	for i, a := range reals {
		out[i] = []string{"-t", "nat", "-A", "PREROUTING", "-d", vip.String() + "/32", "-p", proto, "--dport", strconv.Itoa(int(port)),
			"-m", "statistic", "--mode", "nth", "--every", strconv.Itoa(len(reals) - i), "--packet", "0",
			"-j", "DNAT", "--to-destination", a.String()}
	}
	return out
}

// nftScript returns the nftables ruleset that DNATs proto traffic for vip:port to reals
// in turn (numgen inc mod n).
func nftScript(vip netip.Addr, proto string, port uint16, reals []netip.Addr) string {
	m := make([]string, len(reals))
	for i, a := range reals {
		m[i] = fmt.Sprintf("%d : %s", i, a)
	}
	return fmt.Sprintf(`table ip xlvsbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s %s dport %d dnat to numgen inc mod %d map { %s }
	}
}
`, vip, proto, port, len(reals), strings.Join(m, ", "))
}

// realCounterPrefix and realCounterSuffix frame the forwarder counters that hold a real
// server's packets ("real.198.18.2.12.in_pkts"): xlvsd's per-destination InPkts.
const (
	realCounterPrefix = "real."
	realCounterSuffix = ".in_pkts"
)

// RealPackets returns, from the sample's forwarder counters, the packets forwarded to each
// real server in the counted interval, by address (xlvs targets only; nil otherwise). A
// server that got none in the interval is missing.
func (s PacketSample) RealPackets() map[string]uint64 {
	var out map[string]uint64
	for k, v := range s.Profile.Counters {
		if a, ok := strings.CutPrefix(k, realCounterPrefix); ok {
			if a, ok = strings.CutSuffix(a, realCounterSuffix); ok {
				if out == nil {
					out = map[string]uint64{}
				}
				out[a] = v
			}
		}
	}
	return out
}

// realSpread returns the fewest and most packets one of reals real servers got in s (a
// server missing from the counts got none) and how many got any; ok is false when the
// sample has no per-server counts (not an xlvs target).
func realSpread(s PacketSample, reals int) (lo, hi uint64, got int, ok bool) {
	rp := s.RealPackets()
	if len(rp) == 0 {
		return 0, 0, 0, false
	}
	first := len(rp) >= reals
	for _, v := range rp {
		if first || v < lo {
			lo = v
		}
		hi = max(hi, v)
		first = false
		if v > 0 {
			got++
		}
	}
	return lo, hi, got, true
}
