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
		Summary:  "decapsulate an LVS-TUN director's IPIP, ip6ip6, GRE and GUE packets on a real server",
		Synopsis: []string{"-i IFACE [--mode auto|xdp|tc] [--addr ADDR ...] [--gue-port PORT ...]", "--version"},
		Description: `xlvs-decap strips the outer headers of the packets an LVS-TUN director (xlvsd or the
kernel's IPVS with -i) tunnels to a real server whose kernel lacks the ipip, ip6_tunnel,
gre or fou modules, or where tunnel devices are unwanted: IPIP and ip6ip6 (--tun-type
ipip, the default), GRE (--tun-type gre) and, with --gue-port, GUE (--tun-type gue
--tun-port PORT). It attaches a small BPF program to IFACE (XDP, or tc ingress as a
fallback), stays in the foreground, and detaches on SIGINT or SIGTERM, or when it dies
(the attachment is a bpf_link).

Without --addr it decapsulates packets addressed to any address IFACE holds at start.
The real server also needs what any TUN real server needs: the VIP on lo, arp_ignore=1
and arp_announce=2, and an rp_filter that accepts the client's source on IFACE.`,
		Flags:    fs,
		ArgNames: map[string]string{"i": "IFACE", "mode": "MODE"},
		Sections: []manpage.Section{
			{Title: "Tunnels", Body: `A packet is decapsulated when it is addressed to one of the addresses, its outer IPv4
header has 20 bytes, a valid checksum and is not a fragment (IPv6: the tunnel's header
follows the fixed header directly), its lengths agree, and its inner header has the IP
version the tunnel announces. The inner packet is left exactly as it came: the kernel
checks it as usual, its checksums included. Neither the GUE packet's UDP checksum (IPVS
sends 0 unless --tun-csum or --tun-remcsum, over IPv6 too) nor the GRE checksum is
verified: the inner packet's own checksums are end to end.`, Items: []manpage.Item{
				{Term: "IPIP, ip6ip6", Text: "IPv4 protocol 4 or 41, or IPv6 next header 41 or 4: the outer IP header is stripped. Always on."},
				{Term: "GRE", Text: "IPv4 protocol or IPv6 next header 47, then the GRE header IPVS writes (RFC 2784): version 0 without flags, or with only the checksum flag (--tun-csum), protocol type 0x0800 or 0x86DD. The outer IP header and 4 or 8 bytes of GRE are stripped. Always on."},
				{Term: "GUE", Text: "UDP to one of the --gue-port ports (a UDP packet to another port is not a tunnel packet), whose UDP length is the IP payload's, then the 4-byte GUE header IPVS writes (draft-ietf-intarea-gue): version 0, a data message (C 0), no extension words (hlen 0), no flags, proto_ctype 4 or 41. The outer IP header, UDP and GUE (12 bytes) are stripped. Over IPv4 only a first fragment with a 20-byte header is looked at: elsewhere the UDP header is not where a director puts it."},
				{Term: "unsupported", Text: "A GUE packet to a --gue-port port with anything else (options, control messages, another version or payload) and a GRE packet with a key, a sequence number, routing, another version or payload type (such as 0x6558, Ethernet) pass untouched. In particular IPVS's --tun-remcsum adds a remote checksum offload option, which the receiver must act on, to the packets the director's kernel leaves for checksum offload (GRO-merged ones among them): run the director with --tun-csum or --tun-nocsum."},
			}},
			{Title: "Counters", Body: `On SIGINT or SIGTERM xlvs-decap prints what it did with the frames it saw, each counted
once: decapsulated; passed (not a tunnel packet); not local (a tunnel packet for an
address not decapsulated for); malformed (a bad outer, tunnel or inner header, such as
a UDP length that disagrees with the IP length or a truncated GUE or GRE header);
fragment (a fragmented outer IPv4 packet); unsupported (see Tunnels); error (the kernel
refused to strip the headers). Every frame goes to the kernel, stripped or untouched.`},
			{Title: "Privileges", Body: `xlvs-decap needs CAP_NET_ADMIN (load and attach XDP and tc programs), CAP_BPF
(create maps, load programs) and CAP_PERFMON (the verifier accepts the program's
packet-pointer arithmetic only with it); not CAP_SYS_ADMIN. The packaged unit
xlvs-decap@.service runs it as the user xlvs with exactly these:

	systemctl enable --now xlvs-decap@eth0

decapsulates on eth0. Extra flags (--mode, --addr, --gue-port) go in XLVS_DECAP_OPTS in
/etc/xlvs/xlvs-decap.conf.`},
			{Title: "Exit status", Body: "0 after SIGINT or SIGTERM (the program detached), and for --help and --version; 1 when the program cannot be attached; 2 for a bad command line."},
			{Title: "Examples", Body: "\txlvs-decap -i eth0\n\txlvs-decap -i eth0 --mode tc --addr 192.0.2.10\n\txlvs-decap -i eth0 --gue-port 6080"},
		},
		SeeAlso: []string{"xlvsd(8)", "xlvsadm(8)", "ipvsadm(8)", "ip-tunnel(8)"},
	}
}
