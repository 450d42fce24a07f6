package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"xlvs/bench"
	"xlvs/cmd/internal/manpage"
	"xlvs/sched"
	"xlvs/version"
)

// usage is the text of -h and of a bad command (manual.go: the commands the man page lists).
var usage = topUsage()

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "demo":
		err = demo(ctx, os.Args[2:])
	case "run":
		err = runBench(ctx, os.Args[2:])
	case "--quick", "-quick":
		err = runBench(ctx, os.Args[1:]) // `xlvs-bench --quick` is `xlvs-bench run --quick`
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	case "--version", "-version", "version":
		fmt.Println("xlvs-bench", version.String())
		return
	case "--" + manpage.HelpManFlag:
		err = runBench(ctx, os.Args[1:]) // run's flag set makes the page's OPTIONS
	default:
		fmt.Fprintf(os.Stderr, "xlvs-bench: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlvs-bench:", err)
		os.Exit(1)
	}
}

func demo(ctx context.Context, args []string) error {
	var o bench.DemoOptions
	fs, w1, w2 := demoFlags(&o)
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Weights = [2]int{*w1, *w2}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo builds network namespaces and attaches XDP: run it as root (sudo make demo)")
	}
	bins, err := bench.FindBinaries()
	if err != nil {
		return err
	}
	_, err = bench.Demo(ctx, bins, o, os.Stdout)
	return err
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "CI smoke: 64-byte UDP, 1000 flows, 3 runs of 0.5 s each after a short no-drop search, then the connection workload once (under two minutes)")
	runs := fs.Int("runs", 0, "runs per figure (default 3 quick, 5 full); the report gives the median")
	dur := fs.Duration("duration", 0, "counted time per run (default 1s quick, 3s full)")
	cpus := fs.String("cpus", "0,1", "GEN,DIR: CPU of generator and sink, CPU of the director")
	targets := fs.String("targets", "", "comma-separated targets (default all: "+joinTargets(bench.AllTargets)+")")
	workloads := fs.String("workloads", "", "comma-separated SIZExFLOWS, e.g. 64x1,64x1000,1500x1000 (default by mode)")
	xlvsd := fs.String("xlvsd", "", "extra xlvsd flags for sweeps, space-separated, e.g. \"--rx-ring 512 --batch 16 --xdp-mode generic\"")
	sweep := fs.String("sweep", "", "xlvsd settings to compare in one run, ';'-separated sets of flags, e.g. \"--batch 16;--batch 64;--batch 256\" (xlvs targets are measured once per set)")
	batch := fs.Int("gen-batch", 0, "generator transmit batch (default 64)")
	out := fs.String("out", "bench-out", "directory for report.json, report.md and report.svg")
	maxLoss := fs.Float64("max-loss", -1, "loss the no-drop rate search accepts, e.g. 0.01; 0 measures unpaced only (default 0.01)")
	minPPS := fs.Float64("min-pps", 1000, "sanity floor: exit 1 if a target that should forward delivers less (median pps): a stalled or broken path, not a slow one")
	quietWait := fs.Duration("quiet-wait", -1, "before each run, wait up to this long for the machine to be quiet (default 0 quick, 30s full)")
	warmRound := fs.Bool("warmup-round", true, "measure every target once, uncounted, before the runs")
	conns := fs.Bool("conns", true, "also run the connection workload (short HTTP connections, one long TCP stream)")
	concurrency := fs.Int("concurrency", 0, "HTTP requests in flight in the connection workload (default 32)")
	reals := fs.String("reals", "1", fmt.Sprintf("real servers the balancing targets (xlvs, iptables and nftables DNAT) spread flows over, 1 to %d, all addresses of the sink; a comma-separated list, e.g. 1,16, measures them once per count, rows labelled [N reals]", bench.MaxReals))
	schedName := fs.String("sched", bench.DefaultSched, "scheduler of the xlvs targets (xlvsadm -s: "+strings.Join(sched.Names(), ", ")+"); iptables and nftables take the real servers in turn")
	queues := fs.Int("queues", 1, fmt.Sprintf("queues per veth and xlvsd workers (--queues) for the packet-rate workload, 1 to %d: the generator sends on every queue, the director runs on CPUs DIR, DIR+1, ... (of --cpus, wrapping round the machine's CPUs, at most one each); one-armed targets and afxdp-l2fwd are skipped with more than one, the connection workload keeps one queue", bench.MaxQueues))
	answer := fs.Bool("answer-flows", false, "packet rates: after the warm-up, have the sink answer each connection of xlvs-nat and xlvs-fullnat once (from the real server to the client, through the director), so that xlvsd --fastpath installs the flows in its XDP fast path before counting (a one-way flood never installs them); the report says how many were installed. Other targets ignore it (DR and TUN flows are installed from their second packet anyway)")
	helpMan := fs.Bool(manpage.HelpManFlag, false, "print the man page (roff) and exit")
	fs.Usage = func() { manual(fs).Help(os.Stderr) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *helpMan {
		return manual(fs).Man(os.Stdout, version.String(), manpage.Date())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	o := bench.FullOptions()
	if *quick {
		o = bench.QuickOptions()
	}
	if *runs > 0 {
		o.Runs = *runs
	}
	if *dur > 0 {
		o.Packet.Duration = *dur
	}
	g, d, ok := strings.Cut(*cpus, ",")
	gc, err1 := strconv.Atoi(g)
	dc, err2 := strconv.Atoi(d)
	if !ok || err1 != nil || err2 != nil || gc < 0 || dc < 0 {
		return fmt.Errorf("--cpus %q: want GEN,DIR, two CPU numbers such as 0,1", *cpus)
	}
	o.Packet.GenCPU, o.Packet.DirCPU, o.Packet.GenBatch = gc, dc, *batch
	if *queues < 1 || *queues > bench.MaxQueues {
		return fmt.Errorf("--queues %d: want 1 to %d", *queues, bench.MaxQueues)
	}
	if *queues > 1 {
		o.Packet.Queues = *queues
		for i := range min(*queues, runtime.NumCPU()) {
			o.Packet.DirCPUs = append(o.Packet.DirCPUs, (dc+i)%runtime.NumCPU())
		}
	}
	o.Packet.DaemonArgs = strings.Fields(*xlvsd)
	o.Packet.AnswerFlows = *answer
	o.WarmupRound = *warmRound
	var err error
	if o.Reals, err = bench.ParseReals(*reals); err != nil {
		return err
	}
	if err := bench.CheckSched(*schedName); err != nil {
		return err
	}
	o.Packet.Sched = *schedName
	for _, v := range strings.Split(*sweep, ";") {
		if v = strings.Join(strings.Fields(v), " "); v != "" {
			o.Variants = append(o.Variants, v)
		}
	}
	if !*conns {
		o.Conn = nil
	} else if *concurrency > 0 {
		o.Conn.Concurrency = *concurrency
	}
	if o.Conn != nil {
		o.Conn.GenCPU, o.Conn.DirCPU = gc, dc
	}
	if *maxLoss >= 0 {
		if *maxLoss >= 1 {
			return fmt.Errorf("--max-loss %g: want a fraction under 1, e.g. 0.01", *maxLoss)
		}
		o.Packet.MaxLoss = *maxLoss
	}
	if *quietWait >= 0 {
		o.Packet.QuietWait = *quietWait
	}
	if *targets != "" {
		o.Targets = nil
		for _, t := range strings.Split(*targets, ",") {
			tt := bench.Target(strings.TrimSpace(t))
			found := false
			for _, k := range bench.AllTargets {
				found = found || k == tt
			}
			if !found {
				return fmt.Errorf("--targets: unknown target %q; want some of %s", t, joinTargets(bench.AllTargets))
			}
			o.Targets = append(o.Targets, tt)
		}
	}
	if *workloads != "" {
		o.Workloads = nil
		for _, w := range strings.Split(*workloads, ",") {
			sz, fl, ok := strings.Cut(strings.TrimSpace(w), "x")
			s, e1 := strconv.Atoi(sz)
			f, e2 := strconv.Atoi(fl)
			if !ok || e1 != nil || e2 != nil || s < 60 || s > 1500 || f < 1 || f > 10_000_000 {
				return fmt.Errorf("--workloads: %q: want SIZExFLOWS with SIZE 60..1500 and FLOWS 1..10000000, e.g. 64x1000", w)
			}
			o.Workloads = append(o.Workloads, bench.Workload{Size: s, Flows: f})
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmark builds network namespaces and attaches XDP: run it as root (sudo make bench)")
	}
	bins, err := bench.FindBinaries()
	if err != nil {
		return err
	}
	o.Packet.Bins = bins
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Hour)
	defer cancel()
	rep, err := bench.Run(ctx, o, os.Stdout)
	if err != nil {
		return err
	}
	if err := writeReport(filepath.Join(*out, "report.json"), rep.WriteJSON); err != nil {
		return err
	}
	if err := writeReport(filepath.Join(*out, "report.svg"), rep.WriteSVG); err != nil {
		return err
	}
	var md strings.Builder
	rep.WriteMarkdown(&md)
	if err := os.WriteFile(filepath.Join(*out, "report.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Print("\n", md.String())
	fmt.Printf("reports in %s (report.json, report.md, report.svg); run took %s\n", *out, rep.Duration)
	return rep.Check(*minPPS)
}

func joinTargets(ts []bench.Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ") // spaces let a manual page break the list
}

func writeReport(path string, write func(w io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
