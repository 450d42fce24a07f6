package ipvssync

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Config is what a sync daemon's sockets need, as ipvsadm --start-daemon gives it.
type Config struct {
	Ifname string     // --mcast-interface: the interface the messages go out of and come in on
	Group  netip.Addr // --mcast-group: zero means DefaultGroup4
	Port   int        // --mcast-port: zero means DefaultPort; socket id uses Port+id
	TTL    int        // --mcast-ttl: zero means DefaultTTL
}

func (c Config) withDefaults() Config {
	if !c.Group.IsValid() {
		c.Group = netip.AddrFrom4(DefaultGroup4)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	return c
}

// Check validates the configuration as ipvsadm and the kernel do.
func (c Config) Check() error {
	c = c.withDefaults()
	switch {
	case c.Ifname == "":
		return errors.New("sync daemon: no multicast interface: give the interface its messages go out of and come in on")
	case len(c.Ifname) >= unix.IFNAMSIZ:
		return fmt.Errorf("sync daemon: interface name %q is longer than %d bytes", c.Ifname, unix.IFNAMSIZ-1)
	case !c.Group.Is4() && !c.Group.Is6() || !c.Group.IsMulticast():
		return fmt.Errorf("sync daemon: group %v is not a multicast address: give an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) group", c.Group)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("sync daemon: port %d out of range 1..65535", c.Port)
	case c.TTL < 1 || c.TTL > 255:
		return fmt.Errorf("sync daemon: TTL %d out of range 1..255", c.TTL)
	}
	return nil
}

// Interface returns the index and MTU of the configured interface.
func (c Config) Interface() (index, mtu int, err error) {
	ifi, err := net.InterfaceByName(c.Ifname)
	if err != nil {
		return 0, 0, fmt.Errorf("sync daemon: multicast interface %q: %w", c.Ifname, err)
	}
	return ifi.Index, ifi.MTU, nil
}

// Sender is a master's sending socket: UDP to the group on Port+id, out of the interface,
// with the group's TTL, multicast loop off and fragmentation allowed (IP_PMTUDISC_DONT), as
// make_send_sock sets it up. IPv4 senders bind the interface's first address so the
// messages' source is the director's own.
type Sender struct {
	fd int
}

// OpenSender opens sending socket id (0 for the first; the kernel's sync_ports gives more).
func OpenSender(cfg Config, id int) (*Sender, error) {
	cfg, idx, fd, err := open(cfg)
	if err != nil {
		return nil, err
	}
	v6 := cfg.Group.Is6()
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if v6 {
		err = errors.Join(
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, idx),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, cfg.TTL),
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT),
		)
	} else {
		err = errors.Join(
			unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(idx)}),
			unix.SetsockoptByte(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
			unix.SetsockoptByte(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, byte(cfg.TTL)),
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT),
		)
	}
	if err != nil {
		return nil, fmt.Errorf("sync daemon: set up sending socket on %s: %w", cfg.Ifname, err)
	}
	if !v6 {
		src, err := ifaceAddr4(cfg.Ifname)
		if err != nil {
			return nil, err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
			return nil, fmt.Errorf("sync daemon: bind sending socket to %v on %s: %w", netip.AddrFrom4(src), cfg.Ifname, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(cfg.Group, cfg.Port+id, idx)); err != nil {
		return nil, fmt.Errorf("sync daemon: connect to %v port %d: %w", cfg.Group, cfg.Port+id, err)
	}
	ok = true
	return &Sender{fd: fd}, nil
}

// ifaceAddr4 is inet_select_addr: the interface's first IPv4 address.
func ifaceAddr4(name string) ([4]byte, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return [4]byte{}, fmt.Errorf("sync daemon: multicast interface %q: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return [4]byte{}, fmt.Errorf("sync daemon: addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if v4 := p.IP.To4(); v4 != nil {
				return [4]byte(v4), nil
			}
		}
	}
	return [4]byte{}, fmt.Errorf("sync daemon: interface %s has no IPv4 address to send IPv4 sync messages from: add one or use an IPv6 group", name)
}

// ErrWouldBlock is returned by Send when the socket's buffer is full; the kernel's master
// thread waits for room then, and so should the caller (Sender.Wait).
var ErrWouldBlock = errors.New("sync socket buffer full")

// Send sends one message without blocking.
func (s *Sender) Send(msg []byte) error {
	for {
		err := unix.Send(s.fd, msg, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return ErrWouldBlock
		}
		return fmt.Errorf("sync daemon: send: %w", err)
	}
}

// Wait blocks until the socket can take a message or timeout passes.
func (s *Sender) Wait(timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
	_, err := unix.Poll(fds, int(timeout/time.Millisecond))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("sync daemon: poll: %w", err)
	}
	return nil
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// RecvBuffer is the receive buffer a backup's socket asks for, in bytes.
const RecvBuffer = 8 << 20

// Receiver is a backup's receiving socket: bound to the group and Port+id on the interface
// (SO_BINDTODEVICE), address reuse on, member of the group there, as make_receive_sock.
type Receiver struct {
	f  *os.File
	pc net.PacketConn
}

// OpenReceiver opens receiving socket id.
func OpenReceiver(cfg Config, id int) (*Receiver, error) {
	cfg, idx, fd, err := open(cfg)
	if err != nil {
		return nil, err
	}
	v6 := cfg.Group.Is6()
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	err = errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
		unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, cfg.Ifname),
	)
	if err != nil {
		return nil, fmt.Errorf("sync daemon: set up receiving socket on %s: %w", cfg.Ifname, err)
	}
	// A master sends a burst of messages as fast as connections come (100 000 new
	// connections at 400 000 a second arrive as some 2 500 messages in a quarter of a
	// second); the system's default receive buffer (212 992 bytes here, ~140 messages)
	// lost 5 % of them in TestSyncLoad. The kernel's backup uses sync_sock_size, default
	// the system's; xlvs asks for RecvBuffer (SO_RCVBUFFORCE, as root may, else
	// SO_RCVBUF within rmem_max).
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, RecvBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, RecvBuffer)
	}
	if err := unix.Bind(fd, sockaddr(cfg.Group, cfg.Port+id, 0)); err != nil {
		return nil, fmt.Errorf("sync daemon: bind to %v port %d: %w", cfg.Group, cfg.Port+id, err)
	}
	if v6 {
		mr := &unix.IPv6Mreq{Multiaddr: cfg.Group.As16(), Interface: uint32(idx)}
		err = unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mr)
	} else {
		mr := &unix.IPMreqn{Multiaddr: cfg.Group.As4(), Ifindex: int32(idx)}
		err = unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mr)
	}
	if err != nil {
		return nil, fmt.Errorf("sync daemon: join %v on %s: %w", cfg.Group, cfg.Ifname, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("sync daemon: receiving socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ipvs-sync-recv")
	pc, err := net.FilePacketConn(f)
	if err != nil {
		f.Close()
		ok = true // f owns fd now
		return nil, fmt.Errorf("sync daemon: receiving socket: %w", err)
	}
	ok = true
	return &Receiver{f: f, pc: pc}, nil
}

// Recv reads one datagram into buf, waiting at most until deadline (zero: no limit). It
// returns the number of bytes and the sender's address. A datagram longer than buf is
// truncated (the caller sizes buf by MaxLen, as the kernel's backup thread does).
func (r *Receiver) Recv(buf []byte, deadline time.Time) (int, netip.Addr, error) {
	if err := r.pc.SetReadDeadline(deadline); err != nil {
		return 0, netip.Addr{}, err
	}
	n, from, err := r.pc.ReadFrom(buf)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	var a netip.Addr
	if u, ok := from.(*net.UDPAddr); ok {
		a = u.AddrPort().Addr().Unmap()
	}
	return n, a, nil
}

// Close closes the socket (and unblocks a Recv).
func (r *Receiver) Close() error {
	err := r.pc.Close()
	r.f.Close()
	return err
}

// open checks cfg (with its defaults filled in), finds the interface's index and creates a
// UDP socket of the group's family.
func open(cfg Config) (Config, int, int, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Check(); err != nil {
		return cfg, 0, -1, err
	}
	idx, _, err := cfg.Interface()
	if err != nil {
		return cfg, 0, -1, err
	}
	fd, err := socket(cfg.Group.Is6())
	return cfg, idx, fd, err
}

func socket(v6 bool) (int, error) {
	dom := unix.AF_INET
	if v6 {
		dom = unix.AF_INET6
	}
	fd, err := unix.Socket(dom, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("sync daemon: socket: %w", err)
	}
	return fd, nil
}

func sockaddr(a netip.Addr, port, zone int) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: port}
	}
	return &unix.SockaddrInet6{Addr: a.As16(), Port: port, ZoneId: uint32(zone)}
}
