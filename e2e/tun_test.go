package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// decapBinary returns an xlvs-decap binary: $XLVS_BIN/xlvs-decap when the Makefile built
// one, else one built now into the test's temporary directory.
func decapBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("XLVS_BIN"); dir != "" {
		p := filepath.Join(dir, "xlvs-decap")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "xlvs-decap")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", out, "xlvs/cmd/xlvs-decap").CombinedOutput(); err != nil {
		t.Fatalf("build xlvs-decap: %v\n%s", err, b)
	}
	return out
}

// decapProc is one xlvs-decap running on a real server.
type decapProc struct {
	host *testbed.Host
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{} // closed when its stderr is drained
}

func (p *decapProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startDecap runs xlvs-decap --mode mode (and extra arguments) on every real server's
// interface, waits until each has attached, and stops them (SIGTERM, wanting a clean
// exit) when the test ends.
func (e *env) startDecap(bin, mode string, extra ...string) []*decapProc {
	t := e.t
	t.Helper()
	var procs []*decapProc
	for _, rs := range e.bed.Reals {
		p := &decapProc{host: rs, done: make(chan struct{})}
		p.cmd = rs.NS.Command(e.ctx, bin, append([]string{"-i", rs.Iface, "--mode", mode}, extra...)...)
		stderr, err := p.cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start xlvs-decap in %s: %v", rs.NS.Name(), err)
		}
		ready := make(chan struct{})
		go func() {
			defer close(p.done)
			sc := bufio.NewScanner(stderr)
			signalled := false
			for sc.Scan() {
				p.mu.Lock()
				p.log.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
				if !signalled && strings.Contains(sc.Text(), "decapsulating") {
					close(ready)
					signalled = true
				}
			}
		}()
		t.Cleanup(func() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.done
			err := p.cmd.Wait()
			switch {
			case err != nil:
				t.Errorf("xlvs-decap in %s: %v\n%s", rs.NS.Name(), err, p.output())
			case !strings.Contains(p.output(), "detached"):
				t.Errorf("xlvs-decap in %s exited without its report:\n%s", rs.NS.Name(), p.output())
			case strings.Contains(p.output(), "decapsulated 0,"):
				t.Errorf("xlvs-decap in %s decapsulated nothing:\n%s", rs.NS.Name(), p.output())
			case t.Failed() || testing.Verbose():
				t.Logf("xlvs-decap in %s:\n%s", rs.NS.Name(), p.output())
			}
		})
		select {
		case <-ready:
		case <-p.done:
			t.Fatalf("xlvs-decap in %s exited before attaching:\n%s", rs.NS.Name(), p.output())
		case <-time.After(10 * time.Second):
			t.Fatalf("xlvs-decap in %s did not attach within 10s:\n%s", rs.NS.Name(), p.output())
		}
		procs = append(procs, p)
	}
	return procs
}

// TestTUN: IPIP / ip6ip6 tunnelling in the L2 layout, the real servers decapsulating
// with xlvs-decap (XDP): 10 MiB byte-exact each way over TCP, UDP echo answered from the
// VIP, the real server seeing the client's address, over IPv4 and IPv6, no checksum
// errors. The upload is also the PMTU test: the client sends full-size segments (DF set
// in IPv4, never fragmented in IPv6) that no longer fit once encapsulated, and completes
// only because the director answers with fragmentation-needed / Packet Too Big.
func TestTUN(t *testing.T) {
	e := setup(t, testbed.L2)
	bin := decapBinary(t)
	e.startDecap(bin, "xdp")
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip := e.bed.VIPFor(v6)
		e.vipServices(vip, "-i")
		if out := e.adm("-L", "-n"); !strings.Contains(out, "Tunnel") {
			t.Fatalf("listing shows no Tunnel destination:\n%s", out)
		}
		before := e.dataplaneCounters()
		icmpBefore := before["icmp_sent"]
		e.transferBothWays(vip, 10<<20, e.bed.Client.AddrFor(v6))
		e.burstGrew(before)
		c := e.dataplaneCounters()
		if c["icmp_sent"] == icmpBefore {
			t.Errorf("the director sent no ICMP while the client uploaded full-size packets: the PMTU path was not exercised (counters %v)", c)
		}
		if c["encapsulated"] == 0 {
			t.Errorf("nothing encapsulated: %v", c)
		}
		e.udpEcho(vip)
		st := e.service("tcp", vip, httpPort).Stats
		if st.InBytes < 10<<20 || st.OutPkts != 0 {
			t.Errorf("tcp stats %+v: want ≥ 10 MiB in and no packets out (TUN replies bypass the director)", st)
		}
		e.logDrops()
	})
	e.t = t
	e.noChecksumErrors()
}

// TestTUNDecapTC is TestTUN's IPv4 and IPv6 traffic with the real servers decapsulating
// at tc ingress (xlvs-decap --mode tc), the fallback where XDP cannot attach. The director
// must have tunnelled it (its encapsulated counter covers at least the uploaded bytes in
// full-size packets, and no reply came back through it), and each decapsulator must
// report packets decapsulated (startDecap's cleanup).
func TestTUNDecapTC(t *testing.T) {
	e := setup(t, testbed.L2)
	bin := decapBinary(t)
	e.startDecap(bin, "tc")
	for _, v6 := range []bool{false, true} {
		vip := e.bed.VIPFor(v6)
		e.vipServices(vip, "-i")
		before := e.dataplaneCounters()["encapsulated"]
		const size = 2 << 20
		e.transferBothWays(vip, size, e.bed.Client.AddrFor(v6))
		e.udpEcho(vip)
		// The upload alone is at least size/1500 packets at MTU 1500 (one segment per
		// frame at XDP), each encapsulated once.
		if got := e.dataplaneCounters()["encapsulated"] - before; got < size/1500 {
			t.Errorf("%v: the director encapsulated %d packets, want at least %d for the %d-byte upload", vip, got, size/1500, size)
		}
		if st := e.service("tcp", vip, httpPort).Stats; st.InBytes < size || st.OutPkts != 0 {
			t.Errorf("%v: tcp stats %+v: want ≥ %d bytes in and no packets out (TUN replies bypass the director)", vip, st, size)
		}
	}
	e.logDrops()
	e.noChecksumErrors()
}
