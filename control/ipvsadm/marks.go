package ipvsadm

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"xlvs/control/api"
)

// Firewall-mark rules (xlvs): XDP runs before netfilter, so xlvs gives packets the marks
// fwmark services (-f) match itself. In ipvsadm's style:
//
//	xlvsadm --add-mark -t 192.0.2.10:80,443 -f 1     # iptables -t mangle -A PREROUTING -p tcp -d 192.0.2.10 -m multiport --dports 80,443 -j MARK --set-mark 1
//	xlvsadm --add-mark -u 192.0.2.0/24:53 -f 2       # iptables -t mangle -A PREROUTING -p udp -d 192.0.2.0/24 --dport 53 -j MARK --set-mark 2
//	xlvsadm --add-mark -t 0.0.0.0/0:80 -f 3          # any destination, port 80 (a transparent cache cluster)
//	xlvsadm --add-mark -t [2001:db8::/64]:1024-65535 -f 4
//	xlvsadm --add-mark --sctp-service 192.0.2.10:3868 -f 5   # -p sctp --dport 3868
//	xlvsadm --del-mark -t 192.0.2.10:80,443 -f 1     # the rule as -L lists it
//
// -t/-u/--sctp-service take DEST[/LEN][:PORTS]: an address or prefix (IPv6 in brackets when ports
// follow), and ports as a comma-separated list of ports and FIRST-LAST ranges; without
// ports, every port. The rules form one list in the order added; when several match a
// packet the last one's mark wins, as with "-j MARK" rules appended to a chain. -L lists
// them after the services, -S saves them (before the services) as --add-mark lines that
// -R restores, -C clears them with the services.

// markCommand reports whether the command is a mark rule command.
func (cl *cmdline) markCommand() bool { return cl.kind == KindAddMark || cl.kind == KindDelMark }

// applyMark handles an option of --add-mark / --del-mark.
func (cl *cmdline) applyMark(tok token) error {
	switch tok.spec.tag {
	case tTCP, tUDP, tSCTP:
		if cl.markRule.Protocol != "" {
			return errors.New("multiple '-t/-u/--sctp-service' options specified (one protocol and destination per mark rule)")
		}
		switch tok.spec.tag {
		case tTCP:
			cl.markRule.Protocol = api.ProtoTCP
		case tUDP:
			cl.markRule.Protocol = api.ProtoUDP
		default:
			cl.markRule.Protocol = api.ProtoSCTP
		}
		p, ports, err := parseMarkDest(tok.arg)
		if err != nil {
			return err
		}
		cl.markRule.Prefix, cl.markRule.Ports = p, ports
	case tFWMark:
		if cl.markRule.Mark != 0 {
			return errors.New("multiple '-f' options specified (one mark per rule)")
		}
		n, ok := parseNumber(tok.arg, 1, math.MaxUint32)
		if !ok {
			return fmt.Errorf("invalid fwmark value `%s' specified (want an integer from 1 to 4294967295)", tok.arg)
		}
		cl.markRule.Mark = uint32(n)
	default:
		return fmt.Errorf("Illegal '%s' option with the '%s' command (a mark rule takes -t, -u or --sctp-service DEST[/LEN][:PORTS] and -f MARK)", tok.name, cl.kind)
	}
	return nil
}

// finishMark checks a mark rule command once every option is read.
func (cl *cmdline) finishMark() error {
	if cl.markRule.Protocol == "" {
		return fmt.Errorf("You need to supply the '-t', '-u' or '--sctp-service' option for the '%s' command (the protocol and DEST[/LEN][:PORTS] the rule marks)", cl.kind)
	}
	if cl.markRule.Mark == 0 {
		return fmt.Errorf("You need to supply the '-f' option for the '%s' command (the mark the rule gives)", cl.kind)
	}
	return nil
}

// parseMarkDest parses DEST[/LEN][:PORTS]: "192.0.2.10", "192.0.2.0/24:80,443",
// "[2001:db8::/64]:1024-65535", "2001:db8::1" (an IPv6 address without ports).
func parseMarkDest(arg string) (netip.Prefix, []api.PortRange, error) {
	bad := func(why string) error {
		return fmt.Errorf("illegal mark destination specified: `%s' (%s; want DEST[/LEN][:PORTS] such as 192.0.2.10:80,443, 192.0.2.0/24, [2001:db8::/64]:1024-65535)", arg, why)
	}
	dest, ports := arg, ""
	switch {
	case strings.HasPrefix(arg, "["):
		end := strings.IndexByte(arg, ']')
		if end < 0 {
			return netip.Prefix{}, nil, bad("no closing ]")
		}
		dest, ports = arg[1:end], arg[end+1:]
		if ports != "" {
			if ports[0] != ':' {
				return netip.Prefix{}, nil, bad("ports follow ]: as [ADDR]:PORTS")
			}
			ports = ports[1:]
			if ports == "" {
				return netip.Prefix{}, nil, bad("no ports after ':'")
			}
		}
	case strings.Count(arg, ":") >= 2: // a bare IPv6 address or prefix: no ports
	default:
		if i := strings.LastIndexByte(arg, ':'); i >= 0 {
			dest, ports = arg[:i], arg[i+1:]
			if ports == "" {
				return netip.Prefix{}, nil, bad("no ports after ':'")
			}
		}
	}
	var p netip.Prefix
	if strings.Contains(dest, "/") {
		var err error
		if p, err = netip.ParsePrefix(dest); err != nil {
			return netip.Prefix{}, nil, bad("not an address/length")
		}
	} else {
		a, err := netip.ParseAddr(dest)
		if err != nil {
			return netip.Prefix{}, nil, bad("not a numeric address")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, nil, bad("an address without a zone, IPv4 written as a.b.c.d")
	}
	var out []api.PortRange
	if ports != "" {
		for _, w := range strings.Split(ports, ",") {
			lo, hi, isRange := strings.Cut(w, "-")
			if !isRange {
				hi = lo
			}
			l, ok1 := parseNumber(lo, 0, 65535)
			h, ok2 := parseNumber(hi, 0, 65535)
			if !ok1 || !ok2 || l > h {
				return netip.Prefix{}, nil, bad(fmt.Sprintf("port `%s' is not a port from 0 to 65535 or a range FIRST-LAST", w))
			}
			out = append(out, api.PortRange{Lo: uint16(l), Hi: uint16(h)})
		}
	}
	return p, out, nil
}

// markDest writes a rule's destination as -S and -L write it: DEST[/LEN][:PORTS], the
// length left out for one address, IPv6 in brackets when ports follow.
func markDest(m *api.MarkRule) string {
	d := m.Prefix.String()
	if m.Prefix.IsSingleIP() {
		d = m.Prefix.Addr().String()
	}
	if len(m.Ports) == 0 {
		return d
	}
	if m.Prefix.Addr().Is6() {
		d = "[" + d + "]"
	}
	return d + ":" + markPorts(m.Ports)
}

func markPorts(ps []api.PortRange) string {
	if len(ps) == 0 {
		return "*"
	}
	var b strings.Builder
	for i, r := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(r.Lo)))
		if r.Hi != r.Lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(r.Hi)))
		}
	}
	return b.String()
}

func markOpt(m *api.MarkRule) string {
	switch m.Protocol {
	case api.ProtoUDP:
		return "-u"
	case api.ProtoSCTP:
		return "--sctp-service"
	}
	return "-t"
}

// saveMarks writes the rules as -S does: one --add-mark line each, in list order.
func saveMarks(w *bufio.Writer, marks []api.MarkRule) {
	for i := range marks {
		m := &marks[i]
		fmt.Fprintf(w, "--add-mark %s %s -f %d\n", markOpt(m), markDest(m), m.Mark)
	}
}

// listMarks writes the rules after the services of -L: a blank line, a title, one line
// per rule in list order (the last matching rule gives a packet its mark). Nothing when
// there are none, so a listing without mark rules is ipvsadm's, byte for byte.
func listMarks(w *bufio.Writer, marks []api.MarkRule) {
	if len(marks) == 0 {
		return
	}
	w.WriteString("\nFirewall marks (xlvs; the last matching rule gives the mark)\n")
	fmt.Fprintf(w, "%-4s %-43s %-20s %s\n", "Prot", "Destination", "Ports", "Mark")
	for i := range marks {
		m := &marks[i]
		d := m.Prefix.String()
		if m.Prefix.IsSingleIP() {
			d = m.Prefix.Addr().String()
		}
		fmt.Fprintf(w, "%-4s %-43s %-20s %d\n", strings.ToUpper(m.Protocol), d, markPorts(m.Ports), m.Mark)
	}
}
