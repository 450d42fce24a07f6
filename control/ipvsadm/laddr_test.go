package ipvsadm

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"xlvs/control/api"
)

func withLaddr(op string, k api.ServiceKey, addr, ifname string) api.Request {
	r := req(op)
	r.Service = &api.Service{ServiceKey: k}
	r.LocalAddr = &api.LocalAddr{Addr: ip(addr), Ifname: ifname}
	return r
}

// TestParseLaddr: DPVS ipvsadm's local-address commands (-P, -Q, -G with -z and -F).
func TestParseLaddr(t *testing.T) {
	vip, vip6 := tcpKey("198.18.0.1", 80), udpKey("2001:db8::1", 53)
	tests := []struct {
		name string
		args []string
		want Command
	}{
		{name: "-P", args: []string{"-P", "-t", "198.18.0.1:80", "-z", "198.18.2.50"},
			want: Command{Kind: KindAddLaddr, Requests: []api.Request{withLaddr(api.OpAddLocalAddr, vip, "198.18.2.50", "")}}},
		{name: "--add-laddr long, -F", args: []string{"--add-laddr", "--tcp-service=198.18.0.1:80", "--laddr", "198.18.2.50", "--ifname", "int0"},
			want: Command{Kind: KindAddLaddr, Requests: []api.Request{withLaddr(api.OpAddLocalAddr, vip, "198.18.2.50", "int0")}}},
		{name: "-P bundled, attached values", args: []string{"-Pt198.18.0.1:80", "-z198.18.2.50", "-Fint0"},
			want: Command{Kind: KindAddLaddr, Requests: []api.Request{withLaddr(api.OpAddLocalAddr, vip, "198.18.2.50", "int0")}}},
		{name: "-P ipv6", args: []string{"-P", "-u", "[2001:db8::1]:53", "-z", "2001:db8:2::50"},
			want: Command{Kind: KindAddLaddr, Requests: []api.Request{withLaddr(api.OpAddLocalAddr, vip6, "2001:db8:2::50", "")}}},
		{name: "-P ipv6 bracketed with a port (ignored, as DPVS)", args: []string{"-P", "-u", "[2001:db8::1]:53", "-z", "[2001:db8:2::50]:0"},
			want: Command{Kind: KindAddLaddr, Requests: []api.Request{withLaddr(api.OpAddLocalAddr, vip6, "2001:db8:2::50", "")}}},
		{name: "-P host name", args: []string{"-P", "-t", "vip.example.test:http", "-z", "web1.example.test"},
			want: Command{Kind: KindAddLaddr, Requests: []api.Request{withLaddr(api.OpAddLocalAddr, vip, "198.18.1.1", "")}}},
		{name: "-Q", args: []string{"-Q", "-t", "198.18.0.1:80", "-z", "198.18.2.50"},
			want: Command{Kind: KindDelLaddr, Requests: []api.Request{withLaddr(api.OpDelLocalAddr, vip, "198.18.2.50", "")}}},
		{name: "--del-laddr with -F", args: []string{"--del-laddr", "-t", "198.18.0.1:80", "-z", "198.18.2.50", "-F", "int0"},
			want: Command{Kind: KindDelLaddr, Requests: []api.Request{withLaddr(api.OpDelLocalAddr, vip, "198.18.2.50", "int0")}}},
		{name: "-G", args: []string{"-G"}, want: Command{Kind: KindGetLaddr, Requests: []api.Request{req(api.OpList), req(api.OpGetLocalAddrs)}}},
		{name: "--get-laddr of a service", args: []string{"--get-laddr", "-t", "198.18.0.1:80"},
			want: Command{Kind: KindGetLaddr, Service: &vip, Requests: []api.Request{
				withService(req(api.OpList), api.Service{ServiceKey: vip}), withService(req(api.OpGetLocalAddrs), api.Service{ServiceKey: vip})}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testParser.Parse(tt.args)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
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

func TestParseLaddrErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"-P without a service", []string{"-P", "-z", "198.18.2.50"}, "You need to supply the 'service-address' option for the 'add-laddr' command"},
		{"-P without -z", []string{"-P", "-t", "198.18.0.1:80"}, "You need to supply the 'local-address' option for the 'add-laddr' command"},
		{"-Q without -z", []string{"-Q", "-t", "198.18.0.1:80", "-F", "eth0"}, "You need to supply the 'local-address' option for the 'del-laddr' command"},
		{"-G with -z", []string{"-G", "-z", "198.18.2.50"}, "Illegal 'local-address' option with the 'get-laddr' command"},
		{"-G with -F", []string{"-G", "-F", "eth0"}, "Illegal 'ifname' option with the 'get-laddr' command"},
		{"-G numeric", []string{"-G", "-n"}, "Illegal 'numeric' option with the 'get-laddr' command"},
		{"-P with a scheduler", []string{"-P", "-t", "198.18.0.1:80", "-z", "198.18.2.50", "-s", "rr"}, "Illegal 'scheduler' option with the 'add-laddr' command"},
		{"-z on -A", []string{"-A", "-t", "198.18.0.1:80", "-z", "198.18.2.50"}, "Illegal 'local-address' option with the 'add-service' command"},
		{"-F on -a", []string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-F", "eth0"}, "Illegal 'ifname' option with the 'add-server' command"},
		{"-z on -L", []string{"-L", "-z", "198.18.2.50"}, "Illegal 'local-address' option with the 'list' command"},
		{"bad local address", []string{"-P", "-t", "198.18.0.1:80", "-z", "300.1.1.1"}, "illegal local address specified: `300.1.1.1'"},
		{"local address digits only", []string{"-P", "-t", "198.18.0.1:80", "-z", "50"}, "illegal local address specified"},
		{"unknown local host", []string{"-P", "-t", "198.18.0.1:80", "-z", "nosuchhost.invalid"}, "illegal local address specified"},
		{"two local addresses", []string{"-P", "-t", "198.18.0.1:80", "-z", "198.18.2.50", "-z", "198.18.2.51"}, "multiple 'local-address' options specified"},
		{"interface name too long", []string{"-P", "-t", "198.18.0.1:80", "-z", "198.18.2.50", "-F", "a-very-long-name0"}, "illegal interface name specified"},
		{"interface name with a slash", []string{"-P", "-t", "198.18.0.1:80", "-z", "198.18.2.50", "-F", "a/b"}, "illegal interface name specified"},
		{"-z without a value", []string{"-P", "-t", "198.18.0.1:80", "-z"}, "-z: missing argument"},
	} {
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

// TestGetLaddrFormat: --get-laddr prints as DPVS ipvsadm: one title, every service with
// its count, then its local addresses with conflicts and connections; nothing without
// services; one service with -t.
func TestGetLaddrFormat(t *testing.T) {
	svcs := []api.Service{
		{ServiceKey: tcpKey("198.18.0.1", 80), Scheduler: "rr"},
		{ServiceKey: udpKey("2001:db8::1", 53), Scheduler: "wlc"},
		{ServiceKey: tcpKey("198.18.0.2", 443), Scheduler: "rr"},
	}
	laddrs := []api.LocalAddr{
		{Service: tcpKey("198.18.0.1", 80), Addr: ip("198.18.2.50"), Conns: 12, PortConflicts: 3},
		{Service: tcpKey("198.18.0.1", 80), Addr: ip("::ffff:198.18.2.51")},
		{Service: udpKey("2001:db8::1", 53), Addr: ip("2001:db8:2::50"), Conns: 4294967296},
	}
	all := "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n" +
		"198.18.0.1:80        2        \n" +
		"                              198.18.2.50          3          12        \n" +
		"                              198.18.2.51          0          0         \n" +
		"[2001:db8::1]:53     1        \n" +
		"                              2001:db8:2::50       0          4294967296\n" +
		"198.18.0.2:443       0        \n"
	one := "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n" +
		"198.18.0.1:80        2        \n" +
		"                              198.18.2.50          3          12        \n" +
		"                              198.18.2.51          0          0         \n"
	for _, tc := range []struct {
		name  string
		args  []string
		resps []*api.Response
		want  string
		err   error
	}{
		{"all", []string{"-G"}, []*api.Response{{Services: svcs}, {LocalAddrs: laddrs}}, all, nil},
		{"one", []string{"-G", "-t", "198.18.0.1:80"}, []*api.Response{{Services: svcs[:1]}, {LocalAddrs: laddrs[:2]}}, one, nil},
		{"no services", []string{"-G"}, []*api.Response{{}, {}}, "", nil},
		{"unknown service", []string{"-G", "-t", "198.18.0.9:80"}, []*api.Response{{}, {}}, "", ErrNoService},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := testParser.Parse(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Format(&buf, cmd, tc.resps...); err != tc.err {
				t.Fatalf("Format: %v, want %v", err, tc.err)
			}
			if buf.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", buf.String(), tc.want)
			}
		})
	}
}

// TestSaveLaddrRoundTrip: -S writes each service's local addresses after its lines as
// -P ... -z LIP [-F IF]; -R reads them back to the same add-laddr requests.
func TestSaveLaddrRoundTrip(t *testing.T) {
	svcs := []api.Service{
		{ServiceKey: tcpKey("198.18.0.1", 80), Scheduler: "rr",
			Dests: []api.Dest{{Addr: ip("198.18.1.1"), Port: 8080, Method: api.MethodFullNAT, Weight: 1}}},
		{ServiceKey: udpKey("2001:db8::1", 53), Scheduler: "wlc",
			Dests: []api.Dest{{Addr: ip("2001:db8::10"), Port: 53, Method: api.MethodFullNAT, Weight: 2}}},
	}
	laddrs := []api.LocalAddr{
		{Service: udpKey("2001:db8::1", 53), Addr: ip("2001:db8:2::50"), Ifname: "int0", Conns: 5},
		{Service: tcpKey("198.18.0.1", 80), Addr: ip("198.18.2.51")},
		{Service: tcpKey("198.18.0.1", 80), Addr: ip("198.18.2.50"), PortConflicts: 9},
	}
	want := "-A -t 198.18.0.1:80 -s rr\n" +
		"-a -t 198.18.0.1:80 -r 198.18.1.1:8080 --fullnat -w 1\n" +
		"-P -t 198.18.0.1:80 -z 198.18.2.51\n" +
		"-P -t 198.18.0.1:80 -z 198.18.2.50\n" +
		"-A -u [2001:db8::1]:53 -s wlc\n" +
		"-a -u [2001:db8::1]:53 -r [2001:db8::10]:53 --fullnat -w 2\n" +
		"-P -u [2001:db8::1]:53 -z 2001:db8:2::50 -F int0\n"
	cmd, err := testParser.Parse([]string{"-S", "-n"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Format(&buf, cmd, &api.Response{Services: svcs}, &api.Response{LocalAddrs: laddrs}); err != nil {
		t.Fatal(err)
	}
	if buf.String() != want {
		t.Fatalf("-S:\n%s\nwant\n%s", buf.String(), want)
	}
	req, err := testParser.ParseRules(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("restore of the saved rules: %v", err)
	}
	var got []api.LocalAddr
	var services []api.Service
	for _, r := range req.Batch {
		switch r.Op {
		case api.OpAddLocalAddr:
			la := *r.LocalAddr
			la.Service = r.Service.ServiceKey
			got = append(got, la)
		case api.OpAddService:
			services = append(services, *r.Service)
		}
	}
	wantLaddrs := []api.LocalAddr{
		{Service: tcpKey("198.18.0.1", 80), Addr: ip("198.18.2.51")},
		{Service: tcpKey("198.18.0.1", 80), Addr: ip("198.18.2.50")},
		{Service: udpKey("2001:db8::1", 53), Addr: ip("2001:db8:2::50"), Ifname: "int0"},
	}
	if !reflect.DeepEqual(got, wantLaddrs) {
		t.Fatalf("restored local addresses\n got %+v\nwant %+v", got, wantLaddrs)
	}
	if len(services) != 2 {
		t.Fatalf("restored %d services", len(services))
	}
	// A saved table restores to one that saves the same way.
	var again bytes.Buffer
	if err := SaveAll(&again, svcs, got, true, NoResolver); err != nil {
		t.Fatal(err)
	}
	if again.String() != want {
		t.Fatalf("second save differs:\n%s", again.String())
	}
	// Listing commands cannot be restored; -Q can.
	if _, err := testParser.ParseRules(strings.NewReader("-G\n")); err == nil || !strings.Contains(err.Error(), "cannot be restored") {
		t.Fatalf("-G in rules: %v", err)
	}
	if r, err := testParser.ParseRules(strings.NewReader("-Q -t 198.18.0.1:80 -z 198.18.2.50\n")); err != nil || r.Batch[0].Op != api.OpDelLocalAddr {
		t.Fatalf("-Q in rules: %+v %v", r, err)
	}
}

func TestLaddrErrorMessage(t *testing.T) {
	for _, tt := range []struct {
		op, code, msg, want string
	}{
		{api.OpAddLocalAddr, api.ErrCodeLaddrExists, "local address 198.18.2.50 of service TCP 198.18.0.1:80 already exists",
			"Local address already exists: local address 198.18.2.50 of service TCP 198.18.0.1:80 already exists"},
		{api.OpDelLocalAddr, api.ErrCodeNoLocalAddr, "", "No such Local address"},
		{api.OpAddLocalAddr, api.ErrCodeNoService, "", "Service not defined"},
		{api.OpGetLocalAddrs, api.ErrCodeNoService, "", "Service not defined"},
	} {
		r := api.Request{Op: tt.op}
		if got := ErrorMessage(&r, &api.Error{Code: tt.code, Message: tt.msg}); got != tt.want {
			t.Errorf("%s %s: %q, want %q", tt.op, tt.code, got, tt.want)
		}
	}
}

// TestUsageLaddr: -h documents the local-address commands and options.
func TestUsageLaddr(t *testing.T) {
	var buf bytes.Buffer
	if err := Usage(&buf, Program); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		Program + " -P|Q -t|u service-address -z local-address [-F ifname]\n",
		Program + " -G [-t|u service-address]\n",
		"  --add-laddr       -P ", "  --del-laddr       -Q ", "  --get-laddr       -G ",
		"  --laddr        -z local-address ", "  --ifname       -F ifname ",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

// TestConnsLocalColumn: -L -c of a table holding FULLNAT connections shows each one's
// local endpoint in a column "local" between virtual and destination (DPVS ipvsadm's
// order: client, virtual, local, real server), "-" for the others; a table without
// FULLNAT connections keeps ipvsadm's columns.
func TestConnsLocalColumn(t *testing.T) {
	run := func(args []string, conns []api.Conn) string {
		cmd, err := Parser{}.Parse(args)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Format(&buf, cmd, &api.Response{Conns: conns}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	nat := api.Conn{Protocol: "TCP", State: "ESTABLISHED", ExpiresMs: 899_500,
		Client: netip.MustParseAddrPort("198.18.9.1:40000"), Virtual: netip.MustParseAddrPort("198.18.0.1:80"), Dest: netip.MustParseAddrPort("198.18.1.1:80")}
	fnat := api.Conn{Protocol: "UDP", State: "UDP", ExpiresMs: 299_000,
		Client: netip.MustParseAddrPort("198.18.9.2:5353"), Virtual: netip.MustParseAddrPort("198.18.0.1:53"), Dest: netip.MustParseAddrPort("198.18.2.11:53"), Local: netip.MustParseAddrPort("198.18.2.50:1025")}
	got := run([]string{"-L", "-n", "-c"}, []api.Conn{nat, fnat})
	want := "IPVS connection entries\n" +
		"pro expire state       source             virtual            local              destination\n" +
		"TCP 14:59  ESTABLISHED 198.18.9.1:40000   198.18.0.1:80      -                  198.18.1.1:80\n" +
		"UDP 04:59  UDP         198.18.9.2:5353    198.18.0.1:53      198.18.2.50:1025   198.18.2.11:53\n"
	if got != want {
		t.Errorf("-L -n -c with a FULLNAT connection:\n%s\nwant\n%s", got, want)
	}
	got = run([]string{"-L", "-n", "-c"}, []api.Conn{nat})
	want = "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"TCP 14:59  ESTABLISHED 198.18.9.1:40000   198.18.0.1:80      198.18.1.1:80\n"
	if got != want {
		t.Errorf("-L -n -c without FULLNAT:\n%s\nwant\n%s", got, want)
	}
}
