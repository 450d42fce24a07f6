package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Checker probes one real server once. Implementations: TCP (TCP_CHECK), HTTP (HTTP_GET
// and SSL_GET), Misc (MISC_CHECK), SMTP (SMTP_CHECK), DNS (DNS_CHECK), UDP (UDP_CHECK),
// Ping (PING_CHECK), File (FILE_CHECK).
//
// Check must return when ctx is done and must honour its own timeout (connect_timeout,
// misc_timeout); it is never called concurrently with itself. String must describe
// everything that affects the outcome: two checkers with equal strings are the same check
// (a reload keeps the state of unchanged checks).
type Checker interface {
	Check(ctx context.Context) Result
	String() string
}

// Result is the outcome of one check.
type Result struct {
	// Err is nil when the check passed, otherwise why it failed.
	Err error
	// Dynamic is set by a checker that also sets the server's weight (MISC_CHECK with
	// misc_dynamic); Weight is then the weight to use, or ConfiguredWeight.
	Dynamic bool
	Weight  int32
}

// ConfiguredWeight in Result.Weight restores the server's configured weight.
const ConfiguredWeight int32 = -1

// Errors a check reports (wrapped with details).
var (
	ErrTimeout = errors.New("timed out")
	ErrStatus  = errors.New("unexpected HTTP status")
	ErrDigest  = errors.New("body digest mismatch")
	ErrExit    = errors.New("script failed")
	ErrSpec    = errors.New("invalid health-check configuration")
	ErrClosed  = errors.New("health monitor closed")
)

// Dialer holds the connection options keepalived's checkers share (bindto, bind_port,
// bind_if, fwmark). The zero value connects from the director's default address.
type Dialer struct {
	// Bind is the local address (and port, when not 0) to connect from; invalid means
	// any.
	Bind netip.AddrPort
	// Interface binds the socket to a device (SO_BINDTODEVICE), "" for none.
	Interface string
	// Mark is the firewall mark (SO_MARK) of the checker's packets, 0 for none.
	Mark uint32
}

func (d Dialer) String() string {
	s := ""
	if d.Bind.IsValid() {
		s += " bindto " + d.Bind.String()
	}
	if d.Interface != "" {
		s += " bind_if " + d.Interface
	}
	if d.Mark != 0 {
		s += fmt.Sprintf(" fwmark %d", d.Mark)
	}
	return s
}

// dial connects to addr over TCP within timeout, honouring ctx.
func (d Dialer) dial(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	return d.dialNet(ctx, "tcp", addr, timeout)
}

// setOpts applies fwmark and bind_if to a socket.
func (d Dialer) setOpts(fd int) error {
	if d.Mark != 0 {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_MARK, int(d.Mark)); err != nil {
			return fmt.Errorf("set fwmark %d: %w", d.Mark, err)
		}
	}
	if d.Interface != "" {
		if err := syscall.BindToDevice(fd, d.Interface); err != nil {
			return fmt.Errorf("bind to interface %s: %w", d.Interface, err)
		}
	}
	return nil
}

// dialNet connects a "tcp" or "udp" socket to addr within timeout, honouring ctx.
func (d Dialer) dialNet(ctx context.Context, network string, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if d.Bind.IsValid() {
		if network == "udp" {
			nd.LocalAddr = net.UDPAddrFromAddrPort(d.Bind)
		} else {
			nd.LocalAddr = net.TCPAddrFromAddrPort(d.Bind)
		}
	}
	if d.Interface != "" || d.Mark != 0 {
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = d.setOpts(int(fd)) }); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := nd.DialContext(ctx, network, addr.String())
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("connect to %s: %w after %v", addr, ErrTimeout, timeout)
		}
		return nil, fmt.Errorf("connect to %s: %w", addr, unwrapOp(err))
	}
	return c, nil
}

// unwrapOp drops net.OpError's address prefix, which the callers' messages already name.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
