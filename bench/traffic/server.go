package traffic

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ServerHeader is the response header that names the server.
const ServerHeader = "X-Server"

// MaxBlobSize bounds /blob?size=N (1 TiB): larger requests get 400 Bad Request.
const MaxBlobSize = 1 << 40

// copyBufSize is the chunk size blobs and uploads are moved in.
const copyBufSize = 64 << 10

// ServeHTTP serves on ln in a new goroutine until the returned server is closed (Close or
// Shutdown also close ln):
//   - GET / → 200, body "NAME\n";
//   - GET /blob?size=N&seed=S → 200, N bytes equal to Blob(N, S) (S decimal or 0x-hex);
//   - POST /upload → 200, body "LENGTH SHA256HEX\n" of the request body;
//   - anything else → 404.
//
// Every response carries the header X-Server: NAME. Server errors are not logged.
func ServeHTTP(ln net.Listener, name string) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		body := name + "\n"
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	})
	mux.HandleFunc("GET /blob", serveBlob)
	mux.HandleFunc("POST /upload", serveUpload)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(ServerHeader, name)
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(ln) }()
	return srv
}

func serveBlob(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, err := strconv.ParseInt(q.Get("size"), 10, 64)
	if err != nil || size < 0 || size > MaxBlobSize {
		http.Error(w, fmt.Sprintf("bad size %q: want a decimal number of bytes from 0 to %d", q.Get("size"), int64(MaxBlobSize)), http.StatusBadRequest)
		return
	}
	var seed uint64
	if s := q.Get("seed"); s != "" {
		seed, err = strconv.ParseUint(s, 0, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad seed %q: want an unsigned 64-bit number", s), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	buf := make([]byte, copyBufSize)
	_, _ = io.CopyBuffer(w, struct{ io.Reader }{BlobReader(size, seed)}, buf)
}

func serveUpload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	buf := make([]byte, copyBufSize)
	n, err := io.CopyBuffer(h, struct{ io.Reader }{r.Body}, buf)
	if err != nil {
		var mbe *http.MaxBytesError
		code := http.StatusBadRequest
		if errors.As(err, &mbe) {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, fmt.Sprintf("read upload after %d bytes: %v", n, err), code)
		return
	}
	body := formatUploadReply(n, h.Sum(nil))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
}

// formatUploadReply is the /upload answer: "LENGTH SHA256HEX\n".
func formatUploadReply(n int64, sum []byte) string {
	return strconv.FormatInt(n, 10) + " " + hex.EncodeToString(sum) + "\n"
}

// ServeUDPEcho answers each datagram read from pc with "NAME\x00" followed by its payload,
// in a new goroutine. stop makes it return and waits for that; pc stays open (the caller
// closes it) and its read deadline is cleared. stop may be called more than once. The
// server also ends if pc is closed.
func ServeUDPEcho(pc net.PacketConn, name string) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		out := make([]byte, 0, len(name)+1+len(buf))
		out = append(append(out, name...), 0)
		hdr := len(out)
		for {
			n, addr, err := pc.ReadFrom(buf)
			select {
			case <-quit:
				return
			default:
			}
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// Transient (an ICMP error reported on the socket): pause so that a
				// persistent one cannot spin.
				select {
				case <-quit:
					return
				case <-time.After(time.Millisecond):
				}
				continue
			}
			out = append(out[:hdr], buf[:n]...)
			_, _ = pc.WriteTo(out, addr)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			// Wake a blocked ReadFrom, and make any later one return at once.
			_ = pc.SetReadDeadline(time.Unix(1, 0))
			<-done
			_ = pc.SetReadDeadline(time.Time{})
		})
		<-done
	}
}
