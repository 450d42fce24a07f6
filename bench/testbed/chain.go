package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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
}

// chainSeq numbers the chains of this process; with the pid it makes interface names
// unique on the machine, so that NAPI threads ("napi/IFNAME-ID") can be told apart.
var chainSeq atomic.Uint64

// NewChain builds the benchmark topology: generator ─veth─ director ─veth─ sink, three
// namespaces and no bridge, so that every packet crosses exactly two veth pairs. It is a
// NATTwoArm bed with one real server: Client is the generator (198.18.1.2), Ext the
// director's generator side (198.18.1.1, VIP 198.18.1.100), Int its sink side
// (198.18.2.1), Reals[0] the sink (198.18.2.11); Switch is nil. Interface names are
// unique on the machine ("g", "e", "i", "s" followed by the pid and a counter in base
// 36) so NAPI threads can be found by name.
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
	b := &Bed{Layout: NATTwoArm}
	err := buildChain(b, opts)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("build chain: %w", err), b.Close())
	}
	return b, nil
}

// chainNames returns the four interface names of a chain.
func chainNames() (gen, ext, int_, sink string) {
	n := chainSeq.Add(1)
	suffix := strconv.FormatInt(int64(os.Getpid()), 36) + "_" + strconv.FormatUint(n, 36)
	return "g" + suffix, "e" + suffix, "i" + suffix, "s" + suffix
}

func buildChain(b *Bed, opts ChainOptions) error {
	bl := &builder{bed: b, opts: Options{Layout: NATTwoArm, Reals: 1, Prefix: opts.Prefix}}
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
	bl.realNS = []*NS{sinkNS}
	bl.plan()
	gen, ext, in, sink := chainNames()
	b.Client.Name, b.Client.Iface = "gen", gen
	b.Ext.Iface, b.Int.Iface = ext, in
	b.Reals[0].Name, b.Reals[0].Iface = "sink", sink

	// As builder.settings, without the switch.
	if err := setSysctls(b.Director, directorSysctls); err != nil {
		return err
	}
	for _, h := range bl.senders() {
		if err := setSysctls(h.NS, hostSysctls); err != nil {
			return err
		}
	}
	if err := bl.veth(b.Client.NS, gen, b.Client.MAC, b.Director, ext, b.Ext.MAC); err != nil {
		return err
	}
	if err := bl.veth(b.Director, in, b.Int.MAC, sinkNS, sink, b.Reals[0].MAC); err != nil {
		return err
	}
	for _, h := range []*Host{b.Client, b.Ext, b.Int, b.Reals[0]} {
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
	for _, n := range []struct {
		h    *Host
		addr netip.Addr
		mac  net.HardwareAddr
	}{
		{b.Client, b.Ext.Addr, b.Ext.MAC},
		{b.Client, b.VIP, b.Ext.MAC},
		{b.Ext, b.Client.Addr, b.Client.MAC},
		{b.Int, b.Reals[0].Addr, b.Reals[0].MAC},
		{b.Reals[0], b.Int.Addr, b.Int.MAC},
	} {
		if err := staticNeigh(n.h, n.addr, n.mac); err != nil {
			return err
		}
	}
	if opts.ThreadedNAPI {
		for _, h := range []*Host{b.Client, b.Ext, b.Int, b.Reals[0]} {
			if err := SetGRO(h.NS, h.Iface, true); err != nil {
				return err
			}
			if err := SetThreadedNAPI(h.NS, h.Iface, true); err != nil {
				return err
			}
		}
	}
	return bl.waitReady()
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

// PinNAPI pins every NAPI thread of ifname to cpu. It fails if the interface has none
// (threaded NAPI off, or GRO and XDP both off so the veth has no NAPI instance).
func PinNAPI(ifname string, cpu int) error {
	pids, err := NAPIThreads(ifname)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("pin napi of %s to cpu %d: no thread named napi/%s-*: turn threaded napi on first", ifname, cpu, ifname)
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, pid := range pids {
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			return fmt.Errorf("pin napi thread %d of %s to cpu %d: %w", pid, ifname, cpu, err)
		}
	}
	return nil
}
