package dataplane

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"xlvs/bpf"
)

func TestPortMACs(t *testing.T) {
	own := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	vmac := net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, 0x07}
	dev := func(i int, mac net.HardwareAddr) netlink.Link {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: i, HardwareAddr: mac}}
	}
	mv := func(i, parent int, mac net.HardwareAddr) netlink.Link {
		return &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Index: i, ParentIndex: parent, HardwareAddr: mac}}
	}
	vlan := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Index: 9, ParentIndex: 2, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x09}}}
	ls := []netlink.Link{
		dev(1, nil), // lo-like: no address
		mv(7, 2, vmac),
		dev(2, own),
		dev(3, net.HardwareAddr{2, 0, 0, 0, 0, 0x03}),
		mv(6, 3, net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, 0x08}), // another interface's
		mv(5, 2, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x05}),
		mv(8, 2, own), // a macvlan sharing the lower's address: once
		vlan,          // a VLAN with an address of its own: the kernel takes tagged frames to it
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Index: 4, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x04}}}
	port := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 10, MasterIndex: 4, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x0a}}}
	ls = append(ls, br, port)
	macs, dropped := portMACs(ls, 2)
	want := fmt.Sprint([]net.HardwareAddr{own, {0x02, 0, 0, 0, 0, 0x05}, vmac, {2, 0, 0, 0, 0, 0x09}})
	if got := fmt.Sprint(macs); got != want || dropped != 0 {
		t.Fatalf("portMACs(2) = %s, %d dropped; want %s, 0 (own first, then macvlans and VLANs by ifindex)", got, dropped, want)
	}
	if got, want := fmt.Sprint(portMACs(ls, 10)), fmt.Sprint([]net.HardwareAddr{{2, 0, 0, 0, 0, 0x0a}, {2, 0, 0, 0, 0, 0x04}}, 0); got != want {
		t.Fatalf("bridge port: %s, want %s (own, then the bridge's)", got, want)
	}
	if macs, _ := portMACs(ls, 1); macs != nil {
		t.Fatalf("interface without a MAC: %v, want none (filter off)", macs)
	}
	if macs, _ := portMACs(ls, 42); macs != nil {
		t.Fatalf("unknown interface: %v, want none", macs)
	}
	many := []netlink.Link{dev(2, own)}
	for i := range bpf.MaxMACs + 2 {
		many = append(many, mv(100+i, 2, net.HardwareAddr{0x02, 1, 0, 0, 0, byte(i)}))
	}
	macs, dropped = portMACs(many, 2)
	if len(macs) != bpf.MaxMACs || dropped != 3 {
		t.Fatalf("%d macvlans: %d taken, %d dropped; want %d and 3", bpf.MaxMACs+2, len(macs), dropped, bpf.MaxMACs)
	}
}
