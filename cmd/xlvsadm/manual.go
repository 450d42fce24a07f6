package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"xlvs/cmd/internal/manpage"
	"xlvs/control/api"
	"xlvs/control/ipvsadm"
	"xlvs/version"
)

// usageEntry is one option of the -h text: its term ("--weight -w weight"), its key (the
// first long option, "--weight") and its one-line help.
type usageEntry struct {
	key, term, text string
}

// usageText is the parsed -h text (ipvsadm.Usage): the synopsis lines and the entries of
// each of its sections ("Commands", "virtual-service", "Options", "Daemon Options").
type usageText struct {
	synopsis []string
	sections map[string][]usageEntry
	order    []string
	trailer  []string // lines after the last entry
}

var (
	usageSection = regexp.MustCompile(`^([A-Za-z][A-Za-z -]*):$`)
	fieldSep     = regexp.MustCompile(`\s{2,}`)
)

// parseUsage reads the -h text, so that the man page's COMMANDS and PARAMETERS are the
// options -h lists, worded as -h words them.
func parseUsage() (*usageText, error) {
	var b strings.Builder
	if err := ipvsadm.Usage(&b, ipvsadm.Program); err != nil {
		return nil, err
	}
	u := &usageText{sections: map[string][]usageEntry{}}
	section := ""
	for _, line := range strings.Split(b.String(), "\n") {
		switch {
		case line == ipvsadm.VersionText || strings.TrimSpace(line) == "":
		case usageSection.MatchString(line):
			section = usageSection.FindStringSubmatch(line)[1]
			if section != "Usage" {
				u.order = append(u.order, section)
			}
		case section == "Usage":
			s, ok := strings.CutPrefix(strings.TrimSpace(line), ipvsadm.Program+" ")
			if !ok {
				return nil, fmt.Errorf("usage line %q does not start with %s", line, ipvsadm.Program)
			}
			u.synopsis = append(u.synopsis, s)
		case strings.HasPrefix(line, "  --"):
			f := fieldSep.Split(strings.TrimSpace(line), -1)
			if len(f) < 2 {
				return nil, fmt.Errorf("usage entry %q: no help text", line)
			}
			term := strings.Join(f[:len(f)-1], " ")
			key := strings.FieldsFunc(term, func(r rune) bool { return r == ' ' || r == '|' })[0]
			u.sections[section] = append(u.sections[section], usageEntry{key: key, term: term, text: f[len(f)-1]})
		case strings.HasPrefix(line, "      ") && len(u.sections[section]) > 0:
			e := &u.sections[section][len(u.sections[section])-1]
			e.text += " " + strings.TrimSpace(line)
		case !strings.HasPrefix(line, " ") && section != "":
			if strings.HasPrefix(line, "Either") { // "Either long or short options are allowed."
				continue
			}
			u.trailer = append(u.trailer, line)
		default:
			return nil, fmt.Errorf("usage line %q: not an entry of section %q", line, section)
		}
	}
	return u, nil
}

// entries returns the entries of the named sections, with the man page's elaboration.
func (u *usageText) items(sections ...string) []manpage.Item {
	var out []manpage.Item
	for _, s := range sections {
		for _, e := range u.sections[s] {
			text := e.text
			if more, ok := elaboration[e.key]; ok {
				text += "\n\n" + more
			}
			out = append(out, manpage.Item{Term: e.term, Text: text})
		}
	}
	return out
}

// elaboration is what the man page adds to an option's -h line, keyed by its first long
// option as -h names it (TestManual checks every key is one).
var elaboration = map[string]string{
	"--add-service":     "A virtual service is an address (IPv4 or IPv6), a port and a protocol (-t TCP, -u UDP). The real servers that serve it are added with -a.",
	"--edit-service":    "Change the scheduler, persistence or flags of an existing virtual service.",
	"--delete-service":  "Delete a virtual service with its real servers. Connections of the service continue until they expire, their packets dropped (or at once with xlvsd --expire-nodest-conn).",
	"--clear":           "Delete every virtual service and real server.",
	"--restore":         "Read rules in the format of -S from standard input and apply them atomically: a bad line changes nothing and is named with its line number.",
	"--save":            "Print the rules in a form -R reads back. -n leaves addresses and ports numeric.",
	"--add-server":      "Add a real server to a virtual service, with its forwarding method (-g, -i, -m, --fullnat) and weight (-w).",
	"--edit-server":     "Change the forwarding method, weight or thresholds of a real server.",
	"--delete-server":   "Delete a real server; its connections continue (or expire at once with xlvsd --expire-nodest-conn).",
	"--list":            "List the virtual services and their real servers, byte for byte as ipvsadm 1.31 does; with -c the connections (with a column local for FULLNAT connections' local endpoints when there are any, as DPVS's ipvsadm shows them), with --timeout the timeouts, with --daemon the sync daemons. With no command at all, xlvsadm lists.",
	"--zero":            "Zero the packet, byte and connection counters of one or every service.",
	"--set":             "Set the TCP, TCP FIN_WAIT and UDP idle timeouts in seconds; 0 keeps a value.",
	"--start-daemon":    "Start IPVS's connection sync daemon in the master or backup role (wire-compatible with the kernel's). A master and a backup may run at once.",
	"--stop-daemon":     "Stop the sync daemon of that role.",
	"--dataplane-stats": "xlvs only: per queue the packets received and sent, drops by reason, the AF_XDP ring counters and the kernel's XDP socket statistics; per interface the XDP program's verdicts; the sync daemon's counters. The first thing to read after a start or when traffic goes missing.",
	"--add-laddr":       "FULLNAT only (as DPVS's ipvsadm): add a local address (-z) to the service's pool. The director must hold the address on its interface towards the real servers.",
	"--del-laddr":       "FULLNAT only: remove a local address from the service's pool; its connections continue until they end.",
	"--get-laddr":       "FULLNAT only: list the local addresses of one or every service, with their port conflicts.",
	"--tcp-service":     "IPv6 addresses are written in brackets: [2001:db8::1]:80. Port 0 with -p makes a service of every port of the address.",
	"--fwmark-service":  "A service of the packets that xlvs's mark rules (--add-mark, --del-mark) give this mark; -6 makes it IPv6. The rules stand in for the iptables MARK rules a kernel director uses.",
	"--scheduler":       "rr round robin; wrr weighted round robin; lc least connections; wlc weighted least connections; lblc and lblcr locality-based least connections (with replication); dh and sh destination and source hashing; sed shortest expected delay; nq never queue; mh Maglev hashing; fo weighted failover; ovf weighted overflow; twos weighted random twos choice. Each behaves as the kernel's ip_vs_*.c.",
	"--persistent":      "Send a client to the same real server for timeout seconds (default 300) after its last connection, as IPVS persistence: templates per client address masked with -M.",
	"--real-server":     "An address with an optional port; without a port the service's port is used.",
	"--gatewaying":      "Direct routing (LVS-DR): only MAC addresses change. The real server holds the VIP on a non-ARPing interface.",
	"--ipip":            "Tunnelling (LVS-TUN): the request goes to the real server inside an outer header, IPIP or ip6ip6 unless --tun-type says gue or gre, and the real server strips it (the ipip, ip6_tunnel, fou or gre module, or xlvs-decap(8)). A tunnelling real server may be of the service's other family (IPv4 in IPv6, IPv6 in IPv4).",
	"--tun-type":        "ipip (the default), gue (UDP to --tun-port, then a 4-byte GUE header) or gre, as IPVS writes them. --tun-csum computes the UDP (gue) or GRE checksum; --tun-remcsum is --tun-csum for xlvs, whose forwarded packets always carry complete checksums.",
	"--masquerading":    "NAT (LVS-NAT): the destination is rewritten to the real server and the replies, routed back through the director, to the virtual service.",
	"--fullnat":         "xlvs (as DPVS): source and destination are translated; the real server sees a local address of the service's pool (-P) and needs no route through the director. A TCP connection's SYN and handshake ACK carry the client's address and port in the TOA option (kind 254), which a real server's toa module hands to getpeername(2).",
	"--weight":          "An integer from 0 to 65535; 0 quiesces the server (no new connections, existing ones continue).",
	"--u-threshold":     "Stop sending new connections to the server when its active and inactive connections reach this number (0: no limit).",
	"--l-threshold":     "Send new connections again when the server's connections fall below this number (default: three quarters of -x).",
	"--ops":             "One-packet scheduling: every UDP datagram (of a UDP or firewall-mark service) is scheduled on its own and leaves no connection entry.",
	"--mcast-interface": "The interface the sync messages are sent and received on.",
	"--syncid":          "Only messages with this sync ID are applied by a backup (0 applies every one).",
}

// manual is xlvsadm(8), in ipvsadm(8)'s structure; its COMMANDS and PARAMETERS are the
// entries of the -h text.
func manual() (*manpage.Page, error) {
	u, err := parseUsage()
	if err != nil {
		return nil, err
	}
	var params []string
	for _, s := range u.order {
		if s != "Commands" {
			params = append(params, s)
		}
	}
	return &manpage.Page{
		Name:     ipvsadm.Program,
		Section:  8,
		Summary:  "administer xlvsd's virtual server table in ipvsadm's language",
		Synopsis: u.synopsis,
		Description: `xlvsadm sets up, maintains and inspects the virtual server table of xlvsd(8), the XDP
Linux Virtual Server daemon, as ipvsadm(8) does for the kernel's IPVS. It takes
ipvsadm's commands and options and prints ipvsadm's formats byte for byte, so an
operator's commands and scripts keep working; DPVS's local-address commands (-P, -Q,
-G) configure FULLNAT, and --dataplane-stats shows xlvs's own counters.

xlvsadm talks to xlvsd over its control socket (` + api.DefaultSocket + `, or $` + api.EnvSocket + `).
Every change is saved by xlvsd to its state file and survives a restart.

The first option must be a command; the options that follow may come in any order.
Either long or short options are allowed.`,
		Lists: []manpage.List{
			{Title: "Commands", Items: u.items("Commands")},
			{Title: "Parameters", Intro: "The commands above take the following parameters.", Items: u.items(params...)},
		},
		Sections: []manpage.Section{
			{Title: "Example 1 - simple virtual service", Body: `Two web servers behind 192.0.2.10:80 with NAT, weighted 3:1:

	xlvsadm -A -t 192.0.2.10:80 -s wrr
	xlvsadm -a -t 192.0.2.10:80 -r 10.0.0.11:80 -m -w 3
	xlvsadm -a -t 192.0.2.10:80 -r 10.0.0.12:80 -m -w 1
	xlvsadm -L -n --stats`},
			{Title: "Example 2 - FULLNAT with a local address pool", Body: `	xlvsadm -A -t 192.0.2.10:443 -s mh
	xlvsadm -P -t 192.0.2.10:443 -z 10.0.1.100
	xlvsadm -a -t 192.0.2.10:443 -r 10.0.2.11:443 --fullnat`},
			{Title: "Example 3 - save and restore", Body: `	xlvsadm -S -n > /etc/xlvs/rules
	xlvsadm -C
	xlvsadm -R < /etc/xlvs/rules`},
			{Title: "Example 4 - connection sync", Body: `	xlvsadm --start-daemon master --mcast-interface eth1 --syncid 7
	xlvsadm -L --daemon`},
			{Title: "Operators", Body: `By default the control socket is root's alone (mode 0600). With the package, xlvsd runs
with --socket-group xlvsadm: members of the group xlvsadm run xlvsadm without root
(adduser alice xlvsadm).`},
			{Title: "Exit status", Body: `As ipvsadm's: 0 on success; 2 for an invalid command line or rule file and when xlvsd
cannot be reached ("Can't initialize ipvs"); 255 when xlvsd refuses a command; 1 when the
output cannot be written. Messages go to standard error.`},
			{Title: "Environment", Items: []manpage.Item{
				{Term: api.EnvSocket, Text: "The control socket (default " + api.DefaultSocket + ")."},
			}},
			{Title: "Files", Items: []manpage.Item{
				{Term: api.DefaultSocket, Text: "xlvsd's control socket."},
				{Term: "/var/lib/xlvs/state.json", Text: "The rules xlvsd saves after every change."},
			}},
		},
		SeeAlso: []string{"xlvsd(8)", "xlvs-decap(8)", "xlvs-bench(1)", "ipvsadm(8)", "ipvsadm-save(8)", "ipvsadm-restore(8)"},
	}, nil
}

// writeManual answers --help-man.
func writeManual(w io.Writer) error {
	p, err := manual()
	if err != nil {
		return err
	}
	return p.Man(w, version.String(), manpage.Date())
}
