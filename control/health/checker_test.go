package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen opens a TCP listener on loopback that accepts and closes connections.
func listen(t *testing.T) (netip.AddrPort, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { l.Close() }) }
	t.Cleanup(stop)
	return netip.MustParseAddrPort(l.Addr().String()), stop
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	addr, stop := listen(t)
	stop()
	return addr
}

func TestTCP(t *testing.T) {
	up, _ := listen(t)
	down := closedPort(t)
	tests := []struct {
		name    string
		c       TCP
		wantErr string
	}{
		{"listening", TCP{Addr: up, Timeout: time.Second}, ""},
		{"refused", TCP{Addr: down, Timeout: time.Second}, "connection refused"},
		{"bound source", TCP{Addr: up, Timeout: time.Second, Dialer: Dialer{Bind: netip.MustParseAddrPort("127.0.0.1:0")}}, ""},
		{"source of the wrong family", TCP{Addr: up, Timeout: time.Second, Dialer: Dialer{Bind: netip.MustParseAddrPort("[::1]:0")}}, "connect to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.c.Check(context.Background())
			checkErr(t, res.Err, tt.wantErr)
			if res.Dynamic {
				t.Errorf("TCP result is dynamic")
			}
		})
	}
	if s := (&TCP{Addr: up, Timeout: 3 * time.Second, Dialer: Dialer{Mark: 7, Interface: "lo"}}).String(); !strings.Contains(s, "TCP_CHECK "+up.String()+" timeout 3s bind_if lo fwmark 7") {
		t.Errorf("String() = %q", s)
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected failure: %v", err)
	case want != "" && err == nil:
		t.Errorf("check passed, want a failure containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func serverAddr(t *testing.T, s *httptest.Server) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://"))
}

// testHandler serves the paths the HTTP tests use and records the Host headers seen.
func testHandler(hosts *sync.Map) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, r.Header.Get("User-Agent"))
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/slowbody", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("start"))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	return mux
}

func TestHTTP(t *testing.T) {
	var hosts sync.Map
	srv := httptest.NewServer(testHandler(&hosts))
	t.Cleanup(srv.Close)
	addr := serverAddr(t, srv)
	tests := []struct {
		name    string
		urls    []URL
		timeout time.Duration
		addr    netip.AddrPort
		wantErr string
		errIs   error
	}{
		{"200 accepted by default", []URL{{Path: "/ok"}}, time.Second, addr, "", nil},
		{"path without slash", []URL{{Path: "ok"}}, time.Second, addr, "", nil},
		{"503 refused by default", []URL{{Path: "/fail"}}, time.Second, addr, "unexpected HTTP status 503", ErrStatus},
		{"503 accepted by a range", []URL{{Path: "/fail", Status: []StatusRange{{200, 200}, {500, 599}}}}, time.Second, addr, "", nil},
		{"404 not in the list", []URL{{Path: "/missing", Status: []StatusRange{{200, 204}}}}, time.Second, addr, "status 404", ErrStatus},
		{"redirect is an answer", []URL{{Path: "/moved", Status: []StatusRange{{302, 302}}}}, time.Second, addr, "", nil},
		{"redirect not followed", []URL{{Path: "/moved"}}, time.Second, addr, "status 302", ErrStatus},
		{"digest matches", []URL{{Path: "/ok", Digest: md5hex("hello")}}, time.Second, addr, "", nil},
		{"digest differs", []URL{{Path: "/ok", Digest: md5hex("bye")}}, time.Second, addr, "body has MD5 " + md5hex("hello"), ErrDigest},
		{"every url must pass", []URL{{Path: "/ok"}, {Path: "/fail"}}, time.Second, addr, "GET /fail", ErrStatus},
		{"timeout on headers", []URL{{Path: "/slow"}}, 200 * time.Millisecond, addr, "timed out after 200ms", ErrTimeout},
		{"timeout on the body", []URL{{Path: "/slowbody", Digest: md5hex("x")}}, 200 * time.Millisecond, addr, "timed out after 200ms", ErrTimeout},
		{"refused", []URL{{Path: "/ok"}}, time.Second, closedPort(t), "connection refused", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewHTTP(HTTP{Addr: tt.addr, URLs: tt.urls, Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res := c.Check(context.Background())
			checkErr(t, res.Err, tt.wantErr)
			if tt.errIs != nil && !errors.Is(res.Err, tt.errIs) {
				t.Errorf("error %v is not %v", res.Err, tt.errIs)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("check took %v", d)
			}
		})
	}
}

func TestHTTPVirtualHost(t *testing.T) {
	var hosts sync.Map
	srv := httptest.NewServer(testHandler(&hosts))
	t.Cleanup(srv.Close)
	addr := serverAddr(t, srv)
	c, err := NewHTTP(HTTP{Addr: addr, URLs: []URL{{Path: "/ok", Host: "www.example.com"}, {Path: "/ok"}}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res := c.Check(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, h := range []string{"www.example.com", addr.String()} {
		ua, ok := hosts.Load(h)
		if !ok {
			t.Errorf("no request with Host %q", h)
		} else if ua != "KeepAliveClient" {
			t.Errorf("User-Agent %q", ua)
		}
	}
}

func TestNewHTTPErrors(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:80")
	tests := []struct {
		name string
		c    HTTP
		want string
	}{
		{"no url", HTTP{Addr: a, Timeout: time.Second}, "needs at least one url"},
		{"no timeout", HTTP{Addr: a, URLs: []URL{{Path: "/"}}}, "timeout 0s: must be positive"},
		{"bad digest", HTTP{Addr: a, URLs: []URL{{Path: "/", Digest: "xyz"}}, Timeout: time.Second}, "expected 32 hexadecimal digits"},
		{"bad path", HTTP{Addr: a, URLs: []URL{{Path: "/%zz"}}, Timeout: time.Second}, "url path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewHTTP(tt.c)
			if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHTTP: %v, want ErrSpec containing %q", err, tt.want)
			}
		})
	}
}

// selfSigned makes a certificate for tests.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSSL(t *testing.T) {
	var hosts sync.Map
	var mu sync.Mutex
	var sni []string
	var clientCNs []string
	srv := httptest.NewUnstartedServer(testHandler(&hosts))
	srv.TLS = &tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			mu.Lock()
			sni = append(sni, h.ServerName)
			mu.Unlock()
			return nil, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			mu.Lock()
			defer mu.Unlock()
			if len(raw) > 0 {
				c, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				clientCNs = append(clientCNs, c.Subject.CommonName)
			}
			return nil
		},
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain-HTTP attempt below is refused noisily
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := serverAddr(t, srv)

	plain, err := NewSSL(HTTP{Addr: addr, URLs: []URL{{Path: "/ok", Digest: md5hex("hello")}}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res := plain.Check(context.Background()); res.Err != nil {
		t.Fatalf("SSL_GET with a self-signed server certificate: %v", res.Err)
	}
	named, err := NewSSL(HTTP{Addr: addr, URLs: []URL{{Path: "/ok", Host: "www.example.com"}}, Timeout: time.Second,
		ServerName: "sni.example.com", Certificates: []tls.Certificate{selfSigned(t, "lvs-client")}})
	if err != nil {
		t.Fatal(err)
	}
	if res := named.Check(context.Background()); res.Err != nil {
		t.Fatalf("SSL_GET with SNI and a client certificate: %v", res.Err)
	}
	fail, _ := NewSSL(HTTP{Addr: addr, URLs: []URL{{Path: "/fail"}}, Timeout: time.Second})
	if res := fail.Check(context.Background()); !errors.Is(res.Err, ErrStatus) {
		t.Errorf("SSL_GET of a failing path: %v", res.Err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sni) < 2 || sni[0] != "" || sni[1] != "sni.example.com" {
		t.Errorf("server names sent %q, want none then sni.example.com", sni)
	}
	if len(clientCNs) != 1 || clientCNs[0] != "lvs-client" {
		t.Errorf("client certificates %q, want one lvs-client", clientCNs)
	}
	if _, ok := hosts.Load("www.example.com"); !ok {
		t.Errorf("virtual host not sent over TLS")
	}
	// A plain HTTP check against the TLS port fails.
	h, _ := NewHTTP(HTTP{Addr: addr, URLs: []URL{{Path: "/ok"}}, Timeout: time.Second})
	if res := h.Check(context.Background()); res.Err == nil {
		t.Errorf("HTTP_GET against a TLS server passed")
	}
}

// script writes an executable shell script into a temporary directory.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMisc(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		args    []string
		dynamic bool
		timeout time.Duration
		want    Result
		wantErr string
	}{
		{"exit 0", "exit 0", nil, false, time.Second, Result{}, ""},
		{"exit 1", "exit 1", nil, false, time.Second, Result{}, "exit status 1"},
		{"exit 3 without misc_dynamic is a failure", "exit 3", nil, false, time.Second, Result{}, "exit status 3"},
		{"dynamic exit 0 restores the weight", "exit 0", nil, true, time.Second, Result{Dynamic: true, Weight: ConfiguredWeight}, ""},
		{"dynamic exit 1 fails", "exit 1", nil, true, time.Second, Result{}, "exit status 1"},
		{"dynamic exit 2 is weight 0", "exit 2", nil, true, time.Second, Result{Dynamic: true, Weight: 0}, ""},
		{"dynamic exit 12 is weight 10", "exit 12", nil, true, time.Second, Result{Dynamic: true, Weight: 10}, ""},
		{"dynamic exit 255 is weight 253", "exit 255", nil, true, time.Second, Result{Dynamic: true, Weight: 253}, ""},
		{"arguments without a shell", `[ "$1" = "a b" ] && [ "$2" = '$HOME' ]`, []string{"a b", "$HOME"}, false, time.Second, Result{}, ""},
		{"stderr ends the message", "echo 'backend unreachable' >&2\necho more >&2\nexit 1", nil, false, time.Second, Result{}, "exit status 1: backend unreachable"},
		{"killed by a signal", "kill -9 $$", nil, false, time.Second, Result{}, "killed by signal killed"},
		{"timeout", "sleep 10", nil, false, 200 * time.Millisecond, Result{}, "timed out after 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := script(t, tt.body)
			m, err := NewMisc(Misc{Args: append([]string{p}, tt.args...), Timeout: tt.timeout, Dynamic: tt.dynamic})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res := m.Check(context.Background())
			checkErr(t, res.Err, tt.wantErr)
			if tt.wantErr == "" && (res.Dynamic != tt.want.Dynamic || res.Weight != tt.want.Weight) {
				t.Errorf("result %+v, want %+v", res, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("check took %v", d)
			}
		})
	}
}

func TestMiscNotFound(t *testing.T) {
	m, err := NewMisc(Misc{Args: []string{filepath.Join(t.TempDir(), "missing")}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res := m.Check(context.Background()); !errors.Is(res.Err, ErrExit) {
		t.Errorf("missing program: %v", res.Err)
	}
	if _, err := NewMisc(Misc{Timeout: time.Second}); !errors.Is(err, ErrSpec) {
		t.Errorf("no program: %v", err)
	}
	if _, err := NewMisc(Misc{Args: []string{"/bin/true"}}); !errors.Is(err, ErrSpec) {
		t.Errorf("no timeout: %v", err)
	}
	if _, err := NewMisc(Misc{Args: []string{"/bin/true"}, Timeout: time.Second, User: "no-such-user-xlvs"}); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown user: %v", err)
	}
}

// processGone reports whether pid has exited (gone, or a zombie nobody reaped yet).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// TestMiscTimeoutKillsTheGroup: a script that ignores SIGTERM and leaves a child behind
// is killed with its child after the grace period.
func TestMiscTimeoutKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	p := script(t, "trap '' TERM\nsleep 30 &\necho $! > "+pidFile+"\nwhile :; do sleep 1; done")
	m, err := NewMisc(Misc{Args: []string{p}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := m.Check(context.Background())
	if !errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("result %v, want a timeout", res.Err)
	}
	if d := time.Since(start); d < miscKillDelay || d > miscKillDelay+3*time.Second {
		t.Errorf("check took %v, want about the timeout plus %v", d, miscKillDelay)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(2 * time.Second)
	for !processGone(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !processGone(pid) {
		t.Errorf("the script's child %d survived", pid)
	}
}

func TestMiscCancel(t *testing.T) {
	p := script(t, "sleep 10")
	m, _ := NewMisc(Misc{Args: []string{p}, Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if res := m.Check(ctx); res.Err == nil {
		t.Errorf("cancelled script passed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel took %v", d)
	}
}
