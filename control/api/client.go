package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// DefaultClientTimeout bounds a Client.Do whose context has no deadline.
const DefaultClientTimeout = 30 * time.Second

// Client talks to xlvsd over its control socket, one connection per request. A Client is
// safe for concurrent use.
type Client struct {
	path string
	// Timeout bounds a call whose context has no deadline (DefaultClientTimeout if 0).
	Timeout time.Duration
}

// NewClient returns a client of the daemon listening on the unix socket path.
func NewClient(path string) *Client { return &Client{path: path} }

// Path is the socket the client connects to.
func (c *Client) Path() string { return c.path }

// Do sends req (with Version set to this package's Version when zero) and waits for the
// response. Transport failures return a nil Response and an error that names the socket.
// A response carrying an Error is returned together with that *Error as the error, so
// callers can errors.As it and still read the Response.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	r := *req
	if r.Version == 0 {
		r.Version = Version
	}
	b, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if len(b) > MaxRequestSize {
		return nil, fmt.Errorf("send request: %w: %d bytes, xlvsd accepts at most %d; split it", ErrRequestTooLarge, len(b), MaxRequestSize)
	}
	b = append(b, '\n')

	if _, ok := ctx.Deadline(); !ok {
		timeout := c.Timeout
		if timeout <= 0 {
			timeout = DefaultClientTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to xlvsd: %w (socket %s)", ctx.Err(), c.path)
		}
		return nil, fmt.Errorf("connect to xlvsd: %w; is xlvsd running? (socket %s)", err, c.path)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline on xlvsd connection: %w (socket %s)", err, c.path)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	_, werr := conn.Write(b)
	// Even when the write failed the daemon may have answered (it refuses an oversized
	// or malformed request before reading all of it), so try to read the answer.
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		switch {
		case ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
			// The socket deadline is the context's: it may fire a moment before the
			// context notices.
			cause := ctx.Err()
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			return nil, fmt.Errorf("wait for xlvsd: %w (socket %s)", cause, c.path)
		case werr != nil:
			return nil, fmt.Errorf("send request to xlvsd: %w; is xlvsd running? (socket %s)", werr, c.path)
		default:
			return nil, fmt.Errorf("read response from xlvsd: %w; is xlvsd running? (socket %s)", err, c.path)
		}
	}
	if resp.Error != nil {
		return &resp, resp.Error
	}
	if resp.Version != Version {
		return &resp, fmt.Errorf("check response: %w: xlvsd speaks version %d, this client version %d; use xlvsadm from the same xlvs release",
			ErrVersion, resp.Version, Version)
	}
	return &resp, nil
}

// SocketPath picks the control socket: flagValue when set, else $XLVS_SOCKET, else
// DefaultSocket. It is meant for mains (xlvsd, xlvsadm), the only callers that read the
// environment; the rest of the API takes the path as an argument.
func SocketPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(EnvSocket); v != "" {
		return v
	}
	return DefaultSocket
}
