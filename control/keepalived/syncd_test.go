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
			&SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 7, MaxLen: 1400, Port: 9000, TTL: 2, Group: netip.MustParseAddr("239.1.2.3")}, nil, nil},
		{"IPv6 group", "lvs_sync_daemon eth1 group ff02::1:81",
			&SyncDaemon{Interface: "eth1", Group: netip.MustParseAddr("ff02::1:81")}, nil, nil},
		{"instance's vrid", "lvs_sync_daemon eth1 inst VI_1", &SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 51}, nil, nil},
		{"id 0 given", "lvs_sync_daemon eth1 inst VI_1 id 0", &SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 0}, nil, nil},
		{"older form", "lvs_sync_daemon eth1 VI_1", &SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 51}, nil, nil},
		{"older form with syncid", "lvs_sync_daemon eth1 VI_1 9 ttl 3",
			&SyncDaemon{Interface: "eth1", VRRPInstance: "VI_1", SyncID: 9, TTL: 3}, []string{`Please use keyword "id" before lvs_sync_daemon SYNCID`}, nil},
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
