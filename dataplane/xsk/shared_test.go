package xsk

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xlvs/dataplane/xsk/xsktest"
)

// sender sends numbered frames out of ifc through a packet socket: destination dst,
// ethertype 0x88b5 (local experimental: no stack takes it), the number at byte 14 and
// a pattern after it.
type sender struct {
	fd       int
	sa       unix.SockaddrLinklayer
	buf      []byte
	src, dst []byte
}

func newSender(t *testing.T, ifc, dst netlink.Link) *sender {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &sender{fd: fd, sa: unix.SockaddrLinklayer{Ifindex: ifc.Attrs().Index, Halen: 6},
		buf: make([]byte, 200), src: ifc.Attrs().HardwareAddr, dst: dst.Attrs().HardwareAddr}
}

func (s *sender) send(t *testing.T, seq uint32) {
	t.Helper()
	copy(s.buf[0:6], s.dst)
	copy(s.buf[6:12], s.src)
	s.buf[12], s.buf[13] = 0x88, 0xb5
	binary.BigEndian.PutUint32(s.buf[14:], seq)
	for i := 18; i < len(s.buf); i++ {
		s.buf[i] = byte(seq) + byte(i)
	}
	if err := unix.Sendto(s.fd, s.buf, 0, &s.sa); err != nil {
		t.Fatalf("send frame %d: %v", seq, err)
	}
}

// drain receives until want frames arrived or 5 s passed, checks each frame's pattern,
// frees it, and returns the numbers seen in order.
func drain(t *testing.T, s Socket, want int) []uint32 {
	t.Helper()
	var seen []uint32
	descs := make([]Desc, 64)
	for deadline := time.Now().Add(5 * time.Second); len(seen) < want && time.Now().Before(deadline); {
		n := s.Receive(descs)
		if n == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		for _, d := range descs[:n] {
			f := s.Umem()[d.Addr : d.Addr+uint64(d.Len)]
			switch {
			case len(f) < 14 || f[12] != 0x88 || f[13] != 0xb5:
				// The kernel's own frames on the fresh link (IPv6 neighbour discovery,
				// MLD): the program redirects everything. Not ours to count.
			case len(f) != 200:
				t.Errorf("test frame of %d bytes at %#x, sent 200", len(f), d.Addr)
			default:
				seq := binary.BigEndian.Uint32(f[14:])
				for i := 18; i < len(f); i++ {
					if f[i] != byte(seq)+byte(i) {
						t.Errorf("frame %d: byte %d is %d, want %d", seq, i, f[i], byte(seq)+byte(i))
						break
					}
				}
				seen = append(seen, seq)
			}
			s.Free(d.Addr)
		}
		s.Refill()
	}
	return seen
}

// owned counts a shared socket's frames: on the free list, posted to the fill ring, and
// received but not taken yet. With nothing in flight on TX they add up to all frames.
func owned(s *sharedSocket) (free, fill, rx int) {
	return len(s.free.addrs), int(s.fill.local - *s.fill.cons), int(*s.rx.prod - s.rx.local)
}

// TestSharedHandover hands a shared socket over in the middle of its life, as a
// restarting xlvsd hands it to its successor: frames sent while nobody owns it wait in
// the RX ring and are received, whole and in order, by the adopter, which carries on at
// the rings' indices (receive, transmit, completion) without losing or duplicating a
// frame.
func TestSharedHandover(t *testing.T) {
	needRoot(t)
	inNetns(t, func(a, b netlink.Link) {
		cfg := Config{Frames: 512, FrameSize: 2048, FillRing: 128, CompRing: 128, RxRing: 128, TxRing: 128, Copy: true}
		s1, err := OpenShared(a.Attrs().Index, 0, cfg)
		if err != nil {
			t.Error(err)
			return
		}
		m := xsktest.RedirectAll(t, a.Attrs().Index)
		if err := m.Put(uint32(0), uint32(s1.FD())); err != nil {
			t.Errorf("register the socket: %v", err)
			s1.Close()
			return
		}
		snd := newSender(t, b, a)
		// Move the rings well past their first lap before the handover.
		next := uint32(0)
		for round := 0; round < 5; round++ {
			for i := 0; i < 100; i++ {
				snd.send(t, next)
				next++
			}
			if got := drain(t, s1, 100); len(got) != 100 {
				t.Errorf("before the handover: received %d of 100", len(got))
			}
		}
		// Leave some frames with the kernel on TX, and some free.
		tx := make([]Desc, 40)
		for i := range tx {
			addr, _ := s1.Alloc()
			copy(s1.Umem()[addr+XDPPacketHeadroom:], snd.buf)
			tx[i] = Desc{Addr: addr + XDPPacketHeadroom, Len: 60}
		}
		if n, err := s1.Transmit(tx); n != len(tx) || err != nil {
			t.Errorf("transmit before the handover: %d, %v", n, err)
		}

		sockFD, memFD, info := s1.(Shareable).Handover()
		sd, err1 := unix.FcntlInt(uintptr(sockFD), unix.F_DUPFD_CLOEXEC, 3)
		md, err2 := unix.FcntlInt(uintptr(memFD), unix.F_DUPFD_CLOEXEC, 3)
		if err1 != nil || err2 != nil {
			t.Errorf("dup: %v %v", err1, err2)
			return
		}
		done1 := s1.Stats().TxCompleted // what the predecessor took back itself
		s1.Close()                      // the predecessor exits; the duplicates keep the socket

		// Nobody owns the socket: these wait in the RX ring (fewer than the fill ring posted).
		const waiting = 100
		first := next
		for i := 0; i < waiting; i++ {
			snd.send(t, next)
			next++
		}
		s2, err := Adopt(sd, md, info)
		if err != nil {
			t.Errorf("adopt: %v", err)
			unix.Close(sd)
			unix.Close(md)
			return
		}
		defer s2.Close()
		got := drain(t, s2, waiting)
		if len(got) != waiting {
			t.Errorf("after the handover: received %d of the %d frames sent meanwhile", len(got), waiting)
		}
		for i, seq := range got {
			if seq != first+uint32(i) {
				t.Errorf("frame %d after the handover is number %d, want %d (lost, duplicated or reordered)", i, seq, first+uint32(i))
				break
			}
		}
		if k := s2.Stats().KernelDropped; k != 0 {
			t.Errorf("kernel dropped %d frames", k)
		}
		// Carry on: the TX frames the predecessor queued complete to the adopter, and its
		// own transmit works.
		for i := range tx {
			addr, ok := s2.Alloc()
			if !ok {
				t.Fatal("adopter: no free frame")
			}
			tx[i] = Desc{Addr: addr + XDPPacketHeadroom, Len: 60}
		}
		if n, err := s2.Transmit(tx); n != len(tx) || err != nil {
			t.Errorf("transmit after the handover: %d, %v", n, err)
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			s2.Complete()
			if free, fill, rx := owned(s2.(*sharedSocket)); free+fill+rx == cfg.Frames {
				break
			}
		}
		free, fill, rx := owned(s2.(*sharedSocket))
		if free+fill+rx != cfg.Frames {
			t.Errorf("frames: %d free + %d in the fill ring + %d received = %d, want all %d (leaked or doubled)", free, fill, rx, free+fill+rx, cfg.Frames)
		}
		if c := s2.Stats().TxCompleted; done1+c != 2*uint64(len(tx)) {
			t.Errorf("%d transmits completed (%d by the predecessor, %d by the adopter), want %d", done1+c, done1, c, 2*len(tx))
		}
		// And it still receives.
		for i := 0; i < 10; i++ {
			snd.send(t, next)
			next++
		}
		if got := drain(t, s2, 10); len(got) != 10 {
			t.Errorf("adopter's later receive: %d of 10", len(got))
		}
		// The ring work allocates nothing (the per-packet path's calls, a frame each way).
		descs, one := make([]Desc, 8), make([]Desc, 1)
		if n := testing.AllocsPerRun(200, func() {
			s2.Receive(descs)
			if a, ok := s2.Alloc(); ok {
				copy(s2.Umem()[a+XDPPacketHeadroom:], snd.buf[:60])
				one[0] = Desc{Addr: a + XDPPacketHeadroom, Len: 60}
				s2.Transmit(one)
			}
			s2.Complete()
			s2.Refill()
		}); n != 0 {
			t.Errorf("%v allocations per round of Receive, Transmit, Complete, Refill; want 0", n)
		}
	})
}

// TestAdoptRefuses: what cannot be a handed-over socket is refused with the reason, and
// the descriptors stay the caller's.
func TestAdoptRefuses(t *testing.T) {
	needRoot(t)
	cfg := Config{Frames: 256, FrameSize: 2048, FillRing: 64, CompRing: 64, RxRing: 64, TxRing: 64, Copy: true}
	inNetns(t, func(a, _ netlink.Link) {
		s, err := OpenShared(a.Attrs().Index, 0, cfg)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		sockFD, memFD, info := s.(Shareable).Handover()
		udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(udp)
		small := info
		small.Config.Frames = 128
		bad := info
		bad.Free = append([]uint64{3}, info.Free...)
		bad.Free = bad.Free[:len(info.Free)]
		for _, c := range []struct {
			name     string
			sock, mm int
			info     ShareInfo
			want     string
		}{
			{"not AF_XDP", udp, memFD, info, "is not an AF_XDP socket"},
			{"UMEM size", sockFD, memFD, small, "the UMEM memfd has 524288 bytes, want 262144"},
			{"free frame", sockFD, memFD, bad, "free frame 0x3 is not a frame's base address"},
		} {
			if _, err := Adopt(c.sock, c.mm, c.info); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: Adopt error %v, want one saying %q", c.name, err, c.want)
			}
		}
		// The socket is still whole: the refused adoptions took nothing.
		if _, err := unix.GetsockoptInt(sockFD, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			t.Errorf("socket descriptor closed by a refused Adopt: %v", err)
		}
	})
}

// TestOpenChooses: Open gives a shared socket (Shareable) unless Config.Private asks
// for asavie/xdp's, which cannot be handed over.
func TestOpenChooses(t *testing.T) {
	needRoot(t)
	inNetns(t, func(a, b netlink.Link) {
		cfg := Config{Frames: 256, FrameSize: 2048, FillRing: 64, CompRing: 64, RxRing: 64, TxRing: 64, Copy: true}
		for _, c := range []struct {
			ifc     netlink.Link
			private bool
		}{{a, false}, {b, true}} {
			cfg.Private = c.private
			s, err := Open(c.ifc.Attrs().Index, 0, cfg)
			if err != nil {
				t.Errorf("Private %v: %v", c.private, err)
				return
			}
			if _, shareable := s.(Shareable); shareable == c.private {
				t.Errorf("Private %v: Open gave a %T (shareable %v)", c.private, s, shareable)
			}
			s.Close()
		}
	})
}
