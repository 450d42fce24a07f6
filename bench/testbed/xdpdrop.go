package testbed

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// AttachXDPDrop attaches, in native mode, an XDP program that drops every packet to
// ifname in ns: a benchmark sink that costs the kernel almost nothing per packet. The
// veth still counts the packets it received (NS.LinkStats rx), which is how a benchmark
// measures delivery. Close the returned Closer to detach (the program also goes away with
// the namespace's interfaces).
func AttachXDPDrop(ns *NS, ifname string) (io.Closer, error) {
	return attachXDPVerdict(ns, ifname, "xlvs_sink_drop", 1) // XDP_DROP
}

// AttachXDPPass attaches, in native mode, an XDP program that passes every packet to
// ifname in ns: the kernel's own path with only what having an XDP program costs on
// that interface (on a veth: NAPI, GRO, its peer's TSO turned off, each frame made an
// xdp_buff). Close the returned Closer to detach.
func AttachXDPPass(ns *NS, ifname string) (io.Closer, error) {
	return attachXDPVerdict(ns, ifname, "xlvs_pass", 2) // XDP_PASS
}

// attachXDPVerdict attaches to ifname in ns a program that returns verdict for every
// packet.
func attachXDPVerdict(ns *NS, ifname, name string, verdict int32) (io.Closer, error) {
	idx, err := ns.Ifindex(ifname)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    name,
		Type:    ebpf.XDP,
		License: "MIT",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, verdict),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp program %s: %w", name, err)
	}
	defer prog.Close() // the link holds its own reference
	var l link.Link
	err = ns.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach xdp program %s to %s in %s: %w", name, ifname, ns.Name(), err)
	}
	return l, nil
}
