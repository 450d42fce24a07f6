package health

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

// ErrUDP is a UDP probe refused (an ICMP unreachable came back) or badly answered.
var ErrUDP = errors.New("UDP check failed")

// udpRandomPayload is the size of the random datagram sent without a payload.
const udpRandomPayload = 16

// UDP is keepalived's UDP_CHECK (check_udp.c and layer4.c's udp_socket_state,
// acassen/keepalived): one datagram (Payload, or random bytes) to the server on a
// connected socket, then wait up to Timeout:
//
//   - an ICMP destination unreachable (port, host or net) comes back: down;
//   - nothing comes: up, unless RequireReply (then down);
//   - a reply comes: up, unless RequireReply and the reply is shorter than MinReplyLen
//     or longer than MaxReplyLen, or differs from ReplyData on the bytes both have
//     (bits set in ReplyMask excepted).
//
// Host unreachable relies on ARP timing out, so Timeout should be a few seconds for it
// to be seen, as keepalived.conf(5) warns.
type UDP struct {
	Addr         netip.AddrPort
	Timeout      time.Duration
	Payload      []byte
	RequireReply bool
	ReplyData    []byte
	ReplyMask    []byte
	MinReplyLen  int
	MaxReplyLen  int
	Dialer       Dialer
}

// NewUDP checks c.
func NewUDP(c UDP) (*UDP, error) {
	if !c.Addr.IsValid() || c.Addr.Port() == 0 || c.Timeout <= 0 {
		return nil, fmt.Errorf("%w: UDP_CHECK needs an address, a port and a positive timeout", ErrSpec)
	}
	if c.MaxReplyLen < 0 || c.MinReplyLen < 0 || c.MaxReplyLen > 65535 {
		return nil, fmt.Errorf("%w: UDP_CHECK reply lengths %d-%d: expected 0 to 65535", ErrSpec, c.MinReplyLen, c.MaxReplyLen)
	}
	if c.ReplyMask != nil && len(c.ReplyMask) != len(c.ReplyData) {
		return nil, fmt.Errorf("%w: UDP_CHECK reply mask of %d bytes for %d bytes of data", ErrSpec, len(c.ReplyMask), len(c.ReplyData))
	}
	return &c, nil
}

// Check implements Checker.
func (c *UDP) Check(ctx context.Context) Result {
	conn, err := c.Dialer.dialNet(ctx, "udp", c.Addr, c.Timeout)
	if err != nil {
		return Result{Err: err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	payload := c.Payload
	if payload == nil {
		payload = make([]byte, udpRandomPayload)
		cryptorand.Read(payload)
	}
	if err := conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
		return Result{Err: err}
	}
	if _, err := conn.Write(payload); err != nil {
		return Result{Err: fmt.Errorf("%s: %w: send: %v", c.Addr, ErrUDP, unwrapOp(err))}
	}
	buf := make([]byte, 65536) // a whole datagram, so the length reported is its own
	n, err := conn.Read(buf)
	switch {
	case err == nil:
	case isTimeout(err) && ctx.Err() == nil:
		if c.RequireReply {
			return Result{Err: fmt.Errorf("%s: %w: no reply: %w after %v", c.Addr, ErrUDP, ErrTimeout, c.Timeout)}
		}
		return Result{} // silence is success, as keepalived has it
	case errors.Is(err, syscall.ECONNREFUSED):
		return Result{Err: fmt.Errorf("%s: %w: port unreachable (ICMP)", c.Addr, ErrUDP)}
	default:
		return Result{Err: fmt.Errorf("%s: %w: %v", c.Addr, ErrUDP, unwrapOp(err))}
	}
	if !c.RequireReply {
		return Result{}
	}
	if n < c.MinReplyLen || n > c.MaxReplyLen {
		return Result{Err: fmt.Errorf("%s: %w: reply of %d bytes, want %d to %d", c.Addr, ErrUDP, n, c.MinReplyLen, c.MaxReplyLen)}
	}
	for i := 0; i < n && i < len(c.ReplyData); i++ {
		ignore := byte(0)
		if c.ReplyMask != nil {
			ignore = c.ReplyMask[i]
		}
		if (buf[i]^c.ReplyData[i])&^ignore != 0 {
			return Result{Err: fmt.Errorf("%s: %w: reply byte %d is %#02x, want %#02x", c.Addr, ErrUDP, i, buf[i], c.ReplyData[i])}
		}
	}
	return Result{}
}

func (c *UDP) String() string {
	s := fmt.Sprintf("UDP_CHECK %s timeout %v payload %x", c.Addr, c.Timeout, c.Payload)
	if c.RequireReply {
		s += fmt.Sprintf(" require_reply %x mask %x length %d-%d", c.ReplyData, c.ReplyMask, c.MinReplyLen, c.MaxReplyLen)
	}
	return s + c.Dialer.String()
}
