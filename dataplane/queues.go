package dataplane

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// QueueCountError is New's refusal of more queues than an interface has: an AF_XDP
// socket cannot bind to a queue the device does not have, and the kernel's answer to
// that, EINVAL from bind(2), names neither count.
type QueueCountError struct {
	Interface string
	Want      int // queues asked for (Config.Queues)
	Have      int // RX queues the interface has
}

func (e *QueueCountError) Error() string {
	s := "s"
	if e.Have == 1 {
		s = ""
	}
	return fmt.Sprintf("open %d queues on %s: the interface has %d RX queue%s", e.Want, e.Interface, e.Have, s)
}

// QueueMismatchError is New's refusal of interfaces with different numbers of RX queues
// (Config.Queues 0 takes each interface's own): worker q transmits only on queue q of
// each interface (its sockets; xsk.Socket is single-owner), so a worker whose queue one
// interface lacks could not forward there and would drop every such packet (counted as
// not_managed, measured: half of the flows with 2 queues against 1).
type QueueMismatchError struct {
	Interfaces []string
	Queues     []int // RX queues of each, in order
}

func (e *QueueMismatchError) Error() string {
	var b strings.Builder
	for i, name := range e.Interfaces {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", name, e.Queues[i])
	}
	return fmt.Sprintf("interfaces have different numbers of RX queues (%s): each worker sends on its own queue of every interface, so give them the same number (ethtool -L IFACE combined N) or open as many as the smallest has (and steer all traffic to those)", b.String())
}

// sameQueues refuses queue counts that differ between interfaces.
func sameQueues(names []string, queues []int) error {
	for _, q := range queues[1:] {
		if q != queues[0] {
			return &QueueMismatchError{Interfaces: names, Queues: queues}
		}
	}
	return nil
}

// queuesFor is how many queues of l to open when want were asked for (0 = all of them):
// want itself, refused with a *QueueCountError when l has fewer RX queues.
func queuesFor(l netlink.Link, want int) (int, error) {
	have, known := rxQueues(l)
	switch {
	case want == 0:
		return have, nil
	case known && want > have:
		return 0, &QueueCountError{Interface: l.Attrs().Name, Want: want, Have: have}
	}
	return want, nil
}

// rxQueues is how many RX queues l has now: the kernel's real_num_rx_queues, which
// bounds the queue an AF_XDP socket binds to (net/xdp/xsk.c, xsk_reg_pool_at_qid, in
// torvalds/linux 471864ac8a32: EINVAL from queue max(real rx, real tx) on; a queue with
// no RX side receives nothing, so xlvs counts RX queues).
//
// /sys/class/net/NAME/queues/rx-N lists them, but sysfs shows the network namespace it
// was mounted in (`ip netns exec` mounts the namespace's own, setns(2) alone does not):
// it is believed only when NAME there has l's ifindex and MAC address. Otherwise the
// count is ethtool's channels (ETHTOOL_GCHANNELS, asked in the calling thread's
// namespace): RX-only plus combined channels. Netlink's IFLA_NUM_RX_QUEUES is not used:
// it counts the queues allocated (a veth has one per possible CPU), not those in use.
// When neither source answers, rxQueues returns 1, unknown.
func rxQueues(l netlink.Link) (n int, known bool) {
	if n := sysfsRXQueues(l.Attrs()); n > 0 {
		return n, true
	}
	if n := ethtoolRXChannels(l.Attrs().Name); n > 0 {
		return n, true
	}
	return 1, false
}

func sysfsRXQueues(a *netlink.LinkAttrs) int {
	dir := "/sys/class/net/" + a.Name
	idx, err := os.ReadFile(dir + "/ifindex")
	if err != nil || strings.TrimSpace(string(idx)) != strconv.Itoa(a.Index) {
		return 0
	}
	if mac, err := os.ReadFile(dir + "/address"); err != nil || strings.TrimSpace(string(mac)) != a.HardwareAddr.String() {
		return 0
	}
	ents, err := os.ReadDir(dir + "/queues")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), "rx-"); ok {
			if _, err := strconv.Atoi(rest); err == nil {
				n++
			}
		}
	}
	return n
}

// ethtoolChannels is struct ethtool_channels (include/uapi/linux/ethtool.h).
type ethtoolChannels struct {
	cmd                                         uint32
	maxRX, maxTX, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

// ifreqData is struct ifreq with ifr_data, padded to the kernel's 40 bytes.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolRXChannels is ifname's RX-only plus combined channels, 0 when the driver does
// not say (no ETHTOOL_GCHANNELS: loopback, dummy, ...).
func ethtoolRXChannels(ifname string) int {
	if len(ifname) == 0 || len(ifname) >= unix.IFNAMSIZ {
		return 0
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	ch := &ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	ifr := &ifreqData{data: unsafe.Pointer(ch)}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	if errno != 0 {
		return 0
	}
	return int(ch.rxCount + ch.combinedCount)
}
