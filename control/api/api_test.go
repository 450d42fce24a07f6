package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// shortDir returns a directory whose socket paths fit in sun_path (t.TempDir's can be
// too long for unix sockets).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// echo answers info requests with the op echoed in Info.Version, and counts calls.
type echo struct {
	calls atomic.Int64
	fn    func(ctx context.Context, req *Request) *Response
}

func (e *echo) Handle(ctx context.Context, req *Request) *Response {
	e.calls.Add(1)
	if e.fn != nil {
		return e.fn(ctx, req)
	}
	return &Response{Info: &Info{Version: req.Op, ConnTable: len(req.Batch)}}
}

// startServer serves h on a fresh socket until the test ends and returns the socket path.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	path := filepath.Join(shortDir(t), "s.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	return path
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rawRequest writes payload on a fresh connection and returns the decoded response.
func rawRequest(t *testing.T, path string, payload []byte) *Response {
	t.Helper()
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go conn.Write(payload) // may block or fail when the server stops reading early
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Fatalf("read response: %v", err)
	}
	return &resp
}

func TestConcurrentClients(t *testing.T) {
	h := &echo{}
	path := startServer(t, &Server{Handler: h})
	c := NewClient(path)
	const clients, each = 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				op := fmt.Sprintf("op-%d-%d", i, j)
				resp, err := c.Do(testCtx(t, 10*time.Second), &Request{Op: op, Batch: make([]Request, j)})
				if err != nil {
					errs <- err
					return
				}
				if resp.Info == nil || resp.Info.Version != op || resp.Info.ConnTable != j || resp.Version != Version {
					errs <- fmt.Errorf("request %s: got response %+v", op, resp)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := h.calls.Load(); got != clients*each {
		t.Errorf("handler calls = %d, want %d", got, clients*each)
	}
}

func TestStalledClientDoesNotBlockOthers(t *testing.T) {
	h := &echo{}
	// Two slots: a stalled client holds one, everybody else shares the other.
	path := startServer(t, &Server{Handler: h, MaxConns: 2, ConnTimeout: 5 * time.Second})

	stalled, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte(`{"version":1,"op":"in`)); err != nil {
		t.Fatal(err)
	}

	c := NewClient(path)
	for i := range 20 {
		// Far below the stalled connection's 5 s deadline: these must not wait for it.
		resp, err := c.Do(testCtx(t, 3*time.Second), &Request{Op: "info"})
		if err != nil {
			t.Fatalf("request %d while another client stalls: %v", i, err)
		}
		if resp.Info == nil || resp.Info.Version != "info" {
			t.Fatalf("request %d: got %+v", i, resp)
		}
	}
}

func TestStalledClientDroppedAtDeadline(t *testing.T) {
	h := &echo{}
	// One slot: the second client can only be served once the stalled one is dropped.
	path := startServer(t, &Server{Handler: h, MaxConns: 1, ConnTimeout: 200 * time.Millisecond})

	stalled, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte(`{"version":1,`)); err != nil {
		t.Fatal(err)
	}

	resp, err := NewClient(path).Do(testCtx(t, 10*time.Second), &Request{Op: "info"})
	if err != nil {
		t.Fatalf("client waiting behind a stalled one: %v", err)
	}
	if resp.Info == nil {
		t.Fatalf("got %+v", resp)
	}
	// The stalled connection was closed without an answer.
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := stalled.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("stalled client read = %d, %v; want 0, EOF", n, err)
	}
	if got := h.calls.Load(); got != 1 {
		t.Errorf("handler calls = %d, want 1 (the stalled request must not reach it)", got)
	}
}

func TestOversizedRequestRefused(t *testing.T) {
	h := &echo{}
	path := startServer(t, &Server{Handler: h})

	var big bytes.Buffer
	big.WriteString(`{"version":1,"op":"`)
	big.WriteString(strings.Repeat("a", MaxRequestSize))
	big.WriteString("\"}\n")
	resp := rawRequest(t, path, big.Bytes())
	if resp.Error == nil || resp.Error.Code != ErrCodeInvalid || !strings.Contains(resp.Error.Message, "too large") {
		t.Fatalf("oversized request: got %+v, want an %q error saying too large", resp.Error, ErrCodeInvalid)
	}
	if h.calls.Load() != 0 {
		t.Error("the handler saw an oversized request")
	}

	// At the boundary, with a lower limit so the test stays fast: a request of exactly
	// the limit is served, one byte more is refused.
	small := startServer(t, &Server{Handler: h, maxRequest: 1000})
	exact := bytes.Repeat([]byte{' '}, 1000)
	copy(exact, `{"version":1,"op":"info"}`)
	resp = rawRequest(t, small, append(exact, '\n'))
	if resp.Error != nil || resp.Info == nil {
		t.Fatalf("request of exactly the limit: got %+v", resp)
	}
	resp = rawRequest(t, small, append(exact, ' ', '\n'))
	if resp.Error == nil || resp.Error.Code != ErrCodeInvalid {
		t.Fatalf("request one byte over the limit: got %+v", resp)
	}
	if h.calls.Load() != 1 {
		t.Errorf("handler calls = %d, want 1", h.calls.Load())
	}

	// The client refuses locally, before dialing.
	_, err := NewClient(filepath.Join(shortDir(t), "none.sock")).Do(testCtx(t, 5*time.Second),
		&Request{Op: strings.Repeat("a", MaxRequestSize)})
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Errorf("client with an oversized request: err = %v, want ErrRequestTooLarge", err)
	}
}

func TestVersionMismatch(t *testing.T) {
	h := &echo{}
	path := startServer(t, &Server{Handler: h})

	for _, v := range []int{Version + 1, -1} {
		_, err := NewClient(path).Do(testCtx(t, 5*time.Second), &Request{Version: v, Op: OpInfo})
		var e *Error
		if !errors.As(err, &e) || e.Code != ErrCodeVersion {
			t.Fatalf("version %d: err = %v, want an *Error with code %q", v, err, ErrCodeVersion)
		}
		if !strings.Contains(e.Message, fmt.Sprint(v)) || !strings.Contains(e.Message, fmt.Sprint(Version)) {
			t.Errorf("version error %q does not name both versions", e.Message)
		}
	}
	resp := rawRequest(t, path, []byte(`{"op":"info"}`+"\n"))
	if resp.Error == nil || resp.Error.Code != ErrCodeVersion {
		t.Errorf("request without version: got %+v, want a version error", resp.Error)
	}
	if h.calls.Load() != 0 {
		t.Errorf("handler called %d times for mismatched versions", h.calls.Load())
	}
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name     string
		payload  string
		fn       func(context.Context, *Request) *Response
		wantCode string
		wantMsg  string
	}{
		{name: "malformed json", payload: "{not json}\n", wantCode: ErrCodeInvalid, wantMsg: "decode request"},
		{name: "trailing garbage", payload: `{"version":1} x` + "\n", wantCode: ErrCodeInvalid, wantMsg: "decode request"},
		{name: "handler panics", payload: `{"version":1,"op":"info"}` + "\n",
			fn: func(context.Context, *Request) *Response { panic("boom") }, wantCode: ErrCodeInternal, wantMsg: "boom"},
		{name: "handler returns nil", payload: `{"version":1,"op":"info"}` + "\n",
			fn: func(context.Context, *Request) *Response { return nil }, wantCode: ErrCodeInternal, wantMsg: "no response"},
		{name: "handler error", payload: `{"version":1,"op":"del-service"}` + "\n",
			fn: func(context.Context, *Request) *Response {
				return &Response{Error: &Error{Code: ErrCodeNoService, Message: "no such service"}}
			}, wantCode: ErrCodeNoService, wantMsg: "no such service"},
		{name: "no newline then half-close", payload: `{"version":1,"op":"del-service"}`,
			fn: func(context.Context, *Request) *Response {
				return &Response{Error: &Error{Code: ErrCodeNoDest, Message: "x"}}
			}, wantCode: ErrCodeNoDest, wantMsg: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := startServer(t, &Server{Handler: &echo{fn: tt.fn}})
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write([]byte(tt.payload)); err != nil {
				t.Fatal(err)
			}
			conn.(*net.UnixConn).CloseWrite()
			var resp Response
			if err := json.NewDecoder(conn).Decode(&resp); err != nil {
				t.Fatal(err)
			}
			if resp.Version != Version {
				t.Errorf("response version = %d, want %d", resp.Version, Version)
			}
			if resp.Error == nil || resp.Error.Code != tt.wantCode || !strings.Contains(resp.Error.Message, tt.wantMsg) {
				t.Errorf("got error %+v, want code %q containing %q", resp.Error, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestClientReturnsErrorValue(t *testing.T) {
	path := startServer(t, &Server{Handler: &echo{fn: func(context.Context, *Request) *Response {
		return &Response{Error: &Error{Code: ErrCodeDestExists, Message: "destination already exists", Line: 7}}
	}}})
	resp, err := NewClient(path).Do(testCtx(t, 5*time.Second), &Request{Op: OpAddDest})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if e.Code != ErrCodeDestExists || e.Line != 7 || err.Error() != "destination already exists" {
		t.Errorf("got %+v", e)
	}
	if resp == nil || resp.Error != e {
		t.Errorf("the response must come back with its error, got %+v", resp)
	}
}

func TestClientWithoutDaemon(t *testing.T) {
	dir := shortDir(t)
	tests := []struct {
		name  string
		setup func(path string)
	}{
		{name: "no socket file", setup: func(string) {}},
		{name: "stale socket", setup: func(path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("%d.sock", i))
			tt.setup(path)
			resp, err := NewClient(path).Do(testCtx(t, 5*time.Second), &Request{Op: OpInfo})
			if err == nil || resp != nil {
				t.Fatalf("got %+v, %v; want a transport error", resp, err)
			}
			want := "is xlvsd running? (socket " + path + ")"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks the hint %q", err, want)
			}
		})
	}
}

func TestClientContextCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	path := startServer(t, &Server{Handler: &echo{fn: func(ctx context.Context, _ *Request) *Response {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &Response{}
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := NewClient(path).Do(ctx, &Request{Op: OpInfo})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestServeStops(t *testing.T) {
	tests := []struct {
		name string
		stop func(cancel context.CancelFunc, ln net.Listener)
	}{
		{name: "context cancelled", stop: func(cancel context.CancelFunc, _ net.Listener) { cancel() }},
		{name: "listener closed", stop: func(_ context.CancelFunc, ln net.Listener) { ln.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "s.sock")
			ln, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Serve(ctx, ln, &echo{}, nil) }()
			if _, err := NewClient(path).Do(testCtx(t, 5*time.Second), &Request{Op: OpInfo}); err != nil {
				t.Fatal(err)
			}
			tt.stop(cancel, ln)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file left behind after the listener closed: %v", err)
			}
		})
	}
	if err := Serve(context.Background(), nil, nil, nil); err == nil {
		t.Error("Serve with a nil handler must fail")
	}
}

func TestServeWaitsForConnections(t *testing.T) {
	entered := make(chan struct{})
	var finished atomic.Bool
	path := filepath.Join(shortDir(t), "s.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &echo{fn: func(hctx context.Context, _ *Request) *Response {
		close(entered)
		<-hctx.Done() // the server's cancellation reaches the handler
		finished.Store(true)
		return &Response{}
	}}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, nil) }()
	go NewClient(path).Do(testCtx(t, 10*time.Second), &Request{Op: OpInfo})
	<-entered
	cancel()
	select {
	case <-done:
		if !finished.Load() {
			t.Error("Serve returned before its handler finished")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestListen(t *testing.T) {
	t.Run("creates directory, mode 0600", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "run", "xlvs", "d.sock")
		ln, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
		}
		di, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o755 {
			t.Errorf("directory mode = %v, want 0755", di.Mode().Perm())
		}
		if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
			t.Errorf("directory holds %d entries, want only the socket (no temporary left)", len(ents))
		}
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "d.sock")
		old, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		old.(*net.UnixListener).SetUnlinkOnClose(false)
		old.Close()
		ln, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		ln.Close()
	})
	t.Run("refuses a live socket", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "d.sock")
		first, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		_, err = Listen(path)
		if !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), "another xlvsd is running on "+path) {
			t.Fatalf("second Listen: err = %v, want ErrSocketInUse naming the path", err)
		}
		// The first daemon's socket survives the attempt.
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("first daemon unreachable after a refused Listen: %v", err)
		}
		c.Close()
	})
	t.Run("refuses a regular file", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "d.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path); !errors.Is(err, ErrNotSocket) {
			t.Fatalf("err = %v, want ErrNotSocket", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep me" {
			t.Error("Listen clobbered a regular file")
		}
	})
	t.Run("close keeps a successor's socket", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "d.sock")
		ln, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(path) // an operator removed it and another daemon took the path
		next, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer next.Close()
		ln.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("closing the old listener removed the new socket: %v", err)
		}
	})
	t.Run("empty path", func(t *testing.T) {
		if _, err := Listen(""); err == nil {
			t.Error("Listen(\"\") succeeded")
		}
	})
}

func TestSocketPath(t *testing.T) {
	tests := []struct {
		name, flag, env, want string
	}{
		{name: "default", want: DefaultSocket},
		{name: "env", env: "/tmp/env.sock", want: "/tmp/env.sock"},
		{name: "flag wins", flag: "/tmp/flag.sock", env: "/tmp/env.sock", want: "/tmp/flag.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvSocket, tt.env)
			if got := SocketPath(tt.flag); got != tt.want {
				t.Errorf("SocketPath(%q) with %s=%q = %q, want %q", tt.flag, EnvSocket, tt.env, got, tt.want)
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		want    string
		wantErr error
	}{
		{name: "line", in: "abc\nrest", max: 10, want: "abc"},
		{name: "exactly max", in: "abcde\n", max: 5, want: "abcde"},
		{name: "over max", in: "abcdef\n", max: 5, wantErr: ErrRequestTooLarge},
		{name: "eof without newline", in: "abc", max: 10, want: "abc"},
		{name: "empty", in: "", max: 10, wantErr: io.EOF},
		{name: "empty line", in: "\n", max: 10, want: ""},
		{name: "longer than buffer", in: strings.Repeat("x", 10000) + "\n", max: 20000, want: strings.Repeat("x", 10000)},
		{name: "longer than buffer, over max", in: strings.Repeat("x", 10000) + "\n", max: 9999, wantErr: ErrRequestTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLine(bufio.NewReaderSize(strings.NewReader(tt.in), 16), tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRequestRoundTrip(t *testing.T) {
	req := Request{Version: Version, Op: OpRestore, Batch: []Request{{
		Version: Version, Op: OpAddService, Line: 3,
		Service: &Service{ServiceKey: ServiceKey{Protocol: ProtoTCP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 80, Family: 6},
			Scheduler: "wlc", Persistent: true, Timeout: 300, Netmask: "64"},
	}, {
		Version: Version, Op: OpAddDest, Line: 4,
		Service: &Service{ServiceKey: ServiceKey{Protocol: ProtoFWMark, FWMark: 7, Family: 4}},
		Dest:    &Dest{Addr: netip.MustParseAddr("198.18.0.2"), Port: 0, Method: MethodTunnel, Weight: 0, TunType: TunGUE, TunPort: 6080, TunFlags: TunCsum},
	}}}
	b, err := json.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(got)
	if !bytes.Equal(b, b2) {
		t.Errorf("round trip changed the request:\n%s\n%s", b, b2)
	}
}

// FuzzDecodeRequest: reading and decoding arbitrary bytes never panics, a decoded request
// re-encodes to JSON that decodes to the same value, and readLine never returns more than
// its limit.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"version":1,"op":"info"}` + "\n"))
	f.Add([]byte(`{"version":1,"op":"restore","batch":[{"op":"add-service","line":2,"service":{"protocol":"tcp","addr":"198.18.0.1","port":80}}]}`))
	f.Add([]byte(`{"version":1,"service":{"addr":"2001:db8::1"},"dest":{"addr":"x"}}`))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"version":1e99}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		line, err := readLine(bufio.NewReaderSize(bytes.NewReader(data), 16), 64)
		if err == nil && len(line) > 64 {
			t.Fatalf("readLine returned %d bytes over a limit of 64", len(line))
		}
		req, err := decodeRequest(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("decode of re-encoded request %s: %v", b, err)
		}
		b2, _ := json.Marshal(again)
		if !bytes.Equal(b, b2) {
			t.Fatalf("not stable:\n%s\n%s", b, b2)
		}
	})
}
