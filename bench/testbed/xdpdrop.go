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
	idx, err := ns.Ifindex(ifname)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "xlvs_sink_drop",
		Type:    ebpf.XDP,
		License: "MIT",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 1), // XDP_DROP
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp drop program: %w", err)
	}
	defer prog.Close() // the link holds its own reference
	var l link.Link
	err = ns.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach xdp drop to %s in %s: %w", ifname, ns.Name(), err)
	}
	return l, nil
}
