package testbed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoBackup is returned (wrapped) by Failover and Failback on a bed built without
// Options.Backup.
var ErrNoBackup = errors.New("testbed has no backup director")

const (
	// announceTimeout bounds how long Failover announces the moved addresses before it
	// gives up on a neighbour that keeps the old MAC.
	announceTimeout = 3 * time.Second
	// announceEvery is how often the announcements are repeated while a neighbour has not
	// taken them yet (keepalived repeats its gratuitous ARPs too).
	announceEvery = 50 * time.Millisecond
)

// planBackup fills in the backup's host and the floating addresses (New with Backup).
func (bl *builder) planBackup() {
	b, o := bl.bed, bl.opts
	b.BackupHost = &Host{Name: "backup", NS: b.Backup, Iface: "eth0", MAC: hostMAC(bl.cliNet, hostBak), Addr: addr4(bl.cliNet, hostBak)}
	if o.IPv6 {
		b.BackupHost.Addr6 = addr6(bl.cliNet, hostBak)
	}
	var v4, v6 []netip.Prefix
	if o.Layout == NATOneArm {
		v4 = append(v4, netip.PrefixFrom(b.clientGW[0], 32), netip.PrefixFrom(b.realGW[0], 32))
		if o.IPv6 {
			v6 = append(v6, netip.PrefixFrom(b.clientGW[1], 128), netip.PrefixFrom(b.realGW[1], 128))
		}
	}
	v4 = append(v4, netip.PrefixFrom(b.VIP, 32))
	if o.IPv6 {
		v6 = append(v6, netip.PrefixFrom(b.VIP6, 128))
	}
	b.floating = append(v4, v6...)
}

// addressBackup adds the addresses of the two directors of a bed with Options.Backup: each
// director's own addresses first (so they are the primary ones and their connected routes
// stay when the floating addresses move), then the floating ones on the director (none
// with Options.FloatingUnassigned).
func (bl *builder) addressBackup() error {
	b := bl.bed
	own := func(h *Host, host int) []netip.Prefix {
		p := []netip.Prefix{netip.PrefixFrom(h.Addr, 24)}
		if bl.opts.Layout == NATOneArm {
			p = append(p, netip.PrefixFrom(addr4(bl.realNet, host), 24))
		}
		if h.Addr6.IsValid() {
			p = append(p, netip.PrefixFrom(h.Addr6, 64))
			if bl.opts.Layout == NATOneArm {
				p = append(p, netip.PrefixFrom(addr6(bl.realNet, host), 64))
			}
		}
		return p
	}
	dirOwn := hostDir
	if bl.opts.Layout == NATOneArm {
		dirOwn = hostDirBk
	}
	if err := bl.addrs(b.Director, b.Ext.Iface, own(b.Ext, dirOwn)...); err != nil {
		return err
	}
	if !bl.opts.FloatingUnassigned {
		if err := changeAddrs(b.Ext, b.floating, true); err != nil {
			return err
		}
		for _, p := range b.floating {
			bl.ready = append(bl.ready, readyAddr{ns: b.Director, iface: b.Ext.Iface, addr: p.Addr()})
		}
	}
	if err := bl.addrs(b.Backup, b.BackupHost.Iface, own(b.BackupHost, hostBak)...); err != nil {
		return err
	}
	// The sync link's IPv6 messages leave from the link-local addresses.
	for _, h := range []*Host{b.Ext, b.BackupHost} {
		bl.ready = append(bl.ready, readyAddr{ns: h.NS, iface: h.Iface, linkLocal: true})
	}
	return nil
}

// Active is the director interface that holds the floating addresses (the VIPs and, in
// NATOneArm with a backup, the hosts' gateways): Ext after New, BackupHost after Failover,
// Ext again after Failback.
func (b *Bed) Active() *Host {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.onBackup {
		return b.BackupHost
	}
	return b.Ext
}

// Floating lists the addresses Failover moves, as they sit on the active director's eth0:
// in NATOneArm the client's and the real servers' gateways (.1 /32, ::1 /128), then the
// VIPs (/32, /128); in L2 the VIPs. It is empty unless Options.Backup.
func (b *Bed) Floating() []netip.Prefix { return slices.Clone(b.floating) }

// Failover does by hand what keepalived's VRRP does when the backup takes over: it deletes
// the floating addresses (Floating) from the director's eth0, adds them to the backup's
// eth0 (IPv6 without DAD) and waits until they are usable there, then announces them from
// the backup as a new VRRP master does: a gratuitous ARP request (sender and target IP the
// address, broadcast) for each IPv4 one, an unsolicited neighbour advertisement (to
// ff02::1, override flag set, router flag as the backup's forwarding) for each IPv6 one.
// It repeats them every 50 ms until no neighbour (client, real servers, the old director)
// still has one of the addresses resolved to the director's MAC, and fails if one does
// after 3 s, or at once if that entry is permanent (no announcement changes one). Only MACs and addresses of this bed are
// involved; the bridge needs no change, since no MAC moves.
//
// The neighbours learn by their kernels' own rules: an existing ARP entry takes the MAC of
// a gratuitous ARP at once, even within its locktime, and becomes STALE (arp_process and
// arp_is_garp); an existing IPv6 entry takes the MAC of an advertisement with the override
// flag (ndisc_recv_na). Neither creates an entry: a host that had none resolves afresh and
// only the new owner answers. (Read in Kingxukai/linux, net/ipv4/arp.c and
// net/ipv6/ndisc.c, commit 9b44fff655e2c6f4cc53cb499dd2c038e99cb013.)
//
// The directors' own addresses stay where they are, and so do their connected routes. A
// second Failover while the backup is active does nothing and returns nil. After a
// Failover that failed half way (Active still reports the director) either Failover or
// Failback may be called again and does its whole work (every step tolerates having been
// done). Failover on a bed without Options.Backup returns an error wrapping ErrNoBackup.
func (b *Bed) Failover() error { return b.moveFloating(true) }

// Failback is Failover the other way: the floating addresses go back to the director's
// eth0 and are announced from there. It does nothing while the director is active.
func (b *Bed) Failback() error { return b.moveFloating(false) }

func (b *Bed) moveFloating(toBackup bool) error {
	what := "fail over to the backup director"
	if !toBackup {
		what = "fail back to the director"
	}
	if b.Backup == nil || b.BackupHost == nil {
		return fmt.Errorf("%s: %w: build the bed with Options.Backup (NATOneArm or L2)", what, ErrNoBackup)
	}
	b.failMu.Lock()
	defer b.failMu.Unlock()
	from, to := b.Ext, b.BackupHost
	if !toBackup {
		from, to = to, from
	}
	if b.Active() == to && !b.moveFailed {
		return nil
	}
	err := b.move(from, to)
	if err != nil {
		// The addresses may be on neither director now: the next Failover or Failback
		// does its whole work, even towards the director still marked active.
		b.moveFailed = true
		return fmt.Errorf("%s: %w", what, err)
	}
	b.moveFailed = false
	b.mu.Lock()
	b.onBackup = toBackup
	b.mu.Unlock()
	return nil
}

func (b *Bed) move(from, to *Host) error {
	if err := changeAddrs(from, b.floating, false); err != nil {
		return err
	}
	if err := changeAddrs(to, b.floating, true); err != nil {
		return err
	}
	var ready []readyAddr
	for _, p := range b.floating {
		ready = append(ready, readyAddr{ns: to.NS, iface: to.Iface, addr: p.Addr()})
	}
	if err := waitAddrs(ready); err != nil {
		return err
	}
	return b.announce(to, from)
}

// changeAddrs adds (or deletes) floating prefixes on h's interface; an address already
// there (or already gone) is no error. IPv6 ones are added without DAD and deprecated
// (preferred lifetime 0, valid forever): the kernel's source address selection passes
// over deprecated addresses (RFC 6724 rule 3), which a /128 would otherwise win by its
// longer match (rule 8, capped at the prefix length), so the director's own traffic keeps
// its own address as source. A deprecated address still receives and answers neighbour
// solicitations as any other.
func changeAddrs(h *Host, prefixes []netip.Prefix, add bool) error {
	return h.NS.withNetlink(func(nh *netlink.Handle) error {
		l, err := nh.LinkByName(h.Iface)
		if err != nil {
			return fmt.Errorf("find link %s in %s: %w", h.Iface, h.NS.Name(), err)
		}
		for _, p := range prefixes {
			a := &netlink.Addr{IPNet: &net.IPNet{
				IP:   net.IP(p.Addr().AsSlice()),
				Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
			}}
			if add {
				if p.Addr().Is6() {
					a.Flags = unix.IFA_F_NODAD
					a.PreferedLft, a.ValidLft = 0, math.MaxUint32
				}
				if err := nh.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("add address %v to %s in %s: %w", p, h.Iface, h.NS.Name(), err)
				}
			} else if err := nh.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("delete address %v from %s in %s: %w", p, h.Iface, h.NS.Name(), err)
			}
		}
		return nil
	})
}

// announce sends the gratuitous ARPs and unsolicited NAs for the floating addresses from
// to, repeatedly, until no other host of the segment resolves one of them to another MAC.
func (b *Bed) announce(to, from *Host) error {
	others := append([]*Host{b.Client, from}, b.Reals...)
	deadline := time.Now().Add(announceTimeout)
	for {
		if err := sendAnnouncements(to, b.floating); err != nil {
			return err
		}
		resend := time.Now().Add(announceEvery)
		for {
			pending, permanent, err := oldNeighbour(others, b.floating, to.MAC)
			if err != nil {
				return err
			}
			if pending == "" {
				return nil
			}
			if permanent {
				return fmt.Errorf("announce %v from %s: %s, which no announcement changes: delete it (ip neigh del) or do not make it", b.floating, to.Name, pending)
			}
			now := time.Now()
			if now.After(deadline) {
				return fmt.Errorf("announce %v from %s: %s after %v of gratuitous ARPs and unsolicited neighbour advertisements", b.floating, to.Name, pending, announceTimeout)
			}
			if now.After(resend) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// oldNeighbour describes the first host that still resolves one of addrs to a MAC other
// than mac, and whether its entry is permanent; or it returns "".
func oldNeighbour(hosts []*Host, addrs []netip.Prefix, mac net.HardwareAddr) (pending string, permanent bool, err error) {
	const resolved = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	for _, h := range hosts {
		err := h.NS.withNetlink(func(nh *netlink.Handle) error {
			for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
				neighs, err := nh.NeighList(h.Ifindex, fam)
				if err != nil {
					return fmt.Errorf("list neighbours of %s in %s: %w", h.Iface, h.NS.Name(), err)
				}
				for _, n := range neighs {
					a, _ := netip.AddrFromSlice(n.IP)
					a = a.Unmap()
					if n.State&resolved == 0 || len(n.HardwareAddr) == 0 || n.HardwareAddr.String() == mac.String() {
						continue
					}
					if slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == a }) {
						pending = fmt.Sprintf("%s (%s) still resolves %v to %v (state %s)", h.Name, h.NS.Name(), a, n.HardwareAddr, neighState(n.State))
						permanent = n.State&netlink.NUD_PERMANENT != 0
						return nil
					}
				}
			}
			return nil
		})
		if err != nil {
			return "", false, err
		}
		if pending != "" {
			return pending, permanent, nil
		}
	}
	return "", false, nil
}

func neighState(s int) string {
	var names []string
	for _, st := range []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"},
	} {
		if s&st.bit != 0 {
			names = append(names, st.name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("%#x", s)
	}
	return strings.Join(names, "|")
}

// sendAnnouncements sends, from inside h's namespace, one gratuitous ARP for each IPv4
// address and one unsolicited neighbour advertisement for each IPv6 address of addrs.
func sendAnnouncements(h *Host, addrs []netip.Prefix) error {
	return h.NS.Do(func() error {
		for _, p := range addrs {
			var err error
			if p.Addr().Is4() {
				err = sendGratuitousARP(h, p.Addr())
			} else {
				err = sendUnsolicitedNA(h, p.Addr())
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendGratuitousARP broadcasts an ARP request for ip from ip on h's interface, as the
// kernel's own announcements (arp_notify) and keepalived do: sender and target protocol
// address ip, sender hardware address h.MAC, target hardware address zero.
func sendGratuitousARP(h *Host, ip netip.Addr) error {
	// Protocol 0: the socket only sends; it receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %v in %s: packet socket: %w", ip, h.NS.Name(), err)
	}
	defer unix.Close(fd)
	var p [28]byte
	binary.BigEndian.PutUint16(p[0:], 1)             // hardware type: Ethernet
	binary.BigEndian.PutUint16(p[2:], unix.ETH_P_IP) // protocol type: IPv4
	p[4], p[5] = 6, 4                                // address lengths
	binary.BigEndian.PutUint16(p[6:], 1)             // operation: request
	copy(p[8:14], h.MAC)
	a := ip.As4()
	copy(p[14:18], a[:])
	copy(p[24:28], a[:])
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: h.Ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := unix.Sendto(fd, p[:], 0, to); err != nil {
		return fmt.Errorf("gratuitous ARP for %v on %s in %s: %w", ip, h.Iface, h.NS.Name(), err)
	}
	return nil
}

// sendUnsolicitedNA sends a neighbour advertisement for ip from ip to all nodes (ff02::1)
// on h's interface, as the kernel's ndisc_send_unsol_na does: hop limit 255, override set,
// solicited clear, router set if the interface forwards, with the target link-layer address
// option h.MAC. The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
func sendUnsolicitedNA(h *Host, ip netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("neighbour advertisement for %v in %s: raw socket: %w", ip, h.NS.Name(), err)
	}
	defer unix.Close(fd)
	// Receive nothing: an ICMPv6 filter that blocks every type.
	var block unix.ICMPv6Filter
	for i := range block.Data {
		block.Data[i] = ^uint32(0)
	}
	err = errors.Join(
		unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &block),
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255),
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, h.Ifindex),
		unix.Bind(fd, &unix.SockaddrInet6{Addr: ip.As16()}),
	)
	if err != nil {
		return fmt.Errorf("neighbour advertisement for %v on %s in %s: set up socket: %w", ip, h.Iface, h.NS.Name(), err)
	}
	router := false
	if v, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + h.Iface + "/forwarding"); err == nil {
		router = strings.TrimSpace(string(v)) == "1"
	}
	var m [32]byte
	m[0] = 136  // neighbour advertisement; code 0; checksum by the kernel
	m[4] = 0x20 // override
	if router {
		m[4] |= 0x80
	}
	t := ip.As16()
	copy(m[8:24], t[:])
	m[24], m[25] = 2, 1 // target link-layer address option, 8 bytes
	copy(m[26:32], h.MAC)
	allNodes := &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::1").As16(), ZoneId: uint32(h.Ifindex)}
	if err := unix.Sendto(fd, m[:], 0, allNodes); err != nil {
		return fmt.Errorf("neighbour advertisement for %v on %s in %s: %w", ip, h.Iface, h.NS.Name(), err)
	}
	return nil
}
