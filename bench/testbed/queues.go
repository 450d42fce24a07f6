package testbed

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// checkQueues checks Options.Queues and ChainOptions.Queues.
func checkQueues(q int) error {
	if q < 0 || q > MaxQueues {
		return fmt.Errorf("%w: %d queues, want 1 to %d (0 means 1)", ErrBadOptions, q, MaxQueues)
	}
	return nil
}

// Queues counts the RX and TX queues of ifname in ns, as /sys/class/net/IFNAME/queues
// lists them inside the namespace (the kernel's real_num_rx_queues and
// real_num_tx_queues).
func Queues(ns *NS, ifname string) (rx, tx int, err error) {
	if err := checkSysfsName(ifname); err != nil {
		return 0, 0, fmt.Errorf("count queues: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Run(ctx, "ls", "/sys/class/net/"+ifname+"/queues")
	if err != nil {
		return 0, 0, fmt.Errorf("count queues of %s in %s: %w", ifname, ns.Name(), err)
	}
	for _, f := range strings.Fields(out) {
		switch {
		case strings.HasPrefix(f, "rx-"):
			rx++
		case strings.HasPrefix(f, "tx-"):
			tx++
		}
	}
	return rx, tx, nil
}

// SetXPS makes everything ns sends out of ifname leave by TX queue queue, whichever CPU
// sends it, through transmit packet steering: tx-QUEUE/xps_cpus gets every CPU, every
// other TX queue none. On a veth the TX queue a packet leaves by is the RX queue it
// arrives on at the peer (drivers/net/veth.c, veth_xmit, takes the peer's receive queue
// at the skb's queue mapping), so this picks the peer's RX queue for ifname's traffic.
// XPS decides for packets without a TX queue of their own: a socket made before the call
// may keep the queue it has cached (net/core/dev.c, netdev_pick_tx); make sockets after
// it. queue -1 clears every map (back to the kernel's hash of the flow).
func SetXPS(ns *NS, ifname string, queue int) error {
	if err := checkSysfsName(ifname); err != nil {
		return fmt.Errorf("set xps: %w", err)
	}
	_, n, err := Queues(ns, ifname)
	if err != nil {
		return err
	}
	if queue < -1 || queue >= n {
		return fmt.Errorf("set xps on %s in %s: queue %d, want 0 to %d (or -1 to clear)", ifname, ns.Name(), queue, n-1)
	}
	all := cpuMask(runtime.NumCPU())
	var script strings.Builder
	for q := range n {
		m := "0"
		if q == queue {
			m = all
		}
		fmt.Fprintf(&script, "echo %s > /sys/class/net/%s/queues/tx-%d/xps_cpus && ", m, ifname, q)
	}
	script.WriteString("true")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ns.Run(ctx, "sh", "-c", script.String()); err != nil {
		return fmt.Errorf("set xps on %s in %s to queue %d: %w", ifname, ns.Name(), queue, err)
	}
	return nil
}

// cpuMask is the sysfs CPU mask of CPUs 0..n-1: hex digits in comma-separated 32-bit
// words, most significant first ("3", "ffffffff,ffffffff").
func cpuMask(n int) string {
	var words []string
	for ; n > 0; n -= 32 {
		bits := min(n, 32)
		w := uint64(1)<<bits - 1
		words = append([]string{strconv.FormatUint(w, 16)}, words...)
	}
	if len(words) == 0 {
		return "0"
	}
	return strings.Join(words, ",")
}

// checkSysfsName refuses interface names that could not be a sysfs path element or would
// need quoting in a shell command.
func checkSysfsName(ifname string) error {
	if ifname == "" || strings.ContainsAny(ifname, "/ '\"\\$`;&|<>*?") || ifname == "." || ifname == ".." {
		return fmt.Errorf("bad interface name %q", ifname)
	}
	return nil
}
