package testbed

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// PairIface is the name of the veth ends NewPair makes.
const PairIface = "sync0"

// NewPair builds two namespaces (names from prefix+"-a" and prefix+"-b") joined by a
// veth pair PairIface, with 198.18.9.1/24 and fd00:9::1/64 in a, .2 and ::2 in b (no
// DAD), and returns once both ends have carrier and an IPv6 route to ff02::1:81 out of
// PairIface (a multicast send fails with ENETUNREACH before that), at most 5 s. The
// caller closes both; on an error nothing is left.
func NewPair(prefix string) (a, b *NS, err error) {
	if a, err = NewNS(prefix + "-a"); err != nil {
		return nil, nil, err
	}
	if b, err = NewNS(prefix + "-b"); err != nil {
		a.Close()
		return nil, nil, err
	}
	fail := func(err error) (*NS, *NS, error) {
		b.Close()
		a.Close()
		return nil, nil, err
	}
	for _, args := range [][]string{
		{"-n", a.Name(), "link", "add", PairIface, "type", "veth", "peer", "name", PairIface, "netns", b.Name()},
		{"-n", a.Name(), "addr", "add", "198.18.9.1/24", "dev", PairIface},
		{"-n", b.Name(), "addr", "add", "198.18.9.2/24", "dev", PairIface},
		{"-n", a.Name(), "addr", "add", "fd00:9::1/64", "dev", PairIface, "nodad"},
		{"-n", b.Name(), "addr", "add", "fd00:9::2/64", "dev", PairIface, "nodad"},
		{"-n", a.Name(), "link", "set", PairIface, "up"},
		{"-n", b.Name(), "link", "set", PairIface, "up"},
	} {
		if out, err := exec.Command(ipPath(), args...).CombinedOutput(); err != nil {
			return fail(fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range []*NS{a, b} {
		for {
			link, _ := exec.Command(ipPath(), "-n", ns.Name(), "-o", "link", "show", PairIface).CombinedOutput()
			route, _ := exec.Command(ipPath(), "-n", ns.Name(), "-6", "route", "get", "ff02::1:81", "oif", PairIface).CombinedOutput()
			if strings.Contains(string(link), "LOWER_UP") && strings.Contains(string(route), PairIface) {
				break
			}
			if time.Now().After(deadline) {
				return fail(fmt.Errorf("%s in %s not ready in 5 s: %s %s", PairIface, ns.Name(), link, route))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return a, b, nil
}
