package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"xlvs/bench/testbed"
	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/control/ipvsadm"
	"xlvs/dataplane"
)

// syncFake is the dataplane's sync side: a queue the test fills, what a backup applied,
// and what SetSyncMaster was last told.
type syncFake struct {
	mu      sync.Mutex
	queue   []dataplane.SyncConn
	applied []dataplane.SyncConn
	policy  *conntrack.SyncPolicy
	persist bool
}

func (f *syncFake) Now() int64 { return time.Now().UnixNano() }

func (f *syncFake) SyncStats() dataplane.SyncStats {
	return dataplane.SyncStats{Queued: 5, QueueFull: 2}
}

func (f *syncFake) SetSyncMaster(p *conntrack.SyncPolicy, persist bool) {
	f.mu.Lock()
	f.policy, f.persist = p, persist
	f.mu.Unlock()
}

func (f *syncFake) DrainSync(out []dataplane.SyncConn) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := copy(out, f.queue)
	f.queue = f.queue[n:]
	return n
}

func (f *syncFake) ApplySync(c *dataplane.SyncConn) error {
	f.mu.Lock()
	f.applied = append(f.applied, *c)
	f.mu.Unlock()
	return nil
}

func (f *syncFake) WalkSync(func(*dataplane.SyncConn) bool) {}

func (f *syncFake) push(e dataplane.SyncConn) {
	f.mu.Lock()
	e.Queued = f.Now()
	f.queue = append(f.queue, e)
	f.mu.Unlock()
}

func (f *syncFake) nApplied() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

// syncPair is testbed.NewPair for a test: two namespaces joined by a veth pair "sync0"
// (198.18.9.1/24 and fd00:9::1/64 in a, .2 and ::2 in b), removed when the test ends.
func syncPair(t *testing.T) (a, b *testbed.NS) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set and this test needs root (network namespaces)")
		}
		t.Skip("needs root for network namespaces")
	}
	a, b, err := testbed.NewPair("ctl-sync")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); a.Close() })
	return a, b
}

func handleIn(t *testing.T, ns *testbed.NS, d *Daemon, req *api.Request) *api.Response {
	t.Helper()
	var resp *api.Response
	if err := ns.Do(func() error { resp = d.Handle(context.Background(), req); return nil }); err != nil {
		t.Fatal(err)
	}
	return resp
}

// xlvsadm runs an xlvsadm command line against d (in ns) and returns what it prints, or
// the message it prints for an error.
func xlvsadm(t *testing.T, ns *testbed.NS, d *Daemon, args ...string) string {
	t.Helper()
	cmd, err := ipvsadm.Parser{}.Parse(args)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	var resps []*api.Response
	for i := range cmd.Requests {
		r := handleIn(t, ns, d, &cmd.Requests[i])
		if r.Error != nil {
			return ipvsadm.ErrorMessage(&cmd.Requests[i], r.Error)
		}
		resps = append(resps, r)
	}
	var buf bytes.Buffer
	if err := ipvsadm.Format(&buf, cmd, resps...); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestSyncDaemonAPI: xlvsadm --start-daemon / --stop-daemon / -L --daemon against the
// control daemon, byte for byte as ipvsadm prints them; a master hands the dataplane the
// daemon's sync policy and a backup in another namespace applies what it sends; the
// counters show in --dataplane-stats and the metrics; the running daemons are saved in the
// state file and come back with it.
func TestSyncDaemonAPI(t *testing.T) {
	a, b := syncPair(t)
	path := filepath.Join(t.TempDir(), "state.json")
	pol := conntrack.SyncPolicy{Threshold: 2, Period: 20}
	fa, fb := &syncFake{}, &syncFake{}
	da := newDaemonOpts(t, Options{StatePath: path, SyncPolicy: &pol, SyncPersistMode: true, syncDP: fa})
	db := newDaemonOpts(t, Options{syncDP: fb})
	t.Cleanup(func() { da.CloseSync(); db.CloseSync() })

	if out := xlvsadm(t, a, da, "-L", "--daemon"); out != "" {
		t.Fatalf("no daemon yet: %q", out)
	}
	if out := xlvsadm(t, b, db, "--start-daemon", "backup", "--mcast-interface", "sync0"); out != "" {
		t.Fatalf("start backup: %q", out)
	}
	if out := xlvsadm(t, a, da, "--start-daemon", "master", "--mcast-interface", "sync0"); out != "" {
		t.Fatalf("start master: %q", out)
	}
	// ipvsadm 1.31's list_daemon over the kernel's answer (every default filled in).
	if out, want := xlvsadm(t, a, da, "-L", "--daemon"), "master sync daemon (mcast=sync0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"; out != want {
		t.Errorf("-L --daemon:\n%q\nwant\n%q", out, want)
	}
	if out := xlvsadm(t, a, da, "--start-daemon", "master", "--mcast-interface", "sync0", "--syncid", "3"); !strings.HasPrefix(out, "Daemon has already run") {
		t.Errorf("second master: %q", out)
	}
	if out := xlvsadm(t, a, da, "--stop-daemon", "backup"); !strings.HasPrefix(out, "No daemon is running") {
		t.Errorf("stop a backup that does not run: %q", out)
	}
	if out := xlvsadm(t, a, da, "--start-daemon", "backup", "--mcast-interface", "nosuch0"); !strings.Contains(out, "nosuch0") {
		t.Errorf("backup on a missing interface: %q", out)
	}
	fa.mu.Lock()
	if fa.policy == nil || *fa.policy != pol || !fa.persist {
		t.Errorf("SetSyncMaster(%+v, %v), want %+v, true", fa.policy, fa.persist, pol)
	}
	fa.mu.Unlock()

	e := dataplane.SyncConn{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Timeout: 900,
		Client: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 2}, CPort: 1234,
		VAddr: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 15: 10}, VPort: 80,
		DAddr: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 2, 15: 11}, DPort: 80}
	deadline := time.Now().Add(3 * time.Second)
	for fb.nApplied() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the backup applied nothing in 3 s")
		}
		fa.push(e)
		time.Sleep(100 * time.Millisecond)
	}

	// --dataplane-stats has a sync section with both roles' counters.
	out := xlvsadm(t, a, da, "--dataplane-stats")
	if !strings.Contains(out, "Sync daemon statistics:\n  backup:\n") || !strings.Contains(out, "  master:\n") {
		t.Errorf("--dataplane-stats without the sync section:\n%s", out)
	}
	st := handleIn(t, a, da, &api.Request{Op: api.OpDataplaneStats}).Sync
	if len(st) != 2 || st[0].Interface != "master" || st[0].Counters["conns"] == 0 || st[0].Counters["messages"] == 0 {
		t.Errorf("master sync stats %+v", st)
	}
	stb := handleIn(t, b, db, &api.Request{Op: api.OpDataplaneStats}).Sync
	if len(stb) != 2 || stb[1].Interface != "backup" || stb[1].Counters["applied"] == 0 {
		t.Errorf("backup sync stats %+v", stb)
	}

	// Metrics.
	srv := httptest.NewServer(da.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if f := fams["xlvs_sync_sent_conns_total"]; f == nil || f.Metric[0].GetCounter().GetValue() == 0 {
		t.Errorf("xlvs_sync_sent_conns_total %v", f)
	}
	if f := fams["xlvs_sync_lag_seconds"]; f == nil || f.Metric[0].GetSummary().GetSampleCount() == 0 {
		t.Errorf("xlvs_sync_lag_seconds %v", f)
	}
	running := map[string]float64{}
	for _, m := range fams["xlvs_sync_daemon_running"].GetMetric() {
		running[m.Label[0].GetValue()] = m.GetGauge().GetValue()
	}
	if running["master"] != 1 || running["backup"] != 0 {
		t.Errorf("xlvs_sync_daemon_running %v", running)
	}
	for _, name := range []string{"xlvs_sync_send_drops_total", "xlvs_sync_receive_drops_total", "xlvs_sync_apply_errors_total"} {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 || f.Metric[0].Label[0].GetName() != "reason" {
			t.Errorf("%s missing or without a reason label: %v", name, f)
		}
	}

	// The state file has the master as it was asked for; a new daemon restores it.
	var saved stateFile
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &saved); err != nil {
		t.Fatal(err)
	}
	if len(saved.Daemons) != 1 || saved.Daemons[0] != (api.SyncDaemon{State: "master", Interface: "sync0"}) {
		t.Fatalf("saved daemons %+v", saved.Daemons)
	}
	if out := xlvsadm(t, a, da, "--stop-daemon", "master"); out != "" {
		t.Fatalf("stop: %q", out)
	}
	fa.mu.Lock()
	if fa.policy != nil {
		t.Error("the master stopped but the dataplane still queues")
	}
	fa.mu.Unlock()
	if err := os.WriteFile(path, raw, 0o600); err != nil { // the file as it was with the master
		t.Fatal(err)
	}
	dc := newDaemonOpts(t, Options{syncDP: &syncFake{}})
	t.Cleanup(func() { dc.CloseSync() })
	if err := a.Do(func() error { _, err := dc.RestoreState(path); return err }); err != nil {
		t.Fatal(err)
	}
	if out, want := xlvsadm(t, a, dc, "-L", "--daemon"), "master sync daemon (mcast=sync0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"; out != want {
		t.Errorf("restored: %q, want %q", out, want)
	}
}

// TestStateWithoutDaemons: a state file of before the sync daemon (no "daemons") loads,
// and starts none.
func TestStateWithoutDaemons(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	old := `{"version":1,"saved":"2025-01-01T00:00:00Z","services":[{"protocol":"tcp","addr":"198.18.1.100","port":80,"scheduler":"rr"}],"timeouts":{"tcp":900,"tcpfin":120,"udp":300}}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemonOpts(t, Options{syncDP: &syncFake{}})
	if ok, err := d.RestoreState(path); !ok || err != nil {
		t.Fatalf("restore: %v %v", ok, err)
	}
	if r := d.Handle(context.Background(), &api.Request{Op: api.OpGetDaemon}); len(r.Daemons) != 0 || r.Error != nil {
		t.Errorf("daemons %+v %v", r.Daemons, r.Error)
	}
	if r := d.Handle(context.Background(), &api.Request{Op: api.OpList}); len(r.Services) != 1 {
		t.Errorf("services %+v", r.Services)
	}
}

// TestKeepalivedSyncDaemon: lvs_sync_daemon starts both roles, for a daemon tied to a
// VRRP instance (sync ID its virtual_router_id when id is not given) as without one; a
// reload that changes the statement restarts the daemon with the new settings, one that
// drops it stops the daemon, and one that leaves it alone leaves it.
func TestKeepalivedSyncDaemon(t *testing.T) {
	a, _ := syncPair(t)
	d := newDaemonOpts(t, Options{syncDP: &syncFake{}})
	t.Cleanup(func() { d.CloseSync() })
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	conf := func(sync string) string {
		return "global_defs {\n    " + sync + "\n}\nvrrp_instance VI_1 {\n    virtual_router_id 51\n}\n" +
			"virtual_server 198.18.1.100 80 {\n    protocol TCP\n    real_server 198.18.2.11 80 {\n    }\n}\n"
	}
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list := func() string { return xlvsadm(t, a, d, "-L", "--daemon") }
	write(conf("lvs_sync_daemon sync0 VI_1"))
	var k *Keepalived
	if err := a.Do(func() (err error) { k, err = d.StartKeepalived(path); return }); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if got, want := list(), "master sync daemon (mcast=sync0, syncid=51, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"+
		"backup sync daemon (mcast=sync0, syncid=51, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"; got != want {
		t.Fatalf("started:\n%q\nwant\n%q", got, want)
	}
	r := d.Handle(context.Background(), &api.Request{Op: api.OpGetDaemon})
	if len(r.Daemons) != 2 || r.Daemons[0].VRRPInstance != "VI_1" || r.Daemons[1].VRRPInstance != "VI_1" {
		t.Errorf("the daemon does not record its VRRP instance: %+v", r.Daemons)
	}
	reload := func() {
		t.Helper()
		if err := a.Do(k.Reload); err != nil {
			t.Fatal(err)
		}
	}
	reload() // unchanged: still the same
	if got := list(); !strings.HasPrefix(got, "master sync daemon (mcast=sync0, syncid=51,") || !strings.Contains(got, "\nbackup sync daemon (mcast=sync0, syncid=51,") {
		t.Fatalf("after an unchanged reload: %q", got)
	}
	write(conf("lvs_sync_daemon sync0 id 9 port 9000"))
	reload()
	want := "master sync daemon (mcast=sync0, syncid=9, maxlen=1472, group=224.0.0.81, port=9000, ttl=1)\n" +
		"backup sync daemon (mcast=sync0, syncid=9, maxlen=1472, group=224.0.0.81, port=9000, ttl=1)\n"
	if got := list(); got != want {
		t.Fatalf("after a reload without an instance:\n%q\nwant\n%q", got, want)
	}
	write(conf("router_id x"))
	reload()
	if got := list(); got != "" {
		t.Fatalf("after a reload without lvs_sync_daemon: %q", got)
	}
	// A daemon that cannot start does not stop the rules from serving.
	write(conf("lvs_sync_daemon nosuch0"))
	reload()
	if got := list(); got != "" {
		t.Fatalf("on a missing interface: %q", got)
	}
	if r := d.Handle(context.Background(), &api.Request{Op: api.OpList}); len(r.Services) != 1 {
		t.Fatalf("services %+v", r.Services)
	}
}

// TestSyncIntoDataplane: a backup over the real dataplane applies what a master sends:
// the connection shows in the backup's -L -c and counts as its real server's ActiveConn;
// an entry of a service the backup does not have is counted as no_service.
func TestSyncIntoDataplane(t *testing.T) {
	a, b := syncPair(t)
	fa := &syncFake{}
	da := newDaemonOpts(t, Options{syncDP: fa})
	db := newDaemonOpts(t, Options{})
	t.Cleanup(func() { da.CloseSync(); db.CloseSync() })
	s := svc("tcp", "198.18.0.10", 80)
	mustOK(t, db, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, db, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 80, 1)})
	if out := xlvsadm(t, b, db, "--start-daemon", "backup", "--mcast-interface", "sync0", "--syncid", "4"); out != "" {
		t.Fatal(out)
	}
	if out := xlvsadm(t, a, da, "--start-daemon", "master", "--mcast-interface", "sync0", "--syncid", "4"); out != "" {
		t.Fatal(out)
	}
	v4 := func(a, b, c, d byte) [16]byte { return [16]byte{10: 0xff, 11: 0xff, 12: a, 13: b, 14: c, 15: d} }
	e := dataplane.SyncConn{Proto: 6, Method: conntrack.MethodNAT, State: conntrack.StateEstablished, Timeout: 900,
		Client: v4(198, 18, 1, 2), CPort: 1234, VAddr: v4(198, 18, 0, 10), VPort: 80, DAddr: v4(198, 18, 2, 11), DPort: 80}
	other := e
	other.VPort, other.CPort = 81, 1235
	deadline := time.Now().Add(5 * time.Second)
	for {
		fa.push(e)
		fa.push(other)
		time.Sleep(100 * time.Millisecond)
		if out := xlvsadm(t, b, db, "-L", "-c", "-n"); strings.Contains(out, "ESTABLISHED 198.18.1.2:1234") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backup's table never showed the connection:\n%s", xlvsadm(t, b, db, "-L", "-c", "-n"))
		}
	}
	// Wait for the master's 2 s flush to send what it still holds.
	time.Sleep(2200 * time.Millisecond)
	out := xlvsadm(t, b, db, "-L", "-c", "-n")
	want := regexp.MustCompile(`(?m)^TCP 1[45]:[0-5][0-9]  ESTABLISHED 198\.18\.1\.2:1234\s+198\.18\.0\.10:80\s+198\.18\.2\.11:80$`)
	if !want.MatchString(out) {
		t.Errorf("-L -c -n on the backup:\n%s", out)
	}
	if l := xlvsadm(t, b, db, "-L", "-n"); !strings.Contains(l, "  -> 198.18.2.11:80               Masq    1      1          0") {
		t.Errorf("-L -n on the backup, want ActiveConn 1:\n%s", l)
	}
	st := handleIn(t, b, db, &api.Request{Op: api.OpDataplaneStats}).Sync
	if st[1].Counters["apply_error_no_service"] == 0 || st[1].Counters["applied"] == 0 {
		t.Errorf("backup counters %v", st[1].Counters)
	}
}

// TestKeepalivedFollowsVRRP: with lvs_sync_daemon naming a VRRP instance and
// vrrp_notify_fifo in global_defs (here from an included file, as the VRRP part of an
// operator's configuration is), xlvsd reads the instance's transitions from keepalived's
// FIFO: entering BACKUP asks for the whole table, leaving MASTER sends it; lines of
// other instances, groups and events change nothing; a reload without the FIFO stops
// following it.
func TestKeepalivedFollowsVRRP(t *testing.T) {
	a, _ := syncPair(t)
	d := newDaemonOpts(t, Options{syncDP: &syncFake{}})
	t.Cleanup(func() { d.CloseSync() })
	dir := t.TempDir()
	fifo := filepath.Join(dir, "vrrp.fifo")
	shared := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(shared, []byte("global_defs {\n    vrrp_notify_fifo "+fifo+"\n}\nvrrp_instance VI_1 {\n    virtual_router_id 51\n    priority 100\n}\n"+
		"virtual_server 198.18.1.100 80 {\n    protocol TCP\n    real_server 198.18.2.11 80 {\n    }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "xlvs.conf")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("include keepalived.conf\nglobal_defs {\n    lvs_sync_daemon sync0 inst VI_1\n}\n")
	var k *Keepalived
	if err := a.Do(func() (err error) { k, err = d.StartKeepalived(path); return }); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if st, err := os.Stat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the notify FIFO was not created: %v %v", st, err)
	}
	ka, err := os.OpenFile(fifo, os.O_RDWR, 0) // keepalived's end
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	type counts struct{ requests, sends uint64 }
	now := func() counts {
		st := d.sync.Stats()
		return counts{st.RequestsSent, st.TableSends}
	}
	// step writes lines and waits until the instance's state is state and the counters
	// are want.
	step := func(lines string, state string, want counts) {
		t.Helper()
		if _, err := ka.WriteString(lines); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for k.VRRPState() != state || now() != want {
			if time.Now().After(deadline) {
				t.Fatalf("after %q: state %q, counts %+v; want %q, %+v", lines, k.VRRPState(), now(), state, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if c := now(); c != (counts{1, 0}) { // the backup role asked when it started
		t.Fatalf("at start: %+v, want one request", c)
	}
	step("INSTANCE \"VI_1\" BACKUP 100\n", "BACKUP", counts{2, 0})
	step("INSTANCE \"VI_2\" MASTER 100\nGROUP \"VI_1\" MASTER 0\nVS \"x\" UP\n", "BACKUP", counts{2, 0})
	step("INSTANCE \"VI_1\" MASTER 100\n", "MASTER", counts{2, 0})
	step("INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 100\n", "MASTER", counts{2, 0})
	step("INSTANCE \"VI_1\" BACKUP 100\n", "BACKUP", counts{3, 1}) // preempted: sends and asks
	step("INSTANCE \"VI_1\" FAULT 100\n", "FAULT", counts{3, 1})
	step("INSTANCE \"VI_1\" BACKUP 100\n", "BACKUP", counts{4, 1})
	step("INSTANCE \"VI_1\" MASTER 100\nINSTANCE \"VI_1\" STOP 100\n", "STOP", counts{4, 2})

	// Reloaded without the FIFO (keepalived's part no longer included): the roles run,
	// nothing is followed.
	write("global_defs {\n    lvs_sync_daemon sync0 id 51\n}\nvirtual_server 198.18.1.100 80 {\n    protocol TCP\n    real_server 198.18.2.11 80 {\n    }\n}\n")
	if err := a.Do(k.Reload); err != nil {
		t.Fatal(err)
	}
	if k.VRRPState() != "" {
		t.Fatalf("still following: %q", k.VRRPState())
	}
	base := now()
	if _, err := ka.WriteString("INSTANCE \"VI_1\" BACKUP 100\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if c := now(); c != base || k.VRRPState() != "" {
		t.Fatalf("a line after the reload was acted on: %+v (was %+v), state %q", c, base, k.VRRPState())
	}
}
