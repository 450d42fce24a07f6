package xsk

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestOpenMissingQueue: binding to a queue the interface does not have (a veth has one)
// fails with the kernel's EINVAL and a hint saying what it means, instead of a bare
// "invalid argument".
func TestOpenMissingQueue(t *testing.T) {
	needRoot(t)
	inNetns(t, func(a, _ netlink.Link) {
		s, err := Open(a.Attrs().Index, 5, DefaultConfig())
		if err == nil {
			s.Close()
			t.Error("Open on queue 5 of a one-queue veth succeeded")
			return
		}
		for _, want := range []string{"invalid argument", "does it have a queue 5?", "/sys/class/net/IFACE/queues"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
}
