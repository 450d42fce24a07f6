package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"xlvs/bench/gen"
	"xlvs/bench/testbed"
	"xlvs/bpf"
	"xlvs/dataplane/xsk"
)

// Target is a forwarder the harness measures.
type Target string

// The targets, in the order a full run measures them.
const (
	TargetXLVSNAT  Target = "xlvs-nat"       // xlvsd, NAT, rr over one real server
	TargetIptables Target = "iptables-dnat"  // iptables nat PREROUTING DNAT, statistic mode
	TargetNftables Target = "nftables-dnat"  // nftables prerouting dnat to numgen map
	TargetKernel   Target = "kernel-forward" // plain IPv4 forwarding, no balancing
	TargetL2Fwd    Target = "afxdp-l2fwd"    // minimal Go AF_XDP forwarder, no lookups
	TargetIPVS     Target = "kernel-ipvs"    // ipvsadm, where the kernel has IPVS
)

// AllTargets lists every target.
var AllTargets = []Target{TargetXLVSNAT, TargetIptables, TargetNftables, TargetKernel, TargetL2Fwd, TargetIPVS}

// ErrUnavailable is returned (wrapped) when a target cannot run on this machine (a tool
// or kernel feature missing); the message says which and why.
var ErrUnavailable = errors.New("unavailable")

// PacketOptions configure one packet-rate measurement.
type PacketOptions struct {
	Size       int           // packet size as named: 64 (Ethernet frame with FCS) or 1500 (IP packet)
	Flows      int           // distinct flows, 1 or more
	Warmup     time.Duration // traffic before counting; 0 means 500 ms
	Duration   time.Duration // counted traffic; 0 means 2 s
	GenCPU     int           // CPU of the generator and the sink's softirq
	DirCPU     int           // CPU of the director: its NAPI threads and the forwarder
	DaemonArgs []string      // extra xlvsd flags (rings, frames, batch, --xdp-mode ...)
	GenBatch   int           // generator transmit batch; 0 means 64
	Bins       Binaries      // needed for TargetXLVSNAT
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
	// xlvsd for xlvs, 0 for kernel paths and the in-process l2fwd.
}

const (
	sinkPort   = 9     // discard
	genPort    = 10000 // first source port
	quietAfter = 200 * time.Millisecond
)

// MeasurePacketRate builds a fresh chain (generator → director → sink), sets up target on
// the director, sends UDP from an AF_XDP generator pinned to GenCPU and counts what the
// sink's veth receives (the sink drops everything in XDP). Everything it made is removed
// before it returns.
func MeasurePacketRate(ctx context.Context, target Target, o PacketOptions) (s PacketSample, err error) {
	s.Target = target
	if o.Warmup == 0 {
		o.Warmup = 500 * time.Millisecond
	}
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
	}
	if o.Flows < 1 {
		return s, fmt.Errorf("measure %s: flows %d, want at least 1", target, o.Flows)
	}
	if err := targetAvailable(ctx, target); err != nil {
		return s, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Warmup+o.Duration+60*time.Second)
	defer cancel()
	bed, err := testbed.NewChain(testbed.ChainOptions{Prefix: "xb", ThreadedNAPI: true})
	if err != nil {
		return s, err
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("remove testbed: %w", cerr)
		}
	}()
	gw, sink := bed.Client, bed.Reals[0]
	for _, p := range []struct {
		h   *testbed.Host
		cpu int
	}{{gw, o.GenCPU}, {sink, o.GenCPU}, {bed.Ext, o.DirCPU}, {bed.Int, o.DirCPU}} {
		if err := testbed.PinNAPI(p.h.Iface, p.cpu); err != nil {
			return s, err
		}
	}
	drop, err := testbed.AttachXDPDrop(sink.NS, sink.Iface)
	if err != nil {
		return s, err
	}
	defer drop.Close()

	vip := netip.AddrPortFrom(bed.VIP, sinkPort)
	dst := vip
	var procPID int
	switch target {
	case TargetKernel:
		dst = netip.AddrPortFrom(sink.Addr, sinkPort)
		err = bed.SetForwarding(true)
	case TargetIptables:
		if err = bed.SetForwarding(true); err == nil {
			_, err = bed.Director.Run(ctx, toolPath("iptables"), "-t", "nat", "-A", "PREROUTING", "-d", bed.VIP.String()+"/32",
				"-p", "udp", "--dport", strconv.Itoa(sinkPort), "-m", "statistic", "--mode", "nth", "--every", "1", "--packet", "0",
				"-j", "DNAT", "--to-destination", sink.Addr.String())
		}
	case TargetNftables:
		if err = bed.SetForwarding(true); err == nil {
			err = nftLoad(ctx, bed.Director, fmt.Sprintf(`table ip xlvsbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s udp dport %d dnat to numgen inc mod 1 map { 0 : %s }
	}
}
`, bed.VIP, sinkPort, sink.Addr))
		}
	case TargetXLVSNAT:
		var d *Daemon
		args := append([]string{"-i", bed.Ext.Iface, "-i", bed.Int.Iface, "--cpus", strconv.Itoa(o.DirCPU), "--log-level", "warn"}, o.DaemonArgs...)
		d, err = StartDaemon(ctx, bed.Director, o.Bins, args...)
		if err != nil {
			return s, err
		}
		defer func() {
			if serr := d.Stop(); serr != nil && err == nil {
				err = fmt.Errorf("xlvsd: %w", serr)
			}
		}()
		procPID = d.cmd.Process.Pid
		if _, err = d.Adm(ctx, "-A", "-u", vip.String(), "-s", "rr"); err == nil {
			_, err = d.Adm(ctx, "-a", "-u", vip.String(), "-r", netip.AddrPortFrom(sink.Addr, sinkPort).String(), "-m")
		}
	case TargetL2Fwd:
		var f *l2fwd
		f, err = startL2Fwd(ctx, bed, vip, o.DirCPU, xsk.DefaultConfig(), bpf.ModeNative)
		if err != nil {
			return s, err
		}
		defer func() {
			if serr := f.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
	default:
		return s, fmt.Errorf("measure %s: %w: no set-up for this target", target, ErrUnavailable)
	}
	if err != nil {
		return s, fmt.Errorf("set up %s: %w", target, err)
	}

	// The generator: a TX-only AF_XDP socket on the generator's veth, made in its
	// namespace; its fill and RX rings are minimal because it receives nothing.
	cfg := xsk.Config{Frames: 4096 + 8, FrameSize: 2048, FillRing: 8, CompRing: 2048, RxRing: 8, TxRing: 2048}
	var sock xsk.Socket
	if err := gw.NS.Do(func() error {
		var err error
		sock, err = xsk.Open(gw.Ifindex, 0, cfg)
		return err
	}); err != nil {
		return s, fmt.Errorf("open generator socket: %w", err)
	}
	defer sock.Close()
	flows := gen.Flows(o.Flows, [6]byte(gw.MAC), [6]byte(bed.Ext.MAC), netip.AddrPortFrom(gw.Addr, genPort), dst)
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	gdone := make(chan error, 1)
	go func() {
		_, err := gen.Run(gctx, sock, gen.Options{Flows: flows, Size: gen.WireSize(o.Size), Batch: o.GenBatch, CPU: o.GenCPU})
		gdone <- err
	}()

	if err := sleep(ctx, o.Warmup); err != nil {
		return s, err
	}
	before, err := snapshot(bed, o.DirCPU, procPID)
	if err != nil {
		return s, err
	}
	if err := sleep(ctx, o.Duration); err != nil {
		return s, err
	}
	after, err := snapshot(bed, o.DirCPU, procPID)
	if err != nil {
		return s, err
	}
	gcancel()
	if err := <-gdone; err != nil {
		return s, fmt.Errorf("generator: %w", err)
	}
	s.fill(before, after)
	if s.Delivered == 0 {
		return s, fmt.Errorf("measure %s: the sink received nothing of %d packets offered", target, s.Offered)
	}
	return s, nil
}

// counters is what MeasurePacketRate samples at the start and end of the interval.
type counters struct {
	at                time.Time
	genTx, genTxDrop  uint64
	sinkRx            uint64
	cpuBusy, procTime time.Duration
}

func snapshot(bed *testbed.Bed, cpu, pid int) (c counters, err error) {
	c.at = time.Now()
	g, s := bed.Client, bed.Reals[0]
	if _, c.genTx, _, c.genTxDrop, err = g.NS.LinkStats(g.Iface); err != nil {
		return c, err
	}
	if c.sinkRx, _, _, _, err = s.NS.LinkStats(s.Iface); err != nil {
		return c, err
	}
	if c.cpuBusy, err = cpuBusy(cpu); err != nil {
		return c, err
	}
	if pid > 0 {
		if c.procTime, err = procCPU(pid); err != nil {
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
	if s.Delivered > 0 {
		s.DirNsPerPkt = float64(a.cpuBusy-b.cpuBusy) / float64(s.Delivered)
		s.ProcNsPerPkt = float64(a.procTime-b.procTime) / float64(s.Delivered)
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
	want := "cpu" + strconv.Itoa(cpu)
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
	return 0, fmt.Errorf("parse /proc/stat: no %s line (is cpu %d online?)", want, cpu)
}

// procCPU reads a process's user+system time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	return parseProcCPU(b)
}

// parseProcCPU takes fields 14 and 15 (utime, stime) of /proc/PID/stat; the command name
// (field 2) is in parentheses and may hold spaces, so fields are counted after the last ')'.
func parseProcCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/PID/stat: no ')' after the command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/PID/stat: %d fields after the name, want at least 13", len(f))
	}
	var t uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/PID/stat time %q: %w", v, err)
		}
		t += n
	}
	return time.Duration(t) * clockTick, nil
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
	switch t {
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
