package health

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"xlvs/control/keepalived"
)

func parseConf(t *testing.T, src string) *keepalived.Config {
	t.Helper()
	cfg, err := keepalived.Parse(filepath.Join(t.TempDir(), "keepalived.conf"), []byte(src), keepalived.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestFromKeepalived(t *testing.T) {
	cfg := parseConf(t, `
virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind NAT
    delay_loop 2
    quorum 2
    hysteresis 1
    sorry_server 198.18.9.9 8080
    sorry_server_inhibit
    real_server 198.18.1.1 80 {
        weight 3
        inhibit_on_failure
        TCP_CHECK {
            connect_port 8081
            bindto 127.0.0.1
            fwmark 3
            retry 2
            delay_before_retry 0.5
            warmup 0
        }
        HTTP_GET {
            url {
                path /h
                status_code 200 300-399
                virtualhost v.example.com
            }
            url {
                path /i
                digest 0123456789ABCDEF0123456789abcdef
            }
            connect_timeout 3
        }
    }
    real_server 198.18.1.2 80 {
        alpha
        SSL_GET {
            url { path / }
            virtualhost s.example.com
            enable_sni
        }
        MISC_CHECK {
            misc_path "/bin/check 'a b'"
            misc_timeout 4
            misc_dynamic
        }
    }
}`)
	vss, err := FromKeepalived(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(vss) != 1 {
		t.Fatalf("%d virtual servers", len(vss))
	}
	vs := vss[0]
	if vs.Key.String() != "tcp 198.18.0.10:80" || vs.Quorum != 2 || vs.Hysteresis != 1 ||
		vs.Sorry == nil || vs.Sorry.Addr != ap("198.18.9.9:8080") || !vs.Sorry.Inhibit || vs.Sorry.Weight != 1 {
		t.Errorf("virtual server %+v sorry %+v", vs, vs.Sorry)
	}
	r1, r2 := vs.Servers[0], vs.Servers[1]
	if r1.Addr != ap("198.18.1.1:80") || r1.Weight != 3 || !r1.Inhibit || len(r1.Checks) != 2 {
		t.Fatalf("server 1 %+v", r1)
	}
	want := []string{
		"TCP_CHECK 198.18.1.1:8081 timeout 5s bindto 127.0.0.1:0 fwmark 3 interval 2s retry 2 retry-delay 500ms warmup 0s alpha false",
		`HTTP_GET 198.18.1.1:80 timeout 3s url{path "/h" status [{200 200} {300 399}] host "v.example.com"} url{path "/i" digest 0123456789abcdef0123456789abcdef status [{200 299}]} interval 2s retry 1 retry-delay 3s warmup 2s alpha false`,
		`SSL_GET 198.18.1.2:80 timeout 5s sni s.example.com url{path "/" status [{200 299}] host "s.example.com"} interval 2s retry 1 retry-delay 3s warmup 2s alpha true`,
		`MISC_CHECK ["/bin/check" "a b"] timeout 4s dynamic interval 2s retry 0 retry-delay 1s warmup 2s alpha true`,
	}
	got := []string{r1.Checks[0].String(), r1.Checks[1].String(), r2.Checks[0].String(), r2.Checks[1].String()}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("check %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if tc, ok := r1.Checks[0].Checker.(*TCP); !ok || tc.Dialer.Mark != 3 {
		t.Errorf("TCP_CHECK checker %#v", r1.Checks[0].Checker)
	}
	if h, ok := r2.Checks[0].Checker.(*HTTP); !ok || !h.TLS {
		t.Errorf("SSL_GET checker %#v", r2.Checks[0].Checker)
	}
}

// TestFromKeepalivedRuns runs a parsed HTTP_GET against a real server: the parsed
// configuration is usable as is.
func TestFromKeepalivedRuns(t *testing.T) {
	var hosts sync.Map
	srv := httptest.NewServer(testHandler(&hosts))
	t.Cleanup(srv.Close)
	addr := serverAddr(t, srv)
	cfg := parseConf(t, `virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind NAT
    real_server `+addr.Addr().String()+` `+strings.TrimPrefix(addr.String(), addr.Addr().String()+":")+` {
        HTTP_GET {
            url {
                path /ok
                digest `+md5hex("hello")+`
            }
        }
    }
}`)
	vss, err := FromKeepalived(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res := vss[0].Servers[0].Checks[0].Checker.Check(context.Background()); res.Err != nil {
		t.Errorf("parsed HTTP_GET against a good server: %v", res.Err)
	}
}

func writePEM(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	c := selfSigned(t, "lvs")
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestFromKeepalivedSSLBlock(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePEM(t, dir)
	vsText := `
virtual_server 198.18.0.10 443 {
    protocol TCP
    lb_kind NAT
    real_server 198.18.1.1 443 {
        SSL_GET { url { path / } }
    }
}`
	tests := []struct {
		name  string
		ssl   string
		certs int
		err   string
	}{
		{"no SSL block", "", 0, ""},
		{"certificate and key", "SSL {\n certificate " + cert + "\n key " + key + "\n}", 1, ""},
		{"missing files", "SSL {\n certificate " + filepath.Join(dir, "nope.pem") + "\n}", 0, "load SSL certificate"},
		{"encrypted key", "SSL {\n certificate " + cert + "\n key " + key + "\n password x\n}", 0, "encrypted key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vss, err := FromKeepalived(parseConf(t, tt.ssl+vsText))
			if tt.err != "" {
				if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("FromKeepalived: %v, want ErrSpec containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := vss[0].Servers[0].Checks[0].Checker.(*HTTP)
			if len(h.Certificates) != tt.certs {
				t.Errorf("%d client certificates, want %d", len(h.Certificates), tt.certs)
			}
		})
	}
}

func TestFromKeepalivedErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown user", `virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind NAT
    real_server 198.18.1.1 80 {
        MISC_CHECK { misc_path /bin/true
            user no-such-user-xlvs }
    }
}`, `keepalived.conf:5: invalid health-check configuration: MISC_CHECK /bin/true: user "no-such-user-xlvs"`},
		{"zero delay_loop", `virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind NAT
    delay_loop 0
    real_server 198.18.1.1 80 {
        TCP_CHECK { }
    }
}`, "keepalived.conf:6: invalid health-check configuration: delay_loop 0s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromKeepalived(parseConf(t, tt.src))
			if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromKeepalived: %v\nwant ErrSpec containing %q", err, tt.want)
			}
		})
	}
}

// TestFromKeepalivedTimingDefaults: keepalived's defaults reach the Monitor unchanged.
func TestFromKeepalivedTimingDefaults(t *testing.T) {
	vss, err := FromKeepalived(parseConf(t, `virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind NAT
    real_server 198.18.1.1 80 { TCP_CHECK { } }
}`))
	if err != nil {
		t.Fatal(err)
	}
	c := vss[0].Servers[0].Checks[0]
	if c.Interval != 60*time.Second || c.Retry != 1 || c.RetryDelay != time.Second || c.Warmup != 60*time.Second || c.Alpha {
		t.Errorf("defaults %s", c)
	}
	if tc := c.Checker.(*TCP); tc.Timeout != 5*time.Second {
		t.Errorf("connect timeout %v", tc.Timeout)
	}
}

func TestParseChecks(t *testing.T) {
	key := ServiceKey{Protocol: "tcp", Addr: netip.MustParseAddr("198.18.0.10"), Port: 80}
	rs := ap("198.18.1.1:8080")
	checks, err := ParseChecks(key, rs, "TCP_CHECK {\n  connect_timeout 3\n  delay_loop 2\n}\nHTTP_GET {\n url {\n  path /\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 2 || checks[0].String() != "TCP_CHECK 198.18.1.1:8080 timeout 3s interval 2s retry 1 retry-delay 1s warmup 2s alpha false" ||
		!strings.HasPrefix(checks[1].String(), "HTTP_GET 198.18.1.1:8080 timeout 5s") {
		t.Errorf("checks %v", checks)
	}
	tests := []struct{ text, want string }{
		{"TCP_CHECK {\n connect_timout 3\n}", `check:2: TCP_CHECK: unknown keyword "connect_timout": did you mean "connect_timeout"?`},
		{"weight 3", "no checker block"},
		{"}\n}\nvirtual_server 198.18.0.11 80 {\nreal_server 198.18.1.1 80 {", "not a list of checker blocks"},
		{"include /etc/passwd", "include is not allowed"},
	}
	for _, tt := range tests {
		_, err := ParseChecks(key, rs, tt.text)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseChecks(%q): %v, want an error containing %q", tt.text, err, tt.want)
		}
	}
}
