package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"xlvs/bpf"
	"xlvs/conntrack"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

func TestParseFlagsErrors(t *testing.T) {
	dir := t.TempDir()
	shortKey, longKey := dir+"/short", dir+"/long"
	os.WriteFile(shortKey, []byte("abcd"), 0o600)
	os.WriteFile(longKey, []byte("0123456789abcdef0123456789abcdef"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no interface", nil, "no interface given"},
		{"both modes", []string{"-i", "eth0", "--copy", "--zerocopy"}, "choose one"},
		{"small table", []string{"-i", "eth0", "--conn-max", "10"}, "--conn-max 10: must be at least 1024"},
		{"negative table", []string{"-i", "eth0", "--conn-max", "-1"}, "--conn-max -1: must be at least 1024 (0 = sized from memory)"},
		{"table beyond memory", []string{"-i", "eth0", "--conn-max", "1000000000000"}, "more than half of this machine's"},
		{"stray argument", []string{"-i", "eth0", "extra"}, "unexpected argument"},
		{"unknown flag", []string{"-i", "eth0", "--nope"}, "not defined"},
		{"bad number", []string{"-i", "eth0", "--batch", "many"}, "invalid value"},
		{"keepalived and health checks", []string{"-i", "eth0", "--keepalived-conf", "k", "--health-check", "TCP_CHECK {}"}, "keepalived.conf has its own checkers"},
		{"keepalived and config", []string{"-i", "eth0", "--keepalived-conf", "k", "--config", "c"}, "choose where the rules come from"},
		// The kernel's sysctl handlers' rules (proc_do_sync_threshold, sync_retries 0..3,
		// proc_do_sync_ports and IPVS_SYNC_PORTS_MAX).
		{"threshold not a pair", []string{"-i", "eth0", "--sync-threshold", "3"}, "--sync-threshold \"3\": want THRESHOLD,PERIOD"},
		{"threshold words", []string{"-i", "eth0", "--sync-threshold", "a,b"}, "want THRESHOLD,PERIOD"},
		{"threshold negative", []string{"-i", "eth0", "--sync-threshold", "-1,50"}, "must not be negative"},
		{"threshold at period", []string{"-i", "eth0", "--sync-threshold", "50,50"}, "the threshold 50 must be below the period 50"},
		{"refresh negative", []string{"-i", "eth0", "--sync-refresh-period", "-1"}, "--sync-refresh-period -1: must be between 0 (off) and"},
		{"retries 4", []string{"-i", "eth0", "--sync-retries", "4"}, "--sync-retries 4: must be between 0 and 3"},
		{"ports 0", []string{"-i", "eth0", "--sync-ports", "0"}, "--sync-ports 0: must be a power of two from 1 to 64"},
		{"ports 3", []string{"-i", "eth0", "--sync-ports", "3"}, "--sync-ports 3: must be a power of two"},
		{"ports 128", []string{"-i", "eth0", "--sync-ports", "128"}, "--sync-ports 128"},
		{"shard key missing", []string{"-i", "eth0", "--shard-key-file", "/nonexistent/key"}, "--shard-key-file: open /nonexistent/key: no such file"},
		{"shard key short", []string{"-i", "eth0", "--shard-key-file", shortKey}, "4 bytes; want a secret of at least 16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	o, err := parseFlags([]string{"-i", "ext0", "-i", "int0", "--batch", "32", "--copy"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ifaces) != 2 || o.batch != 32 || !o.sock.Copy || o.icmpRate != 1000 || o.icmpBurst != 50 {
		t.Fatalf("parsed %+v", o)
	}
	// The kernel's defaults: sync_threshold 3 50, sync_refresh_period 0, sync_retries 0,
	// sync_ports 1.
	if o.syncPolicy != (conntrack.SyncPolicy{Threshold: 3, Period: 50}) || o.syncPorts != 1 || o.syncPersistMode {
		t.Fatalf("sync defaults %+v ports %d", o.syncPolicy, o.syncPorts)
	}
	for _, tc := range []struct {
		args []string
		want conntrack.SyncPolicy
	}{
		{[]string{"--sync-threshold", "0,0"}, conntrack.SyncPolicy{}},
		{[]string{"--sync-threshold", "5,0"}, conntrack.SyncPolicy{Threshold: 5}},
		{[]string{"--sync-threshold", "1 10", "--sync-refresh-period", "60", "--sync-retries", "3"},
			conntrack.SyncPolicy{Threshold: 1, Period: 10, RefreshPeriod: time.Minute, Retries: 3}},
	} {
		o, err := parseFlags(append([]string{"-i", "eth0"}, tc.args...), io.Discard)
		if err != nil || o.syncPolicy != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.args, o, err, tc.want)
		}
	}
	// A shard key file: the same contents, the same key (two directors); none, all zero
	// (a random key per table).
	k1, err1 := parseFlags([]string{"-i", "eth0", "--shard-key-file", longKey}, io.Discard)
	k2, err2 := parseFlags([]string{"-i", "eth0", "--shard-key-file", longKey}, io.Discard)
	if err1 != nil || err2 != nil || k1.shardKey != k2.shardKey || k1.shardKey == ([16]byte{}) || o.shardKey != ([16]byte{}) {
		t.Errorf("shard keys %x %x (%v %v), without a file %x", k1.shardKey, k2.shardKey, err1, err2, o.shardKey)
	}
	if o, err := parseFlags([]string{"-i", "eth0", "--sync-ports", "64", "--sync-persist-mode"}, io.Discard); err != nil || o.syncPorts != 64 || !o.syncPersistMode {
		t.Errorf("--sync-ports 64 --sync-persist-mode: %v", err)
	}
}

func TestParseCPUs(t *testing.T) {
	got, err := parseCPUs("0,0-1")
	if err != nil || len(got) != 3 || got[0] != 0 || got[2] != 1 {
		t.Fatalf("parseCPUs = %v, %v", got, err)
	}
	for _, bad := range []string{"x", "1-0", "-1", "0,", "99999"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) accepted", bad)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, ok := range map[string]bool{"native": true, "generic": true, "auto": true, "hw": false} {
		if _, err := parseMode(in); (err == nil) != ok {
			t.Errorf("parseMode(%q) err = %v", in, err)
		}
	}
}

func TestDefaultConnMax(t *testing.T) {
	for _, tc := range []struct {
		ram  uint64
		want int
	}{
		{0, 1 << 16},
		{512 << 20, 1 << 17},
		{24 << 30, 4 << 20},    // this machine: 768 MiB / conntrack.EntryBytes (121 B)
		{15974 << 20, 4 << 20}, // a "16 GB" machine: 499 MiB / 121 B (2Mi while xlvsd assumed 128 B)
		{64 << 30, 16 << 20},
		{1 << 40, 16 << 20},
	} {
		if got := defaultConnMax(tc.ram); got != tc.want {
			t.Errorf("defaultConnMax(%d MiB) = %d, want %d", tc.ram>>20, got, tc.want)
		}
	}
	o, err := parseFlags([]string{"-i", "eth0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.connMax != defaultConnMax(totalRAM()) || o.connMax < 1<<16 {
		t.Fatalf("default --conn-max %d", o.connMax)
	}
}

// TestNumericFlagRanges: every numeric flag refuses values outside the range its help
// gives, with a message naming the flag, the value given and what is allowed. The ranges
// are the ones the help text and the dataplane document: queues 0..64, batch 1..1024 and
// at most the rx ring, rings powers of two in 8..65536, frames from fill + tx ring to
// 2^20, frame size 2048 or 4096, ICMP rate 1..1e9 per second or -1 (no limit, the
// dataplane's NoICMPLimit; 0, the dataplane's "default", is refused), burst at least 1.
func TestNumericFlagRanges(t *testing.T) {
	for _, tc := range []struct {
		flag, value string
		want        string // the whole message
	}{
		{"batch", "0", "--batch 0: must be between 1 and 1024 (at most --rx-ring)"},
		{"batch", "-3", "--batch -3: must be between 1 and 1024 (at most --rx-ring)"},
		{"batch", "1025", "--batch 1025: must be between 1 and 1024 (at most --rx-ring)"},
		{"queues", "-1", "--queues -1: must be between 0 and 64 (0 = every RX queue of the interface)"},
		{"queues", "65", "--queues 65: must be between 0 and 64 (0 = every RX queue of the interface)"},
		{"frame-size", "0", "--frame-size 0: must be 2048 or 4096"},
		{"frame-size", "3000", "--frame-size 3000: must be 2048 or 4096"},
		{"frame-size", "8192", "--frame-size 8192: must be 2048 or 4096"},
		{"rx-ring", "0", "--rx-ring 0: must be a power of two between 8 and 65536"},
		{"rx-ring", "1000", "--rx-ring 1000: must be a power of two between 8 and 65536"},
		{"rx-ring", "4", "--rx-ring 4: must be a power of two between 8 and 65536"},
		{"tx-ring", "131072", "--tx-ring 131072: must be a power of two between 8 and 65536"},
		{"fill-ring", "-8", "--fill-ring -8: must be a power of two between 8 and 65536"},
		{"comp-ring", "3", "--comp-ring 3: must be a power of two between 8 and 65536"},
		{"frames", "0", "--frames 0: must be between 4096 (--fill-ring + --tx-ring: a full fill ring and a full tx ring coexist) and 1048576"},
		{"frames", "4095", "--frames 4095: must be between 4096 (--fill-ring + --tx-ring: a full fill ring and a full tx ring coexist) and 1048576"},
		{"frames", "2097152", "--frames 2097152: must be between 4096 (--fill-ring + --tx-ring: a full fill ring and a full tx ring coexist) and 1048576"},
		{"icmp-rate", "-5", "--icmp-rate -5: must be between 1 and 1000000000 errors per second, or -1 for no limit"},
		{"icmp-rate", "0", "--icmp-rate 0: must be between 1 and 1000000000 errors per second, or -1 for no limit"},
		{"icmp-rate", "2000000000", "--icmp-rate 2000000000: must be between 1 and 1000000000 errors per second, or -1 for no limit"},
		{"icmp-burst", "0", "--icmp-burst 0: must be between 1 and 2147483647"},
		{"icmp-burst", "-1", "--icmp-burst -1: must be between 1 and 2147483647"},
		{"icmp-burst", "2147483648", "--icmp-burst 2147483648: must be between 1 and 2147483647"},
		{"fastpath-entries", "0", "--fastpath-entries 0: must be between 1 and 16777216"},
		{"fastpath-entries", "16777217", "--fastpath-entries 16777217: must be between 1 and 16777216"},
		{"fastpath-forward", "tc", `--fastpath-forward "tc": must be xdp (the XDP program sends) or kernel (the kernel's routing forwards)`},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			_, err := parseFlags([]string{"-i", "eth0", "--" + tc.flag, tc.value}, io.Discard)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant     %s", err, tc.want)
			}
		})
	}
	// The batch may not exceed the rx ring; frames follow the rings.
	_, err := parseFlags([]string{"-i", "eth0", "--rx-ring", "32", "--batch", "64"}, io.Discard)
	if want := "--batch 64: must be between 1 and 32 (at most --rx-ring)"; err == nil || err.Error() != want {
		t.Fatalf("batch over the rx ring: err = %v, want %s", err, want)
	}
	_, err = parseFlags([]string{"-i", "eth0", "--fill-ring", "64", "--tx-ring", "64", "--frames", "100"}, io.Discard)
	if want := "--frames 100: must be between 128 "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("frames under small rings: err = %v, want it to start %q", err, want)
	}
	// The edges of every range are accepted.
	for _, args := range [][]string{
		{"--batch", "1"}, {"--batch", "1024"}, {"--queues", "0"}, {"--queues", "64"},
		{"--frame-size", "4096"}, {"--rx-ring", "8", "--batch", "8"}, {"--rx-ring", "65536"},
		{"--fill-ring", "8", "--tx-ring", "8", "--frames", "16"}, {"--frames", "1048576"},
		{"--icmp-rate", "-1"}, {"--icmp-rate", "1"}, {"--icmp-rate", "1000000000"}, {"--icmp-burst", "1"}, {"--icmp-burst", "2147483647"},
		{"--conn-max", "1024"}, {"--fastpath", "--fastpath-entries", "1"}, {"--fastpath-entries", "16777216"},
		{"--fastpath", "--fastpath-forward", "kernel"}, {"--fastpath-forward", "xdp"},
	} {
		if _, err := parseFlags(append([]string{"-i", "eth0"}, args...), io.Discard); err != nil {
			t.Errorf("%q refused: %v", args, err)
		}
	}
}

// TestRunRefusals: run's refusals before and at start-up, in-process: values only run
// checks, and an interface that does not exist (as root: it gets that far).
func TestRunRefusals(t *testing.T) {
	sock := t.TempDir() + "/x.sock"
	base := []string{"--socket", sock, "--state", "", "--conn-max", "65536"}
	for _, tc := range []struct {
		args []string
		want string
		root bool // needs root to get that far
	}{
		{[]string{"-i", "eth0", "--log-level", "loud"}, `--log-level "loud": must be debug, info, warn or error`, false},
		{[]string{"-i", "eth0", "--cpus", "1-0"}, `--cpus "1-0": bad range "1-0" (want LOW-HIGH)`, false},
		{[]string{"-i", "eth0", "--xdp-mode", "hw"}, `--xdp-mode "hw": must be native, generic or auto`, false},
		{[]string{"-i", "eth0", "--batch", "0"}, "--batch 0: must be between 1 and 1024", false},
		{[]string{"-i", "nosuch0"}, `interface "nosuch0": `, true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				needRoot(t)
			}
			err := run(append(append([]string(nil), base...), tc.args...))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to start %q", err, tc.want)
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Errorf("control socket left behind: %v", err)
			}
		})
	}
}

// TestFlagHint: the dataplane's errors name no flag; xlvsd adds the one to change, and
// keeps the library's message and its error chain.
func TestFlagHint(t *testing.T) {
	qe := &dataplane.QueueCountError{Interface: "eth0", Want: 8, Have: 4}
	zc := fmt.Errorf("interface eth0: open xsk on ifindex 2 queue 0: operation not supported (%w: veth and most virtual NICs do copy mode only)", xsk.ErrZeroCopyUnsupported)
	other := errors.New("attach XDP: no such device")
	for _, tc := range []struct {
		name  string
		err   error
		want  string
		chain error
	}{
		{"queues", fmt.Errorf("interface eth0: %w", qe), "--queues 8: interface eth0: open 8 queues on eth0: the interface has 4 RX queues: pass --queues 1 to 4, or 0 for every RX queue", nil},
		{"zerocopy", zc, "--zerocopy: " + zc.Error() + ": try --copy", xsk.ErrZeroCopyUnsupported},
		{"other", other, other.Error(), other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := flagHint(&options{queues: 8}, tc.err)
			if got.Error() != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if tc.chain != nil && !errors.Is(got, tc.chain) {
				t.Errorf("%v does not wrap %v", got, tc.chain)
			}
		})
	}
}

// TestICMPRateMeaning: --icmp-rate hands the dataplane the value it was given, which
// means the same there: the default is the dataplane's default, -1 its NoICMPLimit.
func TestICMPRateMeaning(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, dataplane.DefaultICMPRate},
		{[]string{"--icmp-rate", "-1"}, dataplane.NoICMPLimit},
		{[]string{"--icmp-rate", "7"}, 7},
	} {
		o, err := parseFlags(append([]string{"-i", "eth0"}, tc.args...), io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		cfg := dataplaneConfig(o, bpf.ModeAuto, nil, slog.New(slog.DiscardHandler))
		if cfg.ICMPRate != tc.want || cfg.ICMPBurst != dataplane.DefaultICMPBurst {
			t.Errorf("%q: dataplane ICMPRate %d burst %d, want %d and %d", tc.args, cfg.ICMPRate, cfg.ICMPBurst, tc.want, dataplane.DefaultICMPBurst)
		}
	}
	if dataplane.NoICMPLimit != -1 {
		t.Fatalf("NoICMPLimit is %d: the flag's help and README say -1", dataplane.NoICMPLimit)
	}
}

// TestFullNATTOAFlag: --fullnat-toa is on by default (DPVS writes the option) and
// --fullnat-toa=false reaches the dataplane as Config.NoTOA.
func TestFullNATTOAFlag(t *testing.T) {
	for _, c := range []struct {
		args  []string
		noTOA bool
	}{{nil, false}, {[]string{"--fullnat-toa=false"}, true}, {[]string{"--fullnat-toa"}, false}} {
		o, err := parseFlags(append([]string{"-i", "eth0"}, c.args...), io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if got := dataplaneConfig(o, bpf.ModeAuto, nil, nil).NoTOA; got != c.noTOA {
			t.Errorf("%q: NoTOA %v, want %v", c.args, got, c.noTOA)
		}
	}
}
