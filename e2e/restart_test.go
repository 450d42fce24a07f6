package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/control/api"
)

// fdStore plays systemd's file descriptor store for xlvsd (FileDescriptorStoreMax=): it
// receives sd_notify messages on a unix datagram socket, keeps the descriptors of
// FDSTORE=1 by FDNAME, drops them on FDSTOREREMOVE=1, and passes what it holds to the
// next process as systemd does (LISTEN_FDS from fd 3, LISTEN_FDNAMES, LISTEN_PID). Like
// systemd it handles messages as they come (every millisecond): a descriptor removed
// from the store is closed then, which matters for a handed-over socket, whose queue is
// free only once every descriptor of it is closed.
type fdStore struct {
	t     *testing.T
	path  string
	conn  *net.UnixConn
	mu    sync.Mutex // names, files, the reads
	names []string
	files []*os.File
}

func newFDStore(t *testing.T) *fdStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &fdStore{t: t, path: path, conn: conn}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := s.drain(); err != nil {
				t.Errorf("fd store: %v", err)
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		conn.Close()
		for _, f := range s.files {
			f.Close()
		}
	})
	return s
}

// collect takes every message waiting on the socket, without waiting for more.
func (s *fdStore) collect() {
	s.t.Helper()
	if err := s.drain(); err != nil {
		s.t.Fatalf("fd store: %v", err)
	}
}

func (s *fdStore) drain() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return err
	}
	buf, oob := make([]byte, 4096), make([]byte, 4096)
	for {
		var n, oobn int
		var rerr error
		if err := raw.Control(func(fd uintptr) {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		}); err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
		if err := s.handle(buf[:n], oob[:oobn]); err != nil {
			return err
		}
	}
}

func (s *fdStore) handle(msg, oob []byte) error {
	var fds []int
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	for _, m := range cmsgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fmt.Errorf("rights: %w", err)
		}
		fds = append(fds, got...)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(msg), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	name := vars["FDNAME"]
	switch {
	case vars["FDSTORE"] == "1":
		for _, fd := range fds {
			s.names = append(s.names, name)
			s.files = append(s.files, os.NewFile(uintptr(fd), name))
		}
		return nil
	case vars["FDSTOREREMOVE"] == "1":
		for i := 0; i < len(s.names); {
			if s.names[i] == name {
				s.files[i].Close()
				s.names = append(s.names[:i], s.names[i+1:]...)
				s.files = append(s.files[:i], s.files[i+1:]...)
				continue
			}
			i++
		}
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	return nil
}

// held returns the names of the descriptors stored now.
func (s *fdStore) held() []string {
	s.collect()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// replace swaps the stored descriptor named name for a memfd holding b.
func (s *fdStore) replace(name string, b []byte) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.names {
		if s.names[i] == name {
			fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
			if err != nil {
				s.t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), name)
			if _, err := f.Write(b); err != nil {
				s.t.Fatal(err)
			}
			s.files[i].Close()
			s.files[i] = f
			return
		}
	}
	s.t.Fatalf("fd store holds no %s (has %v)", name, s.names)
}

// read returns the contents of the stored descriptor named name.
func (s *fdStore) read(name string) []byte {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.names {
		if s.names[i] == name {
			var st unix.Stat_t
			if err := unix.Fstat(int(s.files[i].Fd()), &st); err != nil {
				s.t.Fatal(err)
			}
			b := make([]byte, st.Size)
			if _, err := unix.Pread(int(s.files[i].Fd()), b, 0); err != nil {
				s.t.Fatal(err)
			}
			return b
		}
	}
	s.t.Fatalf("fd store holds no %s (has %v)", name, s.names)
	return nil
}

// xlvsdProc is an xlvsd started as a service manager would start it.
type xlvsdProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer is an io.Writer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startManaged starts bin in the director's namespace with NOTIFY_SOCKET and the store's
// descriptors, and waits until its control socket answers.
func startManaged(t *testing.T, ctx context.Context, ns *testbed.NS, store *fdStore, bin, sock string, args ...string) *xlvsdProc {
	t.Helper()
	store.collect()
	// LISTEN_PID must be the daemon's own pid: the shell's, which exec keeps.
	cmd := ns.Command(ctx, "sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+store.path)
	store.mu.Lock() // the descriptors stay open until the child has its own (Start)
	if len(store.files) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(store.files)), "LISTEN_FDNAMES="+strings.Join(store.names, ":"))
		cmd.ExtraFiles = store.files
	}
	p := &xlvsdProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	err := cmd.Start()
	store.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	c := api.NewClient(sock)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Do(rctx, &api.Request{Op: api.OpInfo})
		cancel()
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("xlvsd exited at start-up (%v):\n%s", p.err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xlvsd did not answer within 15 s:\n%s", p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits (2 s at most) until the daemon's output, copied from a pipe, holds s.
func (p *xlvsdProc) waitLog(s string) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(p.out.String(), s) {
			return true
		}
	}
	return false
}

// stop sends SIGTERM and waits (10 s at most) for a clean exit.
func (p *xlvsdProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("xlvsd did not exit within 10 s of SIGTERM:\n%s", p.out)
	}
	if p.err != nil {
		t.Fatalf("xlvsd exit: %v\n%s", p.err, p.out)
	}
}

// arrivals records when echoes came back.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) add(t time.Time) {
	a.mu.Lock()
	a.at = append(a.at, t)
	a.mu.Unlock()
}

// longestGap is the longest time between two arrivals within [from, to] (the window's
// edges count as arrivals).
func (a *arrivals) longestGap(from, to time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := sort.Search(len(a.at), func(i int) bool { return !a.at[i].Before(from) })
	prev, gap := from, time.Duration(0)
	for ; i < len(a.at) && !a.at[i].After(to); i++ {
		gap = max(gap, a.at[i].Sub(prev))
		prev = a.at[i]
	}
	return max(gap, to.Sub(prev))
}

// TestHitlessRestart: long-lived TCP connections (an echo exchange every 5 ms each) and a
// UDP flow (an echo every millisecond) through a NAT VIP while xlvsd is restarted five
// times (SIGTERM, exit, start: systemctl restart) under a service manager's fd store, and
// once replaced by a differently built binary. No connection may see a reset or an
// error, -L --stats must continue, and the longest interval without a forwarded echo is
// reported. Then a handoff in a format version this build does not read is refused (a
// cold start, with a clear error), and a SIGKILL leaves the interfaces to the kernel.
func TestHitlessRestart(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bed, err := testbed.New(testbed.Options{Layout: testbed.NATTwoArm, Reals: 2, Prefix: "e2ers"})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	e := &env{t: t, ctx: ctx, bed: bed}
	e.serveLineEcho()
	for i, rs := range bed.Reals {
		pc, err := rs.NS.ListenPacket("udp", fmt.Sprintf(":%d", echoPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(traffic.ServeUDPEcho(pc, fmt.Sprintf("rs%d", i+1)))
	}

	// The upgrade: the same source built with another label.
	dir := t.TempDir()
	upgrade := filepath.Join(dir, "xlvsd-upgrade")
	bctx, bcancel := context.WithTimeout(ctx, time.Minute)
	out, err := exec.CommandContext(bctx, "go", "build", "-ldflags", "-X main.buildLabel=e2e-upgrade", "-o", upgrade, "xlvs/cmd/xlvsd").CombinedOutput()
	bcancel()
	if err != nil {
		t.Fatalf("build the upgrade: %v\n%s", err, out)
	}

	store := newFDStore(t)
	sock := filepath.Join(dir, "xlvsd.sock")
	connMax := "65536" // XLVS_RESTART_CONN_MAX measures another size (0: xlvsd's default)
	if v := os.Getenv("XLVS_RESTART_CONN_MAX"); v != "" {
		connMax = v
	}
	args := []string{"--socket", sock, "--state", filepath.Join(dir, "state.json"), "--conn-max", connMax,
		"-i", bed.Ext.Iface, "-i", bed.Int.Iface}
	// XLVS_RESTART_PRIVATE measures the old way: asavie's sockets, closed and opened
	// anew at every restart, the packets of the gap dropped.
	private := os.Getenv("XLVS_RESTART_PRIVATE") != ""
	if private {
		args = append(args, "--private-umem")
	}
	if os.Getenv("XLVS_RESTART_FASTPATH") != "" { // the same with the XDP fast path on
		args = append(args, "--fastpath")
		e.fastPathPeers()
	}
	d := startManaged(t, ctx, bed.Director, store, bins.XLVSD, sock, args...)
	adm := func(a ...string) {
		t.Helper()
		c := exec.CommandContext(ctx, bins.XLVSADM, a...)
		c.Env = append(os.Environ(), api.EnvSocket+"="+sock)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("xlvsadm %v: %v\n%s", a, err, out)
		}
	}
	vip := bed.VIP
	for _, svc := range []struct{ flag, port string }{{"-t", "9"}, {"-u", "7"}} {
		adm("-A", svc.flag, vip.String()+":"+svc.port, "-s", "rr")
		for _, rs := range bed.Reals {
			adm("-a", svc.flag, vip.String()+":"+svc.port, "-r", rs.Addr.String()+":"+svc.port, "-m")
		}
	}
	// A firewall-mark service: UDP to the VIP's port markPort, echoed by the real
	// servers' port 7. Its statistics must continue too (handed over by mark).
	const markPort = 5353
	adm("--add-mark", "-u", fmt.Sprintf("%s:%d", vip, markPort), "-f", "1")
	adm("-A", "-f", "1", "-s", "rr")
	for _, rs := range bed.Reals {
		adm("-a", "-f", "1", "-r", fmt.Sprintf("%s:%d", rs.Addr, echoPort), "-m")
	}
	list := func() map[string]api.Stats {
		resp, err := api.NewClient(sock).Do(ctx, &api.Request{Op: api.OpList})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]api.Stats{}
		for _, s := range resp.Services {
			if s.Protocol == api.ProtoFWMark {
				s.Port = uint16(s.FWMark)
			}
			out[fmt.Sprintf("%s %d", strings.ToLower(s.Protocol), s.Port)] = s.Stats
			for _, ds := range s.Dests {
				out[fmt.Sprintf("%s %d %v", strings.ToLower(s.Protocol), s.Port, ds.Addr)] = ds.Stats
			}
		}
		return out
	}
	active := func() (n uint32) {
		resp, err := api.NewClient(sock).Do(ctx, &api.Request{Op: api.OpList})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range resp.Services {
			if s.Port == 9 {
				for _, ds := range s.Dests {
					n += ds.ActiveConns
				}
			}
		}
		return n
	}

	// Traffic.
	const tcpConns = 8
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var tcpErrs, udpErrs atomic.Int64
	var firstErr atomic.Pointer[string]
	fail := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		firstErr.CompareAndSwap(nil, &s)
	}
	var exchanges atomic.Int64
	tcpAt := &arrivals{}
	for i := 0; i < tcpConns; i++ {
		c, err := bed.Client.NS.DialContext(ctx, "tcp", netip.AddrPortFrom(vip, syncEchoPort).String())
		if err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReader(c)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				line := fmt.Sprintf("conn %d line %d", i, n)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, line+"\n"); err != nil {
					tcpErrs.Add(1)
					fail("tcp %d send: %v", i, err)
					return
				}
				got, err := r.ReadString('\n')
				if err != nil {
					tcpErrs.Add(1)
					fail("tcp %d echo: %v", i, err)
					return
				}
				if _, rest, _ := strings.Cut(strings.TrimSuffix(got, "\n"), " "); rest != line {
					tcpErrs.Add(1)
					fail("tcp %d: echo %q of %q", i, got, line)
					return
				}
				tcpAt.add(time.Now())
				exchanges.Add(1)
			}
		}()
	}
	// readEchoes reads c's echoes until stop, calling got for each; read errors other
	// than the 200 ms deadline count in udpErrs.
	readEchoes := func(c net.Conn, what string, got func()) {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err := c.Read(buf)
			select {
			case <-stop:
				return
			default:
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				udpErrs.Add(1)
				fail("%s receive: %v", what, err)
				continue
			}
			got()
		}
	}
	udp, err := bed.Client.NS.DialContext(ctx, "udp", netip.AddrPortFrom(vip, echoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	udpAt := &arrivals{}
	var udpSent atomic.Int64
	wg.Add(2)
	go func() { // 2000 datagrams a second
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		msg := []byte("ping")
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for k := 0; k < 2; k++ {
				if _, err := udp.Write(msg); err != nil {
					udpErrs.Add(1) // ECONNREFUSED: the kernel answered port unreachable
					fail("udp send: %v", err)
				}
				udpSent.Add(1)
			}
		}
	}()
	var udpEchoes atomic.Int64
	go readEchoes(udp, "udp", func() { udpAt.add(time.Now()); udpEchoes.Add(1) })
	// The fwmark service's flow: a datagram every 5 ms, its echoes counted.
	markUDP, err := bed.Client.NS.DialContext(ctx, "udp", netip.AddrPortFrom(vip, markPort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { markUDP.Close() })
	var markEchoes atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := markUDP.Write([]byte("mark")); err != nil {
				udpErrs.Add(1)
				fail("fwmark udp send: %v", err)
			}
		}
	}()
	go readEchoes(markUDP, "fwmark udp", func() { markEchoes.Add(1) })
	stopTraffic := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopTraffic)

	time.Sleep(500 * time.Millisecond)
	if n := active(); n < tcpConns {
		t.Fatalf("%d active TCP connections listed, want %d", n, tcpConns)
	}
	type restart struct {
		label        string
		udpGap       time.Duration
		tcpGap       time.Duration
		took         time.Duration // SIGTERM to the successor answering
		conns        string
		statsBefore  api.Stats
		statsAfter   api.Stats
		exchangesRun int64
	}
	var results []restart
	// Five restarts, an upgrade, and last a restart with other ring sizes, which cannot
	// take the sockets over (they are sized differently): it opens its own, and the
	// frames of the moment are dropped (TCP retransmits them).
	type step struct {
		bin   string
		extra []string
	}
	steps := []step{{bins.XLVSD, nil}, {bins.XLVSD, nil}, {bins.XLVSD, nil}, {bins.XLVSD, nil}, {bins.XLVSD, nil}, {upgrade, nil},
		{bins.XLVSD, []string{"--rx-ring", "1024"}}}
	var lostKept int64 = -1 // UDP datagrams lost over the restarts that keep their sockets
	for i, st := range steps {
		bin := st.bin
		if st.extra != nil {
			time.Sleep(100 * time.Millisecond) // the echoes in flight come back
			lostKept = udpSent.Load() - udpEchoes.Load()
		}
		before := list()
		ex0 := exchanges.Load()
		t0 := time.Now()
		d.stop(t)
		exited := time.Now()
		old := d
		d = startManaged(t, ctx, bed.Director, store, bin, sock, append(args, st.extra...)...)
		took := time.Since(t0)
		if os.Getenv("XLVS_RESTART_DEBUG") != "" {
			lines := strings.Split(strings.TrimSpace(old.out.String()), "\n")
			t.Logf("SIGTERM %s, exited %s\nold:\n%s\nnew:\n%s", t0.UTC().Format("15:04:05.000000"), exited.UTC().Format("15:04:05.000000"),
				strings.Join(lines[max(0, len(lines)-4):], "\n"), d.out)
		}
		if !d.waitLog("took over from the previous xlvsd") {
			t.Fatalf("restart %d: the new xlvsd did not take over:\n%s", i+1, d.out)
		}
		// Both interfaces' sockets (one queue each) change hands, except when sized otherwise.
		wantAdopted, refusal := "sockets_adopted=2", false
		switch {
		case private:
			wantAdopted = "sockets_adopted=0" // none handed over, none refused
		case st.extra != nil:
			wantAdopted, refusal = "sockets_adopted=0", true
		}
		if !strings.Contains(d.out.String(), wantAdopted) || strings.Contains(d.out.String(), "not taking over the previous xlvsd's AF_XDP sockets") != refusal {
			t.Errorf("restart %d: want %s (and a refusal logged: %v):\n%s", i+1, wantAdopted, refusal, d.out)
		}
		time.Sleep(600 * time.Millisecond)
		store.collect() // the successor's FDSTOREREMOVE
		after := list()
		for k, b := range before {
			a := after[k]
			if a.Conns < b.Conns || a.InPkts < b.InPkts || a.OutPkts < b.OutPkts || a.InBytes < b.InBytes || a.OutBytes < b.OutBytes {
				t.Errorf("restart %d: %s statistics went back: %+v before, %+v after", i+1, k, b, a)
			}
		}
		if after["udp 7"].InPkts <= before["udp 7"].InPkts {
			t.Errorf("restart %d: UDP in-packets did not grow: %d before, %d after", i+1, before["udp 7"].InPkts, after["udp 7"].InPkts)
		}
		if b, a := before["fwmark 1"], after["fwmark 1"]; b.InPkts == 0 || a.InPkts <= b.InPkts {
			t.Errorf("restart %d: fwmark service in-packets %d before, %d after; want traffic before and more after", i+1, b.InPkts, a.InPkts)
		}
		if n := active(); n < tcpConns {
			t.Errorf("restart %d: %d active TCP connections listed, want %d", i+1, n, tcpConns)
		}
		label := "same binary"
		if st.extra != nil {
			label = "other ring sizes: new sockets"
		}
		if bin == upgrade {
			label = "upgrade"
			if !strings.Contains(d.out.String(), "writer=\"xlvsd ") || !strings.Contains(d.out.String(), "(dev, go") {
				t.Errorf("the upgrade does not log the predecessor's build:\n%s", d.out)
			}
		}
		line := ""
		for _, l := range strings.Split(d.out.String(), "\n") {
			if strings.Contains(l, "took over") {
				line = l
			}
		}
		results = append(results, restart{
			label: label, took: took,
			udpGap: udpAt.longestGap(t0.Add(-100*time.Millisecond), t0.Add(500*time.Millisecond)),
			tcpGap: tcpAt.longestGap(t0.Add(-100*time.Millisecond), t0.Add(500*time.Millisecond)),
			conns:  line, statsBefore: before["tcp 9"], statsAfter: after["tcp 9"], exchangesRun: exchanges.Load() - ex0,
		})
		if p := firstErr.Load(); p != nil {
			t.Fatalf("restart %d: %s (tcp errors %d, udp errors %d)", i+1, *p, tcpErrs.Load(), udpErrs.Load())
		}
	}
	stopTraffic()
	var worstUDP, worstTCP time.Duration
	for i, r := range results {
		worstUDP, worstTCP = max(worstUDP, r.udpGap), max(worstTCP, r.tcpGap)
		t.Logf("restart %d (%s): longest gap UDP %v, TCP %v; SIGTERM to answering successor %v; TCP 9 conns %d→%d in-pkts %d→%d; %d echoes since; %s",
			i+1, r.label, r.udpGap.Round(time.Millisecond), r.tcpGap.Round(time.Millisecond), r.took.Round(time.Millisecond),
			r.statsBefore.Conns, r.statsAfter.Conns, r.statsBefore.InPkts, r.statsAfter.InPkts, r.exchangesRun, r.conns)
	}
	t.Logf("%d TCP echo exchanges, %d UDP datagrams sent, %d echoed, %d fwmark echoes; %d TCP errors, %d UDP errors; worst gap UDP %v, TCP %v",
		exchanges.Load(), udpSent.Load(), len(udpAt.at), markEchoes.Load(), tcpErrs.Load(), udpErrs.Load(), worstUDP.Round(time.Millisecond), worstTCP.Round(time.Millisecond))
	if tcpErrs.Load() != 0 || udpErrs.Load() != 0 {
		t.Fatalf("errors: %d TCP, %d UDP (first: %s)", tcpErrs.Load(), udpErrs.Load(), *firstErr.Load())
	}
	// The frames that arrive while the sockets change hands wait in their RX rings: none
	// is lost. Allow for the few a loaded machine may lose elsewhere (the old way lost
	// every datagram of the gap, 100 to 300 a restart).
	t.Logf("UDP datagrams lost over the %d restarts that kept their sockets: %d", len(steps)-1, lostKept)
	if !private && (lostKept < 0 || lostKept > 20) {
		t.Errorf("%d UDP datagrams lost over the restarts that kept their sockets, want at most 20 (of %d sent)", lostKept, udpSent.Load())
	}
	// The hold bounds the gap (3 s by default); a gap near it would mean no takeover.
	if worstUDP > time.Second || worstTCP > time.Second {
		t.Errorf("worst forwarding gap UDP %v, TCP %v: over a second", worstUDP, worstTCP)
	}

	// A handoff this build cannot read: refused with the reason, cold start.
	d.stop(t)
	store.collect()
	blob := store.read("xlvs-handoff")
	blob[8], blob[9] = 99, 0 // format version 99
	store.replace("xlvs-handoff", blob)
	d = startManaged(t, ctx, bed.Director, store, bins.XLVSD, sock, args...)
	if !d.waitLog("xlvsd running") || !strings.Contains(d.out.String(), "handoff from the previous xlvsd refused") || !strings.Contains(d.out.String(), "format version 99, this xlvsd reads version 1") {
		log := d.out.String()
		t.Fatalf("version 99 handoff: want a refusal naming the versions, log:\n%s", log)
	}
	time.Sleep(100 * time.Millisecond)
	store.collect()
	if held := store.held(); len(held) != 0 {
		t.Errorf("after a refused handoff the store still holds %v", held)
	}
	if resp, err := api.NewClient(sock).Do(ctx, &api.Request{Op: api.OpInfo}); err != nil || resp.Info.Conns != 0 {
		t.Errorf("cold start: %+v, %v; want an empty table", resp, err)
	}
	// SIGKILL: nothing is handed over, the kernel gets the interfaces back.
	d.cmd.Process.Kill()
	<-d.done
	store.collect()
	if held := store.held(); len(held) != 0 {
		t.Errorf("after SIGKILL the store holds %v", held)
	}
	for _, ifc := range []string{bed.Ext.Iface, bed.Int.Iface} {
		out, err := bed.Director.Run(ctx, "ip", "link", "show", "dev", ifc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "xdp") {
			t.Errorf("after SIGKILL %s still has an XDP program:\n%s", ifc, out)
		}
	}
}
