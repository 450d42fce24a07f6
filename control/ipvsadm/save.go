package ipvsadm

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"xlvs/control/api"
)

// Save writes services as ipvsadm -S does (-S -n when numeric): one -A line per service
// and one -a line per destination, sorted, names resolved with SystemResolver unless
// numeric. The output reads back with ParseRules. Beyond ipvsadm, a destination's
// thresholds are saved as -x/-y when set, FullNAT as --fullnat, and host names longer
// than ipvsadm's 59-character buffer are written whole.
func Save(w io.Writer, services []api.Service, numeric bool) error {
	return SaveWith(w, services, numeric, SystemResolver)
}

// SaveWith is Save with the given Resolver for names.
func SaveWith(w io.Writer, services []api.Service, numeric bool, r Resolver) error {
	return SaveAll(w, services, nil, numeric, r)
}

// SaveAll is SaveWith that also saves FULLNAT local addresses: after each service's
// lines, one "-P -t VIP:port -z LIP" line per local address of the service (in the
// order added, the address always numeric, " -F IFNAME" when one was given), which
// ParseRules reads back as DPVS ipvsadm's --add-laddr.
func SaveAll(w io.Writer, services []api.Service, laddrs []api.LocalAddr, numeric bool, r Resolver) error {
	bw := bufio.NewWriter(w)
	saveTo(bw, services, laddrs, newNames(r, numeric))
	return bw.Flush()
}

func saveTo(w *bufio.Writer, services []api.Service, laddrs []api.LocalAddr, n *names) {
	for _, s := range sortedServices(services) {
		name := ruleServiceName(&s, n)
		fmt.Fprintf(w, "-A %s -s %s", name, s.Scheduler)
		if s.Persistent {
			fmt.Fprintf(w, " -p %d", s.Timeout)
			if m := maskText(&s); m != "" {
				fmt.Fprintf(w, " -M %s", m)
			}
		}
		if s.PE != "" {
			fmt.Fprintf(w, " --pe %s", s.PE)
		}
		if s.OnePacket {
			w.WriteString(" -o")
		}
		if flags := schedFlagNames(s.Scheduler, schedFlagBits(s.SchedFlags)); len(flags) > 0 {
			fmt.Fprintf(w, " -b %s", strings.Join(flags, ","))
		}
		w.WriteByte('\n')

		proto := portProto(&s)
		for _, d := range sortedDests(s.Dests) {
			fmt.Fprintf(w, "-a %s -r %s %s -w %d", name, n.endpoint(d.Addr, d.Port, proto), forwardSwitch(d.Method), d.Weight)
			if d.Method == api.MethodTunnel {
				flag := map[string]string{"": "--tun-nocsum", api.TunNoCsum: "--tun-nocsum",
					api.TunCsum: "--tun-csum", api.TunRemCsum: "--tun-remcsum"}[d.TunFlags]
				switch d.TunType {
				case "", api.TunIPIP:
					w.WriteString(" --tun-type ipip")
				case api.TunGUE:
					fmt.Fprintf(w, " --tun-type gue --tun-port %d %s", d.TunPort, flag)
				case api.TunGRE:
					fmt.Fprintf(w, " --tun-type gre %s", flag)
				}
			}
			if d.UThreshold != 0 {
				fmt.Fprintf(w, " -x %d", d.UThreshold)
			}
			if d.LThreshold != 0 {
				fmt.Fprintf(w, " -y %d", d.LThreshold)
			}
			w.WriteByte('\n')
		}
		for _, l := range laddrs {
			if !sameService(l.Service, s.ServiceKey) {
				continue
			}
			fmt.Fprintf(w, "-P %s -z %s", name, l.Addr.Unmap())
			if l.Ifname != "" {
				fmt.Fprintf(w, " -F %s", l.Ifname)
			}
			w.WriteByte('\n')
		}
	}
}

// ruleServiceName is the service as a -S line names it: "-t host:port", "-f 1 -6".
func ruleServiceName(s *api.Service, n *names) string {
	if isFWMark(s) {
		if s.Family == 6 {
			return fmt.Sprintf("-f %d -6", s.FWMark)
		}
		return fmt.Sprintf("-f %d", s.FWMark)
	}
	opt := "--xxx-service" // ipvsadm's word for a protocol it has no option for
	switch s.Protocol {
	case api.ProtoTCP:
		opt = "-t"
	case api.ProtoUDP:
		opt = "-u"
	case api.ProtoSCTP:
		opt = "--sctp-service" // ipvsadm's print_service_entry: SCTP has no short option
	}
	return opt + " " + n.endpoint(s.Addr, s.Port, portProto(s))
}

func forwardSwitch(m string) string {
	switch m {
	case api.MethodMasq:
		return "-m"
	case api.MethodTunnel:
		return "-i"
	case api.MethodFullNAT:
		return "--fullnat"
	}
	return "-g" // route, local
}
