package bench

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseReals(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []int
		err  string // part of the error, "" for none
	}{
		{"one", "1", []int{1}, ""},
		{"sweep", "1,16", []int{1, 16}, ""},
		{"spaces", " 4 , 90 ", []int{4, 90}, ""},
		{"most", strconv.Itoa(MaxReals), []int{MaxReals}, ""},
		{"too many", strconv.Itoa(MaxReals + 1), nil, "from 1 to 144"},
		{"zero", "0", nil, "not a count"},
		{"negative", "-2", nil, "not a count"},
		{"empty", "", nil, "not a count"},
		{"empty item", "1,,2", nil, "not a count"},
		{"word", "many", nil, "e.g. 1,16"},
		{"repeat", "16,1,16", nil, "16 given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReals(tc.in)
			if tc.err == "" {
				if err != nil || !slices.Equal(got, tc.want) {
					t.Fatalf("ParseReals(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParseReals(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
		})
	}
}

func TestCheckSched(t *testing.T) {
	for _, ok := range []string{"rr", "wrr", "wlc", "sh", "mh", "twos"} {
		if err := CheckSched(ok); err != nil {
			t.Errorf("CheckSched(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "RR", "round-robin"} {
		err := CheckSched(bad)
		if err == nil || !strings.Contains(err.Error(), "want one of") || !strings.Contains(err.Error(), "wlc") {
			t.Errorf("CheckSched(%q) = %v, want an error listing the schedulers", bad, err)
		}
	}
}

// TestRealAddrs checks the address plan: the sink's own address first, every address
// distinct, in the sink subnet, and clear of the director (.1), the FULLNAT local
// addresses (fullnatLIPs at their most) and the subnet's network and broadcast addresses.
func TestRealAddrs(t *testing.T) {
	sinkNet := netip.MustParsePrefix("198.18.2.0/24")
	lips, err := fullnatLIPs(fullnatMaxLIPs * fullnatFlowsPerLIP)
	if err != nil {
		t.Fatal(err)
	}
	taken := map[netip.Addr]string{
		netip.MustParseAddr("198.18.2.0"):   "the network address",
		netip.MustParseAddr("198.18.2.1"):   "the director",
		netip.MustParseAddr("198.18.2.255"): "the broadcast address",
	}
	for _, l := range lips {
		taken[l] = "a FULLNAT local address"
	}
	for _, n := range []int{1, 2, 16, 89, 90, MaxReals} {
		got, err := realAddrs(n)
		if err != nil {
			t.Fatalf("realAddrs(%d): %v", n, err)
		}
		if len(got) != n || got[0] != firstReal || firstReal != netip.MustParseAddr("198.18.2.11") {
			t.Fatalf("realAddrs(%d) = %v, want %d addresses starting with the sink's 198.18.2.11", n, got, n)
		}
		seen := map[netip.Addr]bool{}
		for _, a := range got {
			if !sinkNet.Contains(a) {
				t.Errorf("realAddrs(%d): %v is outside the sink subnet %v", n, a, sinkNet)
			}
			if why, ok := taken[a]; ok {
				t.Errorf("realAddrs(%d): %v is %s", n, a, why)
			}
			if seen[a] {
				t.Errorf("realAddrs(%d): %v twice", n, a)
			}
			seen[a] = true
		}
	}
	if got, _ := realAddrs(90); got[88] != netip.MustParseAddr("198.18.2.99") || got[89] != netip.MustParseAddr("198.18.2.200") {
		t.Errorf("realAddrs(90) ends %v, want .99 then .200", got[87:])
	}
	for _, bad := range []int{0, -1, MaxReals + 1} {
		if got, err := realAddrs(bad); err == nil {
			t.Errorf("realAddrs(%d) = %v, want an error", bad, got)
		}
	}
}

// TestIptablesRules runs the rules' statistic matches as xt_statistic's nth mode does (a
// counter per rule, iptables storing --every N as N-1, a match when the counter wraps to
// --packet) over many new flows: each real server must get exactly its share.
func TestIptablesRules(t *testing.T) {
	vip := netip.MustParseAddr("198.18.1.100")
	for _, n := range []int{1, 2, 4, 16, 90} {
		reals, err := realAddrs(n)
		if err != nil {
			t.Fatal(err)
		}
		rules := iptablesRules(vip, "udp", 9, reals)
		if len(rules) != n {
			t.Fatalf("%d reals: %d rules", n, len(rules))
		}
		type rule struct {
			every, packet, count int
			to                   string
		}
		parsed := make([]rule, n)
		for i, args := range rules {
			arg := func(flag string) string {
				j := slices.Index(args, flag)
				if j < 0 || j+1 >= len(args) {
					t.Fatalf("rule %d %v: no %s", i, args, flag)
				}
				return args[j+1]
			}
			every, _ := strconv.Atoi(arg("--every"))
			packet, _ := strconv.Atoi(arg("--packet"))
			if arg("-A") != "PREROUTING" || arg("-t") != "nat" || arg("-d") != "198.18.1.100/32" || arg("-p") != "udp" || arg("--dport") != "9" || arg("-j") != "DNAT" {
				t.Fatalf("rule %d: %v", i, args)
			}
			parsed[i] = rule{every: every - 1, packet: packet, to: arg("--to-destination")}
		}
		got := map[string]int{}
		const flows = 90 * 16 * 7
		for range flows {
			for i := range parsed {
				r := &parsed[i]
				if r.count == r.every {
					r.count = 0
				} else {
					r.count++
				}
				if r.count == r.packet {
					got[r.to]++
					break
				}
			}
		}
		for _, a := range reals {
			if got[a.String()] != flows/n {
				t.Errorf("%d reals: %v got %d of %d flows, want %d", n, a, got[a.String()], flows, flows/n)
			}
		}
	}
}

func TestNftScript(t *testing.T) {
	reals, _ := realAddrs(3)
	s := nftScript(netip.MustParseAddr("198.18.1.100"), "tcp", 80, reals)
	want := "ip daddr 198.18.1.100 tcp dport 80 dnat to numgen inc mod 3 map { 0 : 198.18.2.11, 1 : 198.18.2.12, 2 : 198.18.2.13 }"
	if !strings.Contains(s, want) {
		t.Fatalf("nft script lacks %q:\n%s", want, s)
	}
}

func TestRealPacketsAndSpread(t *testing.T) {
	s := PacketSample{Profile: Profile{Counters: map[string]uint64{
		"worker.forwarded": 700, "real.198.18.2.11.in_pkts": 400, "real.198.18.2.12.in_pkts": 300, "real.x": 5,
	}}}
	rp := s.RealPackets()
	if len(rp) != 2 || rp["198.18.2.11"] != 400 || rp["198.18.2.12"] != 300 {
		t.Fatalf("RealPackets = %v", rp)
	}
	if lo, hi, got, ok := realSpread(s, 2); !ok || lo != 300 || hi != 400 || got != 2 {
		t.Errorf("realSpread(2) = %d %d %d %v, want 300 400 2 true", lo, hi, got, ok)
	}
	// A third server without packets is missing from the counters (fill keeps changes only).
	if lo, hi, got, ok := realSpread(s, 3); !ok || lo != 0 || hi != 400 || got != 2 {
		t.Errorf("realSpread(3) = %d %d %d %v, want 0 400 2 true", lo, hi, got, ok)
	}
	if _, _, _, ok := realSpread(PacketSample{}, 2); ok {
		t.Error("realSpread of a sample without per-server counts says ok")
	}
}

// TestRealsReport: a --reals 1,16 run labels the 16-server rows, compares each with
// xlvs-nat at the same count, states the setting in the header and JSON, and keeps the
// one-server cells for the comparisons that name none.
func TestRealsReport(t *testing.T) {
	w := Workload{64, 1000}
	r := &Report{Machine: Machine{CPU: "test", CPUs: 2, Kernel: "6.18", Go: "go"}, Duration: "1s"}
	r.Options.Runs, r.Options.Reals, r.Options.Sched = 1, []int{1, 16}, "wrr"
	add := func(t Target, reals int, pps float64, counters map[string]uint64) {
		c := Result{Workload: w, Target: t, Reals: reals, Samples: []PacketSample{{Target: t, PPS: pps, Profile: Profile{Counters: counters}}}}
		c.summarize()
		r.Results = append(r.Results, c)
	}
	add(TargetXLVSNAT, 1, 800e3, nil)
	add(TargetXLVSNAT, 16, 600e3, map[string]uint64{"real.198.18.2.11.in_pkts": 10, "real.198.18.2.12.in_pkts": 30})
	add(TargetIptables, 1, 400e3, nil)
	add(TargetIptables, 16, 200e3, nil)
	add(TargetKernel, 0, 1000e3, nil)
	if c := r.cell(w, TargetXLVSNAT); c == nil || c.Reals != 1 {
		t.Fatalf("cell(xlvs-nat) = %+v, want the one-server cell", c)
	}
	if got := r.Ratios()[w.String()][TargetIptables]; got != 2 {
		t.Errorf("ratio to iptables %v, want 2 (one server each)", got)
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	for _, want := range []string{
		"Balancing targets over 1 and 16 real servers (addresses of the sink; xlvs scheduler wrr",
		"| xlvs-nat | 0.800", "| xlvs-nat [16 reals] | 0.600",
		"| iptables-dnat | 0.400 (0.400–0.400) |  | 0.0 % | 0 | 0 / 0 / 0 |  | 2.00 |",
		"| iptables-dnat [16 reals] | 0.200 (0.200–0.200) |  | 0.0 % | 0 | 0 / 0 / 0 |  | 3.00 |",
		"| kernel-forward | 1.000 (1.000–1.000) |  | 0.0 % | 0 | 0 / 0 / 0 |  | 0.80 |",
		"2 of 16 real servers got packets, 0–30 each",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	var js strings.Builder
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"reals": [`, `"sched": "wrr"`, `"reals": 16,`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("json lacks %q", want)
		}
	}
	r.Conns = []ConnResult{{Target: TargetXLVSNAT, Reals: 16, Error: "no request answered"}}
	if err := r.Check(1); err == nil || !strings.Contains(err.Error(), "connections xlvs-nat [16 reals]: no request answered") {
		t.Errorf("Check names the connection cell without its real servers: %v", err)
	}
}

func TestRunRejectsBadReals(t *testing.T) {
	_, err := Run(context.Background(), RunOptions{Runs: 1, Reals: []int{1, MaxReals + 1}}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "real servers") {
		t.Fatalf("Run with %d real servers: %v, want an error", MaxReals+1, err)
	}
}
