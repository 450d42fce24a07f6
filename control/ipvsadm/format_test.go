package ipvsadm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"xlvs/control/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// fixture is a table exercising every listing feature, in daemon (unsorted) order.
func fixture() []api.Service {
	big := api.Stats{Conns: 99_999_999, InPkts: 100_000_000, OutPkts: 999_999_999, InBytes: 100_000_000_000_000, OutBytes: math.MaxUint64,
		CPS: 1234, InPPS: 100_000_000, OutPPS: 5, InBPS: 99_999_999_999, OutBPS: 100_000_000_000}
	return []api.Service{
		{ServiceKey: udpKey("198.18.0.1", 53), Scheduler: "rr", Persistent: true, Timeout: 600, Netmask: "255.255.255.0",
			Stats: api.Stats{Conns: 7, InPkts: 70, OutPkts: 69, InBytes: 7000, OutBytes: 6900, CPS: 1, InPPS: 2, OutPPS: 3, InBPS: 4, OutBPS: 5},
			Dests: []api.Dest{
				{Addr: ip("198.18.1.2"), Port: 53, Method: api.MethodTunnel, Weight: 2, TunType: api.TunIPIP, ActiveConns: 0, InactConns: 3, PersistConns: 2},
				{Addr: ip("198.18.1.1"), Port: 53, Method: api.MethodTunnel, Weight: 1, TunType: api.TunGUE, TunPort: 6080, TunFlags: api.TunCsum, UThreshold: 1000, LThreshold: 750},
				{Addr: ip("198.18.1.3"), Port: 53, Method: api.MethodTunnel, Weight: 1, TunType: api.TunGRE, TunFlags: api.TunNoCsum},
			}},
		{ServiceKey: tcpKey("198.18.0.1", 80), Scheduler: "wlc", Stats: big,
			Dests: []api.Dest{
				{Addr: ip("198.18.1.2"), Port: 80, Method: api.MethodRoute, Weight: 1, ActiveConns: 1, InactConns: 2},
				{Addr: ip("198.18.1.1"), Port: 8080, Method: api.MethodMasq, Weight: 65535, ActiveConns: 4294967295, InactConns: 123456, Stats: big},
				{Addr: ip("198.18.1.1"), Port: 80, Method: api.MethodFullNAT, Weight: 0, UThreshold: 2147483647},
			}},
		{ServiceKey: fwmKey(8, 6), Scheduler: "wrr", Persistent: true, Timeout: 300, Netmask: "64",
			Dests: []api.Dest{{Addr: ip("2001:db8::10"), Port: 0, Method: api.MethodRoute, Weight: 3}}},
		{ServiceKey: tcpKey("2001:db8::1", 443), Scheduler: "sh", SchedFlags: []string{"sh-port", "sh-fallback"},
			Dests: []api.Dest{
				{Addr: ip("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"), Port: 65535, Method: api.MethodMasq, Weight: 10},
				{Addr: ip("2001:db8::10"), Port: 443, Method: api.MethodLocal, Weight: 1, ActiveConns: 7},
			}},
		{ServiceKey: fwmKey(7, 4), Scheduler: "mh", SchedFlags: []string{"mh-fallback"}, OnePacket: true,
			Dests: []api.Dest{{Addr: ip("198.18.1.1"), Port: 0, Method: api.MethodMasq, Weight: 1}}},
		{ServiceKey: udpKey("198.18.255.255", 65535), Scheduler: "lblcr", Persistent: true, Timeout: 2678400, PE: "sip", OnePacket: true,
			Netmask: "255.255.255.255"},
		{ServiceKey: tcpKey("198.18.7.7", 443), Scheduler: "nq",
			Dests: []api.Dest{{Addr: ip("198.18.7.7"), Port: 65535, Method: api.MethodMasq, Weight: 1}}},
		{ServiceKey: tcpKey("198.18.0.1", 0), Scheduler: "sed", Persistent: true, Timeout: 30, Netmask: "16",
			Dests: []api.Dest{{Addr: ip("198.18.1.1"), Port: 0, Method: api.MethodRoute, Weight: 1}}},
	}
}

func conns() []api.Conn {
	return []api.Conn{
		{Protocol: "TCP", State: "ESTABLISHED", ExpiresMs: 899_999, Client: netip.MustParseAddrPort("198.18.9.1:40000"),
			Virtual: netip.MustParseAddrPort("198.18.0.1:80"), Dest: netip.MustParseAddrPort("198.18.1.2:80")},
		{Protocol: "UDP", State: "UDP", ExpiresMs: 5_400, Client: netip.MustParseAddrPort("198.18.9.2:5353"),
			Virtual: netip.MustParseAddrPort("198.18.0.1:53"), Dest: netip.MustParseAddrPort("198.18.1.1:53")},
		{Protocol: "TCP", State: "NONE", ExpiresMs: 6_000_000, Template: true, Client: netip.MustParseAddrPort("198.18.9.0:0"),
			Virtual: netip.MustParseAddrPort("198.18.0.1:0"), Dest: netip.MustParseAddrPort("198.18.1.1:0")},
		{Protocol: "IP", State: "NONE", ExpiresMs: -5, Template: true, FWMark: 7, Client: netip.MustParseAddrPort("198.18.9.3:0"),
			Dest: netip.MustParseAddrPort("198.18.1.1:0")},
		{Protocol: "TCP", State: "SYN_RECV", ExpiresMs: 59_999, Client: netip.MustParseAddrPort("[2001:db8::77]:51000"),
			Virtual: netip.MustParseAddrPort("[2001:db8::1]:443"), Dest: netip.MustParseAddrPort("[2001:db8::10]:443")},
	}
}

func TestFormatGolden(t *testing.T) {
	info := &api.Response{Info: &api.Info{Version: "0.1.0", IPVSLike: "1.2.1", ConnTable: 4096, Conns: 5}}
	svcs := &api.Response{Services: fixture()}
	one := &api.Response{Services: fixture()[1:2]}
	six := &api.Response{Services: fixture()[3:4]}
	tests := []struct {
		golden string
		args   []string
		resps  []*api.Response
	}{
		{"list_empty", []string{"-L", "-n"}, []*api.Response{{Info: &api.Info{ConnTable: 4096}}, {}}},
		{"list_empty_big_table", []string{"-L"}, []*api.Response{{Info: &api.Info{ConnTable: 1048576, IPVSLike: "1.2.1"}}, {}}},
		{"list_numeric", []string{"-Ln"}, []*api.Response{info, svcs}},
		{"list_names", []string{"-L"}, []*api.Response{info, svcs}},
		{"list_nosort", []string{"-L", "-n", "--nosort"}, []*api.Response{info, svcs}},
		{"list_stats", []string{"-L", "-n", "--stats"}, []*api.Response{info, svcs}},
		{"list_stats_exact", []string{"-L", "-n", "--stats", "--exact"}, []*api.Response{info, svcs}},
		{"list_rate", []string{"-L", "-n", "--rate"}, []*api.Response{info, svcs}},
		{"list_rate_exact", []string{"-L", "-n", "--rate", "--exact"}, []*api.Response{info, svcs}},
		{"list_thresholds", []string{"-L", "-n", "--thresholds"}, []*api.Response{info, svcs}},
		{"list_persistent_conn", []string{"-L", "-n", "--persistent-conn"}, []*api.Response{info, svcs}},
		{"list_tun_info", []string{"-L", "-n", "--tun-info"}, []*api.Response{info, svcs}},
		{"list_service", []string{"-L", "-n", "-t", "198.18.0.1:80"}, []*api.Response{one}},
		{"list_service_stats_names", []string{"-L", "--stats", "-t", "198.18.0.1:80"}, []*api.Response{one}},
		{"list_service_ipv6", []string{"-L", "-t", "[2001:db8::1]:443"}, []*api.Response{six}},
		{"conns_numeric", []string{"-L", "-n", "-c"}, []*api.Response{{Conns: conns()}}},
		{"conns_names", []string{"-L", "-c"}, []*api.Response{{Conns: conns()}}},
		{"conns_persistent_conn", []string{"-L", "-c", "-n", "--persistent-conn"}, []*api.Response{{Conns: conns()}}},
		{"conns_empty", []string{"-Lc"}, []*api.Response{{}}},
		{"timeout", []string{"-L", "--timeout"}, []*api.Response{{Timeouts: &api.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}}}},
		{"daemon", []string{"-L", "--daemon"}, []*api.Response{{Daemons: []api.SyncDaemon{
			{State: "backup", Interface: "veth1", SyncID: 3, MaxLen: 1472, Group: "ff02::81", Port: 8848, TTL: 1},
			{State: "master", Interface: "eth0", SyncID: 0},
		}}}},
		{"daemon_none", []string{"-L", "--daemon"}, []*api.Response{{}}},
		{"save_numeric", []string{"-S", "-n"}, []*api.Response{svcs}},
		{"save_names", []string{"-S"}, []*api.Response{svcs}},
		{"save_empty", []string{"-S"}, []*api.Response{{}}},
		{"dataplane_stats", []string{"--dataplane-stats"}, []*api.Response{{
			Dataplane: []api.QueueStats{
				{Interface: "veth1", Queue: 1, Counters: map[string]uint64{"rx_packets": 10, "tx_packets": 9, "drop_no_service": 1}},
				{Interface: "veth1", Queue: 0, Counters: map[string]uint64{"rx_packets": 100}},
			},
			XDPStats: []api.QueueStats{{Interface: "veth1", Queue: -1, Counters: map[string]uint64{"redirect": 110, "pass": 7}}},
		}}},
		{"dataplane_stats_sync", []string{"--dataplane-stats"}, []*api.Response{{
			XDPStats: []api.QueueStats{{Interface: "veth1", Queue: -1, Counters: map[string]uint64{"pass": 7}}},
			Sync: []api.QueueStats{
				{Interface: "master", Queue: -1, Counters: map[string]uint64{"messages": 3, "conns": 40, "drop_would_block": 0}},
				{Interface: "backup", Queue: -1, Counters: map[string]uint64{"received": 2, "applied": 30, "drop_syncid": 1}},
			},
		}}},
		{"no_output_add", []string{"-A", "-t", "198.18.0.1:80"}, []*api.Response{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			cmd, err := testParser.Parse(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Format(&buf, cmd, tt.resps...); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.golden, buf.Bytes())
		})
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestFormatNoSuchService(t *testing.T) {
	cmd, err := testParser.Parse([]string{"-L", "-t", "198.18.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Format(&bytes.Buffer{}, cmd, &api.Response{}); !errors.Is(err, ErrNoService) {
		t.Errorf("err = %v, want ErrNoService", err)
	}
	cmd, _ = testParser.Parse([]string{"-L", "--timeout"})
	if err := Format(&bytes.Buffer{}, cmd, &api.Response{}); err == nil {
		t.Error("--timeout without timeouts in the response must fail")
	}
}

// TestFormatDoesNotMutate: sorting works on copies, the caller's slices keep their order.
func TestFormatDoesNotMutate(t *testing.T) {
	svcs := fixture()
	before := fmt.Sprint(svcs)
	cmd, _ := testParser.Parse([]string{"-L", "-n"})
	if err := Format(&bytes.Buffer{}, cmd, &api.Response{Services: svcs}); err != nil {
		t.Fatal(err)
	}
	if err := SaveWith(&bytes.Buffer{}, svcs, true, NoResolver); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(svcs) != before {
		t.Error("Format or Save reordered the caller's services")
	}
}

// refLargenum is ipvsadm's print_largenum written from its description, digit by digit
// without fmt widths, as a differential reference.
func refLargenum(n uint64, exact bool) string {
	pad := func(s string, w int) string {
		for len(s) < w {
			s = " " + s
		}
		return s
	}
	if exact {
		s := strconv.FormatUint(n, 10)
		if len(s) <= 8 {
			return pad(s, 9)
		}
		return " " + s
	}
	units := []struct {
		below uint64
		div   uint64
		sfx   string
	}{{1e8, 1, ""}, {1e9, 1e3, "K"}, {1e11, 1e6, "M"}, {1e14, 1e9, "G"}, {math.MaxUint64, 1e12, "T"}}
	for _, u := range units {
		if n < u.below || u.sfx == "T" {
			if u.sfx == "" {
				return pad(strconv.FormatUint(n, 10), 9)
			}
			return pad(strconv.FormatUint(n/u.div, 10), 8) + u.sfx
		}
	}
	panic("unreachable")
}

func TestLargenum(t *testing.T) {
	tests := []struct {
		n     uint64
		want  string
		exact string
	}{
		{0, "        0", "        0"},
		{99_999_999, " 99999999", " 99999999"},
		{100_000_000, "  100000K", " 100000000"},
		{999_999_999, "  999999K", " 999999999"},
		{1_000_000_000, "    1000M", " 1000000000"},
		{99_999_999_999, "   99999M", " 99999999999"},
		{100_000_000_000, "     100G", " 100000000000"},
		{99_999_999_999_999, "   99999G", " 99999999999999"},
		{100_000_000_000_000, "     100T", " 100000000000000"},
		{math.MaxUint64, "18446744T", " 18446744073709551615"},
	}
	for _, tt := range tests {
		if got := largenum(tt.n, false); got != tt.want {
			t.Errorf("largenum(%d) = %q, want %q", tt.n, got, tt.want)
		}
		if got := largenum(tt.n, true); got != tt.exact {
			t.Errorf("largenum(%d, exact) = %q, want %q", tt.n, got, tt.exact)
		}
	}
	// Every power of ten and its neighbours, against the reference.
	for p := uint64(1); ; p *= 10 {
		for _, n := range []uint64{p - 1, p, p + 1, p*5 - 1} {
			for _, exact := range []bool{false, true} {
				if got, want := largenum(n, exact), refLargenum(n, exact); got != want {
					t.Errorf("largenum(%d, %v) = %q, reference %q", n, exact, got, want)
				}
			}
		}
		if p > math.MaxUint64/10 {
			break
		}
	}
}

func TestAddrPort(t *testing.T) {
	long := strings.Repeat("h", 70)
	tests := []struct {
		name    string
		numeric bool
		addr    netip.Addr
		port    uint16
		proto   string
		want    string
	}{
		{"ipv4 numeric", true, ip("198.18.0.1"), 80, "tcp", "198.18.0.1:80"},
		{"ipv6 numeric", true, ip("2001:db8::1"), 80, "tcp", "[2001:db8::1]:80"},
		{"names", false, ip("198.18.0.1"), 80, "tcp", "vip.example.test:http"},
		{"udp name", false, ip("198.18.0.1"), 53, "udp", "vip.example.test:domain"},
		{"no name", false, ip("198.18.3.3"), 8080, "tcp", "198.18.3.3:8080"},
		{"no proto", false, ip("198.18.3.3"), 80, "ip", "198.18.3.3:80"},
		{"ipv6 name", false, ip("2001:db8::1"), 443, "tcp", "[v6vip.example.test]:https"},
		{"invalid address", true, netip.Addr{}, 0, "tcp", "0.0.0.0:0"},
		{"cut at 59", false, ip("198.18.8.8"), 80, "tcp", (long + ":http")[:59]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNames(longNameResolver{fakeResolver{}, long}, tt.numeric)
			if got := n.addrPort(tt.addr, tt.port, tt.proto); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

type longNameResolver struct {
	fakeResolver
	long string
}

func (r longNameResolver) LookupAddr(a netip.Addr) (string, bool) {
	if a == ip("198.18.8.8") {
		return r.long, true
	}
	return r.fakeResolver.LookupAddr(a)
}

func TestMaskText(t *testing.T) {
	tests := []struct {
		svc  api.Service
		want string
	}{
		{api.Service{ServiceKey: tcpKey("198.18.0.1", 80), Netmask: "255.255.255.0"}, "255.255.255.0"},
		{api.Service{ServiceKey: tcpKey("198.18.0.1", 80), Netmask: "24"}, "255.255.255.0"},
		{api.Service{ServiceKey: tcpKey("198.18.0.1", 80), Netmask: "0"}, "0.0.0.0"},
		{api.Service{ServiceKey: tcpKey("198.18.0.1", 80), Netmask: "32"}, ""},
		{api.Service{ServiceKey: tcpKey("198.18.0.1", 80), Netmask: "255.255.255.255"}, ""},
		{api.Service{ServiceKey: tcpKey("198.18.0.1", 80)}, ""},
		{api.Service{ServiceKey: tcpKey("2001:db8::1", 80), Netmask: "64"}, "64"},
		{api.Service{ServiceKey: tcpKey("2001:db8::1", 80), Netmask: "128"}, ""},
		{api.Service{ServiceKey: fwmKey(1, 6), Netmask: "48"}, "48"},
		{api.Service{ServiceKey: fwmKey(1, 4), Netmask: "255.0.0.0"}, "255.0.0.0"},
	}
	for _, tt := range tests {
		if got := maskText(&tt.svc); got != tt.want {
			t.Errorf("maskText(%v, %q) = %q, want %q", tt.svc.ServiceKey, tt.svc.Netmask, got, tt.want)
		}
	}
}

func TestSortedServices(t *testing.T) {
	got := sortedServices(fixture())
	var keys []string
	for _, s := range got {
		keys = append(keys, fmt.Sprintf("%s/%v/%d/%d", s.Protocol, s.Addr, s.Port, s.FWMark))
	}
	want := []string{
		"tcp/198.18.0.1/0/0", "tcp/198.18.0.1/80/0", "tcp/198.18.7.7/443/0", "udp/198.18.0.1/53/0",
		"udp/198.18.255.255/65535/0", "tcp/2001:db8::1/443/0", "fwmark/invalid IP/0/7", "fwmark/invalid IP/0/8",
	}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("order:\n%q\nwant\n%q", keys, want)
	}
}
