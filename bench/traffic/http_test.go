package traffic

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout bounds every test in this package.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startServer serves name on a fresh loopback listener and returns its address.
func startServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := ServeHTTP(ln, name)
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// fixedDial ignores the address asked for and dials addrs in turn, counting dials.
type fixedDial struct {
	addrs []string
	n     atomic.Int64
}

func (f *fixedDial) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	i := f.n.Add(1) - 1
	var d net.Dialer
	return d.DialContext(ctx, network, f.addrs[int(i)%len(f.addrs)])
}

func TestServeHTTP(t *testing.T) {
	ctx := testContext(t)
	addr := startServer(t, "web1")
	client := &http.Client{Transport: newTransport(nil, false, 1)}
	tests := []struct {
		name, method, path string
		body               string
		wantCode           int
		wantBody           string // exact, or prefix when it ends in "*"
	}{
		{"root names the server", "GET", "/", "", 200, "web1\n"},
		{"blob", "GET", "/blob?size=10&seed=4", "", 200, string(Blob(10, 4))},
		{"blob hex seed", "GET", "/blob?size=10&seed=0x4", "", 200, string(Blob(10, 4))},
		{"blob without seed uses 0", "GET", "/blob?size=3", "", 200, string(Blob(3, 0))},
		{"blob empty", "GET", "/blob?size=0&seed=1", "", 200, ""},
		{"blob negative size", "GET", "/blob?size=-1", "", 400, "bad size*"},
		{"blob huge size", "GET", "/blob?size=1099511627777", "", 400, "bad size*"},
		{"blob bad seed", "GET", "/blob?size=1&seed=x", "", 400, "bad seed*"},
		{"upload", "POST", "/upload", "hello", 200, fmt.Sprintf("5 %x\n", sha256.Sum256([]byte("hello")))},
		{"upload empty", "POST", "/upload", "", 200, fmt.Sprintf("0 %x\n", sha256.Sum256(nil))},
		{"upload needs POST", "GET", "/upload", "", 405, "*"},
		{"unknown path", "GET", "/nope", "", 404, "*"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tc.method, "http://"+addr+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.wantCode, body)
			}
			if got := resp.Header.Get(ServerHeader); got != "web1" {
				t.Errorf("%s = %q, want web1", ServerHeader, got)
			}
			if p, ok := strings.CutSuffix(tc.wantBody, "*"); ok {
				if !strings.HasPrefix(string(body), p) {
					t.Errorf("body %q, want prefix %q", body, p)
				}
			} else if string(body) != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
}

func TestHTTPLoadCountsTheSplit(t *testing.T) {
	ctx := testContext(t)
	a, b := startServer(t, "a"), startServer(t, "b")
	for _, conc := range []int{1, 7, 100} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			// One connection per request, dialed alternately to a and b: an exact split.
			fd := &fixedDial{addrs: []string{a, b}}
			res, err := HTTPLoad(ctx, HTTPLoadOptions{URL: "http://vip.test/", Requests: 100, Concurrency: conc, Dial: fd.dial})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 100 || res.OK != 100 || res.Failed != 0 {
				t.Fatalf("got %v, want 100 OK requests", res)
			}
			if res.ByServer["a"] != 50 || res.ByServer["b"] != 50 || len(res.ByServer) != 2 {
				t.Fatalf("split %v, want a=50 b=50", res.ByServer)
			}
			if got := fd.n.Load(); got != 100 {
				t.Fatalf("%d dials, want 100 (one connection per request)", got)
			}
			if res.Bytes != 100*2 {
				t.Fatalf("bytes %d, want 200 (\"a\\n\" or \"b\\n\" per request)", res.Bytes)
			}
			if !(res.P50 > 0 && res.P50 <= res.P99 && res.P99 <= res.P999 && res.P999 <= res.Duration) {
				t.Fatalf("latencies not ordered: %v", res)
			}
			s := res.String()
			if !strings.Contains(s, "ok=100") || !strings.Contains(s, "a=50 b=50") {
				t.Fatalf("String() = %q, want ok=100 and a=50 b=50", s)
			}
		})
	}
}

func TestHTTPLoadKeepAliveReusesConnections(t *testing.T) {
	ctx := testContext(t)
	a := startServer(t, "a")
	fd := &fixedDial{addrs: []string{a}}
	res, err := HTTPLoad(ctx, HTTPLoadOptions{URL: "http://x/", Requests: 200, Concurrency: 4, Dial: fd.dial, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 200 || res.ByServer["a"] != 200 {
		t.Fatalf("got %v, want 200 OK from a", res)
	}
	// The transport may dial a spare connection while a request waits, but 200 requests
	// over 4 workers must reuse connections.
	if got := fd.n.Load(); got > 2*4 {
		t.Fatalf("%d dials for 200 requests on 4 keep-alive workers, want at most 8", got)
	}
}

func TestHTTPLoadFailures(t *testing.T) {
	ctx := testContext(t)
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	// A server that accepts and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	t.Cleanup(func() { hang.Close(); held.Wait() })
	held.Add(1)
	go func() {
		defer held.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	ok := startServer(t, "ok")

	tests := []struct {
		name       string
		url        string
		timeout    time.Duration
		wantOK     int
		wantFailed int
		wantErr    string
	}{
		{"refused", "http://" + closedAddr + "/", time.Second, 0, 12, "refused"},
		{"per-request timeout", "http://" + hang.Addr().String() + "/", 100 * time.Millisecond, 0, 12, "deadline"},
		{"404 is a failure", "http://" + ok + "/missing", time.Second, 0, 12, "404"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := HTTPLoad(ctx, HTTPLoadOptions{URL: tc.url, Requests: 12, Concurrency: 4, Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tc.wantOK || res.Failed != tc.wantFailed || res.Requests != tc.wantOK+tc.wantFailed {
				t.Fatalf("got %v, want ok=%d failed=%d", res, tc.wantOK, tc.wantFailed)
			}
			if len(res.FirstErrors) != maxFirstErrors {
				t.Fatalf("%d first errors, want %d", len(res.FirstErrors), maxFirstErrors)
			}
			if !strings.Contains(res.FirstErrors[0], tc.wantErr) {
				t.Fatalf("first error %q does not mention %q", res.FirstErrors[0], tc.wantErr)
			}
			if res.P50 != 0 {
				t.Fatalf("P50 %v with no OK request, want 0", res.P50)
			}
			// 12 requests in 3 waves of at most tc.timeout each, with generous slack.
			if d := time.Since(start); d > 3*tc.timeout+5*time.Second {
				t.Fatalf("took %v: the per-request timeout was not applied", d)
			}
		})
	}
}

func TestHTTPLoadStopsWithContext(t *testing.T) {
	ok := startServer(t, "ok")
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	res, err := HTTPLoad(ctx, HTTPLoadOptions{URL: "http://" + ok + "/", Requests: 1000, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 {
		t.Fatalf("%d requests issued after the context ended, want 0", res.Requests)
	}
}

func TestHTTPLoadBadOptions(t *testing.T) {
	ctx := testContext(t)
	tests := []struct {
		name string
		o    HTTPLoadOptions
	}{
		{"no requests", HTTPLoadOptions{URL: "http://x/"}},
		{"negative requests", HTTPLoadOptions{URL: "http://x/", Requests: -1}},
		{"negative concurrency", HTTPLoadOptions{URL: "http://x/", Requests: 1, Concurrency: -1}},
		{"negative timeout", HTTPLoadOptions{URL: "http://x/", Requests: 1, Timeout: -time.Second}},
		{"https", HTTPLoadOptions{URL: "https://x/", Requests: 1}},
		{"no host", HTTPLoadOptions{URL: "http:///", Requests: 1}},
		{"unparsable", HTTPLoadOptions{URL: "http://[::1/", Requests: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := HTTPLoad(ctx, tc.o)
			if !errors.Is(err, ErrBadOptions) {
				t.Fatalf("error %v, want ErrBadOptions", err)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name     string
		sorted   []time.Duration
		perMille int
		want     time.Duration
	}{
		{"empty", nil, 500, 0},
		{"one", ms(7), 999, 7 * time.Millisecond},
		{"median of 4 is the 2nd", ms(1, 2, 3, 4), 500, 2 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 500, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 990, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the max", ms(hundred...), 999, 100 * time.Millisecond},
		{"p0 is the min", ms(3, 4), 0, 3 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.perMille); got != tc.want {
				t.Fatalf("percentile = %v, want %v", got, tc.want)
			}
		})
	}
}
