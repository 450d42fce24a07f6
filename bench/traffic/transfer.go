package traffic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ErrMismatch is returned (wrapped) when data that came back differs from what was sent or
// expected.
var ErrMismatch = errors.New("data mismatch")

// endpointURL replaces base's path and query: base "http://198.18.1.100:8080/x" with
// path "/blob" gives "http://198.18.1.100:8080/blob?...".
func endpointURL(base, path string, q url.Values) (string, error) {
	if err := checkHTTPURL(base); err != nil {
		return "", err
	}
	u, _ := url.Parse(base) // checked above
	u.Path, u.RawPath, u.RawQuery, u.Fragment = path, "", q.Encode(), ""
	return u.String(), nil
}

// Download GETs /blob?size=size&seed=seed from the server at baseURL (its path is
// replaced), dialing with dial, and checks every byte against Blob(size, seed). It returns
// the number of bytes received; an error wraps ErrMismatch if the data differ (naming the
// first bad offset) or the length is wrong. ctx bounds the whole transfer.
func Download(ctx context.Context, dial DialFunc, baseURL string, size int, seed uint64) (int64, error) {
	if size < 0 {
		return 0, fmt.Errorf("download blob: %w: size %d, want >= 0", ErrBadOptions, size)
	}
	u, err := endpointURL(baseURL, "/blob", url.Values{
		"size": {strconv.Itoa(size)},
		"seed": {strconv.FormatUint(seed, 10)},
	})
	if err != nil {
		return 0, fmt.Errorf("download blob: %w", err)
	}
	tr := newTransport(dial, false, 1)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: noRedirects}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", u, err)
	}
	defer resp.Body.Close()
	from := describeServer(resp.Header.Get(ServerHeader))
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("download %s: status %s from %s: %q", u, resp.Status, from, bytes.TrimSpace(msg))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(size) {
		return 0, fmt.Errorf("download %s: %w: %s announces %d bytes, want %d", u, ErrMismatch, from, resp.ContentLength, size)
	}
	got, err := verifyBlob(resp.Body, int64(size), seed)
	if err != nil {
		return got, fmt.Errorf("download %s from %s: %w", u, from, err)
	}
	return got, nil
}

// verifyBlob reads r to its end and checks it is exactly the blob (size, seed).
func verifyBlob(r io.Reader, size int64, seed uint64) (int64, error) {
	buf := make([]byte, copyBufSize)
	want := make([]byte, copyBufSize)
	var off int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if off+int64(n) > size {
				return off + int64(n), fmt.Errorf("verify blob: %w: more than the %d bytes asked for", ErrMismatch, size)
			}
			fillBlob(want[:n], seed, off)
			if i := firstDiff(buf[:n], want[:n]); i >= 0 {
				return off + int64(n), fmt.Errorf("verify blob: %w: byte %d is %#02x, want %#02x", ErrMismatch, off+int64(i), buf[i], want[i])
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return off, fmt.Errorf("read blob after %d of %d bytes: %w", off, size, err)
		}
	}
	if off != size {
		return off, fmt.Errorf("verify blob: %w: %d bytes, want %d", ErrMismatch, off, size)
	}
	return off, nil
}

// firstDiff returns the first index where a and b (of equal length) differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Upload POSTs data to /upload of the server at baseURL (its path is replaced), dialing
// with dial, and checks that the server saw exactly len(data) bytes with data's SHA-256.
// A difference is an error wrapping ErrMismatch. ctx bounds the whole transfer.
func Upload(ctx context.Context, dial DialFunc, baseURL string, data []byte) error {
	u, err := endpointURL(baseURL, "/upload", nil)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	tr := newTransport(dial, false, 1)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: noRedirects}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("upload to %s: %w", u, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("upload %d bytes to %s: %w", len(data), u, err)
	}
	defer resp.Body.Close()
	from := describeServer(resp.Header.Get(ServerHeader))
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return fmt.Errorf("read upload reply from %s: %w", from, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upload %d bytes to %s: status %s from %s: %q", len(data), u, resp.Status, from, bytes.TrimSpace(body))
	}
	n, sum, err := parseUploadReply(string(body))
	if err != nil {
		return fmt.Errorf("upload to %s: reply from %s: %w", u, from, err)
	}
	want := sha256.Sum256(data)
	if n != int64(len(data)) || sum != want {
		return fmt.Errorf("upload to %s: %w: %s received %d bytes with SHA-256 %x, want %d bytes with %x",
			u, ErrMismatch, from, n, sum, len(data), want)
	}
	return nil
}

// parseUploadReply parses "LENGTH SHA256HEX\n".
func parseUploadReply(s string) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	line, ok := strings.CutSuffix(s, "\n")
	if !ok {
		return 0, sum, fmt.Errorf("parse upload reply %q: want \"LENGTH SHA256HEX\\n\"", s)
	}
	ls, hs, ok := strings.Cut(line, " ")
	if !ok {
		return 0, sum, fmt.Errorf("parse upload reply %q: want \"LENGTH SHA256HEX\\n\"", s)
	}
	n, err := strconv.ParseInt(ls, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != ls {
		return 0, sum, fmt.Errorf("parse upload reply %q: length %q is not a canonical decimal number", s, ls)
	}
	if len(hs) != 2*sha256.Size || strings.ToLower(hs) != hs {
		return 0, sum, fmt.Errorf("parse upload reply %q: hash %q is not %d lower-case hex digits", s, hs, 2*sha256.Size)
	}
	if _, err := hex.Decode(sum[:], []byte(hs)); err != nil {
		return 0, sum, fmt.Errorf("parse upload reply %q: hash: %w", s, err)
	}
	return n, sum, nil
}
