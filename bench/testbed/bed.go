package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Layout selects a testbed topology.
type Layout int

const (
	// NATTwoArm is classic LVS-NAT: client ─veth─ director ext0; director int0 ─ bridge ─
	// real servers. Client 198.18.1.2 (fd00:1::2) routes via 198.18.1.1 (fd00:1::1) on ext0,
	// which also holds the VIPs 198.18.1.100/32 and fd00:1::100/128; int0 is 198.18.2.1
	// (fd00:2::1); real server I is 198.18.2.(10+I) (fd00:2::(10+I)) routing via int0.
	NATTwoArm Layout = iota
	// NATOneArm puts client, director and real servers on one bridge. The director's eth0
	// holds 198.18.1.1/24 and 198.18.2.1/24 (fd00:1::1/64, fd00:2::1/64) and the VIPs;
	// client and real servers are addressed as in NATTwoArm, in different subnets, so their
	// traffic to each other crosses the director.
	//
	// With Options.Backup the two gateways become floating addresses: the director's eth0
	// holds its own 198.18.1.4/24 and 198.18.2.4/24 (fd00:1::4/64, fd00:2::4/64, added
	// first, so they are its primary addresses and their connected routes never leave),
	// then the floating 198.18.1.1/32, 198.18.2.1/32 (fd00:1::1/128, fd00:2::1/128) and the
	// VIPs; the backup's eth0 holds 198.18.1.3/24 and 198.18.2.3/24 (fd00:1::3/64,
	// fd00:2::3/64). Client and real servers still route via .1 (::1).
	NATOneArm
	// L2 is one subnet on a bridge, for DR and TUN: 198.18.0.0/24 (fd00::/64), client .2,
	// director eth0 .1 with the VIPs 198.18.0.100/32 (fd00::100/128), real server I .(10+I)
	// with the VIPs on lo, arp_ignore=1 and arp_announce=2. No default routes.
	//
	// With Options.Backup the director keeps .1 (::1), which floats nowhere; the backup's
	// eth0 holds 198.18.0.3/24 (fd00::3/64); only the VIPs float.
	L2
)

func (l Layout) String() string {
	switch l {
	case NATTwoArm:
		return "nat-two-arm"
	case NATOneArm:
		return "nat-one-arm"
	case L2:
		return "l2"
	}
	return "layout(" + strconv.Itoa(int(l)) + ")"
}

// MaxReals is the largest number of real servers a bed can have (addresses .11 to .210).
const MaxReals = 200

// MaxQueues is the most queues Options.Queues and ChainOptions.Queues may ask for: as
// many as xlvsd's --queues takes.
const MaxQueues = 64

// readyTimeout bounds New's final check that links and addresses are usable.
const readyTimeout = 5 * time.Second

// ErrBadOptions is returned (wrapped) by New for options it cannot build.
var ErrBadOptions = errors.New("bad testbed options")

// Options selects what New builds.
type Options struct {
	Layout Layout
	Reals  int    // number of real servers; 0 means 2
	Prefix string // namespace name prefix; "" means "bed"
	IPv6   bool   // add the IPv6 addresses and routes too
	// Backup adds a second director ("backup", namespace role "bak") on the bridge of a
	// one-segment layout (NATOneArm or L2; New refuses it for NATTwoArm), for connection
	// sync and failover tests. See Bed.Backup and Bed.Failover.
	Backup bool
	// FloatingUnassigned, with Backup, leaves the floating addresses (Bed.Floating) off
	// both directors: something else — keepalived's VRRP — assigns them. Active reports
	// the director until a Failover. Without Backup it is refused.
	FloatingUnassigned bool
	// Queues is the number of RX and TX queues of every veth of the bed, both ends (see
	// "Queues" in the package doc); 0 means 1, the kernel's default.
	Queues int

	// hook, when set (by this package's tests), runs after each build step and fails the
	// build if it returns an error.
	hook func(step string) error
}

// Host is one interface of a testbed machine.
type Host struct {
	Name    string // "client", "director", "backup", "rs1", ...
	NS      *NS
	Iface   string
	Ifindex int // inside NS
	MAC     net.HardwareAddr
	Addr    netip.Addr // IPv4 address on Iface
	Addr6   netip.Addr // IPv6 address on Iface; invalid unless Options.IPv6
}

// AddrFor returns Addr6 if v6, else Addr.
func (h *Host) AddrFor(v6 bool) netip.Addr {
	if v6 {
		return h.Addr6
	}
	return h.Addr
}

// Bed is a built testbed. Its fields are set by New and must not be changed.
type Bed struct {
	Layout   Layout
	Client   *Host
	Director *NS
	Ext, Int *Host // director interfaces (the same *Host in NATOneArm and L2); NS = Director
	VIP      netip.Addr
	VIP6     netip.Addr // invalid unless Options.IPv6
	Reals    []*Host
	Switch   *NS // the bridge ("br0") namespace

	// Backup is the second director's namespace and BackupHost its one interface, eth0
	// (MAC 02:00:5e:ss:00:03, addresses .3 in each subnet of the layout); both nil unless
	// Options.Backup. It has the director's sysctls (forwarding off, no redirects) and no
	// floating address until Failover.
	Backup     *NS
	BackupHost *Host

	switchPorts []string         // the bridge's ports in a one-armed chain (NewChain)
	ports       map[*Host]string // each host's port on br0 (New)

	clientGW, realGW [2]netip.Addr  // [v4, v6] director addresses the hosts route through
	floating         []netip.Prefix // what Failover moves (Options.Backup only), in order

	failMu     sync.Mutex // serialises Failover and Failback
	moveFailed bool       // the last Failover or Failback failed; guarded by failMu
	onBackup   bool       // the backup holds the floating addresses; guarded by mu

	mu  sync.Mutex
	all []*NS // every namespace made, in creation order
}

// SwitchPort names the port of host h on the bridge br0 in the Switch namespace (the
// switch end of h's veth: "p-dir", "p-bak", "p-cl", "p-rs1", ...). Taking it down there
// cuts h off while h's own link stays up, as a failed switch port would; taking it off
// the bridge (nomaster) does the same. A host without a port on the bridge (NATTwoArm's
// client and ext0) is an error.
func (b *Bed) SwitchPort(h *Host) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.ports[h]; ok {
		return p, nil
	}
	if h == nil {
		return "", errors.New("switch port of no host")
	}
	return "", fmt.Errorf("%s (%s) has no port on br0 in this %v bed", h.Name, h.Iface, b.Layout)
}

// VIPFor returns VIP6 if v6, else VIP.
func (b *Bed) VIPFor(v6 bool) netip.Addr {
	if v6 {
		return b.VIP6
	}
	return b.VIP
}

// ClientGateway is the director address on the client's side (the client's default
// gateway in the NAT layouts).
func (b *Bed) ClientGateway(v6 bool) netip.Addr { return b.clientGW[idx6(v6)] }

// RealGateway is the director address on the real servers' side (their default gateway in
// the NAT layouts).
func (b *Bed) RealGateway(v6 bool) netip.Addr { return b.realGW[idx6(v6)] }

func idx6(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

// DirectorHosts lists the director's interfaces once each (Ext and Int, or the one).
func (b *Bed) DirectorHosts() []*Host {
	if b.Ext == b.Int {
		return []*Host{b.Ext}
	}
	return []*Host{b.Ext, b.Int}
}

// Namespaces lists every namespace of the bed.
func (b *Bed) Namespaces() []*NS {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*NS(nil), b.all...)
}

// SetForwarding turns the director kernel's IPv4 and IPv6 forwarding on or off, and the
// backup's too where there is one. It is off after New: xlvs forwards. Turn it on for
// baselines (plain routing, iptables DNAT) and for connectivity checks that need no load
// balancer.
func (b *Bed) SetForwarding(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	dirs := []*NS{b.Director}
	if b.Backup != nil {
		dirs = append(dirs, b.Backup)
	}
	for _, ns := range dirs {
		for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
			if err := ns.SetSysctl(k, v); err != nil {
				return fmt.Errorf("set forwarding in %s: %w", ns.Name(), err)
			}
		}
	}
	return nil
}

// Close removes every namespace of the bed, also after a partial New. It is idempotent.
func (b *Bed) Close() error {
	b.mu.Lock()
	all := b.all
	b.mu.Unlock()
	var errs []error
	for i := len(all) - 1; i >= 0; i-- {
		errs = append(errs, all[i].Close())
	}
	return errors.Join(errs...)
}

// New builds the testbed opts describes and returns it ready: links up, addresses usable,
// routes in place. On any error it removes what it made.
func New(opts Options) (*Bed, error) {
	if opts.Reals == 0 {
		opts.Reals = 2
	}
	if opts.Prefix == "" {
		opts.Prefix = "bed"
	}
	if err := checkQueues(opts.Queues); err != nil {
		return nil, fmt.Errorf("build testbed: %w", err)
	}
	if opts.Reals < 0 || opts.Reals > MaxReals {
		return nil, fmt.Errorf("build testbed: %w: %d real servers, want 1 to %d", ErrBadOptions, opts.Reals, MaxReals)
	}
	if opts.Layout < NATTwoArm || opts.Layout > L2 {
		return nil, fmt.Errorf("build testbed: %w: %v, want NATTwoArm, NATOneArm or L2", ErrBadOptions, opts.Layout)
	}
	if opts.FloatingUnassigned && !opts.Backup {
		return nil, fmt.Errorf("build testbed: %w: FloatingUnassigned without Backup: only a bed with a backup director has floating addresses", ErrBadOptions)
	}
	if opts.Backup && opts.Layout == NATTwoArm {
		return nil, fmt.Errorf("build testbed: %w: Backup needs a one-segment layout (NATOneArm or L2): in %v the client is wired straight to the director's ext0, so a backup director could not take over the client side", ErrBadOptions, opts.Layout)
	}
	// The longest role suffix is "-rs200".
	if err := checkPrefix(opts.Prefix + "-rs" + strconv.Itoa(opts.Reals)); err != nil {
		return nil, fmt.Errorf("build testbed: %w", err)
	}
	b := &Bed{Layout: opts.Layout}
	bl := &builder{bed: b, opts: opts}
	if err := bl.build(); err != nil {
		return nil, errors.Join(fmt.Errorf("build %v testbed: %w", opts.Layout, err), b.Close())
	}
	return b, nil
}

// Addressing. Subnet s is 198.18.s.0/24 and fd00:s::/64; host h in it is 198.18.s.h and
// fd00:s::h (the decimal digits of h, so rs1 is 198.18.2.11 and fd00:2::11); its MAC is
// 02:00:5e:ss:00:hh (ss, hh the bytes s and h). The switch-side end of a host's veth is
// 02:00:5e:ss:01:hh.
const (
	netClient = 1 // client side (NAT layouts)
	netReal   = 2 // real server side (NAT layouts)
	netL2     = 0 // the only subnet of L2
	hostDir   = 1 // director (in NATOneArm with Backup: the floating gateways)
	hostCli   = 2 // client
	hostBak   = 3 // backup director (Options.Backup)
	hostDirBk = 4 // director's own address in NATOneArm with Backup
	hostVIP   = 100
	hostReal0 = 10 // real server I is hostReal0+I
)

func addr4(s, h int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(s), byte(h)}) }

func addr6(s, h int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:%d::%d", s, h))
}

func hostMAC(s, h int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x00, 0x5e, byte(s), 0x00, byte(h)}
}
func portMAC(s, h int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x00, 0x5e, byte(s), 0x01, byte(h)}
}

var bridgeMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0xff, 0x00, 0x01}

// builder carries the state of one New.
type builder struct {
	bed  *Bed
	opts Options

	clientNS        *NS
	realNS          []*NS
	cliNet, realNet int // subnet numbers of the client and real server sides
	// ready lists (namespace, interface, address) triples to check at the end.
	ready []readyAddr
}

type readyAddr struct {
	ns        *NS
	iface     string
	addr      netip.Addr
	linkLocal bool // addr is invalid: wait for the link's IPv6 link-local address
}

func (bl *builder) step(name string) error {
	if bl.opts.hook != nil {
		if err := bl.opts.hook(name); err != nil {
			return fmt.Errorf("step %s: %w", name, err)
		}
	}
	return nil
}

func (bl *builder) newNS(role string) (*NS, error) {
	ns, err := NewNS(bl.opts.Prefix + "-" + role)
	if err != nil {
		return nil, err
	}
	bl.bed.mu.Lock()
	bl.bed.all = append(bl.bed.all, ns)
	bl.bed.mu.Unlock()
	return ns, bl.step("ns-" + role)
}

// build runs the steps of New in order; the test hook runs after each.
func (bl *builder) build() error {
	if err := bl.namespaces(); err != nil {
		return err
	}
	bl.plan()
	for _, s := range []struct {
		name string
		run  func() error
	}{
		{"sysctls", bl.settings},
		{"bridge", bl.bridge},
		{"links", bl.wire},
		{"offloads", bl.offloads},
		{"addrs", bl.address},
		{"routes", bl.route},
		{"ready", bl.waitReady},
	} {
		if err := s.run(); err != nil {
			return err
		}
		if err := bl.step(s.name); err != nil {
			return err
		}
	}
	return nil
}

// namespaces makes the switch, director, client and real server namespaces.
func (bl *builder) namespaces() error {
	b := bl.bed
	var err error
	if b.Switch, err = bl.newNS("sw"); err != nil {
		return err
	}
	if b.Director, err = bl.newNS("dir"); err != nil {
		return err
	}
	if bl.opts.Backup {
		if b.Backup, err = bl.newNS("bak"); err != nil {
			return err
		}
	}
	if bl.clientNS, err = bl.newNS("cl"); err != nil {
		return err
	}
	bl.realNS = make([]*NS, bl.opts.Reals)
	for i := range bl.realNS {
		if bl.realNS[i], err = bl.newNS("rs" + strconv.Itoa(i+1)); err != nil {
			return err
		}
	}
	return nil
}

// plan fills in the hosts, addresses and MACs of the layout; it touches no namespace.
func (bl *builder) plan() {
	b, o := bl.bed, bl.opts
	bl.cliNet, bl.realNet = netClient, netReal
	if o.Layout == L2 {
		bl.cliNet, bl.realNet = netL2, netL2
	}
	if o.Layout == NATTwoArm {
		b.Ext = &Host{Name: "director", NS: b.Director, Iface: "ext0", MAC: hostMAC(bl.cliNet, hostDir)}
		b.Int = &Host{Name: "director", NS: b.Director, Iface: "int0", MAC: hostMAC(bl.realNet, hostDir)}
	} else {
		d := &Host{Name: "director", NS: b.Director, Iface: "eth0", MAC: hostMAC(bl.cliNet, hostDir)}
		b.Ext, b.Int = d, d
	}
	// The director's own address: .1, but .4 in NATOneArm with a backup, where .1 (the
	// hosts' gateways) floats.
	own := hostDir
	if o.Backup && o.Layout == NATOneArm {
		own = hostDirBk
	}
	// Int first: where Ext and Int are one Host, it carries the client-side address.
	b.Int.Addr = addr4(bl.realNet, own)
	b.Ext.Addr = addr4(bl.cliNet, own)
	b.VIP = addr4(bl.cliNet, hostVIP)
	b.clientGW[0], b.realGW[0] = addr4(bl.cliNet, hostDir), addr4(bl.realNet, hostDir)
	if o.IPv6 {
		b.Int.Addr6 = addr6(bl.realNet, own)
		b.Ext.Addr6 = addr6(bl.cliNet, own)
		b.VIP6 = addr6(bl.cliNet, hostVIP)
		b.clientGW[1], b.realGW[1] = addr6(bl.cliNet, hostDir), addr6(bl.realNet, hostDir)
	}
	if o.Backup {
		bl.planBackup()
	}
	b.Client = &Host{Name: "client", NS: bl.clientNS, Iface: "eth0", MAC: hostMAC(bl.cliNet, hostCli), Addr: addr4(bl.cliNet, hostCli)}
	if o.IPv6 {
		b.Client.Addr6 = addr6(bl.cliNet, hostCli)
	}
	for i, ns := range bl.realNS {
		h := hostReal0 + i + 1
		r := &Host{Name: "rs" + strconv.Itoa(i+1), NS: ns, Iface: "eth0", MAC: hostMAC(bl.realNet, h), Addr: addr4(bl.realNet, h)}
		if o.IPv6 {
			r.Addr6 = addr6(bl.realNet, h)
		}
		b.Reals = append(b.Reals, r)
	}
}

// senders are the hosts whose packets cross the director.
func (bl *builder) senders() []*Host { return append([]*Host{bl.bed.Client}, bl.bed.Reals...) }

// settings writes the namespace-wide sysctls, before any interface exists so that new
// interfaces inherit the "default" values.
func (bl *builder) settings() error {
	b := bl.bed
	if err := setSysctls(b.Switch, switchSysctls); err != nil {
		return err
	}
	if err := setSysctls(b.Director, directorSysctls); err != nil {
		return err
	}
	if b.Backup != nil {
		if err := setSysctls(b.Backup, directorSysctls); err != nil {
			return err
		}
	}
	for _, h := range bl.senders() {
		if err := setSysctls(h.NS, hostSysctls); err != nil {
			return err
		}
	}
	return nil
}

// wire makes the veths: client straight to the director's ext0 in NATTwoArm, everything
// else through the bridge.
func (bl *builder) wire() error {
	b := bl.bed
	if bl.opts.Layout == NATTwoArm {
		if err := bl.veth(b.Client.NS, b.Client.Iface, b.Client.MAC, b.Director, b.Ext.Iface, b.Ext.MAC); err != nil {
			return err
		}
		if err := bl.bridgePort(b.Int, "p-dir", portMAC(bl.realNet, hostDir)); err != nil {
			return err
		}
	} else {
		if err := bl.bridgePort(b.Client, "p-cl", portMAC(bl.cliNet, hostCli)); err != nil {
			return err
		}
		if err := bl.bridgePort(b.Ext, "p-dir", portMAC(bl.cliNet, hostDir)); err != nil {
			return err
		}
		if b.BackupHost != nil {
			if err := bl.bridgePort(b.BackupHost, "p-bak", portMAC(bl.cliNet, hostBak)); err != nil {
				return err
			}
		}
	}
	for i, r := range b.Reals {
		if err := bl.bridgePort(r, "p-"+r.Name, portMAC(bl.realNet, hostReal0+i+1)); err != nil {
			return err
		}
	}
	// Interface indexes are known now.
	hosts := append(bl.senders(), b.DirectorHosts()...)
	if b.BackupHost != nil {
		hosts = append(hosts, b.BackupHost)
	}
	for _, h := range hosts {
		var err error
		if h.Ifindex, err = h.NS.Ifindex(h.Iface); err != nil {
			return err
		}
	}
	return nil
}

// offloads makes the senders hand the director complete checksums and, with several
// queues, makes those behind the bridge send on TX queue 0 (see "Queues" in the package
// doc: the bridge then spreads their flows over the director's queues by hash).
func (bl *builder) offloads() error {
	for _, h := range bl.senders() {
		if err := SetTxChecksum(h.NS, h.Iface, false); err != nil {
			return err
		}
		bl.bed.mu.Lock()
		_, bridged := bl.bed.ports[h]
		bl.bed.mu.Unlock()
		if bl.opts.Queues > 1 && bridged {
			if err := SetXPS(h.NS, h.Iface, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// address adds every address: the director's (and the VIPs on its client side), the
// hosts', and in L2 the VIPs on the real servers' lo.
func (bl *builder) address() error {
	b := bl.bed
	if bl.opts.Backup {
		if err := bl.addressBackup(); err != nil {
			return err
		}
		return bl.addressHosts()
	}
	dir := map[*Host][]netip.Prefix{}
	for _, d := range b.DirectorHosts() {
		dir[d] = append(dir[d], netip.PrefixFrom(d.Addr, 24))
		if d.Addr6.IsValid() {
			dir[d] = append(dir[d], netip.PrefixFrom(d.Addr6, 64))
		}
	}
	if bl.opts.Layout == NATOneArm {
		// One interface, both subnets.
		dir[b.Ext] = append(dir[b.Ext], netip.PrefixFrom(b.realGW[0], 24))
		if b.realGW[1].IsValid() {
			dir[b.Ext] = append(dir[b.Ext], netip.PrefixFrom(b.realGW[1], 64))
		}
	}
	dir[b.Ext] = append(dir[b.Ext], netip.PrefixFrom(b.VIP, 32))
	if b.VIP6.IsValid() {
		dir[b.Ext] = append(dir[b.Ext], netip.PrefixFrom(b.VIP6, 128))
	}
	for _, d := range b.DirectorHosts() {
		if err := bl.addrs(d.NS, d.Iface, dir[d]...); err != nil {
			return err
		}
	}
	return bl.addressHosts()
}

// addressHosts adds the client's and real servers' addresses, and in L2 the VIPs on the
// real servers' lo.
func (bl *builder) addressHosts() error {
	b := bl.bed
	for _, h := range bl.senders() {
		p := []netip.Prefix{netip.PrefixFrom(h.Addr, 24)}
		if h.Addr6.IsValid() {
			p = append(p, netip.PrefixFrom(h.Addr6, 64))
		}
		if err := bl.addrs(h.NS, h.Iface, p...); err != nil {
			return err
		}
	}
	if bl.opts.Layout == L2 {
		for _, r := range b.Reals {
			if err := bl.hideVIPs(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// route adds the default routes through the director (NAT layouts only).
func (bl *builder) route() error {
	b := bl.bed
	if bl.opts.Layout == L2 {
		return nil
	}
	if err := bl.defaultRoutes(b.Client, b.clientGW); err != nil {
		return err
	}
	for _, r := range b.Reals {
		if err := bl.defaultRoutes(r, b.realGW); err != nil {
			return err
		}
	}
	return nil
}

type sysctl struct{ key, value string }

var (
	// Everywhere but the switch: no DAD, no reverse-path filter (TUN decapsulation and
	// asymmetric test paths must not be dropped).
	commonSysctls = []sysctl{
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	}
	// Client and real servers ignore redirects and router advertisements, so their paths
	// through the director stay put.
	hostSysctls = append(append([]sysctl(nil), commonSysctls...),
		sysctl{"net.ipv4.conf.all.accept_redirects", "0"},
		sysctl{"net.ipv4.conf.default.accept_redirects", "0"},
		sysctl{"net.ipv6.conf.all.accept_redirects", "0"},
		sysctl{"net.ipv6.conf.default.accept_redirects", "0"},
		sysctl{"net.ipv6.conf.all.accept_ra", "0"},
		sysctl{"net.ipv6.conf.default.accept_ra", "0"},
	)
	// The director sends no redirects (one-arm forwarding would otherwise advertise
	// shortcuts) and does not forward until asked.
	directorSysctls = append(append([]sysctl(nil), commonSysctls...),
		sysctl{"net.ipv4.conf.all.send_redirects", "0"},
		sysctl{"net.ipv4.conf.default.send_redirects", "0"},
		sysctl{"net.ipv4.ip_forward", "0"},
		sysctl{"net.ipv6.conf.all.forwarding", "0"},
	)
	// The switch is a plain bridge: no IPv6 chatter from its ports.
	switchSysctls = []sysctl{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
	}
)

func setSysctls(ns *NS, list []sysctl) error {
	for _, s := range list {
		if err := ns.SetSysctl(s.key, s.value); err != nil {
			return err
		}
	}
	return nil
}

func (bl *builder) bridge() error {
	sw := bl.bed.Switch
	return sw.withNetlink(func(h *netlink.Handle) error {
		off := false
		br := &netlink.Bridge{
			LinkAttrs:         netlink.LinkAttrs{Name: "br0", HardwareAddr: bridgeMAC, TxQLen: -1},
			MulticastSnooping: &off, // flood ND and MLD; nothing to learn, nothing to wait for
		}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge br0 in %s: %w", sw.Name(), err)
		}
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("set bridge br0 up in %s: %w", sw.Name(), err)
		}
		return nil
	})
}

// veth makes a veth pair between two namespaces, with the given names and MACs, and sets
// both ends up.
func (bl *builder) veth(aNS *NS, aName string, aMAC net.HardwareAddr, zNS *NS, zName string, zMAC net.HardwareAddr) error {
	zfd := func() (int, error) {
		zNS.mu.RLock()
		defer zNS.mu.RUnlock()
		if zNS.closed {
			return -1, fmt.Errorf("use namespace %s: %w", zNS.Name(), ErrClosed)
		}
		return int(zNS.fd), nil
	}
	err := aNS.withNetlink(func(h *netlink.Handle) error {
		fd, err := zfd()
		if err != nil {
			return err
		}
		v := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: aName, HardwareAddr: aMAC, TxQLen: -1},
			PeerName:         zName,
			PeerHardwareAddr: zMAC,
			PeerNamespace:    netlink.NsFd(fd),
			PeerTxQLen:       -1,
		}
		if q := bl.opts.Queues; q > 1 {
			// Otherwise the kernel's default: one queue in use of one per possible CPU.
			v.NumTxQueues, v.NumRxQueues = q, q
			v.PeerNumTxQueues, v.PeerNumRxQueues = uint32(q), uint32(q)
		}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth %s (%s) - %s (%s): %w", aName, aNS.Name(), zName, zNS.Name(), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := aNS.linkUp(aName); err != nil {
		return err
	}
	return zNS.linkUp(zName)
}

// bridgePort connects host h to br0 through a veth whose switch end is port.
func (bl *builder) bridgePort(h *Host, port string, portMAC net.HardwareAddr) error {
	sw := bl.bed.Switch
	if err := bl.veth(h.NS, h.Iface, h.MAC, sw, port, portMAC); err != nil {
		return err
	}
	bl.bed.mu.Lock()
	if bl.bed.ports == nil {
		bl.bed.ports = map[*Host]string{}
	}
	bl.bed.ports[h] = port
	bl.bed.mu.Unlock()
	return sw.withNetlink(func(nh *netlink.Handle) error {
		br, err := nh.LinkByName("br0")
		if err != nil {
			return fmt.Errorf("find bridge br0 in %s: %w", sw.Name(), err)
		}
		p, err := nh.LinkByName(port)
		if err != nil {
			return fmt.Errorf("find port %s in %s: %w", port, sw.Name(), err)
		}
		if err := nh.LinkSetMaster(p, br); err != nil {
			return fmt.Errorf("attach %s to br0 in %s: %w", port, sw.Name(), err)
		}
		return nil
	})
}

// addrs adds prefixes to ifname in ns; IPv6 ones without DAD.
func (bl *builder) addrs(ns *NS, ifname string, prefixes ...netip.Prefix) error {
	err := ns.withNetlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find link %s in %s: %w", ifname, ns.Name(), err)
		}
		for _, p := range prefixes {
			a := &netlink.Addr{IPNet: &net.IPNet{
				IP:   net.IP(p.Addr().AsSlice()),
				Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
			}}
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, a); err != nil {
				return fmt.Errorf("add address %v to %s in %s: %w", p, ifname, ns.Name(), err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		bl.ready = append(bl.ready, readyAddr{ns: ns, iface: ifname, addr: p.Addr()})
	}
	return nil
}

// hideVIPs puts the VIPs on a DR/TUN real server's lo and stops it answering ARP for them.
func (bl *builder) hideVIPs(r *Host) error {
	for _, s := range []sysctl{
		{"net.ipv4.conf.all.arp_ignore", "1"},
		{"net.ipv4.conf.all.arp_announce", "2"},
		{"net.ipv4.conf." + r.Iface + ".arp_ignore", "1"},
		{"net.ipv4.conf." + r.Iface + ".arp_announce", "2"},
	} {
		if err := r.NS.SetSysctl(s.key, s.value); err != nil {
			return err
		}
	}
	p := []netip.Prefix{netip.PrefixFrom(bl.bed.VIP, 32)}
	if bl.bed.VIP6.IsValid() {
		p = append(p, netip.PrefixFrom(bl.bed.VIP6, 128))
	}
	return bl.addrs(r.NS, "lo", p...)
}

func (bl *builder) defaultRoutes(h *Host, gw [2]netip.Addr) error {
	return h.NS.withNetlink(func(nh *netlink.Handle) error {
		l, err := nh.LinkByName(h.Iface)
		if err != nil {
			return fmt.Errorf("find link %s in %s: %w", h.Iface, h.NS.Name(), err)
		}
		for _, g := range gw {
			if !g.IsValid() {
				continue
			}
			dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			if g.Is6() {
				dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
			rt := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.IP(g.AsSlice())}
			if err := nh.RouteAdd(rt); err != nil {
				return fmt.Errorf("add default route via %v on %s in %s: %w", g, h.Iface, h.NS.Name(), err)
			}
		}
		return nil
	})
}

// waitReady polls until every addressed interface is running and each address is a
// local, non-tentative address of its namespace. With DAD off this normally holds at the
// first look; the poll only covers kernel work that finishes asynchronously.
func (bl *builder) waitReady() error { return waitAddrs(bl.ready) }

// waitAddrs is waitReady for any list.
func waitAddrs(list []readyAddr) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		pending := notReady(list)
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for testbed: %s still not ready after %v", pending, readyTimeout)
		case <-time.After(time.Millisecond):
		}
	}
}

// notReady describes the first thing not ready yet, or returns "". An entry with no
// address (linkLocal) waits for any non-tentative IPv6 link-local address on the link.
func notReady(list []readyAddr) string {
	for _, ra := range list {
		var pending string
		err := ra.ns.withNetlink(func(h *netlink.Handle) error {
			l, err := h.LinkByName(ra.iface)
			if err != nil {
				return err
			}
			if ra.iface != "lo" && l.Attrs().OperState != netlink.OperUp {
				pending = fmt.Sprintf("link %s in %s (state %v)", ra.iface, ra.ns.Name(), l.Attrs().OperState)
				return nil
			}
			fam := netlink.FAMILY_V4
			if ra.addr.Is6() || ra.linkLocal {
				fam = netlink.FAMILY_V6
			}
			addrs, err := h.AddrList(l, fam)
			if err != nil {
				return err
			}
			found := false
			for _, a := range addrs {
				ip, ok := netip.AddrFromSlice(a.IP)
				if ok && (ip.Unmap() == ra.addr || ra.linkLocal && ip.IsLinkLocalUnicast()) {
					found = found || a.Flags&unix.IFA_F_TENTATIVE == 0
				}
			}
			if !found && ra.linkLocal {
				pending = fmt.Sprintf("IPv6 link-local address on %s in %s", ra.iface, ra.ns.Name())
				return nil
			}
			if !found {
				pending = fmt.Sprintf("address %v on %s in %s", ra.addr, ra.iface, ra.ns.Name())
				return nil
			}
			if ra.linkLocal {
				return nil
			}
			routes, err := h.RouteGet(net.IP(ra.addr.AsSlice()))
			if err != nil || len(routes) == 0 || routes[0].Type != unix.RTN_LOCAL {
				pending = fmt.Sprintf("local route for %v in %s", ra.addr, ra.ns.Name())
			}
			return nil
		})
		if err != nil {
			return fmt.Sprintf("%v on %s in %s (%v)", ra.addr, ra.iface, ra.ns.Name(), err)
		}
		if pending != "" {
			return pending
		}
	}
	return ""
}
