package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/control/api"
)

var bins bench.Binaries

// TestMain builds xlvsd and xlvsadm once (unless XLVS_BIN points at built ones).
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		dir := os.Getenv("XLVS_BIN")
		if dir == "" {
			tmp, err := os.MkdirTemp("", "xlvs-e2e-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer os.RemoveAll(tmp)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp+"/", "xlvs/cmd/xlvsd", "xlvs/cmd/xlvsadm")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			err = cmd.Run()
			cancel()
			if err != nil {
				fmt.Fprintln(os.Stderr, "build binaries:", err)
				os.Exit(1)
			}
			dir = tmp
		}
		bins = bench.Binaries{XLVSD: filepath.Join(dir, "xlvsd"), XLVSADM: filepath.Join(dir, "xlvsadm")}
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("end-to-end test: CI is set but not running as root")
		}
		t.Skip("end-to-end test: needs root")
	}
}

// env is a testbed with servers on every real server and a running xlvsd.
type env struct {
	t       *testing.T
	ctx     context.Context
	bed     *testbed.Bed
	d       *bench.Daemon   // the daemon the helpers talk to (the last one started)
	daemons []*bench.Daemon // every daemon started (startDaemon): each is stopped and checked on cleanup
}

// Ports the real servers listen on.
const (
	httpPort = 80 // traffic.ServeHTTP
	whoPort  = 81 // answers with the client address it sees
	echoPort = 7  // UDP echo
)

func setup(t *testing.T, layout testbed.Layout, daemonArgs ...string) *env {
	t.Helper()
	return setupBed(t, testbed.Options{Layout: layout, Reals: 2, Prefix: "e2e", IPv6: true}, daemonArgs...)
}

// setupBed is setup on a testbed built with opts.
func setupBed(t *testing.T, opts testbed.Options, daemonArgs ...string) *env {
	t.Helper()
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	bed, err := testbed.New(opts)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	for i, rs := range bed.Reals {
		name := fmt.Sprintf("rs%d", i+1)
		ln, err := rs.NS.Listen("tcp", fmt.Sprintf(":%d", httpPort))
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, name)
		t.Cleanup(func() { srv.Close() })
		wln, err := rs.NS.Listen("tcp", fmt.Sprintf(":%d", whoPort))
		if err != nil {
			t.Fatal(err)
		}
		who := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.RemoteAddr)
		}), ReadHeaderTimeout: 5 * time.Second}
		go who.Serve(wln)
		t.Cleanup(func() { who.Close() })
		pc, err := rs.NS.ListenPacket("udp", fmt.Sprintf(":%d", echoPort))
		if err != nil {
			t.Fatal(err)
		}
		stop := traffic.ServeUDPEcho(pc, name)
		t.Cleanup(stop)
	}
	e := &env{t: t, ctx: ctx, bed: bed}
	// Registered before any daemon starts, so it runs before the testbed goes away; it
	// sees every daemon startDaemon added, including replacements started by the test.
	t.Cleanup(func() {
		for i, d := range e.daemons {
			if err := d.Stop(); err != nil {
				t.Errorf("xlvsd #%d exit: %v\n%s", i+1, err, d.Log())
			} else if t.Failed() {
				t.Logf("xlvsd #%d log:\n%s", i+1, d.Log())
			}
		}
	})
	args := []string{"-i", bed.Ext.Iface}
	if bed.Int != bed.Ext {
		args = append(args, "-i", bed.Int.Iface)
	}
	e.startDaemon(append(args, daemonArgs...)...)
	return e
}

// startDaemon starts xlvsd on the director with args and makes it e.d. Cleanup stops it
// and fails the test unless it exits cleanly — also when the test already stopped it
// (Stop returns the same exit status again).
func (e *env) startDaemon(args ...string) *bench.Daemon {
	e.t.Helper()
	d, err := bench.StartDaemon(e.ctx, e.bed.Director, bins, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.daemons = append(e.daemons, d)
	e.d = d
	return d
}

// restart stops the running daemon (failing unless it exits cleanly) and starts a new
// one with args in its place.
func (e *env) restart(args ...string) *bench.Daemon {
	e.t.Helper()
	if err := e.d.Stop(); err != nil {
		e.t.Fatalf("xlvsd exit: %v\n%s", err, e.d.Log())
	}
	return e.startDaemon(args...)
}

func (e *env) adm(args ...string) string {
	e.t.Helper()
	out, err := e.d.Adm(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// natService defines proto VIP:port → every real server (masquerading) with scheduler s.
func (e *env) natService(flag string, vip netip.Addr, port int, s string) string {
	e.t.Helper()
	svc := netip.AddrPortFrom(vip, uint16(port)).String()
	e.adm("-A", flag, svc, "-s", s)
	for _, rs := range e.bed.Reals {
		addr := rs.Addr
		if vip.Is6() {
			addr = rs.Addr6
		}
		e.adm("-a", flag, svc, "-r", netip.AddrPortFrom(addr, uint16(port)).String(), "-m", "-w", "1")
	}
	return svc
}

func (e *env) list() []api.Service {
	e.t.Helper()
	resp, err := e.d.Client().Do(e.ctx, &api.Request{Op: api.OpList})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Services
}

func (e *env) service(proto string, vip netip.Addr, port int) api.Service {
	e.t.Helper()
	for _, s := range e.list() {
		if s.Protocol == proto && s.Addr == vip && s.Port == uint16(port) {
			return s
		}
	}
	e.t.Fatalf("service %s %v:%d not listed", proto, vip, port)
	return api.Service{}
}

func (e *env) dataplaneCounters() map[string]uint64 {
	e.t.Helper()
	resp, err := e.d.Client().Do(e.ctx, &api.Request{Op: api.OpDataplaneStats})
	if err != nil {
		e.t.Fatal(err)
	}
	sum := map[string]uint64{}
	for _, q := range append(resp.Dataplane, resp.XDPStats...) {
		for k, v := range q.Counters {
			sum[k] += v
		}
	}
	return sum
}

// burstGrew checks that the workers forwarded packets as their flow's burst (the
// "burst" counter, dataplane/flowrun.go) since the counters were before: a stream's
// segments arrive back to back, so real transfers take that path, and their byte-exact
// arrival is what tests it end to end.
func (e *env) burstGrew(before map[string]uint64) {
	e.t.Helper()
	after := e.dataplaneCounters()
	b, f := after["burst"]-before["burst"], after["forwarded"]-before["forwarded"]
	e.t.Logf("%d of %d packets forwarded as their flow's burst", b, f)
	if b == 0 {
		e.t.Errorf("no packet of the transfers was forwarded as its flow's burst (%d forwarded)", f)
	}
}

// noChecksumErrors checks the receivers' checksum-error counters (client and every real
// server): a rewrite that broke a checksum shows up there.
func (e *env) noChecksumErrors() {
	e.t.Helper()
	hosts := append([]*testbed.Host{e.bed.Client}, e.bed.Reals...)
	for _, h := range hosts {
		c, err := h.NS.Counters()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, k := range []string{"Tcp.InCsumErrors", "Udp.InCsumErrors", "Udp6.InCsumErrors", "Ip.InHdrErrors", "Ip6.InHdrErrors"} {
			if c[k] != 0 {
				e.t.Errorf("%s: %s = %d", h.NS.Name(), k, c[k])
			}
		}
		// Tcp.InErrs also counts segments dropped because a busy socket's backlog was
		// full (TCPBacklogDrop) — load, not corruption; anything beyond that is an error.
		if bad := int64(c["Tcp.InErrs"]) - int64(c["TcpExt.TCPBacklogDrop"]) - int64(c["Tcp.InCsumErrors"]); bad > 0 {
			e.t.Errorf("%s: Tcp.InErrs = %d beyond backlog drops (%d): %v", h.NS.Name(), c["Tcp.InErrs"], c["TcpExt.TCPBacklogDrop"], tcpExt(c))
		}
	}
}

func tcpExt(c map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range c {
		if v != 0 && strings.HasPrefix(k, "TcpExt.") {
			out[k] = v
		}
	}
	return out
}

func (e *env) dial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return e.bed.Client.NS.DialContext
}

func (e *env) get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	tr := &http.Transport{DialContext: e.dial(), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func httpURL(a netip.Addr, port int, path string) string {
	return "http://" + netip.AddrPortFrom(a, uint16(port)).String() + path
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
