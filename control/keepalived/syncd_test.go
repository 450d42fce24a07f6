package keepalived

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// TestLvsSyncDaemon: global_defs' lvs_sync_daemon in keepalived's two forms, with the
// sync ID defaulting to the VRRP instance's virtual_router_id (keepalived's vrrp_data.c:
// "If no syncid configured, use vrid"), or 0 without an instance.
func TestLvsSyncDaemon(t *testing.T) {
	const noFIFO = "lvs_sync_daemon inst VI_1: no vrrp_notify_fifo (or notify_fifo) in global_defs, so xlvsd cannot follow the instance's VRRP state: both sync roles run, but no whole table is asked for or sent when it changes (add vrrp_notify_fifo FILE, read by keepalived and xlvsd alike)"
	const vrrp = `
vrrp_instance VI_1 {
    state BACKUP
    virtual_router_id 51
}
`
	for _, tc := range []struct {
		name  string
		line  string
		want  *SyncDaemon
		warns []string
		after []string // warnings of the end of the file (resolving the instance)
	}{
		{"every option", "lvs_sync_daemon eth1 inst VI_1 id 7 maxlen 1400 port 9000 ttl 2 group 239.1.2.3",
			&SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 7, MaxLen: 1400, Port: 9000, TTL: 2, Group: netip.MustParseAddr("239.1.2.3")}, nil, []string{noFIFO}},
		{"IPv6 group", "lvs_sync_daemon eth1 group ff02::1:81",
			&SyncDaemon{Interface: "eth1", Group: netip.MustParseAddr("ff02::1:81")}, nil, nil},
		{"instance's vrid", "lvs_sync_daemon eth1 inst VI_1", &SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 51}, nil, []string{noFIFO}},
		{"id 0 given", "lvs_sync_daemon eth1 inst VI_1 id 0", &SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 0}, nil, []string{noFIFO}},
		{"older form", "lvs_sync_daemon eth1 VI_1", &SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 51}, nil, []string{noFIFO}},
		{"older form with syncid", "lvs_sync_daemon eth1 VI_1 9 ttl 3",
			&SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 9, TTL: 3}, []string{`Please use keyword "id" before lvs_sync_daemon SYNCID`}, []string{noFIFO}},
		{"no instance", "lvs_sync_daemon eth1", &SyncDaemon{Interface: "eth1"}, nil, nil},
		{"unknown instance", "lvs_sync_daemon eth1 inst VI_9", nil, nil, []string{"Unable to find vrrp instance VI_9 for lvs_syncd - clearing lvs_syncd config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseOne(t, "global_defs {\n    "+tc.line+"\n}\n"+vrrp)
			if tc.want != nil {
				tc.want.Pos = Pos{File: "test.conf", Line: 2}
			}
			if !reflect.DeepEqual(cfg.SyncDaemon, tc.want) {
				t.Errorf("got %+v\nwant %+v", cfg.SyncDaemon, tc.want)
			}
			want := append(append(tc.warns, "vrrp_instance block ignored: VRRP is not done by xlvs; run keepalived for VRRP"), tc.after...)
			if got := warnings(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("warnings %q, want %q", got, want)
			}
		})
	}
	// A second lvs_sync_daemon is ignored; other global definitions are warned about once.
	cfg := parseOne(t, "global_defs {\n  router_id a\n  lvs_sync_daemon eth1\n  lvs_sync_daemon eth2 id 4\n}\n")
	if sd := cfg.SyncDaemon; sd == nil || sd.Interface != "eth1" || sd.SyncID != 0 {
		t.Errorf("second lvs_sync_daemon taken: %+v", sd)
	}
	want := []string{
		"lvs_sync_daemon has already been specified as eth1 (at test.conf:3) - ignoring",
		"global_defs block ignored but for lvs_sync_daemon: global definitions",
	}
	if got := warnings(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}

// TestLvsSyncDaemonErrors: values keepalived reports as configuration errors are errors
// naming file and line, saying what was expected.
func TestLvsSyncDaemonErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"lvs_sync_daemon", "test.conf:2: lvs_sync_daemon requires interface"},
		{"lvs_sync_daemon averyverylongname0", "test.conf:2: lvs_sync_daemon interface name 'averyverylongname0' too long: expected at most 15 bytes"},
		{"lvs_sync_daemon eth0 id 256", "test.conf:2: Invalid lvs_sync_daemon id (256): expected 0..255"},
		{"lvs_sync_daemon eth0 id", "test.conf:2: No value specified for lvs_sync_daemon id"},
		{"lvs_sync_daemon eth0 maxlen 0", "test.conf:2: Invalid lvs_sync_daemon maxlen (0): expected 1..65507"},
		{"lvs_sync_daemon eth0 maxlen 65508", "Invalid lvs_sync_daemon maxlen (65508): expected 1..65507"},
		{"lvs_sync_daemon eth0 port 0", "Invalid lvs_sync_daemon port (0): expected 1..65535"},
		{"lvs_sync_daemon eth0 ttl 256", "Invalid lvs_sync_daemon ttl (256): expected 1..255"},
		{"lvs_sync_daemon eth0 ttl x", "Invalid lvs_sync_daemon ttl (x): expected 1..255"},
		{"lvs_sync_daemon eth0 group 198.18.0.1", "lvs_sync_daemon group address 198.18.0.1 is not multicast: expected 224.0.0.0/4 or ff00::/8"},
		{"lvs_sync_daemon eth0 group nowhere", "Invalid lvs_sync_daemon group (nowhere)"},
		{"lvs_sync_daemon eth0 group", "No value specified for lvs_sync_daemon group"},
		{"lvs_sync_daemon eth0 inst", "No value specified for lvs_sync_daemon inst"},
		{"lvs_sync_daemon eth0 VI_1 x", "Invalid syncid (x): expected 0..255"},
		{"lvs_sync_daemon eth0 VI_1 5 frob", "Unknown option frob specified for lvs_sync_daemon"},
	} {
		_, err := Parse("test.conf", []byte("global_defs {\n"+tc.line+"\n}\nvrrp_instance VI_1 {\n}\n"), Options{ReadFile: noFiles, Glob: noGlob})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.line, err, tc.want)
		}
	}
}

// TestNotifyFIFO: the FIFO xlvsd follows an lvs_sync_daemon's VRRP instance through is
// global_defs' vrrp_notify_fifo, else notify_fifo, from any global_defs block (keepalived
// reads several; the VRRP part may come from an included file), the first of each
// keyword; a script on the same FIFO, a FIFO without a file name and a second one are
// warned about; without an instance no FIFO is followed.
func TestNotifyFIFO(t *testing.T) {
	const vrrp = "vrrp_instance VI_1 {\n    virtual_router_id 51\n}\n"
	const ignored = "vrrp_instance block ignored: VRRP is not done by xlvs; run keepalived for VRRP"
	for _, tc := range []struct {
		name, src string
		fifo      string
		warns     []string
	}{
		{"vrrp_notify_fifo",
			"global_defs {\n  vrrp_notify_fifo /run/xlvs/vrrp.fifo\n  lvs_sync_daemon eth0 inst VI_1\n}\n" + vrrp,
			"/run/xlvs/vrrp.fifo", []string{ignored}},
		{"notify_fifo with user and group, other definitions",
			"global_defs {\n  router_id d1\n  notify_fifo /run/ka.fifo root root\n}\n" + vrrp + "global_defs {\n  lvs_sync_daemon eth0 inst VI_1\n}\n",
			"/run/ka.fifo", []string{"global_defs block ignored but for notify_fifo: global definitions", ignored}},
		{"vrrp_notify_fifo preferred",
			"global_defs {\n  notify_fifo /run/all.fifo\n  notify_fifo_script /bin/true\n  vrrp_notify_fifo /run/vrrp.fifo\n  vrrp_notify_fifo /run/other.fifo\n  lvs_sync_daemon eth0 VI_1\n}\n" + vrrp,
			"/run/vrrp.fifo", []string{
				"vrrp_notify_fifo has already been specified as /run/vrrp.fifo (at test.conf:4) - ignoring",
				"global_defs block ignored but for notify_fifo, vrrp_notify_fifo, lvs_sync_daemon: global definitions", ignored}},
		{"a script on it",
			"global_defs {\n  vrrp_notify_fifo /run/vrrp.fifo\n  vrrp_notify_fifo_script /usr/local/bin/watch\n  lvs_sync_daemon eth0 inst VI_1\n}\n" + vrrp,
			"/run/vrrp.fifo", []string{
				"global_defs block ignored but for vrrp_notify_fifo, lvs_sync_daemon: global definitions", ignored,
				"vrrp_notify_fifo_script reads the FIFO xlvsd follows VRRP instance VI_1 through (/run/vrrp.fifo): the script and xlvsd would each see only some of its lines; give xlvsd a FIFO of its own (vrrp_notify_fifo for xlvsd, notify_fifo and notify_fifo_script for the script)"}},
		{"no file name",
			"global_defs {\n  vrrp_notify_fifo\n  notify_fifo /run/ka.fifo\n  lvs_sync_daemon eth0 inst VI_1\n}\n" + vrrp,
			"/run/ka.fifo", []string{`vrrp_notify_fifo without a file name ignored: expected "vrrp_notify_fifo FILE [USER [GROUP]]"`, ignored}},
		{"no instance",
			"global_defs {\n  vrrp_notify_fifo /run/vrrp.fifo\n  lvs_sync_daemon eth0\n}\n",
			"", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseOne(t, tc.src)
			if cfg.SyncDaemon == nil || cfg.SyncDaemon.NotifyFIFO != tc.fifo {
				t.Errorf("sync daemon %+v, want notify FIFO %q", cfg.SyncDaemon, tc.fifo)
			}
			if got := warnings(cfg); !reflect.DeepEqual(got, tc.warns) {
				t.Errorf("warnings\n%q\nwant\n%q", got, tc.warns)
			}
		})
	}
	// Without lvs_sync_daemon a notify FIFO is read and nothing else follows from it.
	cfg := parseOne(t, "global_defs {\n  vrrp_notify_fifo /run/vrrp.fifo\n}\n")
	if cfg.SyncDaemon != nil || len(cfg.Warnings) != 0 {
		t.Errorf("sync daemon %+v, warnings %q", cfg.SyncDaemon, warnings(cfg))
	}
}
