package main

import (
	"flag"
	"fmt"
	"io"

	"xlvs/cmd/internal/manpage"
	"xlvs/version"
)

// printVersionOrManual answers --version and --help-man; it returns the exit status.
func printVersionOrManual(fs *flag.FlagSet, man bool, w io.Writer) int {
	var err error
	if man {
		err = manual(fs).Man(w, version.String(), manpage.Date())
	} else {
		_, err = fmt.Fprintln(w, "xlvs-decap", version.String())
	}
	if err != nil {
		return 1
	}
	return 0
}

// manual is xlvs-decap(8); its OPTIONS are fs's flags.
func manual(fs *flag.FlagSet) *manpage.Page {
	return &manpage.Page{
		Name:     "xlvs-decap",
		Section:  8,
		Summary:  "decapsulate an LVS-TUN director's IPIP and ip6ip6 packets on a real server",
		Synopsis: []string{"-i IFACE [--mode auto|xdp|tc] [--addr ADDR ...]", "--version"},
		Description: `xlvs-decap strips the outer header of the IPIP and ip6ip6 packets an LVS-TUN director
(xlvsd or the kernel's IPVS with -i) sends to a real server whose kernel lacks the ipip
and ip6_tunnel modules, or where tunnel devices are unwanted. It attaches a small BPF
program to IFACE (XDP, or tc ingress as a fallback), stays in the foreground, and
detaches on SIGINT or SIGTERM, or when it dies (the attachment is a bpf_link).

Without --addr it decapsulates packets addressed to any address IFACE holds at start.
The real server also needs what any TUN real server needs: the VIP on lo, arp_ignore=1
and arp_announce=2, and an rp_filter that accepts the client's source on IFACE.`,
		Flags:    fs,
		ArgNames: map[string]string{"i": "IFACE", "mode": "MODE"},
		Sections: []manpage.Section{
			{Title: "Privileges", Body: `xlvs-decap needs CAP_NET_ADMIN (load and attach XDP and tc programs), CAP_BPF
(create maps, load programs) and CAP_PERFMON (the verifier accepts the program's
packet-pointer arithmetic only with it); not CAP_SYS_ADMIN. The packaged unit
xlvs-decap@.service runs it as the user xlvs with exactly these:

	systemctl enable --now xlvs-decap@eth0

decapsulates on eth0. Extra flags (--mode, --addr) go in XLVS_DECAP_OPTS in
/etc/xlvs/xlvs-decap.conf.`},
			{Title: "Exit status", Body: "0 after SIGINT or SIGTERM (the program detached), and for --help and --version; 1 when the program cannot be attached; 2 for a bad command line."},
			{Title: "Examples", Body: "\txlvs-decap -i eth0\n\txlvs-decap -i eth0 --mode tc --addr 192.0.2.10"},
		},
		SeeAlso: []string{"xlvsd(8)", "xlvsadm(8)", "ipvsadm(8)", "ip-tunnel(8)"},
	}
}
