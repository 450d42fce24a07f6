package keepalived

import "strings"

// DPVS's keepalived dialect beyond FULLNAT's local addresses (laddr.go), as DPVS's
// tools/keepalived/keepalived/check/check_parser.c installs it (iqiyi/dpvs): keywords
// that have no xlvs meaning are accepted with a Warning; features that would change
// what the service does and that xlvs does not have — SNAT "virtual_server match"
// services, the conhash scheduler, non-empty deny or allow lists, the PROXY protocol —
// are errors naming the file and line, so that a configuration is never run with a
// part of it silently dropped.

// addrList is a deny_address_group or allow_address_group block.
type addrList struct {
	pos     Pos
	entries int
}

// dpvsWhy says why each DPVS virtual_server keyword that is only warned about has no
// xlvs meaning.
var dpvsWhy = map[string]string{
	"establish_timeout":     "xlvs times established connections out with the global TCP timeout (xlvsadm --set)",
	"bps":                   "xlvs does not limit a service's bandwidth",
	"limit_proportion":      "xlvs does not limit a service's bandwidth",
	"hash_target":           "it only applies to DPVS's conhash scheduler",
	"vip_bind_dev":          "xlvs does not add the virtual address to an interface: configure it on the director",
	"expire_quiescent_conn": "xlvs has no per-service setting for it (see xlvsd --expire-nodest-conn)",
	"quic":                  "xlvs does not route QUIC connection IDs; QUIC is balanced as UDP",
	"src-range":             "it only applies to DPVS's SNAT match services",
	"dst-range":             "it only applies to DPVS's SNAT match services",
	"oif":                   "it only applies to DPVS's SNAT match services",
	"iif":                   "it only applies to DPVS's SNAT match services",
}

// dpvsKeyword reads a DPVS-only keyword of a virtual_server block.
func (p *parser) dpvsKeyword(vs *rawVS, n *node) {
	kw := n.keyword()
	switch kw {
	case "proxy_protocol":
		if !p.value(n, 1, 1, "proxy_protocol v1|v2|disable") {
			return
		}
		switch strings.ToLower(n.args()[0]) {
		case "disable", "none", "off":
			return
		}
		p.errorf(n.pos, "proxy_protocol %s: DPVS's PROXY protocol header is not supported by xlvs (the real servers would not get the header they expect): remove it or use \"proxy_protocol disable\"", n.args()[0])
	case "daddr_group_name", "waddr_group_name":
		if !p.value(n, 1, 1, kw+" NAME") {
			return
		}
		if kw == "daddr_group_name" {
			vs.daddr, vs.daddrPos = n.args()[0], n.pos
		} else {
			vs.waddr, vs.waddrPos = n.args()[0], n.pos
		}
	default:
		if p.value(n, 0, 1<<10, kw+" VALUE") {
			p.warnf(n.pos, "%s ignored: a DPVS keepalived keyword with no xlvs meaning: %s", kw, dpvsWhy[kw])
		}
	}
}

// dpvsAddrGroup reads a top-level deny_address_group or allow_address_group block.
func (p *parser) dpvsAddrGroup(n *node) {
	if !p.opensBlock(n) {
		return
	}
	if len(n.args()) != 1 {
		p.errorf(n.pos, "%s: expected \"%s NAME {\", got %q", n.keyword(), n.keyword(), n.text())
		return
	}
	m := &p.denyGroups
	if n.keyword() == "allow_address_group" {
		m = &p.allowGroups
	}
	if *m == nil {
		*m = map[string]addrList{}
	}
	(*m)[n.args()[0]] = addrList{pos: n.pos, entries: len(n.children)}
}

// dpvsLists checks a virtual server's daddr_group_name and waddr_group_name: an empty
// (or missing) list changes nothing and is a warning; a list with addresses would
// deny or allow clients, which xlvs does not do, and is an error.
func (p *parser) dpvsLists(r *rawVS) {
	check := func(name string, pos Pos, groups map[string]addrList, kw, block, what string) {
		if name == "" {
			return
		}
		g, ok := groups[name]
		switch {
		case !ok:
			p.warnf(pos, "%s %s ignored: no %s %q is defined", kw, name, block, name)
		case g.entries == 0:
			p.warnf(pos, "%s %s ignored: the %s (at %s) is empty, and xlvs has no %s lists", kw, name, block, g.pos, what)
		default:
			p.errorf(pos, "%s %s: DPVS's %s lists are not supported by xlvs, and the %s (at %s) lists %d entries: remove %s and filter clients in front of the director", kw, name, what, block, g.pos, g.entries, kw)
		}
	}
	check(r.daddr, r.daddrPos, p.denyGroups, "daddr_group_name", "deny_address_group", "deny")
	check(r.waddr, r.waddrPos, p.allowGroups, "waddr_group_name", "allow_address_group", "allow")
}
