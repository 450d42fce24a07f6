package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// Limits of the transport.
const (
	// MaxRequestSize is the largest request, in bytes without the final '\n', a server reads.
	MaxRequestSize = 16 << 20
	// DefaultConnTimeout bounds one connection on the server: reading the request, the
	// handler and writing the response.
	DefaultConnTimeout = 10 * time.Second
	// DefaultMaxConns is how many connections a server handles at once; further clients
	// wait in the listen backlog.
	DefaultMaxConns = 64
)

// Sentinel errors of the transport.
var (
	// ErrRequestTooLarge: a request over MaxRequestSize.
	ErrRequestTooLarge = errors.New("request too large")
	// ErrSocketInUse: Listen found a daemon answering on the socket path.
	ErrSocketInUse = errors.New("control socket in use")
	// ErrNotSocket: Listen found something other than a socket at the path.
	ErrNotSocket = errors.New("path exists and is not a socket")
	// ErrVersion: a response in a protocol version this client does not speak.
	ErrVersion = errors.New("protocol version mismatch")
)

// Handler executes requests. Serve calls Handle from many goroutines at once; ctx ends
// when the connection's deadline passes or the server stops. Handle must return a
// non-nil Response (a nil one is answered as an internal error); Serve fills in Version.
// Handle is never called for a request whose Version differs from Version.
type Handler interface {
	Handle(ctx context.Context, req *Request) *Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) *Response

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req *Request) *Response { return f(ctx, req) }

// Server serves the control protocol. The zero value of every field but Handler means its
// default. A Server may serve several listeners at once.
type Server struct {
	Handler Handler
	// Log receives one record per failed connection (never per request); nil discards.
	Log *slog.Logger
	// MaxConns bounds the connections handled at once (DefaultMaxConns if 0).
	MaxConns int
	// ConnTimeout bounds each connection (DefaultConnTimeout if 0).
	ConnTimeout time.Duration

	maxRequest int // MaxRequestSize if 0; tests lower it
}

// Serve serves ln with h until ctx is done or ln is closed, using the defaults of Server.
// See Server.Serve.
func Serve(ctx context.Context, ln net.Listener, h Handler, log *slog.Logger) error {
	s := &Server{Handler: h, Log: log}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln and answers each in its own goroutine, at most
// MaxConns at once: further clients wait in the listen backlog. Each connection gets
// ConnTimeout for everything, so a slow or dead client holds only its own goroutine and
// only until then. When ctx is done Serve closes ln; it returns nil after ctx is done or
// ln is closed, once every connection it started has finished, and an error only if
// accepting fails for good.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("serve control socket: nil Handler (set Server.Handler)")
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	timeout := s.ConnTimeout
	if timeout <= 0 {
		timeout = DefaultConnTimeout
	}

	stopClose := context.AfterFunc(ctx, func() { ln.Close() })
	defer func() {
		stopClose()
		if ctx.Err() != nil {
			ln.Close() // also when the AfterFunc is still closing it: Close is idempotent
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxConns)
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !retryableAccept(err) {
				return fmt.Errorf("accept control connection: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept control connection failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.serveConn(ctx, conn, timeout, log)
		}()
	}
}

// retryableAccept tells errors that pass (out of descriptors, an aborted handshake) from
// a broken listener.
func retryableAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn, timeout time.Duration, log *slog.Logger) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		log.Debug("set control connection deadline", "err", err)
		return
	}
	// Unblock reads and writes at once when the server stops.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	resp := s.answer(ctx, conn, log)
	if resp == nil {
		return
	}
	resp.Version = Version
	b, err := json.Marshal(resp)
	if err != nil {
		log.Error("encode control response", "err", err)
		b, _ = json.Marshal(&Response{Version: Version, Error: &Error{
			Code: ErrCodeInternal, Message: "encode response: " + err.Error()}})
	}
	b = append(b, '\n')
	if _, err := conn.Write(b); err != nil {
		log.Debug("write control response", "err", err)
	}
}

// answer reads one request and returns the response to write, or nil when there is no
// one to answer (the client went away or never finished its request).
func (s *Server) answer(ctx context.Context, conn net.Conn, log *slog.Logger) *Response {
	limit := s.maxRequest
	if limit <= 0 {
		limit = MaxRequestSize
	}
	line, err := readLine(bufio.NewReaderSize(conn, 64<<10), limit)
	if errors.Is(err, ErrRequestTooLarge) {
		log.Warn("refused oversized control request", "limit", limit)
		return errorResponse(ErrCodeInvalid, fmt.Sprintf(
			"read request: %v: more than %d bytes; split the work into smaller requests",
			ErrRequestTooLarge, limit))
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			log.Debug("read control request", "err", err)
		}
		return nil
	}
	req, err := decodeRequest(line)
	if err != nil {
		return errorResponse(ErrCodeInvalid, err.Error())
	}
	if req.Version != Version {
		return errorResponse(ErrCodeVersion, fmt.Sprintf(
			"protocol version mismatch: the request speaks version %d, this xlvsd speaks version %d; use xlvsadm from the same xlvs release",
			req.Version, Version))
	}
	return s.call(ctx, req, log)
}

// call runs the handler, turning a panic or a nil answer into an internal error so one
// bad request cannot take the daemon down.
func (s *Server) call(ctx context.Context, req *Request, log *slog.Logger) (resp *Response) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("control handler panicked", "op", req.Op, "panic", p, "stack", string(debug.Stack()))
			resp = errorResponse(ErrCodeInternal, fmt.Sprintf("handle %s: internal error (xlvsd recovered from a panic: %v)", req.Op, p))
		}
	}()
	resp = s.Handler.Handle(ctx, req)
	if resp == nil {
		resp = errorResponse(ErrCodeInternal, fmt.Sprintf("handle %s: the handler returned no response", req.Op))
	}
	return resp
}

func errorResponse(code, msg string) *Response {
	return &Response{Version: Version, Error: &Error{Code: code, Message: msg}}
}

// decodeRequest parses one request line.
func decodeRequest(line []byte) (*Request, error) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return nil, fmt.Errorf("decode request: %w (want one JSON object followed by a newline)", err)
	}
	return &req, nil
}

// readLine returns the bytes before the first '\n', or everything up to EOF when the
// client half-closed without one. A line longer than max yields ErrRequestTooLarge
// without reading the rest.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		n := len(chunk)
		if err == nil {
			n-- // the newline
		}
		if len(buf)+n > max {
			return nil, ErrRequestTooLarge
		}
		buf = append(buf, chunk[:n]...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return buf, nil
		default:
			return nil, err
		}
	}
}

// Listen creates the daemon's control socket at path: it creates the parent directory
// (0755), removes a stale socket left by a daemon that died, but refuses with
// ErrSocketInUse when a daemon still answers there, and leaves the socket mode 0600
// (root only) from the first moment clients can reach it. Closing the listener removes
// the socket file unless another daemon has replaced it since.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("listen on control socket: empty path (want e.g. " + DefaultSocket + ")")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen on control socket %s: %w; remove it or choose another socket path", path, ErrNotSocket)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("another xlvsd is running on %s: %w (stop it first, or choose another socket path)", path, ErrSocketInUse)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("probe existing control socket %s: %w (refusing to remove it)", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}

	// Bind under a temporary name, restrict it, then rename it into place, so the socket
	// is never reachable with a looser mode than 0600.
	tmp := filepath.Join(dir, fmt.Sprintf(".xlvsd.%d.sock", os.Getpid()))
	if len(tmp) >= 108 { // sun_path: no room for the temporary name
		tmp = ""
	}
	bind := path
	if tmp != "" {
		bind = tmp
		os.Remove(tmp)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bind, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		os.Remove(bind)
		return nil, err
	}
	if err := os.Chmod(bind, 0o600); err != nil {
		return fail(fmt.Errorf("restrict control socket: %w", err))
	}
	if tmp != "" {
		if err := os.Rename(tmp, path); err != nil {
			return fail(fmt.Errorf("move control socket into place: %w", err))
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("stat control socket: %w", err))
	}
	return &socketListener{UnixListener: ln, path: path, fi: fi}, nil
}

// socketListener removes its socket file on Close, unless the file is no longer ours.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}
