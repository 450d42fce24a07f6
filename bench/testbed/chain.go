package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ChainOptions select what NewChain builds.
type ChainOptions struct {
	Prefix string // namespace name prefix; "" means "chain"
	// ThreadedNAPI turns on threaded NAPI (and GRO, which gives a veth its NAPI instance)
	// on every veth end, so that receive processing runs in kernel threads that
	// PinNAPI can place on a CPU. It needs `ip netns exec` (iproute2) to reach the
	// namespace's sysfs.
	ThreadedNAPI bool
	// OneArm builds the one-armed LVS-NAT chain (a NATOneArm bed): generator, director and
	// sink each on a port of a bridge in a fourth namespace (Switch); the director has one
	// interface (Ext == Int) holding both gateway addresses and the VIP, so every packet
	// it forwards leaves by the interface it came in on. A packet crosses four veth pairs
	// and the bridge twice. The bridge forwards by static entries, learning off (the sink
	// drops everything and sends nothing to learn its address from; a bridge that had to
	// flood its traffic would load the director with it too), and its netfilter hooks
	// (bridge-nf-call-*) are off: a switch runs no iptables. The director's interface has
	// TSO off, so that the bridge's work on what it sends runs in the bridge's NAPI
	// threads (see buildChain), pinned with the generator's by Bed.PinChain.
	OneArm bool
	// Queues is the number of RX and TX queues of every veth of the chain, both ends; 0
	// means 1. A generator spreads its traffic over the director's queues by sending on
	// several TX queues of its veth (an AF_XDP socket per queue): the director's veth
	// receives on the queue the generator sent on (see SetXPS).
	Queues int
}

// chainSeq numbers the chains of this process; with the pid it makes interface names
// unique on the machine, so that NAPI threads ("napi/IFNAME-ID") can be told apart.
var chainSeq atomic.Uint64

// NewChain builds the benchmark topology: generator ─veth─ director ─veth─ sink, three
// namespaces and no bridge, so that every packet crosses exactly two veth pairs. It is a
// NATTwoArm bed with one real server: Client is the generator (198.18.1.2), Ext the
// director's generator side (198.18.1.1, VIP 198.18.1.100), Int its sink side
// (198.18.2.1), Reals[0] the sink (198.18.2.11); Switch is nil. With OneArm it is the
// NATOneArm bed of the same hosts and addresses instead (see ChainOptions.OneArm).
// Interface names are unique on the machine ("g", "e", "i", "s" followed by the pid and
// a counter in base 36; the bridge's ports in the one-armed chain "q", "r", "t" for
// the generator's, director's and sink's) so NAPI threads can be found by name.
//
// Besides what New does (addresses, routes through the director, TX checksum offload off
// on generator and sink, director forwarding off), every neighbour is a permanent entry,
// so no ARP happens during a measurement, and with ThreadedNAPI each veth end gets GRO on
// and threaded NAPI. The veths are new on every call: a veth whose peer ran XDP_TX or
// generic XDP can stop receiving, so benchmarks build a fresh chain per run.
func NewChain(opts ChainOptions) (*Bed, error) {
	if opts.Prefix == "" {
		opts.Prefix = "chain"
	}
	if err := checkPrefix(opts.Prefix + "-sink"); err != nil {
		return nil, fmt.Errorf("build chain: %w", err)
	}
	if err := checkQueues(opts.Queues); err != nil {
		return nil, fmt.Errorf("build chain: %w", err)
	}
	b := &Bed{Layout: NATTwoArm}
	if opts.OneArm {
		b.Layout = NATOneArm
	}
	err := buildChain(b, opts)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("build %v chain: %w", b.Layout, err), b.Close())
	}
	return b, nil
}

// chainIfaces are the interface names of one chain.
type chainIfaces struct {
	gen, ext, int_, sink string // the hosts' ends
	pGen, pDir, pSink    string // the bridge's ports (one-armed chain)
}

// chainNames returns the interface names of a new chain.
func chainNames() chainIfaces {
	n := chainSeq.Add(1)
	sfx := strconv.FormatInt(int64(os.Getpid()), 36) + "_" + strconv.FormatUint(n, 36)
	return chainIfaces{gen: "g" + sfx, ext: "e" + sfx, int_: "i" + sfx, sink: "s" + sfx,
		pGen: "q" + sfx, pDir: "r" + sfx, pSink: "t" + sfx}
}

func buildChain(b *Bed, opts ChainOptions) error {
	bl := &builder{bed: b, opts: Options{Layout: b.Layout, Reals: 1, Prefix: opts.Prefix, Queues: opts.Queues}}
	var err error
	if b.Director, err = bl.newNS("dir"); err != nil {
		return err
	}
	if bl.clientNS, err = bl.newNS("gen"); err != nil {
		return err
	}
	sinkNS, err := bl.newNS("sink")
	if err != nil {
		return err
	}
	if opts.OneArm {
		if b.Switch, err = bl.newNS("sw"); err != nil {
			return err
		}
	}
	bl.realNS = []*NS{sinkNS}
	bl.plan()
	n := chainNames()
	sink := b.Reals[0]
	b.Client.Name, b.Client.Iface = "gen", n.gen
	b.Ext.Iface = n.ext
	if !opts.OneArm {
		b.Int.Iface = n.int_
	}
	sink.Name, sink.Iface = "sink", n.sink

	// As builder.settings.
	if err := setSysctls(b.Director, directorSysctls); err != nil {
		return err
	}
	for _, h := range bl.senders() {
		if err := setSysctls(h.NS, hostSysctls); err != nil {
			return err
		}
	}
	if opts.OneArm {
		if err := bl.chainSwitch(n); err != nil {
			return err
		}
		// A veth with TSO on hands what it forwards (all but local TCP) to its peer
		// through the sending CPU's backlog, not the peer's NAPI thread. Off on the
		// director's interface, the switch bridges what the director sends on the
		// switch's CPU, not on the director's, where it would be charged to the
		// forwarder under test (4.3 against 2.5 µs per packet for xlvs, measured).
		if err := SetTSO(b.Director, n.ext, false); err != nil {
			return err
		}
	} else {
		if err := bl.veth(b.Client.NS, n.gen, b.Client.MAC, b.Director, n.ext, b.Ext.MAC); err != nil {
			return err
		}
		if err := bl.veth(b.Director, n.int_, b.Int.MAC, sinkNS, n.sink, sink.MAC); err != nil {
			return err
		}
	}
	for _, h := range append(bl.senders(), b.DirectorHosts()...) {
		if h.Ifindex, err = h.NS.Ifindex(h.Iface); err != nil {
			return err
		}
	}
	if err := bl.offloads(); err != nil {
		return err
	}
	if err := bl.address(); err != nil {
		return err
	}
	if err := bl.route(); err != nil {
		return err
	}
	for _, nb := range []struct {
		h    *Host
		addr netip.Addr
		mac  net.HardwareAddr
	}{
		{b.Client, b.ClientGateway(false), b.Ext.MAC},
		{b.Client, b.VIP, b.Ext.MAC},
		{b.Ext, b.Client.Addr, b.Client.MAC},
		{b.Int, sink.Addr, sink.MAC},
		{sink, b.RealGateway(false), b.Int.MAC},
	} {
		if err := staticNeigh(nb.h, nb.addr, nb.mac); err != nil {
			return err
		}
	}
	if opts.ThreadedNAPI {
		type end struct {
			ns    *NS
			iface string
		}
		var ends []end
		for _, h := range append(bl.senders(), b.DirectorHosts()...) {
			ends = append(ends, end{h.NS, h.Iface})
		}
		for _, p := range b.switchPorts {
			ends = append(ends, end{b.Switch, p})
		}
		for _, e := range ends {
			if err := SetGRO(e.ns, e.iface, true); err != nil {
				return err
			}
			if err := SetThreadedNAPI(e.ns, e.iface, true); err != nil {
				return err
			}
		}
	}
	return bl.waitReady()
}

// chainSwitch builds the one-armed chain's bridge: br0 in the switch namespace with its
// netfilter hooks off, a port for each of generator, director and sink (TX checksum
// offload off, learning off) and a static forwarding entry for each host's MAC on its
// port.
func (bl *builder) chainSwitch(n chainIfaces) error {
	b := bl.bed
	if err := setSysctls(b.Switch, switchSysctls); err != nil {
		return err
	}
	// Where the kernel has bridge netfilter (br_netfilter), a new namespace's bridges
	// pass IPv4 and IPv6 to iptables by default.
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
		if _, err := b.Switch.Sysctl(k); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := b.Switch.SetSysctl(k, "0"); err != nil {
			return err
		}
	}
	if err := bl.bridge(); err != nil {
		return err
	}
	sink := b.Reals[0]
	ports := []struct {
		h    *Host
		port string
		mac  net.HardwareAddr
	}{
		{b.Client, n.pGen, portMAC(bl.cliNet, hostCli)},
		{b.Ext, n.pDir, portMAC(bl.cliNet, hostDir)},
		{sink, n.pSink, portMAC(bl.realNet, hostReal0+1)},
	}
	for _, p := range ports {
		if err := bl.bridgePort(p.h, p.port, p.mac); err != nil {
			return err
		}
		// A frame leaves the switch with its checksums complete, as on a wire: GRO on
		// the ports (for their NAPI) merges TCP segments into packets whose checksum
		// is left to the sending device, and a veth with TX checksum offload on would
		// pass them to the host that way (xlvs's AF_XDP sockets see the frame, not
		// the skb's checksum state; a stream through xlvs stalls). Off, it also takes
		// TSO off, without which the receiving veth hands forwarded packets to its NAPI
		// thread instead of the sender's CPU: the director's kernel work (iptables
		// DNAT) then runs, and is counted, on the director's CPU.
		if err := SetTxChecksum(b.Switch, p.port, false); err != nil {
			return err
		}
		b.switchPorts = append(b.switchPorts, p.port)
	}
	return b.Switch.withNetlink(func(nh *netlink.Handle) error {
		for _, p := range ports {
			l, err := nh.LinkByName(p.port)
			if err != nil {
				return fmt.Errorf("find port %s in %s: %w", p.port, b.Switch.Name(), err)
			}
			// No learning: forwarding follows the static entries only, whatever the
			// hosts happen to send (IPv6 multicast listener reports at link-up, say).
			if err := nh.LinkSetLearning(l, false); err != nil {
				return fmt.Errorf("turn learning off on %s in %s: %w", p.port, b.Switch.Name(), err)
			}
			// `bridge fdb replace MAC dev PORT master static`: NUD_NOARP is a static
			// entry; NUD_PERMANENT would make the MAC the bridge's own.
			fdb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER,
				State: netlink.NUD_NOARP, HardwareAddr: p.h.MAC}
			if err := nh.NeighSet(fdb); err != nil {
				return fmt.Errorf("add static bridge entry %v on %s in %s: %w", p.h.MAC, p.port, b.Switch.Name(), err)
			}
		}
		return nil
	})
}

// SwitchPorts are the bridge's ports (interfaces in Switch) of a one-armed chain, nil
// otherwise.
func (b *Bed) SwitchPorts() []string { return slices.Clone(b.switchPorts) }

// PinChain pins a chain's NAPI threads: the generator's, the sink's and the bridge's
// ports' to genCPU (the world outside the director), the director's interfaces' to
// dirCPU. The chain must have been built with ThreadedNAPI.
func (b *Bed) PinChain(genCPU, dirCPU int) error { return b.PinChainCPUs(genCPU, []int{dirCPU}) }

// PinChainCPUs is PinChain for a director with several queues: the director's NAPI
// threads (one per RX queue of each interface) may each run on any of dirCPUs. (Which
// thread serves which queue is not visible from its name, which the kernel truncates:
// the scheduler places them, within dirCPUs.)
func (b *Bed) PinChainCPUs(genCPU int, dirCPUs []int) error {
	if len(dirCPUs) == 0 {
		return errors.New("pin chain: no director CPU")
	}
	ifaces := []string{b.Client.Iface, b.Reals[0].Iface}
	ifaces = append(ifaces, b.switchPorts...)
	for _, i := range ifaces {
		if err := PinNAPI(i, genCPU); err != nil {
			return err
		}
	}
	for _, h := range b.DirectorHosts() {
		if err := PinNAPI(h.Iface, dirCPUs[0], dirCPUs[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// staticNeigh adds a permanent neighbour entry on h's interface.
func staticNeigh(h *Host, addr netip.Addr, mac net.HardwareAddr) error {
	return h.NS.withNetlink(func(nh *netlink.Handle) error {
		fam := netlink.FAMILY_V4
		if addr.Is6() {
			fam = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{
			LinkIndex:    h.Ifindex,
			Family:       fam,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(addr.AsSlice()),
			HardwareAddr: mac,
		}
		if err := nh.NeighSet(n); err != nil {
			return fmt.Errorf("add neighbour %v %v on %s in %s: %w", addr, mac, h.Iface, h.NS.Name(), err)
		}
		return nil
	})
}

// SetThreadedNAPI writes /sys/class/net/IFNAME/threaded inside ns (through `ip netns
// exec`, which mounts the namespace's sysfs) and reads it back.
func SetThreadedNAPI(ns *NS, ifname string, on bool) error {
	if strings.ContainsAny(ifname, "/ '\"\\$`") || ifname == "" {
		return fmt.Errorf("set threaded napi on %q: bad interface name", ifname)
	}
	v := "0"
	if on {
		v = "1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := "/sys/class/net/" + ifname + "/threaded"
	out, err := ns.Run(ctx, "sh", "-c", "echo "+v+" > "+p+" && cat "+p)
	if err != nil {
		return fmt.Errorf("set threaded napi on %s in %s: %w", ifname, ns.Name(), err)
	}
	if got := strings.TrimSpace(out); got != v && !(on && got == "enabled") && !(!on && got == "disabled") {
		return fmt.Errorf("set threaded napi on %s in %s: reads back %q, want %q", ifname, ns.Name(), got, v)
	}
	return nil
}

// NAPIThreads returns the pids of the kernel threads running ifname's NAPI instances
// (threads named "napi/IFNAME-ID"; the kernel truncates names to 15 bytes, so keep
// interface names at most 9 bytes long, as NewChain's are).
func NAPIThreads(ifname string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list napi threads: %w", err)
	}
	want := "napi/" + ifname + "-"
	if len(want) > 15 {
		want = want[:15]
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), want) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// PinNAPI pins every NAPI thread of ifname to cpu (to any of cpu and more, if given).
// It fails if the interface has none (threaded NAPI off, or GRO and XDP both off so the
// veth has no NAPI instance).
func PinNAPI(ifname string, cpu int, more ...int) error {
	pids, err := NAPIThreads(ifname)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("pin napi of %s to cpu %d: no thread named napi/%s-*: turn threaded napi on first", ifname, cpu, ifname)
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, c := range more {
		set.Set(c)
	}
	for _, pid := range pids {
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			return fmt.Errorf("pin napi thread %d of %s to cpu %d: %w", pid, ifname, cpu, err)
		}
	}
	return nil
}
