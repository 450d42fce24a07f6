package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
	"xlvs/control/api"
)

// syncEchoPort is where the sync tests' line-echo servers listen on the real servers.
const syncEchoPort = 9

// serveLineEcho starts, on every real server, a TCP server that answers each line with
// "NAME LINE".
func (e *env) serveLineEcho() {
	e.t.Helper()
	for i, rs := range e.bed.Reals {
		ln, err := rs.NS.Listen("tcp", fmt.Sprintf(":%d", syncEchoPort))
		if err != nil {
			e.t.Fatal(err)
		}
		name := fmt.Sprintf("rs%d", i+1)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					r := bufio.NewReader(c)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if _, err := io.WriteString(c, name+" "+line); err != nil {
							return
						}
					}
				}()
			}
		}()
		e.t.Cleanup(func() { ln.Close() })
	}
}

// lineConn is a client connection to a line-echo service.
type lineConn struct {
	c net.Conn
	r *bufio.Reader
}

// say sends line and returns the name of the real server that echoed it; any error
// (a reset among them) fails the test.
func (l *lineConn) say(t *testing.T, line string) string {
	t.Helper()
	l.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(l.c, line+"\n"); err != nil {
		t.Fatalf("send %q from %v: %v", line, l.c.LocalAddr(), err)
	}
	got, err := l.r.ReadString('\n')
	if err != nil {
		t.Fatalf("echo of %q on %v: %v", line, l.c.LocalAddr(), err)
	}
	name, rest, _ := strings.Cut(strings.TrimSuffix(got, "\n"), " ")
	if rest != line {
		t.Fatalf("echo %q, want NAME %q", got, line)
	}
	return name
}

func (e *env) dialLine(vip netip.Addr) *lineConn {
	e.t.Helper()
	c, err := e.bed.Client.NS.DialContext(e.ctx, "tcp", netip.AddrPortFrom(vip, syncEchoPort).String())
	if err != nil {
		e.t.Fatalf("connect to %v: %v", vip, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &lineConn{c: c, r: bufio.NewReader(c)}
}

// udpSay sends one datagram on c and returns the name of the real server that echoed it.
func udpSay(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("UDP echo of %q: %v", msg, err)
	}
	name, rest, _ := strings.Cut(string(buf[:n]), "\x00")
	if rest != msg {
		t.Fatalf("UDP echo %q, want NAME\\0%q", buf[:n], msg)
	}
	return name
}

// connLine is one line of ipvsadm -L -c -n.
type connLine struct {
	proto, state          string
	expire                time.Duration
	client, virtual, dest netip.AddrPort
}

var connRe = regexp.MustCompile(`^(TCP|UDP)\s+(\d+):(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(?:\S+\s+)?(\S+)$`) // a FULLNAT table's local column skipped

// conns lists d's connections (ipvsadm -L -c -n).
func (e *env) connsOf(d *bench.Daemon) []connLine {
	e.t.Helper()
	out, err := d.Adm(e.ctx, "-L", "-c", "-n")
	if err != nil {
		e.t.Fatal(err)
	}
	var cs []connLine
	for _, l := range strings.Split(out, "\n") {
		m := connRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		min, _ := strconv.Atoi(m[2])
		sec, _ := strconv.Atoi(m[3])
		c := connLine{proto: m[1], state: m[4], expire: time.Duration(min)*time.Minute + time.Duration(sec)*time.Second}
		var err1, err2, err3 error
		c.client, err1 = netip.ParseAddrPort(m[5])
		c.virtual, err2 = netip.ParseAddrPort(m[6])
		c.dest, err3 = netip.ParseAddrPort(m[7])
		if err1 != nil || err2 != nil || err3 != nil {
			e.t.Fatalf("connection line %q: %v %v %v", l, err1, err2, err3)
		}
		cs = append(cs, c)
	}
	return cs
}

// waitConn polls d's connections until one from client matches state (and proto), and
// returns it.
func (e *env) waitConn(d *bench.Daemon, proto string, client netip.AddrPort, state string) connLine {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last []connLine
	for time.Now().Before(deadline) {
		last = e.connsOf(d)
		for _, c := range last {
			if c.proto == proto && c.client == client && c.state == state {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("no %s connection from %v in state %s on %s within 10 s; it lists %+v", proto, client, state, d.Socket, last)
	return connLine{}
}

// TestSyncFailover: two xlvsd directors on one segment (LVS-NAT, one-armed), the first
// running IPVS's sync daemon as master, the second as backup, with the same rules.
// Connections through the master — TCP over IPv4 and IPv6, a UDP flow — appear on the
// backup's -L -c with the master's state, real server and timeout; a closed connection's
// state follows. Then the master is killed with SIGKILL and the floating addresses (VIP,
// the real servers' gateway) move to the backup with gratuitous ARP and unsolicited NA,
// as keepalived's VRRP would: the established connections go on through the backup, to
// the same real servers, without a reset.
func TestSyncFailover(t *testing.T) {
	e := setupBed(t, testbed.Options{Layout: testbed.NATOneArm, Reals: 2, Prefix: "e2e", IPv6: true, Backup: true})
	e.serveLineEcho()
	master := e.d
	backup, err := bench.StartDaemon(e.ctx, e.bed.Backup, bins, "-i", e.bed.BackupHost.Iface)
	if err != nil {
		t.Fatal(err)
	}
	e.daemons = append(e.daemons, backup)
	vip, vip6 := e.bed.VIP, e.bed.VIP6
	for _, d := range []*bench.Daemon{master, backup} {
		e.d = d
		e.natService("-t", vip, syncEchoPort, "rr")
		e.natService("-t", vip6, syncEchoPort, "rr")
		e.natService("-u", vip, echoPort, "rr")
	}
	e.d = master
	e.adm("--start-daemon", "master", "--mcast-interface", "eth0")
	if got, want := e.adm("-L", "--daemon"), "master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"; got != want {
		t.Fatalf("master -L --daemon:\n%q\nwant\n%q", got, want)
	}
	if out, err := backup.Adm(e.ctx, "--start-daemon", "backup", "--mcast-interface", "eth0"); err != nil {
		t.Fatalf("start the backup daemon: %v %s", err, out)
	}
	if out, _ := backup.Adm(e.ctx, "-L", "--daemon"); !strings.HasPrefix(out, "backup sync daemon (mcast=eth0, syncid=0") {
		t.Fatalf("backup -L --daemon: %q", out)
	}

	// Three connections through the master: the handshake and one exchange make three
	// packets from the client, the third of which IPVS's default policy (sync_threshold
	// 3 50) sends.
	long4, long6, closing := e.dialLine(vip), e.dialLine(vip6), e.dialLine(vip)
	server := map[*lineConn]string{}
	for _, l := range []*lineConn{long4, long6, closing} {
		server[l] = l.say(t, "hello")
	}
	udp, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(vip, echoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udpServer := udpSay(t, udp, "one")
	for _, m := range []string{"two", "three"} {
		if s := udpSay(t, udp, m); s != udpServer {
			t.Fatalf("UDP flow moved from %s to %s", udpServer, s)
		}
	}
	realAddr := func(name string, v6 bool) netip.Addr {
		i, _ := strconv.Atoi(strings.TrimPrefix(name, "rs"))
		return e.bed.Reals[i-1].AddrFor(v6)
	}
	check := func(l *lineConn, proto, state string, timeout time.Duration) {
		t.Helper()
		local := netip.MustParseAddrPort(l.c.LocalAddr().String())
		c := e.waitConn(backup, proto, local, state)
		want := netip.AddrPortFrom(realAddr(server[l], local.Addr().Is6()), syncEchoPort)
		if c.dest != want || c.virtual != netip.MustParseAddrPort(l.c.RemoteAddr().String()) {
			t.Fatalf("backup has %+v, want virtual %v and real server %v", c, l.c.RemoteAddr(), want)
		}
		// The master sends the state's whole timeout; the backup's timer started at most
		// the flush period (2 s) and this poll ago.
		if c.expire > timeout || c.expire < timeout-15*time.Second {
			t.Fatalf("backup's %s connection expires in %v, want about %v", state, c.expire, timeout)
		}
	}
	check(long4, "TCP", "ESTABLISHED", 15*time.Minute)
	check(long6, "TCP", "ESTABLISHED", 15*time.Minute)
	uc := e.waitConn(backup, "UDP", netip.MustParseAddrPort(udp.LocalAddr().String()), "UDP")
	if want := netip.AddrPortFrom(realAddr(udpServer, false), echoPort); uc.dest != want || uc.expire > 5*time.Minute || uc.expire < 5*time.Minute-15*time.Second {
		t.Fatalf("backup's UDP entry %+v, want real server %v and about 5:00", uc, want)
	}
	// The client closes one connection: the FIN, and the ACK of the server's FIN, are
	// state changes the master sends at once; the backup follows to TIME_WAIT.
	closing.c.(*net.TCPConn).CloseWrite()
	closing.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(closing.r); err != nil || len(rest) != 0 {
		t.Fatalf("closing connection: %q %v", rest, err)
	}
	check(closing, "TCP", "TIME_WAIT", 2*time.Minute)

	// Failover: the master dies, the backup takes the floating addresses.
	master.Kill()
	if err := e.bed.Failover(); err != nil {
		t.Fatal(err)
	}
	e.d = backup
	for i := 0; i < 5; i++ {
		for _, l := range []*lineConn{long4, long6} {
			if s := l.say(t, fmt.Sprintf("after failover %d", i)); s != server[l] {
				t.Fatalf("connection %v moved from %s to %s", l.c.LocalAddr(), server[l], s)
			}
		}
		if s := udpSay(t, udp, fmt.Sprintf("after failover %d", i)); s != udpServer {
			t.Fatalf("UDP flow moved from %s to %s after the failover", udpServer, s)
		}
	}
	// The backup forwarded them: its counters for the services moved.
	for _, s := range []struct {
		proto string
		vip   netip.Addr
		port  int
	}{{"tcp", vip, syncEchoPort}, {"tcp", vip6, syncEchoPort}, {"udp", vip, echoPort}} {
		if st := e.service(s.proto, s.vip, s.port); st.Stats.InPkts == 0 || st.Stats.OutPkts == 0 {
			t.Fatalf("backup's %s %v:%d counted %+v", s.proto, s.vip, s.port, st.Stats)
		}
	}
}

// TestSyncFastPath: a sync master with --fastpath. Its established connection goes into
// the XDP fast path, which carries the client's packets without a worker seeing them;
// the master still sends the connection again as IPVS's default policy (sync_threshold 3
// 50) would for those packets, from what its sweeps count, so the backup hears of it
// again. Then the master dies and the connection goes on through the backup (also with
// --fastpath), to the same real server.
func TestSyncFastPath(t *testing.T) {
	e := setupBed(t, testbed.Options{Layout: testbed.NATOneArm, Reals: 2, Prefix: "e2e", Backup: true}, "--fastpath")
	e.serveLineEcho()
	e.fastPathPeers()
	if port, err := e.bed.SwitchPort(e.bed.BackupHost); err != nil {
		t.Fatal(err)
	} else if err := testbed.SetGRO(e.bed.Switch, port, true); err != nil {
		t.Fatalf("GRO on the backup's peer %s: %v", port, err)
	}
	master := e.d
	backup, err := bench.StartDaemon(e.ctx, e.bed.Backup, bins, "-i", e.bed.BackupHost.Iface, "--fastpath")
	if err != nil {
		t.Fatal(err)
	}
	e.daemons = append(e.daemons, backup)
	vip := e.bed.VIP
	for _, d := range []*bench.Daemon{master, backup} {
		e.d = d
		e.natService("-t", vip, syncEchoPort, "rr")
	}
	e.d = master
	e.adm("--start-daemon", "master", "--mcast-interface", "eth0")
	if out, err := backup.Adm(e.ctx, "--start-daemon", "backup", "--mcast-interface", "eth0"); err != nil {
		t.Fatalf("start the backup daemon: %v %s", err, out)
	}
	syncCounters := func(d *bench.Daemon, role string) map[string]uint64 {
		t.Helper()
		resp, err := d.Client().Do(e.ctx, &api.Request{Op: api.OpDataplaneStats})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range resp.Sync {
			if q.Interface == role {
				return q.Counters
			}
		}
		t.Fatalf("%s lists no %s sync counters", d.Socket, role)
		return nil
	}

	// The handshake and a first exchange: the third client packet sends the connection.
	l := e.dialLine(vip)
	server := l.say(t, "hello")
	local := netip.MustParseAddrPort(l.c.LocalAddr().String())
	e.waitConn(backup, "TCP", local, "ESTABLISHED")
	// A few more packets through a worker offer the connection; then the fast path
	// carries it.
	for i := 0; i < 5; i++ {
		l.say(t, fmt.Sprintf("warm %d", i))
	}
	e.waitFast("the connection in the master's fast path", func(c map[string]uint64) bool { return c["fastpath_entries"] == 2 })
	time.Sleep(2500 * time.Millisecond) // what the workers queued is sent (every 2 s at most)
	applied0 := syncCounters(backup, "backup")["applied"]
	fast0 := e.fastCounters()["fastpath_packets"]

	// 120 exchanges: at least 120 client packets, all in the fast path, whose counts
	// pass a multiple of 50 plus 3.
	for i := 0; i < 120; i++ {
		if s := l.say(t, fmt.Sprintf("line %d", i)); s != server {
			t.Fatalf("the connection moved from %s to %s", server, s)
		}
	}
	// Each exchange is a client segment and the echo (the next segment carries the ACK):
	// about 240 packets, and with at least 200 of them in the fast path at least 80 are
	// the client's.
	c := e.waitFast("the fast path's packets accounted", func(c map[string]uint64) bool { return c["fastpath_packets"]-fast0 >= 200 })
	t.Logf("the fast path carried %d packets of the 120 exchanges", c["fastpath_packets"]-fast0)
	deadline := time.Now().Add(8 * time.Second)
	for syncCounters(backup, "backup")["applied"] == applied0 {
		if time.Now().After(deadline) {
			t.Fatalf("the backup applied nothing more within 8 s after 120 exchanges through the master's fast path (master sync counters %v)", syncCounters(master, "master"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := e.waitConn(backup, "TCP", local, "ESTABLISHED"); c.expire < 15*time.Minute-6*time.Second {
		t.Errorf("backup's connection expires in %v, want close to 15:00 (sent again just now)", c.expire)
	}

	// Failover: the connection goes on through the backup, to the same real server.
	master.Kill()
	if err := e.bed.Failover(); err != nil {
		t.Fatal(err)
	}
	e.d = backup
	for i := 0; i < 10; i++ {
		if s := l.say(t, fmt.Sprintf("after failover %d", i)); s != server {
			t.Fatalf("after the failover the connection moved from %s to %s", server, s)
		}
	}
	e.checkDrops()
}
