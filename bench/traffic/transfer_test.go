package traffic

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// corruptConn flips one byte of the stream it reads (or writes) at a given offset.
type corruptConn struct {
	net.Conn
	mu                sync.Mutex
	readAt, writeAt   int64 // offsets to flip; -1 for none
	readOff, writeOff int64
}

func (c *corruptConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.readAt >= c.readOff && c.readAt < c.readOff+int64(n) {
		p[c.readAt-c.readOff] ^= 0x40
	}
	c.readOff += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *corruptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	q := p
	if c.writeAt >= c.writeOff && c.writeAt < c.writeOff+int64(len(p)) {
		q = append([]byte(nil), p...)
		q[c.writeAt-c.writeOff] ^= 0x40
	}
	c.writeOff += int64(len(p))
	c.mu.Unlock()
	return c.Conn.Write(q)
}

func corruptingDial(readAt, writeAt int64) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &corruptConn{Conn: c, readAt: readAt, writeAt: writeAt}, nil
	}
}

func TestDownloadUploadRoundTrip(t *testing.T) {
	ctx := testContext(t)
	base := "http://" + startServer(t, "s") + "/ignored/path?x=1"
	for _, size := range []int{0, 1, 7, 8, 9, 65535, 65536, 1<<20 + 3} {
		t.Run(fmt.Sprintf("%d bytes", size), func(t *testing.T) {
			n, err := Download(ctx, nil, base, size, uint64(size)*31+1)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(size) {
				t.Fatalf("downloaded %d bytes, want %d", n, size)
			}
			if err := Upload(ctx, nil, base, Blob(size, 3)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDownloadDetectsCorruption(t *testing.T) {
	ctx := testContext(t)
	addr := startServer(t, "s")
	const size = 200000
	// Flip a byte far past the response headers; the error must name its body offset.
	_, err := Download(ctx, corruptingDial(150000, -1), "http://"+addr+"/", size, 1)
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("error %v, want ErrMismatch", err)
	}
	if !strings.Contains(err.Error(), "byte ") {
		t.Fatalf("error %q does not name the bad byte", err)
	}
	// Same download without corruption passes: the failure above came from the flip.
	if _, err := Download(ctx, corruptingDial(-1, -1), "http://"+addr+"/", size, 1); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadDetectsWrongLengthAndStatus(t *testing.T) {
	ctx := testContext(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("seed") {
		case "1": // one byte short, honestly announced
			_, _ = w.Write(Blob(99, 1))
		case "2": // right length, other seed
			_, _ = w.Write(Blob(100, 99))
		case "3":
			http.Error(w, "no blobs today", http.StatusServiceUnavailable)
		}
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()
	tests := []struct {
		name     string
		seed     uint64
		mismatch bool
		wantErr  string
	}{
		{"short", 1, true, "announces 99 bytes"},
		{"other bytes", 2, true, "byte 0"},
		{"server error", 3, false, "503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Download(ctx, nil, base, 100, tc.seed)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrMismatch) != tc.mismatch || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q, want mismatch=%v and %q", err, tc.mismatch, tc.wantErr)
			}
		})
	}
}

func TestVerifyBlob(t *testing.T) {
	good := Blob(1000, 5)
	bad := append([]byte(nil), good...)
	bad[777] ^= 1
	tests := []struct {
		name    string
		data    []byte
		size    int64
		wantN   int64
		wantErr string
	}{
		{"exact", good, 1000, 1000, ""},
		{"flipped", bad, 1000, 1000, "byte 777 is"},
		{"short", good[:999], 1000, 999, "999 bytes, want 1000"},
		{"long", good, 999, 1000, "more than the 999 bytes"},
		{"empty", nil, 0, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := verifyBlob(strings.NewReader(string(tc.data)), tc.size, 5)
			if tc.wantErr == "" {
				if err != nil || n != tc.wantN {
					t.Fatalf("verifyBlob = %d, %v; want %d, nil", n, err, tc.wantN)
				}
				return
			}
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want ErrMismatch with %q", err, tc.wantErr)
			}
		})
	}
}

func TestUploadDetectsCorruption(t *testing.T) {
	ctx := testContext(t)
	addr := startServer(t, "s")
	data := Blob(100000, 8)
	err := Upload(ctx, corruptingDial(-1, 50000), "http://"+addr+"/", data)
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("error %v, want ErrMismatch", err)
	}
	if err := Upload(ctx, corruptingDial(-1, -1), "http://"+addr+"/", data); err != nil {
		t.Fatal(err)
	}
}

func TestUploadBadURL(t *testing.T) {
	ctx := testContext(t)
	for _, u := range []string{"", "ftp://x/", "http://"} {
		if err := Upload(ctx, nil, u, nil); !errors.Is(err, ErrBadOptions) {
			t.Errorf("Upload(%q) error %v, want ErrBadOptions", u, err)
		}
		if _, err := Download(ctx, nil, u, 1, 1); !errors.Is(err, ErrBadOptions) {
			t.Errorf("Download(%q) error %v, want ErrBadOptions", u, err)
		}
	}
	if _, err := Download(ctx, nil, "http://x/", -1, 1); !errors.Is(err, ErrBadOptions) {
		t.Errorf("Download(size -1) error %v, want ErrBadOptions", err)
	}
}

func TestParseUploadReply(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	hexSum := fmt.Sprintf("%x", sum)
	tests := []struct {
		name  string
		in    string
		ok    bool
		wantN int64
	}{
		{"valid", "1 " + hexSum + "\n", true, 1},
		{"zero", "0 " + hexSum + "\n", true, 0},
		{"no newline", "1 " + hexSum, false, 0},
		{"no space", "1" + hexSum + "\n", false, 0},
		{"negative", "-1 " + hexSum + "\n", false, 0},
		{"plus sign", "+1 " + hexSum + "\n", false, 0},
		{"leading zero", "01 " + hexSum + "\n", false, 0},
		{"upper-case hex", "1 " + strings.ToUpper(hexSum) + "\n", false, 0},
		{"short hash", "1 " + hexSum[2:] + "\n", false, 0},
		{"not hex", "1 " + strings.Repeat("zz", 32) + "\n", false, 0},
		{"two spaces", "1  " + hexSum + "\n", false, 0},
		{"empty", "", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, got, err := parseUploadReply(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("error %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (n != tc.wantN || got != sum) {
				t.Fatalf("parsed %d %x, want %d %x", n, got, tc.wantN, sum)
			}
		})
	}
}

func FuzzParseUploadReply(f *testing.F) {
	f.Add(formatUploadReply(5, make([]byte, 32)))
	f.Add("12 " + strings.Repeat("ab", 32) + "\n")
	f.Add("x")
	f.Add("-0 \n")
	f.Fuzz(func(t *testing.T, s string) {
		n, sum, err := parseUploadReply(s)
		if err != nil {
			return
		}
		// Invariant: whatever parses is canonical, so formatting gives the input back.
		if back := formatUploadReply(n, sum[:]); back != s {
			t.Fatalf("parse(%q) = %d %x, which formats as %q", s, n, sum, back)
		}
	})
}
