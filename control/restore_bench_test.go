package control

import (
	"fmt"
	"net/netip"
	"testing"

	"xlvs/control/api"
)

// BenchmarkRestoreOneService: a restore that adds one service and n servers to it (each
// add calls the scheduler's add_dest hook, a Rebuild over the list so far).
func BenchmarkRestoreOneService(b *testing.B) {
	for _, sched := range []string{"wrr", "rr", "mh"} {
		for _, n := range []int{100, 1000, 4000} {
			b.Run(fmt.Sprintf("%s/%d", sched, n), func(b *testing.B) {
				s := svc("tcp", "198.18.1.100", 80)
				s.Scheduler = sched
				req := &api.Request{Op: api.OpRestore, Batch: []api.Request{{Op: api.OpClear}, {Op: api.OpAddService, Service: s}}}
				for i := range n {
					a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
					req.Batch = append(req.Batch, api.Request{Op: api.OpAddDest, Service: s, Dest: &api.Dest{Addr: a, Port: 80, Method: api.MethodMasq, Weight: int32(1 + i%7)}})
				}
				d := newDaemonOpts(b, Options{MaxServices: 8, MaxDests: 2 * n})
				for b.Loop() {
					if e := d.change(req); e != nil {
						b.Fatal(e.Message)
					}
				}
			})
		}
	}
}

// BenchmarkRestoreManyServices: a restore of 500 services with 8 servers each.
func BenchmarkRestoreManyServices(b *testing.B) {
	for _, sched := range []string{"wrr", "mh"} {
		b.Run(sched, func(b *testing.B) {
			req := &api.Request{Op: api.OpRestore, Batch: []api.Request{{Op: api.OpClear}}}
			for i := range 500 {
				s := svc("tcp", "198.18.1.100", uint16(1000+i))
				s.Scheduler = sched
				req.Batch = append(req.Batch, api.Request{Op: api.OpAddService, Service: s})
				for j := range 8 {
					a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
					req.Batch = append(req.Batch, api.Request{Op: api.OpAddDest, Service: s, Dest: &api.Dest{Addr: a, Port: uint16(80 + j), Method: api.MethodMasq, Weight: int32(1 + j%3)}})
				}
			}
			d := newDaemonOpts(b, Options{MaxServices: 1000, MaxDests: 8000})
			for b.Loop() {
				if e := d.change(req); e != nil {
					b.Fatal(e.Message)
				}
			}
		})
	}
}
