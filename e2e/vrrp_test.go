package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// The HA pair with real keepalived VRRP (issue 16, part 1). Two directors on one segment,
// each running xlvsd --keepalived-conf and Debian's keepalived --vrrp on the same
// configuration (keepalived.conf: VRRP instance, notify FIFO, virtual servers; a
// three-line xlvs.conf includes it and adds lvs_sync_daemon ... inst VI_1): xlvsd runs
// both sync roles and follows the instance through the FIFO. Long-lived TCP connections
// (an exchange every 5 ms), a UDP flow and an idle TCP connection run through the VIP
// while the master ("director", priority 254) fails in three ways in turn and the backup
// (priority 253: VRRP's skew time, (256 - priority)/256 s, adds 12 ms to its master-down
// interval of 3 advert_int) takes over; then the master comes back. Every TCP exchange must complete
// — TCP may retransmit, nothing may reset — and every echo must come from the flow's
// first real server.

// failure is one way the master fails, and how it is put right.
type failure struct {
	name    string
	fail    func(p *haPair)
	restore func(p *haPair)
	// restarts: the master's xlvsd starts afresh (empty table) when it comes back.
	restarts bool
}

var failures = []failure{
	{
		name: "xlvsd and keepalived SIGKILLed",
		fail: func(p *haPair) {
			p.a.ka.kill()
			p.a.d.Kill()
		},
		restore: func(p *haPair) {
			p.startXLVSD(p.a)
			p.startKeepalived(p.a)
		},
		restarts: true,
	},
	{
		name:    "link down",
		fail:    func(p *haPair) { p.ip(p.a.ns(), "link", "set", p.a.host.Iface, "down") },
		restore: func(p *haPair) { p.ip(p.a.ns(), "link", "set", p.a.host.Iface, "up") },
	},
	{
		// The port leaves the bridge: the director's link stays up and it sees nothing
		// but silence (it stays VRRP master all along).
		name:    "switch port down",
		fail:    func(p *haPair) { p.ip(p.bed.Switch, "link", "set", p.switchPort(p.a), "nomaster") },
		restore: func(p *haPair) { p.ip(p.bed.Switch, "link", "set", p.switchPort(p.a), "master", "br0") },
	},
}

func (p *haPair) switchPort(h *haDirector) string {
	p.t.Helper()
	port, err := p.bed.SwitchPort(h.host)
	if err != nil {
		p.t.Fatal(err)
	}
	return port
}

// result is what one failure measured.
type result struct {
	name               string
	detect, firstFwd   time.Duration // failure → the backup holds the VIP, → it forwards a packet
	tcpGap, udpGap     time.Duration // longest pause of a busy flow across the failure
	udpLost            int           // UDP datagrams lost over the failure
	failback, fbTCPGap time.Duration // the master's return → it holds the VIP again; TCP pause then
}

// TestHAPairNAT: the one-armed LVS-NAT pair (VIP and the real servers' gateway float),
// keepalived preempting: after each failure the master comes back and takes over again by
// itself. Then a split brain: VRRP blocked between the directors (both master, both
// forwarding), then let through again.
func TestHAPairNAT(t *testing.T) {
	p := setupHA(t, testbed.NATOneArm, false)
	results := p.run(failures)
	p.splitBrain()
	p.finish(results)
}

// TestHAPairNATFastPath: TestHAPairNAT's failures with both directors running --fastpath:
// the flows' packets go through the XDP fast path of whichever director is master, the
// master's sync daemon still sends the connections the fast path carries, and each
// takeover, return and restart keeps every exchange going, to the same real server,
// without a reset.
func TestHAPairNATFastPath(t *testing.T) {
	haFastPath(t, setupHA(t, testbed.NATOneArm, false, "--fastpath"))
}

// TestHAPairDRFastPath is TestHAPairDR (nopreempt) with --fastpath on both directors.
func TestHAPairDRFastPath(t *testing.T) {
	haFastPath(t, setupHA(t, testbed.L2, true, "--fastpath"))
}

// haFastPath runs the failures on pair p, whose directors run --fastpath, and checks
// that both directors' fast paths carried the flows.
func haFastPath(t *testing.T, p *haPair) {
	for _, h := range []*haDirector{p.a, p.b} {
		// A veth delivers what XDP sends only when its peer runs NAPI (fastPathPeers).
		if err := testbed.SetGRO(p.bed.Switch, p.switchPort(h), true); err != nil {
			t.Fatalf("GRO on %s's switch port: %v", h.name, err)
		}
	}
	results := p.run(failures)
	// The flows went through the fast path, on the master and, while it held the
	// addresses, on the backup; the first director's xlvsd is the one started last.
	for _, h := range []*haDirector{p.a, p.b} {
		p.e.d = h.d
		c := p.e.fastCounters()
		if c["xdp_fastpath_tx"] == 0 || c["fastpath_installed"] == 0 {
			t.Errorf("%s's fast path carried nothing: %v", h.name, fastOnly(c))
		}
		t.Logf("%s's fast path: %v", h.name, fastOnly(c))
	}
	p.finish(results)
}

// TestHAPairDR: the LVS-DR pair (the VIP floats), keepalived with nopreempt: the master
// that comes back stays backup — the test checks it does not take the VIP back — until
// the active director's keepalived stops (systemctl stop: priority 0), which is the fail
// back.
func TestHAPairDR(t *testing.T) {
	p := setupHA(t, testbed.L2, true)
	results := p.run(failures)
	p.finish(results)
}

// run starts keepalived and the flows, then fails the master in each way in turn.
func (p *haPair) run(fs []failure) []result {
	// The master first: with nopreempt whichever director becomes master first stays so,
	// and two keepalived started together at close priorities race.
	p.startKeepalived(p.a)
	p.waitMaster(p.a, p.b, 15*time.Second)
	p.startBackupKeepalived(p.b)
	p.resetBase = p.resets()
	p.fl = p.startFlows(3)
	// The backup has every connection before anything fails: the master sent them at
	// their third packet (sync_threshold 3 50).
	for _, f := range append(p.fl.busy, p.fl.idle) {
		proto := "TCP"
		if f.udp {
			proto = "UDP"
		}
		state := map[string]string{"TCP": "ESTABLISHED", "UDP": "UDP"}[proto]
		p.e.waitConn(p.b.d, proto, netip.MustParseAddrPort(f.c.LocalAddr().String()), state)
	}
	var out []result
	for i, f := range fs {
		out = append(out, p.failover(f, i == 0))
	}
	return out
}

// failover fails the master one way, measures the backup's takeover, restores the master
// and fails back.
func (p *haPair) failover(f failure, first bool) result {
	t := p.t
	fs := p.fl
	r := result{name: f.name}
	stop := make(chan struct{})
	defer close(stop)
	fwd := firstForward(p.e.ctx, p.b.d, stop)
	sendsBefore := p.syncCounter(p.b.d, "master", "table_sends")
	lost0 := fs.udpLost()

	t0 := time.Now()
	f.fail(p)
	tVIP := p.waitMaster(p.b, nil, 20*time.Second)
	r.detect = tVIP.Sub(t0)
	select {
	case at, ok := <-fwd:
		if !ok {
			t.Fatalf("%s: could not watch the backup's counters", f.name)
		}
		r.firstFwd = at.Sub(t0)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the backup forwarded nothing within 20 s", f.name)
	}
	p.waitResumed(fs, tVIP, 30*time.Second, f.name)
	r.tcpGap, r.udpGap = fs.maxGaps(t0, time.Now())
	r.udpLost = fs.udpLost() - lost0
	// The idle connection goes on through the backup too.
	p.sayIdle(fs, f.name+", through the backup")

	// The master comes back.
	t1 := time.Now()
	f.restore(p)
	if f.restarts {
		// Its new xlvsd asked for the whole table and the backup sent it: the idle
		// connection, which sent nothing since the master died, is there.
		idle := netip.MustParseAddrPort(p.fl.idle.c.LocalAddr().String())
		p.e.waitConn(p.a.d, "TCP", idle, "ESTABLISHED")
	}
	if p.nopreempt && f.name != "switch port down" {
		// nopreempt: the master stays backup. The first time, check it for longer than
		// VRRP's master-down interval (3 × advert_int + skew, 3.01 s at priority 254).
		if first {
			time.Sleep(5 * time.Second)
			if _, none := p.holds(p.a); !none {
				t.Fatalf("%s: with nopreempt the returning master took floating addresses", f.name)
			}
			if all, _ := p.holds(p.b); !all {
				t.Fatalf("%s: with nopreempt the backup lost the floating addresses", f.name)
			}
		}
		// Fail back: the backup's keepalived stops (priority 0), and starts again.
		t1 = time.Now()
		p.b.ka.stop()
		p.waitMaster(p.a, p.b, 20*time.Second)
		p.startBackupKeepalived(p.b)
	} else {
		p.waitMaster(p.a, p.b, 20*time.Second)
	}
	tBack := time.Now()
	r.failback = tBack.Sub(t1)
	// The backup sent its whole table: asked by the returning master's xlvsd when it
	// started, or when its VRRP instance entered BACKUP (after FAULT: link down), or by
	// itself when its instance left MASTER (the switch port case: the master never left
	// it, the backup yields when it hears it again). Only the notify FIFO tells xlvsd of
	// the last two.
	for deadline := time.Now().Add(5 * time.Second); p.syncCounter(p.b.d, "master", "table_sends") <= sendsBefore; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the backup sent no whole table to the returning master (%d sends before, none since)", f.name, sendsBefore)
		}
	}
	p.waitResumed(fs, tBack, 30*time.Second, f.name+", failback")
	time.Sleep(200 * time.Millisecond)
	r.fbTCPGap, _ = fs.maxGaps(t1, time.Now())
	p.sayIdle(fs, f.name+", after failback")
	p.checkFlows(fs, f.name)
	t.Logf("%s: VIP on the backup after %v, first packet forwarded by it after %v; longest TCP pause %v, UDP pause %v (%d datagrams lost); failback in %v, TCP pause then %v",
		f.name, r.detect.Round(time.Millisecond), r.firstFwd.Round(time.Millisecond), r.tcpGap.Round(time.Millisecond), r.udpGap.Round(time.Millisecond), r.udpLost,
		r.failback.Round(time.Millisecond), r.fbTCPGap.Round(time.Millisecond))
	return r
}

// splitBrain blocks VRRP between the directors on the switch until both are master, lets
// the flows run through both at once — the client sends to the master (its neighbour
// entry for the VIP set back to it), the real servers answer through the backup (whose
// gratuitous ARP they took): each director sees one direction, and each needs the other's
// connections — then lets VRRP through again: the backup yields, and no flow lost
// anything.
func (p *haPair) splitBrain() {
	t := p.t
	fs := p.fl
	p.nftIn(p.bed.Switch, "table bridge xlvs_split {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tip protocol vrrp drop\n\t}\n}\n")
	t0 := time.Now()
	p.waitMaster(p.b, nil, 20*time.Second)
	if all, _ := p.holds(p.a); !all {
		t.Fatal("split brain: the master gave up the floating addresses")
	}
	both := time.Now()
	// After the new master's gratuitous ARPs (keepalived sends them just after it adds
	// the addresses; they would override the entry), the client goes back to the master.
	time.Sleep(300 * time.Millisecond)
	p.ip(p.bed.Client.NS, "neigh", "replace", p.bed.VIP.String(), "lladdr", p.a.host.MAC.String(), "dev", p.bed.Client.Iface, "nud", "reachable")
	aFwd, err := forwarded(p.e.ctx, p.a.d)
	if err != nil {
		t.Fatal(err)
	}
	bFwd, err := forwarded(p.e.ctx, p.b.d)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	p.waitResumed(fs, time.Now(), 30*time.Second, "split brain")
	for _, h := range []*haDirector{p.a, p.b} {
		if all, _ := p.holds(h); !all {
			t.Fatalf("split brain: %s gave up the floating addresses while VRRP was blocked", h.name)
		}
	}
	a2, _ := forwarded(p.e.ctx, p.a.d)
	b2, _ := forwarded(p.e.ctx, p.b.d)
	if a2-aFwd < 50 || b2-bFwd < 50 {
		t.Fatalf("split brain: the master forwarded %d packets, the backup %d in a second; want both forwarding", a2-aFwd, b2-bFwd)
	}
	p.nftIn(p.bed.Switch, "delete table bridge xlvs_split\n")
	t1 := time.Now()
	p.waitMaster(p.a, p.b, 20*time.Second)
	settled := time.Now()
	p.waitResumed(fs, settled, 30*time.Second, "split brain resolved")
	time.Sleep(200 * time.Millisecond)
	p.sayIdle(fs, "after the split brain")
	p.checkFlows(fs, "split brain")
	t.Logf("split brain: both masters %v after VRRP was blocked, both forwarding (%d and %d packets in a second); settled %v after it was let through; longest TCP pause %v",
		both.Sub(t0).Round(time.Millisecond), a2-aFwd, b2-bFwd, settled.Sub(t1).Round(time.Millisecond), tcpGap(fs.maxGaps(t0, time.Now())).Round(time.Millisecond))
}

func tcpGap(tcp, _ time.Duration) time.Duration { return tcp }

// finish stops the flows and checks the whole run: no flow failed, no TCP reset anywhere,
// and reports the measurements.
func (p *haPair) finish(results []result) {
	t := p.t
	p.fl.halt()
	p.checkFlows(p.fl, "at the end")
	if n := p.resets() - p.resetBase; n != 0 {
		t.Fatalf("%d established TCP connections were reset (client and real servers' Tcp.EstabResets)", n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s pair (advert_int 1, priorities 254/253, nopreempt %v):\n", p.method, p.nopreempt)
	fmt.Fprintf(&b, "| failure | VIP on backup | first forwarded | TCP pause | UDP pause (lost) | failback | TCP pause at failback |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %v | %v | %v | %v (%d) | %v | %v |\n", r.name, r.detect.Round(10*time.Millisecond), r.firstFwd.Round(10*time.Millisecond),
			r.tcpGap.Round(10*time.Millisecond), r.udpGap.Round(10*time.Millisecond), r.udpLost, r.failback.Round(10*time.Millisecond), r.fbTCPGap.Round(10*time.Millisecond))
	}
	n := 0
	for _, f := range p.fl.busy {
		f.mu.Lock()
		n += len(f.times)
		if f.udp {
			fmt.Fprintf(&b, "UDP: %d echoes, %d datagrams lost (all during the takeovers)\n", len(f.times), f.lost)
		}
		f.mu.Unlock()
	}
	fmt.Fprintf(&b, "%d exchanges in all, none lost or reset", n)
	t.Log(b.String())
}
