package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xlvs/bench/traffic"
)

// The sync link's groups and port: the kernel's IP_VS_SYNC_GROUP and IP_VS_SYNC_PORT, and
// the IPv6 group the project's sync daemon uses.
var (
	syncGroup4 = netip.MustParseAddr("224.0.0.81")
	syncGroup6 = netip.MustParseAddr("ff02::1:81")
)

const syncPort = 8848

// backupModel is what a bed with Options.Backup must look like, written from the layout
// rules in the package documentation.
type backupModel struct {
	dirAddrs, bakAddrs []netip.Prefix // own addresses of the director's and backup's eth0
	floating           []netip.Prefix
	bakMAC             string
}

func modelBackup(l Layout, v6 bool) backupModel {
	p := netip.MustParsePrefix
	var m backupModel
	switch l {
	case NATOneArm:
		m.bakMAC = "02:00:5e:01:00:03"
		m.dirAddrs = []netip.Prefix{p("198.18.1.4/24"), p("198.18.2.4/24")}
		m.bakAddrs = []netip.Prefix{p("198.18.1.3/24"), p("198.18.2.3/24")}
		m.floating = []netip.Prefix{p("198.18.1.1/32"), p("198.18.2.1/32"), p("198.18.1.100/32")}
		if v6 {
			m.dirAddrs = append(m.dirAddrs, p("fd00:1::4/64"), p("fd00:2::4/64"))
			m.bakAddrs = append(m.bakAddrs, p("fd00:1::3/64"), p("fd00:2::3/64"))
			m.floating = append(m.floating, p("fd00:1::1/128"), p("fd00:2::1/128"), p("fd00:1::100/128"))
		}
	case L2:
		m.bakMAC = "02:00:5e:00:00:03"
		m.dirAddrs = []netip.Prefix{p("198.18.0.1/24")}
		m.bakAddrs = []netip.Prefix{p("198.18.0.3/24")}
		m.floating = []netip.Prefix{p("198.18.0.100/32")}
		if v6 {
			m.dirAddrs = append(m.dirAddrs, p("fd00::1/64"))
			m.bakAddrs = append(m.bakAddrs, p("fd00::3/64"))
			m.floating = append(m.floating, p("fd00::100/128"))
		}
	}
	return m
}

// ifaceAddrs lists the global addresses of h's interface, IPv4 first, in the kernel's order.
func ifaceAddrs(t *testing.T, h *Host) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	err := h.NS.withNetlink(func(nh *netlink.Handle) error {
		l, err := nh.LinkByName(h.Iface)
		if err != nil {
			return err
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			addrs, err := nh.AddrList(l, fam)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				ip, _ := netip.AddrFromSlice(a.IP)
				if ip.IsLinkLocalUnicast() {
					continue
				}
				ones, _ := a.Mask.Size()
				out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func samePrefixes(a, b []netip.Prefix) bool {
	cmp := func(x, y netip.Prefix) int { return strings.Compare(x.String(), y.String()) }
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// checkOwner checks which director holds the floating addresses (and the other none).
func checkOwner(t *testing.T, b *Bed, m backupModel, owner *Host) {
	t.Helper()
	if got := b.Active(); got != owner {
		t.Errorf("Active() = %s, want %s", got.Name, owner.Name)
	}
	dir, bak := m.dirAddrs, m.bakAddrs
	if owner == b.BackupHost {
		bak = append(slices.Clone(bak), m.floating...)
	} else {
		dir = append(slices.Clone(dir), m.floating...)
	}
	if got := ifaceAddrs(t, b.Ext); !samePrefixes(got, dir) {
		t.Errorf("director eth0 holds %v, want %v", got, dir)
	}
	if got := ifaceAddrs(t, b.BackupHost); !samePrefixes(got, bak) {
		t.Errorf("backup eth0 holds %v, want %v", got, bak)
	}
	// Each director's first IPv4 address is its own one: the sync daemon's IPv4 source.
	for _, h := range []*Host{b.Ext, b.BackupHost} {
		if got := ifaceAddrs(t, h); len(got) == 0 || got[0].Addr() != h.Addr {
			t.Errorf("%s: first address %v, want its own %v", h.Name, got, h.Addr)
		}
	}
}

// whoAnswers asks addr:80 over HTTP from ns and returns the name of the server that
// answered (all answers must come from one server).
func whoAnswers(ctx context.Context, t *testing.T, ns *NS, addr netip.Addr) string {
	t.Helper()
	res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{
		URL: url(addr, 80), Requests: 3, Concurrency: 1, Dial: ns.DialContext, Timeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatalf("HTTP to %v from %s: %v", addr, ns.Name(), err)
	}
	if res.OK != 3 || len(res.ByServer) != 1 {
		t.Fatalf("HTTP to %v from %s: %v, want 3 answers from one server", addr, ns.Name(), res)
	}
	for name := range res.ByServer {
		return name
	}
	return ""
}

// neighMAC is the MAC h resolves a to ("" if it has no resolved entry).
func neighMAC(t *testing.T, h *Host, a netip.Addr) string {
	t.Helper()
	mac := ""
	err := h.NS.withNetlink(func(nh *netlink.Handle) error {
		fam := netlink.FAMILY_V4
		if a.Is6() {
			fam = netlink.FAMILY_V6
		}
		neighs, err := nh.NeighList(h.Ifindex, fam)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if ip, _ := netip.AddrFromSlice(n.IP); ip.Unmap() == a && len(n.HardwareAddr) > 0 && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
				mac = n.HardwareAddr.String()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// checkServedBy checks that the floating addresses are answered by owner's namespace, from
// the client (VIP, and in NATOneArm its gateway) and from every real server (its gateway,
// NATOneArm), and that those hosts resolve them to owner's MAC.
func checkServedBy(ctx context.Context, t *testing.T, b *Bed, v6 bool, owner *Host) {
	t.Helper()
	type ask struct {
		from *Host
		addr netip.Addr
	}
	asks := []ask{{b.Client, b.VIPFor(v6)}}
	if b.Layout == NATOneArm {
		asks = append(asks, ask{b.Client, b.ClientGateway(v6)})
		for _, r := range b.Reals {
			asks = append(asks, ask{r, b.RealGateway(v6)})
		}
	}
	for _, a := range asks {
		if got := whoAnswers(ctx, t, a.from.NS, a.addr); got != owner.Name {
			t.Errorf("%s asked %v: answered by %s, want %s", a.from.Name, a.addr, got, owner.Name)
		}
		if got := neighMAC(t, a.from, a.addr); got != owner.MAC.String() {
			t.Errorf("%s resolves %v to %q, want %s's %v", a.from.Name, a.addr, got, owner.Name, owner.MAC)
		}
	}
}

// checkOwnRoutes checks that the director and the backup still reach the client and the
// real servers by their connected routes, from their own addresses.
func checkOwnRoutes(t *testing.T, b *Bed, v6 bool) {
	t.Helper()
	for _, d := range []*Host{b.Ext, b.BackupHost} {
		own := map[netip.Addr]bool{}
		for _, p := range ifaceAddrs(t, d) {
			if !slices.Contains(b.floating, p) {
				own[p.Addr()] = true
			}
		}
		for _, h := range append([]*Host{b.Client}, b.Reals...) {
			dst := h.AddrFor(v6)
			err := d.NS.withNetlink(func(nh *netlink.Handle) error {
				rs, err := nh.RouteGet(net.IP(dst.AsSlice()))
				if err != nil {
					return err
				}
				src, _ := netip.AddrFromSlice(rs[0].Src)
				if rs[0].LinkIndex != d.Ifindex || rs[0].Gw != nil || !own[src.Unmap()] {
					return fmt.Errorf("route to %v: ifindex %d gw %v src %v, want directly on %s from an own address %v", dst, rs[0].LinkIndex, rs[0].Gw, src, d.Iface, own)
				}
				return nil
			})
			if err != nil {
				t.Errorf("%s: %v", d.Name, err)
			}
		}
	}
}

func TestBedBackup(t *testing.T) {
	requireRoot(t)
	for _, layout := range []Layout{NATOneArm, L2} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v v6=%v", layout, v6), func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				prefix := fmt.Sprintf("bk%d-%v", layout, v6)
				o := Options{Layout: layout, Reals: 2, Prefix: prefix, IPv6: v6, Backup: true}
				b, err := New(o)
				if err != nil {
					t.Fatal(err)
				}
				closed := false
				t.Cleanup(func() {
					if !closed {
						b.Close()
					}
				})
				m := modelBackup(layout, v6)

				// The backup: its own host, the director's settings, no floating address.
				bh := b.BackupHost
				if bh == nil || b.Backup == nil || bh.NS != b.Backup || bh.Name != "backup" || bh.Iface != "eth0" || bh.MAC.String() != m.bakMAC {
					t.Fatalf("backup host %+v, want backup eth0 %s in the Backup namespace", bh, m.bakMAC)
				}
				if bh.Addr != m.bakAddrs[0].Addr() || v6 != bh.Addr6.IsValid() {
					t.Errorf("backup addresses %v %v", bh.Addr, bh.Addr6)
				}
				if b.Ext.Addr != m.dirAddrs[0].Addr() {
					t.Errorf("director address %v, want %v", b.Ext.Addr, m.dirAddrs[0].Addr())
				}
				if !slices.Equal(b.Floating(), m.floating) {
					t.Errorf("Floating() = %v, want %v", b.Floating(), m.floating)
				}
				if !slices.Contains(b.Namespaces(), b.Backup) {
					t.Error("Namespaces() lacks the backup")
				}
				for _, s := range directorSysctls {
					dv, derr := b.Director.Sysctl(s.key)
					bv, berr := b.Backup.Sysctl(s.key)
					if derr != nil || berr != nil || dv != s.value || bv != s.value {
						t.Errorf("%s: director %q (%v), backup %q (%v), want %q", s.key, dv, derr, bv, berr, s.value)
					}
				}
				if v, err := b.Backup.Sysctl("net.ipv6.conf.eth0.accept_dad"); err != nil || v != "0" {
					t.Errorf("backup eth0 accept_dad %q (%v), want 0", v, err)
				}
				if idx, err := b.Backup.Ifindex("eth0"); err != nil || idx != bh.Ifindex {
					t.Errorf("backup ifindex %d (%v), recorded %d", idx, err, bh.Ifindex)
				}
				checkOwner(t, b, m, b.Ext)

				// Who answers: a server on every address in each director namespace.
				for _, d := range []*Host{b.Ext, bh} {
					ln, err := d.NS.Listen("tcp", ":80")
					if err != nil {
						t.Fatal(err)
					}
					srv := traffic.ServeHTTP(ln, d.Name)
					t.Cleanup(func() { _ = srv.Close() })
				}
				if layout == NATOneArm {
					for _, r := range b.Reals {
						serve(t, r.NS, r.AddrFor(v6), r.Name)
					}
				}
				checkServedBy(ctx, t, b, v6, b.Ext)

				start := time.Now()
				if err := b.Failover(); err != nil {
					t.Fatal(err)
				}
				t.Logf("Failover took %v", time.Since(start))
				checkOwner(t, b, m, bh)
				checkOwnRoutes(t, b, v6)
				checkServedBy(ctx, t, b, v6, bh)
				if err := b.Failover(); err != nil {
					t.Fatalf("second Failover: %v, want nil (nothing to do)", err)
				}
				checkOwner(t, b, m, bh)

				if layout == NATOneArm {
					// Routed through the backup: the client reaches each real server, whose
					// replies take their default route via the moved gateway. The director
					// forwards none of it.
					if err := b.SetForwarding(true); err != nil {
						t.Fatal(err)
					}
					key := "Ip.ForwDatagrams"
					if v6 {
						key = "Ip6.OutForwDatagrams"
					}
					d0, err := b.Director.Counters()
					if err != nil {
						t.Fatal(err)
					}
					k0, err := b.Backup.Counters()
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range b.Reals {
						httpTo(ctx, t, b, url(r.AddrFor(v6), 80), r.Name)
					}
					d1, err := b.Director.Counters()
					if err != nil {
						t.Fatal(err)
					}
					k1, err := b.Backup.Counters()
					if err != nil {
						t.Fatal(err)
					}
					if d1[key] != d0[key] || k1[key]-k0[key] < 40 {
						t.Errorf("%s: director %d, backup %d during the test, want 0 and the traffic", key, d1[key]-d0[key], k1[key]-k0[key])
					}
					if err := b.SetForwarding(false); err != nil {
						t.Fatal(err)
					}
				}

				if err := b.Failback(); err != nil {
					t.Fatal(err)
				}
				checkOwner(t, b, m, b.Ext)
				checkServedBy(ctx, t, b, v6, b.Ext)
				checkOwnRoutes(t, b, v6)

				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				closed = true
				if left := leftovers(t, prefix); len(left) != 0 {
					t.Errorf("namespaces left after Close: %v", left)
				}
				if err := b.Failover(); !errors.Is(err, ErrClosed) {
					t.Errorf("Failover after Close: %v, want ErrClosed", err)
				}
			})
		}
	}
}

// openSyncReceiver opens a UDP socket in h's namespace bound to group:syncPort on h's
// interface and joined to the group there, as a backup's sync daemon does.
func openSyncReceiver(t *testing.T, h *Host, group netip.Addr) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := h.NS.Do(func() error {
		dom := unix.AF_INET
		if group.Is6() {
			dom = unix.AF_INET6
		}
		fd, err := unix.Socket(dom, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "sync-recv")
		defer f.Close()
		var (
			sa   unix.Sockaddr
			join func() error
		)
		if group.Is6() {
			sa = &unix.SockaddrInet6{Addr: group.As16(), Port: syncPort}
			join = func() error {
				return unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(h.Ifindex)})
			}
		} else {
			sa = &unix.SockaddrInet4{Addr: group.As4(), Port: syncPort}
			join = func() error {
				return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(h.Ifindex)})
			}
		}
		err = errors.Join(
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
			unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, h.Iface),
			unix.Bind(fd, sa),
			join(),
		)
		if err != nil {
			return err
		}
		pc, err = net.FilePacketConn(f)
		return err
	})
	if err != nil {
		t.Fatalf("sync receiver for %v on %s: %v", group, h.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// sendSync sends msg to group:syncPort out of h's interface, TTL (hops) 1 and loop off,
// from h's own IPv4 address for IPv4, as a master's sync daemon does.
func sendSync(h *Host, group netip.Addr, msg []byte) error {
	return h.NS.Do(func() error {
		dom := unix.AF_INET
		if group.Is6() {
			dom = unix.AF_INET6
		}
		fd, err := unix.Socket(dom, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var to unix.Sockaddr
		if group.Is6() {
			err = errors.Join(
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, h.Ifindex),
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0),
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 1),
			)
			to = &unix.SockaddrInet6{Addr: group.As16(), Port: syncPort, ZoneId: uint32(h.Ifindex)}
		} else {
			err = errors.Join(
				unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(h.Ifindex)}),
				unix.SetsockoptByte(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0),
				unix.SetsockoptByte(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1),
				unix.Bind(fd, &unix.SockaddrInet4{Addr: h.Addr.As4()}),
			)
			to = &unix.SockaddrInet4{Addr: group.As4(), Port: syncPort}
		}
		if err != nil {
			return err
		}
		return unix.Sendto(fd, msg, 0, to)
	})
}

// checkSyncLink sends a datagram from one director to the other's joined receiver, for
// each group and both ways, and checks it arrives intact from the sender.
func checkSyncLink(t *testing.T, b *Bed) {
	t.Helper()
	for _, group := range []netip.Addr{syncGroup4, syncGroup6} {
		for _, dir := range [][2]*Host{{b.Ext, b.BackupHost}, {b.BackupHost, b.Ext}} {
			from, to := dir[0], dir[1]
			pc := openSyncReceiver(t, to, group)
			msg := fmt.Appendf(nil, "sync %v from %s to %s at %v", group, from.Name, to.Name, time.Now().UnixNano())
			if err := sendSync(from, group, msg); err != nil {
				t.Fatalf("send to %v from %s: %v", group, from.Name, err)
			}
			buf := make([]byte, 1500)
			if err := pc.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%v from %s to %s: %v", group, from.Name, to.Name, err)
			}
			if string(buf[:n]) != string(msg) {
				t.Fatalf("%v from %s to %s: got %q, want %q", group, from.Name, to.Name, buf[:n], msg)
			}
			sa := src.(*net.UDPAddr).AddrPort().Addr().Unmap()
			if group.Is4() && sa != from.Addr || group.Is6() && !sa.IsLinkLocalUnicast() {
				t.Errorf("%v from %s to %s: source %v, want %s's own address (IPv4) or link-local one (IPv6)", group, from.Name, to.Name, sa, from.Name)
			}
			pc.Close()
		}
	}
}

func TestBedBackupSyncLink(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		layout Layout
		v6     bool
	}{{NATOneArm, true}, {L2, false}} {
		t.Run(fmt.Sprintf("%v v6=%v", tc.layout, tc.v6), func(t *testing.T) {
			t.Parallel()
			b := newTestBed(t, Options{Layout: tc.layout, Reals: 1, Prefix: "bksync", IPv6: tc.v6, Backup: true})
			// Multicast reaches every port because the bridge does no snooping: no IGMP or
			// MLD querier is needed for the groups to flow.
			err := b.Switch.withNetlink(func(nh *netlink.Handle) error {
				l, err := nh.LinkByName("br0")
				if err != nil {
					return err
				}
				br, ok := l.(*netlink.Bridge)
				if !ok || br.MulticastSnooping == nil || *br.MulticastSnooping {
					return fmt.Errorf("br0 multicast snooping %v, want off", br.MulticastSnooping)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			checkSyncLink(t, b)
			// The link does not depend on who holds the floating addresses.
			if err := b.Failover(); err != nil {
				t.Fatal(err)
			}
			checkSyncLink(t, b)
		})
	}
}

func TestBedBackupOptions(t *testing.T) {
	_, err := New(Options{Layout: NATTwoArm, Backup: true})
	if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), "NATOneArm or L2") {
		t.Errorf("New(NATTwoArm, Backup): %v, want ErrBadOptions naming the layouts that work", err)
	}
	var b Bed
	if err := b.Failover(); !errors.Is(err, ErrNoBackup) {
		t.Errorf("Failover without a backup: %v, want ErrNoBackup", err)
	}
	if err := b.Failback(); !errors.Is(err, ErrNoBackup) {
		t.Errorf("Failback without a backup: %v, want ErrNoBackup", err)
	}
	if b.Floating() != nil || b.Active() != nil {
		t.Errorf("a bed without a backup: Floating %v, Active %v", b.Floating(), b.Active())
	}
}

// A neighbour that will not learn (a permanent entry) fails Failover with a clear error;
// the bed then recovers with Failback, which does its whole work although Active still
// reports the director.
func TestBedBackupFailoverStuckNeighbour(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	b := newTestBed(t, Options{Layout: L2, Reals: 1, Prefix: "bkstuck", Backup: true})
	m := modelBackup(L2, false)
	ln, err := b.Director.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := traffic.ServeHTTP(ln, "director")
	t.Cleanup(func() { _ = srv.Close() })

	if err := staticNeigh(b.Client, b.VIP, b.Ext.MAC); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = b.Failover()
	if err == nil || !strings.Contains(err.Error(), "client") || !strings.Contains(err.Error(), "PERMANENT") {
		t.Fatalf("Failover with a permanent neighbour entry: %v, want an error naming the client's PERMANENT entry", err)
	}
	t.Logf("Failover failed after %v: %v", time.Since(start), err)
	if b.Active() != b.Ext {
		t.Fatalf("Active() = %s after a failed Failover, want the director", b.Active().Name)
	}
	err = b.Client.NS.withNetlink(func(nh *netlink.Handle) error {
		return nh.NeighDel(&netlink.Neigh{LinkIndex: b.Client.Ifindex, Family: netlink.FAMILY_V4, IP: net.IP(b.VIP.AsSlice())})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Failback(); err != nil {
		t.Fatal(err)
	}
	checkOwner(t, b, m, b.Ext)
	if got := whoAnswers(ctx, t, b.Client.NS, b.VIP); got != "director" {
		t.Fatalf("VIP answered by %s after Failback, want the director", got)
	}
	// And a clean Failover works now.
	if err := b.Failover(); err != nil {
		t.Fatal(err)
	}
	checkOwner(t, b, m, b.BackupHost)
}
