package ipvsadm

import (
	"fmt"
	"io"
	"strings"

	"xlvs/control/api"
	"xlvs/version"
)

// VersionText is what -v/-V/--version print: xlvs's version (xlvs/version, from git
// describe at build time) and the ipvsadm it follows.
var VersionText = Program + " " + version.String() + " (compatible with ipvsadm v1.31)"

// Usage writes the help text of -h, laid out as ipvsadm's, for the program name prog.
func Usage(w io.Writer, prog string) error {
	p := prog
	text := VersionText + "\n" +
		"Usage:\n" +
		"  " + p + " -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n" +
		"  " + p + " -D virtual-service\n" +
		"  " + p + " -C\n" +
		"  " + p + " -R\n" +
		"  " + p + " -S [-n]\n" +
		"  " + p + " -P|Q -t|u service-address -z local-address [-F ifname]\n" +
		"  " + p + " -G [-t|u service-address]\n" +
		"  " + p + " -a|e virtual-service -r server-address [options]\n" +
		"  " + p + " -d virtual-service -r server-address\n" +
		"  " + p + " -L|l [virtual-service] [options]\n" +
		"  " + p + " -Z [virtual-service]\n" +
		"  " + p + " --set tcp tcpfin udp\n" +
		"  " + p + " --start-daemon {master|backup} [daemon-options]\n" +
		"  " + p + " --stop-daemon {master|backup}\n" +
		"  " + p + " --dataplane-stats\n" +
		"  " + p + " --add-mark|--del-mark -t|u|--sctp-service dest[/len][:ports] -f fwmark\n" +
		"  " + p + " -h\n\n" +
		"Commands:\n" +
		"Either long or short options are allowed.\n" +
		"  --add-service     -A        add virtual service with options\n" +
		"  --edit-service    -E        edit virtual service with options\n" +
		"  --delete-service  -D        delete virtual service\n" +
		"  --clear           -C        clear the whole table\n" +
		"  --restore         -R        restore rules from stdin\n" +
		"  --add-laddr       -P        add a FULLNAT local address to a service\n" +
		"  --del-laddr       -Q        delete a FULLNAT local address of a service\n" +
		"  --get-laddr       -G        list the FULLNAT local addresses\n" +
		"  --save            -S        save rules to stdout\n" +
		"  --add-server      -a        add real server with options\n" +
		"  --edit-server     -e        edit real server with options\n" +
		"  --delete-server   -d        delete real server\n" +
		"  --list            -L|-l     list the table\n" +
		"  --zero            -Z        zero counters in a service or all services\n" +
		"  --set tcp tcpfin udp        set connection timeout values\n" +
		"  --start-daemon              start connection sync daemon\n" +
		"  --stop-daemon               stop connection sync daemon\n" +
		"  --dataplane-stats           show the XDP and AF_XDP dataplane counters (xlvs)\n" +
		"  --add-mark                  add a firewall-mark rule: -t|-u|--sctp-service dest[/len][:ports] -f fwmark\n" +
		"                              (xlvs marks packets itself, in place of iptables mangle MARK rules;\n" +
		"                              ports: 80,443 or 1024-65535; none: every port; the last matching rule wins)\n" +
		"  --del-mark                  delete a firewall-mark rule, given as -L lists it\n" +
		"  --help            -h        display this help message\n" +
		"  --version         -v|-V     display the version\n\n" +
		"virtual-service:\n" +
		"  --tcp-service|-t  service-address   service-address is host[:port]\n" +
		"  --udp-service|-u  service-address   service-address is host[:port]\n" +
		"  --sctp-service    service-address   service-address is host[:port]\n" +
		"  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n" +
		"\n" +
		"Options:\n" +
		"  --ipv6         -6                   fwmark entry uses IPv6\n" +
		"  --scheduler    -s scheduler         one of " + strings.Join(Schedulers, "|") + ",\n" +
		"                                      the default scheduler is " + DefaultScheduler + ".\n" +
		"  --pe            engine              alternate persistence engine may be " + strings.Join(PersistenceEngines, "|") + ",\n" +
		"                                      not set by default.\n" +
		"  --persistent   -p [timeout]         persistent service\n" +
		"  --netmask      -M netmask           persistent granularity mask\n" +
		"  --real-server  -r server-address    server-address is host (and port)\n" +
		"  --gatewaying   -g                   gatewaying (direct routing) (default)\n" +
		"  --ipip         -i                   ipip encapsulation (tunneling)\n" +
		"  --masquerading -m                   masquerading (NAT)\n" +
		"  --fullnat                           full NAT: source and destination translated\n" +
		"  --laddr        -z local-address     FULLNAT local address (for -P, -Q)\n" +
		"  --ifname       -F ifname            interface of the local address (informative)\n" +
		"  --tun-type      type                one of ipip|gue|gre,\n" +
		"                                      the default tunnel type is ipip.\n" +
		"  --tun-port      port                tunnel destination port\n" +
		"  --tun-nocsum                        tunnel encapsulation without checksum\n" +
		"  --tun-csum                          tunnel encapsulation with checksum\n" +
		"  --tun-remcsum                       tunnel encapsulation with remote checksum\n" +
		"  --weight       -w weight            capacity of real server\n" +
		"  --u-threshold  -x uthreshold        upper threshold of connections\n" +
		"  --l-threshold  -y lthreshold        lower threshold of connections\n" +
		"  --connection   -c                   output of current IPVS connections\n" +
		"  --timeout                           output of timeout (tcp tcpfin udp)\n" +
		"  --daemon                            output of daemon information\n" +
		"  --stats                             output of statistics information\n" +
		"  --rate                              output of rate information\n" +
		"  --exact                             expand numbers (display exact values)\n" +
		"  --thresholds                        output of thresholds information\n" +
		"  --persistent-conn                   output of persistent connection info\n" +
		"  --tun-info                          output of tunnel information\n" +
		"  --nosort                            disable sorting output of service/server entries\n" +
		"  --sort                              does nothing, for backwards compatibility\n" +
		"  --ops          -o                   one-packet scheduling\n" +
		"  --numeric      -n                   numeric output of addresses and ports\n" +
		"  --sched-flags  -b flags             scheduler flags (comma-separated)\n" +
		"Daemon Options:\n" +
		"  --syncid sid                        syncid for connection sync (default=0)\n" +
		"  --sync-maxlen length                Max sync message length (default=1472)\n" +
		"  --mcast-interface interface         multicast interface for connection sync (default=" + DefaultMcastInterface + ")\n" +
		"  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n" +
		"  --mcast-port port                   UDP port (default=8848)\n" +
		"  --mcast-ttl ttl                     Multicast TTL (default=1)\n" +
		"\n" +
		"The control socket is $" + api.EnvSocket + ", or " + api.DefaultSocket + " when unset.\n"
	_, err := fmt.Fprint(w, text)
	return err
}
