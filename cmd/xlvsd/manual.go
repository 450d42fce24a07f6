package main

import (
	"flag"
	"fmt"
	"io"

	"xlvs/cmd/internal/manpage"
	"xlvs/control/api"
	"xlvs/version"
)

// addPackagingFlags adds --version, --help-man and --socket-group, and makes --help print
// the page's help (from the same flag set the man page is made from).
func addPackagingFlags(fs *flag.FlagSet, o *options, stderr io.Writer) {
	fs.StringVar(&o.socketGroup, "socket-group", "", "give the control socket to this `GROUP` with mode 0660, so that its members run xlvsadm without root (xlvsd must be a member: xlvsd.service runs with SupplementaryGroups=xlvsadm)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.BoolVar(&o.helpMan, manpage.HelpManFlag, false, "print the man page (roff) and exit")
	fs.Usage = func() { manual(fs).Help(stderr) }
	o.flags = fs
}

// printVersionOrManual answers --version and --help-man.
func printVersionOrManual(o *options, w io.Writer) error {
	if o.helpMan {
		return manual(o.flags).Man(w, version.String(), manpage.Date())
	}
	_, err := fmt.Fprintln(w, "xlvsd", version.String())
	return err
}

// manual is xlvsd(8); its OPTIONS are fs's flags.
func manual(fs *flag.FlagSet) *manpage.Page {
	return &manpage.Page{
		Name:    "xlvsd",
		Section: 8,
		Summary: "XDP Linux Virtual Server daemon",
		Synopsis: []string{
			"-i IFACE [-i IFACE ...] [options]",
			"--check-config --keepalived-conf FILE | --config FILE",
			"--version",
		},
		Description: `xlvsd does the job of the kernel's IPVS on an LVS director: virtual services, real
servers, the LVS schedulers, NAT, DR, TUN and FULLNAT forwarding, without the kernel's
IPVS path. An XDP program on each interface given with -i hands the packets of virtual
services (and the replies of NAT real servers) to AF_XDP sockets; xlvsd's workers track
connections, schedule, rewrite and transmit them. Everything else passes to the kernel.

The rules come from xlvsadm(8), which speaks ipvsadm's language over the control socket;
from a file in ipvsadm -S format (--config); or from the virtual_server blocks of a
keepalived.conf (--keepalived-conf), whose health checks xlvsd then runs itself. After
every change xlvsd saves the rule set to the state file (--state) and restores it at the
next start.

When xlvsd stops (SIGTERM, SIGINT, or a crash) the XDP program is detached with it and
traffic goes to the kernel instead of into a black hole.

Prometheus metrics are served at http://ADDR/metrics with --metrics-listen ADDR; the
dashboard and alerting rules shipped in /usr/share/xlvs/ use them.`,
		Flags:  fs,
		Hidden: []string{manpage.HelpManFlag},
		ArgNames: map[string]string{
			"i": "IFACE", "queues": "N", "frames": "N", "frame-size": "BYTES", "rx-ring": "N",
			"tx-ring": "N", "fill-ring": "N", "comp-ring": "N", "batch": "N",
			"xdp-mode": "MODE", "cpus": "LIST", "socket": "PATH", "conn-max": "N",
			"icmp-rate": "N", "icmp-burst": "N", "log-level": "LEVEL", "state": "FILE",
			"config": "FILE", "keepalived-conf": "FILE", "health-check": "TEXT",
			"sync-threshold": "T,P", "sync-refresh-period": "SECONDS", "sync-retries": "N",
			"sync-ports": "N", "shard-key-file": "FILE", "metrics-listen": "ADDR", "fastpath-entries": "N",
			"fastpath-forward": "WHO",
		},
		Sections: []manpage.Section{
			{Title: "Signals", Items: []manpage.Item{
				{Term: "SIGTERM, SIGINT", Text: "Stop and exit 0. Under a service manager with a file descriptor store ($NOTIFY_SOCKET, systemd's FileDescriptorStoreMax=) and with --handoff-hold above 0, hand the connection table, the AF_XDP sockets and the XDP links to the next xlvsd (see Service manager); otherwise detach the XDP program (traffic goes to the kernel) and close the sockets."},
				{Term: "SIGHUP", Text: "Re-read --keepalived-conf and apply only the difference; a file that does not load keeps the running configuration. Without --keepalived-conf the signal is logged and ignored (ExecReload= of xlvsd.service sends it)."},
			}},
			{Title: "Privileges", Body: `xlvsd needs four capabilities and no others: CAP_NET_ADMIN (attach XDP, load XDP
programs, create the XSKMAP, update neighbours), CAP_NET_RAW (open AF_XDP sockets), CAP_BPF
(create BPF maps and load programs) and CAP_PERFMON (the verifier accepts the classifier's
packet-pointer arithmetic only with it). It does not need CAP_SYS_ADMIN. It refuses to
start without them, naming the missing ones. On kernels before 5.8, which lack CAP_BPF
and CAP_PERFMON, CAP_SYS_ADMIN stands in for those two.

Without CAP_IPC_LOCK each socket's UMEM (--frames x --frame-size bytes, one socket per
queue) counts against the locked-memory limit; xlvs's unit sets LimitMEMLOCK=infinity
and xlvsd refuses to start when the limit cannot hold one UMEM.

The packaged unit, xlvsd.service, runs xlvsd as the system user xlvs with exactly these
capabilities (AmbientCapabilities= and CapabilityBoundingSet=), NoNewPrivileges=, a
read-only system (ProtectSystem=strict) and /var/lib/xlvs and /run/xlvs as its
StateDirectory and RuntimeDirectory.`},
			{Title: "Service manager", Body: `Under systemd (Type=notify) xlvsd sends READY=1 once the XDP program is attached on
every interface, the AF_XDP sockets are bound, and the rules are restored (state file,
--config or --keepalived-conf): "systemctl start xlvsd" returns when the director
forwards. It sends RELOADING=1 and READY=1 around a SIGHUP reload and STOPPING=1 when it
stops. The protocol is sd_notify(3)'s datagram to $NOTIFY_SOCKET; without that variable
nothing is sent.

Restart and upgrade ("systemctl restart xlvsd") keep every connection: on SIGTERM xlvsd
stores its connection table, templates and counters (a sealed memfd), its AF_XDP sockets
with their UMEMs and its XDP links with the service manager (FDSTORE=1), and the next
xlvsd takes them back (LISTEN_FDS) and carries on; the packets of the moment wait in the
sockets' rings. The unit needs FileDescriptorStoreMax= of at least 1 + interfaces + 2 x
interfaces x queues (the packaged one has 512). A successor with other ring or frame
sizes, or --private-umem, opens its own sockets, and the packets of the moment are then
dropped; one that cannot read the handoff starts cold. "systemctl stop" empties the store:
the program is detached and traffic goes to the kernel.

The packaged unit takes its flags from XLVSD_OPTS in /etc/xlvs/xlvsd.conf (an
EnvironmentFile). Edit it, then: systemctl enable --now xlvsd.`},
			{Title: "Environment", Items: []manpage.Item{
				{Term: api.EnvSocket, Text: "The control socket when --socket is not given (default " + api.DefaultSocket + ")."},
				{Term: "NOTIFY_SOCKET", Text: "Set by systemd for Type=notify services: where the readiness notifications go."},
				{Term: capCheckEnv, Text: "\"off\" skips the start-up check of the capabilities, so that the kernel's own refusal shows (diagnosis)."},
			}},
			{Title: "Files", Items: []manpage.Item{
				{Term: "/etc/xlvs/xlvsd.conf", Text: "XLVSD_OPTS, the flags of the packaged unit."},
				{Term: "/var/lib/xlvs/state.json", Text: "The saved rule set (--state), restored at start."},
				{Term: api.DefaultSocket, Text: "The control socket (--socket), mode 0600, or 0660 with --socket-group."},
				{Term: "/usr/share/xlvs/grafana-dashboard.json", Text: "A Grafana dashboard over the metrics (--metrics-listen)."},
				{Term: "/usr/share/xlvs/prometheus-alerts.yml", Text: "Prometheus alerting rules: real server down, drops rising, connection table near full, sync lag."},
			}},
			{Title: "Exit status", Body: `0 after a clean stop (SIGTERM or SIGINT) and for --help and --version; 1 when xlvsd
cannot start (a bad flag, missing capabilities, an interface without XDP, rules that do
not load) or fails while running. With --check-config: 0 if xlvsd would start with the
file, 1 if not.`},
			{Title: "Examples", Body: `A two-armed LVS-NAT director, metrics on the loopback interface:

	xlvsd -i eth0 -i eth1 --metrics-listen 127.0.0.1:9110
	xlvsadm -A -t 192.0.2.10:80 -s wrr
	xlvsadm -a -t 192.0.2.10:80 -r 10.0.0.11:80 -m -w 3

Check a keepalived.conf without touching the running director:

	xlvsd --check-config --keepalived-conf /etc/keepalived/keepalived.conf`},
		},
		SeeAlso: []string{"xlvsadm(8)", "xlvs-decap(8)", "xlvs-bench(1)", "ipvsadm(8)", "keepalived.conf(5)", "systemd.exec(5)", "capabilities(7)"},
	}
}
