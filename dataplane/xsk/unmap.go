package xsk

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"
)

// asavie/xdp's Close closes the socket's descriptor and unmaps the UMEM but leaves its
// four ring mappings in place. Each mapping holds the socket's file, so the kernel does
// not release the socket (and the queue it is bound to) until the process exits: a
// successor xlvsd (or this process) could not bind the queue before that. ringMaps
// finds the mappings at Open, and Close unmaps them after asavie's Close, which lets the
// kernel release the socket there and then (it frees the queue from a work queue soon
// after).

// ringMap is one ring mapping of a socket.
type ringMap struct {
	addr, size uintptr
}

// ringMaps returns the ring mappings of x: each ring's producer pointer less the
// kernel's offset of the producer within the ring (XDP_MMAP_OFFSETS) is where asavie
// mapped it, and its size is what asavie asked for (the descriptors' offset plus the
// ring's descriptors).
func ringMaps(x *xdp.Socket, cfg Config) ([]ringMap, error) {
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(x.FD()), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return nil, fmt.Errorf("xsk: read the ring offsets: %w", errno)
	}
	v := reflect.ValueOf(x).Elem()
	rings := []struct {
		field string
		off   unix.XDPRingOffset
		n     int
		desc  uintptr
	}{
		{"fillRing", off.Fr, cfg.FillRing, 8},
		{"completionRing", off.Cr, cfg.CompRing, 8},
		{"rxRing", off.Rx, cfg.RxRing, unsafe.Sizeof(xdp.Desc{})},
		{"txRing", off.Tx, cfg.TxRing, unsafe.Sizeof(xdp.Desc{})},
	}
	var out []ringMap
	for _, r := range rings {
		f := v.FieldByName(r.field)
		if !f.IsValid() || f.Kind() != reflect.Struct || f.NumField() < 1 || f.Type().Field(0).Name != "Producer" || f.Field(0).Type() != reflect.TypeOf((*uint32)(nil)) {
			return nil, errors.New("xsk: asavie/xdp's " + r.field + " has no Producer *uint32 first: pin github.com/asavie/xdp v0.3.3")
		}
		prod := *(**uint32)(unsafe.Pointer(f.Field(0).UnsafeAddr()))
		if prod == nil {
			continue // a ring asavie did not map
		}
		addr := uintptr(unsafe.Pointer(prod)) - uintptr(r.off.Producer)
		if addr%uintptr(unix.Getpagesize()) != 0 {
			return nil, fmt.Errorf("xsk: asavie/xdp's %s is not where its mapping would start (%#x): pin github.com/asavie/xdp v0.3.3", r.field, addr)
		}
		out = append(out, ringMap{addr: addr, size: uintptr(r.off.Desc) + uintptr(r.n)*r.desc})
	}
	return out, nil
}

// unmapRings unmaps the ring mappings; nothing may touch the rings afterwards.
func unmapRings(maps []ringMap) error {
	var errs []error
	for _, m := range maps {
		if _, _, errno := unix.Syscall(unix.SYS_MUNMAP, m.addr, m.size, 0); errno != 0 {
			errs = append(errs, fmt.Errorf("xsk: unmap a ring of %d bytes at %#x: %w", m.size, m.addr, errno))
		}
	}
	return errors.Join(errs...)
}
