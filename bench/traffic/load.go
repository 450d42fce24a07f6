package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc dials a connection; testbed.NS.DialContext is one. nil means a plain
// net.Dialer.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DefaultTimeout bounds each request (or reply wait) when the options give none.
const DefaultTimeout = 5 * time.Second

// maxFirstErrors is how many error messages results keep.
const maxFirstErrors = 5

// ErrBadOptions is returned (wrapped) for options a generator cannot run with.
var ErrBadOptions = errors.New("bad traffic options")

// HTTPLoadOptions configures HTTPLoad.
type HTTPLoadOptions struct {
	URL         string // full URL to GET, e.g. "http://198.18.1.100/"
	Requests    int    // total number of requests, > 0
	Concurrency int    // requests in flight at once; 0 means 1
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	Timeout     time.Duration // per request, from dial to the body's end; 0 means 5s
	KeepAlive   bool          // reuse connections; false: one TCP connection per request
}

// HTTPLoadResult is what HTTPLoad saw.
type HTTPLoadResult struct {
	Requests, OK, Failed int            // requests issued, answered 200 with a full body, others
	ByServer             map[string]int // OK answers by X-Server ("" when absent)
	FirstErrors          []string       // up to 5 messages of failed requests, in order of completion
	Duration             time.Duration  // wall time of the whole run
	P50, P99, P999       time.Duration  // latency of OK requests (nearest rank), 0 if none
	Bytes                int64          // response body bytes of OK requests
}

// HTTPLoad sends o.Requests GET requests for o.URL, o.Concurrency at a time, and reports
// the outcome. Each request is bounded by o.Timeout and the whole run by ctx: when ctx
// ends, no new request starts and the result counts only those issued. The error is only
// for bad options; failed requests are counted in the result.
func HTTPLoad(ctx context.Context, o HTTPLoadOptions) (HTTPLoadResult, error) {
	if err := o.check(); err != nil {
		return HTTPLoadResult{}, err
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	o.Concurrency = min(o.Concurrency, o.Requests)
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	tr := newTransport(o.Dial, o.KeepAlive, o.Concurrency)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: noRedirects}

	var (
		next atomic.Int64
		mu   sync.Mutex
		res  = HTTPLoadResult{ByServer: map[string]int{}}
		lat  = make([]time.Duration, 0, o.Requests)
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for next.Add(1) <= int64(o.Requests) && ctx.Err() == nil {
				t0 := time.Now()
				server, n, err := getOnce(ctx, client, o.URL, o.Timeout, buf)
				d := time.Since(t0)
				mu.Lock()
				res.Requests++
				if err != nil {
					res.Failed++
					if len(res.FirstErrors) < maxFirstErrors {
						res.FirstErrors = append(res.FirstErrors, err.Error())
					}
				} else {
					res.OK++
					res.ByServer[server]++
					res.Bytes += n
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Duration = time.Since(start)
	slices.Sort(lat)
	res.P50, res.P99, res.P999 = percentile(lat, 500), percentile(lat, 990), percentile(lat, 999)
	return res, nil
}

func (o *HTTPLoadOptions) check() error {
	switch {
	case o.Requests <= 0:
		return fmt.Errorf("check http load options: %w: Requests %d, want > 0", ErrBadOptions, o.Requests)
	case o.Concurrency < 0:
		return fmt.Errorf("check http load options: %w: Concurrency %d, want >= 0", ErrBadOptions, o.Concurrency)
	case o.Timeout < 0:
		return fmt.Errorf("check http load options: %w: Timeout %v, want >= 0", ErrBadOptions, o.Timeout)
	}
	return checkHTTPURL(o.URL)
}

func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("check url: %w: %w", ErrBadOptions, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("check url %q: %w: want http://host[:port]/path", raw, ErrBadOptions)
	}
	return nil
}

// percentile returns the nearest-rank value at perMille/1000 of sorted, or 0 if empty.
func percentile(sorted []time.Duration, perMille int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*perMille + 999) / 1000 // ceil
	return sorted[max(rank, 1)-1]
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newTransport builds a transport that dials with dial and never uses a proxy.
func newTransport(dial DialFunc, keepAlive bool, conns int) *http.Transport {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         dial,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
}

// getOnce GETs u, reads the whole body into buf's worth of chunks and returns the X-Server
// header and the body length.
func getOnce(ctx context.Context, c *http.Client, u string, timeout time.Duration, buf []byte) (string, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	server := resp.Header.Get(ServerHeader)
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
	if err != nil {
		return server, n, fmt.Errorf("read body from %s after %d bytes: %w", describeServer(server), n, err)
	}
	if resp.StatusCode != http.StatusOK {
		return server, n, fmt.Errorf("get %s: status %s from %s", u, resp.Status, describeServer(server))
	}
	return server, n, nil
}

func describeServer(name string) string {
	if name == "" {
		return "a server without " + ServerHeader
	}
	return "server " + name
}

// String summarises the result on one line, servers sorted by name, then the errors.
func (r HTTPLoadResult) String() string {
	var b strings.Builder
	rate := 0.0
	if r.Duration > 0 {
		rate = float64(r.Requests) / r.Duration.Seconds()
	}
	fmt.Fprintf(&b, "requests=%d ok=%d failed=%d in %v (%.1f req/s) p50=%v p99=%v p99.9=%v bytes=%d",
		r.Requests, r.OK, r.Failed, r.Duration.Round(time.Microsecond), rate,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.P999.Round(time.Microsecond), r.Bytes)
	if len(r.ByServer) > 0 {
		names := make([]string, 0, len(r.ByServer))
		for k := range r.ByServer {
			names = append(names, k)
		}
		slices.Sort(names)
		b.WriteString(" by server:")
		for _, k := range names {
			label := k
			if label == "" {
				label = "(no " + ServerHeader + ")"
			}
			fmt.Fprintf(&b, " %s=%d", label, r.ByServer[k])
		}
	}
	for _, e := range r.FirstErrors {
		b.WriteString("\n  error: ")
		b.WriteString(e)
	}
	return b.String()
}
