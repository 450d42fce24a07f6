package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"xlvs/bench/gen"
	"xlvs/bench/testbed"
	"xlvs/bpf"
	"xlvs/control/api"
	"xlvs/dataplane/xsk"
)

// Target is a forwarder the harness measures.
type Target string

// The targets, in the order a full run measures them.
const (
	TargetXLVSNAT     Target = "xlvs-nat"       // xlvsd, NAT (-m), over PacketOptions.Reals real servers
	TargetXLVSDR      Target = "xlvs-dr"        // xlvsd, DR (-g): MAC rewrite only
	TargetXLVSTUN     Target = "xlvs-tun"       // xlvsd, TUN (-i): IPIP encapsulation
	TargetXLVSFullNAT Target = "xlvs-fullnat"   // xlvsd, FULLNAT (--fullnat): NAT plus source → local address:port
	TargetIptables    Target = "iptables-dnat"  // iptables nat PREROUTING DNAT, statistic mode
	TargetNftables    Target = "nftables-dnat"  // nftables prerouting dnat to numgen map
	TargetKernel      Target = "kernel-forward" // plain IPv4 forwarding, no balancing
	TargetL2Fwd       Target = "afxdp-l2fwd"    // minimal Go AF_XDP forwarder, no lookups
	TargetIPVS        Target = "kernel-ipvs"    // ipvsadm, where the kernel has IPVS

	// The one-armed LVS-NAT layout: the same set-up as xlvs-nat and iptables-dnat on the
	// one-armed chain (testbed.ChainOptions.OneArm), where generator, director and sink
	// share a bridge and the director forwards out of the interface it received on.
	TargetXLVSNATOneArm  Target = "xlvs-nat-onearm"
	TargetIptablesOneArm Target = "iptables-dnat-onearm"

	// TargetIptablesXDP is iptables-dnat with an XDP program that passes every packet
	// attached (native mode) to each of the director's interfaces: the kernel's DNAT
	// path plus only what an XDP program on the interface costs. On a veth that cost is
	// large for TCP streams (the peer loses TSO and every MTU-sized frame goes through the
	// program and GRO on its own) and every XDP-based director pays it: the reference for
	// xlvs's stream on this testbed, as afxdp-l2fwd is for its packet rate.
	TargetIptablesXDP Target = "iptables-dnat-xdp"
)

// AllTargets lists every target.
var AllTargets = []Target{TargetXLVSNAT, TargetXLVSDR, TargetXLVSTUN, TargetXLVSFullNAT, TargetXLVSNATOneArm,
	TargetIptables, TargetIptablesOneArm, TargetIptablesXDP, TargetNftables, TargetKernel, TargetL2Fwd, TargetIPVS}

// oneArmed maps each one-armed target to the two-armed target whose set-up it shares.
var oneArmed = map[Target]Target{TargetXLVSNATOneArm: TargetXLVSNAT, TargetIptablesOneArm: TargetIptables}

// base is the target whose set-up t uses (t itself unless t is one-armed or
// iptables-dnat-xdp).
func (t Target) base() Target {
	if b, ok := oneArmed[t]; ok {
		return b
	}
	if t == TargetIptablesXDP {
		return TargetIptables
	}
	return t
}

// oneArm reports whether t runs on the one-armed chain.
func (t Target) oneArm() bool {
	_, ok := oneArmed[t]
	return ok
}

// newChain builds the chain target runs on, with queues queues per veth (0 or 1: one)
// and threaded NAPI pinned: generator, sink and switch on genCPU, the director on
// dirCPUs.
func newChain(target Target, prefix string, genCPU int, dirCPUs []int, queues int) (*testbed.Bed, error) {
	bed, err := testbed.NewChain(testbed.ChainOptions{Prefix: prefix, ThreadedNAPI: true, OneArm: target.oneArm(), Queues: queues})
	if err != nil {
		return nil, err
	}
	if err := bed.PinChainCPUs(genCPU, dirCPUs); err != nil {
		return nil, errors.Join(err, bed.Close())
	}
	return bed, nil
}

// manyFlowsBase is the first source address of workloads with more flows than the
// generator has frames (198.18.16.0/20: outside every testbed subnet).
var manyFlowsBase = netip.MustParseAddr("198.18.16.1")

// ErrUnavailable is returned (wrapped) when a target cannot run on this machine (a tool
// or kernel feature missing); the message says which and why.
var ErrUnavailable = errors.New("unavailable")

// PacketOptions configure one packet-rate measurement.
type PacketOptions struct {
	Size       int           // packet size as named: 64 (Ethernet frame with FCS) or 1500 (IP packet)
	Flows      int           // distinct flows, 1 or more (xlvs-fullnat: also how many local addresses, one per 32768)
	Warmup     time.Duration // traffic before counting, after the first packet reached the sink; 0 means 500 ms
	Duration   time.Duration // counted traffic; 0 means 2 s
	GenCPU     int           // CPU of the generator and the sink's softirq
	DirCPU     int           // CPU of the director: its NAPI threads and the forwarder
	DaemonArgs []string      // extra xlvsd flags (rings, frames, batch, --xdp-mode ...)
	GenBatch   int           // generator transmit batch; 0 means 64
	Bins       Binaries      // needed for the xlvs targets
	// Reals is how many real servers the balancing targets (xlvs, iptables and nftables
	// DNAT) spread the flows over, 1 to MaxReals; 0 means 1. All are addresses of the
	// sink (see realAddrs). Sched is the xlvs targets' scheduler ("" means DefaultSched);
	// iptables and nftables take the real servers in turn.
	Reals int
	Sched string
	// QuietWait is how long to wait, before building the testbed, for the machine to be
	// quiet (under QuietBusy of its CPU capacity busy); 0 does not wait, only records.
	QuietWait time.Duration
	QuietBusy float64 // 0 means NoisyBusy
	// Queues is how many RX and TX queues every veth of the chain has and so how many
	// workers xlvsd runs (--queues; one AF_XDP socket per queue); 0 means 1. With more
	// than one, the generator sends on every TX queue of its veth, one AF_XDP socket per
	// queue with the flows dealt out in turn, so that each of the director's queues
	// receives Flows/Queues of them (a veth receives on the queue its peer sent on).
	// Only two-armed targets with flows in the generator's frames (Flows ≤ 4096) take it.
	Queues int
	// DirCPUs are the director's CPUs when there are several: xlvsd's --cpus (worker q
	// on DirCPUs[q mod len]), the CPUs its NAPI threads may run on, and those whose busy
	// time DirNsPerPkt counts (all of it: with GenCPU among them, the generator's too).
	// Empty means DirCPU alone.
	DirCPUs []int
	// MaxLoss > 0 asks for the no-drop rate: after an unpaced interval (the overload
	// rate), the generator is paced and the highest offered rate with at most MaxLoss
	// lost is searched for in SearchSteps trials of TrialDuration (defaults 7 and
	// Duration/4, at least 200 ms), to SearchPrecision (default 0.03) of the rate; the
	// sample is then measured at that rate. 0 measures unpaced only.
	MaxLoss         float64
	SearchSteps     int
	TrialDuration   time.Duration
	SearchPrecision float64
	// AnswerFlows, for xlvs-nat and xlvs-fullnat, has the sink answer each of the
	// director's connections once after the warm-up, before counting: one datagram
	// from the real server's address and port to the client's (FULLNAT: to the local
	// address and port), sent from the sink's namespace through the director, which
	// then has seen a packet each way, so that xlvsd --fastpath installs the
	// connection in its XDP fast path. The generator is slowed meanwhile; counting
	// starts once the installs are in (or stop coming). Other targets ignore it (DR
	// and TUN connections are installed from their second packet anyway).
	AnswerFlows bool
}

// PacketSample is one measurement.
type PacketSample struct {
	Target       Target  `json:"target"`
	Offered      uint64  `json:"offered"`        // packets the generator's veth passed on or dropped
	Delivered    uint64  `json:"delivered"`      // packets the sink's veth received
	Seconds      float64 `json:"seconds"`        // counted interval
	OfferedPPS   float64 `json:"offered_pps"`    //
	PPS          float64 `json:"pps"`            // delivered per second
	Loss         float64 `json:"loss"`           // 1 - delivered/offered
	DirNsPerPkt  float64 `json:"dir_ns_per_pkt"` // busy time of the director CPU per delivered packet
	ProcNsPerPkt float64 `json:"proc_ns_per_pkt,omitempty"`
	// ProcNsPerPkt is the forwarding process's own CPU (user+system) per delivered packet:
	// xlvsd for xlvs, the forwarding thread for l2fwd, 0 for kernel paths.
	Profile Profile `json:"profile"`
	// Timeline is the delivered rate in consecutive slices of TimelineStep over the
	// counted interval: a stall or a swing shows up here, not in the average.
	Timeline []float64 `json:"timeline_pps"`
	// Background is the fraction of the machine's CPU capacity that was busy just before
	// the testbed was built (other work competing with the benchmark); above NoisyBusy
	// the sample is marked noisy.
	Background float64 `json:"background_busy"`
	// FirstPacket is how long after the generator started the sink saw traffic.
	FirstPacket float64 `json:"first_packet_s"`
	// With PacketOptions.MaxLoss: the unpaced (overload) rates, the offered rate found
	// (the sample's own figures are measured at it) and the search's trials.
	OverloadPPS        float64 `json:"overload_pps,omitempty"`
	OverloadOfferedPPS float64 `json:"overload_offered_pps,omitempty"`
	PacedPPS           float64 `json:"paced_pps,omitempty"`
	Trials             []Trial `json:"trials,omitempty"`
	// FastPath is what xlvsd's XDP fast path held when counting started (nil for other
	// targets and without --fastpath).
	FastPath *FastPathStart `json:"fastpath,omitempty"`
}

// TimelineStep is the slice length of PacketSample.Timeline.
const TimelineStep = 100 * time.Millisecond

// NoisyBusy is the background busy fraction above which a sample is marked noisy.
const NoisyBusy = 0.15

// Noisy reports whether the machine was busy with other work when s was taken, or the
// director's CPU spent more than a third of its time on work not accounted to the path
// under test.
func (s PacketSample) Noisy() bool {
	return s.Background > NoisyBusy || (s.DirNsPerPkt > 0 && s.Profile.OtherNs > s.DirNsPerPkt/3)
}

// Stalls counts the timeline's slices that delivered less than a tenth of the median
// slice: a forwarder that stops for a while.
func (s PacketSample) Stalls() int {
	if len(s.Timeline) == 0 {
		return 0
	}
	m := statOf(s.Timeline).Median
	n := 0
	for _, v := range s.Timeline {
		if v < m/10 {
			n++
		}
	}
	return n
}

const (
	sinkPort = 9     // discard
	genPort  = 10000 // first source port
	// firstPacketWithin bounds the wait for the first packet at the sink.
	firstPacketWithin = 10 * time.Second
)

// MeasurePacketRate builds a fresh chain (generator → director → sink), sets up target on
// the director, sends UDP from an AF_XDP generator pinned to GenCPU and counts what the
// sink's veth receives (the sink drops everything in XDP). Counting starts Warmup after
// the first packet reached the sink (a forwarder that needs time to learn its routes or
// neighbours is not measured while it learns). Everything it made is removed before it
// returns.
func MeasurePacketRate(ctx context.Context, target Target, o PacketOptions) (s PacketSample, err error) {
	s.Target = target
	if o.Warmup == 0 {
		o.Warmup = 500 * time.Millisecond
	}
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
	}
	if o.QuietBusy == 0 {
		o.QuietBusy = NoisyBusy
	}
	if o.SearchSteps == 0 {
		o.SearchSteps = 7
	}
	if o.TrialDuration == 0 {
		o.TrialDuration = max(o.Duration/4, 200*time.Millisecond)
	}
	if o.SearchPrecision == 0 {
		o.SearchPrecision = 0.03
	}
	if o.Flows < 1 {
		return s, fmt.Errorf("measure %s: flows %d, want at least 1", target, o.Flows)
	}
	if err := o.checkQueues(target); err != nil {
		return s, err
	}
	if err := targetAvailable(ctx, target); err != nil {
		return s, err
	}
	if s.Background, err = waitQuiet(ctx, o.QuietWait, o.QuietBusy); err != nil {
		return s, err
	}
	ctx, cancel := context.WithTimeout(ctx, firstPacketWithin+o.Warmup+2*o.Duration+time.Duration(o.SearchSteps)*(o.TrialDuration+settle)+answerRounds*(answerAgain+3*time.Second)+60*time.Second)
	defer cancel()
	bed, err := newChain(target, "xb", o.GenCPU, o.dirCPUs(), o.Queues)
	if err != nil {
		return s, err
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("remove testbed: %w", cerr)
		}
	}()
	gw, sink := bed.Client, bed.Reals[0]
	drop, err := testbed.AttachXDPDrop(sink.NS, sink.Iface)
	if err != nil {
		return s, err
	}
	defer drop.Close()

	if o.AnswerFlows && twoWay(target) {
		if err := answerPaths(ctx, bed, o.Flows); err != nil {
			return s, err
		}
	}
	pr, dst, stop, err := setupTarget(ctx, bed, target, "udp", sinkPort, o)
	if err != nil {
		return s, err
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()

	// The generator: a TX-only AF_XDP socket per queue on the generator's veth, made in
	// its namespace; their fill and RX rings are minimal because they receive nothing.
	nq := max(1, o.Queues)
	socks := make([]xsk.Socket, 0, nq)
	defer func() {
		for _, sk := range socks {
			sk.Close()
		}
	}()
	for q := range nq {
		if err := gw.NS.Do(func() error {
			sock, err := xsk.Open(gw.Ifindex, q, genSocket)
			if err == nil {
				socks = append(socks, sock)
			}
			return err
		}); err != nil {
			return s, fmt.Errorf("open generator socket on queue %d: %w", q, err)
		}
	}
	gopts := gen.Options{Size: gen.WireSize(o.Size), Batch: o.GenBatch, CPU: o.GenCPU}
	if o.Flows <= genSocket.Frames {
		gopts.Flows = gen.Flows(o.Flows, [6]byte(gw.MAC), [6]byte(bed.Ext.MAC), netip.AddrPortFrom(gw.Addr, genPort), dst)
	} else {
		// More flows than frames (connection-table sweeps): made on the fly, from 250
		// addresses of a block no testbed uses (this traffic is one-way, to a sink).
		gopts.Range = &gen.FlowRange{N: o.Flows, Addrs: 250, SrcMAC: [6]byte(gw.MAC), DstMAC: [6]byte(bed.Ext.MAC),
			Base: netip.AddrPortFrom(manyFlowsBase, 1024), Dst: dst}
		if err := gopts.Range.Check(); err != nil {
			return s, err
		}
	}
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	// One generator per queue, each with its share of the flows and of the rate; gdone
	// reports the first to end (the rest end with gctx).
	gdone := make(chan error, 1)
	var gwait sync.WaitGroup
	started := time.Now()
	pace := make(pacers, nq)
	for q, sock := range socks {
		g := gopts
		g.Pace = &pace[q]
		if nq > 1 {
			g.Flows = nil
			for i := q; i < len(gopts.Flows); i += nq {
				g.Flows = append(g.Flows, gopts.Flows[i])
			}
		}
		gwait.Go(func() {
			_, err := gen.Run(gctx, sock, g)
			select {
			case gdone <- err:
			default:
			}
		})
	}
	stopped := false
	stopGen := func() error {
		gcancel()
		gwait.Wait() // before the sockets close, also when waitDelivery saw one end
		if stopped {
			return nil
		}
		stopped = true
		select {
		case err := <-gdone:
			if err != nil {
				return fmt.Errorf("generator: %w", err)
			}
		default:
		}
		return nil
	}
	defer stopGen()

	// Warm-up: wait for the first packet at the sink, then Warmup more.
	if err := waitDelivery(ctx, bed, firstPacketWithin, gdone, &stopped); err != nil {
		return s, fmt.Errorf("measure %s: %w", target, err)
	}
	s.FirstPacket = time.Since(started).Seconds()
	if err := sleep(ctx, o.Warmup); err != nil {
		return s, err
	}
	if s.FastPath, err = fastPathStart(ctx, bed, target, pr, o.AnswerFlows, pace); err != nil {
		return s, fmt.Errorf("measure %s: %w", target, err)
	}
	if s.FastPath != nil && s.FastPath.Answered > 0 {
		pace.Set(0) // unpaced again, as after the warm-up
		if err := sleep(ctx, settle); err != nil {
			return s, err
		}
	}
	win := func(d time.Duration, keepTimeline bool) (PacketSample, error) {
		w := PacketSample{Target: target}
		before, err := snapshot(bed, o.dirCPUs(), pr)
		if err != nil {
			return w, err
		}
		tl, err := timeline(ctx, bed, d)
		if err != nil {
			return w, err
		}
		after, err := snapshot(bed, o.dirCPUs(), pr)
		if err != nil {
			return w, err
		}
		w.fill(before, after)
		if keepTimeline {
			w.Timeline = tl
		}
		return w, nil
	}
	if o.MaxLoss > 0 {
		// The unpaced rate first (what an overloaded director still delivers), then a
		// search for the highest offered rate it forwards with at most MaxLoss lost.
		over, err := win(max(o.Duration/2, 2*TimelineStep), false)
		if err != nil {
			return s, err
		}
		s.OverloadPPS, s.OverloadOfferedPPS = over.PPS, over.OfferedPPS
		rate, trials, err := searchRate(ctx, pace, over, o, func(d time.Duration) (PacketSample, error) { return win(d, false) })
		s.Trials = trials
		if err != nil {
			return s, err
		}
		pace.Set(rate)
		s.PacedPPS = rate
		if err := sleep(ctx, settle); err != nil {
			return s, err
		}
	}
	final, err := win(o.Duration, true)
	if err != nil {
		return s, err
	}
	if err := stopGen(); err != nil {
		return s, err
	}
	final.Background, final.FirstPacket = s.Background, s.FirstPacket
	final.OverloadPPS, final.OverloadOfferedPPS, final.PacedPPS, final.Trials = s.OverloadPPS, s.OverloadOfferedPPS, s.PacedPPS, s.Trials
	final.FastPath = s.FastPath
	s = final
	if s.Delivered == 0 {
		return s, fmt.Errorf("measure %s: the sink received nothing of %d packets offered", target, s.Offered)
	}
	return s, nil
}

// settle is how long a new generator rate runs before it is measured.
const settle = 100 * time.Millisecond

// MaxQueues is the most queues PacketOptions.Queues takes.
const MaxQueues = testbed.MaxQueues

// genSocket is the generator's AF_XDP socket configuration (one per queue).
var genSocket = xsk.Config{Frames: 4096 + 8, FrameSize: 2048, FillRing: 8, CompRing: 2048, RxRing: 8, TxRing: 2048}

// rateSetter sets a generator's offered rate (gen.Pacer, pacers).
type rateSetter interface{ Set(pps float64) }

// pacers pace the generators of several queues: Set gives each an equal share.
type pacers []gen.Pacer

func (p pacers) Set(pps float64) {
	for i := range p {
		p[i].Set(pps / float64(len(p)))
	}
}

// dirCPUs are the director's CPUs: DirCPUs, or DirCPU alone.
func (o PacketOptions) dirCPUs() []int {
	if len(o.DirCPUs) > 0 {
		return o.DirCPUs
	}
	return []int{o.DirCPU}
}

// checkQueues refuses a queue count target cannot be measured with.
func (o PacketOptions) checkQueues(target Target) error {
	switch {
	case o.Queues < 0 || o.Queues > MaxQueues:
		return fmt.Errorf("measure %s: %d queues, want 1 to %d", target, o.Queues, MaxQueues)
	case o.Queues <= 1:
		return nil
	case target.oneArm():
		return fmt.Errorf("%s: %w with %d queues: in the one-armed chain the bridge, not the generator, picks the director's queue (its ports run NAPI, which nothing here steers)", target, ErrUnavailable, o.Queues)
	case target == TargetL2Fwd:
		return fmt.Errorf("%s: %w with %d queues: the minimal forwarder has one socket, on queue 0", target, ErrUnavailable, o.Queues)
	case o.Flows > genSocket.Frames:
		return fmt.Errorf("measure %s: %w: %d flows with %d queues: the generator deals out at most %d flows (its frames) over its queues", target, ErrUnavailable, o.Flows, o.Queues, genSocket.Frames)
	case o.Flows < o.Queues:
		return fmt.Errorf("measure %s: %d flows over %d queues: want at least one flow per queue", target, o.Flows, o.Queues)
	}
	return nil
}

// Trial is one step of the no-drop rate search.
type Trial struct {
	Rate float64 `json:"rate"` // offered rate set
	PPS  float64 `json:"pps"`  // delivered
	Loss float64 `json:"loss"`
}

// searchRate finds, by bisection between 0 and the unpaced offered rate, the highest
// offered rate at which the target loses at most o.MaxLoss; the first guess is what the
// overloaded target delivered. It returns that rate (or the lowest rate tried, when
// none passed) and every trial.
func searchRate(ctx context.Context, pace rateSetter, over PacketSample, o PacketOptions, measure func(time.Duration) (PacketSample, error)) (float64, []Trial, error) {
	lo, hi := 0.0, over.OfferedPPS
	r := min(hi, max(over.PPS, hi/16))
	var trials []Trial
	lowest := hi
	for range o.SearchSteps {
		pace.Set(r)
		if err := sleep(ctx, settle); err != nil {
			return 0, trials, err
		}
		t, err := measure(o.TrialDuration)
		if err != nil {
			return 0, trials, err
		}
		trials = append(trials, Trial{Rate: r, PPS: t.PPS, Loss: t.Loss})
		lowest = min(lowest, r)
		if t.Loss <= o.MaxLoss && t.Delivered > 0 {
			lo = r
		} else {
			hi = r
		}
		if hi-lo < hi*o.SearchPrecision {
			break
		}
		r = (lo + hi) / 2
	}
	if lo == 0 {
		return lowest, trials, nil
	}
	return lo, trials, nil
}

// setupTarget makes the director forward proto ("udp" or "tcp") traffic for VIP:port to
// the sink (the same port) the way target does — balancing targets over o.Reals real
// server addresses, all the sink's (realsTestbed) — and returns how to observe the
// forwarder, the address the generator must send to (the VIP, or the sink itself for
// plain forwarding), and how to undo what it started (namespaces go with the bed).
func setupTarget(ctx context.Context, bed *testbed.Bed, target Target, proto string, port uint16, o PacketOptions) (pr probe, dst netip.AddrPort, stop func() error, err error) {
	sink := bed.Reals[0]
	vip := netip.AddrPortFrom(bed.VIP, port)
	dst = vip
	stop = func() error { return nil }
	reals := []netip.Addr{sink.Addr}
	if balances(target) {
		if reals, err = realAddrs(realsOf(o.Reals)); err != nil {
			return pr, dst, stop, fmt.Errorf("set up %s: %w", target, err)
		}
		if err = realsTestbed(ctx, bed, reals); err != nil {
			return pr, dst, stop, fmt.Errorf("set up %s: %w", target, err)
		}
	}
	schedName := o.Sched
	if schedName == "" {
		schedName = DefaultSched
	}
	switch target.base() {
	case TargetKernel:
		dst = netip.AddrPortFrom(sink.Addr, port)
		err = bed.SetForwarding(true)
	case TargetIptables:
		if err = bed.SetForwarding(true); err == nil {
			for _, args := range iptablesRules(bed.VIP, proto, port, reals) {
				if _, err = bed.Director.Run(ctx, toolPath("iptables"), args...); err != nil {
					break
				}
			}
		}
		if err == nil && target == TargetIptablesXDP {
			stop, err = attachPassAll(bed)
		}
	case TargetNftables:
		if err = bed.SetForwarding(true); err == nil {
			err = nftLoad(ctx, bed.Director, nftScript(bed.VIP, proto, port, reals))
		}
	case TargetXLVSNAT, TargetXLVSDR, TargetXLVSTUN, TargetXLVSFullNAT:
		var lips []netip.Addr
		if target == TargetXLVSFullNAT {
			if lips, err = fullnatLIPs(o.Flows); err != nil {
				return pr, dst, stop, fmt.Errorf("%s: %w", target, err)
			}
			if err = fullnatTestbed(ctx, bed, lips); err != nil {
				return pr, dst, stop, fmt.Errorf("set up %s: %w", target, err)
			}
		}
		if target == TargetXLVSTUN {
			// The outer header adds 20 bytes: raise the MTU towards the sink so that
			// 1500-byte packets are carried, not answered with fragmentation-needed.
			for _, h := range []*testbed.Host{bed.Int, sink} {
				if _, err = h.NS.Run(ctx, "ip", "link", "set", "dev", h.Iface, "mtu", "1600"); err != nil {
					return pr, dst, stop, fmt.Errorf("set up %s: %w", target, err)
				}
			}
		}
		if kernelForwards(o.DaemonArgs) {
			// xlvsd --fastpath-forward kernel passes established connections' packets to
			// the director's kernel to forward, and refuses to start unless the kernel
			// would: forwarding on, and accept_local for NAT replies from the VIP.
			if err = bed.SetForwarding(true); err == nil {
				err = bed.Director.SetSysctl("net.ipv4.conf.all.accept_local", "1")
			}
			if err != nil {
				return pr, dst, stop, fmt.Errorf("set up %s: %w", target, err)
			}
		}
		var d *Daemon
		var args []string
		for _, h := range bed.DirectorHosts() {
			args = append(args, "-i", h.Iface)
		}
		cpus := make([]string, 0, len(o.dirCPUs()))
		for _, c := range o.dirCPUs() {
			cpus = append(cpus, strconv.Itoa(c))
		}
		args = append(args, "--cpus", strings.Join(cpus, ","), "--log-level", "warn")
		if o.Queues > 1 {
			args = append(args, "--queues", strconv.Itoa(o.Queues))
		}
		args = append(args, o.DaemonArgs...)
		d, err = StartDaemon(ctx, bed.Director, o.Bins, args...)
		if err != nil {
			return pr, dst, stop, err
		}
		stop = func() error {
			if err := d.Stop(); err != nil {
				return fmt.Errorf("xlvsd: %w", err)
			}
			return nil
		}
		pr = probe{pid: d.cmd.Process.Pid, counters: func() (map[string]uint64, error) { return daemonCounters(ctx, d, bed) },
			conns: func(ctx context.Context) ([]api.Conn, error) { return daemonConns(ctx, d) }}
		flag := "-u"
		if proto == "tcp" {
			flag = "-t"
		}
		if _, err = d.Adm(ctx, "-A", flag, vip.String(), "-s", schedName); err == nil {
			// The packet sink drops everything in XDP, so for packet rates DR needs no VIP
			// on lo and TUN no decapsulation (the sink counts the encapsulated frames).
			method := map[Target]string{TargetXLVSNAT: "-m", TargetXLVSDR: "-g", TargetXLVSTUN: "-i", TargetXLVSFullNAT: "--fullnat"}[target.base()]
			for _, a := range reals {
				if _, err = d.Adm(ctx, "-a", flag, vip.String(), "-r", netip.AddrPortFrom(a, port).String(), method); err != nil {
					break
				}
			}
		}
		for _, lip := range lips {
			if err != nil {
				break
			}
			_, err = d.Adm(ctx, "-P", flag, vip.String(), "-z", lip.String())
		}
	case TargetL2Fwd:
		if proto != "udp" {
			return pr, dst, stop, fmt.Errorf("%s: %w: the minimal forwarder forwards UDP one way only", target, ErrUnavailable)
		}
		var f *l2fwd
		f, err = startL2Fwd(ctx, bed, vip, o.DirCPU, xsk.DefaultConfig(), bpf.ModeNative)
		if err != nil {
			return pr, dst, stop, err
		}
		stop = f.stop
		pr = probe{pid: os.Getpid(), tid: f.threadID(), counters: f.counters}
	default:
		return pr, dst, stop, fmt.Errorf("measure %s: %w: no set-up for this target", target, ErrUnavailable)
	}
	if err != nil {
		return pr, dst, stop, errors.Join(fmt.Errorf("set up %s: %w", target, err), stop())
	}
	return pr, dst, stop, nil
}

// kernelForwards reports whether xlvsd flags args have the fast path's packets forwarded
// by the kernel (--fastpath-forward kernel, or =kernel).
func kernelForwards(args []string) bool {
	for i, a := range args {
		if a == "--fastpath-forward=kernel" || a == "--fastpath-forward" && i+1 < len(args) && args[i+1] == "kernel" {
			return true
		}
	}
	return false
}

// attachPassAll attaches a pass-everything XDP program to each of the director's
// interfaces (TargetIptablesXDP) and returns how to detach them.
func attachPassAll(bed *testbed.Bed) (stop func() error, err error) {
	var links []io.Closer
	stop = func() error {
		var errs []error
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		return errors.Join(errs...)
	}
	for _, h := range bed.DirectorHosts() {
		l, err := testbed.AttachXDPPass(h.NS, h.Iface)
		if err != nil {
			return stop, err
		}
		links = append(links, l)
	}
	return stop, nil
}

// FULLNAT local addresses: fullnatFirstLIP and the ones after it, on the director's
// sink side, in the sink's subnet (198.18.2.0/24; the testbed uses .1 and .11 there, the
// extra real servers .12–99 and .200–254: realAddrs).
// Each new flow takes a local port until it expires, and a local address has 64512,
// split among the connection table's shards by hash: the harness gives FULLNAT one
// address per fullnatFlowsPerLIP flows, which keeps every address's ports at most about
// half used, so the port allocator's short probe finds a free one.
var fullnatFirstLIP = netip.MustParseAddr("198.18.2.100")

const (
	fullnatFlowsPerLIP = 1 << 15
	fullnatMaxLIPs     = 100 // 198.18.2.100–199
	// connTableFlows is what the connection workload tells setupTarget to expect:
	// connections it opens in one measurement and the director keeps (TIME_WAIT lasts
	// 2 minutes), a bound of the busiest rates × durations.
	connTableFlows = 4 * fullnatFlowsPerLIP
)

// fullnatLIPs returns the local addresses xlvs-fullnat uses for flows flows (at least
// one); an error wrapping ErrUnavailable if the testbed has no room for as many.
func fullnatLIPs(flows int) ([]netip.Addr, error) {
	n := max(1, (flows+fullnatFlowsPerLIP-1)/fullnatFlowsPerLIP)
	if n > fullnatMaxLIPs {
		return nil, fmt.Errorf("%w: %d flows need %d local addresses (one per %d flows: each has 64512 ports), the testbed has room for %d: measure at most %d flows",
			ErrUnavailable, flows, n, fullnatFlowsPerLIP, fullnatMaxLIPs, fullnatMaxLIPs*fullnatFlowsPerLIP)
	}
	lips := make([]netip.Addr, n)
	a := fullnatFirstLIP
	for i := range lips {
		lips[i], a = a, a.Next()
	}
	return lips, nil
}

// fullnatTestbed prepares the chain for FULLNAT: the local addresses go on the
// director's sink-side interface (its kernel then owns them, as it must answer ARP for
// them; xlvsd's XDP program still takes the sink's packets to them), the sink gets a
// permanent neighbour entry for each (as for every neighbour of a chain: no ARP while
// measuring) and loses its default route through the director: a FULLNAT real server
// answers the local address on its own subnet and needs no route to the client.
func fullnatTestbed(ctx context.Context, bed *testbed.Bed, lips []netip.Addr) error {
	sink := bed.Reals[0]
	var dir, sk strings.Builder
	for _, lip := range lips {
		fmt.Fprintf(&dir, "addr add %s/24 dev %s\n", lip, bed.Int.Iface)
		fmt.Fprintf(&sk, "neigh replace %s lladdr %s dev %s nud permanent\n", lip, bed.Int.MAC, sink.Iface)
	}
	sk.WriteString("route del default\n")
	for _, b := range []struct {
		ns     *testbed.NS
		script string
	}{{bed.Director, dir.String()}, {sink.NS, sk.String()}} {
		if err := ipBatch(ctx, b.ns, b.script); err != nil {
			return err
		}
	}
	// What the measurement relies on: the sink reaches the local addresses, not the
	// generator.
	if out, err := sink.NS.Run(ctx, "ip", "route", "get", bed.Client.Addr.String()); err == nil {
		return fmt.Errorf("the sink still has a route to the generator %v after removing its default route: %s", bed.Client.Addr, strings.TrimSpace(out))
	}
	return nil
}

// ipBatch runs `ip -batch -` with script (one ip command a line) in ns.
func ipBatch(ctx context.Context, ns *testbed.NS, script string) error {
	cmd := ns.Command(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip -batch - in %s: %w: %s", ns.Name(), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// waitDelivery waits until the sink's veth has received a packet, at most within. If
// the generator ends first, it sets *stopped (its result was consumed).
func waitDelivery(ctx context.Context, bed *testbed.Bed, within time.Duration, gdone <-chan error, stopped *bool) error {
	sink := bed.Reals[0]
	first, _, _, _, err := sink.NS.LinkStats(sink.Iface)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for {
		rx, _, _, _, err := sink.NS.LinkStats(sink.Iface)
		if err != nil {
			return err
		}
		if rx > first {
			return nil
		}
		if time.Now().After(deadline) {
			_, tx, _, txDrop, _ := bed.Client.NS.LinkStats(bed.Client.Iface)
			return fmt.Errorf("no packet reached the sink within %s of the generator starting (generator veth sent %d, dropped %d)", within, tx, txDrop)
		}
		select {
		case err := <-gdone:
			*stopped = true
			return fmt.Errorf("generator stopped before any packet reached the sink: %v", err)
		default:
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// timeline samples the sink's received packets every TimelineStep for d and returns the
// rate of each slice.
func timeline(ctx context.Context, bed *testbed.Bed, d time.Duration) ([]float64, error) {
	sink := bed.Reals[0]
	prev, _, _, _, err := sink.NS.LinkStats(sink.Iface)
	if err != nil {
		return nil, err
	}
	prevAt := time.Now()
	end := prevAt.Add(d)
	tick := time.NewTicker(TimelineStep)
	defer tick.Stop()
	var out []float64
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-tick.C:
		}
		rx, _, _, _, err := sink.NS.LinkStats(sink.Iface)
		if err != nil {
			return out, err
		}
		now := time.Now()
		out = append(out, float64(rx-prev)/now.Sub(prevAt).Seconds())
		prev, prevAt = rx, now
		if !now.Before(end) {
			return out, nil
		}
	}
}

// waitQuiet samples how busy the machine is and, if wait > 0, waits up to wait for the
// busy fraction to fall under limit. It returns the last fraction measured.
func waitQuiet(ctx context.Context, wait time.Duration, limit float64) (float64, error) {
	deadline := time.Now().Add(wait)
	for {
		bg, err := Background(250 * time.Millisecond)
		if err != nil {
			return 0, err
		}
		if bg <= limit || !time.Now().Before(deadline) {
			return bg, nil
		}
		if err := sleep(ctx, 750*time.Millisecond); err != nil {
			return bg, err
		}
	}
}

// daemonCounters sums xlvsd's dataplane counters by interface role: "ext." and "int."
// for the sockets of the director's two veths (a one-armed director's one is "ext."),
// "worker." for the workers (with more than one, the perQueue counters of queue N also
// as "workerN.", "extN." and "intN."), "xdp." for the XDP program's per-interface
// counters; and
// "real.ADDR.in_pkts" for the packets forwarded to each real server (its destination
// statistics, summed over services).
func daemonCounters(ctx context.Context, d *Daemon, bed *testbed.Bed) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := d.Client().Do(ctx, &api.Request{Op: api.OpDataplaneStats})
	if err != nil {
		return nil, fmt.Errorf("read xlvsd dataplane stats: %w", err)
	}
	role := func(iface string) string {
		switch iface {
		case bed.Ext.Iface:
			return "ext."
		case bed.Int.Iface:
			return "int."
		case "worker":
			return "worker."
		}
		return iface + "."
	}
	out := map[string]uint64{}
	workers := 0
	for _, q := range resp.Dataplane {
		if q.Interface == "worker" {
			workers++
		}
	}
	for _, q := range resp.Dataplane {
		for k, v := range q.Counters {
			out[role(q.Interface)+k] += v
			if workers > 1 && perQueue[k] {
				// Per queue too, to show how the queues shared the load.
				out[strings.TrimSuffix(role(q.Interface), ".")+strconv.Itoa(q.Queue)+"."+k] += v
			}
		}
	}
	for _, q := range resp.XDPStats {
		for k, v := range q.Counters {
			out["xdp."+k] += v
		}
	}
	resp, err = d.Client().Do(ctx, &api.Request{Op: api.OpList})
	if err != nil {
		return nil, fmt.Errorf("read xlvsd service list: %w", err)
	}
	for _, svc := range resp.Services {
		for _, dst := range svc.Dests {
			out[realCounterPrefix+dst.Addr.String()+realCounterSuffix] += dst.Stats.InPkts
		}
	}
	return out, nil
}

// perQueue are the counters daemonCounters also gives per queue when xlvsd runs more
// than one worker: what each worker received and forwarded, and what reached each of its
// sockets (received, or dropped by the kernel for want of a fill-ring frame or of room in
// the RX ring).
var perQueue = map[string]bool{"rx": true, "forwarded": true, "rx_packets": true, "kernel_rx_dropped": true, "rx_ring_full": true}

// counters is what MeasurePacketRate samples at the start and end of the interval.
type counters struct {
	at               time.Time
	genTx, genTxDrop uint64
	sinkRx           uint64
	cpuBusy          time.Duration
	proc             taskTimes
	napiIn, napiOut  time.Duration
	fwd              map[string]uint64
}

// probe is what MeasurePacketRate knows about the forwarder under test.
type probe struct {
	pid, tid int                               // threads to account (tid 0: all of pid's)
	counters func() (map[string]uint64, error) // the forwarder's own counters, or nil
	// conns lists the director's connections (xlvs), or is nil.
	conns func(context.Context) ([]api.Conn, error)
}

func snapshot(bed *testbed.Bed, cpus []int, p probe) (c counters, err error) {
	c.at = time.Now()
	g, s := bed.Client, bed.Reals[0]
	if _, c.genTx, _, c.genTxDrop, err = g.NS.LinkStats(g.Iface); err != nil {
		return c, err
	}
	if c.sinkRx, _, _, _, err = s.NS.LinkStats(s.Iface); err != nil {
		return c, err
	}
	for i, cpu := range cpus {
		if slices.Contains(cpus[:i], cpu) {
			continue
		}
		busy, err := cpuBusy(cpu)
		if err != nil {
			return c, err
		}
		c.cpuBusy += busy
	}
	if c.proc, err = threadSet(p.pid, p.tid); err != nil {
		return c, err
	}
	if c.napiIn, err = napiTime(bed.Ext.Iface); err != nil {
		return c, err
	}
	if bed.Int != bed.Ext {
		// (One-armed: the one interface's NAPI is all ingress; what the director sends
		// is received by the switch's port, outside the director.)
		if c.napiOut, err = napiTime(bed.Int.Iface); err != nil {
			return c, err
		}
	}
	if p.counters != nil {
		if c.fwd, err = p.counters(); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (s *PacketSample) fill(b, a counters) {
	s.Seconds = a.at.Sub(b.at).Seconds()
	s.Offered = (a.genTx + a.genTxDrop) - (b.genTx + b.genTxDrop)
	s.Delivered = a.sinkRx - b.sinkRx
	s.OfferedPPS = float64(s.Offered) / s.Seconds
	s.PPS = float64(s.Delivered) / s.Seconds
	if s.Offered > 0 {
		s.Loss = max(0, 1-float64(s.Delivered)/float64(s.Offered))
	}
	if s.Delivered == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(s.Delivered) }
	proc := a.proc.sub(b.proc)
	s.DirNsPerPkt = per(a.cpuBusy - b.cpuBusy)
	s.ProcNsPerPkt = per(proc.user + proc.sys)
	s.Profile = Profile{
		IngressNAPINs: per(a.napiIn - b.napiIn),
		EgressNAPINs:  per(a.napiOut - b.napiOut),
		UserNs:        per(proc.user),
		SysNs:         per(proc.sys),
	}
	s.Profile.OtherNs = max(0, s.DirNsPerPkt-s.Profile.IngressNAPINs-s.Profile.EgressNAPINs-s.Profile.UserNs-s.Profile.SysNs)
	if proc.wakeups > 0 {
		s.Profile.PktsPerWakeup = float64(s.Delivered) / float64(proc.wakeups)
	}
	if a.fwd != nil {
		s.Profile.Counters = map[string]uint64{}
		for k, v := range a.fwd {
			if d := v - b.fwd[k]; v >= b.fwd[k] && d != 0 {
				s.Profile.Counters[k] = d
			}
		}
	}
}

// clockTick is USER_HZ, the unit of /proc/stat and /proc/PID/stat times (100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuBusy reads the time CPU cpu spent not idle, from /proc/stat.
func cpuBusy(cpu int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	return parseCPUBusy(b, cpu)
}

// parseCPUBusy takes the "cpuN user nice system idle iowait irq softirq steal ..." line
// and returns everything but idle and iowait.
func parseCPUBusy(stat []byte, cpu int) (time.Duration, error) {
	return parseCPULine(stat, "cpu"+strconv.Itoa(cpu))
}

// parseCPULine sums the busy fields of the /proc/stat line named want ("cpu" for all
// CPUs, "cpuN" for one).
func parseCPULine(stat []byte, want string) (time.Duration, error) {
	for line := range bytes.Lines(stat) {
		f := strings.Fields(string(line))
		if len(f) < 8 || f[0] != want {
			continue
		}
		var busy uint64
		for i, v := range f[1:] {
			if i >= 8 { // guest times are already in user and nice
				break
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/stat %s field %d %q: %w", want, i+1, v, err)
			}
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		return time.Duration(busy) * clockTick, nil
	}
	return 0, fmt.Errorf("parse /proc/stat: no %s line (is that cpu online?)", want)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// toolPath finds a tool also where PATH lacks the sbin directories; "" if absent.
func toolPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"} {
		if st, err := os.Stat(d + name); err == nil && st.Mode()&0o111 != 0 {
			return d + name
		}
	}
	return ""
}

// targetAvailable says, for targets that need something this machine may lack, whether
// it is there; the error wraps ErrUnavailable and names the missing piece.
func targetAvailable(ctx context.Context, t Target) error {
	switch t.base() {
	case TargetIptables:
		if toolPath("iptables") == "" {
			return fmt.Errorf("%s: %w: iptables is not installed (apt-get install iptables)", t, ErrUnavailable)
		}
	case TargetNftables:
		if toolPath("nft") == "" {
			return fmt.Errorf("%s: %w: nft is not installed (apt-get install nftables)", t, ErrUnavailable)
		}
	case TargetIPVS:
		return IPVSAvailable(ctx)
	}
	return nil
}

// IPVSAvailable reports whether kernel IPVS can be measured: /proc/net/ip_vs exists or
// `modprobe ip_vs` loads it, and ipvsadm is installed. The error wraps ErrUnavailable and
// says why not. (The IPVS set-up itself is not written yet: where IPVS exists this says so.)
func IPVSAvailable(ctx context.Context) error {
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		mp := toolPath("modprobe")
		if mp == "" {
			return fmt.Errorf("%s: %w: this kernel has no IPVS (no /proc/net/ip_vs, and no modprobe to load ip_vs)", TargetIPVS, ErrUnavailable)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, mp, "ip_vs").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: this kernel has no IPVS (no /proc/net/ip_vs; modprobe ip_vs: %s)", TargetIPVS, ErrUnavailable, firstLine(out, err))
		}
	}
	if toolPath("ipvsadm") == "" {
		return fmt.Errorf("%s: %w: the kernel has IPVS but ipvsadm is not installed (apt-get install ipvsadm)", TargetIPVS, ErrUnavailable)
	}
	return fmt.Errorf("%s: %w: the kernel has IPVS, but the harness's IPVS set-up is not written yet", TargetIPVS, ErrUnavailable)
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// nftLoad runs `nft -f -` with script in ns.
func nftLoad(ctx context.Context, ns *testbed.NS, script string) error {
	cmd := ns.Command(ctx, toolPath("nft"), "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft -f - in %s: %w: %s", ns.Name(), err, strings.TrimSpace(out.String()))
	}
	return nil
}
