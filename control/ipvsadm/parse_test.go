package ipvsadm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"xlvs/control/api"
)

func withService(r api.Request, s api.Service) api.Request {
	r.Service = &s
	return r
}

func withDest(r api.Request, k api.ServiceKey, d api.Dest) api.Request {
	r.Service = &api.Service{ServiceKey: k}
	r.Dest = &d
	return r
}

func TestParse(t *testing.T) {
	vip := tcpKey("198.18.0.1", 80)
	list := []api.Request{req(api.OpInfo), req(api.OpList), req(api.OpListMarks)}
	tests := []struct {
		name string
		args []string
		want Command
	}{
		{name: "no arguments lists", args: nil, want: Command{Kind: KindList, Requests: list}},
		{name: "-L", args: []string{"-L"}, want: Command{Kind: KindList, Requests: list}},
		{name: "-l --list", args: []string{"--list"}, want: Command{Kind: KindList, Requests: list}},
		{name: "-Ln bundled", args: []string{"-Ln"}, want: Command{Kind: KindList, Requests: list, List: ListOptions{Numeric: true}}},
		{name: "-Lnc bundled", args: []string{"-Lnc"},
			want: Command{Kind: KindList, Requests: []api.Request{req(api.OpListConns)}, List: ListOptions{Numeric: true, Connections: true}}},
		{name: "-L all formats", args: []string{"-l", "--stats", "--exact", "--nosort", "--sort", "-n"},
			want: Command{Kind: KindList, Requests: list, List: ListOptions{Numeric: true, Stats: true, Exact: true, NoSort: true}}},
		{name: "-L rate thresholds persistent-conn tun-info", args: []string{"-L", "--rate", "--thresholds", "--persistent-conn", "--tun-info"},
			want: Command{Kind: KindList, Requests: list, List: ListOptions{Rate: true, Thresholds: true, PersistentConn: true, TunInfo: true}}},
		{name: "-L one service", args: []string{"-L", "-n", "-t", "198.18.0.1:80"},
			want: Command{Kind: KindList, Service: &vip, List: ListOptions{Numeric: true},
				Requests: []api.Request{withService(req(api.OpList), api.Service{ServiceKey: vip})}}},
		{name: "-L --timeout", args: []string{"-L", "--timeout"},
			want: Command{Kind: KindList, Requests: []api.Request{req(api.OpGetTimeouts)}, List: ListOptions{Timeout: true}}},
		{name: "-L --daemon", args: []string{"-L", "--daemon"},
			want: Command{Kind: KindList, Requests: []api.Request{req(api.OpGetDaemon)}, List: ListOptions{Daemon: true}}},
		{name: "-c --persistent-conn", args: []string{"-L", "-c", "--persistent-conn"},
			want: Command{Kind: KindList, Requests: []api.Request{req(api.OpListConns)}, List: ListOptions{Connections: true, PersistentConn: true}}},

		{name: "-A defaults", args: []string{"-A", "-t", "198.18.0.1:80"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "wlc"})}}},
		{name: "-At bundled, value attached", args: []string{"-At198.18.0.1:80", "-srr"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "rr"})}}},
		{name: "long options with =", args: []string{"--add-service", "--tcp-service=198.18.0.1:80", "--scheduler=sed"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "sed"})}}},
		{name: "-p alone is 300", args: []string{"-A", "-t", "198.18.0.1:80", "-p"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "wlc", Persistent: true, Timeout: 300})}}},
		{name: "-p then option", args: []string{"-A", "-t", "198.18.0.1:80", "-p", "-s", "rr"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "rr", Persistent: true, Timeout: 300})}}},
		{name: "-p 600 separate", args: []string{"-A", "-t", "198.18.0.1:80", "-p", "600"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "wlc", Persistent: true, Timeout: 600})}}},
		{name: "-p600 attached, --persistent=60", args: []string{"-E", "-t", "198.18.0.1:80", "--persistent=60"},
			want: Command{Kind: KindEditService, Requests: []api.Request{withService(req(api.OpEditService),
				api.Service{ServiceKey: vip, Scheduler: "wlc", Persistent: true, Timeout: 60})}}},
		{name: "persistent port 0 with netmask", args: []string{"-A", "-t", "198.18.0.1", "-p", "-M", "255.255.255.0"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: tcpKey("198.18.0.1", 0), Scheduler: "wlc", Persistent: true, Timeout: 300, Netmask: "255.255.255.0"})}}},
		{name: "netmask /32 is the default", args: []string{"-A", "-t", "198.18.0.1:80", "-M", "255.255.255.255"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "wlc"})}}},
		{name: "netmask by host name", args: []string{"-A", "-t", "198.18.0.1:80", "-p", "-M", "mask.example.test"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "wlc", Persistent: true, Timeout: 300, Netmask: "255.255.0.0"})}}},
		{name: "IPv6 service with prefix mask", args: []string{"-A", "-t", "[2001:db8::1]:443", "-p", "1800", "-M", "64", "-s", "sh", "-b", "sh-port,sh-fallback"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: tcpKey("2001:db8::1", 443), Scheduler: "sh", SchedFlags: []string{"sh-fallback", "sh-port"},
					Persistent: true, Timeout: 1800, Netmask: "64"})}}},
		{name: "IPv6 bare address has no port", args: []string{"-A", "-t", "2001:db8::1", "-p"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: tcpKey("2001:db8::1", 0), Scheduler: "wlc", Persistent: true, Timeout: 300})}}},
		{name: "names resolved", args: []string{"-A", "-u", "vip.example.test:domain", "-o", "--pe", "sip", "-p"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: udpKey("198.18.0.1", 53), Scheduler: "wlc", OnePacket: true, PE: "sip", Persistent: true, Timeout: 300})}}},
		{name: "inet_aton short form", args: []string{"-A", "-t", "198.18.1:0x50"},
			want: Command{}}, // 0x50 is not a decimal port nor a service name: see errors
		{name: "inet_aton forms", args: []string{"-A", "-t", "3323068417:80"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: vip, Scheduler: "wlc"})}}},
		{name: "mh flags", args: []string{"-A", "-f", "5", "-s", "mh", "-b", "flag-2"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: fwmKey(5, 4), Scheduler: "mh", SchedFlags: []string{"mh-port"}})}}},
		{name: "generic flags", args: []string{"-A", "-f", "5", "-b", "flag-3,flag-1"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: fwmKey(5, 4), Scheduler: "wlc", SchedFlags: []string{"flag-1", "flag-3"}})}}},
		{name: "fwmark IPv6", args: []string{"-A", "-f", "7", "-6", "-p", "-M", "48"},
			want: Command{Kind: KindAddService, Requests: []api.Request{withService(req(api.OpAddService),
				api.Service{ServiceKey: fwmKey(7, 6), Scheduler: "wlc", Persistent: true, Timeout: 300, Netmask: "48"})}}},
		{name: "-D", args: []string{"-D", "-t", "198.18.0.1:http"},
			want: Command{Kind: KindDelService, Requests: []api.Request{withService(req(api.OpDelService), api.Service{ServiceKey: vip})}}},
		{name: "-C", args: []string{"-C"}, want: Command{Kind: KindClear, Requests: []api.Request{req(api.OpClear)}}},
		{name: "--clear", args: []string{"--clear"}, want: Command{Kind: KindClear, Requests: []api.Request{req(api.OpClear)}}},

		{name: "-a defaults: route, weight 1, service port", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodRoute, Weight: 1})}}},
		{name: "-a DR forces the service port", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1:8080", "-g"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodRoute, Weight: 1})}}},
		{name: "-a masq keeps its port", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "web1.example.test:8080", "-m", "-w", "0", "-x", "100", "-y", "50"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 8080, Method: api.MethodMasq, Weight: 0, UThreshold: 100, LThreshold: 50})}}},
		{name: "-a fullnat", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1:8080", "--fullnat", "-w", "65535"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 8080, Method: api.MethodFullNAT, Weight: 65535})}}},
		{name: "-a tunnel default ipip", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodTunnel, Weight: 1, TunType: api.TunIPIP})}}},
		{name: "-a tunnel gue", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gue", "--tun-port", "6080", "--tun-remcsum"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodTunnel, Weight: 1, TunType: api.TunGUE, TunPort: 6080, TunFlags: api.TunRemCsum})}}},
		{name: "-a tunnel gre default nocsum", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gre"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodTunnel, Weight: 1, TunType: api.TunGRE, TunFlags: api.TunNoCsum})}}},
		{name: "-a tunnel to another family", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "[2001:db8::10]:80", "-i"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("2001:db8::10"), Port: 80, Method: api.MethodTunnel, Weight: 1, TunType: api.TunIPIP})}}},
		{name: "-a fwmark dest port 0", args: []string{"-a", "-f", "1", "-r", "198.18.1.1", "-m"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), fwmKey(1, 4),
				api.Dest{Addr: ip("198.18.1.1"), Port: 0, Method: api.MethodMasq, Weight: 1})}}},
		{name: "-a fwmark dest with a named tcp port", args: []string{"-a", "-f", "1", "-r", "198.18.1.1:https"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), fwmKey(1, 4),
				api.Dest{Addr: ip("198.18.1.1"), Port: 443, Method: api.MethodRoute, Weight: 1})}}},
		{name: "-r before -t takes no port", args: []string{"-a", "-r", "198.18.1.1", "-m", "-t", "198.18.0.1:80"},
			want: Command{Kind: KindAddDest, Requests: []api.Request{withDest(req(api.OpAddDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 0, Method: api.MethodMasq, Weight: 1})}}},
		{name: "-e", args: []string{"-e", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-w", "5"},
			want: Command{Kind: KindEditDest, Requests: []api.Request{withDest(req(api.OpEditDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodRoute, Weight: 5})}}},
		{name: "-d", args: []string{"-d", "-t", "198.18.0.1:80", "-r", "198.18.1.1"},
			want: Command{Kind: KindDelDest, Requests: []api.Request{withDest(req(api.OpDelDest), vip,
				api.Dest{Addr: ip("198.18.1.1"), Port: 80})}}},
		{name: "-Z all", args: []string{"-Z"}, want: Command{Kind: KindZero, Requests: []api.Request{req(api.OpZero)}}},
		{name: "-Z one", args: []string{"--zero", "-u", "198.18.0.1:53"},
			want: Command{Kind: KindZero, Service: ptr(udpKey("198.18.0.1", 53)),
				Requests: []api.Request{withService(req(api.OpZero), api.Service{ServiceKey: udpKey("198.18.0.1", 53)})}}},
		{name: "--set", args: []string{"--set", "900", "120", "0"},
			want: Command{Kind: KindSetTimeouts, Requests: []api.Request{{Version: api.Version, Op: api.OpSetTimeouts, Timeouts: &api.Timeouts{TCP: 900, TCPFin: 120}}}}},
		{name: "--set after --", args: []string{"--set", "--", "1", "2", "3"},
			want: Command{Kind: KindSetTimeouts, Requests: []api.Request{{Version: api.Version, Op: api.OpSetTimeouts, Timeouts: &api.Timeouts{TCP: 1, TCPFin: 2, UDP: 3}}}}},
		{name: "--start-daemon defaults", args: []string{"--start-daemon", "master"},
			want: Command{Kind: KindStartDaemon, Requests: []api.Request{{Version: api.Version, Op: api.OpStartDaemon,
				Daemon: &api.SyncDaemon{State: "master", Interface: "eth0"}}}}},
		{name: "--start-daemon everything", args: []string{"--start-daemon=backup", "--mcast-interface", "veth0", "--syncid", "9",
			"--sync-maxlen", "1400", "--mcast-group", "239.1.2.3", "--mcast-port", "9000", "--mcast-ttl", "2"},
			want: Command{Kind: KindStartDaemon, Requests: []api.Request{{Version: api.Version, Op: api.OpStartDaemon,
				Daemon: &api.SyncDaemon{State: "backup", Interface: "veth0", SyncID: 9, MaxLen: 1400, Group: "239.1.2.3", Port: 9000, TTL: 2}}}}},
		{name: "--start-daemon IPv6 group", args: []string{"--start-daemon", "master", "--mcast-group", "ff02::81"},
			want: Command{Kind: KindStartDaemon, Requests: []api.Request{{Version: api.Version, Op: api.OpStartDaemon,
				Daemon: &api.SyncDaemon{State: "master", Interface: "eth0", Group: "ff02::81"}}}}},
		{name: "--stop-daemon", args: []string{"--stop-daemon", "backup", "--syncid", "3"},
			want: Command{Kind: KindStopDaemon, Requests: []api.Request{{Version: api.Version, Op: api.OpStopDaemon,
				Daemon: &api.SyncDaemon{State: "backup", SyncID: 3}}}}},
		{name: "-S", args: []string{"-S"}, want: Command{Kind: KindSave, Requests: []api.Request{req(api.OpList), req(api.OpGetLocalAddrs), req(api.OpListMarks)}}},
		{name: "-S -n", args: []string{"--save", "-n"}, want: Command{Kind: KindSave, List: ListOptions{Numeric: true}, Requests: []api.Request{req(api.OpList), req(api.OpGetLocalAddrs), req(api.OpListMarks)}}},
		{name: "-R", args: []string{"-R"}, want: Command{Kind: KindRestore}},
		{name: "-h", args: []string{"-h"}, want: Command{Kind: KindHelp}},
		{name: "--help ignores the rest", args: []string{"--help", "--bogus"}, want: Command{Kind: KindHelp}},
		{name: "-v", args: []string{"-v"}, want: Command{Kind: KindVersion}},
		{name: "-V", args: []string{"-V"}, want: Command{Kind: KindVersion}},
		{name: "--version", args: []string{"--version"}, want: Command{Kind: KindVersion}},
		{name: "--dataplane-stats", args: []string{"--dataplane-stats"},
			want: Command{Kind: KindDataplaneStats, Requests: []api.Request{req(api.OpDataplaneStats)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testParser.Parse(tt.args)
			if tt.want.Kind == 0 {
				if err == nil {
					t.Fatalf("Parse(%q) succeeded, want an error", tt.args)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if got.Resolver == nil {
				t.Error("the command carries no Resolver")
			}
			got.Resolver = nil
			if !reflect.DeepEqual(*got, tt.want) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(tt.want, "", " ")
				t.Errorf("Parse(%q):\ngot  %s\nwant %s", tt.args, g, w)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the message must contain it
	}{
		{name: "option before command", args: []string{"-n", "-L"}, want: "-n is not a command"},
		{name: "only positional", args: []string{"foo"}, want: "no command given"},
		{name: "unknown first option", args: []string{"--bogus"}, want: "--bogus: unknown option\nTry `xlvsadm -h' or 'xlvsadm --help' for more information."},
		{name: "unknown later option", args: []string{"-L", "--bogus"}, want: "--bogus: unknown option"},
		{name: "unknown short option", args: []string{"-LK"}, want: "-K: unknown option"},
		{name: "missing argument", args: []string{"-A", "-t"}, want: "-t: missing argument"},
		{name: "long missing argument", args: []string{"-A", "--tcp-service"}, want: "--tcp-service: missing argument"},
		{name: "argument not wanted", args: []string{"-L", "--numeric=yes"}, want: "--numeric: option does not take an argument"},
		{name: "two commands", args: []string{"-A", "-L"}, want: "invalid option `-L'"},
		{name: "unexpected argument", args: []string{"-L", "extra"}, want: "unexpected argument extra"},
		{name: "set needs three", args: []string{"--set", "1", "2"}, want: "--set option requires 3 timeout values"},
		{name: "set bad value", args: []string{"--set", "1", "x", "3"}, want: "invalid timeout value `x' specified"},
		{name: "set too large", args: []string{"--set", "1", "2", "2678401"}, want: "invalid timeout value `2678401' specified"},
		{name: "set extra", args: []string{"--set", "1", "2", "3", "4"}, want: "unexpected argument 4"},
		{name: "multiple services", args: []string{"-A", "-t", "198.18.0.1:80", "-u", "198.18.0.1:80"}, want: "multiple 'service-address' options specified"},
		{name: "multiple forwarding methods", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-g", "-m"}, want: "multiple 'forwarding-method' options specified"},
		{name: "missing service for -A", args: []string{"-A", "-s", "rr"}, want: "You need to supply the 'service-address' option for the 'add-service' command"},
		{name: "missing service for -D", args: []string{"-D"}, want: "You need to supply the 'service-address' option for the 'delete-service' command"},
		{name: "missing real server", args: []string{"-a", "-t", "198.18.0.1:80"}, want: "You need to supply the 'real-server' option for the 'add-server' command"},
		{name: "missing service for -d", args: []string{"-d", "-r", "198.18.1.1"}, want: "You need to supply the 'service-address' option for the 'delete-server' command"},
		{name: "illegal option", args: []string{"-A", "-t", "198.18.0.1:80", "-w", "3"}, want: "Illegal 'weight' option with the 'add-service' command"},
		{name: "illegal numeric with -A", args: []string{"-A", "-n", "-t", "198.18.0.1:80"}, want: "Illegal 'numeric' option with the 'add-service' command"},
		{name: "illegal option with -C", args: []string{"-C", "-n"}, want: "Illegal 'numeric' option with the 'flush' command"},
		{name: "illegal option with -R", args: []string{"-R", "-n"}, want: "Illegal 'numeric' option with the 'restore' command"},
		{name: "illegal option with -S", args: []string{"-S", "-c"}, want: "Illegal 'connection' option with the 'save' command"},
		{name: "illegal option with --set", args: []string{"--set", "1", "2", "3", "-n"}, want: "Illegal 'numeric' option with the 'set' command"},
		{name: "illegal option with --dataplane-stats", args: []string{"--dataplane-stats", "-n"}, want: "Illegal 'numeric' option with the 'dataplane-stats' command"},
		{name: "list exclusive", args: []string{"-L", "-c", "--timeout"}, want: "The option 'timeout' conflicts with the 'connection' option in the 'list' command"},
		{name: "list exclusive service", args: []string{"-L", "-t", "198.18.0.1:80", "--daemon"}, want: "The option 'daemon' conflicts with the 'service-address' option in the 'list' command"},
		{name: "list conflicts", args: []string{"-L", "-c", "--stats"}, want: "options conflicts in the list command"},
		{name: "list conflicts persistent-conn", args: []string{"-L", "--timeout", "--persistent-conn"}, want: "options conflicts in the list command"},
		{name: "illegal service address", args: []string{"-A", "-t", "nosuchhost.invalid:80"}, want: "illegal virtual server address[:port] specified: `nosuchhost.invalid:80'"},
		{name: "digits only address", args: []string{"-A", "-t", "80"}, want: "illegal virtual server address[:port] specified"},
		{name: "empty address", args: []string{"-A", "-t", ""}, want: "illegal virtual server address[:port] specified"},
		{name: "host with IPv6 only", args: []string{"-A", "-t", "v6only.example.test:80"}, want: "illegal virtual server address[:port] specified"},
		{name: "illegal port", args: []string{"-A", "-t", "198.18.0.1:65536"}, want: "illegal virtual server address[:port] specified"},
		{name: "unknown port name", args: []string{"-A", "-t", "198.18.0.1:nosuchport"}, want: "illegal virtual server address[:port] specified"},
		{name: "udp name on tcp", args: []string{"-A", "-t", "198.18.0.1:syslog"}, want: "illegal virtual server address[:port] specified"},
		{name: "hex port", args: []string{"-A", "-t", "198.18.1:0x50"}, want: "illegal virtual server address[:port] specified"},
		{name: "empty port", args: []string{"-A", "-t", "198.18.0.1:"}, want: "illegal virtual server address[:port] specified"},
		{name: "brackets need a port", args: []string{"-A", "-t", "[2001:db8::1]"}, want: "illegal virtual server address[:port] specified"},
		{name: "brackets need a colon", args: []string{"-A", "-t", "[2001:db8::1]80"}, want: "illegal virtual server address[:port] specified"},
		{name: "zone not allowed", args: []string{"-A", "-t", "[fe80::1%eth0]:80"}, want: "illegal virtual server address[:port] specified"},
		{name: "illegal real server", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "300.1.1.1"}, want: "illegal real server address[:port] specified: `300.1.1.1'"},
		{name: "illegal weight", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-w", "65536"}, want: "illegal weight specified: `65536' (want an integer from 0 to 65535)"},
		{name: "negative weight", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-w", "-1"}, want: "illegal weight specified"},
		{name: "weight not a number", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-w", "5x"}, want: "illegal weight specified"},
		{name: "illegal u-threshold", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-x", "2147483648"}, want: "illegal u_threshold specified"},
		{name: "illegal l-threshold", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-y", "x"}, want: "illegal l_threshold specified"},
		{name: "zero port", args: []string{"-A", "-t", "198.18.0.1"}, want: "Zero port specified for non-persistent service"},
		{name: "zero port explicit", args: []string{"-A", "-t", "198.18.0.1:0"}, want: "Zero port specified for non-persistent service"},
		{name: "ops needs udp", args: []string{"-A", "-t", "198.18.0.1:80", "-o"}, want: "One-Packet Scheduling is only for UDP virtual services"},
		{name: "unknown scheduler", args: []string{"-A", "-t", "198.18.0.1:80", "-s", "fastest"},
			want: "Scheduler not found: `fastest' (want one of rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf twos)"},
		{name: "unknown pe", args: []string{"-A", "-t", "198.18.0.1:80", "--pe", "http"}, want: "Persistence engine not found: `http' (want sip)"},
		{name: "unknown sched flag", args: []string{"-A", "-t", "198.18.0.1:80", "-s", "sh", "-b", "sh-magic"},
			want: "invalid scheduler flag `sh-magic' (want sh-fallback, sh-port with -s sh; mh-fallback, mh-port with -s mh; or flag-1, flag-2, flag-3)"},
		{name: "empty sched flags", args: []string{"-A", "-t", "198.18.0.1:80", "-b", ","}, want: "invalid scheduler flag `,'"},
		{name: "incompatible sched flag", args: []string{"-A", "-t", "198.18.0.1:80", "-b", "sh-port"}, want: "incompatible scheduler flag `sh-port'"},
		{name: "incompatible mh flag", args: []string{"-A", "-t", "198.18.0.1:80", "-s", "sh", "-b", "mh-port"}, want: "incompatible scheduler flag `mh-port'"},
		{name: "bad persistence timeout", args: []string{"-A", "-t", "198.18.0.1:80", "-p", "0"}, want: "invalid timeout value `0' specified"},
		{name: "bad persistence timeout attached", args: []string{"-A", "-t", "198.18.0.1:80", "-pn"}, want: "invalid timeout value `n' specified"},
		{name: "bad netmask", args: []string{"-A", "-t", "198.18.0.1:80", "-p", "-M", "255.255.255.256"}, want: "illegal virtual server persistent mask specified"},
		{name: "bad IPv6 netmask", args: []string{"-A", "-t", "[2001:db8::1]:80", "-p", "-M", "129"}, want: "illegal ipv6 netmask specified"},
		{name: "bad fwmark", args: []string{"-A", "-f", "0"}, want: "invalid fwmark value `0' specified"},
		{name: "fwmark too large", args: []string{"-A", "-f", "4294967296"}, want: "invalid fwmark value `4294967296' specified"},
		{name: "-6 before -f", args: []string{"-A", "-6", "-f", "1"}, want: "-6 used before -f"},
		{name: "family mismatch", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "[2001:db8::10]:80", "-m"}, want: "Different address family is allowed only for tunneling servers"},
		{name: "fwmark IPv6 needs -6", args: []string{"-a", "-f", "1", "-r", "2001:db8::10"}, want: "Different address family is allowed only for tunneling servers"},
		{name: "tunnel options need -i", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "--tun-type", "gue"}, want: "Tunnel options conflict with forward method"},
		{name: "gue needs a port", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gue"}, want: "You need to supply the 'tun-port' option for the 'gue' tunnel type"},
		{name: "gue checksum exclusive", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gue", "--tun-port", "1", "--tun-csum", "--tun-remcsum"},
			want: "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type"},
		{name: "gre takes no port", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gre", "--tun-port", "1"}, want: "Illegal 'tun-port' option with the 'gre' tunnel type"},
		{name: "gre no remcsum", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gre", "--tun-remcsum"}, want: "Illegal 'tun-remcsum' option with the 'gre' tunnel type"},
		{name: "ipip takes no checksum", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-csum"}, want: "Illegal 'tun-csum' option with the 'ipip' tunnel type"},
		{name: "bad tunnel type", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "vxlan"}, want: "illegal tunnel type specified: `vxlan'"},
		{name: "bad tunnel port", args: []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-port", "0"}, want: "illegal tunnel port specified"},
		{name: "bad daemon state", args: []string{"--start-daemon", "primary"}, want: "illegal start-daemon parameter specified: `primary' (want master or backup)"},
		{name: "bad stop daemon state", args: []string{"--stop-daemon", "x"}, want: "illegal stop-daemon parameter specified"},
		{name: "bad syncid", args: []string{"--start-daemon", "master", "--syncid", "256"}, want: "illegal syncid specified"},
		{name: "bad mcast group", args: []string{"--start-daemon", "master", "--mcast-group", "198.18.0.1"}, want: "invalid IPv4 mcast-group `198.18.0.1'"},
		{name: "bad IPv6 mcast group", args: []string{"--start-daemon", "master", "--mcast-group", "2001:db8::1"}, want: "invalid IPv6 mcast-group `2001:db8::1'"},
		{name: "bad mcast port", args: []string{"--start-daemon", "master", "--mcast-port", "0"}, want: "illegal mcast-port specified"},
		{name: "bad mcast ttl", args: []string{"--start-daemon", "master", "--mcast-ttl", "256"}, want: "illegal mcast-ttl specified"},
		{name: "bad sync maxlen", args: []string{"--start-daemon", "master", "--sync-maxlen", "65508"}, want: "illegal sync-maxlen specified"},
		{name: "mcast option with stop", args: []string{"--stop-daemon", "master", "--mcast-interface", "eth1"}, want: "Illegal 'mcast-interface' option with the 'stop-daemon' command"},
		{name: "duplicate list option", args: []string{"-L", "-n", "--numeric"}, want: "multiple 'numeric' options specified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := testParser.Parse(tt.args)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error containing %q", tt.args, cmd, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error:\n%v\nwant it to contain:\n%v", tt.args, err, tt.want)
			}
		})
	}
}

func TestTryHelpErrors(t *testing.T) {
	for _, args := range [][]string{{"-n"}, {"foo"}, {"--bogus"}, {"-t", "198.18.0.1:80", "-A"}} {
		_, err := testParser.Parse(args)
		if !errors.Is(err, ErrTryHelp) {
			t.Errorf("Parse(%q) = %v, want an error wrapping ErrTryHelp", args, err)
		}
	}
}

// sampleArgs gives, per option column, a command-line fragment that sets it.
var sampleArgs = [numOpts][]string{
	optNumeric: {"-n"}, optConnection: {"-c"}, optService: {"-t", "198.18.0.1:80"},
	optScheduler: {"-s", "rr"}, optPersistent: {"-p"}, optNetmask: {"-M", "255.255.255.0"},
	optServer: {"-r", "198.18.1.1"}, optForward: {"-m"}, optWeight: {"-w", "2"},
	optUThreshold: {"-x", "9"}, optLThreshold: {"-y", "3"}, optMcast: {"--mcast-interface", "eth1"},
	optTimeout: {"--timeout"}, optDaemon: {"--daemon"}, optStats: {"--stats"}, optRate: {"--rate"},
	optThresholds: {"--thresholds"}, optPersistentConn: {"--persistent-conn"}, optNoSort: {"--nosort"},
	optSyncID: {"--syncid", "4"}, optExact: {"--exact"}, optOnePacket: {"-o"}, optPE: {"--pe", "sip"},
	optSchedFlags: {"-b", "flag-1"}, optMcastGroup: {"--mcast-group", "239.0.0.1"}, optMcastPort: {"--mcast-port", "9"},
	optMcastTTL: {"--mcast-ttl", "3"}, optSyncMaxlen: {"--sync-maxlen", "999"}, optTunInfo: {"--tun-info"},
	optTunType: {"--tun-type", "ipip"}, optTunPort: {"--tun-port", "5"}, optTunNoCsum: {"--tun-nocsum"},
	optTunCsum: {"--tun-csum"}, optTunRemCsum: {"--tun-remcsum"},
	optLaddr: {"-z", "198.18.2.50"}, optIfname: {"-F", "eth1"},
}

// TestCompatTable drives every illegal cell of the command/option table through Parse:
// a command line with the command's required options plus the illegal one must fail
// naming that option and command.
func TestCompatTable(t *testing.T) {
	cmdArgs := map[Kind][]string{
		KindAddService: {"-A"}, KindEditService: {"-E"}, KindDelService: {"-D"}, KindClear: {"-C"},
		KindList: {"-L"}, KindAddDest: {"-a"}, KindDelDest: {"-d"}, KindEditDest: {"-e"},
		KindSetTimeouts: {"--set", "1", "2", "3"}, KindStartDaemon: {"--start-daemon", "master"},
		KindStopDaemon: {"--stop-daemon", "master"}, KindRestore: {"-R"}, KindSave: {"-S"}, KindZero: {"-Z"},
		KindDataplaneStats: {"--dataplane-stats"},
		KindAddLaddr:       {"-P"}, KindDelLaddr: {"-Q"}, KindGetLaddr: {"-G"},
	}
	cells := 0
	for kind, row := range compat {
		if len(row) != numOpts {
			t.Fatalf("%s row has %d columns, want %d", kind, len(row), numOpts)
		}
		var base []string
		base = append(base, cmdArgs[kind]...)
		for j := range numOpts {
			if row[j] == '+' {
				base = append(base, sampleArgs[j]...)
			}
		}
		for j := range numOpts {
			if row[j] != 'x' {
				continue
			}
			cells++
			args := append(append([]string{}, base...), sampleArgs[j]...)
			_, err := testParser.Parse(args)
			want := fmt.Sprintf("Illegal '%s' option with the '%s' command", optNames[j], kind)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Parse(%q) = %v, want %q", args, err, want)
			}
		}
		// The required options alone are accepted (some commands need more than the
		// table says: -A needs a port, which the samples give).
		if kind != KindRestore {
			if _, err := testParser.Parse(base); err != nil {
				t.Errorf("Parse(%q) with the required options: %v", base, err)
			}
		}
	}
	if cells < 300 {
		t.Errorf("checked only %d illegal cells", cells)
	}
}

func TestScanner(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // "name=arg" or "name", then "pos:word"
	}{
		{name: "bundle", args: []string{"-Lnc"}, want: []string{"-L", "-n", "-c"}},
		{name: "bundle with value", args: []string{"-At198.18.0.1:80"}, want: []string{"-A", "-t=198.18.0.1:80"}},
		{name: "bundle, value next", args: []string{"-At", "x"}, want: []string{"-A", "-t=x"}},
		{name: "value starting with dash", args: []string{"-w", "-1"}, want: []string{"-w=-1"}},
		{name: "optional absent before option", args: []string{"-p", "-n"}, want: []string{"-p", "-n"}},
		{name: "optional present", args: []string{"-p", "30"}, want: []string{"-p=30"}},
		{name: "optional at end", args: []string{"-p"}, want: []string{"-p"}},
		{name: "optional long", args: []string{"--persistent", "30", "--persistent=40"}, want: []string{"--persistent=30", "--persistent=40"}},
		{name: "long with =", args: []string{"--weight=3"}, want: []string{"--weight=3"}},
		{name: "long with empty =", args: []string{"--weight="}, want: []string{"--weight="}},
		{name: "positional", args: []string{"a", "-L", "-", "b"}, want: []string{"-L", "pos:a", "pos:-", "pos:b"}},
		{name: "double dash", args: []string{"-L", "--", "-n"}, want: []string{"-L", "pos:-n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scanner{args: tt.args}
			var got []string
			for {
				tok, ok, err := s.next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				if tok.hasArg {
					got = append(got, tok.name+"="+tok.arg)
				} else {
					got = append(got, tok.name)
				}
			}
			for _, p := range s.positional {
				got = append(got, "pos:"+p)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int64
		want   int64
		ok     bool
	}{
		{"0", 0, 10, 0, true}, {"10", 0, 10, 10, true}, {"11", 0, 10, 0, false},
		{" 7", 0, 10, 7, true}, {"+7", 0, 10, 7, true}, {"-0", 0, 10, 0, true}, {"-1", 0, 10, 0, false},
		{"7 ", 0, 10, 0, false}, {"", 0, 10, 0, false}, {"+", 0, 10, 0, false}, {"0x7", 0, 10, 0, false},
		{"--7", -10, 10, 0, false}, {"99999999999999999999", 0, 1 << 62, 0, false}, {"007", 0, 10, 7, true},
	}
	for _, tt := range tests {
		got, ok := parseNumber(tt.in, tt.lo, tt.hi)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseNumber(%q, %d, %d) = %d, %v; want %d, %v", tt.in, tt.lo, tt.hi, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseInetAton(t *testing.T) {
	tests := []struct {
		in, want string // want "" means invalid
	}{
		{"198.18.0.1", "198.18.0.1"}, {"198.18.1", "198.18.0.1"}, {"198.1179649", "198.18.0.1"},
		{"3323068417", "198.18.0.1"}, {"0xc6.0x12.0.1", "198.18.0.1"}, {"0306.022.0.01", "198.18.0.1"},
		{"0x", "0.0.0.0"}, {"0", "0.0.0.0"}, {"255.255.255.255", "255.255.255.255"},
		{"256.0.0.1", ""}, {"1.2.3.256", ""}, {"1.2.65536", ""}, {"1.2.65535", "1.2.255.255"},
		{"4294967296", ""}, {"1.2.3.4.5", ""}, {"1..2", ""}, {"", ""}, {"08", ""}, {"1.2.3.4 ", ""},
		{"a.b.c.d", ""}, {"1.2.3.-4", ""},
	}
	for _, tt := range tests {
		got, ok := parseInetAton(tt.in)
		switch {
		case tt.want == "" && ok:
			t.Errorf("parseInetAton(%q) = %v, want invalid", tt.in, got)
		case tt.want != "" && (!ok || got != netip.MustParseAddr(tt.want)):
			t.Errorf("parseInetAton(%q) = %v, %v; want %s", tt.in, got, ok, tt.want)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, proto string
		want      string // "addr" or "addr port"; "" = invalid
	}{
		{"198.18.0.1:80", "tcp", "198.18.0.1 80"},
		{"198.18.0.1", "tcp", "198.18.0.1"},
		{"vip.example.test:http", "tcp", "198.18.0.1 80"},
		{"vip.example.test:http", "", ""}, // -r before -t: no protocol for names
		{"vip.example.test:80", "", "198.18.0.1 80"},
		{"[2001:db8::1]:443", "tcp", "2001:db8::1 443"},
		{"[2001:db8::1]:https", "tcp", "2001:db8::1 443"},
		{"2001:db8::1", "tcp", "2001:db8::1"},
		{"2001:db8::1:80", "tcp", "2001:db8::1:80"}, // a bare IPv6 address takes no port
		{"[198.18.0.1]:80", "tcp", "198.18.0.1"},    // as ipvsadm: the port is lost
		{"[::ffff:198.18.0.1]:80", "tcp", "::ffff:198.18.0.1 80"},
		{"198.18.0.1:0", "tcp", "198.18.0.1 0"},
		{"198.18.0.1:-0", "tcp", "198.18.0.1 0"},
		{"198.18.0.1:65535", "tcp", "198.18.0.1 65535"},
		{"198.18.0.1:65536", "tcp", ""},
		{"[2001:db8::1]", "tcp", ""},
		{"[2001:db8::1", "tcp", ""},
		{"12345", "tcp", ""},
		{"", "tcp", ""},
		{":80", "tcp", ""},
	}
	for _, tt := range tests {
		e, ok := parseEndpoint(tt.in, tt.proto, fakeResolver{})
		got := ""
		if ok {
			got = e.addr.String()
			if e.hasPort {
				got += fmt.Sprintf(" %d", e.port)
			}
		}
		if got != tt.want {
			t.Errorf("parseEndpoint(%q, %q) = %q, want %q", tt.in, tt.proto, got, tt.want)
		}
	}
}

func TestSchedFlags(t *testing.T) {
	tests := []struct {
		sched, arg string
		want       []string
		err        bool
	}{
		{"sh", "sh-fallback", []string{"sh-fallback"}, false},
		{"sh", "sh-port,sh-fallback,sh-port", []string{"sh-fallback", "sh-port"}, false},
		{"sh", "flag-2", []string{"sh-port"}, false},
		{"mh", "flag-1,mh-port", []string{"mh-fallback", "mh-port"}, false},
		{"", "flag-3", []string{"flag-3"}, false},
		{"rr", "flag-1,,flag-2", []string{"flag-1", "flag-2"}, false},
		{"rr", "sh-port", nil, true},
		{"sh", "mh-fallback", nil, true},
		{"sh", "", nil, true},
		{"sh", "flag-4", nil, true},
	}
	for _, tt := range tests {
		got, err := parseSchedFlags(tt.sched, tt.arg)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseSchedFlags(%q, %q) = %q, %v; want %q, error %v", tt.sched, tt.arg, got, err, tt.want, tt.err)
		}
		if err == nil {
			if back := schedFlagNames(tt.sched, schedFlagBits(got)); tt.sched != "" && !reflect.DeepEqual(back, got) {
				t.Errorf("names -> bits -> names: %q -> %q", got, back)
			}
		}
	}
}

func TestKindString(t *testing.T) {
	if KindClear.String() != "flush" || KindAddDest.String() != "add-server" || Kind(0).String() != "unknown" || Kind(99).String() != "unknown" {
		t.Error("Kind names differ from ipvsadm's")
	}
}
