package control

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"xlvs/control/api"
)

func configOnly(svcs []api.Service) []api.Service {
	out := make([]api.Service, len(svcs))
	for i, s := range svcs {
		s.Stats = api.Stats{}
		ds := make([]api.Dest, len(s.Dests))
		for j, d := range s.Dests {
			d.Stats, d.ActiveConns, d.InactConns, d.PersistConns = api.Stats{}, 0, 0, 0
			ds[j] = d
		}
		s.Dests = ds
		out[i] = s
	}
	return out
}

// TestStateSaveRestore: every change is saved; a new daemon restores every service,
// server (in list order), weight, threshold and timeout.
func TestStateSaveRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	d := newDaemonOpts(t, Options{StatePath: path})
	s1 := svc("tcp", "198.18.1.100", 80)
	s1.Scheduler = "wrr"
	s2 := svc("udp", "fd00:1::100", 53)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s1})
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s2})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s1, Dest: dest("198.18.2.11", 80, 3)})
	d2 := dest("198.18.2.12", 8080, 1)
	d2.UThreshold, d2.LThreshold = 100, 50
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s1, Dest: d2})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s2, Dest: dest("fd00:2::11", 53, 0)})
	mustOK(t, d, &api.Request{Op: api.OpSetTimeouts, Timeouts: &api.Timeouts{TCP: 600, TCPFin: 60, UDP: 30}})
	want := configOnly(mustOK(t, d, &api.Request{Op: api.OpList}).Services)

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".state-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	fresh := newDaemon(t)
	ok, err := fresh.RestoreState(path)
	if err != nil || !ok {
		t.Fatalf("restore: %v %v", ok, err)
	}
	got := configOnly(mustOK(t, fresh, &api.Request{Op: api.OpList}).Services)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored rules differ:\n got %+v\nwant %+v", got, want)
	}
	if tm := mustOK(t, fresh, &api.Request{Op: api.OpGetTimeouts}).Timeouts; *tm != (api.Timeouts{TCP: 600, TCPFin: 60, UDP: 30}) {
		t.Fatalf("restored timeouts %+v", tm)
	}
	if len(fresh.dp.Snapshot().Services) != 2 {
		t.Fatal("restored rules not published to the dataplane")
	}
}

func TestStateRestoreErrors(t *testing.T) {
	dir := t.TempDir()
	d := newDaemon(t)
	if ok, err := d.RestoreState(filepath.Join(dir, "none.json")); ok || err != nil {
		t.Fatalf("missing file: %v %v, want first start", ok, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := d.RestoreState(bad); err == nil || !strings.Contains(err.Error(), "fix or remove") {
		t.Fatalf("corrupt file: %v", err)
	}
	old := filepath.Join(dir, "old.json")
	os.WriteFile(old, []byte(`{"version": 99, "services": []}`), 0o600)
	if _, err := d.RestoreState(old); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("future version: %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "rules")
	os.WriteFile(good, []byte("# xlvs rules\n-A -t 198.18.1.100:80 -s rr\n-a -t 198.18.1.100:80 -r 198.18.2.11:80 -m -w 2\n"), 0o600)
	d := newDaemon(t)
	if err := d.LoadConfig(good); err != nil {
		t.Fatal(err)
	}
	list := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(list) != 1 || len(list[0].Dests) != 1 || list[0].Dests[0].Weight != 2 {
		t.Fatalf("loaded %+v", list)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("-A -t 198.18.1.101:80 -s rr\n-a -t 198.18.1.101:80 -r nonsense...:80 -m\n"), 0o600)
	err := d.LoadConfig(bad)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad config: %v, want an error naming line 2", err)
	}
	if n := len(mustOK(t, d, &api.Request{Op: api.OpList}).Services); n != 1 {
		t.Fatalf("a bad config changed the rules: %d services", n)
	}
}
