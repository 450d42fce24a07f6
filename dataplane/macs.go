package dataplane

import (
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"

	"xlvs/bpf"
)

// portMACs returns the destination MACs the XDP program on interface ifindex takes
// frames for (bpf.Port.SetMACs): the interface's own address, then those of the macvlan,
// macvtap and 802.1Q VLAN interfaces of this network namespace whose lower device it is
// (keepalived's use_vmac puts the VRRP virtual MAC 00:00:5e:00:01:VRID on a macvlan, and
// frames to it arrive on the lower device; the kernel accepts a tagged frame to a VLAN
// interface's own address, vlan_do_receive, and the program parses one tag), by ifindex,
// and the address of the bridge it is a port of, at most bpf.MaxMACs; dropped says how
// many of those did not fit. An interface without
// a 6-byte address gets none: the filter is off.
func portMACs(ls []netlink.Link, ifindex int) (macs []net.HardwareAddr, dropped int) {
	var own net.HardwareAddr
	master := 0
	type child struct {
		index int
		mac   net.HardwareAddr
	}
	var children []child
	for _, l := range ls {
		a := l.Attrs()
		if a.Index == ifindex {
			own, master = a.HardwareAddr, a.MasterIndex
			continue
		}
		if t := l.Type(); (t == "macvlan" || t == "macvtap" || t == "vlan") && a.ParentIndex == ifindex && len(a.HardwareAddr) == 6 && a.HardwareAddr[0]&1 == 0 {
			children = append(children, child{a.Index, a.HardwareAddr})
		}
	}
	if len(own) != 6 {
		return nil, 0
	}
	// A bridge port: the bridge's own address is the host's on that segment.
	for _, l := range ls {
		if a := l.Attrs(); master != 0 && a.Index == master && l.Type() == "bridge" && len(a.HardwareAddr) == 6 {
			children = append(children, child{a.Index, a.HardwareAddr})
		}
	}
	slices.SortFunc(children, func(a, b child) int { return a.index - b.index })
	macs = []net.HardwareAddr{own}
	for _, c := range children {
		if slices.ContainsFunc(macs, func(m net.HardwareAddr) bool { return string(m) == string(c.mac) }) {
			continue
		}
		if len(macs) == bpf.MaxMACs {
			dropped++
			continue
		}
		macs = append(macs, c.mac)
	}
	return macs, dropped
}

// setMACs gives every attached XDP program its interface's MACs (portMACs) from the
// link list ls. New calls it once the programs are attached, the route watcher whenever
// links change (so a VRRP interface created after xlvsd starts is taken too); the calls
// never overlap. Unchanged sets are not rewritten.
func (d *Dataplane) setMACs(ls []netlink.Link) error {
	d.xdpMu.Lock()
	defer d.xdpMu.Unlock()
	if len(d.macKeys) != len(d.xdp) {
		d.macKeys = make([]string, len(d.xdp))
	}
	for i, xp := range d.xdp {
		if xp == nil {
			continue // loading (deferredPort): Activate gives it its MACs
		}
		macs, dropped := portMACs(ls, int(d.ports[i].Ifindex))
		key := fmt.Sprint(macs)
		if key == d.macKeys[i] {
			continue
		}
		if dropped > 0 {
			d.log.Warn("too many macvlan interfaces on a managed interface: frames to the others' MACs go to the kernel",
				"interface", d.ports[i].Name, "taken", len(macs), "left_out", dropped)
		}
		if err := xp.SetMACs(macs); err != nil {
			return fmt.Errorf("interface %s: %w", d.ports[i].Name, err)
		}
		d.macKeys[i] = key
	}
	return nil
}

// readMACs lists the links and sets every program's MACs (New, once attached).
func (d *Dataplane) readMACs() error {
	ls, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links for the XDP programs' destination MACs: %w", err)
	}
	return d.setMACs(ls)
}
