// Package xsktest helps tests and benchmarks that run real AF_XDP sockets on a veth: it
// attaches the smallest XDP program that hands an interface's frames to them.
//
// Conventions: helpers take a testing.TB, end the test on failure, and leave what they
// make to the test's cleanups. Nothing here is used outside tests.
package xsktest

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// RedirectAll attaches to ifindex an XDP program that redirects every frame to the socket
// of its RX queue in a fresh XSKMAP of 4 queues (XDP_PASS when the queue has none) and
// returns the map: the caller puts each socket's descriptor at its queue. Map, program
// and link go at the test's end.
func RedirectAll(tb testing.TB, ifindex int) *ebpf.Map {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		tb.Fatalf("XSKMAP: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // xdp_md.rx_queue_index
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the queue has no socket
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		tb.Fatalf("load the redirect program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex})
	if err != nil {
		tb.Fatalf("attach XDP: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return m
}
