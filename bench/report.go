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
	"strconv"
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
	// WarmupRound measures every target once, briefly, before the counted runs and
	// discards the figures: the first measurement after start-up (cold page cache,
	// binaries, XDP programs not yet JIT-compiled) is low. A one-armed target measured
	// with its base target is not warmed again.
	WarmupRound bool
	// Conn, if set, adds the connection workload (short HTTP connections and a long TCP
	// stream) for every target that supports it, ConnRuns times (0 means Runs).
	Conn     *ConnOptions
	ConnRuns int
	// Variants sweep xlvsd's settings: each entry is a set of extra xlvsd flags
	// ("--batch 16", "--rx-ring 512 --fill-ring 512"), and the xlvs targets are measured
	// once per entry, in the same rounds as the baselines.
	Variants []string
	// Reals sweeps the number of real servers: the balancing targets (xlvs, iptables and
	// nftables DNAT) are measured once per entry, in the same rounds; empty means {1}.
	// The scheduler is Packet.Sched.
	Reals []int
}

// realsSweep is o.Reals, or {1}.
func (o RunOptions) realsSweep() []int {
	if len(o.Reals) == 0 {
		return []int{1}
	}
	return o.Reals
}

// connRuns is how many times the connection workload is measured per cell.
func (o RunOptions) connRuns() int {
	if o.ConnRuns == 0 {
		return o.Runs
	}
	return o.ConnRuns
}

// cellVariants are the xlvsd flag sets t is measured with: o.Variants for xlvs targets
// when sweeping, else one cell without.
func cellVariants(o RunOptions, t Target) []string {
	if isXLVS(t) && len(o.Variants) > 0 {
		return o.Variants
	}
	return []string{""}
}

// cellReals are the real-server counts t is measured with: the sweep for balancing
// targets, else one cell (0: not applicable).
func cellReals(o RunOptions, t Target) []int {
	if balances(t) {
		return o.realsSweep()
	}
	return []int{0}
}

// isXLVS reports whether t runs xlvsd.
func isXLVS(t Target) bool {
	t = t.base()
	return t == TargetXLVSNAT || t == TargetXLVSDR || t == TargetXLVSTUN || t == TargetXLVSFullNAT
}

// Label names a cell: its target, the sweep variant if any, and the number of real
// servers if more than one ("xlvs-nat [--batch 16] [16 reals]").
func (c Result) Label() string {
	l := string(c.Target)
	if c.Variant != "" {
		l += " [" + c.Variant + "]"
	}
	return l + realsLabel(c.Reals)
}

// Label names a connection cell as Result.Label names a packet cell.
func (c ConnResult) Label() string {
	return Result{Target: c.Target, Variant: c.Variant, Reals: c.Reals}.Label()
}

// DefaultMaxLoss is the loss the no-drop rate search accepts.
const DefaultMaxLoss = 0.01

// QuickOptions is the CI smoke: 64-byte UDP, 1000 flows, xlvs and the baselines, three
// short runs each with a short no-drop search; it finishes in under two minutes. Of the
// one-armed layout it measures xlvs only (QuickTargets).
func QuickOptions() RunOptions {
	return RunOptions{
		Targets:     QuickTargets,
		Workloads:   []Workload{{64, 1000}},
		Runs:        3,
		WarmupRound: true,
		Packet: PacketOptions{Warmup: 200 * time.Millisecond, Duration: 500 * time.Millisecond, GenCPU: 0, DirCPU: 1,
			MaxLoss: DefaultMaxLoss, SearchSteps: 4, TrialDuration: 200 * time.Millisecond, SearchPrecision: 0.05},
		Conn:     &ConnOptions{Concurrency: 32, Duration: 500 * time.Millisecond, StreamBytes: 32 << 20, GenCPU: 0, DirCPU: 1},
		ConnRuns: 1,
	}
}

// QuickTargets are AllTargets but iptables-dnat-onearm and iptables-dnat-xdp: the
// one-armed layout's baseline and the XDP reference are for full runs; the smoke needs
// xlvs's targets and the plain baselines only.
var QuickTargets = slices.DeleteFunc(slices.Clone(AllTargets), func(t Target) bool {
	return t == TargetIptablesOneArm || t == TargetIptablesXDP
})

// FullOptions measures every workload, five runs of 3 s each, with a finer no-drop search,
// each run waiting (up to 30 s) for the machine to be quiet.
func FullOptions() RunOptions {
	return RunOptions{
		Targets:     AllTargets,
		Workloads:   []Workload{{64, 1}, {64, 1000}, {1500, 1}, {1500, 1000}},
		Runs:        5,
		WarmupRound: true,
		Packet: PacketOptions{Warmup: 500 * time.Millisecond, Duration: 3 * time.Second, GenCPU: 0, DirCPU: 1,
			MaxLoss: DefaultMaxLoss, SearchSteps: 8, TrialDuration: 500 * time.Millisecond, QuietWait: 30 * time.Second},
		Conn:     &ConnOptions{Concurrency: 32, Duration: 3 * time.Second, StreamBytes: 512 << 20, GenCPU: 0, DirCPU: 1},
		ConnRuns: 3,
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
	Variant     string         `json:"variant,omitempty"`     // extra xlvsd flags of a sweep
	Reals       int            `json:"reals,omitempty"`       // real servers balanced over (balancing targets only)
	Unavailable string         `json:"unavailable,omitempty"` // why it was not measured
	Error       string         `json:"error,omitempty"`       // why a measurement failed
	PPS         Stat           `json:"pps"`                   // delivered: at the no-drop rate when searched, else unpaced
	Loss        Stat           `json:"loss"`
	DirNsPerPkt Stat           `json:"dir_ns_per_pkt"`
	OverloadPPS Stat           `json:"overload_pps"` // delivered when offered all the generator can
	NAPIInNs    Stat           `json:"napi_in_ns"`   // Profile.IngressNAPINs
	UserNs      Stat           `json:"user_ns"`      // Profile.UserNs
	SysNs       Stat           `json:"sys_ns"`       // Profile.SysNs
	PerWakeup   Stat           `json:"pkts_per_wakeup"`
	Stalls      int            `json:"stalls"` // timeline slices under a tenth of the median, all samples
	Noisy       int            `json:"noisy"`  // samples taken while the machine was busy with other work
	Samples     []PacketSample `json:"samples"`
}

// Report is a whole run.
type Report struct {
	Machine  Machine   `json:"machine"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Options  struct {
		MaxLoss    float64  `json:"max_loss"`
		Runs       int      `json:"runs"`
		Warmup     string   `json:"warmup"`
		Duration   string   `json:"duration"`
		GenCPU     int      `json:"gen_cpu"`
		DirCPU     int      `json:"dir_cpu"`
		DaemonArgs []string `json:"daemon_args"`
		Variants   []string `json:"variants,omitempty"`
		// Reals are the real-server counts the balancing targets were measured with;
		// Sched is the xlvs targets' scheduler (iptables and nftables take the real
		// servers in turn). Reports without them measured one real server with rr.
		Reals []int  `json:"reals,omitempty"`
		Sched string `json:"sched,omitempty"`
		// Queues is the queue count of every veth and xlvsd's worker count (packet-rate
		// workload; the connection workload keeps one), DirCPUs the director's CPUs with
		// more than one; reports without them measured one queue on DirCPU.
		Queues  int   `json:"queues,omitempty"`
		DirCPUs []int `json:"dir_cpus,omitempty"`
		// AnswerFlows: the sink answered each NAT and FULLNAT connection once before
		// counting (PacketOptions.AnswerFlows).
		AnswerFlows bool `json:"answer_flows,omitempty"`
	} `json:"options"`
	Results []Result     `json:"results"`
	Conns   []ConnResult `json:"conns,omitempty"`
}

// ConnResult is one target's connection-workload figures: medians of its samples.
type ConnResult struct {
	Target      Target       `json:"target"`
	Variant     string       `json:"variant,omitempty"` // extra xlvsd flags of a sweep
	Reals       int          `json:"reals,omitempty"`   // real servers balanced over (balancing targets only)
	Unavailable string       `json:"unavailable,omitempty"`
	Error       string       `json:"error,omitempty"`
	ConnsPerSec Stat         `json:"conns_per_sec"`
	P50Ms       Stat         `json:"p50_ms"`
	P99Ms       Stat         `json:"p99_ms"`
	P999Ms      Stat         `json:"p999_ms"`
	StreamGbps  Stat         `json:"stream_gbps"`
	Samples     []ConnSample `json:"samples"`
}

func (c *ConnResult) summarize() {
	var cps, p50, p99, p999, gbps []float64
	for _, s := range c.Samples {
		cps, p50, p99, p999 = append(cps, s.ConnsPerSec), append(p50, s.P50Ms), append(p99, s.P99Ms), append(p999, s.P999Ms)
		if s.StreamGbps > 0 {
			gbps = append(gbps, s.StreamGbps)
		}
	}
	c.ConnsPerSec, c.P50Ms, c.P99Ms, c.P999Ms, c.StreamGbps = statOf(cps), statOf(p50), statOf(p99), statOf(p999), statOf(gbps)
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
	r.Options.Runs, r.Options.GenCPU, r.Options.DirCPU, r.Options.MaxLoss = o.Runs, o.Packet.GenCPU, o.Packet.DirCPU, o.Packet.MaxLoss
	r.Options.Warmup, r.Options.Duration, r.Options.DaemonArgs = o.Packet.Warmup.String(), o.Packet.Duration.String(), o.Packet.DaemonArgs
	r.Options.Variants = o.Variants
	r.Options.AnswerFlows = o.Packet.AnswerFlows
	r.Options.Reals, r.Options.Sched = o.realsSweep(), o.Packet.Sched
	if o.Packet.Queues > 1 {
		r.Options.Queues, r.Options.DirCPUs = o.Packet.Queues, o.Packet.dirCPUs()
	}
	if r.Options.Sched == "" {
		r.Options.Sched = DefaultSched
	}
	for _, n := range r.Options.Reals {
		if n < 1 || n > MaxReals {
			return nil, fmt.Errorf("run benchmark: %d real servers, want 1 to %d", n, MaxReals)
		}
	}
	fmt.Fprintf(log, "machine: %s, %d CPUs, Linux %s, %s\n", r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go)
	avail := map[Target]error{}
	for _, t := range o.Targets {
		avail[t] = targetAvailable(ctx, t)
		if avail[t] == nil && o.Packet.Queues > 1 && (t.oneArm() || t == TargetL2Fwd) {
			avail[t] = o.Packet.checkQueues(t)
		}
	}
	prog := newProgress(r.Started)
	for range o.Workloads {
		for _, t := range o.Targets {
			if avail[t] == nil {
				prog.plan(kindPacket, len(cellReals(o, t))*len(cellVariants(o, t))*o.Runs)
			}
		}
	}
	if o.Conn != nil {
		for _, t := range o.Targets {
			prog.plan(kindConn, len(cellReals(o, t))*len(cellVariants(o, t))*o.connRuns())
		}
	}
	if o.WarmupRound && len(o.Workloads) > 0 {
		for _, t := range o.Targets {
			if avail[t] != nil {
				continue
			}
			if t.base() != t && slices.Contains(o.Targets, t.base()) {
				continue // the same binaries, programs and modules as its base target's
			}
			po := o.Packet
			po.Size, po.Flows, po.Duration, po.MaxLoss, po.QuietWait = o.Workloads[0].Size, o.Workloads[0].Flows, 300*time.Millisecond, 0, 0
			po.Reals = o.realsSweep()[0]
			s, err := MeasurePacketRate(ctx, t, po)
			prog.skip(time.Now())
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(log, "warm-up %s: %v\n", t, err)
				continue
			}
			fmt.Fprintf(log, "warm-up %-15s %8.0f pps (not counted)\n", t, s.PPS)
		}
	}
	prog.skip(time.Now()) // set-up and warm-ups count as elapsed, not as a measurement's time
	for _, w := range o.Workloads {
		var cells []*Result
		for _, t := range o.Targets {
			variants, reals := cellVariants(o, t), cellReals(o, t)
			unavailable := ""
			if err := avail[t]; err != nil {
				unavailable = err.Error()
				fmt.Fprintf(log, "%s: %v\n", w, err)
			}
			for _, n := range reals {
				for _, v := range variants {
					cells = append(cells, &Result{Workload: w, Target: t, Variant: v, Reals: n, Unavailable: unavailable})
				}
			}
		}
		for run := range o.Runs {
			for _, c := range cells {
				if c.Unavailable != "" {
					continue
				}
				po := o.Packet
				po.Size, po.Flows = w.Size, w.Flows
				po.DaemonArgs = append(slices.Clone(po.DaemonArgs), strings.Fields(c.Variant)...)
				po.Reals = c.Reals
				s, err := MeasurePacketRate(ctx, c.Target, po)
				if ctx.Err() != nil {
					return r, ctx.Err()
				}
				prog.step(kindPacket, time.Now())
				if err != nil {
					if errors.Is(err, ErrUnavailable) {
						c.Unavailable = err.Error()
						prog.drop(kindPacket, o.Runs-run-1)
					} else {
						c.Error = err.Error()
					}
					fmt.Fprintf(log, "%s %s run %d: %v\n", w, c.Label(), run+1, err)
				} else {
					c.Samples = append(c.Samples, s)
					logSample(log, w, run, c.Label(), s)
				}
				fmt.Fprintln(log, prog.line(time.Now()))
			}
		}
		for _, c := range cells {
			c.summarize()
			r.Results = append(r.Results, *c)
		}
	}
	if o.Conn != nil {
		if err := runConns(ctx, o, r, log, prog); err != nil {
			return r, err
		}
	}
	r.Duration = time.Since(r.Started).Round(time.Second).String()
	return r, nil
}

// runConns measures the connection workload, interleaving targets within each round.
func runConns(ctx context.Context, o RunOptions, r *Report, log io.Writer, prog *progress) error {
	runs := o.connRuns()
	co := *o.Conn
	co.DaemonArgs, co.Bins, co.Sched = o.Packet.DaemonArgs, o.Packet.Bins, o.Packet.Sched
	var cells []*ConnResult
	for _, t := range o.Targets {
		for _, n := range cellReals(o, t) {
			for _, v := range cellVariants(o, t) {
				cells = append(cells, &ConnResult{Target: t, Variant: v, Reals: n})
			}
		}
	}
	for run := range runs {
		for _, c := range cells {
			if c.Unavailable != "" {
				continue
			}
			co.Reals = c.Reals
			co.DaemonArgs = append(slices.Clone(o.Packet.DaemonArgs), strings.Fields(c.Variant)...)
			s, err := MeasureConnections(ctx, c.Target, co)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			prog.step(kindConn, time.Now())
			switch {
			case errors.Is(err, ErrUnavailable):
				c.Unavailable = err.Error()
				prog.drop(kindConn, runs-run-1)
				fmt.Fprintf(log, "connections: %v\n", err)
			case err != nil:
				c.Error = err.Error()
				fmt.Fprintf(log, "connections %s run %d: %v\n", c.Label(), run+1, err)
			default:
				c.Samples = append(c.Samples, s)
				fmt.Fprintf(log, "connections run %d: %v\n", run+1, s)
			}
			fmt.Fprintln(log, prog.line(time.Now()))
		}
	}
	for _, c := range cells {
		c.summarize()
		r.Conns = append(r.Conns, *c)
	}
	return nil
}

// summarize computes the cell's statistics from its samples.
func (c *Result) summarize() {
	var pps, loss, ns, over, napi, user, sys, wake []float64
	c.Stalls, c.Noisy = 0, 0
	for _, s := range c.Samples {
		pps, loss, ns = append(pps, s.PPS), append(loss, s.Loss), append(ns, s.DirNsPerPkt)
		if s.OverloadPPS > 0 {
			over = append(over, s.OverloadPPS)
		}
		napi, user, sys = append(napi, s.Profile.IngressNAPINs), append(user, s.Profile.UserNs), append(sys, s.Profile.SysNs)
		if s.Profile.PktsPerWakeup > 0 {
			wake = append(wake, s.Profile.PktsPerWakeup)
		}
		c.Stalls += s.Stalls()
		if s.Noisy() {
			c.Noisy++
		}
	}
	c.PPS, c.Loss, c.DirNsPerPkt, c.OverloadPPS = statOf(pps), statOf(loss), statOf(ns), statOf(over)
	c.NAPIInNs, c.UserNs, c.SysNs, c.PerWakeup = statOf(napi), statOf(user), statOf(sys), statOf(wake)
}

// logSample prints one measurement: rates, the director's CPU per packet and where it
// went, stalls in the timeline and how busy the machine was beforehand.
func logSample(log io.Writer, w Workload, run int, label string, s PacketSample) {
	p := s.Profile
	fast := ""
	if f := s.FastPath; f != nil {
		fast = fmt.Sprintf("; fast path: %d of %d connections installed before counting (%d answered, %d rounds, %.1f s), %d packets forwarded by XDP while counting",
			f.Installed, f.Conns, f.Answered, f.Rounds, f.Wait, p.Counters[ctrFastTx])
	}
	fmt.Fprintf(log, "%s %-15s run %d: %8.0f pps of %8.0f offered (loss %4.1f%%; overload %8.0f of %8.0f); director %5.0f ns/pkt: napi in %4.0f, user %4.0f sys %4.0f, other %5.0f, %5.1f pkts/wakeup; stalls %d; background %2.0f%%%s\n",
		w, label, run+1, s.PPS, s.OfferedPPS, 100*s.Loss, s.OverloadPPS, s.OverloadOfferedPPS, s.DirNsPerPkt, p.IngressNAPINs, p.UserNs, p.SysNs, p.OtherNs, p.PktsPerWakeup, s.Stalls(), 100*s.Background, fast)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// baseReals is the first real-server count of the run (1 in reports without the setting):
// comparisons between targets that do not name one are made at it.
func (r *Report) baseReals() int {
	if len(r.Options.Reals) == 0 {
		return 1
	}
	return r.Options.Reals[0]
}

// cell returns the (workload, target) cell at the run's first real-server count: without
// a sweep variant, or the first one.
func (r *Report) cell(w Workload, t Target) *Result { return r.cellAt(w, t, r.baseReals()) }

// cellAt returns the (workload, target) cell measured with reals real servers (any, for a
// target that does not balance): without a sweep variant, or the first one.
func (r *Report) cellAt(w Workload, t Target, reals int) *Result {
	var first *Result
	for i := range r.Results {
		c := &r.Results[i]
		if c.Workload != w || c.Target != t || (balances(t) && realsOf(c.Reals) != reals) {
			continue
		}
		if c.Variant == "" {
			return c
		}
		if first == nil {
			first = c
		}
	}
	return first
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

// WriteMarkdown writes one table per workload — delivered Mpps at the no-drop rate
// (median, min–max), at overload, loss, where the director's CPU went per packet, and
// xlvs-nat's ratio to each target — then the connection workload's table, the xlvs modes
// against NAT (Comparisons) and the targets as met or missed.
func (r *Report) WriteMarkdown(w io.Writer) {
	rate := "Delivered Mpps"
	if r.Options.MaxLoss > 0 {
		rate = fmt.Sprintf("No-drop Mpps (≤ %g %% loss)", 100*r.Options.MaxLoss)
	}
	dir := fmt.Sprintf("director on CPU %d", r.Options.DirCPU)
	if r.Options.Queues > 1 {
		cpus := make([]string, len(r.Options.DirCPUs))
		for i, c := range r.Options.DirCPUs {
			cpus[i] = strconv.Itoa(c)
		}
		dir = fmt.Sprintf("director with %d queues and workers on CPUs %s (packet rates; connections on one queue)", r.Options.Queues, strings.Join(cpus, ","))
		if slices.Contains(r.Options.DirCPUs, r.Options.GenCPU) {
			dir += fmt.Sprintf(" — CPU %d is the generator's too, so director ns/pkt counts the generator: compare napi in + user + sys", r.Options.GenCPU)
		}
	}
	answer := ""
	if r.Options.AnswerFlows {
		answer = " After the warm-up the sink answered each NAT and FULLNAT connection once (so that `xlvsd --fastpath` installs it); the notes say how many connections the fast path held when counting started."
	}
	fmt.Fprintf(w, "Machine: %s, %d CPUs, Linux %s, %s. Median of %d runs (min–max), %s each after %s warm-up; generator and sink on CPU %d, %s. %s%s Run took %s.\n\n",
		r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go, r.Options.Runs, r.Options.Duration, r.Options.Warmup, r.Options.GenCPU, dir, r.realsSentence(), answer, r.Duration)
	if r.hasOneArm() {
		fmt.Fprintf(w, "Targets named *-onearm run on the one-armed LVS-NAT layout: generator, director and sink on one bridge, the director receiving and sending on one interface (every packet crosses four veth pairs and the bridge twice, against two veth pairs for the others); their xlvs-nat ÷ target ratio divides %s.\n\n", TargetXLVSNATOneArm)
	}
	for _, wl := range r.workloads() {
		fmt.Fprintf(w, "**%s**\n\n| target | %s | overload Mpps | loss | director ns/pkt | napi in / user / sys ns | pkts/wakeup | xlvs-nat ÷ target | notes |\n|---|---|---|---|---|---|---|---|---|\n", wl, rate)
		for _, c := range r.Results {
			if c.Workload != wl {
				continue
			}
			x := r.cell(wl, natRef(c.Target))
			if balances(c.Target) {
				x = r.cellAt(wl, natRef(c.Target), realsOf(c.Reals))
			}
			switch {
			case c.Unavailable != "":
				fmt.Fprintf(w, "| %s | unavailable: %s | | | | | | | |\n", c.Label(), mdEscape(c.Unavailable))
				continue
			case len(c.Samples) == 0:
				fmt.Fprintf(w, "| %s | failed: %s | | | | | | | |\n", c.Label(), mdEscape(c.Error))
				continue
			}
			ratio := ""
			if x != nil && len(x.Samples) > 0 && c.PPS.Median > 0 {
				ratio = fmt.Sprintf("%.2f", x.PPS.Median/c.PPS.Median)
			}
			over := ""
			if c.OverloadPPS.Median > 0 {
				over = fmt.Sprintf("%.3f (%.3f–%.3f)", c.OverloadPPS.Median/1e6, c.OverloadPPS.Min/1e6, c.OverloadPPS.Max/1e6)
			}
			split := fmt.Sprintf("%.0f / %.0f / %.0f", c.NAPIInNs.Median, c.UserNs.Median, c.SysNs.Median)
			wake := ""
			if c.PerWakeup.Median > 0 {
				wake = fmt.Sprintf("%.1f", c.PerWakeup.Median)
			}
			var notes []string
			if c.Error != "" {
				notes = append(notes, "a run failed: "+mdEscape(c.Error))
			}
			if c.Stalls > 0 {
				notes = append(notes, fmt.Sprintf("%d stalled 100 ms slices", c.Stalls))
			}
			if c.Noisy > 0 {
				notes = append(notes, fmt.Sprintf("%d of %d runs on a busy machine", c.Noisy, len(c.Samples)))
			}
			if n := fastNote(c.Samples); n != "" {
				notes = append(notes, n)
			}
			if n := realsOf(c.Reals); n > 1 {
				if lo, hi, got, ok := realSpread(c.Samples[len(c.Samples)/2], n); ok {
					notes = append(notes, fmt.Sprintf("%d of %d real servers got packets, %d–%d each (run %d)", got, n, lo, hi, len(c.Samples)/2+1))
				}
			}
			fmt.Fprintf(w, "| %s | %.3f (%.3f–%.3f) | %s | %.1f %% | %.0f | %s | %s | %s | %s |\n", c.Label(), c.PPS.Median/1e6, c.PPS.Min/1e6, c.PPS.Max/1e6,
				over, 100*c.Loss.Median, c.DirNsPerPkt.Median, split, wake, ratio, strings.Join(notes, "; "))
		}
		fmt.Fprintln(w)
	}
	if len(r.Conns) > 0 {
		fmt.Fprintf(w, "**Connections** (HTTP/1.1, one request per TCP connection, 32 in flight; then one long TCP stream)\n\n| target | conn/s = req/s | p50 ms | p99 ms | p99.9 ms | stream Gbit/s | xlvs-nat ÷ target (conn/s) |\n|---|---|---|---|---|---|---|\n")
		xAt := func(nat Target, reals int) *ConnResult {
			for i := range r.Conns {
				if c := &r.Conns[i]; c.Target == nat && realsOf(c.Reals) == reals && len(c.Samples) > 0 {
					return c
				}
			}
			return nil
		}
		for _, c := range r.Conns {
			switch {
			case c.Unavailable != "":
				fmt.Fprintf(w, "| %s | unavailable: %s | | | | | |\n", c.Label(), mdEscape(c.Unavailable))
				continue
			case len(c.Samples) == 0:
				fmt.Fprintf(w, "| %s | failed: %s | | | | | |\n", c.Label(), mdEscape(c.Error))
				continue
			}
			x := xAt(natRef(c.Target), r.baseReals())
			if balances(c.Target) {
				x = xAt(natRef(c.Target), realsOf(c.Reals))
			}
			ratio := ""
			if x != nil && c.ConnsPerSec.Median > 0 {
				ratio = fmt.Sprintf("%.2f", x.ConnsPerSec.Median/c.ConnsPerSec.Median)
			}
			fmt.Fprintf(w, "| %s | %.0f (%.0f–%.0f) | %.2f | %.2f | %.2f | %.2f (%.2f–%.2f) | %s |\n", c.Label(), c.ConnsPerSec.Median, c.ConnsPerSec.Min, c.ConnsPerSec.Max,
				c.P50Ms.Median, c.P99Ms.Median, c.P999Ms.Median, c.StreamGbps.Median, c.StreamGbps.Min, c.StreamGbps.Max, ratio)
		}
		fmt.Fprintln(w)
	}
	if cs := r.Comparisons(); len(cs) > 0 {
		fmt.Fprintf(w, "**xlvs modes and layouts compared** (median figures of this run)\n\n| figure | ratio |\n|---|---|\n")
		for _, c := range cs {
			fmt.Fprintf(w, "| %s | %.2f |\n", c.Name, c.Ratio)
		}
		fmt.Fprintln(w)
	}
	writeVerdicts(w, "**Targets** (issue 8, end to end, median figures of this run)", r.Verdicts())
	writeVerdicts(w, "**Fast-path and connection targets** (issue 19, median figures of this run)", r.FastPathVerdicts())
}

// writeVerdicts writes vs as a table under title, if there are any.
func writeVerdicts(w io.Writer, title string, vs []Verdict) {
	if len(vs) == 0 {
		return
	}
	fmt.Fprintf(w, "%s\n\n| target | ratio | wanted | |\n|---|---|---|---|\n", title)
	for _, t := range vs {
		verdict := "missed"
		if t.Met {
			verdict = "met"
		}
		fmt.Fprintf(w, "| %s | %.2f | %s | %s |\n", t.Name, t.Ratio, t.wanted(), verdict)
	}
	fmt.Fprintln(w)
}

// fastNote says how many connections xlvsd's fast path held when counting started, over
// samples ("" when none had the fast path on): the range over the runs.
func fastNote(samples []PacketSample) string {
	var inst, conns []float64
	for _, s := range samples {
		if s.FastPath != nil {
			inst, conns = append(inst, float64(s.FastPath.Installed)), append(conns, float64(s.FastPath.Conns))
		}
	}
	if len(inst) == 0 {
		return ""
	}
	i, c := statOf(inst), statOf(conns)
	span := func(s Stat) string {
		if s.Min == s.Max {
			return fmt.Sprintf("%.0f", s.Min)
		}
		return fmt.Sprintf("%.0f–%.0f", s.Min, s.Max)
	}
	return fmt.Sprintf("fast path: %s of %s connections installed before counting", span(i), span(c))
}

// hasOneArm reports whether the run measured a one-armed target.
func (r *Report) hasOneArm() bool {
	for _, c := range r.Results {
		if c.Target.oneArm() {
			return true
		}
	}
	for _, c := range r.Conns {
		if c.Target.oneArm() {
			return true
		}
	}
	return false
}

// Comparison is one figure of a target divided by the same figure of another, in one run.
type Comparison struct {
	Name  string  `json:"name"` // "udp-64B-1000flows no-drop pps: xlvs-fullnat ÷ xlvs-nat"
	Ratio float64 `json:"ratio"`
}

// comparedModes are the pairs Comparisons divides: FULLNAT does NAT's work plus a source
// rewrite and, per new connection, a local port allocation, so the first ratio is their
// cost; one-armed NAT does NAT's work on one interface behind a bridge, so the second
// is what the layout costs, and the third compares xlvs with iptables on that layout.
// The last two compare with iptables DNAT behind a pass-everything XDP program: what an
// XDP program on the director's interfaces costs the kernel's own path, and xlvs against
// the kernel on those equal terms.
var comparedModes = [][2]Target{{TargetXLVSFullNAT, TargetXLVSNAT}, {TargetXLVSNATOneArm, TargetXLVSNAT},
	{TargetXLVSNATOneArm, TargetIptablesOneArm}, {TargetIptablesXDP, TargetIptables}, {TargetXLVSNAT, TargetIptablesXDP}}

// natRef is the xlvs NAT target that a row's "xlvs-nat ÷ target" ratio divides: the
// one-armed one for one-armed targets, so that both sides of a ratio share a layout.
func natRef(t Target) Target {
	if t.oneArm() {
		return TargetXLVSNATOneArm
	}
	return TargetXLVSNAT
}

// Comparisons divides, for each pair of comparedModes, the first target's median by the
// second's: per packet workload the delivered rate (at the no-drop rate when searched;
// not the overload rate, which swings with how NAPI starves the forwarder), then the
// connection workload's conn/s and stream rate. A figure either target lacks (not
// measured, failed, or zero) is left out.
func (r *Report) Comparisons() []Comparison {
	var out []Comparison
	add := func(figure string, num, den Target, a, b float64) {
		if a > 0 && b > 0 {
			out = append(out, Comparison{Name: fmt.Sprintf("%s: %s ÷ %s", figure, num, den), Ratio: a / b})
		}
	}
	rate := "delivered pps"
	if r.Options.MaxLoss > 0 {
		rate = "no-drop pps"
	}
	conn := func(t Target) *ConnResult {
		for i := range r.Conns {
			if c := &r.Conns[i]; c.Target == t && len(c.Samples) > 0 && (!balances(t) || realsOf(c.Reals) == r.baseReals()) {
				return c
			}
		}
		return nil
	}
	for _, p := range comparedModes {
		for _, wl := range r.workloads() {
			a, b := r.cell(wl, p[0]), r.cell(wl, p[1])
			if a == nil || b == nil || len(a.Samples) == 0 || len(b.Samples) == 0 {
				continue
			}
			add(wl.String()+" "+rate, p[0], p[1], a.PPS.Median, b.PPS.Median)
		}
		if a, b := conn(p[0]), conn(p[1]); a != nil && b != nil {
			add("connections conn/s", p[0], p[1], a.ConnsPerSec.Median, b.ConnsPerSec.Median)
			add("connections stream Gbit/s", p[0], p[1], a.StreamGbps.Median, b.StreamGbps.Median)
		}
	}
	return out
}

// Verdict is one of the end-to-end targets, judged on a run.
type Verdict struct {
	Name  string  `json:"name"`
	Ratio float64 `json:"ratio"`
	Want  float64 `json:"want"`
	Met   bool    `json:"met"`
	// AtMost: the ratio must be at most Want (a cost), not at least (a rate).
	AtMost bool `json:"at_most,omitempty"`
}

// wanted is how the markdown states what v wants: "≥ 2.00", "≤ 0.33".
func (v Verdict) wanted() string {
	if v.AtMost {
		return fmt.Sprintf("≤ %.2f", v.Want)
	}
	return fmt.Sprintf("≥ %.2f", v.Want)
}

// judgedWorkload is the workload the verdicts judge: 64 bytes, 1000 flows, or the first
// 64-byte workload of a run without it (nil: none).
func (r *Report) judgedWorkload() *Workload {
	var wl *Workload
	for _, w := range r.workloads() {
		if w.Size == 64 && (wl == nil || w.Flows == 1000) {
			wl = &w
		}
	}
	return wl
}

// Verdicts judges the end-to-end targets on the 64-byte, 1000-flow workload (or, if the
// run lacks it, the first 64-byte one): xlvs NAT at least as fast as iptables DNAT, at
// least 80 % of the AF_XDP copy-path limit, and DR at least as fast as NAT. A target
// whose cells were not measured is left out.
func (r *Report) Verdicts() []Verdict {
	wl := r.judgedWorkload()
	if wl == nil {
		return nil
	}
	var out []Verdict
	judge := func(num, den Target, want float64) {
		a, b := r.cell(*wl, num), r.cell(*wl, den)
		if a == nil || b == nil || len(a.Samples) == 0 || len(b.Samples) == 0 || b.PPS.Median == 0 {
			return
		}
		ratio := a.PPS.Median / b.PPS.Median
		out = append(out, Verdict{Name: fmt.Sprintf("%s: %s ÷ %s", wl, num, den), Ratio: ratio, Want: want, Met: ratio >= want})
	}
	judge(TargetXLVSNAT, TargetIptables, 1)
	judge(TargetXLVSNAT, TargetL2Fwd, 0.8)
	judge(TargetXLVSDR, TargetXLVSNAT, 1)
	return out
}

// hasFastPath reports whether a sweep variant turns xlvsd's XDP fast path on.
func hasFastPath(variant string) bool { return slices.Contains(strings.Fields(variant), "--fastpath") }

// FastPathVerdicts judges the XDP fast path's end-to-end targets (issue 19) on a run that
// swept xlvs-nat with and without --fastpath (each variant with it, against the first
// without), on the workload Verdicts judges: the no-drop rate (delivered, without a
// search) with the fast path at least 2× iptables DNAT's and 2× xlvs NAT's without it,
// and the director's CPU per packet at most a third of iptables DNAT's. The connection
// workload adds conn/s and the TCP stream at least level with iptables DNAT (each
// xlvs-nat variant with the fast path when the sweep has them, else its first cell),
// and, when the run has it, with iptables-dnat-xdp. A figure a cell lacks is left out; a
// run without both kinds of variant judges only connections.
func (r *Report) FastPathVerdicts() []Verdict {
	var out []Verdict
	judge := func(name string, a, b, want float64, atMost bool) {
		if a <= 0 || b <= 0 {
			return
		}
		v := Verdict{Name: name, Ratio: a / b, Want: want, AtMost: atMost}
		v.Met = v.Ratio >= want
		if atMost {
			v.Met = v.Ratio <= want
		}
		out = append(out, v)
	}
	if wl := r.judgedWorkload(); wl != nil {
		var fast []*Result
		var slow *Result
		for i := range r.Results {
			c := &r.Results[i]
			if c.Workload != *wl || c.Target != TargetXLVSNAT || c.Variant == "" || len(c.Samples) == 0 || realsOf(c.Reals) != r.baseReals() {
				continue
			}
			switch {
			case hasFastPath(c.Variant):
				fast = append(fast, c)
			case slow == nil:
				slow = c
			}
		}
		rate := "delivered pps"
		if r.Options.MaxLoss > 0 {
			rate = "no-drop pps"
		}
		if ipt := r.cell(*wl, TargetIptables); slow != nil && ipt != nil && len(ipt.Samples) > 0 {
			for _, f := range fast {
				judge(fmt.Sprintf("%s %s: %s ÷ %s", wl, rate, f.Label(), TargetIptables), f.PPS.Median, ipt.PPS.Median, 2, false)
				judge(fmt.Sprintf("%s %s: %s ÷ %s", wl, rate, f.Label(), slow.Label()), f.PPS.Median, slow.PPS.Median, 2, false)
				judge(fmt.Sprintf("%s director ns/pkt: %s ÷ %s", wl, f.Label(), TargetIptables), f.DirNsPerPkt.Median, ipt.DirNsPerPkt.Median, 1.0/3, true)
			}
		}
	}
	// The connection cells: xlvs-nat's with the fast path when the sweep has them, else
	// its first cell.
	var nat []*ConnResult
	var first, ipt, iptXDP *ConnResult
	for i := range r.Conns {
		c := &r.Conns[i]
		if len(c.Samples) == 0 || realsOf(c.Reals) != r.baseReals() {
			continue
		}
		switch {
		case c.Target == TargetXLVSNAT && hasFastPath(c.Variant):
			nat = append(nat, c)
		case c.Target == TargetXLVSNAT && first == nil:
			first = c
		case c.Target == TargetIptables && ipt == nil:
			ipt = c
		case c.Target == TargetIptablesXDP && iptXDP == nil:
			iptXDP = c
		}
	}
	if len(nat) == 0 && first != nil {
		nat = append(nat, first)
	}
	// Against iptables DNAT, and against it behind a pass-everything XDP program (when
	// the run measured it): the kernel on the terms an XDP program on the director's
	// interfaces sets, which xlvs cannot avoid.
	for _, n := range nat {
		for _, ref := range []*ConnResult{ipt, iptXDP} {
			if ref != nil {
				judge(fmt.Sprintf("connections conn/s: %s ÷ %s", n.Label(), ref.Target), n.ConnsPerSec.Median, ref.ConnsPerSec.Median, 1, false)
				judge(fmt.Sprintf("connections stream Gbit/s: %s ÷ %s", n.Label(), ref.Target), n.StreamGbps.Median, ref.StreamGbps.Median, 1, false)
			}
		}
	}
	return out
}

// Check returns an error naming every target that failed or that delivered (median)
// under minPPS packets per second: a forwarder that measures about nothing is broken,
// and the smoke run must fail on it. Unavailable targets pass.
func (r *Report) Check(minPPS float64) error {
	var bad []string
	for _, c := range r.Results {
		switch {
		case c.Unavailable != "":
		case c.Error != "" && len(c.Samples) == 0:
			bad = append(bad, fmt.Sprintf("%s %s failed: %s", c.Workload, c.Label(), c.Error))
		case c.Error != "":
			bad = append(bad, fmt.Sprintf("%s %s: a run failed: %s", c.Workload, c.Label(), c.Error))
		case c.PPS.Median < minPPS:
			bad = append(bad, fmt.Sprintf("%s %s delivered %.0f pps (median), under the floor of %.0f: it should forward", c.Workload, c.Label(), c.PPS.Median, minPPS))
		}
	}
	for _, c := range r.Conns {
		if c.Unavailable == "" && c.Error != "" {
			bad = append(bad, fmt.Sprintf("connections %s: %s", c.Label(), c.Error))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrBelowFloor, strings.Join(bad, "\n  "))
	}
	return nil
}

// ErrBelowFloor is returned (wrapped) by Check.
var ErrBelowFloor = errors.New("benchmark sanity check failed")

func mdEscape(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// realsSentence says how many real servers the balancing targets spread the flows over
// and how, for the report's header.
func (r *Report) realsSentence() string {
	reals := r.Options.Reals
	if len(reals) == 0 {
		reals = []int{1}
	}
	ns := make([]string, len(reals))
	for i, n := range reals {
		ns[i] = strconv.Itoa(n)
	}
	sched := r.Options.Sched
	if sched == "" {
		sched = DefaultSched
	}
	noun := "real servers"
	if len(reals) == 1 && reals[0] == 1 {
		noun = "real server"
	}
	return fmt.Sprintf("Balancing targets over %s %s (addresses of the sink; xlvs scheduler %s, iptables statistic nth, nftables numgen inc).", strings.Join(ns, " and "), noun, sched)
}

// Ratios returns, per workload, xlvs-nat's median pps divided by each other target's, at
// the run's first real-server count.
func (r *Report) Ratios() map[string]map[Target]float64 {
	out := map[string]map[Target]float64{}
	for _, wl := range r.workloads() {
		x := r.cell(wl, TargetXLVSNAT)
		if x == nil || len(x.Samples) == 0 {
			continue
		}
		m := map[Target]float64{}
		for _, c := range r.Results {
			if c.Workload == wl && c.Target != TargetXLVSNAT && c.PPS.Median > 0 && (!balances(c.Target) || realsOf(c.Reals) == r.baseReals()) {
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
			rows = append(rows, row{wl.String() + " " + c.Label(), c.PPS, isXLVS(c.Target)})
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
