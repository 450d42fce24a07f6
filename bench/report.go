package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Workload is one packet-rate workload.
type Workload struct {
	Size  int `json:"size"`  // 64 or 1500
	Flows int `json:"flows"` // 1 or 1000
}

func (w Workload) String() string { return fmt.Sprintf("udp-%dB-%dflows", w.Size, w.Flows) }

// RunOptions configure a harness run.
type RunOptions struct {
	Targets   []Target
	Workloads []Workload
	Runs      int // measurements per (workload, target); the report gives their median
	Packet    PacketOptions
}

// QuickOptions is the CI smoke: 64-byte UDP, 1000 flows, xlvs and the baselines, three
// short runs each; it finishes in well under two minutes.
func QuickOptions() RunOptions {
	return RunOptions{
		Targets:   AllTargets,
		Workloads: []Workload{{64, 1000}},
		Runs:      3,
		Packet:    PacketOptions{Warmup: 300 * time.Millisecond, Duration: time.Second, GenCPU: 0, DirCPU: 1},
	}
}

// FullOptions measures every workload, five runs of 3 s each.
func FullOptions() RunOptions {
	return RunOptions{
		Targets:   AllTargets,
		Workloads: []Workload{{64, 1}, {64, 1000}, {1500, 1}, {1500, 1000}},
		Runs:      5,
		Packet:    PacketOptions{Warmup: 500 * time.Millisecond, Duration: 3 * time.Second, GenCPU: 0, DirCPU: 1},
	}
}

// Stat is a median with its range.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Result is one (workload, target) cell of the report.
type Result struct {
	Workload    Workload       `json:"workload"`
	Target      Target         `json:"target"`
	Unavailable string         `json:"unavailable,omitempty"` // why it was not measured
	Error       string         `json:"error,omitempty"`       // why a measurement failed
	PPS         Stat           `json:"pps"`
	Loss        Stat           `json:"loss"`
	DirNsPerPkt Stat           `json:"dir_ns_per_pkt"`
	Samples     []PacketSample `json:"samples"`
}

// Report is a whole run.
type Report struct {
	Machine  Machine   `json:"machine"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Options  struct {
		Runs       int      `json:"runs"`
		Warmup     string   `json:"warmup"`
		Duration   string   `json:"duration"`
		GenCPU     int      `json:"gen_cpu"`
		DirCPU     int      `json:"dir_cpu"`
		DaemonArgs []string `json:"daemon_args"`
	} `json:"options"`
	Results []Result `json:"results"`
}

// Machine describes where the figures were taken.
type Machine struct {
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	CPUs   int    `json:"cpus"`
	Go     string `json:"go"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// Run measures every workload through every target, o.Runs times each, interleaving
// targets within a round so that slow drifts of a noisy host hit all of them alike, and
// prints progress to log. A target that is unavailable is reported once per workload with
// the reason; a failed measurement is recorded and the run goes on.
func Run(ctx context.Context, o RunOptions, log io.Writer) (*Report, error) {
	if o.Runs < 1 {
		return nil, fmt.Errorf("run benchmark: runs %d, want at least 1", o.Runs)
	}
	r := &Report{Machine: describeMachine(), Started: time.Now()}
	r.Options.Runs, r.Options.GenCPU, r.Options.DirCPU = o.Runs, o.Packet.GenCPU, o.Packet.DirCPU
	r.Options.Warmup, r.Options.Duration, r.Options.DaemonArgs = o.Packet.Warmup.String(), o.Packet.Duration.String(), o.Packet.DaemonArgs
	fmt.Fprintf(log, "machine: %s, %d CPUs, Linux %s, %s\n", r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go)
	for _, w := range o.Workloads {
		cells := make([]*Result, len(o.Targets))
		for i, t := range o.Targets {
			cells[i] = &Result{Workload: w, Target: t}
			if err := targetAvailable(ctx, t); err != nil {
				cells[i].Unavailable = err.Error()
				fmt.Fprintf(log, "%s: %v\n", w, err)
			}
		}
		for run := range o.Runs {
			for _, c := range cells {
				if c.Unavailable != "" {
					continue
				}
				po := o.Packet
				po.Size, po.Flows = w.Size, w.Flows
				s, err := MeasurePacketRate(ctx, c.Target, po)
				if ctx.Err() != nil {
					return r, ctx.Err()
				}
				if err != nil {
					if errors.Is(err, ErrUnavailable) {
						c.Unavailable = err.Error()
					} else {
						c.Error = err.Error()
					}
					fmt.Fprintf(log, "%s %s run %d: %v\n", w, c.Target, run+1, err)
					continue
				}
				c.Samples = append(c.Samples, s)
				fmt.Fprintf(log, "%s %-15s run %d: %8.0f pps delivered of %8.0f offered (loss %4.1f%%), director %6.0f ns/pkt\n",
					w, c.Target, run+1, s.PPS, s.OfferedPPS, 100*s.Loss, s.DirNsPerPkt)
			}
		}
		for _, c := range cells {
			var pps, loss, ns []float64
			for _, s := range c.Samples {
				pps, loss, ns = append(pps, s.PPS), append(loss, s.Loss), append(ns, s.DirNsPerPkt)
			}
			c.PPS, c.Loss, c.DirNsPerPkt = statOf(pps), statOf(loss), statOf(ns)
			r.Results = append(r.Results, *c)
		}
	}
	r.Duration = time.Since(r.Started).Round(time.Second).String()
	return r, nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func (r *Report) cell(w Workload, t Target) *Result {
	for i := range r.Results {
		if r.Results[i].Workload == w && r.Results[i].Target == t {
			return &r.Results[i]
		}
	}
	return nil
}

func (r *Report) workloads() []Workload {
	var ws []Workload
	for _, c := range r.Results {
		if !slices.Contains(ws, c.Workload) {
			ws = append(ws, c.Workload)
		}
	}
	return ws
}

// WriteMarkdown writes one table per workload: delivered Mpps (median, min–max), loss,
// director CPU per packet, and xlvs's ratio to each target.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Machine: %s, %d CPUs, Linux %s, %s. Median of %d runs (min–max), %s each after %s warm-up; generator and sink on CPU %d, director on CPU %d. Run took %s.\n\n",
		r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go, r.Options.Runs, r.Options.Duration, r.Options.Warmup, r.Options.GenCPU, r.Options.DirCPU, r.Duration)
	for _, wl := range r.workloads() {
		fmt.Fprintf(w, "**%s**\n\n| target | Mpps delivered | loss | director ns/pkt | xlvs-nat ÷ target |\n|---|---|---|---|---|\n", wl)
		x := r.cell(wl, TargetXLVSNAT)
		for _, c := range r.Results {
			if c.Workload != wl {
				continue
			}
			switch {
			case c.Unavailable != "":
				fmt.Fprintf(w, "| %s | unavailable: %s | | | |\n", c.Target, mdEscape(c.Unavailable))
				continue
			case len(c.Samples) == 0:
				fmt.Fprintf(w, "| %s | failed: %s | | | |\n", c.Target, mdEscape(c.Error))
				continue
			}
			ratio := ""
			if x != nil && len(x.Samples) > 0 && c.PPS.Median > 0 {
				ratio = fmt.Sprintf("%.2f", x.PPS.Median/c.PPS.Median)
			}
			fmt.Fprintf(w, "| %s | %.3f (%.3f–%.3f) | %.1f %% | %.0f | %s |\n", c.Target, c.PPS.Median/1e6, c.PPS.Min/1e6, c.PPS.Max/1e6,
				100*c.Loss.Median, c.DirNsPerPkt.Median, ratio)
		}
		fmt.Fprintln(w)
	}
}

func mdEscape(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// Ratios returns, per workload, xlvs-nat's median pps divided by each other target's.
func (r *Report) Ratios() map[string]map[Target]float64 {
	out := map[string]map[Target]float64{}
	for _, wl := range r.workloads() {
		x := r.cell(wl, TargetXLVSNAT)
		if x == nil || len(x.Samples) == 0 {
			continue
		}
		m := map[Target]float64{}
		for _, c := range r.Results {
			if c.Workload == wl && c.Target != TargetXLVSNAT && c.PPS.Median > 0 {
				m[c.Target] = x.PPS.Median / c.PPS.Median
			}
		}
		out[wl.String()] = m
	}
	return out
}

// WriteSVG draws a grouped horizontal bar chart of the median delivered pps per workload
// and target, with min–max whiskers. Plain SVG, no dependencies.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		left, barH, gap, width, right = 260.0, 16.0, 4.0, 760.0, 90.0
	)
	type row struct {
		label string
		st    Stat
		xlvs  bool
	}
	var rows []row
	var groups []int
	maxV := 0.0
	for _, wl := range r.workloads() {
		groups = append(groups, len(rows))
		for _, c := range r.Results {
			if c.Workload != wl || len(c.Samples) == 0 {
				continue
			}
			rows = append(rows, row{wl.String() + " " + string(c.Target), c.PPS, c.Target == TargetXLVSNAT})
			maxV = max(maxV, c.PPS.Max)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	height := 40 + float64(len(rows))*(barH+gap) + float64(len(groups))*10 + 30
	scale := (width - left - right) / maxV
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14">Delivered packets per second (median, min–max whiskers)</text>`+"\n")
	y := 40.0
	for i, rw := range rows {
		if slices.Contains(groups, i) && i > 0 {
			y += 10
		}
		fill := "#8aa"
		if rw.xlvs {
			fill = "#d62"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, left-6, y+barH-4, html.EscapeString(rw.label))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.0f" fill="%s"/>`, left, y, rw.st.Median*scale, barH, fill)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`, left+rw.st.Min*scale, left+rw.st.Max*scale, y+barH/2, y+barH/2)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%.3f Mpps</text>`+"\n", left+rw.st.Max*scale+4, y+barH-4, rw.st.Median/1e6)
		y += barH + gap
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
