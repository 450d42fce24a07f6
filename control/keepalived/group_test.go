package keepalived

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// svcLines renders a config's services for comparison: key, group, scheduler, method,
// persistence, real servers, local addresses.
func svcLines(cfg *Config) []string {
	var out []string
	for _, vs := range cfg.VirtualServers {
		var rs []string
		for _, r := range vs.RealServers {
			rs = append(rs, r.Addr.String())
		}
		out = append(out, fmt.Sprintf("%s g=%s %s %s p%d rs%v laddrs%v", vs.ServiceKey, vs.Group, vs.Scheduler, vs.Method, vs.PersistenceTimeout, rs, vs.LocalAddrs))
	}
	return out
}

// expand is the test's model of a group entry: every address from first to last, the
// last octet (IPv4) or last 16 bits (IPv6) counted up.
func expand(first, last string, port uint16) []netip.AddrPort {
	a, b := netip.MustParseAddr(first), netip.MustParseAddr(last)
	var out []netip.AddrPort
	for ; a.Compare(b) <= 0; a = a.Next() {
		out = append(out, netip.AddrPortFrom(a, port))
	}
	return out
}

func TestGroupSample(t *testing.T) {
	path := filepath.Join("testdata", "groups", "vsg-sample.conf")
	cfg, err := Load(path, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// keepalived makes one service per address and port of the group: the model.
	var want []netip.AddrPort
	want = append(want, expand("172.16.5.1", "172.16.5.1", 8080)...)
	want = append(want, expand("172.16.5.2", "172.16.5.2", 80)...)
	want = append(want, expand("198.51.100.7", "198.51.100.7", 1358)...)
	want = append(want, expand("198.51.100.20", "198.51.100.27", 80)...)
	var wantLines []string
	for _, ap := range want {
		wantLines = append(wantLines, fmt.Sprintf("TCP %s g=WEB_FARM rr NAT p50 rs[198.51.100.101:1358 198.51.100.102:1358] laddrs[]", ap))
	}
	// and one per firewall mark of the group (the marks are xlvsadm's rules).
	for _, m := range []int{11, 12} {
		wantLines = append(wantLines, fmt.Sprintf("FWM %d g=WEB_FARM rr NAT p50 rs[198.51.100.101:1358 198.51.100.102:1358] laddrs[]", m))
	}
	if got := svcLines(cfg); strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	// Every member has the block's position and its entry's line.
	for _, vs := range cfg.VirtualServers {
		if vs.Pos.Line != 19 {
			t.Errorf("%s at %s, want line 19 (the virtual_server group block)", vs.ServiceKey, vs.Pos)
		}
		wantEntry := map[uint16]int{8080: 11, 1358: 13}[vs.Port]
		if vs.FWMark != 0 {
			wantEntry = map[uint32]int{11: 15, 12: 16}[vs.FWMark]
		} else if vs.Port == 80 {
			wantEntry = 12
			if vs.Addr != netip.MustParseAddr("172.16.5.2") {
				wantEntry = 14
			}
		}
		if vs.GroupEntry.Line != wantEntry {
			t.Errorf("%s entry at %s, want line %d", vs.ServiceKey, vs.GroupEntry, wantEntry)
		}
		if len(vs.RealServers[0].Checkers) != 1 || vs.RealServers[0].Checkers[0].Connect.Port() != 1358 {
			t.Errorf("%s: checkers %+v, want one HTTP_GET on port 1358", vs.ServiceKey, vs.RealServers[0].Checkers)
		}
	}
	// The firewall marks are served: no warning about them.
	for _, w := range cfg.Warnings {
		if strings.Contains(w.Msg, "fwmark") {
			t.Errorf("warning about a fwmark: %s", w)
		}
	}
	if len(cfg.Groups) != 1 || len(cfg.Groups[0].Entries) != 6 || !cfg.Groups[0].Entries[4].IsFWMark || cfg.Groups[0].Entries[5].FWMark != 12 {
		t.Errorf("groups %+v", cfg.Groups)
	}
	for _, w := range cfg.Warnings {
		t.Log(w)
	}
}

func TestFWMarkSample(t *testing.T) {
	path := filepath.Join("testdata", "groups", "fwmark-sample.conf")
	cfg, err := Load(path, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// The sample's persistent fwmark service loads: mark 7, IPv4 (its real servers'),
	// real servers without a port (the packet's port), checked on the port the checks name.
	want := []string{"FWM 7 g= rr NAT p900 rs[198.51.100.150:0 198.51.100.151:0] laddrs[]"}
	if got := svcLines(cfg); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	vs := cfg.VirtualServers[0]
	if vs.FWMark != 7 || vs.Addr != netip.IPv4Unspecified() || vs.Pos.Line != 8 || vs.Protocol != ProtoTCP {
		t.Errorf("service %+v", vs.ServiceKey)
	}
	for _, rs := range vs.RealServers {
		if len(rs.Checkers) != 1 || rs.Checkers[0].Connect.Port() != 443 {
			t.Errorf("%s: checkers %+v, want one TCP_CHECK on port 443", rs.Addr, rs.Checkers)
		}
	}
	if len(cfg.Warnings) != 1 {
		t.Errorf("warnings %v, want only global_defs'", cfg.Warnings)
	}
	// IPv6: from ip_family, or from the real servers; a group entry's family wins.
	for _, tc := range []struct{ conf, want string }{
		{"virtual_server fwmark 9 {\n protocol UDP\n lb_kind DR\n ops\n real_server 2001:db8::5 53 {\n }\n}\n", "FWM 9 IPv6"},
		{"virtual_server fwmark 9 {\n ip_family inet6\n protocol TCP\n lb_kind DR\n real_server 2001:db8::5 {\n }\n}\n", "FWM 9 IPv6"},
		{"virtual_server_group G {\n fwmark 4 inet6\n}\nvirtual_server group G {\n protocol TCP\n lb_kind TUN\n real_server 198.18.1.5 {\n }\n}\n", "FWM 4 IPv6"},
	} {
		cfg, err := Parse("f.conf", []byte(tc.conf), Options{})
		if err != nil || len(cfg.VirtualServers) != 1 || cfg.VirtualServers[0].ServiceKey.String() != tc.want {
			t.Errorf("%q: %v %+v, want %s", tc.conf, err, cfg, tc.want)
		}
	}
	// ops on a fwmark service (its UDP packets) is kept whatever the protocol line says.
	cfg, err = Parse("o.conf", []byte("virtual_server fwmark 3 {\n protocol TCP\n lb_kind NAT\n ops\n real_server 198.18.1.5 {\n }\n}\n"), Options{})
	if err != nil || len(cfg.VirtualServers) != 1 || !cfg.VirtualServers[0].OnePacket {
		t.Errorf("ops on fwmark: %v %+v", err, cfg)
	}
	for conf, want := range map[string]string{
		"virtual_server fwmark {\n}\n":   "missing mark",
		"virtual_server fwmark 0 {\n}\n": "not a firewall mark",
		"virtual_server fwmark x {\n}\n": "not a firewall mark",
	} {
		if _, err := Parse("e.conf", []byte(conf), Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", conf, err, want)
		}
	}
}

func TestGroupRanges(t *testing.T) {
	for _, tc := range []struct {
		in          string
		first, last string
		err         string
	}{
		{in: "192.0.2.1", first: "192.0.2.1", last: "192.0.2.1"},
		{in: "192.0.2.3-10", first: "192.0.2.3", last: "192.0.2.10"},
		{in: "192.0.2.250-192.0.3.10", first: "192.0.2.250", last: "192.0.3.10"},
		{in: "192.0.2.8/29", first: "192.0.2.8", last: "192.0.2.15"},
		{in: "192.0.2.7/32", first: "192.0.2.7", last: "192.0.2.7"},
		{in: "10.1.0.0/16", first: "10.1.0.0", last: "10.1.255.255"},
		{in: "2001:db8::10-1f", first: "2001:db8::10", last: "2001:db8::1f"},
		{in: "2001:db8::ff00-2001:db8::ff03", first: "2001:db8::ff00", last: "2001:db8::ff03"},
		{in: "2001:db8::/124", first: "2001:db8::", last: "2001:db8::f"},
		{in: "[2001:db8::1]", first: "2001:db8::1", last: "2001:db8::1"},
		{in: "192.0.2.10-3", err: "not above its start"},
		{in: "192.0.2.10-10", err: "not above its start"},
		{in: "192.0.2.1-256", err: "not an address range"},
		{in: "192.0.2.1-x", err: "not an address range"},
		{in: "192.0.2.9/29", err: "bits set beyond the /29 prefix: expected 192.0.2.8/29"},
		{in: "10.0.0.0/8", err: "more than 65536 addresses"},
		{in: "2001:db8::/64", err: "more than 65536 addresses"},
		{in: "2001:db8::1-2001:db9::1", err: "may differ only in its last 16-bit group"},
		{in: "192.0.2.5-192.0.2.1", err: "below its start"},
		{in: "192.0.2.1-2001:db8::1", err: "not an address range"},
		{in: "2001:db8::1-192.0.2.1", err: "not an address range"},
		{in: "2001:db8::1-::ffff:1.2.3.4", err: "not an address of the same family"},
		{in: "2001:db8::1-10000", err: "not an address range"},
		{in: "0.0.0.0", err: "not a unicast address"},
		{in: "223.255.255.250-239.0.0.1", err: "more than 65536"},
		{in: "223.255.255.250-224.0.0.1", err: "reaches multicast"},
		{in: "www.example.com", err: "not an IP address, range or prefix"},
	} {
		first, last, msg := groupRange(tc.in)
		if tc.err != "" {
			if !strings.Contains(msg, tc.err) {
				t.Errorf("%q: message %q, want it to contain %q", tc.in, msg, tc.err)
			}
			continue
		}
		if msg != "" || first != netip.MustParseAddr(tc.first) || last != netip.MustParseAddr(tc.last) {
			t.Errorf("%q: %v-%v %q, want %s-%s", tc.in, first, last, msg, tc.first, tc.last)
		}
	}
}

// groupConf is a group with IPv4 and IPv6 entries, a port-0 entry when zero is set, and
// real servers of both families.
func groupConf(entries string) string {
	return "virtual_server_group G {\n" + entries + "}\n" +
		"virtual_server group G {\n protocol UDP\n lb_kind NAT\n lb_algo wrr\n" +
		" real_server 192.0.2.50 53 {\n  weight 3\n }\n" +
		" real_server 2001:db8:5::50 53 {\n  weight 4\n }\n}\n"
}

func TestGroupFamiliesAndPorts(t *testing.T) {
	cfg, err := Parse("g.conf", []byte(groupConf(" 198.18.0.1-2 53\n 2001:db8::a-b 53\n")), Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []string{
		"UDP 198.18.0.1:53 g=G wrr NAT p0 rs[192.0.2.50:53] laddrs[]",
		"UDP 198.18.0.2:53 g=G wrr NAT p0 rs[192.0.2.50:53] laddrs[]",
		"UDP [2001:db8::a]:53 g=G wrr NAT p0 rs[[2001:db8:5::50]:53] laddrs[]",
		"UDP [2001:db8::b]:53 g=G wrr NAT p0 rs[[2001:db8:5::50]:53] laddrs[]",
	}
	if got := svcLines(cfg); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// One warning per family, not one per member.
	n := 0
	for _, w := range cfg.Warnings {
		if strings.Contains(w.Msg, "address family differs") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d family warnings, want 2 (one per family): %v", n, cfg.Warnings)
	}

	// An entry without a port makes the block persistent, as keepalived does.
	cfg, err = Parse("g.conf", []byte(groupConf(" 198.18.0.1 53\n 198.18.0.9\n")), Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, vs := range cfg.VirtualServers {
		if vs.PersistenceTimeout != DefaultPersistenceTimeout {
			t.Errorf("%s persistence %d, want %d", vs.ServiceKey, vs.PersistenceTimeout, DefaultPersistenceTimeout)
		}
	}
	if len(cfg.VirtualServers) != 2 || cfg.VirtualServers[1].Port != 0 || cfg.VirtualServers[1].RealServers[0].Addr.Port() != 53 {
		t.Errorf("services %v", svcLines(cfg))
	}
	if !strings.Contains(fmt.Sprint(cfg.Warnings), "g.conf:5: warning: virtual_server group G: an entry of the group has no port") {
		t.Errorf("warnings %v", cfg.Warnings)
	}
}

func TestGroupErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown group", "virtual_server_group A {\n 192.0.2.1 80\n}\nvirtual_server group B {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n",
			`e.conf:4: virtual_server group B: no virtual_server_group "B" is defined: expected one of A`},
		{"no group at all", "virtual_server group B {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n",
			`e.conf:1: virtual_server group B: no virtual_server_group "B" is defined: add "virtual_server_group B { IP PORT ... }"`},
		{"member defined twice", "virtual_server_group A {\n 192.0.2.1-3 80\n}\nvirtual_server group A {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n" +
			"virtual_server 192.0.2.2 80 {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n",
			"e.conf:9: virtual_server TCP 192.0.2.2:80 is defined twice (first at e.conf:2): expected one service per protocol, address and port"},
		{"two blocks, same protocol", "virtual_server_group A {\n 192.0.2.1 80\n}\nvirtual_server group A {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n" +
			"virtual_server group A {\n protocol TCP\n real_server 198.18.1.2 80 {\n }\n}\n",
			"e.conf:2: virtual_server group A member TCP 192.0.2.1:80 is defined twice (first at e.conf:2)"},
		{"bad entry", "virtual_server_group A {\n 192.0.2.9/29 80\n 192.0.2.1 http\n fwmark x\n fwmark 3 inet7\n}\n",
			"e.conf:2: virtual_server_group A: \"192.0.2.9/29\": the address has bits set beyond the /29 prefix: expected 192.0.2.8/29\n" +
				"e.conf:3: virtual_server_group A: \"http\" is not a valid port: expected an integer from 0 to 65535\n" +
				"e.conf:4: virtual_server_group A: fwmark \"x\" is not a firewall mark: expected an integer from 1 to 4294967295\n" +
				"e.conf:5: virtual_server_group A: fwmark 3: unknown family \"inet7\": expected inet or inet6"},
		{"group defined twice", "virtual_server_group A {\n 192.0.2.1 80\n}\nvirtual_server_group A {\n 192.0.2.2 80\n}\n",
			"e.conf:4: virtual_server_group A is defined twice (first at e.conf:1): expected one block per name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("e.conf", []byte(tc.src), Options{})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err\n%v\nwant it to start with\n%s", err, tc.want)
			}
		})
	}
	// Two blocks of different protocols may share a group (keepalived's tcp_alive,
	// udp_alive counters are for that).
	src := "virtual_server_group A {\n 192.0.2.1 53\n}\n" +
		"virtual_server group A {\n protocol TCP\n real_server 198.18.1.1 53 {\n }\n}\n" +
		"virtual_server group A {\n protocol UDP\n real_server 198.18.1.1 53 {\n }\n}\n"
	cfg, err := Parse("ok.conf", []byte(src), Options{})
	if err != nil || len(cfg.VirtualServers) != 2 {
		t.Fatalf("TCP and UDP on one group: %v %v", err, cfg)
	}
	// A group of fwmarks only: their services.
	cfg, err = Parse("w.conf", []byte("virtual_server_group A {\n fwmark 3\n}\nvirtual_server group A {\n protocol TCP\n real_server 198.18.1.1 53 {\n }\n}\n"), Options{})
	if err != nil || len(cfg.VirtualServers) != 1 || cfg.VirtualServers[0].FWMark != 3 {
		t.Fatalf("fwmark-only group: %v %v", err, cfg.Warnings)
	}
	// An empty group: a warning, no service.
	cfg, err = Parse("w.conf", []byte("virtual_server_group A {\n}\nvirtual_server group A {\n protocol TCP\n real_server 198.18.1.1 53 {\n }\n}\n"), Options{})
	if err != nil || len(cfg.VirtualServers) != 0 || !strings.Contains(fmt.Sprint(cfg.Warnings), "lists no address: nothing to serve") {
		t.Fatalf("empty group: %v %v", err, cfg.Warnings)
	}
}

func TestGroupReload(t *testing.T) {
	before := groupConf(" 198.18.0.1-3 53\n")
	after := groupConf(" 198.18.0.2-4 53\n")
	oldCfg, err := Parse("g.conf", []byte(before), Options{})
	if err != nil {
		t.Fatal(err)
	}
	newCfg, err := Parse("g.conf", []byte(after), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := Diff(oldCfg, newCfg)
	var added, removed []string
	for _, vs := range ch.AddedServices {
		added = append(added, vs.ServiceKey.String())
	}
	for _, vs := range ch.RemovedServices {
		removed = append(removed, vs.ServiceKey.String())
	}
	if !slices.Equal(added, []string{"UDP 198.18.0.4:53"}) || !slices.Equal(removed, []string{"UDP 198.18.0.1:53"}) || len(ch.ChangedServices) != 0 {
		t.Errorf("diff:\n%s", ch)
	}
	// A change of the block changes every member.
	changed := strings.Replace(before, "weight 3", "weight 5", 1)
	c2, err := Parse("g.conf", []byte(changed), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch = Diff(oldCfg, c2)
	if len(ch.ChangedServices) != 3 || len(ch.AddedServices)+len(ch.RemovedServices) != 0 {
		t.Errorf("diff:\n%s", ch)
	}
	for _, sc := range ch.ChangedServices {
		if len(sc.ChangedServers) != 1 || !sc.ChangedServers[0].RuleChanged() {
			t.Errorf("%s: %+v", sc.New.ServiceKey, sc.ChangedServers)
		}
	}
}

func TestDPVSSamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
		warn []string // substrings of warnings that must be there
	}{
		{"dpvs-fnat.conf", []string{
			"TCP 10.80.0.254:80 g=10.80.0.254-80 rr FNAT p0 rs[10.80.1.2:80 10.80.1.3:80] laddrs[10.80.0.200 10.80.0.201]",
		}, []string{
			":16: warning: local_address_group laddr_g1: interface names ignored (dpdk0)",
			":53: warning: nb_sock_retry ignored: a DPVS keepalived keyword with no xlvs meaning",
		}},
		{"dpvs-fnat6.conf", []string{
			"TCP [2001:db8:80::1]:80 g=2001-db8-80--1-80 rr FNAT p0 rs[[2001:db8:81::3]:80 [2001:db8:81::4]:8080] laddrs[2001:db8:80::2 2001:db8:80::3]",
		}, []string{
			":23: warning: establish_timeout ignored: a DPVS keepalived keyword with no xlvs meaning: xlvs times established connections out with the global TCP timeout",
			":24: warning: daddr_group_name 2001-db8-80--1_deny ignored: the deny_address_group (at testdata/groups/dpvs-fnat6.conf:14) is empty, and xlvs has no deny lists",
			":25: warning: syn_proxy ignored",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "groups", tc.file)
			cfg, err := Load(path, Options{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := svcLines(cfg); !slices.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			all := fmt.Sprint(cfg.Warnings)
			for _, w := range tc.warn {
				if !strings.Contains(all, path+w) {
					t.Errorf("no warning %q in\n%s", path+w, strings.Join(strings.Split(all, "warning: "), "\nwarning: "))
				}
			}
		})
	}
}

func TestDPVSRefused(t *testing.T) {
	vs := func(body string) string {
		return "virtual_server 192.0.2.1 80 {\n protocol TCP\n" + body + " real_server 198.18.1.1 80 {\n }\n}\n"
	}
	for _, tc := range []struct{ name, src, want string }{
		{"snat match", "virtual_server match SNAT1 {\n protocol UDP\n lb_kind SNAT\n src-range 192.168.100.0-192.168.100.254\n oif dpdk1\n real_server 123.1.2.1 0 {\n  weight 4\n }\n}\n",
			"d.conf:1: virtual_server match SNAT1: DPVS's SNAT \"match\" services are not supported by xlvs"},
		{"conhash", vs(" lb_algo conhash\n"), "d.conf:3: lb_algo conhash: DPVS's consistent-hash scheduler is not supported by xlvs: use mh"},
		{"snat method", vs(" lb_kind SNAT\n"), "d.conf:3: lb_kind SNAT: DPVS's SNAT forwarding is not supported by xlvs"},
		{"icmp", "virtual_server 192.0.2.1 80 {\n protocol ICMP\n real_server 198.18.1.1 80 {\n }\n}\n", "d.conf:2: protocol ICMP: DPVS's ICMP services (SNAT) are not supported by xlvs"},
		{"proxy protocol", vs(" proxy_protocol v2\n"), "d.conf:3: proxy_protocol v2: DPVS's PROXY protocol header is not supported by xlvs"},
		{"deny list with entries", "deny_address_group deny1 {\n 203.0.113.9\n 203.0.113.10\n}\n" + vs(" daddr_group_name deny1\n"),
			"d.conf:7: daddr_group_name deny1: DPVS's deny lists are not supported by xlvs, and the deny_address_group (at d.conf:1) lists 2 entries"},
		{"allow list with entries", "allow_address_group ok1 {\n 203.0.113.9\n}\n" + vs(" waddr_group_name ok1\n"),
			"d.conf:6: waddr_group_name ok1: DPVS's allow lists are not supported by xlvs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("d.conf", []byte(tc.src), Options{})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err\n%v\nwant it to start with\n%s", err, tc.want)
			}
		})
	}
	// What has no xlvs meaning is a warning naming the line.
	src := vs(" bps 1000\n limit_proportion 50\n vip_bind_dev dpdk0.kni\n quic\n expire_quiescent_conn\n hash_target sip\n proxy_protocol disable\n")
	cfg, err := Parse("d.conf", []byte(src), Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for line, kw := range map[int]string{3: "bps", 4: "limit_proportion", 5: "vip_bind_dev", 6: "quic", 7: "expire_quiescent_conn", 8: "hash_target"} {
		if !strings.Contains(fmt.Sprint(cfg.Warnings), fmt.Sprintf("d.conf:%d: warning: %s ignored: a DPVS keepalived keyword", line, kw)) {
			t.Errorf("no warning for %s at line %d: %v", kw, line, cfg.Warnings)
		}
	}
}

// TestGroupBound: the groups of one file give at most 65536 services, an error naming
// the entry beyond (not a configuration that eats the director's memory).
func TestGroupBound(t *testing.T) {
	src := "virtual_server_group A {\n 10.1.0.0/16 80\n 10.2.0.0/16 80\n}\n" +
		"virtual_server group A {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n"
	_, err := Parse("b.conf", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "b.conf:3: virtual_server group A: the groups of this file give more than 65536 services") {
		t.Errorf("err %v", err)
	}
}
