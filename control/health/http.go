package health

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// maxBody bounds how much of a body is read for its digest.
const maxBody = 64 << 20

// URL is one url block of an HTTP_GET or SSL_GET.
type URL struct {
	Path string
	// Digest is the expected MD5 of the body in lower-case hex; "" does not read the body.
	Digest string
	// Status lists the accepted status codes; empty means 200-299.
	Status []StatusRange
	// Host is the Host header (virtualhost); "" sends the connect address.
	Host string
}

// StatusRange is an inclusive range of status codes.
type StatusRange struct{ Min, Max int }

func (u URL) accepts(code int) bool {
	if len(u.Status) == 0 {
		return code >= 200 && code <= 299
	}
	for _, r := range u.Status {
		if code >= r.Min && code <= r.Max {
			return true
		}
	}
	return false
}

// HTTP is keepalived's HTTP_GET, and SSL_GET when TLS is set: every URL is fetched from
// Addr (one connection each, closed after the answer) and must answer an accepted status
// within Timeout and, when a digest is given, a body with that MD5.
//
// Requests are HTTP/1.1 with "Connection: close" and "User-Agent: KeepAliveClient".
// TLS does not verify the server's certificate (keepalived does not either); ServerName
// is sent as SNI when set, and Certificates are offered as the client's.
type HTTP struct {
	Addr         netip.AddrPort
	TLS          bool
	URLs         []URL
	Timeout      time.Duration
	ServerName   string
	Certificates []tls.Certificate
	Dialer       Dialer

	client *http.Client
	urls   []string
}

// NewHTTP checks the URLs and prepares the client.
func NewHTTP(c HTTP) (*HTTP, error) {
	if len(c.URLs) == 0 {
		return nil, fmt.Errorf("%w: %s needs at least one url", ErrSpec, c.kind())
	}
	if c.Timeout <= 0 {
		return nil, fmt.Errorf("%w: %s timeout %v: must be positive", ErrSpec, c.kind(), c.Timeout)
	}
	scheme := "http"
	if c.TLS {
		scheme = "https"
	}
	for _, u := range c.URLs {
		p := u.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		full := scheme + "://" + c.Addr.String() + p
		if _, err := url.Parse(full); err != nil {
			return nil, fmt.Errorf("%w: %s url path %q: %v", ErrSpec, c.kind(), u.Path, err)
		}
		if u.Digest != "" {
			if b, err := hex.DecodeString(u.Digest); err != nil || len(b) != md5.Size {
				return nil, fmt.Errorf("%w: %s digest %q: expected 32 hexadecimal digits", ErrSpec, c.kind(), u.Digest)
			}
		}
		c.urls = append(c.urls, full)
	}
	addr, d, timeout := c.Addr, c.Dialer, c.Timeout
	tr := &http.Transport{
		// Whatever the URL says, connect to the real server.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.dial(ctx, addr, timeout)
		},
		DisableKeepAlives:   true,
		DisableCompression:  true,
		TLSHandshakeTimeout: timeout,
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // health checks, as keepalived: no verification
			// Empty: no SNI, since the URL's host is an address.
			ServerName:   c.ServerName,
			Certificates: c.Certificates,
		},
		MaxResponseHeaderBytes: 1 << 20,
	}
	c.client = &http.Client{
		Transport: tr,
		// A redirect is an answer like any other: its status decides.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &c, nil
}

func (c *HTTP) kind() string {
	if c.TLS {
		return "SSL_GET"
	}
	return "HTTP_GET"
}

// Check implements Checker.
func (c *HTTP) Check(ctx context.Context) Result {
	for i, u := range c.URLs {
		if err := c.get(ctx, u, c.urls[i]); err != nil {
			return Result{Err: err}
		}
	}
	return Result{}
}

func (c *HTTP) get(ctx context.Context, u URL, full string) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u.Path, err)
	}
	if u.Host != "" {
		req.Host = u.Host
	}
	req.Header.Set("User-Agent", "KeepAliveClient")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("GET %s from %s: %w after %v", u.Path, c.Addr, ErrTimeout, c.Timeout)
		}
		return fmt.Errorf("GET %s from %s: %w", u.Path, c.Addr, unwrapURL(err))
	}
	defer resp.Body.Close()
	if !u.accepts(resp.StatusCode) {
		return fmt.Errorf("GET %s from %s: %w %d", u.Path, c.Addr, ErrStatus, resp.StatusCode)
	}
	if u.Digest == "" {
		return nil
	}
	h := md5.New()
	if _, err := io.Copy(h, io.LimitReader(resp.Body, maxBody)); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("GET %s from %s: reading body: %w after %v", u.Path, c.Addr, ErrTimeout, c.Timeout)
		}
		return fmt.Errorf("GET %s from %s: reading body: %w", u.Path, c.Addr, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != u.Digest {
		return fmt.Errorf("GET %s from %s: %w: body has MD5 %s, expected %s", u.Path, c.Addr, ErrDigest, got, u.Digest)
	}
	return nil
}

// unwrapURL drops url.Error's "Get \"...\":" prefix, which the callers' messages name.
func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func (c *HTTP) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s timeout %v%s", c.kind(), c.Addr, c.Timeout, c.Dialer)
	if c.ServerName != "" {
		fmt.Fprintf(&b, " sni %s", c.ServerName)
	}
	if len(c.Certificates) > 0 {
		fmt.Fprintf(&b, " client-certificates %d", len(c.Certificates))
	}
	for _, u := range c.URLs {
		fmt.Fprintf(&b, " url{path %q", u.Path)
		if u.Digest != "" {
			fmt.Fprintf(&b, " digest %s", u.Digest)
		}
		if len(u.Status) > 0 {
			fmt.Fprintf(&b, " status %v", u.Status)
		}
		if u.Host != "" {
			fmt.Fprintf(&b, " host %q", u.Host)
		}
		b.WriteString("}")
	}
	return b.String()
}
