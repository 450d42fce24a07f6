package ipvsadm

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"xlvs/control/api"
)

// ipvsadm's SCTP services (ipvsadm 1.27+; its print_service_entry, print_conn and
// service_to_port / port_to_service as kept in the derivative iqiyi/dpvs
// tools/ipvsadm/ipvsadm.c): --sctp-service has no short option; -L writes "SCTP", two
// blanks and VIP:port; -S writes "--sctp-service VIP:port"; port names are looked up in
// /etc/services' "sctp" entries; IPVS lists services by protocol number, so SCTP (132)
// after TCP (6) and UDP (17).

// sctpNames resolves s1ap/sctp (38412) only, and the fake hosts.
type sctpNames struct{ fakeResolver }

func (sctpNames) LookupPort(proto, name string) (uint16, bool) {
	if proto == "sctp" && name == "s1ap" {
		return 38412, true
	}
	return 0, false
}

func (sctpNames) PortName(proto string, port uint16) (string, bool) {
	if proto == "sctp" && port == 38412 {
		return "s1ap", true
	}
	return "", false
}

func sctpKey(addr string, port uint16) api.ServiceKey {
	k := tcpKey(addr, port)
	k.Protocol = api.ProtoSCTP
	return k
}

func TestParseSCTP(t *testing.T) {
	p := Parser{Resolver: sctpNames{}}
	for _, tc := range []struct {
		args []string
		want api.Request
	}{
		{[]string{"-A", "--sctp-service", "198.18.0.5:38412", "-s", "rr"},
			withService(req(api.OpAddService), api.Service{ServiceKey: sctpKey("198.18.0.5", 38412), Scheduler: "rr"})},
		{[]string{"-A", "--sctp-service=198.18.0.5:s1ap"},
			withService(req(api.OpAddService), api.Service{ServiceKey: sctpKey("198.18.0.5", 38412), Scheduler: "wlc"})},
		{[]string{"-A", "--sctp-service", "[2001:db8::5]:38412", "-p", "60"},
			withService(req(api.OpAddService), api.Service{ServiceKey: sctpKey("2001:db8::5", 38412), Scheduler: "wlc", Persistent: true, Timeout: 60})},
	} {
		cmd, err := p.Parse(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if len(cmd.Requests) != 1 || cmd.Requests[0].Service == nil || !reflect.DeepEqual(*cmd.Requests[0].Service, *tc.want.Service) {
			t.Fatalf("%q: %+v, want %+v", tc.args, cmd.Requests[0].Service, tc.want.Service)
		}
	}
	cmd, err := p.Parse([]string{"-a", "--sctp-service", "198.18.0.5:38412", "-r", "198.18.1.1", "-m"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmd.Requests[0].Dest; d == nil || d.Port != 38412 || d.Method != api.MethodMasq {
		t.Fatalf("real server %+v: want port 38412 (the service's), masquerading", d)
	}
	// --sctp-service and -t in one command: one service option only.
	if _, err := p.Parse([]string{"-A", "--sctp-service", "198.18.0.5:1", "-t", "198.18.0.5:1"}); err == nil {
		t.Fatal("two service options accepted")
	}
	// One-packet scheduling is UDP's.
	if _, err := p.Parse([]string{"-A", "--sctp-service", "198.18.0.5:1", "-o"}); err == nil {
		t.Fatal("-o accepted for an SCTP service")
	}
}

func TestFormatSCTP(t *testing.T) {
	svcs := []api.Service{
		{ServiceKey: sctpKey("198.18.0.5", 38412), Scheduler: "rr", Dests: []api.Dest{
			{Addr: ip("198.18.1.2"), Port: 38412, Method: api.MethodMasq, Weight: 1, ActiveConns: 3, InactConns: 1},
			{Addr: ip("198.18.1.1"), Port: 38412, Method: api.MethodRoute, Weight: 2},
		}},
		{ServiceKey: udpKey("198.18.0.5", 53), Scheduler: "wlc"},
		{ServiceKey: tcpKey("198.18.0.5", 80), Scheduler: "wlc"},
	}
	run := func(args []string, resps ...*api.Response) string {
		cmd, err := Parser{Resolver: sctpNames{}}.Parse(args)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Format(&buf, cmd, resps...); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	info := &api.Response{Info: &api.Info{IPVSLike: "1.2.1", ConnTable: 4096}}
	got := run([]string{"-L", "-n"}, info, &api.Response{Services: svcs})
	want := "IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  198.18.0.5:80 wlc\n" +
		"UDP  198.18.0.5:53 wlc\n" +
		"SCTP  198.18.0.5:38412 rr\n" +
		"  -> 198.18.1.1:38412             Route   2      0          0         \n" +
		"  -> 198.18.1.2:38412             Masq    1      3          1         \n"
	if got != want {
		t.Errorf("-L -n:\n%s\nwant\n%s", got, want)
	}
	if got := run([]string{"-L"}, info, &api.Response{Services: svcs[:1]}); !strings.Contains(got, "SCTP  198.18.0.5:s1ap rr\n") {
		t.Errorf("-L without -n names the SCTP port from /etc/services' sctp entries:\n%s", got)
	}

	got = run([]string{"-S", "-n"}, &api.Response{Services: svcs[:1]})
	want = "-A --sctp-service 198.18.0.5:38412 -s rr\n" +
		"-a --sctp-service 198.18.0.5:38412 -r 198.18.1.1:38412 -g -w 2\n" +
		"-a --sctp-service 198.18.0.5:38412 -r 198.18.1.2:38412 -m -w 1\n"
	if got != want {
		t.Errorf("-S -n:\n%s\nwant\n%s", got, want)
	}
	// What -S writes, -R reads back.
	r, err := Parser{Resolver: sctpNames{}}.ParseRules(strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Batch) != 3 || r.Batch[0].Service.ServiceKey != sctpKey("198.18.0.5", 38412) || r.Batch[2].Dest.Method != api.MethodMasq {
		t.Fatalf("restore of %q: %+v", got, r.Batch)
	}

	conns := []api.Conn{{Protocol: "SCTP", State: "ESTABLISHED", ExpiresMs: 899_000,
		Client:  netip.MustParseAddrPort("198.18.9.1:5000"),
		Virtual: netip.MustParseAddrPort("198.18.0.5:38412"), Dest: netip.MustParseAddrPort("198.18.1.2:38412")}}
	got = run([]string{"-L", "-n", "-c"}, &api.Response{Conns: conns})
	want = "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"SCTP 14:59  ESTABLISHED 198.18.9.1:5000    198.18.0.5:38412   198.18.1.2:38412\n"
	if got != want {
		t.Errorf("-L -n -c:\n%s\nwant\n%s", got, want)
	}
	if got := run([]string{"-L", "-c"}, &api.Response{Conns: conns}); !strings.Contains(got, "198.18.0.5:s1ap") {
		t.Errorf("-L -c names the SCTP port:\n%s", got)
	}
}
