package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"xlvs/bench/gen"
)

func TestStatOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Stat
	}{
		{"empty", nil, Stat{}},
		{"one", []float64{3}, Stat{3, 3, 3}},
		{"odd", []float64{5, 1, 3}, Stat{3, 1, 5}},
		{"even", []float64{4, 1, 3, 2}, Stat{2.5, 1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statOf(tc.in); got != tc.want {
				t.Fatalf("statOf(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseCPUBusy(t *testing.T) {
	stat := []byte("cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 1 2 3 400 5 6 7 8 9 10\ncpu1 10 0 20 900 50 3 7 0 0 0\nintr 1\n")
	for _, tc := range []struct {
		name string
		cpu  int
		want time.Duration
		ok   bool
	}{
		{"cpu0 without idle and iowait", 0, (1 + 2 + 3 + 6 + 7 + 8) * clockTick, true},
		{"cpu1", 1, (10 + 20 + 3 + 7) * clockTick, true},
		{"offline cpu", 5, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPUBusy(stat, tc.cpu)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseProcTimes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		user, sys time.Duration
		ok        bool
	}{
		{"plain", "42 (xlvsd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 1 1", 250 * clockTick, 50 * clockTick, true},
		{"name with spaces and parens", "42 (a b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0", 7 * clockTick, 3 * clockTick, true},
		{"truncated", "42 (x) S 1 2", 0, 0, false},
		{"no name", "42 x S", 0, 0, false},
		{"not a number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 7x 3 0 0", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, s, err := parseProcTimes([]byte(tc.in))
			if (err == nil) != tc.ok || u != tc.user || s != tc.sys {
				t.Fatalf("got %v %v, %v; want %v %v, ok=%v", u, s, err, tc.user, tc.sys, tc.ok)
			}
		})
	}
}

func TestParseVoluntarySwitches(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want uint64
	}{
		{"present", "Name:\txlvsd\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t5\n", 1234},
		{"absent", "Name:\txlvsd\n", 0},
		{"last line without newline", "voluntary_ctxt_switches:  77", 77},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseVoluntarySwitches([]byte(tc.in)); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestParseCPULineAll(t *testing.T) {
	stat := []byte("cpu  10 1 10 100 5 2 3 4 0 0\ncpu0 1 2 3 400 5 6 7 8 9 10\n")
	got, err := parseCPULine(stat, "cpu")
	if want := (10 + 1 + 10 + 2 + 3 + 4) * clockTick; err != nil || got != want {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}

func TestSampleStallsAndNoise(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      PacketSample
		stalls int
		noisy  bool
	}{
		{"steady", PacketSample{Timeline: []float64{100, 110, 90, 105}, Background: 0.05}, 0, false},
		{"two stalled slices", PacketSample{Timeline: []float64{100, 2, 110, 0, 95}, Background: 0.5}, 2, true},
		{"no timeline", PacketSample{}, 0, false},
		{"director busy with other work", PacketSample{DirNsPerPkt: 3000, Profile: Profile{IngressNAPINs: 800, OtherNs: 1500}}, 0, true},
		{"director busy with the path", PacketSample{DirNsPerPkt: 3000, Profile: Profile{IngressNAPINs: 2500, OtherNs: 500}}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Stalls(); got != tc.stalls {
				t.Errorf("Stalls() = %d, want %d", got, tc.stalls)
			}
			if got := tc.s.Noisy(); got != tc.noisy {
				t.Errorf("Noisy() = %v, want %v", got, tc.noisy)
			}
		})
	}
}

func testReport() *Report {
	w := Workload{64, 1000}
	r := &Report{Machine: Machine{CPU: "test", CPUs: 2, Kernel: "6.18", Go: "go"}, Duration: "1s"}
	r.Options.Runs = 1
	add := func(t Target, pps float64) {
		r.Results = append(r.Results, Result{Workload: w, Target: t, PPS: Stat{pps, pps * 0.9, pps * 1.1},
			Samples: []PacketSample{{Target: t, PPS: pps}}})
	}
	add(TargetXLVSNAT, 800e3)
	add(TargetIptables, 400e3)
	r.Results = append(r.Results, Result{Workload: w, Target: TargetIPVS, Unavailable: "no ipvs | here"})
	return r
}

func TestReportOutputs(t *testing.T) {
	r := testReport()
	if got := r.Ratios()["udp-64B-1000flows"][TargetIptables]; got != 2 {
		t.Fatalf("ratio to iptables %v, want 2", got)
	}
	markdownHas(t, r, "| xlvs-nat | 0.800 (0.720–0.880)", "| iptables-dnat | 0.400", "| 2.00 |", `no ipvs \| here`)
	var svg bytes.Buffer
	if err := r.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&svg)
	rects := 0
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects != 3 { // background and two bars
		t.Fatalf("svg has %d rects, want 3 (background, two measured targets)", rects)
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 3 || back.Results[0].PPS != r.Results[0].PPS {
		t.Fatalf("json round trip: %v, %+v", err, back.Results)
	}
}

func TestVerdictsAndCheck(t *testing.T) {
	r := testReport()
	add := func(tg Target, pps float64, errText string) {
		c := Result{Workload: Workload{64, 1000}, Target: tg, Error: errText}
		if pps > 0 {
			c.Samples = []PacketSample{{Target: tg, PPS: pps}}
			c.summarize()
		}
		r.Results = append(r.Results, c)
	}
	add(TargetL2Fwd, 1000e3, "")
	add(TargetXLVSDR, 700e3, "")
	checkVerdicts(t, r.Verdicts(), []Verdict{
		{Name: "udp-64B-1000flows: xlvs-nat ÷ iptables-dnat", Ratio: 2, Want: 1, Met: true},
		{Name: "udp-64B-1000flows: xlvs-nat ÷ afxdp-l2fwd", Ratio: 0.8, Want: 0.8, Met: true},
		{Name: "udp-64B-1000flows: xlvs-dr ÷ xlvs-nat", Ratio: 0.875, Want: 1, Met: false},
	})
	markdownHas(t, r, "| udp-64B-1000flows: xlvs-dr ÷ xlvs-nat | 0.88 | ≥ 1.00 | missed |")

	for _, tc := range []struct {
		name    string
		floor   float64
		extra   func()
		wantErr string
	}{
		{"all above the floor", 10e3, func() {}, ""},
		{"a target under the floor", 500e3, func() {}, "iptables-dnat delivered 400000 pps"},
		{"a failed target", 10e3, func() { add(TargetNftables, 0, "the sink received nothing") }, "nftables-dnat failed: the sink received nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.extra()
			err := r.Check(tc.floor)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBelowFloor) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check: %v, want ErrBelowFloor mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestSearchRate drives the no-drop search against model forwarders: one that forwards
// up to a capacity and drops the excess, and one that always loses a little.
func TestSearchRate(t *testing.T) {
	model := func(capacity, floorLoss float64) func(rate float64) PacketSample {
		return func(rate float64) PacketSample {
			d := min(rate, capacity)
			loss := max(floorLoss, 1-d/rate)
			return PacketSample{OfferedPPS: rate, PPS: rate * (1 - loss), Loss: loss, Delivered: uint64(rate * (1 - loss))}
		}
	}
	for _, tc := range []struct {
		name    string
		fwd     func(rate float64) PacketSample
		offered float64
		lo, hi  float64 // the rate found must lie in [lo, hi]
	}{
		{"capacity under the offered rate", model(300e3, 0), 800e3, 300e3 * 0.95, 300e3 / 0.99}, // within 5 % precision
		{"capacity above the offered rate", model(2e6, 0), 800e3, 800e3 * 0.95, 800e3},
		{"always lossy: the lowest rate tried", model(1e6, 0.5), 800e3, 0, 800e3 / 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pace gen.Pacer
			over := tc.fwd(tc.offered)
			o := PacketOptions{MaxLoss: 0.01, SearchSteps: 8, SearchPrecision: 0.05, TrialDuration: time.Millisecond}
			var rates []float64
			got, trials, err := searchRate(context.Background(), &pace, over, o, func(time.Duration) (PacketSample, error) {
				rates = append(rates, pace.Rate())
				return tc.fwd(pace.Rate()), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got < tc.lo || got > tc.hi {
				t.Fatalf("found %.0f pps, want %.0f to %.0f (trials %+v)", got, tc.lo, tc.hi, trials)
			}
			if len(trials) != len(rates) || len(trials) > o.SearchSteps {
				t.Fatalf("%d trials recorded for %d measured, at most %d allowed", len(trials), len(rates), o.SearchSteps)
			}
			for i, tr := range trials {
				if tr.Rate != rates[i] {
					t.Fatalf("trial %d records rate %v, measured at %v", i, tr.Rate, rates[i])
				}
			}
		})
	}
}

func TestSweepAndConnMarkdown(t *testing.T) {
	r := testReport()
	w := Workload{64, 1000}
	for _, v := range []struct {
		variant string
		pps     float64
	}{{"--batch 16", 300e3}, {"--batch 256", 500e3}} {
		c := Result{Workload: w, Target: TargetXLVSNAT, Variant: v.variant, Samples: []PacketSample{{Target: TargetXLVSNAT, PPS: v.pps}}}
		c.summarize()
		r.Results = append(r.Results, c)
	}
	r.Conns = []ConnResult{
		{Target: TargetXLVSNAT, Samples: []ConnSample{{ConnsPerSec: 3000, P50Ms: 1, P99Ms: 5, P999Ms: 9, StreamGbps: 2}}},
		{Target: TargetIptables, Samples: []ConnSample{{ConnsPerSec: 2000, P50Ms: 1, P99Ms: 4, P999Ms: 8, StreamGbps: 3}}},
		{Target: TargetL2Fwd, Unavailable: "one way only"},
	}
	for i := range r.Conns {
		r.Conns[i].summarize()
	}
	if got := r.cell(w, TargetXLVSNAT); got == nil || got.Variant != "" {
		t.Fatalf("cell(xlvs-nat) = %+v, want the cell without a variant", got)
	}
	markdownHas(t, r,
		"| xlvs-nat [--batch 16] | 0.300", "| xlvs-nat [--batch 256] | 0.500",
		"| xlvs-nat | 3000 (3000–3000) | 1.00 | 5.00 | 9.00 | 2.00 (2.00–2.00) | 1.00 |",
		"| iptables-dnat | 2000 (2000–2000) | 1.00 | 4.00 | 8.00 | 3.00 (3.00–3.00) | 1.50 |",
		"| afxdp-l2fwd | unavailable: one way only |",
	)
	r.Conns = append(r.Conns, ConnResult{Target: TargetNftables, Error: "no request answered"})
	if err := r.Check(1); err == nil || !strings.Contains(err.Error(), "connections nftables-dnat: no request answered") {
		t.Fatalf("Check with a failed connection workload: %v", err)
	}
}

// TestComparisons: xlvs-fullnat's medians divided by xlvs-nat's, per packet workload and
// for the connection workload, in the report and its markdown; figures one side lacks
// (a workload FULLNAT failed, a missing stream) are left out, and without FULLNAT there
// is no section.
func TestComparisons(t *testing.T) {
	r := testReport()
	r.Options.MaxLoss = 0.01
	if cs := r.Comparisons(); len(cs) != 0 {
		t.Fatalf("comparisons without xlvs-fullnat: %+v, want none", cs)
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	if strings.Contains(md.String(), "xlvs modes and layouts compared") {
		t.Fatalf("markdown has a comparison section without xlvs-fullnat:\n%s", md.String())
	}

	add := func(w Workload, tg Target, pps float64, errText string) {
		c := Result{Workload: w, Target: tg, Error: errText}
		if pps > 0 {
			c.Samples = []PacketSample{{Target: tg, PPS: pps}, {Target: tg, PPS: pps * 1.2}, {Target: tg, PPS: pps * 0.5}}
			c.summarize()
		}
		r.Results = append(r.Results, c)
	}
	add(Workload{64, 1000}, TargetXLVSFullNAT, 600e3, "")
	add(Workload{1500, 1}, TargetXLVSNAT, 200e3, "")
	add(Workload{1500, 1}, TargetXLVSFullNAT, 0, "the sink received nothing")
	r.Conns = []ConnResult{
		{Target: TargetXLVSNAT, Samples: []ConnSample{{ConnsPerSec: 4000, StreamGbps: 2}}},
		{Target: TargetXLVSFullNAT, Samples: []ConnSample{{ConnsPerSec: 3000}}},
	}
	for i := range r.Conns {
		r.Conns[i].summarize()
	}
	want := []Comparison{
		{"udp-64B-1000flows no-drop pps: xlvs-fullnat ÷ xlvs-nat", 0.75},
		{"connections conn/s: xlvs-fullnat ÷ xlvs-nat", 0.75},
	}
	got := r.Comparisons()
	if len(got) != len(want) {
		t.Fatalf("comparisons %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Ratio < want[i].Ratio-1e-9 || got[i].Ratio > want[i].Ratio+1e-9 {
			t.Errorf("comparison %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	md.Reset()
	r.WriteMarkdown(&md)
	for _, s := range []string{
		"**xlvs modes and layouts compared**",
		"| udp-64B-1000flows no-drop pps: xlvs-fullnat ÷ xlvs-nat | 0.75 |",
		"| connections conn/s: xlvs-fullnat ÷ xlvs-nat | 0.75 |",
		"| xlvs-fullnat | 0.600 (0.300–0.720)",
		"| xlvs-fullnat | failed: the sink received nothing |",
	} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
}

// TestFullNATLIPs: one local address per fullnatFlowsPerLIP flows, consecutive from
// fullnatFirstLIP and inside the sink's /24, and ErrUnavailable past the testbed's room.
func TestFullNATLIPs(t *testing.T) {
	for _, tc := range []struct {
		flows, want int
	}{{0, 1}, {1, 1}, {1000, 1}, {fullnatFlowsPerLIP, 1}, {fullnatFlowsPerLIP + 1, 2}, {connTableFlows, 4}, {fullnatMaxLIPs * fullnatFlowsPerLIP, fullnatMaxLIPs}} {
		lips, err := fullnatLIPs(tc.flows)
		if err != nil || len(lips) != tc.want {
			t.Fatalf("fullnatLIPs(%d) = %d addresses, %v; want %d", tc.flows, len(lips), err, tc.want)
		}
		sub := netip.MustParsePrefix("198.18.2.0/24")
		for i, a := range lips {
			if !sub.Contains(a) || int(a.As4()[3]) != 100+i {
				t.Fatalf("fullnatLIPs(%d)[%d] = %v, want 198.18.2.%d", tc.flows, i, a, 100+i)
			}
		}
	}
	if _, err := fullnatLIPs(10_000_000); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "at most 3276800 flows") {
		t.Fatalf("fullnatLIPs(10M): %v, want ErrUnavailable naming the most flows it takes", err)
	}
}

// TestOneArmReport: the one-armed targets share their two-armed targets' set-up
// (xlvs, balancing), a one-armed row's ratio divides xlvs-nat-onearm (the same layout),
// the header says what the layout is, and Comparisons gives the layout's cost (one-armed
// ÷ two-armed NAT) and xlvs against iptables on it, for packets and connections.
func TestOneArmReport(t *testing.T) {
	if TargetXLVSNATOneArm.base() != TargetXLVSNAT || !TargetXLVSNATOneArm.oneArm() || TargetXLVSNAT.oneArm() ||
		TargetIptablesOneArm.base() != TargetIptables || TargetKernel.base() != TargetKernel ||
		TargetIptablesXDP.base() != TargetIptables || TargetIptablesXDP.oneArm() || !balances(TargetIptablesXDP) {
		t.Fatal("one-armed targets do not map to their two-armed set-ups")
	}
	if !isXLVS(TargetXLVSNATOneArm) || isXLVS(TargetIptablesOneArm) || !balances(TargetXLVSNATOneArm) || !balances(TargetIptablesOneArm) {
		t.Fatal("one-armed targets: want xlvs-nat-onearm to run xlvsd and both to balance")
	}
	for _, tg := range []Target{TargetXLVSNATOneArm, TargetIptablesOneArm} {
		if !slices.Contains(AllTargets, tg) {
			t.Errorf("AllTargets lacks %s", tg)
		}
	}
	r := testReport()
	r.Options.MaxLoss = 0.01
	w := Workload{64, 1000}
	for _, c := range []struct {
		t   Target
		pps float64
	}{{TargetXLVSNATOneArm, 600e3}, {TargetIptablesOneArm, 200e3}} {
		r.Results = append(r.Results, Result{Workload: w, Target: c.t, PPS: Stat{c.pps, c.pps, c.pps}, Samples: []PacketSample{{Target: c.t, PPS: c.pps}}})
	}
	r.Conns = []ConnResult{
		{Target: TargetXLVSNAT, Samples: []ConnSample{{ConnsPerSec: 4000, StreamGbps: 2}}},
		{Target: TargetXLVSNATOneArm, Samples: []ConnSample{{ConnsPerSec: 3000, StreamGbps: 1}}},
		{Target: TargetIptablesOneArm, Samples: []ConnSample{{ConnsPerSec: 6000, StreamGbps: 4}}},
	}
	for i := range r.Conns {
		r.Conns[i].summarize()
	}
	want := map[string]float64{
		"udp-64B-1000flows no-drop pps: xlvs-nat-onearm ÷ xlvs-nat":             0.75,
		"udp-64B-1000flows no-drop pps: xlvs-nat-onearm ÷ iptables-dnat-onearm": 3,
		"connections conn/s: xlvs-nat-onearm ÷ xlvs-nat":                        0.75,
		"connections stream Gbit/s: xlvs-nat-onearm ÷ xlvs-nat":                 0.5,
		"connections conn/s: xlvs-nat-onearm ÷ iptables-dnat-onearm":            0.5,
		"connections stream Gbit/s: xlvs-nat-onearm ÷ iptables-dnat-onearm":     0.25,
	}
	got := r.Comparisons()
	if len(got) != len(want) {
		t.Fatalf("comparisons %+v, want %v", got, want)
	}
	for _, c := range got {
		if v, ok := want[c.Name]; !ok || math.Abs(c.Ratio-v) > 1e-9 {
			t.Errorf("comparison %+v, want one of %v", c, want)
		}
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	for _, s := range []string{
		"Targets named *-onearm run on the one-armed LVS-NAT layout",
		// xlvs-nat-onearm ÷ iptables-dnat-onearm, not xlvs-nat ÷ it (4.00).
		"| iptables-dnat-onearm | 0.200 (0.200–0.200) |  | 0.0 % | 0 | 0 / 0 / 0 |  | 3.00 |",
		"| iptables-dnat | 0.400 (0.360–0.440) |  | 0.0 % | 0 | 0 / 0 / 0 |  | 2.00 |",
		"| iptables-dnat-onearm | 6000 (6000–6000) | 0.00 | 0.00 | 0.00 | 4.00 (4.00–4.00) | 0.50 |",
	} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
	if r := testReport(); r.hasOneArm() {
		t.Error("a report without one-armed targets says it has some")
	}
}

// TestFastPathNote: the notes column and the header say how many connections the fast
// path held when counting started (the range over the runs), only for cells that had it
// on, and report.json carries the figures.
func TestFastPathNote(t *testing.T) {
	r := testReport()
	r.Options.AnswerFlows = true
	w := Workload{64, 1000}
	fp := func(inst int) *FastPathStart {
		return &FastPathStart{Answered: 1000, Rounds: 1, Conns: 1000, Installed: inst, Entries: 2 * inst}
	}
	for _, c := range []Result{
		{Workload: w, Target: TargetXLVSNAT, Variant: "--fastpath", Samples: []PacketSample{{PPS: 5e5, FastPath: fp(1000)}, {PPS: 6e5, FastPath: fp(998)}}},
		{Workload: w, Target: TargetXLVSDR, Variant: "--fastpath", Samples: []PacketSample{{PPS: 5e5, FastPath: &FastPathStart{Conns: 1000, Installed: 1000, Entries: 1000}}}},
		{Workload: w, Target: TargetXLVSNAT, Variant: "--batch 64", Samples: []PacketSample{{PPS: 3e5}}},
	} {
		c.summarize()
		r.Results = append(r.Results, c)
	}
	out := markdownHas(t, r,
		"the sink answered each NAT and FULLNAT connection once",
		"fast path: 998–1000 of 1000 connections installed before counting |",
		"fast path: 1000 of 1000 connections installed before counting |",
	)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "| xlvs-nat [--batch 64] |") && strings.Contains(l, "fast path") {
			t.Errorf("a cell without the fast path has a fast-path note: %s", l)
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"answer_flows": true`, `"installed": 998`, `"answered": 1000`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("report.json lacks %s", want)
		}
	}
}

// TestFastPathVerdicts: a run sweeping xlvs-nat with and without --fastpath is judged on
// issue 19's targets, with ratios worked out here from the cells' medians: the fast
// path's no-drop rate against iptables DNAT and against NAT without it (at least 2×),
// its director CPU per packet against iptables DNAT's (at most a third), and the
// connection workload's conn/s and stream against iptables DNAT (at least level).
func TestFastPathVerdicts(t *testing.T) {
	r := testReport() // xlvs-nat 0.8 Mpps, iptables-dnat 0.4 Mpps, no variants
	r.Options.MaxLoss = 0.01
	w := Workload{64, 1000}
	cell := func(tg Target, variant string, pps, ns float64) {
		c := Result{Workload: w, Target: tg, Variant: variant, Samples: []PacketSample{{Target: tg, PPS: pps, DirNsPerPkt: ns}}}
		c.summarize()
		r.Results = append(r.Results, c)
	}
	if v := r.FastPathVerdicts(); len(v) != 0 {
		t.Fatalf("a run without the sweep or connections judged %+v, want nothing", v)
	}
	cell(TargetXLVSNAT, "--batch 64", 300e3, 2000)
	cell(TargetXLVSNAT, "--batch 64 --fastpath", 900e3, 600)
	cell(TargetXLVSNAT, "--batch 64 --fastpath --fastpath-forward kernel", 500e3, 1200) // a second fast-path variant: judged too
	for i := range r.Results {
		if c := &r.Results[i]; c.Target == TargetIptables {
			c.Samples[0].DirNsPerPkt = 1500
			c.summarize()
		}
	}
	// The connection workload swept too: the cell with the fast path is judged.
	r.Conns = []ConnResult{
		{Target: TargetXLVSNAT, Variant: "--batch 64", Samples: []ConnSample{{ConnsPerSec: 4000, StreamGbps: 1}}},
		{Target: TargetXLVSNAT, Variant: "--batch 64 --fastpath", Samples: []ConnSample{{ConnsPerSec: 4500, StreamGbps: 2}}},
		{Target: TargetXLVSNAT, Variant: "--batch 64 --fastpath --fastpath-forward kernel", Samples: []ConnSample{{ConnsPerSec: 5500, StreamGbps: 3}}},
		{Target: TargetIptables, Samples: []ConnSample{{ConnsPerSec: 5000, StreamGbps: 1.6}}},
		{Target: TargetIptablesXDP, Samples: []ConnSample{{ConnsPerSec: 4800, StreamGbps: 2.5}}},
	}
	for i := range r.Conns {
		r.Conns[i].summarize()
	}
	want := []Verdict{
		{Name: "udp-64B-1000flows no-drop pps: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat", Ratio: 900.0 / 400, Want: 2, Met: true},
		{Name: "udp-64B-1000flows no-drop pps: xlvs-nat [--batch 64 --fastpath] ÷ xlvs-nat [--batch 64]", Ratio: 3, Want: 2, Met: true},
		{Name: "udp-64B-1000flows director ns/pkt: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat", Ratio: 0.4, Want: 1.0 / 3, Met: false, AtMost: true},
		{Name: "udp-64B-1000flows no-drop pps: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ iptables-dnat", Ratio: 1.25, Want: 2, Met: false},
		{Name: "udp-64B-1000flows no-drop pps: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ xlvs-nat [--batch 64]", Ratio: 500.0 / 300, Want: 2, Met: false},
		{Name: "udp-64B-1000flows director ns/pkt: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ iptables-dnat", Ratio: 0.8, Want: 1.0 / 3, Met: false, AtMost: true},
		{Name: "connections conn/s: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat", Ratio: 0.9, Want: 1, Met: false},
		{Name: "connections stream Gbit/s: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat", Ratio: 1.25, Want: 1, Met: true},
		{Name: "connections conn/s: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat-xdp", Ratio: 4500.0 / 4800, Want: 1, Met: false},
		{Name: "connections stream Gbit/s: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat-xdp", Ratio: 0.8, Want: 1, Met: false},
		{Name: "connections conn/s: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ iptables-dnat", Ratio: 1.1, Want: 1, Met: true},
		{Name: "connections stream Gbit/s: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ iptables-dnat", Ratio: 3 / 1.6, Want: 1, Met: true},
		{Name: "connections conn/s: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ iptables-dnat-xdp", Ratio: 5500.0 / 4800, Want: 1, Met: true},
		{Name: "connections stream Gbit/s: xlvs-nat [--batch 64 --fastpath --fastpath-forward kernel] ÷ iptables-dnat-xdp", Ratio: 1.2, Want: 1, Met: true},
	}
	checkVerdicts(t, r.FastPathVerdicts(), want)
	markdownHas(t, r,
		"| udp-64B-1000flows director ns/pkt: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat | 0.40 | ≤ 0.33 | missed |",
		"| udp-64B-1000flows no-drop pps: xlvs-nat [--batch 64 --fastpath] ÷ xlvs-nat [--batch 64] | 3.00 | ≥ 2.00 | met |",
		"| connections conn/s: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat | 0.90 | ≥ 1.00 | missed |",
		"| connections stream Gbit/s: xlvs-nat [--batch 64 --fastpath] ÷ iptables-dnat-xdp | 0.80 | ≥ 1.00 | missed |",
		"| xlvs-nat [--batch 64] | 4000 (4000–4000) |",
		"| xlvs-nat [--batch 64 --fastpath] | 4500 (4500–4500) |",
	)
}

// markdownHas renders r's markdown, checks that it contains every one of lines, and
// returns it.
func markdownHas(t *testing.T, r *Report, lines ...string) string {
	t.Helper()
	var md strings.Builder
	r.WriteMarkdown(&md)
	for _, l := range lines {
		if !strings.Contains(md.String(), l) {
			t.Errorf("markdown lacks %q:\n%s", l, md.String())
		}
	}
	return md.String()
}

// checkVerdicts compares verdicts got with want, ratios to within 1e-9.
func checkVerdicts(t *testing.T, got, want []Verdict) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("verdicts %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Want != w.Want || g.Met != w.Met || g.AtMost != w.AtMost || math.Abs(g.Ratio-w.Ratio) > 1e-9 {
			t.Errorf("verdict %d: %+v, want %+v", i, g, w)
		}
	}
}
