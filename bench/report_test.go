package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"
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

func TestParseProcCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"plain", "42 (xlvsd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 1 1", 300 * clockTick, true},
		{"name with spaces and parens", "42 (a b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0", 10 * clockTick, true},
		{"truncated", "42 (x) S 1 2", 0, false},
		{"no name", "42 x S", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcCPU([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
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
	var md strings.Builder
	r.WriteMarkdown(&md)
	for _, want := range []string{"| xlvs-nat | 0.800 (0.720–0.880)", "| iptables-dnat | 0.400", "| 2.00 |", `no ipvs \| here`} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
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
