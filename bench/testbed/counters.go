package testbed

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrParse is returned (wrapped) when a /proc counter file is not in the expected format.
var ErrParse = errors.New("parse counters")

// Counters reads the namespace's protocol counters: /proc/net/snmp ("Ip.InReceives",
// "Tcp.InCsumErrors", "Udp.InCsumErrors", ...), /proc/net/snmp6 ("Ip6.InReceives",
// "Udp6.InCsumErrors", ...) and /proc/net/netstat ("TcpExt.ListenDrops", ...). A file the
// kernel lacks (snmp6 without IPv6) is skipped. Negative values (a few gauges are signed)
// are clamped to zero.
func (n *NS) Counters() (map[string]uint64, error) {
	m := make(map[string]uint64, 512)
	err := n.Do(func() error {
		// /proc/self/net is the thread group leader's namespace; thread-self is ours.
		for _, f := range []struct {
			path  string
			parse func(string, map[string]uint64) error
		}{
			{"/proc/thread-self/net/snmp", parseTable},
			{"/proc/thread-self/net/netstat", parseTable},
			{"/proc/thread-self/net/snmp6", parseSNMP6},
		} {
			b, err := os.ReadFile(f.path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read counters in %s: %w", n.name, err)
			}
			if err := f.parse(string(b), m); err != nil {
				return fmt.Errorf("read counters from %s in %s: %w", f.path, n.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// parseTable parses the /proc/net/snmp and /proc/net/netstat format: pairs of lines
// "Group: Name1 Name2 ..." and "Group: v1 v2 ...".
func parseTable(s string, m map[string]uint64) error {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines)%2 != 0 {
		return fmt.Errorf("%w: %d lines, want header and value lines in pairs", ErrParse, len(lines))
	}
	for i := 0; i < len(lines); i += 2 {
		hg, hnames, ok1 := strings.Cut(lines[i], ":")
		vg, vvals, ok2 := strings.Cut(lines[i+1], ":")
		if !ok1 || !ok2 || hg != vg || hg == "" || strings.ContainsAny(hg, " \t") {
			return fmt.Errorf("%w: line %d %q and %q are not a \"Group: names\" / \"Group: values\" pair", ErrParse, i+1, lines[i], lines[i+1])
		}
		names := strings.Fields(hnames)
		vals := strings.Fields(vvals)
		if len(names) != len(vals) {
			return fmt.Errorf("%w: group %s has %d names and %d values", ErrParse, hg, len(names), len(vals))
		}
		for j, name := range names {
			v, err := parseCounter(vals[j])
			if err != nil {
				return fmt.Errorf("%w: %s.%s: %w", ErrParse, hg, name, err)
			}
			m[hg+"."+name] = v
		}
	}
	return nil
}

// parseSNMP6 parses /proc/net/snmp6: lines "Udp6InCsumErrors   0". The group is the name
// up to and including its first '6' ("Udp6", "Icmp6", "UdpLite6", "Ip6").
func parseSNMP6(s string, m map[string]uint64) error {
	for i, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return fmt.Errorf("%w: line %d %q, want \"Name value\"", ErrParse, i+1, line)
		}
		k := strings.IndexByte(f[0], '6')
		if k <= 0 || k == len(f[0])-1 {
			return fmt.Errorf("%w: line %d name %q, want a group ending in 6 then a name (Udp6InErrors)", ErrParse, i+1, f[0])
		}
		v, err := parseCounter(f[1])
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrParse, f[0], err)
		}
		m[f[0][:k+1]+"."+f[0][k+1:]] = v
	}
	return nil
}

func parseCounter(s string) (uint64, error) {
	if strings.HasPrefix(s, "-") {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return 0, err
		}
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
