package health

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// TCP is keepalived's TCP_CHECK: the server is up when a TCP connection opens within
// Timeout.
type TCP struct {
	Addr    netip.AddrPort
	Timeout time.Duration
	Dialer  Dialer
}

// Check implements Checker.
func (c *TCP) Check(ctx context.Context) Result {
	conn, err := c.Dialer.dial(ctx, c.Addr, c.Timeout)
	if err != nil {
		return Result{Err: err}
	}
	conn.Close()
	return Result{}
}

func (c *TCP) String() string {
	return fmt.Sprintf("TCP_CHECK %s timeout %v%s", c.Addr, c.Timeout, c.Dialer)
}
