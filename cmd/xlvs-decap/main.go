package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"xlvs/bpf"
	"xlvs/cmd/internal/manpage"
)

// addrList is a repeatable --addr flag.
type addrList []netip.Addr

func (a *addrList) String() string {
	s := make([]string, len(*a))
	for i, x := range *a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (a *addrList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		x, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("parse address %q: want an IPv4 or IPv6 address such as 198.18.0.11 or 2001:db8::11", f)
		}
		*a = append(*a, x)
	}
	return nil
}

// portList is a repeatable --gue-port flag: distinct ports, in the order given.
type portList []uint16

func (p *portList) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = strconv.Itoa(int(x))
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("parse GUE port %q: want a UDP port 1-65535, the director's --tun-port, such as 6080", f)
		}
		if slices.Contains(*p, uint16(n)) {
			continue
		}
		if len(*p) == bpf.MaxDecapGUEPorts {
			return fmt.Errorf("GUE port %d: at most %d distinct ports", n, bpf.MaxDecapGUEPorts)
		}
		*p = append(*p, uint16(n))
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlvs-decap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("i", "", "interface the tunnelled packets arrive on (required)")
	mode := fs.String("mode", "auto", "where to attach: auto (native XDP, else tc), xdp (native, else generic XDP) or tc (tcx ingress)")
	var addrs addrList
	fs.Var(&addrs, "addr", "decapsulate packets addressed to `ADDR` (repeatable; default: every address of the interface)")
	var guePorts portList
	fs.Var(&guePorts, "gue-port", fmt.Sprintf("decapsulate GUE packets to UDP `PORT`, the director's --tun-port (repeatable, or a comma-separated list; at most %d; default: none, no GUE)", bpf.MaxDecapGUEPorts))
	showVersion := fs.Bool("version", false, "print the version and exit")
	helpMan := fs.Bool(manpage.HelpManFlag, false, "print the man page (roff) and exit")
	fs.Usage = func() { manual(fs).Help(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion || *helpMan {
		return printVersionOrManual(fs, *helpMan, os.Stdout)
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "xlvs-decap: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *iface == "" {
		fmt.Fprintln(stderr, "xlvs-decap: -i IFACE is required")
		fs.Usage()
		return 2
	}
	hook, err := bpf.ParseDecapHook(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "xlvs-decap: --mode: %v\n", err)
		return 2
	}
	ifc, err := net.InterfaceByName(*iface)
	if err != nil {
		fmt.Fprintf(stderr, "xlvs-decap: find interface %q: %v (see ip link show)\n", *iface, err)
		return 1
	}
	if len(addrs) == 0 {
		if addrs, err = interfaceAddrs(ifc); err != nil {
			fmt.Fprintf(stderr, "xlvs-decap: %v\n", err)
			return 1
		}
	}

	// Subscribe before attaching so that a signal during start-up is not lost.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)

	d, err := bpf.AttachDecap(ifc.Index, hook, addrs, guePorts...)
	if err != nil {
		fmt.Fprintf(stderr, "xlvs-decap: %v\n", err)
		return 1
	}
	where := d.Hook().String()
	if d.Hook() == bpf.DecapXDP {
		where += " " + d.Mode().String()
	}
	tunnels := "IPIP/ip6ip6 and GRE"
	if len(guePorts) > 0 {
		tunnels = "IPIP/ip6ip6, GRE and GUE (UDP ports " + guePorts.String() + ")"
	}
	fmt.Fprintf(stderr, "xlvs-decap: decapsulating %s for %v on %s (%s); stop with SIGINT or SIGTERM\n", tunnels, addrs.String(), *iface, where)

	s := <-sig
	c, cerr := d.Counters()
	if err := d.Close(); err != nil {
		fmt.Fprintf(stderr, "xlvs-decap: %v\n", err)
		return 1
	}
	if cerr == nil {
		fmt.Fprintf(stderr, "xlvs-decap: %v: detached from %s; decapsulated %d, passed %d, not local %d, malformed %d, fragment %d, unsupported %d, error %d\n",
			s, *iface, c.Decapsulated, c.Passed, c.NotLocal, c.Malformed, c.Fragment, c.Unsupported, c.Error)
	}
	return 0
}

// interfaceAddrs lists ifc's addresses, without IPv6 link-local ones (no director
// tunnels to those).
func interfaceAddrs(ifc *net.Interface) (addrList, error) {
	list, err := ifc.Addrs()
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifc.Name, err)
	}
	var out addrList
	for _, a := range list {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		x, ok := netip.AddrFromSlice(n.IP)
		if !ok || x.Is6() && x.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, x.Unmap())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("interface %s has no address to decapsulate for: add one, or name them with --addr", ifc.Name)
	}
	return out, nil
}
