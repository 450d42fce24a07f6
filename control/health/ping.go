package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPing is an ICMP echo that was not answered.
var ErrPing = errors.New("ping failed")

// pingPayload is the size of the echo's data (keepalived sends 128 bytes).
const pingPayload = 56

// pingPoll bounds one wait for a reply, so a cancelled check ends quickly.
const pingPoll = 100 * time.Millisecond

// Ping is keepalived's PING_CHECK (check_ping.c, acassen/keepalived): one ICMP echo
// request (ICMPv6 for an IPv6 address) to Addr; the server is up when an echo reply
// comes within Timeout. Like keepalived it uses an unprivileged ICMP socket (SOCK_DGRAM,
// IPPROTO_ICMP or IPPROTO_ICMPV6: the kernel sets the identifier and returns only this
// socket's replies), which needs the daemon's group in net.ipv4.ping_group_range;
// keepalived widens that sysctl, xlvs does not change it and uses a raw socket
// (CAP_NET_RAW) instead when the ICMP socket is refused, matching replies on identifier
// and sequence. An ICMP error for the request (unreachable) or no route fails at once.
type Ping struct {
	Addr    netip.Addr
	Timeout time.Duration
	Dialer  Dialer // Bind's address (not port), Interface and Mark apply

	raw bool // tests: skip the ICMP socket
}

// NewPing checks c.
func NewPing(c Ping) (*Ping, error) {
	if !c.Addr.IsValid() || c.Timeout <= 0 {
		return nil, fmt.Errorf("%w: PING_CHECK needs an address and a positive timeout", ErrSpec)
	}
	c.Addr = c.Addr.Unmap()
	if c.Dialer.Bind.IsValid() && c.Dialer.Bind.Addr().Unmap().Is4() != c.Addr.Is4() {
		return nil, fmt.Errorf("%w: PING_CHECK bindto %s and %s are of different families", ErrSpec, c.Dialer.Bind.Addr(), c.Addr)
	}
	return &c, nil
}

// socket opens the ICMP socket: unprivileged when allowed, else raw.
func (c *Ping) socket() (fd int, raw bool, err error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if c.Addr.Is6() {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	if !c.raw {
		fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			return fd, false, nil
		}
		if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EPROTONOSUPPORT) {
			return -1, false, err
		}
	}
	fd, rerr := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if rerr != nil {
		return -1, false, fmt.Errorf("no ICMP socket (%v) and no raw socket (%v): add the daemon's group to net.ipv4.ping_group_range or give it CAP_NET_RAW", err, rerr)
	}
	return fd, true, nil
}

func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}

// Check implements Checker.
func (c *Ping) Check(ctx context.Context) Result {
	fail := func(format string, args ...any) Result {
		return Result{Err: fmt.Errorf("%s: %w: %s", c.Addr, ErrPing, fmt.Sprintf(format, args...))}
	}
	fd, raw, err := c.socket()
	if err != nil {
		return fail("%v", err)
	}
	defer unix.Close(fd)
	if err := c.Dialer.setOpts(fd); err != nil {
		return fail("%v", err)
	}
	if c.Dialer.Bind.IsValid() {
		if err := unix.Bind(fd, sockaddr(c.Dialer.Bind.Addr().Unmap())); err != nil {
			return fail("bind to %s: %v", c.Dialer.Bind.Addr(), err)
		}
	}
	if err := unix.Connect(fd, sockaddr(c.Addr)); err != nil {
		return fail("%v", err)
	}
	id, seq := uint16(rand.Uint32()), uint16(rand.Uint32())
	typ, replyType := byte(8), byte(0) // ICMP echo request, echo reply
	if c.Addr.Is6() {
		typ, replyType = 128, 129
	}
	msg := make([]byte, 8+pingPayload)
	msg[0] = typ
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	for i := 8; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	if c.Addr.Is4() {
		// The kernel computes ICMPv6 checksums (and ping sockets' ICMP ones) itself.
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	}
	if _, err := unix.Write(fd, msg); err != nil {
		return fail("send echo request: %v", err)
	}
	deadline := time.Now().Add(c.Timeout)
	buf := make([]byte, 1500)
	for {
		if ctx.Err() != nil {
			return Result{Err: ctx.Err()}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return Result{Err: fmt.Errorf("%s: %w: no echo reply: %w after %v", c.Addr, ErrPing, ErrTimeout, c.Timeout)}
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(min(left, pingPoll).Milliseconds())+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fail("poll: %v", err)
		}
		if n == 0 {
			continue
		}
		m, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fail("%v", err) // an ICMP error for the echo: unreachable
		}
		p := buf[:m]
		if raw && c.Addr.Is4() {
			// A raw IPv4 socket gets the IP header too.
			if len(p) < 20 || int(p[0]&0x0f)*4 > len(p) {
				continue
			}
			p = p[int(p[0]&0x0f)*4:]
		}
		if len(p) < 8 || p[0] != replyType || binary.BigEndian.Uint16(p[6:]) != seq {
			continue
		}
		if raw && binary.BigEndian.Uint16(p[4:]) != id {
			continue // another process's echo (ping sockets filter on identifier)
		}
		return Result{}
	}
}

// icmpChecksum is the Internet checksum of b (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func (c *Ping) String() string {
	return fmt.Sprintf("PING_CHECK %s timeout %v%s", c.Addr, c.Timeout, c.Dialer)
}
