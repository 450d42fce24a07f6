package keepalived

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files from the current output")

// dump renders a Config as stable text for golden comparisons.
func dump(cfg *Config) string {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(0, "files %s", strings.Join(cfg.Files, " "))
	if s := cfg.SSL; s != nil {
		w(0, "ssl %s cert=%q key=%q ca=%q password=%q", s.Pos, s.Certificate, s.Key, s.CA, s.Password)
	}
	for _, g := range cfg.LocalAddressGroups {
		w(0, "local_address_group %s at %s: %v", g.Name, g.Pos, g.Addrs)
	}
	if sd := cfg.SyncDaemon; sd != nil {
		w(0, "lvs_sync_daemon %s inst %q id %d maxlen %d port %d ttl %d group %v at %s", sd.Interface, sd.VRRPInstance, sd.SyncID, sd.MaxLen, sd.Port, sd.TTL, sd.Group, sd.Pos)
	}
	for _, g := range cfg.Groups {
		w(0, "virtual_server_group %s at %s", g.Name, g.Pos)
		for _, e := range g.Entries {
			if e.IsFWMark {
				w(1, "fwmark %d family %d at %s", e.FWMark, e.FWMarkFamily, e.Pos)
				continue
			}
			w(1, "%s-%s port %d at %s", e.First, e.Last, e.Port, e.Pos)
		}
	}
	for _, t := range cfg.TrackFiles {
		w(0, "track_file %s at %s: file %q weight %d reverse %v init %v %d overwrite %v", t.Name, t.Pos, t.Path, t.Weight, t.Reverse, t.Init, t.InitValue, t.Overwrite)
	}
	for _, vs := range cfg.VirtualServers {
		w(0, "virtual_server %s at %s", vs.ServiceKey, vs.Pos)
		if vs.Group != "" {
			w(1, "group %s entry %s", vs.Group, vs.GroupEntry)
		}
		w(1, "sched %s flags %v ops %v hashed %v method %s", vs.Scheduler, vs.SchedFlags, vs.OnePacket, vs.Hashed, vs.Method)
		w(1, "persistence %d granularity %q engine %q", vs.PersistenceTimeout, vs.PersistenceGranularity, vs.PersistenceEngine)
		w(1, "delay_loop %v quorum %d hysteresis %d alpha %v omega %v ha_suspend %v virtualhost %q",
			vs.DelayLoop, vs.Quorum, vs.Hysteresis, vs.Alpha, vs.Omega, vs.HASuspend, vs.VirtualHost)
		if vs.QuorumUp != "" || vs.QuorumDown != "" {
			w(1, "quorum_up %q quorum_down %q", vs.QuorumUp, vs.QuorumDown)
		}
		if vs.LaddrGroup != "" || vs.LocalAddrs != nil {
			w(1, "laddr_group_name %s local addresses %v", vs.LaddrGroup, vs.LocalAddrs)
		}
		if ss := vs.SorryServer; ss != nil {
			w(1, "sorry_server %s weight %d inhibit %v method %s at %s", ss.Addr, ss.Weight, ss.Inhibit, ss.Method, ss.Pos)
		}
		for _, rs := range vs.RealServers {
			w(1, "real_server %s at %s", rs.Addr, rs.Pos)
			w(2, "weight %d method %s inhibit %v thresholds %d/%d", rs.Weight, rs.Method, rs.Inhibit, rs.UThreshold, rs.LThreshold)
			if rs.NotifyUp != "" || rs.NotifyDown != "" {
				w(2, "notify_up %q notify_down %q", rs.NotifyUp, rs.NotifyDown)
			}
			for _, c := range rs.Checkers {
				w(2, "%s at %s", c.Type, c.Pos)
				w(3, "delay_loop %v retry %d delay_before_retry %v warmup %v alpha %v",
					c.DelayLoop, c.Retry, c.DelayBeforeRetry, c.Warmup, c.Alpha)
				switch c.Type {
				case CheckMisc:
					w(3, "misc_path %q timeout %v dynamic %v user %q group %q", c.MiscPath, c.MiscTimeout, c.MiscDynamic, c.User, c.Group)
					continue
				case CheckFile:
					w(3, "track_file %s (%s) weight %d reverse %v", c.TrackFile.Name, c.TrackFile.Path, c.FileWeight, c.FileReverse)
					continue
				}
				w(3, "connect %s timeout %v bindto %v bind_port %d bind_if %q fwmark %d",
					c.Connect, c.ConnectTimeout, c.BindTo, c.BindPort, c.BindIf, c.FWMark)
				switch c.Type {
				case CheckTCP, CheckPing:
					continue
				case CheckSMTP:
					w(3, "helo_name %q", c.HeloName)
					continue
				case CheckDNS:
					w(3, "type %s name %q", c.DNSType, c.DNSName)
					continue
				case CheckUDP:
					w(3, "payload %x require_reply %v %x mask %x length %d-%d", c.Payload, c.RequireReply, c.ReplyData, c.ReplyMask, c.MinReplyLen, c.MaxReplyLen)
					continue
				}
				w(3, "http %s sni %v %q", c.HTTPProtocol, c.EnableSNI, c.SNIName)
				for _, u := range c.URLs {
					w(3, "url %q digest %q status %v virtualhost %q", u.Path, u.Digest, u.StatusCodes, u.VirtualHost)
				}
			}
		}
	}
	for _, wn := range cfg.Warnings {
		w(0, "%s", wn)
	}
	return b.String()
}

// checkGolden compares got with testdata/name, rewriting it under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
