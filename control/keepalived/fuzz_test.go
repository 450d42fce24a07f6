package keepalived

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fuzzOptions serve one include file from memory so includes are exercised without the
// real file system.
var fuzzOptions = Options{
	ConfigID: "a",
	ReadFile: func(name string) ([]byte, error) {
		if filepath.Base(name) == "inc.conf" {
			return []byte("virtual_server 198.18.0.99 80 {\nprotocol TCP\nreal_server 198.18.1.1 80 { TCP_CHECK { } }\n}\n"), nil
		}
		return nil, fs.ErrNotExist
	},
	Glob: func(p string) ([]string, error) {
		if strings.Contains(p, "inc") {
			return []string{filepath.Join(filepath.Dir(p), "inc.conf")}, nil
		}
		return nil, nil
	},
	Getenv: func(string) string { return "198.18.0.1" },
}

// FuzzParse feeds arbitrary text to the parser and checks its invariants: an error or a
// configuration, never both; errors have positions and kinds; a configuration is
// internally consistent (every correction keepalived makes has been made), compares equal
// to itself, and parsing is deterministic.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata", "testdata/errors", "testdata/warnings", "testdata/realworld", "testdata/conf.d", "testdata/dr.d"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse("fuzz.conf", src, fuzzOptions)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v: want exactly one", cfg != nil, err)
		}
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 || len(list) > maxErrors {
				t.Fatalf("error %T (%v) is not an ErrorList of 1 to %d errors", err, err, maxErrors)
			}
			for _, e := range list {
				if e.Pos.File == "" || e.Pos.Line <= 0 || e.Msg == "" {
					t.Fatalf("error without position or message: %q", e)
				}
				if !errors.Is(e, ErrSyntax) && !errors.Is(e, ErrInclude) {
					t.Fatalf("error %q wraps neither ErrSyntax nor ErrInclude", e)
				}
			}
			return
		}
		checkConfig(t, cfg)
		if d := Diff(cfg, cfg); !d.Empty() {
			t.Fatalf("Diff of a configuration with itself:\n%s", d)
		}
		again, err := Parse("fuzz.conf", src, fuzzOptions)
		if err != nil || dump(again) != dump(cfg) {
			t.Fatalf("second parse differs (err %v)", err)
		}
	})
}

// checkConfig asserts the invariants of a resolved configuration.
func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	keys := map[ServiceKey]bool{}
	for _, vs := range cfg.VirtualServers {
		if keys[vs.ServiceKey] {
			t.Fatalf("duplicate virtual server %s", vs.ServiceKey)
		}
		keys[vs.ServiceKey] = true
		if !vs.Addr.IsValid() || !slices.Contains([]string{ProtoTCP, ProtoUDP, ProtoSCTP}, vs.Protocol) {
			t.Fatalf("bad key %s", vs.ServiceKey)
		}
		if !slices.Contains(schedulers, vs.Scheduler) || !validMethod(vs.Method) {
			t.Fatalf("%s: scheduler %q method %+v", vs.ServiceKey, vs.Scheduler, vs.Method)
		}
		if vs.Port == 0 && vs.PersistenceTimeout == 0 && vs.FWMark == 0 {
			t.Fatalf("%s: port 0 without persistence", vs.ServiceKey)
		}
		if len(vs.RealServers) == 0 {
			t.Fatalf("%s kept without real servers", vs.ServiceKey)
		}
		var sum uint64
		seen := map[string]bool{}
		for _, rs := range vs.RealServers {
			if seen[rs.Addr.String()] {
				t.Fatalf("%s: duplicate real server %s", vs.ServiceKey, rs.Addr)
			}
			seen[rs.Addr.String()] = true
			if rs.Weight < 0 || rs.Weight > 65535 || !validMethod(rs.Method) {
				t.Fatalf("%s: real server %s weight %d method %+v", vs.ServiceKey, rs.Addr, rs.Weight, rs.Method)
			}
			if (rs.Method.Kind == MethodDR || rs.Method.Kind == MethodTUN) && rs.Addr.Port() != vs.Port {
				t.Fatalf("%s: %s real server %s on another port", vs.ServiceKey, rs.Method.Kind, rs.Addr)
			}
			if rs.Method.Kind != MethodTUN && rs.Addr.Addr().Is6() != vs.Addr.Is6() {
				t.Fatalf("%s: real server %s of another family", vs.ServiceKey, rs.Addr)
			}
			sum += uint64(rs.Weight)
			for _, c := range rs.Checkers {
				if c.DelayLoop < 0 || c.DelayBeforeRetry < 0 || c.Warmup < 0 {
					t.Fatalf("negative timing in %+v", c)
				}
				switch c.Type {
				case CheckMisc:
					if len(c.MiscPath) == 0 || c.MiscTimeout < 0 {
						t.Fatalf("MISC_CHECK without path: %+v", c)
					}
				case CheckFile:
					if c.TrackFile == nil || c.TrackFile.Path == "" || c.Retry != 0 || c.DelayLoop != FileCheckInterval {
						t.Fatalf("FILE_CHECK without a track file or with timing: %+v", c)
					}
				case CheckPing:
					if !c.Connect.Addr().IsValid() || c.ConnectTimeout <= 0 {
						t.Fatalf("PING_CHECK without address or timeout: %+v", c)
					}
				case CheckSMTP, CheckDNS, CheckUDP:
					if c.Connect.Port() == 0 || c.ConnectTimeout <= 0 {
						t.Fatalf("%s without port or timeout: %+v", c.Type, c)
					}
					if c.Type == CheckSMTP && (c.HeloName == "" || strings.ContainsAny(c.HeloName, "\r\n")) {
						t.Fatalf("SMTP_CHECK helo_name %q", c.HeloName)
					}
					if c.Type == CheckDNS && (c.DNSType == "" || c.DNSName == "") {
						t.Fatalf("DNS_CHECK without type or name: %+v", c)
					}
				case CheckTCP, CheckHTTP, CheckSSL:
					if c.Connect.Port() == 0 || c.ConnectTimeout <= 0 {
						t.Fatalf("%s without port or timeout: %+v", c.Type, c)
					}
					if c.Type != CheckTCP && len(c.URLs) == 0 {
						t.Fatalf("%s without url", c.Type)
					}
					for _, u := range c.URLs {
						if len(u.StatusCodes) == 0 || (u.Digest != "" && len(u.Digest) != 32) {
							t.Fatalf("bad url %+v", u)
						}
					}
				default:
					t.Fatalf("unknown checker type %q", c.Type)
				}
			}
		}
		if uint64(vs.Quorum) > sum {
			t.Fatalf("%s: quorum %d above total weight %d", vs.ServiceKey, vs.Quorum, sum)
		}
		if vs.Hysteresis > 0 && vs.Hysteresis >= vs.Quorum {
			t.Fatalf("%s: hysteresis %d not below quorum %d", vs.ServiceKey, vs.Hysteresis, vs.Quorum)
		}
		checkLaddrs(t, cfg, vs)
	}
}

// checkLaddrs: a virtual server forwarding with FNAT has the local addresses of a defined
// group, of its own family, each once; any other has none.
func checkLaddrs(t *testing.T, cfg *Config, vs VirtualServer) {
	t.Helper()
	if !vs.usesFNAT() {
		if vs.LaddrGroup != "" || vs.LocalAddrs != nil {
			t.Fatalf("%s without FNAT has local addresses %q %v", vs.ServiceKey, vs.LaddrGroup, vs.LocalAddrs)
		}
		return
	}
	i := slices.IndexFunc(cfg.LocalAddressGroups, func(g LocalAddressGroup) bool { return g.Name == vs.LaddrGroup })
	if i < 0 || len(vs.LocalAddrs) == 0 {
		t.Fatalf("%s: FNAT with group %q (defined: %v) and local addresses %v", vs.ServiceKey, vs.LaddrGroup, i >= 0, vs.LocalAddrs)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range vs.LocalAddrs {
		if seen[a] || a.Is6() != vs.Addr.Is6() || !slices.Contains(cfg.LocalAddressGroups[i].Addrs, a) || a.IsUnspecified() || a.IsMulticast() {
			t.Fatalf("%s: bad local address %s in %v", vs.ServiceKey, a, vs.LocalAddrs)
		}
		seen[a] = true
	}
}

func validMethod(m Method) bool {
	switch m.Kind {
	case MethodNAT, MethodDR, MethodFNAT:
		return m.TunType == "" && m.TunFlags == ""
	case MethodTUN:
		return slices.Contains([]string{"ipip", "gue", "gre"}, m.TunType)
	}
	return false
}
