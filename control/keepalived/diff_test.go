package keepalived

import (
	"fmt"
	"strings"
	"testing"
)

const diffBase = `virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_algo wlc
    lb_kind NAT
    delay_loop 5
    real_server 198.18.1.1 80 {
        weight 1
        TCP_CHECK { connect_timeout 2 }
    }
    real_server 198.18.1.2 80 {
        weight 2
        TCP_CHECK { connect_timeout 2 }
    }
}
virtual_server 198.18.0.10 53 {
    protocol UDP
    lb_kind NAT
    real_server 198.18.1.1 53 { }
}
`

func TestDiff(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		want    string // Changes.String()
		rule    bool   // some service's rule changed
		srvRule bool   // some server's rule changed
	}{
		{"identical", func(s string) string { return s }, "", false, false},
		{"only positions move", func(s string) string { return "# a comment\n\n" + strings.ReplaceAll(s, "{\n", "{\n\n") }, "", false, false},
		{"weight", func(s string) string { return strings.Replace(s, "weight 2", "weight 5", 1) },
			"change real_server 198.18.1.2:80 of TCP 198.18.0.10:80: weight\n", false, true},
		{"scheduler", func(s string) string { return strings.Replace(s, "lb_algo wlc", "lb_algo rr", 1) },
			"change virtual_server TCP 198.18.0.10:80: lb_algo\n", true, false},
		{"delay_loop changes the checkers, not the rules", func(s string) string { return strings.Replace(s, "delay_loop 5", "delay_loop 6", 1) },
			"change virtual_server TCP 198.18.0.10:80: delay_loop\n" +
				"change real_server 198.18.1.1:80 of TCP 198.18.0.10:80: checkers\n" +
				"change real_server 198.18.1.2:80 of TCP 198.18.0.10:80: checkers\n", false, false},
		{"checker", func(s string) string {
			return strings.Replace(s, "connect_timeout 2 }\n    }\n    real_server", "connect_timeout 3 }\n    }\n    real_server", 1)
		},
			"change real_server 198.18.1.1:80 of TCP 198.18.0.10:80: checkers\n", false, false},
		{"real server added and removed", func(s string) string {
			return strings.Replace(s, "real_server 198.18.1.2 80", "real_server 198.18.1.3 80", 1)
		},
			"add real_server 198.18.1.3:80 to TCP 198.18.0.10:80\nremove real_server 198.18.1.2:80 from TCP 198.18.0.10:80\n", false, false},
		{"service removed", func(s string) string { return s[:strings.Index(s, "virtual_server 198.18.0.10 53")] },
			"remove virtual_server UDP 198.18.0.10:53\n", false, false},
		{"service added", func(s string) string {
			return s + strings.ReplaceAll(diffBase[strings.Index(diffBase, "virtual_server 198.18.0.10 53"):], " 53", " 54")
		},
			"add virtual_server UDP 198.18.0.10:54 (1 real servers)\n", false, false},
		{"sorry server and quorum", func(s string) string {
			return strings.Replace(s, "delay_loop 5", "delay_loop 5\n sorry_server 198.18.9.9 80\n quorum 2", 1)
		}, "change virtual_server TCP 198.18.0.10:80: quorum, sorry_server\n", false, false},
		{"method", func(s string) string {
			return strings.Replace(s, "weight 1\n", "weight 1\n lvs_method DR\n", 1)
		}, "change real_server 198.18.1.1:80 of TCP 198.18.0.10:80: lvs_method\n", false, true},
	}
	old := parseOne(t, diffBase)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nw := parseOne(t, tt.edit(diffBase))
			d := Diff(old, nw)
			if got := d.String(); got != tt.want {
				t.Errorf("Diff:\n%s\nwant:\n%s", got, tt.want)
			}
			if d.Empty() != (tt.want == "") {
				t.Errorf("Empty() = %v", d.Empty())
			}
			rule, srvRule := false, false
			for _, sc := range d.ChangedServices {
				rule = rule || sc.RuleChanged()
				for _, s := range sc.ChangedServers {
					srvRule = srvRule || s.RuleChanged()
				}
			}
			if rule != tt.rule || srvRule != tt.srvRule {
				t.Errorf("RuleChanged: service %v server %v, want %v %v", rule, srvRule, tt.rule, tt.srvRule)
			}
			// The reverse diff mirrors additions and removals.
			r := Diff(nw, old)
			if len(r.AddedServices) != len(d.RemovedServices) || len(r.RemovedServices) != len(d.AddedServices) ||
				len(r.ChangedServices) != len(d.ChangedServices) {
				t.Errorf("reverse diff is not symmetric:\n%s", r)
			}
		})
	}
}

func TestDiffNil(t *testing.T) {
	cfg := parseOne(t, diffBase)
	if d := Diff(nil, cfg); len(d.AddedServices) != 2 || len(d.RemovedServices) != 0 {
		t.Errorf("Diff(nil, cfg) = %s", d)
	}
	if d := Diff(cfg, nil); len(d.RemovedServices) != 2 {
		t.Errorf("Diff(cfg, nil) = %s", d)
	}
	if !Diff(nil, nil).Empty() {
		t.Errorf("Diff(nil, nil) is not empty")
	}
}

const diffFNAT = `local_address_group g1 {
    198.18.2.50-52 dpdk0
}
local_address_group g2 {
    198.18.2.52
    198.18.2.60
}
virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind FNAT
    laddr_group_name g1
    real_server 198.18.1.1 8080 { }
}
virtual_server 198.18.0.10 443 {
    protocol TCP
    lb_kind FNAT
    laddr_group_name g2
    real_server 198.18.1.1 443 { }
}
`

// TestDiffLocalAddrs: a changed local_address_group or laddr_group_name gives each
// FULLNAT service the local addresses to add and remove, and nothing else; the order
// of the addresses in the group does not count.
func TestDiffLocalAddrs(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"reordered group", func(s string) string {
			return strings.Replace(s, "198.18.2.52\n    198.18.2.60", "198.18.2.60\n    198.18.2.52", 1)
		}, ""},
		{"interface name changed", func(s string) string { return strings.Replace(s, "dpdk0", "dpdk1", 1) }, ""},
		{"range shrunk and address added", func(s string) string {
			return strings.Replace(s, "198.18.2.50-52 dpdk0", "198.18.2.51-52 dpdk0\n    198.18.2.70", 1)
		}, "add local address 198.18.2.70 to TCP 198.18.0.10:80\nremove local address 198.18.2.50 from TCP 198.18.0.10:80\n"},
		{"other group named", func(s string) string { return strings.Replace(s, "laddr_group_name g1", "laddr_group_name g2", 1) },
			"change virtual_server TCP 198.18.0.10:80: laddr_group_name\n" +
				"add local address 198.18.2.60 to TCP 198.18.0.10:80\n" +
				"remove local address 198.18.2.50 from TCP 198.18.0.10:80\n" +
				"remove local address 198.18.2.51 from TCP 198.18.0.10:80\n"},
		{"FNAT to NAT drops the local addresses", func(s string) string {
			return strings.Replace(s, "lb_kind FNAT\n    laddr_group_name g2", "lb_kind NAT", 1)
		}, "change virtual_server TCP 198.18.0.10:443: lb_kind, laddr_group_name\n" +
			"change real_server 198.18.1.1:443 of TCP 198.18.0.10:443: lvs_method\n" +
			"remove local address 198.18.2.52 from TCP 198.18.0.10:443\n" +
			"remove local address 198.18.2.60 from TCP 198.18.0.10:443\n"},
	}
	old := parseOne(t, diffFNAT)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nw := parseOne(t, tt.edit(diffFNAT))
			d := Diff(old, nw)
			if got := d.String(); got != tt.want {
				t.Errorf("Diff:\n%s\nwant:\n%s", got, tt.want)
			}
			for _, sc := range d.ChangedServices {
				if sc.RuleChanged() {
					t.Errorf("%s: local addresses changed the service's rule (%v)", sc.New.ServiceKey, sc.Fields)
				}
				r := Diff(nw, old)
				for _, rc := range r.ChangedServices {
					if rc.New.ServiceKey == sc.New.ServiceKey &&
						(fmt.Sprint(rc.AddedLocalAddrs) != fmt.Sprint(sc.RemovedLocalAddrs) || fmt.Sprint(rc.RemovedLocalAddrs) != fmt.Sprint(sc.AddedLocalAddrs)) {
						t.Errorf("reverse diff of %s: added %v removed %v, want %v %v", sc.New.ServiceKey, rc.AddedLocalAddrs, rc.RemovedLocalAddrs, sc.RemovedLocalAddrs, sc.AddedLocalAddrs)
					}
				}
			}
		})
	}
	// A new FULLNAT service says how many local addresses it brings.
	if got := Diff(nil, old).String(); !strings.Contains(got, "add virtual_server TCP 198.18.0.10:80 (1 real servers, 3 local addresses)\n") {
		t.Errorf("Diff(nil, cfg):\n%s", got)
	}
}
