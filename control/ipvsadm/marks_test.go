package ipvsadm

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"xlvs/control/api"
)

func TestParseMarks(t *testing.T) {
	tests := []struct {
		args []string
		want api.Request
	}{
		{[]string{"--add-mark", "-t", "192.0.2.10:80,443", "-f", "1"},
			api.Request{Op: api.OpAddMark, Mark: &api.MarkRule{Protocol: "tcp", Prefix: netip.MustParsePrefix("192.0.2.10/32"), Ports: []api.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}, Mark: 1}}},
		{[]string{"--add-mark", "-f", "2", "--udp-service", "192.0.2.0/24"},
			api.Request{Op: api.OpAddMark, Mark: &api.MarkRule{Protocol: "udp", Prefix: netip.MustParsePrefix("192.0.2.0/24"), Mark: 2}}},
		{[]string{"--add-mark", "-t", "[2001:db8::/64]:1024-65535,22", "-f", "4294967295"},
			api.Request{Op: api.OpAddMark, Mark: &api.MarkRule{Protocol: "tcp", Prefix: netip.MustParsePrefix("2001:db8::/64"), Ports: []api.PortRange{{Lo: 1024, Hi: 65535}, {Lo: 22, Hi: 22}}, Mark: 4294967295}}},
		{[]string{"--del-mark", "-t", "2001:db8::7", "-f", "3"},
			api.Request{Op: api.OpDelMark, Mark: &api.MarkRule{Protocol: "tcp", Prefix: netip.MustParsePrefix("2001:db8::7/128"), Mark: 3}}},
		{[]string{"--add-mark", "-t", "0.0.0.0/0:80", "-f", "3"},
			api.Request{Op: api.OpAddMark, Mark: &api.MarkRule{Protocol: "tcp", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Ports: []api.PortRange{{Lo: 80, Hi: 80}}, Mark: 3}}},
	}
	for _, tt := range tests {
		cmd, err := testParser.Parse(tt.args)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		tt.want.Version = api.Version
		if len(cmd.Requests) != 1 || !reflect.DeepEqual(cmd.Requests[0], tt.want) {
			t.Errorf("%q: %+v, want %+v", tt.args, cmd.Requests, tt.want)
		}
	}
	for args, want := range map[string]string{
		"--add-mark -t 192.0.2.10:80":                       "You need to supply the '-f' option",
		"--add-mark -f 1":                                   "You need to supply the '-t', '-u' or '--sctp-service' option",
		"--add-mark -t 192.0.2.10:80 -f 0":                  "invalid fwmark value `0'",
		"--add-mark -t 192.0.2.10:80 -f 1 -w 3":             "Illegal '-w' option with the 'add-mark' command",
		"--add-mark -t 192.0.2.10:90-80 -f 1":               "port `90-80' is not a port",
		"--add-mark -t 192.0.2.10:http -f 1":                "port `http' is not a port",
		"--add-mark -t host.example:80 -f 1":                "not a numeric address",
		"--add-mark -t [2001:db8::1:80 -f 1":                "no closing ]",
		"--add-mark -t 192.0.2.10: -f 1":                    "no ports after ':'",
		"--add-mark -t 1.2.3.4 -u 1.2.3.4 -f 1":             "multiple '-t/-u/--sctp-service' options",
		"--add-mark --sctp-service 1.2.3.4 -t 1.2.3.4 -f 1": "multiple '-t/-u/--sctp-service' options",
		"--add-mark -t ::ffff:1.2.3.4 -f 1":                 "IPv4 written as a.b.c.d",
		"--add-mark -t 192.0.2.0/33:80 -f 1":                "not an address/length",
		"--del-mark -t 192.0.2.10:80 -f 1 -f 2":             "multiple '-f' options",
		"--add-mark -t 192.0.2.10:70000 -f 1":               "port `70000' is not a port",
		"--add-mark -t [2001:db8::1]x80 -f 1":               "ports follow ]",
		"--add-mark -t 192.0.2.10:80 -f 1 extra":            "unexpected argument extra",
	} {
		_, err := testParser.Parse(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestMarksSaveListRestore: -S writes the rules first, in list order, as --add-mark
// lines that -R reads back into the same rules; -L lists them after the services and
// nothing more when there are none (ipvsadm's listing).
func TestMarksSaveListRestore(t *testing.T) {
	marks := []api.MarkRule{
		{Protocol: "tcp", Prefix: netip.MustParsePrefix("192.0.2.10/32"), Ports: []api.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}, Mark: 1},
		{Protocol: "udp", Prefix: netip.MustParsePrefix("192.0.2.0/24"), Mark: 2},
		{Protocol: "tcp", Prefix: netip.MustParsePrefix("2001:db8::/64"), Ports: []api.PortRange{{Lo: 1024, Hi: 65535}}, Mark: 3},
		{Protocol: "udp", Prefix: netip.MustParsePrefix("2001:db8::9/128"), Mark: 3},
	}
	fwm := api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: 1, Family: 4}, Scheduler: "rr", Persistent: true, Timeout: 300,
		Dests: []api.Dest{{Addr: netip.MustParseAddr("198.18.1.1"), Method: api.MethodMasq, Weight: 1}}}
	ops := api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoUDP, Addr: netip.MustParseAddr("192.0.2.53"), Port: 53}, Scheduler: "rr", OnePacket: true}
	cmd, err := testParser.Parse([]string{"-S", "-n"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Format(&buf, cmd, &api.Response{Services: []api.Service{fwm, ops}}, &api.Response{}, &api.Response{Marks: marks}); err != nil {
		t.Fatal(err)
	}
	want := "--add-mark -t 192.0.2.10:80,443 -f 1\n" +
		"--add-mark -u 192.0.2.0/24 -f 2\n" +
		"--add-mark -t [2001:db8::/64]:1024-65535 -f 3\n" +
		"--add-mark -u 2001:db8::9 -f 3\n" +
		"-A -u 192.0.2.53:53 -s rr -o\n" +
		"-A -f 1 -s rr -p 300\n" +
		"-a -f 1 -r 198.18.1.1:0 -m -w 1\n"
	if buf.String() != want {
		t.Fatalf("-S:\n%s\nwant:\n%s", buf.String(), want)
	}
	req, err := testParser.ParseRules(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	var got []api.MarkRule
	for _, r := range req.Batch {
		if r.Op == api.OpAddMark {
			got = append(got, *r.Mark)
		}
	}
	if !reflect.DeepEqual(got, marks) {
		t.Fatalf("restored %+v\nwant %+v", got, marks)
	}
	cmd, _ = testParser.Parse([]string{"-L", "-n"})
	buf.Reset()
	if err := Format(&buf, cmd, &api.Response{Info: &api.Info{ConnTable: 4096}}, &api.Response{Services: []api.Service{fwm}}, &api.Response{Marks: marks}); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "list_marks", buf.Bytes())
	buf.Reset()
	if err := Format(&buf, cmd, &api.Response{Info: &api.Info{ConnTable: 4096}}, &api.Response{Services: []api.Service{fwm}}, &api.Response{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Firewall marks") || !strings.HasSuffix(buf.String(), "  -> 198.18.1.1:0                 Masq    1      0          0         \n") {
		t.Fatalf("listing without rules:\n%s", buf.String())
	}
}

// TestMarksSCTP: --sctp-service takes a mark rule's DEST[/LEN][:PORTS] as -t and -u do
// (ipvsadm has no short option for SCTP); -S writes it back with --sctp-service, -R
// reads that into the same rule, -L lists it as SCTP.
func TestMarksSCTP(t *testing.T) {
	want := []api.MarkRule{
		{Protocol: api.ProtoSCTP, Prefix: netip.MustParsePrefix("192.0.2.10/32"), Ports: []api.PortRange{{Lo: 3868, Hi: 3868}, {Lo: 2905, Hi: 2910}}, Mark: 5},
		{Protocol: api.ProtoSCTP, Prefix: netip.MustParsePrefix("2001:db8::/64"), Mark: 6},
	}
	for i, args := range [][]string{
		{"--add-mark", "--sctp-service", "192.0.2.10:3868,2905-2910", "-f", "5"},
		{"--add-mark", "-f", "6", "--sctp-service", "2001:db8::/64"},
	} {
		cmd, err := testParser.Parse(args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		r := api.Request{Version: api.Version, Op: api.OpAddMark, Mark: &want[i]}
		if len(cmd.Requests) != 1 || !reflect.DeepEqual(cmd.Requests[0], r) {
			t.Fatalf("%q: %+v, want %+v", args, cmd.Requests, r)
		}
	}
	if _, err := testParser.Parse([]string{"--add-mark", "--sctp-service", "192.0.2.10:diameter", "-f", "5"}); err == nil || !strings.Contains(err.Error(), "port `diameter' is not a port") {
		t.Fatalf("a named port: %v", err)
	}
	cmd, err := testParser.Parse([]string{"-S", "-n"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Format(&buf, cmd, &api.Response{}, &api.Response{}, &api.Response{Marks: want}); err != nil {
		t.Fatal(err)
	}
	saved := "--add-mark --sctp-service 192.0.2.10:3868,2905-2910 -f 5\n" +
		"--add-mark --sctp-service 2001:db8::/64 -f 6\n"
	if buf.String() != saved {
		t.Fatalf("-S:\n%s\nwant:\n%s", buf.String(), saved)
	}
	req, err := testParser.ParseRules(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	var got []api.MarkRule
	for _, r := range req.Batch {
		if r.Op == api.OpAddMark {
			got = append(got, *r.Mark)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %+v\nwant %+v", got, want)
	}
	cmd, _ = testParser.Parse([]string{"-L", "-n"})
	buf.Reset()
	if err := Format(&buf, cmd, &api.Response{Info: &api.Info{ConnTable: 4096}}, &api.Response{}, &api.Response{Marks: want}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\nSCTP 192.0.2.10 ") || !strings.Contains(buf.String(), "3868,2905-2910") || !strings.Contains(buf.String(), "\nSCTP 2001:db8::/64 ") {
		t.Fatalf("-L:\n%s", buf.String())
	}
}
