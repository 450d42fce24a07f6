package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
	"xlvs/bpf"
	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
)

// l2fwd is the AF_XDP copy-path limit: the repository's XDP classifier redirects the
// VIP's UDP packets on Ext to an AF_XDP socket; one goroutine, pinned to a CPU, copies
// each frame into Int's socket, rewrites both MACs and the IPv4 destination (to the sink,
// with RFC 1624 checksum updates) and transmits. No table lookup, no state: what is left
// of xlvs's cost when the balancing is taken away.
type l2fwd struct {
	cls    *bpf.Classifier
	port   *bpf.Port
	rx, tx xsk.Socket
	done   chan error
	cancel context.CancelFunc
	tid    chan int // the forwarding thread's id, sent once it is pinned
	tidV   int
}

// threadID returns the forwarding thread's id (0 if the loop failed to start).
func (f *l2fwd) threadID() int {
	if f.tidV == 0 {
		select {
		case f.tidV = <-f.tid:
		case <-time.After(5 * time.Second):
		}
	}
	return f.tidV
}

// counters returns both sockets' counters, "ext." for the receiving socket and "int."
// for the transmitting one, as daemonCounters names xlvsd's.
func (f *l2fwd) counters() (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, s := range []struct {
		prefix string
		sock   xsk.Socket
	}{{"ext.", f.rx}, {"int.", f.tx}} {
		for k, v := range s.sock.Stats().Map() {
			out[s.prefix+k] = v
		}
	}
	return out, nil
}

func startL2Fwd(ctx context.Context, bed *testbed.Bed, vip netip.AddrPort, cpu int, cfg xsk.Config, mode bpf.Mode) (*l2fwd, error) {
	f := &l2fwd{done: make(chan error, 1), tid: make(chan int, 1)}
	sink := bed.Reals[0]
	err := bed.Director.Do(func() error {
		var err error
		if f.cls, err = bpf.New(); err != nil {
			return err
		}
		if err = f.cls.SetServices([]bpf.Key{{Addr: vip.Addr(), Port: vip.Port(), Proto: bpf.ProtoUDP}}); err != nil {
			return err
		}
		if f.port, err = f.cls.Attach(bed.Ext.Ifindex, mode); err != nil {
			return err
		}
		if f.rx, err = xsk.Open(bed.Ext.Ifindex, 0, cfg); err != nil {
			return err
		}
		if err = f.port.RegisterSocket(0, f.rx.FD()); err != nil {
			return err
		}
		f.tx, err = xsk.Open(bed.Int.Ifindex, 0, cfg)
		return err
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start l2fwd: %w", err), f.close())
	}
	ctx, f.cancel = context.WithCancel(ctx)
	dst := [6]byte(sink.MAC)
	src := [6]byte(bed.Int.MAC)
	to := sink.Addr.As16()
	go func() { f.done <- forward(ctx, f.rx, f.tx, cpu, src, dst, to, f.tid) }()
	return f, nil
}

// forward is the l2fwd loop. It allocates nothing per packet.
func forward(ctx context.Context, rx, tx xsk.Socket, cpu int, srcMAC, dstMAC [6]byte, dst [16]byte, tid chan<- int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid <- unix.Gettid()
	if cpu >= 0 {
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err == nil {
			defer unix.SchedSetaffinity(0, &old)
		}
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("l2fwd: pin to cpu %d: %w", cpu, err)
		}
	}
	in := make([]xsk.Desc, 64)
	out := make([]xsk.Desc, 64)
	pfd := []unix.PollFd{{Fd: int32(rx.FD()), Events: unix.POLLIN}}
	rumem, tumem := rx.Umem(), tx.Umem()
	done := ctx.Done()
	for {
		select {
		case <-done:
			return nil
		default:
		}
		tx.Complete()
		rx.Refill()
		n := rx.Receive(in)
		if n == 0 {
			// Frames the kernel pushed back on an earlier kick stay in the TX ring until
			// someone calls sendto again: kick before sleeping, or a quiet moment strands
			// them (and with them the frames this loop can allocate).
			_, _ = tx.Transmit(nil)
			_, _ = unix.Poll(pfd, 1)
			continue
		}
		m := 0
		for _, d := range in[:n] {
			a, ok := tx.Alloc()
			if ok {
				fr := tumem[a+xsk.XDPPacketHeadroom : a+xsk.XDPPacketHeadroom+uint64(d.Len)]
				copy(fr, rumem[d.Addr:d.Addr+uint64(d.Len)])
				if rewriteDst4(fr, srcMAC, dstMAC, dst) {
					out[m] = xsk.Desc{Addr: a + xsk.XDPPacketHeadroom, Len: d.Len}
					m++
				} else {
					tx.Free(a)
				}
			}
			rx.Free(d.Addr)
		}
		sent, _ := tx.Transmit(out[:m])
		for _, d := range out[sent:m] {
			tx.Free(d.Addr)
		}
	}
}

// rewriteDst4 sets the MACs and the IPv4 destination of an Ethernet/IPv4/UDP-or-TCP frame
// with incremental checksum updates; false if the frame is not one.
func rewriteDst4(fr []byte, srcMAC, dstMAC [6]byte, dst [16]byte) bool {
	var info packet.Info
	if packet.Parse(fr, &info) != packet.ResultOK || info.Family != 4 {
		return false
	}
	packet.SetEthernet(fr, dstMAC, srcMAC)
	ip := packet.IPv4(fr[info.L3Off:])
	old := ip.DestinationAddress()
	ip.SetChecksum(packet.UpdateChecksumAddr(ip.Checksum(), old[12:], dst[12:]))
	l4 := fr[info.L4Off:]
	off := 16 // TCP checksum
	if info.Proto == packet.ProtoUDP {
		off = 6
	}
	if cs := uint16(l4[off])<<8 | uint16(l4[off+1]); !(info.Proto == packet.ProtoUDP && cs == 0) {
		cs = packet.UpdateChecksumAddr(cs, old[12:], dst[12:])
		if info.Proto == packet.ProtoUDP && cs == 0 {
			cs = 0xFFFF
		}
		l4[off], l4[off+1] = byte(cs>>8), byte(cs)
	}
	ip.SetDestinationAddress(dst)
	return true
}

// stop ends the loop and releases everything (the sockets' ring mappings stay, see
// dataplane/xsk).
func (f *l2fwd) stop() error {
	f.cancel()
	err := <-f.done
	return errors.Join(err, f.close())
}

func (f *l2fwd) close() error {
	var errs []error
	for _, c := range []interface{ Close() error }{f.rx, f.tx, f.port, f.cls} {
		if c != nil && !isNilCloser(c) {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *bpf.Port:
		return v == nil
	case *bpf.Classifier:
		return v == nil
	}
	return false
}
