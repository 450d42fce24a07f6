package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/control/api"
)

// admErr runs xlvsadm and returns its exit status and standard error.
func (e *env) admErr(args ...string) (int, string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, bins.XLVSADM, args...)
	cmd.Env = append(os.Environ(), "XLVS_SOCKET="+e.d.Socket)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return 0, stderr.String()
}

func (e *env) admStdin(stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(e.ctx, bins.XLVSADM, args...)
	cmd.Env = append(os.Environ(), "XLVS_SOCKET="+e.d.Socket)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCLIAgainstDaemon drives xlvsadm against a running xlvsd: -S/-R round trip, errors
// and exit statuses, --set/--timeout, -L -c with a live connection, -Z.
func TestCLIAgainstDaemon(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	vip := netip.AddrPortFrom(e.bed.VIP, httpPort).String()
	e.adm("-A", "-t", vip, "-s", "wrr")
	e.adm("-a", "-t", vip, "-r", netip.AddrPortFrom(e.bed.Reals[0].Addr, httpPort).String(), "-m", "-w", "3", "-x", "1000", "-y", "10")
	e.adm("-a", "-t", vip, "-r", netip.AddrPortFrom(e.bed.Reals[1].Addr, httpPort).String(), "-m", "-w", "1")
	e.adm("-A", "-u", netip.AddrPortFrom(e.bed.VIP6, echoPort).String(), "-s", "rr")
	e.adm("-a", "-u", netip.AddrPortFrom(e.bed.VIP6, echoPort).String(), "-r", netip.AddrPortFrom(e.bed.Reals[0].Addr6, echoPort).String(), "-m")
	saved := e.adm("-S", "-n")
	if !strings.Contains(saved, "-A -t "+vip+" -s wrr") || !strings.Contains(saved, "-m -w 3") {
		t.Fatalf("-S output:\n%s", saved)
	}
	listBefore := e.adm("-L", "-n")

	// Round trip: clear, restore from the saved rules, save again.
	e.adm("-C")
	if out := e.adm("-L", "-n"); strings.Contains(out, "TCP") {
		t.Fatalf("rules left after -C:\n%s", out)
	}
	if out, err := e.admStdin(saved, "-R"); err != nil {
		t.Fatalf("-R: %v %s", err, out)
	}
	if again := e.adm("-S", "-n"); again != saved {
		t.Fatalf("-S after -R differs:\n%s\nwant\n%s", again, saved)
	}
	if after := e.adm("-L", "-n"); after != listBefore {
		t.Fatalf("-L -n after -R differs:\n%s\nwant\n%s", after, listBefore)
	}
	// A bad rule line changes nothing and is named.
	out, err := e.admStdin("-A -t 198.18.1.100:81 -s rr\n-a -t 198.18.1.100:81 -r 198.18.2.11:81 -m -w 99999\n", "-R")
	if err == nil || !strings.Contains(out, "line 2") {
		t.Fatalf("bad -R input accepted or not named: %v %s", err, out)
	}
	if again := e.adm("-S", "-n"); again != saved {
		t.Fatalf("a failed -R changed the rules:\n%s", again)
	}

	// Errors: as ipvsadm, 255 when the daemon (ipvsadm: the kernel) refuses, 2 for a bad
	// command line.
	for _, tc := range []struct {
		args   []string
		status int
		text   string
	}{
		{[]string{"-A", "-t", vip, "-s", "rr"}, 255, "exists"},
		{[]string{"-a", "-t", "198.18.1.100:99", "-r", "198.18.2.11:99", "-m"}, 255, "ot defined"},
		{[]string{"-d", "-t", vip, "-r", "198.18.2.99:80"}, 255, "destination"},
		{[]string{"-A", "-t", "198.18.1.100:80", "-s", "nosuch"}, 2, "scheduler"},
		{[]string{"-a", "-t", vip, "-r", "198.18.2.13:80", "-w", "-3"}, 2, "weight"},
		{[]string{"-A", "-t", "not-an-address!:80"}, 2, "address"},
		{[]string{"-A"}, 2, ""},
	} {
		status, stderr := e.admErr(tc.args...)
		if status != tc.status || !strings.Contains(strings.ToLower(stderr), strings.ToLower(tc.text)) {
			t.Errorf("xlvsadm %v: status %d stderr %q; want %d and %q", tc.args, status, stderr, tc.status, tc.text)
		}
	}

	// Timeouts.
	e.adm("--set", "600", "0", "30")
	if got := e.adm("-L", "--timeout"); got != "Timeout (tcp tcpfin udp): 600 120 30\n" {
		t.Fatalf("--timeout after --set 600 0 30: %q", got)
	}

	// A live TCP connection shows ESTABLISHED in -L -c with the client's address.
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "tcp", vip)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr)
	conns := e.adm("-L", "-n", "-c")
	if !strings.Contains(conns, "ESTABLISHED") || !strings.Contains(conns, fmt.Sprintf("%s:%d", local.IP, local.Port)) {
		t.Fatalf("-L -n -c does not show the open connection from %v:\n%s", local, conns)
	}
	stats := e.adm("-L", "-n", "--stats")
	if !strings.Contains(stats, "Conns") {
		t.Fatalf("--stats:\n%s", stats)
	}
	if rate := e.adm("-L", "-n", "--rate"); !strings.Contains(rate, "CPS    InPPS   OutPPS    InBPS   OutBPS") {
		t.Fatalf("--rate:\n%s", rate)
	}
	dps := e.adm("--dataplane-stats")
	for _, want := range []string{"ext0", "int0", "rx_packets", "tx_ring_full", "drop_no_neighbour", "xdp_redirected"} {
		if !strings.Contains(dps, want) {
			t.Fatalf("--dataplane-stats lacks %q:\n%s", want, dps)
		}
	}
	conn.Close()
	e.adm("-Z")
	for _, s := range e.list() {
		if s.Stats.Conns != 0 || s.Stats.InPkts != 0 {
			t.Fatalf("-Z left %+v", s.Stats)
		}
	}
}

// TestRestartRestores: a restarted xlvsd restores every service, server, weight and
// timeout from its state file, and forwards with them.
func TestRestartRestores(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--state", state}
	e.restart(args...)
	vip := e.natService("-t", e.bed.VIP, httpPort, "wrr")
	e.adm("-e", "-t", vip, "-r", netip.AddrPortFrom(e.bed.Reals[0].Addr, httpPort).String(), "-m", "-w", "5", "-x", "300")
	e.natService("-u", e.bed.VIP6, echoPort, "rr")
	e.adm("--set", "700", "70", "40")
	wantRules, wantTimeout := e.adm("-S", "-n"), e.adm("-L", "--timeout")
	e.restart(args...)
	if got := e.adm("-S", "-n"); got != wantRules {
		t.Fatalf("rules after restart:\n%s\nwant\n%s", got, wantRules)
	}
	if got := e.adm("-L", "--timeout"); got != wantTimeout {
		t.Fatalf("timeouts after restart %q, want %q", got, wantTimeout)
	}
	if _, err := e.get(httpURL(e.bed.VIP, httpPort, "/")); err != nil {
		t.Fatalf("traffic after restart: %v", err)
	}
}

// TestMetricsEndpoint scrapes --metrics-listen and parses it with Prometheus's parser.
func TestMetricsEndpoint(t *testing.T) {
	e := setup(t, testbed.NATOneArm, "--metrics-listen", "127.0.0.1:9110")
	e.natService("-t", e.bed.VIP, httpPort, "rr")
	for i := 0; i < 3; i++ {
		if _, err := e.get(httpURL(e.bed.VIP, httpPort, "/")); err != nil {
			t.Fatal(err)
		}
	}
	tr := &http.Transport{DialContext: e.bed.Director.DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://127.0.0.1:9110/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	c := fams["xlvs_service_connections_total"]
	if c == nil || len(c.Metric) != 1 || c.Metric[0].GetCounter().GetValue() != 3 {
		t.Fatalf("xlvs_service_connections_total = %v, want 3", c)
	}
	if x := fams["xlvs_xdp_packets_total"]; x == nil {
		t.Fatal("no XDP counters")
	}
	io.Copy(io.Discard, resp.Body)
}

// TestLiveChangesUnderLoad: adding, editing and draining real servers, changing the
// scheduler and weights, adding and removing other services, all while HTTP load runs:
// no request fails.
func TestLiveChangesUnderLoad(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	vip := netip.AddrPortFrom(e.bed.VIP, httpPort).String()
	rs := func(i int) string { return netip.AddrPortFrom(e.bed.Reals[i].Addr, httpPort).String() }
	e.adm("-A", "-t", vip, "-s", "rr")
	e.adm("-a", "-t", vip, "-r", rs(0), "-m")

	ctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
	defer cancel()
	const requests = 25000 // several seconds: every change below lands while it runs
	var res traffic.HTTPLoadResult
	var loadErr error
	var loadEnd time.Time
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, loadErr = traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{
			URL: "http://" + vip + "/", Requests: requests, Concurrency: 20, Dial: e.dial(), Timeout: 10 * time.Second,
		})
		loadEnd = time.Now()
	}()
	step := func(args ...string) {
		time.Sleep(100 * time.Millisecond)
		e.adm(args...)
	}
	step("-a", "-t", vip, "-r", rs(1), "-m", "-w", "2")
	step("-E", "-t", vip, "-s", "wrr")
	step("-e", "-t", vip, "-r", rs(0), "-m", "-w", "5")
	step("-A", "-u", netip.AddrPortFrom(e.bed.VIP, echoPort).String(), "-s", "rr")
	step("-a", "-u", netip.AddrPortFrom(e.bed.VIP, echoPort).String(), "-r", netip.AddrPortFrom(e.bed.Reals[0].Addr, echoPort).String(), "-m")
	step("-D", "-u", netip.AddrPortFrom(e.bed.VIP, echoPort).String())
	step("--set", "800", "100", "200")
	// Drain rs1 (weight 0: no new connections, existing ones finish), then remove it once
	// every connection to it is closed at both ends (TIME_WAIT or CLOSE).
	step("-e", "-t", vip, "-r", rs(0), "-m", "-w", "0")
	drainBegin := time.Now()
	for open := -1; open != 0; time.Sleep(20 * time.Millisecond) {
		resp, err := e.d.Client().Do(e.ctx, &api.Request{Op: api.OpListConns})
		if err != nil {
			t.Fatal(err)
		}
		open = 0
		for _, c := range resp.Conns {
			if c.Dest.String() == rs(0) && c.State != "TIME_WAIT" && c.State != "CLOSE" {
				open++
			}
		}
		if open != 0 && time.Since(drainBegin) > 10*time.Second {
			t.Fatalf("%d connections to the drained %s still open after 10 s", open, rs(0))
		}
	}
	t.Logf("%s drained in %v", rs(0), time.Since(drainBegin))
	step("-d", "-t", vip, "-r", rs(0))
	step("-a", "-t", vip, "-r", rs(0), "-m", "-w", "1")
	step("-E", "-t", vip, "-s", "rr")
	stepsDone := time.Now()
	wg.Wait()
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	t.Logf("%s", res.String())
	if loadEnd.Before(stepsDone) {
		t.Fatalf("the load ended %v before the last change: the test did not test changes under load", stepsDone.Sub(loadEnd))
	}
	if res.Failed != 0 || res.OK != requests {
		t.Fatalf("%d of %d requests failed during live changes: %v", res.Failed, res.Requests, res.FirstErrors)
	}
	if len(res.ByServer) != 2 {
		t.Fatalf("load reached %v, want both servers", res.ByServer)
	}
}
