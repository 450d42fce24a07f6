package testbed

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

const snmpSample = `Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 17
Tcp: RtoAlgorithm MaxConn InCsumErrors
Tcp: 1 -1 3
Udp: InDatagrams InCsumErrors
Udp: 5 0
`

const snmp6Sample = `Ip6InReceives                   	12
Icmp6InType133                  	1
Udp6InCsumErrors                	4
UdpLite6InErrors                	0
`

func TestParseTable(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]uint64
		wantErr bool
	}{
		{"sample", snmpSample, map[string]uint64{
			"Ip.Forwarding": 2, "Ip.DefaultTTL": 64, "Ip.InReceives": 17,
			"Tcp.RtoAlgorithm": 1, "Tcp.MaxConn": 0, "Tcp.InCsumErrors": 3,
			"Udp.InDatagrams": 5, "Udp.InCsumErrors": 0,
		}, false},
		{"empty", "", map[string]uint64{}, false},
		{"odd lines", "Ip: A\n", nil, true},
		{"group mismatch", "Ip: A\nTcp: 1\n", nil, true},
		{"count mismatch", "Ip: A B\nIp: 1\n", nil, true},
		{"not a number", "Ip: A\nIp: x\n", nil, true},
		{"no colon", "Ip A\nIp 1\n", nil, true},
		{"max uint64", "X: A\nX: 18446744073709551615\n", map[string]uint64{"X.A": 1<<64 - 1}, false},
		{"overflow", "X: A\nX: 18446744073709551616\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]uint64{}
			err := parseTable(tc.in, got)
			if tc.wantErr {
				if !errors.Is(err, ErrParse) {
					t.Fatalf("error %v, want ErrParse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseSNMP6(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]uint64
		wantErr bool
	}{
		{"sample", snmp6Sample, map[string]uint64{
			"Ip6.InReceives": 12, "Icmp6.InType133": 1, "Udp6.InCsumErrors": 4, "UdpLite6.InErrors": 0,
		}, false},
		{"blank lines", "\n\nIp6InReceives 1\n\n", map[string]uint64{"Ip6.InReceives": 1}, false},
		{"no 6", "IpInReceives 1\n", nil, true},
		{"6 first", "6In 1\n", nil, true},
		{"nothing after 6", "Ip6 1\n", nil, true},
		{"three fields", "Ip6InReceives 1 2\n", nil, true},
		{"bad value", "Ip6InReceives z\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]uint64{}
			err := parseSNMP6(tc.in, got)
			if tc.wantErr {
				if !errors.Is(err, ErrParse) {
					t.Fatalf("error %v, want ErrParse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// formatTable writes m (keys "Group.Name") in the /proc/net/snmp format, groups sorted.
func formatTable(m map[string]uint64) string {
	groups := map[string][]string{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		g, n, _ := strings.Cut(k, ".")
		groups[g] = append(groups[g], n)
	}
	var b strings.Builder
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		fmt.Fprintf(&b, "%s: %s\n%s:", g, strings.Join(groups[g], " "), g)
		for _, n := range groups[g] {
			fmt.Fprintf(&b, " %d", m[g+"."+n])
		}
		b.WriteString("\n")
	}
	return b.String()
}

func FuzzParseTable(f *testing.F) {
	f.Add(snmpSample)
	f.Add("Ip: A\nIp: 1\n")
	f.Add("TcpExt: SyncookiesSent\nTcpExt: 0")
	f.Add(":\n:\n")
	f.Fuzz(func(t *testing.T, s string) {
		m := map[string]uint64{}
		if err := parseTable(s, m); err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("error %v does not wrap ErrParse", err)
			}
			return
		}
		// Invariants: keys are "Group.Name" with both parts free of blanks and colons,
		// and formatting the map then parsing it again gives the same map.
		for k := range m {
			g, n, ok := strings.Cut(k, ".")
			if !ok || g == "" || n == "" || strings.ContainsAny(g, " \t\n:") || strings.ContainsAny(n, " \t\n") {
				t.Fatalf("parse(%q) made key %q", s, k)
			}
		}
		if strings.ContainsAny(s, ".") {
			return // a dot in a group name does not survive the key's Group.Name form
		}
		m2 := map[string]uint64{}
		if err := parseTable(formatTable(m), m2); err != nil || !maps.Equal(m, m2) {
			t.Fatalf("round trip of %v: %v, %v", m, m2, err)
		}
	})
}

func FuzzParseSNMP6(f *testing.F) {
	f.Add(snmp6Sample)
	f.Add("Ip6InReceives 1")
	f.Add("6 6")
	f.Fuzz(func(t *testing.T, s string) {
		m := map[string]uint64{}
		if err := parseSNMP6(s, m); err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("error %v does not wrap ErrParse", err)
			}
			return
		}
		for k := range m {
			g, n, ok := strings.Cut(k, ".")
			if !ok || !strings.HasSuffix(g, "6") || strings.Count(g, "6") != 1 || n == "" {
				t.Fatalf("parse(%q) made key %q, want Group6.Name", s, k)
			}
		}
	})
}
