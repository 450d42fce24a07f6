package keepalived

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestExamples parses realistic configurations that use every supported keyword and
// compares the resolved result, warnings included, with golden dumps.
func TestExamples(t *testing.T) {
	for _, name := range []string{"nat.conf", "dr.conf", "minimal.conf", "fnat.conf"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", name), Options{ConfigID: "lvs1"})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkGolden(t, name+".golden", dump(cfg))
			if d := Diff(cfg, cfg); !d.Empty() {
				t.Errorf("Diff of a configuration with itself is not empty:\n%s", d)
			}
		})
	}
}

// TestErrors checks the exact messages for broken files: each testdata/errors/X.conf has
// its expected error text in X.golden.
func TestErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no error cases: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".conf")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(f, Options{})
			if err == nil {
				t.Fatalf("Load succeeded, want an error; got\n%s", dump(cfg))
			}
			if cfg != nil {
				t.Errorf("Load returned a Config with an error")
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if e.Pos.File == "" || e.Pos.Line <= 0 {
					t.Errorf("error without a position: %q", e)
				}
				if !errors.Is(e, ErrSyntax) && !errors.Is(e, ErrInclude) {
					t.Errorf("error %q wraps neither ErrSyntax nor ErrInclude", e)
				}
			}
			checkGolden(t, filepath.Join("errors", name+".golden"), err.Error()+"\n")
		})
	}
}

// TestWarnings: what keepalived logs and carries on from (an unknown or misspelt
// keyword, extra words on a line, a keyword that does not belong in a MISC_CHECK,
// persistence_timeout 0) loads with a Warning naming file and line, as keepalived does;
// each testdata/warnings/X.conf has its resolved dump, warnings included, in X.golden.
func TestWarnings(t *testing.T) {
	files, err := filepath.Glob("testdata/warnings/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no warning cases: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".conf")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(f, Options{})
			if err != nil {
				t.Fatalf("Load: %v (want warnings only)", err)
			}
			if len(cfg.Warnings) == 0 {
				t.Fatalf("no warnings")
			}
			for _, w := range cfg.Warnings {
				if w.Pos.File != f || w.Pos.Line <= 0 {
					t.Errorf("warning without a file:line position: %q", w)
				}
			}
			checkGolden(t, filepath.Join("warnings", name+".golden"), dump(cfg))
		})
	}
}

func TestErrorKinds(t *testing.T) {
	_, err := Load("testdata/errors/include_missing.conf", Options{})
	if !errors.Is(err, ErrInclude) {
		t.Errorf("missing includem file: %v does not wrap ErrInclude", err)
	}
	_, err = Load("testdata/errors/bad_weight.conf", Options{})
	if !errors.Is(err, ErrSyntax) || errors.Is(err, ErrInclude) {
		t.Errorf("bad weight: %v should wrap ErrSyntax only", err)
	}
	_, err = Load("testdata/no-such-file.conf", Options{})
	if !errors.Is(err, ErrInclude) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing main file: %v should wrap ErrInclude and fs.ErrNotExist", err)
	}
	if want := "testdata/no-such-file.conf: read configuration: open testdata/no-such-file.conf: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing main file: %v, want %q", err, want)
	}
}

// parseOne parses src as the only file and fails the test on error.
func parseOne(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse("test.conf", []byte(src), Options{ReadFile: noFiles, Glob: noGlob})
	if err != nil {
		t.Fatalf("Parse: %v\nsource:\n%s", err, src)
	}
	return cfg
}

func noFiles(string) ([]byte, error)  { return nil, fs.ErrNotExist }
func noGlob(string) ([]string, error) { return nil, nil }
func warnings(cfg *Config) (s []string) {
	for _, w := range cfg.Warnings {
		s = append(s, w.Msg)
	}
	return s
}

// TestDefaults checks keepalived's defaults and the inheritance virtual server → real
// server → checker, one setting at a time.
func TestDefaults(t *testing.T) {
	const base = `virtual_server 198.18.0.10 80 {
    protocol TCP
    %VS%
    real_server 198.18.1.1 80 {
        %RS%
        %CHECK% {
            url { path / }
            misc_path /bin/true
            %CK%
        }
    }
}`
	type want struct {
		delayLoop, connect, dbr, warmup time.Duration
		retry                           uint32
		alpha, inhibit                  bool
		weight                          int32
	}
	defaults := want{delayLoop: 60 * time.Second, connect: 5 * time.Second, dbr: time.Second, warmup: 60 * time.Second, retry: 1, weight: 1}
	tests := []struct {
		name            string
		check           string
		vs, rs, ck      string
		mod             func(w *want)
		connect, misc   bool
		wantMiscTimeout time.Duration
	}{
		{name: "tcp defaults", check: "TCP_CHECK"},
		{name: "http delay_before_retry 3s", check: "HTTP_GET", mod: func(w *want) { w.dbr = 3 * time.Second }},
		{name: "ssl delay_before_retry 3s", check: "SSL_GET", mod: func(w *want) { w.dbr = 3 * time.Second }},
		{name: "misc retry 0, timeout = vs delay_loop", check: "MISC_CHECK", misc: true, wantMiscTimeout: 60 * time.Second,
			mod: func(w *want) { w.retry = 0 }},
		{name: "vs settings inherited", check: "TCP_CHECK",
			vs: "delay_loop 7\n connect_timeout 2.5\n retry 4\n delay_before_retry 0.5\n alpha\n inhibit_on_failure\n weight 9",
			mod: func(w *want) {
				*w = want{7 * time.Second, 2500 * time.Millisecond, 500 * time.Millisecond, 7 * time.Second, 4, true, true, 9}
			}},
		{name: "warmup follows the checker's delay_loop", check: "TCP_CHECK", vs: "delay_loop 7", ck: "delay_loop 3",
			mod: func(w *want) { w.delayLoop, w.warmup = 3*time.Second, 3*time.Second }},
		{name: "rs overrides vs", check: "TCP_CHECK",
			vs: "delay_loop 7\n retry 4\n alpha\n inhibit_on_failure\n weight 9\n warmup 1",
			rs: "delay_loop 8\n retry 2\n alpha off\n inhibit_on_failure false\n weight 3\n warmup 2\n connect_timeout 6\n delay_before_retry 4",
			mod: func(w *want) {
				*w = want{8 * time.Second, 6 * time.Second, 4 * time.Second, 2 * time.Second, 2, false, false, 3}
			}},
		{name: "checker overrides rs", check: "TCP_CHECK",
			rs: "delay_loop 8\n retry 2\n alpha\n connect_timeout 6\n delay_before_retry 4",
			ck: "delay_loop 9\n retry 0\n alpha no\n connect_timeout 1\n delay_before_retry 0.25\n warmup 0",
			mod: func(w *want) {
				w.delayLoop, w.retry, w.connect, w.dbr, w.warmup = 9*time.Second, 0, time.Second, 250*time.Millisecond, 0
			}},
		{name: "misc_timeout", check: "MISC_CHECK", misc: true, ck: "misc_timeout 2", vs: "delay_loop 5", wantMiscTimeout: 2 * time.Second,
			mod: func(w *want) { w.retry, w.delayLoop, w.warmup = 0, 5*time.Second, 5*time.Second }},
		{name: "nb_get_retry", check: "HTTP_GET", ck: "nb_get_retry 5", mod: func(w *want) { w.retry, w.dbr = 5, 3*time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.NewReplacer("%VS%", tt.vs, "%RS%", tt.rs, "%CK%", tt.ck, "%CHECK%", tt.check).Replace(base)
			if tt.check != "MISC_CHECK" {
				src = strings.Replace(src, "misc_path /bin/true", "", 1)
			}
			if tt.check != "HTTP_GET" && tt.check != "SSL_GET" {
				src = strings.Replace(src, "url { path / }", "", 1)
			}
			cfg := parseOne(t, src)
			w := defaults
			if tt.mod != nil {
				tt.mod(&w)
			}
			rs := cfg.VirtualServers[0].RealServers[0]
			c := rs.Checkers[0]
			got := want{c.DelayLoop, c.ConnectTimeout, c.DelayBeforeRetry, c.Warmup, c.Retry, c.Alpha, rs.Inhibit, rs.Weight}
			if tt.misc {
				got.connect = w.connect // MISC_CHECK has no connection
				if c.MiscTimeout != tt.wantMiscTimeout {
					t.Errorf("misc timeout %v, want %v", c.MiscTimeout, tt.wantMiscTimeout)
				}
			}
			if got != w {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestServiceDefaults(t *testing.T) {
	cfg := parseOne(t, `virtual_server 198.18.0.10 80 {
		real_server 198.18.1.1 80 {
			TCP_CHECK {
			}
		}
		real_server 198.18.1.2 {
		}
	}`)
	vs := cfg.VirtualServers[0]
	if vs.Protocol != ProtoUDP || vs.Scheduler != "wlc" || vs.Method.Kind != MethodNAT || vs.Quorum != 1 || vs.Hysteresis != 0 ||
		vs.DelayLoop != DefaultDelayLoop || vs.PersistenceTimeout != 0 {
		t.Errorf("service defaults wrong: %+v", vs)
	}
	if got := vs.RealServers[1].Addr; got != netip.MustParseAddrPort("198.18.1.2:80") {
		t.Errorf("real server without port: %v, want the service port", got)
	}
	if c := vs.RealServers[0].Checkers[0]; c.Connect != netip.MustParseAddrPort("198.18.1.1:80") {
		t.Errorf("TCP_CHECK connects to %v, want the real server", c.Connect)
	}
	want := []string{
		"virtual_server 198.18.0.10:80: no protocol set: UDP assumed, as keepalived does; add \"protocol TCP\" for a TCP service",
		"virtual_server 198.18.0.10:80: no forwarding method (lb_kind) set: NAT assumed, as keepalived does",
	}
	if got := warnings(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%q\nwant\n%q", got, want)
	}
}

// TestCorrections covers the fixes keepalived makes with a warning.
func TestCorrections(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, vs VirtualServer)
		warn  string
	}{
		{"quorum above total weight", "quorum 10\n real_server 198.18.1.1 80 { weight 2 }\n real_server 198.18.1.2 80 { weight 3 }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.Quorum, uint32(5)) },
			"quorum 10 exceeds the total weight of its real servers 5: reduced to 5, as keepalived does"},
		{"hysteresis not below quorum", "quorum 2\n hysteresis 2\n real_server 198.18.1.1 80 { weight 2 }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.Hysteresis, uint32(1)) },
			"hysteresis 2 is not below quorum 2: set to 1, as keepalived does"},
		{"quorum 0", "quorum 0\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.Quorum, uint32(1)) },
			"quorum 0 raised to 1, as keepalived does: the quorum is at least 1"},
		{"DR port reset", "lb_kind DR\n real_server 198.18.1.1 8080 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.RealServers[0].Addr.Port(), uint16(80)) },
			"real_server 198.18.1.1: port 8080 differs from virtual_server port 80, which DR needs: 80 used, as keepalived does"},
		{"NAT keeps its port", "real_server 198.18.1.1 8080 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.RealServers[0].Addr.Port(), uint16(8080)) }, ""},
		{"duplicate real server", "real_server 198.18.1.1 80 { weight 1 }\n real_server 198.18.1.1 { weight 2 }",
			func(t *testing.T, vs VirtualServer) {
				eq(t, len(vs.RealServers), 1)
				eq(t, vs.RealServers[0].Weight, int32(1))
			},
			"is a duplicate of the one at test.conf:"},
		{"ops needs UDP", "ops\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.OnePacket, false) },
			"ops (one-packet scheduling) needs UDP: ignored"},
		{"sh flag on rr", "lb_algo rr\n sh-port\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, len(vs.SchedFlags), 0) },
			"sh-port only applies to the sh scheduler: ignored"},
		{"mh flags", "lb_algo mh\n flag-1\n mh-port\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, strings.Join(vs.SchedFlags, ","), "mh-fallback,mh-port") }, ""},
		{"granularity implies persistence", "persistence_granularity 255.255.0.0\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.PersistenceTimeout, uint32(DefaultPersistenceTimeout)) }, ""},
		{"sorry server port and inhibit", "sorry_server 198.18.9.9\n sorry_server_inhibit\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) {
				eq(t, vs.SorryServer.Addr, netip.MustParseAddrPort("198.18.9.9:80"))
				eq(t, vs.SorryServer.Inhibit, true)
				eq(t, vs.SorryServer.Weight, int32(1))
			}, ""},
		{"sorry server of another family", "sorry_server 2001:db8::9 80\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, vs.SorryServer == nil, true) },
			"is of another address family and forwarding is not TUN: ignored, as keepalived does"},
		{"real server of another family", "real_server 2001:db8::1 80 { }\n real_server 198.18.1.1 80 { }",
			func(t *testing.T, vs VirtualServer) { eq(t, len(vs.RealServers), 1) },
			"address family differs from virtual_server 198.18.0.10 and forwarding is not TUN: ignored, as keepalived does"},
		{"http without url", "real_server 198.18.1.1 80 { HTTP_GET { connect_timeout 2 } }",
			func(t *testing.T, vs VirtualServer) { eq(t, len(vs.RealServers[0].Checkers), 0) },
			"HTTP_GET of real_server 198.18.1.1:80 has no url with a path: ignored, as keepalived does"},
		{"misc without path", "real_server 198.18.1.1 80 { MISC_CHECK { misc_timeout 2 } }",
			func(t *testing.T, vs VirtualServer) { eq(t, len(vs.RealServers[0].Checkers), 0) },
			"MISC_CHECK of real_server 198.18.1.1:80 has no misc_path: ignored, as keepalived does"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseOne(t, "virtual_server 198.18.0.10 80 {\n protocol TCP\n lb_kind NAT\n lb_algo wlc\n"+tt.body+"\n}\n")
			if len(cfg.VirtualServers) != 1 {
				t.Fatalf("%d virtual servers, want 1", len(cfg.VirtualServers))
			}
			tt.check(t, cfg.VirtualServers[0])
			ws := strings.Join(warnings(cfg), "\n")
			if tt.warn == "" && ws != "" {
				t.Errorf("unexpected warnings: %s", ws)
			}
			if tt.warn != "" && !strings.Contains(ws, tt.warn) {
				t.Errorf("warnings %q do not contain %q", ws, tt.warn)
			}
		})
	}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestVirtualServerWithoutRealServers(t *testing.T) {
	cfg := parseOne(t, "virtual_server 198.18.0.10 80 {\n protocol TCP\n}\n")
	if len(cfg.VirtualServers) != 0 {
		t.Errorf("a virtual server without real servers was kept")
	}
	if w := warnings(cfg); len(w) != 1 || !strings.Contains(w[0], "has no real servers: ignored") {
		t.Errorf("warnings %q", w)
	}
}

// TestLexing covers the file syntax: comments, quotes and escapes, braces sharing lines,
// braces on their own line, conditional lines and parameters.
func TestLexing(t *testing.T) {
	tests := []struct {
		name string
		src  string
		id   string
		want func(t *testing.T, cfg *Config)
	}{
		{"comments", "# c\n! c\nvirtual_server 198.18.0.10 80 { # c\n protocol TCP ! c\n real_server 198.18.1.1 80 { weight 4 } # c\n}",
			"", func(t *testing.T, cfg *Config) { eq(t, cfg.VirtualServers[0].RealServers[0].Weight, int32(4)) }},
		{"one line", "virtual_server 198.18.0.10 80 { protocol TCP real_server 198.18.1.1 80 { weight 4 } }",
			"", func(t *testing.T, cfg *Config) {
				// "protocol TCP real_server ... { ... }" is one statement: keepalived reads
				// "protocol TCP" and ignores the rest, so the virtual server has no real
				// server and is dropped; each step is a warning.
				eq(t, len(cfg.VirtualServers), 0)
				eq(t, warningsText(cfg), "1: protocol: extra \"real_server 198.18.1.1 80\" ignored, as keepalived does: expected \"protocol TCP|UDP|SCTP\"\n"+
					"1: protocol: block ignored, as keepalived does: expected \"protocol TCP|UDP|SCTP\"\n"+
					"1: virtual_server 198.18.0.10:80 has no real servers: ignored, as keepalived does\n")
			}},
		{"brace on the next line", "virtual_server 198.18.0.10 80\n\n{\nprotocol TCP\nreal_server 198.18.1.1 80\n{\nweight 4\n}\n}",
			"", func(t *testing.T, cfg *Config) { eq(t, cfg.VirtualServers[0].RealServers[0].Weight, int32(4)) }},
		{"statements between braces", "virtual_server 198.18.0.10 80 {\nprotocol TCP\nreal_server 198.18.1.1 80 { weight 4\n TCP_CHECK { connect_port 81 } }\n}",
			"", func(t *testing.T, cfg *Config) {
				eq(t, cfg.VirtualServers[0].RealServers[0].Checkers[0].Connect.Port(), uint16(81))
			}},
		{"quotes and escapes", `virtual_server 198.18.0.10 80 {
protocol TCP
virtualhost 'a"b'"c d"
real_server 198.18.1.1 80 {
 MISC_CHECK { misc_path "/bin/echo \x41\101\t'x y' #not-a-comment" }
}
}`, "", func(t *testing.T, cfg *Config) {
			vs := cfg.VirtualServers[0]
			eq(t, vs.VirtualHost, `a"bc d`)
			eq(t, strings.Join(vs.RealServers[0].Checkers[0].MiscPath, "|"), "/bin/echo|AA|x y|#not-a-comment")
		}},
		{"conditional lines", "virtual_server 198.18.0.10 80 {\nprotocol TCP\nreal_server 198.18.1.1 80 {\n@main weight 5\n@^main weight 6\n}\n}",
			"main", func(t *testing.T, cfg *Config) { eq(t, cfg.VirtualServers[0].RealServers[0].Weight, int32(5)) }},
		{"negated conditional", "virtual_server 198.18.0.10 80 {\nprotocol TCP\nreal_server 198.18.1.1 80 {\n@main weight 5\n@^main weight 6\n}\n}",
			"backup", func(t *testing.T, cfg *Config) { eq(t, cfg.VirtualServers[0].RealServers[0].Weight, int32(6)) }},
		{"parameters", "$VIP=198.18.0.10\n$W=7\n$PORT= 80\nvirtual_server $VIP ${PORT} {\nprotocol TCP\nreal_server 198.18.1.1 ${PORT} { weight $W }\n}",
			"", func(t *testing.T, cfg *Config) {
				vs := cfg.VirtualServers[0]
				eq(t, vs.Addr, netip.MustParseAddr("198.18.0.10"))
				eq(t, vs.RealServers[0].Weight, int32(7))
			}},
		{"multi-line parameter", "$RS= \\\n real_server 198.18.1.${N} 80 { \\\n  weight ${N} \\\n }\n" +
			"virtual_server 198.18.0.10 80 {\nprotocol TCP\n$N=1\n$RS\n$N=2\n$RS\n}",
			"", func(t *testing.T, cfg *Config) {
				rs := cfg.VirtualServers[0].RealServers
				eq(t, len(rs), 2)
				eq(t, rs[1].Addr, netip.MustParseAddrPort("198.18.1.2:80"))
				eq(t, rs[1].Weight, int32(2))
			}},
		{"predefined parameters", "virtual_server 198.18.0.10 80 {\nprotocol TCP\nvirtualhost a${_HASH}b${_BANG}c\nreal_server 198.18.1.1 80 {\nMISC_CHECK { misc_path ${_PWD}/chk.sh }\n}\n}",
			"", func(t *testing.T, cfg *Config) {
				vs := cfg.VirtualServers[0]
				eq(t, vs.VirtualHost, "a#b!c")
				eq(t, vs.RealServers[0].Checkers[0].MiscPath[0], "./chk.sh")
			}},
		{"undefined parameter stays", "virtual_server 198.18.0.10 80 {\nprotocol TCP\nvirtualhost $UNDEF\nreal_server 198.18.1.1 80 { }\n}",
			"", func(t *testing.T, cfg *Config) { eq(t, cfg.VirtualServers[0].VirtualHost, "$UNDEF") }},
		{"IPv6 with and without brackets", "virtual_server [2001:db8::10] 80 {\nprotocol TCP\nreal_server 2001:db8::1 80 { }\nreal_server [2001:db8::2] 80 { }\n}",
			"", func(t *testing.T, cfg *Config) {
				eq(t, cfg.VirtualServers[0].RealServers[1].Addr, netip.MustParseAddrPort("[2001:db8::2]:80"))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("./test.conf", []byte(tt.src), Options{ConfigID: tt.id, ReadFile: noFiles, Glob: noGlob})
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Parse succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.want(t, cfg)
		})
	}
}

func TestParameterLoop(t *testing.T) {
	_, err := Parse("t.conf", []byte("$A=${A}x\nvirtual_server $A 80 {\n}\n"), Options{ReadFile: noFiles, Glob: noGlob})
	if err == nil || !strings.Contains(err.Error(), "refers to itself") {
		t.Errorf("self-referencing parameter: %v", err)
	}
}

func TestEnvParameter(t *testing.T) {
	src := "virtual_server ${_ENV VIP} 80 {\nprotocol TCP\nreal_server 198.18.1.1 80 { }\n}"
	cfg, err := Parse("t.conf", []byte(src), Options{Getenv: func(k string) string {
		if k == "VIP" {
			return "198.18.0.77"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, cfg.VirtualServers[0].Addr, netip.MustParseAddr("198.18.0.77"))
	if _, err := Parse("t.conf", []byte(src), Options{}); err == nil {
		t.Errorf("${_ENV VIP} without Getenv was substituted")
	}
}

// TestIncludes covers globs, braces, relative paths, nesting, loops and missing files on
// a real directory tree.
func TestIncludes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vs := func(n int) string {
		return "virtual_server 198.18.0." + string(rune('0'+n)) + " 80 {\nprotocol TCP\nlb_kind NAT\nreal_server 198.18.1.1 80 { }\n}\n"
	}
	write("main.conf", "include services/*.conf\ninclude extra/{a,b}.conf\ninclude none/*.conf\n")
	write("services/1.conf", vs(1)+"include ../nested/n.conf\n")
	write("services/2.conf", vs(2))
	write("services/skip.txt", vs(9))
	write("nested/n.conf", vs(3))
	write("extra/a.conf", vs(4))
	write("extra/b.conf", vs(5))
	write("extra/c.conf", vs(6))
	cfg, err := Load(filepath.Join(dir, "main.conf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range cfg.VirtualServers {
		got = append(got, v.Addr.String())
	}
	want := []string{"198.18.0.1", "198.18.0.3", "198.18.0.2", "198.18.0.4", "198.18.0.5"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("virtual servers %v, want %v", got, want)
	}
	if len(cfg.Files) != 6 {
		t.Errorf("files %v, want main and 5 includes", cfg.Files)
	}
	if w := warnings(cfg); len(w) != 1 || !strings.Contains(w[0], "none/*.conf: no file matches, nothing included") {
		t.Errorf("warnings %q", w)
	}

	write("loop/a.conf", "include b.conf\n")
	write("loop/b.conf", "include a.conf\n")
	_, err = Load(filepath.Join(dir, "loop/a.conf"), Options{})
	if !errors.Is(err, ErrInclude) || !strings.Contains(err.Error(), "include loop") {
		t.Errorf("include loop: %v", err)
	}

	write("unreadable/main.conf", "include sub\n")
	if err := os.MkdirAll(filepath.Join(dir, "unreadable/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Load(filepath.Join(dir, "unreadable/main.conf"), Options{})
	if !errors.Is(err, ErrInclude) {
		t.Errorf("including a directory: %v, want ErrInclude", err)
	}
}

func TestExpandBraces(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a", []string{"a"}},
		{"{a,b}", []string{"a", "b"}},
		{"x{a,b}y{1,2}", []string{"xay1", "xay2", "xby1", "xby2"}},
		{"{a,{b,c}}", []string{"a", "b", "c"}},
		{"{,x}.conf", []string{".conf", "x.conf"}},
		{"{unclosed", []string{"{unclosed"}},
	}
	for _, tt := range tests {
		if got := expandBraces(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("expandBraces(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"/bin/x", []string{"/bin/x"}},
		{"  /bin/x  a   b ", []string{"/bin/x", "a", "b"}},
		{"/bin/x 'a b' \"c d\"", []string{"/bin/x", "a b", "c d"}},
		{"/bin/x ''", []string{"/bin/x", ""}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := splitCommand(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnsupportedBlocksWarnOnce(t *testing.T) {
	cfg := parseOne(t, `global_defs {
  router_id a
  notification_email {
    x@example.com
  }
}
vrrp_instance VI_1 {
  state MASTER
  virtual_ipaddress { 198.18.0.10 }
}
vrrp_instance VI_2 {
  state BACKUP
}
net_namespace blue
`)
	want := []string{
		"global_defs block ignored: global definitions",
		"vrrp_instance block ignored: VRRP is not done by xlvs; run keepalived for VRRP",
		"vrrp_instance block ignored: VRRP is not done by xlvs; run keepalived for VRRP",
		"net_namespace ignored: not used by xlvs",
	}
	if got := warnings(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings\n%q\nwant\n%q", got, want)
	}
}

func TestMiscPath(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{`/bin/chk`, []string{"/bin/chk"}},
		{`"/bin/chk a 'b c'"`, []string{"/bin/chk", "a", "b c"}},
		{`/bin/chk a 'b c'`, []string{"/bin/chk", "a", "b c"}},
		{`"/bin/chk" "b c"`, []string{"/bin/chk", "b c"}},
	}
	for _, tt := range tests {
		cfg := parseOne(t, "virtual_server 198.18.0.10 80 {\nprotocol TCP\nlb_kind NAT\nreal_server 198.18.1.1 80 {\nMISC_CHECK {\nmisc_path "+tt.path+"\n}\n}\n}")
		if got := cfg.VirtualServers[0].RealServers[0].Checkers[0].MiscPath; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("misc_path %s: %q, want %q", tt.path, got, tt.want)
		}
	}
}

// warningsText lists cfg's warnings one a line as "LINE: message".
func warningsText(cfg *Config) string {
	var b strings.Builder
	for _, w := range cfg.Warnings {
		fmt.Fprintf(&b, "%d: %s\n", w.Pos.Line, w.Msg)
	}
	return b.String()
}

// TestNestedDefinitions: multi-line $NAME definitions that use other definitions, in the
// shape of keepalived.conf(5)'s nested example. As keepalived's read_line, every line of
// an expansion is read like a line of the file: "$HOST=1" inside $SERVICE defines HOST
// before the next line expands $BACKEND, and substitution happens when a line is used,
// so each use sees the values of that moment.
func TestNestedDefinitions(t *testing.T) {
	cfg, err := Load("testdata/nested_defs.conf", Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, vs := range cfg.VirtualServers {
		got = append(got, fmt.Sprintf("%s %s %s", vs.ServiceKey, vs.Scheduler, vs.Method))
		for _, rs := range vs.RealServers {
			c := rs.Checkers[0]
			got = append(got, fmt.Sprintf("  %s weight %d inhibit %v %s %s timeout %v", rs.Addr, rs.Weight, rs.Inhibit, c.Type, c.Connect, c.ConnectTimeout))
		}
	}
	want := []string{
		"TCP 192.0.2.10:80 wrr NAT",
		"  10.20.10.1:80 weight 1 inhibit true TCP_CHECK 10.20.10.1:8080 timeout 2s",
		"  10.20.10.2:80 weight 2 inhibit true TCP_CHECK 10.20.10.2:8080 timeout 2s",
		"  10.20.10.3:80 weight 3 inhibit true TCP_CHECK 10.20.10.3:8080 timeout 2s",
		"TCP 192.0.2.11:80 wrr NAT",
		"  10.20.11.1:80 weight 1 inhibit true TCP_CHECK 10.20.11.1:9090 timeout 2s",
		"  10.20.11.2:80 weight 2 inhibit true TCP_CHECK 10.20.11.2:9090 timeout 2s",
		"  10.20.11.3:80 weight 3 inhibit true TCP_CHECK 10.20.11.3:9090 timeout 2s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	// Positions: every statement of an expansion is at the line that used it.
	if len(cfg.VirtualServers) == 2 && len(cfg.VirtualServers[1].RealServers) == 3 {
		if p := cfg.VirtualServers[1].RealServers[2].Pos; p.Line != 32 {
			t.Errorf("position of an expanded real_server %s, want line 32 (the second $SERVICE line)", p)
		}
	}
}

// TestSelfUsingMultiLineParameter: a multi-line parameter that uses itself is an error
// naming the line, not a hang.
func TestSelfUsingMultiLineParameter(t *testing.T) {
	src := "$LOOP= \\\nvirtual_server 198.18.0.10 80 { \\\n}\n$AGAIN= \\\nprotocol TCP \\\n$AGAIN\n$AGAIN\n"
	_, err := Parse("loop.conf", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "loop.conf:7: ") || !strings.Contains(err.Error(), "uses itself") {
		t.Fatalf("err = %v, want an error at loop.conf:7 about a parameter that uses itself", err)
	}
}

// TestRealWorldShapes: configurations written in the shape of public ones (keepalived's
// samples, Octavia's rendered LVS configuration, kube-keepalived-vip, DPVS's FULLNAT
// setup, how-to posts) load with warnings only, each naming file and line, and give the
// services written in them.
func TestRealWorldShapes(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // per virtual server: key, scheduler, method, persistence, real servers, local addresses
	}{
		{"keepalived-sample.conf", []string{
			"TCP 192.0.2.100:443 rr NAT p50 rs[10.1.1.2:443 10.1.1.3:443] laddrs[]",
			"TCP 192.0.2.101:80 wlc DR p0 rs[10.1.1.5:80 10.1.1.6:80] laddrs[]",
		}},
		{"octavia-udp.conf", []string{
			"UDP 198.51.100.10:53 wrr NAT p120 rs[203.0.113.21:5353 203.0.113.22:5353] laddrs[]",
		}},
		{"kube-keepalived-vip.conf", []string{
			"TCP 10.4.0.50:80 wlc NAT p1800 rs[10.244.1.7:8080 10.244.2.9:8080] laddrs[]",
			"UDP 10.4.0.50:53 wlc NAT p1800 rs[10.244.1.3:53] laddrs[]",
		}},
		{"dpvs-fullnat.conf", []string{
			"TCP 192.168.50.254:8080 rr FNAT p0 rs[192.168.60.2:8080] laddrs[192.168.50.200 192.168.50.201 192.168.50.210 192.168.50.211 192.168.50.212]",
			"TCP 192.168.50.254:80 rr FNAT p0 rs[192.168.60.2:80 192.168.60.3:80] laddrs[192.168.50.200 192.168.50.201 192.168.50.210 192.168.50.211 192.168.50.212]",
		}},
		{"blog-dr.conf", []string{
			"TCP 203.0.113.80:6443 rr DR p0 rs[203.0.113.11:6443 203.0.113.12:6443] laddrs[]",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "realworld", tc.file)
			cfg, err := Load(path, Options{})
			if err != nil {
				t.Fatalf("Load: %v (want warnings only)", err)
			}
			var got []string
			for _, vs := range cfg.VirtualServers {
				var rs []string
				for _, r := range vs.RealServers {
					rs = append(rs, r.Addr.String())
				}
				got = append(got, fmt.Sprintf("%s %s %s p%d rs%v laddrs%v", vs.ServiceKey, vs.Scheduler, vs.Method, vs.PersistenceTimeout, rs, vs.LocalAddrs))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for _, w := range cfg.Warnings {
				if w.Pos.File != path || w.Pos.Line <= 0 {
					t.Errorf("warning without file:line: %q", w)
				}
				t.Log(w)
			}
		})
	}
}

// TestPersistenceTimeoutZero: keepalived refuses persistence_timeout 0 (its range starts
// at 1), reports it and keeps the service's timeout at 0, so the service is not
// persistent; xlvs does the same with a Warning. Port 0 still needs persistence, which
// keepalived then sets to its default, as without the line.
func TestPersistenceTimeoutZero(t *testing.T) {
	for _, tc := range []struct {
		name, port string
		want       uint32
		warnings   int
	}{
		{"port 80", "80", 0, 1},
		{"port 0", "0", DefaultPersistenceTimeout, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "virtual_server 198.18.0.10 " + tc.port + " {\n protocol TCP\n lb_kind DR\n persistence_timeout 0\n real_server 198.18.1.1 {\n }\n}\n"
			cfg, err := Parse("pto.conf", []byte(src), Options{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			eq(t, cfg.VirtualServers[0].PersistenceTimeout, tc.want)
			eq(t, len(cfg.Warnings), tc.warnings)
			eq(t, cfg.Warnings[0].Pos.Line, 4)
		})
	}
}

// TestStrict: with Options.Strict (text that is not a keepalived.conf, such as xlvsd
// --health-check's), what keepalived carries on from is an error.
func TestStrict(t *testing.T) {
	src := "virtual_server 198.18.0.10 80 {\n protocol TCP\n lb_kind NAT\n real_server 198.18.1.1 80 {\n  TCP_CHECK {\n   connect_timout 3\n   retry 2 3\n  }\n }\n}\n"
	if _, err := Parse("s.conf", []byte(src), Options{}); err != nil {
		t.Fatalf("lenient: %v", err)
	}
	_, err := Parse("s.conf", []byte(src), Options{Strict: true})
	want := "s.conf:6: TCP_CHECK: unknown keyword \"connect_timout\": did you mean \"connect_timeout\"?\n" +
		"s.conf:7: retry: extra \"3\": expected \"retry N\""
	if err == nil || err.Error() != want {
		t.Fatalf("strict: %v\nwant\n%s", err, want)
	}
}
