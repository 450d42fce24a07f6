package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// FULLNAT local addresses, as DPVS's keepalived configures them:
//
//	local_address_group NAME {
//	    IP [IFNAME]
//	    A.B.C.D-E [IFNAME]      # A.B.C.D to A.B.C.E
//	}
//	virtual_server VIP PORT {
//	    lb_kind FNAT
//	    laddr_group_name NAME
//	    ...
//	}

// laddrUsage is what an entry of a local_address_group looks like, for messages.
const laddrUsage = `"IP [IFNAME]" or "A.B.C.D-E [IFNAME]"`

// maxRangeEnd is the highest last octet a range may end with: DPVS's keepalived refuses
// ranges ending at 255.
const maxRangeEnd = 254

// localAddressGroup reads a top-level local_address_group block.
func (p *parser) localAddressGroup(n *node) {
	if !p.opensBlock(n) {
		return
	}
	if len(n.args()) != 1 {
		p.errorf(n.pos, "local_address_group: expected \"local_address_group NAME {\", got %q", n.text())
		return
	}
	g := &LocalAddressGroup{Pos: n.pos, Name: n.args()[0]}
	for _, prev := range p.groups {
		if prev.Name == g.Name {
			p.errorf(n.pos, "local_address_group %s is defined twice (first at %s): expected one block per name", g.Name, prev.Pos)
			return
		}
	}
	where := "local_address_group " + g.Name
	// DPVS binds each address to the interface named after it; xlvs does not need it.
	var ifnames []string
	for _, c := range n.children {
		if len(c.words) == 2 && !c.block && !slices.Contains(ifnames, c.words[1]) {
			ifnames = append(ifnames, c.words[1])
		}
	}
	if len(ifnames) > 0 {
		p.warnf(n.pos, "%s: interface names ignored (%s): xlvs uses each local address on whichever interface the kernel has it", where, strings.Join(ifnames, ", "))
	}
	seen := map[netip.Addr]bool{}
	for _, c := range n.children {
		if c.block {
			p.warnf(c.pos, "%s: block after %q ignored, as keepalived does: expected %s", where, c.text(), laddrUsage)
		}
		if len(c.words) > 2 {
			p.lenient(c.pos, "%s: extra %q ignored, as keepalived does: expected %s", where, strings.Join(c.words[2:], " "), laddrUsage)
		}
		addrs, msg := laddrEntry(c.words[0])
		if msg != "" {
			p.errorf(c.pos, "%s: %s", where, msg)
			continue
		}
		for _, a := range addrs {
			if seen[a] {
				p.warnf(c.pos, "%s: %s is listed twice: used once", where, a)
				continue
			}
			seen[a] = true
			g.Addrs = append(g.Addrs, a)
		}
	}
	if len(g.Addrs) == 0 {
		p.warnf(n.pos, "%s has no addresses", where)
	}
	p.groups = append(p.groups, g)
}

// laddrEntry reads one address or IPv4 range of a local_address_group; msg says what is
// wrong when it cannot.
func laddrEntry(s string) (addrs []netip.Addr, msg string) {
	from, to, isRange := strings.Cut(s, "-")
	a, ok := parseAddr(from)
	if !ok {
		return nil, fmt.Sprintf("%q is not an IP address or range: expected %s", s, laddrUsage)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return nil, fmt.Sprintf("%s is not a unicast address: expected %s", from, laddrUsage)
	}
	if !isRange {
		return []netip.Addr{a}, ""
	}
	if !a.Is4() {
		return nil, fmt.Sprintf("%q: ranges are IPv4 only (A.B.C.D-E): list IPv6 local addresses one per line", s)
	}
	b := a.As4()
	end, err := strconv.ParseUint(to, 10, 8)
	if err != nil || end <= uint64(b[3]) || end > maxRangeEnd {
		return nil, fmt.Sprintf("%q is not an address range: expected A.B.C.D-E with D < E <= %d, such as 192.168.100.200-210 (.200 to .210)", s, maxRangeEnd)
	}
	for o := int(b[3]); o <= int(end); o++ {
		b[3] = byte(o)
		addrs = append(addrs, netip.AddrFrom4(b))
	}
	return addrs, ""
}

// usesFNAT reports whether any destination of vs forwards with FNAT: its own method (the
// default of its real servers), a real server's or the sorry server's.
func (vs *VirtualServer) usesFNAT() bool {
	if vs.Method.Kind == MethodFNAT {
		return true
	}
	if vs.SorryServer != nil && vs.SorryServer.Method.Kind == MethodFNAT {
		return true
	}
	return slices.ContainsFunc(vs.RealServers, func(rs RealServer) bool { return rs.Method.Kind == MethodFNAT })
}

// resolveLaddrs gives a virtual server that forwards with FNAT the local addresses of its
// laddr_group_name. It returns false, with an error, when it has none.
func (p *parser) resolveLaddrs(vs *VirtualServer, r *rawVS, name string) bool {
	if !vs.usesFNAT() {
		if r.laddrGroup != "" {
			p.warnf(r.laddrGroupPos, "laddr_group_name %s ignored: %s forwards with %s, and local addresses only apply to FNAT", r.laddrGroup, name, vs.Method.Kind)
		}
		return true
	}
	if r.laddrGroup == "" {
		p.errorf(r.pos, "%s forwards with FNAT but has no laddr_group_name: add \"laddr_group_name NAME\" naming a local_address_group block that lists the director's local addresses", name)
		return false
	}
	i := slices.IndexFunc(p.groups, func(g *LocalAddressGroup) bool { return g.Name == r.laddrGroup })
	if i < 0 {
		var names []string
		for _, g := range p.groups {
			names = append(names, g.Name)
		}
		if len(names) == 0 {
			p.errorf(r.laddrGroupPos, "laddr_group_name: no local_address_group %q is defined: add \"local_address_group %s { IP ... }\" listing the director's local addresses", r.laddrGroup, r.laddrGroup)
		} else {
			p.errorf(r.laddrGroupPos, "laddr_group_name: no local_address_group %q is defined: expected one of %s", r.laddrGroup, strings.Join(names, ", "))
		}
		return false
	}
	g := p.groups[i]
	other := 0
	for _, a := range g.Addrs {
		if a.Is6() == vs.Addr.Is6() {
			vs.LocalAddrs = append(vs.LocalAddrs, a)
		} else {
			other++
		}
	}
	fam, otherFam := 4, 6
	if vs.Addr.Is6() {
		fam, otherFam = 6, 4
	}
	if len(vs.LocalAddrs) == 0 {
		p.errorf(r.laddrGroupPos, "laddr_group_name %s: the group (at %s) has no IPv%d address for %s: add IPv%d local addresses to it", g.Name, g.Pos, fam, name, fam)
		return false
	}
	if other > 0 {
		p.warnf(r.laddrGroupPos, "laddr_group_name %s: the group's IPv%d addresses (%d) are not used by %s, an IPv%d service", g.Name, otherFam, other, name, fam)
	}
	vs.LaddrGroup = g.Name
	return true
}
