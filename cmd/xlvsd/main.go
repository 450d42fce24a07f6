package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/control"
	"xlvs/control/api"
	"xlvs/control/syncd"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	ifaces       listFlag
	queues       int
	sock         xsk.Config
	batch        int
	xdpMode      string
	copyMode     bool
	zeroCopy     bool
	cpus         string
	socket       string
	connMax      int
	shardKeyFile string
	shardKey     [conntrack.ShardKeyLen]byte
	sloppyTCP    bool
	sloppySCTP   bool
	fullnatTOA   bool
	icmpRate     int
	icmpBurst    int
	logLevel     string
	statePath    string // --state: the state file
	config       string
	metrics      string
	expireNodest bool
	keepalived   string
	healthCheck  string
	checkConfig  bool
	// Connection sync (the kernel's sync_* sysctls of net.ipv4.vs).
	syncThreshold   string
	syncRefresh     int
	syncRetries     int
	syncPersistMode bool
	syncPorts       int
	syncPolicy      conntrack.SyncPolicy
	handoffHold     time.Duration // restart handoff (handoff.go)
	fastPath        bool          // the XDP fast path for established connections
	fastPathEntries int
	fastPathForward string // "xdp" or "kernel"
	// Packaging (service.go, manual.go).
	socketGroup string
	version     bool
	helpMan     bool
	flags       *flag.FlagSet
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	def := xsk.DefaultConfig()
	fs := flag.NewFlagSet("xlvsd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&o.ifaces, "i", "interface to attach to (repeat for two-armed: -i ext0 -i int0)")
	fs.IntVar(&o.queues, "queues", 0, fmt.Sprintf("queues per interface (0..%d, 0 = all RX queues)", dataplane.MaxQueues))
	fs.IntVar(&o.sock.Frames, "frames", def.Frames, "UMEM frames per socket (>= fill ring + tx ring)")
	fs.IntVar(&o.sock.FrameSize, "frame-size", def.FrameSize, fmt.Sprintf("bytes per frame: %d or %d", xsk.MinFrameSize, xsk.MaxFrameSize))
	fs.IntVar(&o.sock.RxRing, "rx-ring", def.RxRing, "RX ring size (power of two)")
	fs.IntVar(&o.sock.TxRing, "tx-ring", def.TxRing, "TX ring size (power of two)")
	fs.IntVar(&o.sock.FillRing, "fill-ring", def.FillRing, "fill ring size (power of two)")
	fs.IntVar(&o.sock.CompRing, "comp-ring", def.CompRing, "completion ring size (power of two)")
	fs.IntVar(&o.batch, "batch", dataplane.DefaultBatch, fmt.Sprintf("packets per receive batch (1..%d, at most the rx ring)", dataplane.MaxBatch))
	fs.StringVar(&o.xdpMode, "xdp-mode", "auto", "XDP attach mode: native, generic or auto (native, else generic)")
	fs.BoolVar(&o.copyMode, "copy", false, "force AF_XDP copy mode")
	fs.BoolVar(&o.zeroCopy, "zerocopy", false, "require AF_XDP zero-copy mode (NIC driver support needed)")
	fs.BoolVar(&o.sock.Private, "private-umem", false, "open the AF_XDP sockets through asavie/xdp, with their frames in private memory: a restart cannot hand them over, and drops the packets that arrive while it hands over")
	fs.StringVar(&o.cpus, "cpus", "", "CPUs to pin workers to, e.g. 1 or 2-5,8 (default: unpinned)")
	fs.StringVar(&o.socket, "socket", "", "control socket path (default $"+api.EnvSocket+" or "+api.DefaultSocket+")")
	fs.IntVar(&o.connMax, "conn-max", 0, "connection table capacity in entries (0 = from memory: 1/32 of RAM, 64Ki to 16Mi entries, a power of two)")
	fs.BoolVar(&o.sloppyTCP, "sloppy-tcp", false, "create connections from any TCP packet, not only SYN (IPVS sloppy_tcp)")
	fs.BoolVar(&o.sloppySCTP, "sloppy-sctp", false, "create connections from any SCTP packet whose first chunk is not ABORT, not only INIT (IPVS sloppy_sctp)")
	fs.BoolVar(&o.fullnatTOA, "fullnat-toa", true, "FULLNAT: write the client's address and port into a TCP SYN and handshake ACK (the TOA option, kind 254, as DPVS) for the real servers' toa module; --fullnat-toa=false leaves them as they are")
	fs.IntVar(&o.icmpRate, "icmp-rate", dataplane.DefaultICMPRate, "ICMP errors the director writes itself (port unreachable, fragmentation needed), at most this many per second per worker, as the kernel's icmp_msgs_per_sec ("+strconv.Itoa(dataplane.NoICMPLimit)+" = no limit)")
	fs.IntVar(&o.icmpBurst, "icmp-burst", dataplane.DefaultICMPBurst, "burst of --icmp-rate, as the kernel's icmp_msgs_burst")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.statePath, "state", control.DefaultStatePath, "file the rule set is saved to after every change and restored from at start (\"\" = none)")
	fs.StringVar(&o.config, "config", "", "rules in ipvsadm -S format to load at start (instead of the state file)")
	fs.BoolVar(&o.expireNodest, "expire-nodest-conn", false, "expire the connections of a deleted real server at once (IPVS expire_nodest_conn; default: keep them, dropping their packets, until they time out)")
	fs.StringVar(&o.keepalived, "keepalived-conf", "", "keepalived.conf whose virtual_server blocks set the rules, with their health checks (SIGHUP reloads it)")
	fs.StringVar(&o.healthCheck, "health-check", "", "keepalived checker block(s), e.g. \"TCP_CHECK {\\n connect_timeout 3\\n}\", run against every real server of the xlvsadm rules; a failing server gets weight 0 until it passes")
	fs.BoolVar(&o.checkConfig, "check-config", false, "check the --keepalived-conf or --config file as xlvsd would load it at start (nothing attached, no root needed): warnings and errors with file:line on stderr, the resulting rules in ipvsadm -S -n form on stdout, exit status 0 if xlvsd would start with it, 1 if not (as keepalived -t)")
	fs.StringVar(&o.syncThreshold, "sync-threshold", "3,50", "connection sync: THRESHOLD,PERIOD as the kernel's sync_threshold: a master sends a connection when its incoming packet count modulo PERIOD equals THRESHOLD (PERIOD 0: once, at THRESHOLD packets)")
	fs.IntVar(&o.syncRefresh, "sync-refresh-period", 0, "connection sync: seconds, as the kernel's sync_refresh_period: send an unchanged connection again only when its timer moved by this much (0 = off, the sync-threshold rule alone)")
	fs.IntVar(&o.syncRetries, "sync-retries", 0, "connection sync: 0..3, as the kernel's sync_retries: with --sync-refresh-period, how often an unchanged connection is sent again, a period/8 apart")
	fs.BoolVar(&o.syncPersistMode, "sync-persist-mode", false, "connection sync: as the kernel's sync_persist_mode: send only the persistence templates of persistent services, not their connections")
	fs.IntVar(&o.syncPorts, "sync-ports", 1, "connection sync: sending and receiving sockets per role (ports PORT to PORT+N-1), as the kernel's sync_ports: a power of two from 1 to 64")
	fs.StringVar(&o.shardKeyFile, "shard-key-file", "", "file whose contents (any secret, e.g. 32 random bytes; the same file on both directors of a sync pair) key the connection table's shard choice, so that FULLNAT connections synced from a peer fit this table (default: a random key; FULLNAT entries from a peer are then refused and counted as apply errors)")
	fs.DurationVar(&o.handoffHold, "handoff-hold", 3*time.Second, "restart handoff: on SIGTERM under a service manager with a file descriptor store, hand the connection table, AF_XDP sockets and XDP program to the next xlvsd; the services' packets wait in the sockets (or are dropped when they cannot be handed over), never passed to the kernel, for at most this long until it takes over (0 = no handoff: detach at once)")
	fs.BoolVar(&o.fastPath, "fastpath", false, "forward established NAT, FULLNAT, DR and TUN connections (TCP ESTABLISHED; UDP once answered) in the XDP program itself, without AF_XDP; on veth the peer needs GRO on or an XDP program (the kernel drops XDP_TX and redirected frames otherwise)")
	fs.StringVar(&o.fastPathForward, "fastpath-forward", "xdp", "with --fastpath, who forwards established NAT and FULLNAT packets once the program has rewritten them: xdp (the program sends them out, XDP_TX or a redirect) or kernel (the program passes them on and the kernel's routing forwards them, decrementing the TTL; needs net.ipv4.ip_forward=1 and for IPv6 net.ipv6.conf.all.forwarding=1, for IPv4 also accept_local=1 and no strict rp_filter on each interface, and a firewall that lets them through; checked at start and every second, a family that fails is sent by the program; on veth GRO then merges a TCP stream before the forward); DR and TUN are sent by the program either way")
	fs.IntVar(&o.fastPathEntries, "fastpath-entries", dataplane.DefaultFastPathEntries, "with --fastpath: the fast path's map size in entries (a NAT connection takes two, a DR or TUN one one; allocated as used); connections beyond stay on the AF_XDP path")
	fs.StringVar(&o.metrics, "metrics-listen", "", "address for Prometheus metrics at /metrics, e.g. 127.0.0.1:9110 (default off)")
	addPackagingFlags(fs, o, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.version || o.helpMan {
		return o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every option takes the form -flag value", fs.Arg(0))
	}
	if len(o.ifaces) == 0 && !o.checkConfig {
		return nil, errors.New("no interface given: use -i IFACE (repeat for more)")
	}
	if o.keepalived != "" && o.healthCheck != "" {
		return nil, errors.New("--keepalived-conf and --health-check both given: keepalived.conf has its own checkers")
	}
	if o.keepalived != "" && o.config != "" {
		return nil, errors.New("--keepalived-conf and --config both given: choose where the rules come from")
	}
	if o.copyMode && o.zeroCopy {
		return nil, errors.New("--copy and --zerocopy both given: choose one")
	}
	o.sock.Copy, o.sock.ZeroCopy = o.copyMode, o.zeroCopy
	if err := checkNumbers(o); err != nil {
		return nil, err
	}
	if err := checkSync(o); err != nil {
		return nil, err
	}
	if o.shardKeyFile != "" {
		b, err := os.ReadFile(o.shardKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--shard-key-file: %w", err)
		}
		if len(b) < 16 {
			return nil, fmt.Errorf("--shard-key-file %s: %d bytes; want a secret of at least 16 bytes (e.g. head -c 32 /dev/urandom > FILE, copied to both directors)", o.shardKeyFile, len(b))
		}
		sum := sha256.Sum256(b)
		copy(o.shardKey[:], sum[:])
	}
	if err := o.sock.Validate(); err != nil {
		return nil, err
	}
	ram := totalRAM()
	if o.connMax == 0 {
		o.connMax = defaultConnMax(ram)
	}
	if o.connMax < 1024 {
		return nil, fmt.Errorf("--conn-max %d: must be at least 1024 (0 = sized from memory)", o.connMax)
	}
	if need := uint64(o.connMax) * connEntryBytes; ram > 0 && need > ram/2 {
		return nil, fmt.Errorf("--conn-max %d: the table would take about %d MiB, more than half of this machine's %d MiB: give at most %d", o.connMax, need>>20, ram>>20, ram/2/connEntryBytes)
	}
	return o, nil
}

// maxICMPBurst bounds --icmp-burst (the other numeric flags' limits are the dataplane's
// and the AF_XDP socket layer's own: dataplane.Max*, xsk.Min*, xsk.Max*).
const maxICMPBurst = 1<<31 - 1

// checkNumbers refuses a numeric flag outside its range, naming the flag, the value given
// and what is allowed. 0 is refused where it would silently mean a default (--batch 0
// used to start with 64; --icmp-rate 0, which the dataplane would take as its default).
func checkNumbers(o *options) error {
	between := func(flag string, v, lo, hi int, extra string) error {
		if v < lo || v > hi {
			return fmt.Errorf("--%s %d: must be between %d and %d%s", flag, v, lo, hi, extra)
		}
		return nil
	}
	ring := func(flag string, v int) error {
		if v < xsk.MinRing || v > xsk.MaxRing || v&(v-1) != 0 {
			return fmt.Errorf("--%s %d: must be a power of two between %d and %d", flag, v, xsk.MinRing, xsk.MaxRing)
		}
		return nil
	}
	if err := between("queues", o.queues, 0, dataplane.MaxQueues, " (0 = every RX queue of the interface)"); err != nil {
		return err
	}
	if o.sock.FrameSize != xsk.MinFrameSize && o.sock.FrameSize != xsk.MaxFrameSize {
		return fmt.Errorf("--frame-size %d: must be %d or %d", o.sock.FrameSize, xsk.MinFrameSize, xsk.MaxFrameSize)
	}
	for _, r := range []struct {
		flag string
		v    int
	}{{"rx-ring", o.sock.RxRing}, {"tx-ring", o.sock.TxRing}, {"fill-ring", o.sock.FillRing}, {"comp-ring", o.sock.CompRing}} {
		if err := ring(r.flag, r.v); err != nil {
			return err
		}
	}
	if need := o.sock.FillRing + o.sock.TxRing; o.sock.Frames < need || o.sock.Frames > xsk.MaxFrames {
		return fmt.Errorf("--frames %d: must be between %d (--fill-ring + --tx-ring: a full fill ring and a full tx ring coexist) and %d", o.sock.Frames, need, xsk.MaxFrames)
	}
	if err := between("fastpath-entries", o.fastPathEntries, 1, bpf.MaxFastPathEntries, ""); err != nil {
		return err
	}
	if o.fastPathForward != "xdp" && o.fastPathForward != "kernel" {
		return fmt.Errorf("--fastpath-forward %q: must be xdp (the XDP program sends) or kernel (the kernel's routing forwards)", o.fastPathForward)
	}
	if err := between("batch", o.batch, 1, min(dataplane.MaxBatch, o.sock.RxRing), " (at most --rx-ring)"); err != nil {
		return err
	}
	if o.icmpRate != dataplane.NoICMPLimit {
		if err := between("icmp-rate", o.icmpRate, 1, dataplane.MaxICMPRate, fmt.Sprintf(" errors per second, or %d for no limit", dataplane.NoICMPLimit)); err != nil {
			return err
		}
	}
	return between("icmp-burst", o.icmpBurst, 1, maxICMPBurst, "")
}

// checkSync checks the connection-sync flags as the kernel's handlers of the sync
// sysctls check them (net/netfilter/ipvs/ip_vs_ctl.c of intel-lab-lkp/linux at
// 08edf79843c2f642c0ee77bbaecc8bfa9b7037df: proc_do_sync_threshold refuses a negative
// value and a threshold not below a non-zero period; sync_retries is 0..3
// (proc_dointvec_minmax); proc_do_sync_ports takes a power of two from 1, and
// start_sync_thread clamps it to IPVS_SYNC_PORTS_MAX, 64) and builds the policy.
func checkSync(o *options) error {
	th, per, ok := strings.Cut(strings.TrimSpace(o.syncThreshold), ",")
	if !ok {
		th, per, ok = strings.Cut(strings.Join(strings.Fields(o.syncThreshold), " "), " ")
	}
	t, err1 := strconv.Atoi(strings.TrimSpace(th))
	p, err2 := strconv.Atoi(strings.TrimSpace(per))
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("--sync-threshold %q: want THRESHOLD,PERIOD, two integers such as 3,50", o.syncThreshold)
	}
	if t < 0 || p < 0 {
		return fmt.Errorf("--sync-threshold %q: the values must not be negative", o.syncThreshold)
	}
	if p != 0 && t >= p {
		return fmt.Errorf("--sync-threshold %q: the threshold %d must be below the period %d (or the period 0: sync once, at the threshold)", o.syncThreshold, t, p)
	}
	if o.syncRefresh < 0 || o.syncRefresh > maxSyncRefresh {
		return fmt.Errorf("--sync-refresh-period %d: must be between 0 (off) and %d seconds", o.syncRefresh, maxSyncRefresh)
	}
	if o.syncRetries < 0 || o.syncRetries > 3 {
		return fmt.Errorf("--sync-retries %d: must be between 0 and 3", o.syncRetries)
	}
	if err := syncd.CheckPorts(o.syncPorts); err != nil {
		return fmt.Errorf("--sync-ports %d: must be a power of two from 1 to %d (the kernel's sync_ports)", o.syncPorts, syncd.MaxPorts)
	}
	o.syncPolicy = conntrack.SyncPolicy{Threshold: t, Period: p, RefreshPeriod: time.Duration(o.syncRefresh) * time.Second, Retries: o.syncRetries}
	return nil
}

// maxSyncRefresh is the largest sync_refresh_period the kernel's int of jiffies holds at
// HZ 1000 (proc_dointvec_jiffies).
const maxSyncRefresh = (1<<31 - 1) / 1000

// connEntryBytes bounds the connection table's memory per entry, as conntrack states it.
const connEntryBytes = uint64(conntrack.EntryBytes)

// defaultConnMax sizes the connection table from memory as IPVS operators size
// conn_tab_bits by hand: 1/32 of RAM, between 64Ki and 16Mi entries, rounded down to a
// power of two (24 GiB → 4Mi entries, about 464 MiB).
func defaultConnMax(ram uint64) int {
	n := 1 << 16
	for n < 1<<24 && uint64(n*2)*connEntryBytes <= ram/32 {
		n *= 2
	}
	return n
}

// totalRAM is the machine's memory in bytes (0 when unknown).
func totalRAM() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

// parseCPUs parses "1", "0,2" or "2-5,8".
func parseCPUs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("--cpus %q: %q is not a CPU number (want e.g. 1 or 2-5,8)", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("--cpus %q: bad range %q (want LOW-HIGH)", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	n := runtime.NumCPU()
	for _, c := range out {
		if c >= n {
			return nil, fmt.Errorf("--cpus %q: CPU %d does not exist (this machine has %d)", s, c, n)
		}
	}
	return out, nil
}

func parseMode(s string) (bpf.Mode, error) {
	switch s {
	case "auto", "":
		return bpf.ModeAuto, nil
	case "native", "drv", "driver":
		return bpf.ModeNative, nil
	case "generic", "skb":
		return bpf.ModeGeneric, nil
	}
	return 0, fmt.Errorf("--xdp-mode %q: must be native, generic or auto", s)
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "xlvsd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func run(args []string) error {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	if o.version || o.helpMan {
		return printVersionOrManual(o, os.Stdout)
	}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	cpus, err := parseCPUs(o.cpus)
	if err != nil {
		return err
	}
	mode, err := parseMode(o.xdpMode)
	if err != nil {
		return err
	}
	if o.checkConfig {
		return checkConfig(o, os.Stdout, os.Stderr)
	}
	if err := checkPrivileges(); err != nil {
		return err
	}
	if err := checkMemlock(o.sock.Frames, o.sock.FrameSize); err != nil {
		return err
	}
	hup := catchHUP()
	defer signal.Stop(hup)
	sockPath := api.SocketPath(o.socket)
	ln, err := listenControl(sockPath, o.socketGroup)
	if err != nil {
		return err
	}
	defer os.Remove(sockPath)
	defer ln.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	dp, in, err := startDataplane(o, dataplaneConfig(o, mode, cpus, log), log)
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return err
	}
	d := control.New(dp, control.Options{ConnTable: o.connMax, StatePath: o.statePath, ExpireNodestConn: o.expireNodest, Log: log,
		SyncPorts: o.syncPorts, SyncPolicy: &o.syncPolicy, SyncPersistMode: o.syncPersistMode})
	defer d.CloseSync()
	reload, closeRules, err := loadRules(d, o, log)
	if err != nil {
		return err
	}
	defer closeRules()
	if o.healthCheck != "" {
		if err := control.CheckRuleChecks(o.healthCheck); err != nil {
			return fmt.Errorf("--health-check: %w", err)
		}
		rc, err := d.StartRuleChecks(o.healthCheck)
		if err != nil {
			return err
		}
		defer rc.Close()
		log.Info("health checks on the rules' real servers")
	}
	if in != nil {
		if err := in.finish(dp, d); err != nil {
			return err
		}
	}
	go d.RunEstimator(ctx)
	if o.metrics != "" {
		srv, err := serveMetrics(o.metrics, d, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	go handleHUP(ctx, log, hup, reload)
	return serve(ctx, o, ln, sockPath, dp, d, log)
}

// newLogger is the daemon's logger on stderr at the --log-level given.
func newLogger(levelName string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return nil, fmt.Errorf("--log-level %q: must be debug, info, warn or error", levelName)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// listenControl opens the control socket at path, shared with group (--socket-group)
// when one is given. The caller closes and removes it.
func listenControl(path, group string) (net.Listener, error) {
	ln, err := api.Listen(path)
	if err != nil {
		return nil, err
	}
	if group != "" {
		if err := shareSocket(path, group); err != nil {
			ln.Close()
			os.Remove(path)
			return nil, err
		}
	}
	return ln, nil
}

// dataplaneConfig is the dataplane's configuration from the flags.
func dataplaneConfig(o *options, mode bpf.Mode, cpus []int, log *slog.Logger) dataplane.Config {
	cfg := dataplane.Config{
		Interfaces: o.ifaces,
		Queues:     o.queues,
		Socket:     o.sock,
		Batch:      o.batch,
		XDPMode:    mode,
		CPUs:       cpus,
		// The whole table is resident before the first packet: a director that
		// starts, or takes over, under load forwards at once instead of zeroing
		// memory for its first connections.
		Conntrack:  conntrack.Config{MaxEntries: o.connMax, Prefault: true, ShardKey: o.shardKey},
		SloppyTCP:  o.sloppyTCP,
		SloppySCTP: o.sloppySCTP,
		NoTOA:      !o.fullnatTOA,
		ICMPRate:   o.icmpRate, // the same values as the dataplane's (NoICMPLimit: no limit)
		ICMPBurst:  o.icmpBurst,
		Logger:     log,
	}
	if o.fastPath {
		cfg.FastPath = o.fastPathEntries
		cfg.FastPathKernel = o.fastPathForward == "kernel"
	}
	return cfg
}

// startDataplane creates the dataplane, taking over from a previous xlvsd when one
// handed off (in, non-nil then) and starting cold when that fails. Its errors name the
// flag to change.
func startDataplane(o *options, cfg dataplane.Config, log *slog.Logger) (*dataplane.Dataplane, *handoffIn, error) {
	in, passed := receiveHandoff(o, log)
	if passed {
		cfg.BusyWait = 2 * time.Second // the predecessor's sockets may still be going
	}
	if in != nil {
		cfg.Adopt, cfg.Conntrack.ShardKey = in.links, in.h.ShardKey
		cfg.AdoptSockets, in.socks = in.socks, nil // New's now, error or not
		// Faulting in the whole table (64 ms for 4Mi entries, seconds on a busy machine)
		// would lengthen the takeover, while packets are dropped, and so would the huge
		// pages the import's first entries fault in (each zeroed, perhaps compacted for):
		// base pages now, huge pages and the rest of the table once it forwards
		// (handoffIn.finish: SettleTable).
		cfg.Conntrack.Prefault, cfg.Conntrack.BasePages = false, true
	}
	t0 := time.Now()
	dp, err := dataplane.New(cfg)
	if err != nil && in != nil {
		log.Error("taking over from the previous xlvsd failed: starting cold", "err", err)
		in.abandon()
		in, cfg.Adopt, cfg.AdoptSockets, cfg.Conntrack.ShardKey = nil, nil, nil, o.shardKey
		dp, err = dataplane.New(cfg)
	}
	if err != nil {
		return nil, nil, flagHint(o, err)
	}
	log.Info("connection table resident", "entries", o.connMax, "took", time.Since(t0).Round(time.Millisecond).String())
	return dp, in, nil
}

// flagHint adds to an error of the dataplane the flag that would change the outcome.
func flagHint(o *options, err error) error {
	var qe *dataplane.QueueCountError
	switch {
	case errors.As(err, &qe):
		allowed := fmt.Sprintf("1 to %d", qe.Have)
		if qe.Have == 1 {
			allowed = "1"
		}
		return fmt.Errorf("--queues %d: %w: pass --queues %s, or 0 for every RX queue", o.queues, err, allowed)
	case errors.As(err, new(*dataplane.QueueMismatchError)):
		return fmt.Errorf("--queues %d: %w (--queues N)", o.queues, err)
	case errors.Is(err, xsk.ErrZeroCopyUnsupported):
		return fmt.Errorf("--zerocopy: %w: try --copy", err)
	}
	return err
}

// loadRules puts the rules in place from where the flags say: keepalived.conf (then
// reload re-reads it on SIGHUP), an ipvsadm -S file, or the state file. The caller
// calls closeRules when done.
func loadRules(d *control.Daemon, o *options, log *slog.Logger) (reload func() error, closeRules func(), err error) {
	closeRules = func() {}
	switch {
	case o.keepalived != "":
		// keepalived.conf has no mark rules (iptables made them for keepalived): the
		// ones made with xlvsadm --add-mark come back from the state file.
		if n, err := d.RestoreMarks(o.statePath); err != nil {
			return nil, closeRules, err
		} else if n > 0 {
			log.Info("restored firewall-mark rules", "state", o.statePath, "rules", n)
		}
		k, err := d.StartKeepalived(o.keepalived)
		if err != nil {
			return nil, closeRules, err
		}
		log.Info("running keepalived configuration", "path", o.keepalived)
		return k.Reload, func() { k.Close() }, nil
	case o.config != "":
		if err := d.LoadConfig(o.config); err != nil {
			return nil, closeRules, err
		}
		log.Info("loaded rules", "config", o.config)
	case o.statePath != "":
		restored, err := d.RestoreState(o.statePath)
		if err != nil {
			return nil, closeRules, err
		}
		if restored {
			log.Info("restored rules", "state", o.statePath)
		}
	}
	return nil, closeRules, nil
}

// serveMetrics serves Prometheus metrics at /metrics on addr (--metrics-listen).
func serveMetrics(addr string, d *control.Daemon, log *slog.Logger) (*http.Server, error) {
	mln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(mln)
	log.Info("metrics", "listen", mln.Addr().String())
	return srv, nil
}

// serve tells the service manager xlvsd is ready, serves the control API until ctx ends
// (SIGTERM, SIGINT) or the listener fails, then hands off to a successor when one can
// take over, or else returns to detach.
func serve(ctx context.Context, o *options, ln net.Listener, sockPath string, dp *dataplane.Dataplane, d *control.Daemon, log *slog.Logger) error {
	log.Info("xlvsd running", "socket", sockPath, "interfaces", o.ifaces.String())
	// Ready: XDP is attached, the sockets are bound and the rules are in place.
	notifyLog(log, "READY=1\nSTATUS=forwarding on "+o.ifaces.String())
	err := api.Serve(ctx, ln, d, log)
	notifyLog(log, "STOPPING=1")
	if ctx.Err() != nil {
		if herr := handOff(dp, d, o.handoffHold, log); herr == nil {
			return nil
		} else {
			log.Info("no handoff", "reason", herr)
		}
	}
	log.Info("shutting down: detaching XDP; traffic goes to the kernel")
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
