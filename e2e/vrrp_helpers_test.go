package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/control/api"
)

// The HA pair tests: two directors on one segment, each running xlvsd and keepalived
// (VRRP only), real servers behind them, long-lived flows through the VIP while the
// master fails in several ways. This file holds their machinery; vrrp_test.go the tests.

const (
	haTCPPort = syncEchoPort // line echo (serveLineEcho)
	haUDPPort = echoPort     // UDP echo
	haVRID    = 51
	// haEvery is the pause between two exchanges of a flow.
	haEvery = 5 * time.Millisecond
)

// sbinTool finds a tool that may live in an sbin directory missing from PATH.
func sbinTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// needTools fails (under CI) or skips the test when keepalived or nft is missing.
func needTools(t *testing.T) (keepalived, nft string) {
	t.Helper()
	keepalived, nft = sbinTool("keepalived"), sbinTool("nft")
	if keepalived == "" || nft == "" {
		msg := fmt.Sprintf("HA pair test: needs keepalived and nft (found %q, %q): apt-get install keepalived nftables", keepalived, nft)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return keepalived, nft
}

// kaProc is a keepalived (VRRP only) running in a director's namespace.
type kaProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// kill ends keepalived and its VRRP child with SIGKILL (its process group), as a crash
// would: nothing of its shutdown runs, the VIPs stay where they are.
func (k *kaProc) kill() {
	if k == nil || k.cmd.Process == nil {
		return
	}
	select {
	case <-k.done: // gone (and waited for): its process group id may be reused
		return
	default:
	}
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	<-k.done
}

// stop ends keepalived with SIGTERM, as systemctl stop does: its VRRP child sends a
// priority 0 advertisement and removes the VIPs. It is killed after 10 s.
func (k *kaProc) stop() {
	if k == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		k.kill()
	}
}

// haDirector is one director of the pair.
type haDirector struct {
	name string
	host *testbed.Host
	prio int
	dir  string // keepalived.conf, xlvs.conf, the notify FIFO, pid files
	d    *bench.Daemon
	ka   *kaProc
}

func (h *haDirector) ns() *testbed.NS { return h.host.NS }

// haPair is the bed, its two directors (a: priority 254, the master; b: 253) and the
// flows through them.
type haPair struct {
	t          *testing.T
	e          *env
	bed        *testbed.Bed
	a, b       *haDirector
	keepalived string
	nft        string
	nopreempt  bool
	method     string // keepalived's lb_kind: NAT or DR
	floating   []netip.Prefix
	args       []string // xlvsd's further arguments

	kas []*kaProc // every keepalived started, killed at cleanup

	fl        *flows
	resetBase uint64 // Tcp.EstabResets before the flows started
}

// setupHA builds the bed (floating addresses unassigned: keepalived assigns them), the
// real servers' echo services, each director's configuration, the kernel guard and
// xlvsd (with daemonArgs); keepalived is started by startKeepalived.
func setupHA(t *testing.T, layout testbed.Layout, nopreempt bool, daemonArgs ...string) *haPair {
	t.Helper()
	needRoot(t)
	keepalived, nft := needTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	bed, err := testbed.New(testbed.Options{Layout: layout, Reals: 2, Prefix: "e2e-ha", Backup: true, FloatingUnassigned: true})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	e := &env{t: t, ctx: ctx, bed: bed}
	p := &haPair{t: t, e: e, bed: bed, keepalived: keepalived, nft: nft, nopreempt: nopreempt, method: "NAT", floating: bed.Floating(), args: daemonArgs}
	if layout == testbed.L2 {
		p.method = "DR"
	}
	// Registered before any process starts, so it runs before the bed goes away.
	t.Cleanup(func() {
		for _, k := range p.kas {
			k.kill()
		}
		for i, d := range e.daemons {
			if err := d.Stop(); err != nil {
				t.Errorf("xlvsd #%d exit: %v\n%s", i+1, err, d.Log())
			}
		}
		if t.Failed() {
			for _, h := range []*haDirector{p.a, p.b} {
				if h == nil {
					continue
				}
				if h.d != nil {
					t.Logf("%s: xlvsd log:\n%s", h.name, h.d.Log())
				}
				for i, k := range p.kas {
					if strings.Contains(strings.Join(k.cmd.Args, " "), h.dir) {
						t.Logf("%s: keepalived #%d log:\n%s", h.name, i+1, k.out.String())
					}
				}
			}
		}
	})
	e.serveLineEcho()
	for i, rs := range bed.Reals {
		addr := fmt.Sprintf(":%d", haUDPPort)
		if layout == testbed.L2 {
			// DR: the reply must leave from the VIP, so the socket is bound to it.
			addr = netip.AddrPortFrom(bed.VIP, haUDPPort).String()
		}
		pc, err := rs.NS.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		stop := traffic.ServeUDPEcho(pc, fmt.Sprintf("rs%d", i+1))
		t.Cleanup(stop)
	}
	p.a = &haDirector{name: "director", host: bed.Ext, prio: 254, dir: t.TempDir()}
	p.b = &haDirector{name: "backup", host: bed.BackupHost, prio: 253, dir: t.TempDir()}
	for _, h := range []*haDirector{p.a, p.b} {
		// The directors' switch ports do not flood unknown unicast to them. A NIC drops
		// frames for another MAC before XDP sees them; a veth hands XDP every frame, and
		// the bridge floods the frames for the master's MAC once the master's port is
		// gone: the backup's xlvsd would forward them (it has the connections) long
		// before VRRP moves anything, which no real director would see.
		p.ip(bed.Switch, "link", "set", p.switchPort(h), "type", "bridge_slave", "flood", "off")
		p.writeConfig(h)
		p.guard(h)
		p.startXLVSD(h)
	}
	return p
}

// keepalivedConf is a director's keepalived.conf, as an operator writes it: the VRRP
// instance that moves the floating addresses (the VIP; in NAT also the real servers'
// gateway), the notify FIFO xlvsd follows it through, and the virtual servers xlvsd
// reads (keepalived --vrrp ignores them).
func (p *haPair) keepalivedConf(h *haDirector) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n    router_id %s\n    vrrp_notify_fifo %s\n}\n\n", h.name, filepath.Join(h.dir, "vrrp.fifo"))
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n    state BACKUP\n    interface %s\n    virtual_router_id %d\n    priority %d\n    advert_int 1\n", h.host.Iface, haVRID, h.prio)
	if p.nopreempt {
		b.WriteString("    nopreempt\n")
	}
	b.WriteString("    virtual_ipaddress {\n")
	for _, f := range p.floating {
		fmt.Fprintf(&b, "        %s dev %s\n", f, h.host.Iface)
	}
	b.WriteString("    }\n}\n")
	for _, s := range []struct {
		proto string
		port  int
	}{{"TCP", haTCPPort}, {"UDP", haUDPPort}} {
		fmt.Fprintf(&b, "\nvirtual_server %s %d {\n    lb_algo rr\n    lb_kind %s\n    protocol %s\n", p.bed.VIP, s.port, p.method, s.proto)
		for _, rs := range p.bed.Reals {
			fmt.Fprintf(&b, "    real_server %s %d {\n        weight 1\n    }\n", rs.Addr, s.port)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// xlvsConf is what xlvsd reads: keepalived's file, and lvs_sync_daemon, which must not be
// in the file keepalived reads (Debian's keepalived then starts the kernel's sync daemon
// — without IPVS in the kernel its VRRP process crashes).
func (p *haPair) xlvsConf(h *haDirector) string {
	return fmt.Sprintf("include keepalived.conf\n\nglobal_defs {\n    lvs_sync_daemon %s inst VI_1\n}\n", h.host.Iface)
}

func (p *haPair) writeConfig(h *haDirector) {
	p.t.Helper()
	for name, text := range map[string]string{"keepalived.conf": p.keepalivedConf(h), "xlvs.conf": p.xlvsConf(h)} {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte(text), 0o600); err != nil {
			p.t.Fatal(err)
		}
	}
}

// guard makes the director's kernel drop, not refuse, the virtual services' packets: while
// xlvsd runs its XDP program takes them before netfilter; when xlvsd is gone (a crash)
// and the director still holds the VIP, a client's segment would otherwise meet the
// kernel's reset and its connection would die before VRRP moves the VIP.
func (p *haPair) guard(h *haDirector) {
	p.t.Helper()
	rules := fmt.Sprintf(`table inet xlvs_guard {
	chain input {
		type filter hook input priority 0; policy accept;
		ip daddr %[1]s tcp dport %[2]d drop
		ip daddr %[1]s udp dport %[3]d drop
	}
}
`, p.bed.VIP, haTCPPort, haUDPPort)
	p.nftIn(h.ns(), rules)
}

func (p *haPair) nftIn(ns *testbed.NS, rules string) {
	p.t.Helper()
	cmd := ns.Command(p.e.ctx, p.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("nft in %s: %v: %s\n%s", ns.Name(), err, out, rules)
	}
}

func (p *haPair) startXLVSD(h *haDirector) {
	p.t.Helper()
	d, err := bench.StartDaemon(p.e.ctx, h.ns(), bins, append([]string{"-i", h.host.Iface, "--keepalived-conf", filepath.Join(h.dir, "xlvs.conf")}, p.args...)...)
	if err != nil {
		p.t.Fatal(err)
	}
	p.e.daemons = append(p.e.daemons, d)
	h.d = d
}

// startKeepalived runs keepalived VRRP-only in h's namespace, as Debian's package would
// with --vrrp, in the foreground, logging to the console.
func (p *haPair) startKeepalived(h *haDirector) {
	p.t.Helper()
	out := &syncBuffer{}
	cmd := h.ns().Command(p.e.ctx, p.keepalived, "-n", "-l", "-D", "--vrrp",
		"-f", filepath.Join(h.dir, "keepalived.conf"), "-p", filepath.Join(h.dir, "keepalived.pid"), "-r", filepath.Join(h.dir, "vrrp.pid"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start keepalived in %s: %v", h.ns().Name(), err)
	}
	k := &kaProc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(k.done) }()
	p.kas = append(p.kas, k)
	h.ka = k
}

// vrrpLines counts the lines of h's xlvsd log saying its VRRP instance entered state.
func (h *haDirector) vrrpLines(state string) int {
	n := 0
	for _, l := range strings.Split(h.d.Log(), "\n") {
		if strings.Contains(l, `msg="VRRP instance changed state"`) && strings.Contains(l, " state="+state+" ") {
			n++
		}
	}
	return n
}

// startBackupKeepalived starts h's keepalived and waits until its xlvsd learned, from the
// notify FIFO, that the instance is BACKUP (the other director being master).
func (p *haPair) startBackupKeepalived(h *haDirector) {
	p.t.Helper()
	n := h.vrrpLines("BACKUP")
	p.startKeepalived(h)
	deadline := time.Now().Add(10 * time.Second)
	for h.vrrpLines("BACKUP") == n {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: xlvsd did not learn that its VRRP instance is BACKUP within 10 s", h.name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holds tells whether h's interface has every floating address (all: true) or none.
func (p *haPair) holds(h *haDirector) (all, none bool) {
	var have []netip.Addr
	err := h.ns().Do(func() error {
		ifi, err := net.InterfaceByName(h.host.Iface)
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ip, _ := netip.AddrFromSlice(n.IP)
				have = append(have, ip.Unmap())
			}
		}
		return nil
	})
	if err != nil {
		p.t.Fatal(err)
	}
	all, none = true, true
	for _, f := range p.floating {
		if slices.Contains(have, f.Addr()) {
			none = false
		} else {
			all = false
		}
	}
	return all, none
}

// waitMaster polls (every 5 ms) until h holds the floating addresses and, when other is
// given, other holds none; it returns when that first held.
func (p *haPair) waitMaster(h, other *haDirector, within time.Duration) time.Time {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		all, _ := p.holds(h)
		ok := all
		if ok && other != nil {
			_, none := p.holds(other)
			ok = none
		}
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not become the only VRRP master within %v", h.name, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forwarded sums the packets d's workers forwarded and those its XDP fast path sent.
func forwarded(ctx context.Context, d *bench.Daemon) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := d.Client().Do(ctx, &api.Request{Op: api.OpDataplaneStats})
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, q := range resp.Dataplane {
		n += q.Counters["forwarded"]
	}
	for _, q := range resp.XDPStats {
		n += q.Counters["xdp_fastpath_tx"] // what the XDP fast path sent (--fastpath)
	}
	return n, nil
}

// syncCounter reads one of d's sync counters ("master" or "backup" role).
func (p *haPair) syncCounter(d *bench.Daemon, role, name string) uint64 {
	p.t.Helper()
	resp, err := d.Client().Do(p.e.ctx, &api.Request{Op: api.OpDataplaneStats})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, q := range resp.Sync {
		if q.Interface == role {
			return q.Counters[name]
		}
	}
	p.t.Fatalf("no %s sync counters", role)
	return 0
}

// firstForward watches d's forwarded counter from now on, every 2 ms, and delivers the
// time it first moved (or the zero time when stop closes first).
func firstForward(ctx context.Context, d *bench.Daemon, stop <-chan struct{}) <-chan time.Time {
	ch := make(chan time.Time, 1)
	base, err := forwarded(ctx, d)
	go func() {
		defer close(ch)
		if err != nil {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if n, err := forwarded(ctx, d); err == nil && n > base {
				ch <- time.Now()
				return
			}
		}
	}()
	return ch
}

// flow is one long-lived exchange through the VIP: a TCP connection to the line echo or a
// UDP "connection" to the UDP echo, one exchange every haEvery.
type flow struct {
	name   string
	udp    bool
	c      net.Conn
	r      *bufio.Reader
	server string // the real server of the first exchange; every echo must come from it

	mu    sync.Mutex
	times []time.Time // when each exchange completed
	lost  int         // UDP: datagrams without an echo within udpWait
	err   error       // TCP: the first failure (a reset among them); then the flow stops
}

// udpWait is how long a UDP exchange waits for its echo before counting it lost.
const udpWait = 20 * time.Millisecond

func (f *flow) record(at time.Time) {
	f.mu.Lock()
	f.times = append(f.times, at)
	f.mu.Unlock()
}

func (f *flow) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *flow) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// exchange does one exchange; a TCP error is returned (the flow is over), a UDP loss is
// counted.
func (f *flow) exchange(seq int) error {
	msg := fmt.Sprintf("%s %d", f.name, seq)
	if f.udp {
		f.c.SetDeadline(time.Now().Add(udpWait))
		if _, err := f.c.Write([]byte(msg)); err != nil {
			f.mu.Lock()
			f.lost++
			f.mu.Unlock()
			return nil
		}
		buf := make([]byte, 256)
		for {
			n, err := f.c.Read(buf)
			if err != nil {
				f.mu.Lock()
				f.lost++
				f.mu.Unlock()
				return nil
			}
			name, rest, _ := strings.Cut(string(buf[:n]), "\x00")
			if rest != msg {
				continue // the late echo of an earlier datagram
			}
			if name != f.server {
				return fmt.Errorf("%s: datagram %d echoed by %s, the flow's server is %s", f.name, seq, name, f.server)
			}
			f.record(time.Now())
			return nil
		}
	}
	// TCP: the deadline only bounds the test; TCP's retransmissions must carry the
	// exchange over a failover.
	f.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(f.c, msg+"\n"); err != nil {
		return fmt.Errorf("%s: send %d: %w", f.name, seq, err)
	}
	got, err := f.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: echo of %d: %w", f.name, seq, err)
	}
	name, rest, _ := strings.Cut(strings.TrimSuffix(got, "\n"), " ")
	if rest != msg || name != f.server {
		return fmt.Errorf("%s: echo %q of %q, want it from %s", f.name, got, msg, f.server)
	}
	f.record(time.Now())
	return nil
}

// run exchanges until stop closes or a TCP exchange fails.
func (f *flow) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for seq := 1; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		if err := f.exchange(seq); err != nil {
			f.fail(err)
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(haEvery):
		}
	}
}

// first dials the flow and does its first exchange, which names its real server.
func (p *haPair) dialFlow(name string, udp bool) *flow {
	p.t.Helper()
	network, port := "tcp", haTCPPort
	if udp {
		network, port = "udp", haUDPPort
	}
	c, err := p.bed.Client.NS.DialContext(p.e.ctx, network, netip.AddrPortFrom(p.bed.VIP, uint16(port)).String())
	if err != nil {
		p.t.Fatalf("%s: connect to the VIP: %v", name, err)
	}
	p.t.Cleanup(func() { c.Close() })
	f := &flow{name: name, udp: udp, c: c, r: bufio.NewReader(c)}
	msg := name + " 0"
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if udp {
		if _, err := c.Write([]byte(msg)); err != nil {
			p.t.Fatal(err)
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			p.t.Fatalf("%s: first echo: %v", name, err)
		}
		f.server, _, _ = strings.Cut(string(buf[:n]), "\x00")
	} else {
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			p.t.Fatal(err)
		}
		got, err := f.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("%s: first echo: %v", name, err)
		}
		f.server, _, _ = strings.Cut(got, " ")
	}
	f.record(time.Now())
	return f
}

// flows are the pair's traffic: TCP flows and a UDP flow exchanging all the time, and one
// idle TCP connection used only at checkpoints.
type flows struct {
	busy []*flow
	idle *flow
	stop chan struct{}
	wg   sync.WaitGroup
	seq  int // the idle connection's exchanges
}

func (p *haPair) startFlows(nTCP int) *flows {
	p.t.Helper()
	fs := &flows{stop: make(chan struct{})}
	for i := range nTCP {
		fs.busy = append(fs.busy, p.dialFlow(fmt.Sprintf("tcp%d", i+1), false))
	}
	fs.busy = append(fs.busy, p.dialFlow("udp", true))
	fs.idle = p.dialFlow("idle", false)
	for _, f := range fs.busy {
		fs.wg.Add(1)
		go f.run(fs.stop, &fs.wg)
	}
	p.t.Cleanup(fs.halt)
	return fs
}

func (fs *flows) halt() {
	select {
	case <-fs.stop:
	default:
		close(fs.stop)
	}
	fs.wg.Wait()
}

// check fails the test for a flow that failed.
func (p *haPair) checkFlows(fs *flows, when string) {
	p.t.Helper()
	for _, f := range fs.busy {
		if err := f.failed(); err != nil {
			p.t.Fatalf("%s: %v", when, err)
		}
	}
}

// waitResumed waits until every busy flow completed an exchange after t.
func (p *haPair) waitResumed(fs *flows, t time.Time, within time.Duration, when string) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		p.checkFlows(fs, when)
		pending := ""
		for _, f := range fs.busy {
			f.mu.Lock()
			last := f.times[len(f.times)-1]
			f.mu.Unlock()
			if !last.After(t) {
				pending = f.name
				break
			}
		}
		if pending == "" {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: flow %s made no exchange within %v", when, pending, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// maxGaps is the longest pause between two exchanges of a busy TCP flow, and of the UDP
// flow, that ends within (from, to].
func (fs *flows) maxGaps(from, to time.Time) (tcp, udp time.Duration) {
	for _, f := range fs.busy {
		f.mu.Lock()
		for i := 1; i < len(f.times); i++ {
			if f.times[i].After(from) && !f.times[i].After(to) {
				g := f.times[i].Sub(f.times[i-1])
				if f.udp {
					udp = max(udp, g)
				} else {
					tcp = max(tcp, g)
				}
			}
		}
		f.mu.Unlock()
	}
	return tcp, udp
}

// udpLost is how many UDP datagrams went without an echo so far.
func (fs *flows) udpLost() int {
	for _, f := range fs.busy {
		if f.udp {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.lost
		}
	}
	return 0
}

// sayIdle does one exchange on the idle connection.
func (p *haPair) sayIdle(fs *flows, when string) {
	p.t.Helper()
	fs.seq++
	if err := fs.idle.exchange(1000 + fs.seq); err != nil {
		p.t.Fatalf("%s: idle connection: %v", when, err)
	}
}

// resets sums the TCP resets the client and the real servers saw on established
// connections.
func (p *haPair) resets() uint64 {
	p.t.Helper()
	var n uint64
	for _, h := range append([]*testbed.Host{p.bed.Client}, p.bed.Reals...) {
		c, err := h.NS.Counters()
		if err != nil {
			p.t.Fatal(err)
		}
		n += c["Tcp.EstabResets"]
	}
	return n
}

// ip runs ip(8) with args; ns, when given, is passed as -n.
func (p *haPair) ip(ns *testbed.NS, args ...string) {
	p.t.Helper()
	full := args
	if ns != nil {
		full = append([]string{"-n", ns.Name()}, args...)
	}
	ctx, cancel := context.WithTimeout(p.e.ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput(); err != nil {
		p.t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}
