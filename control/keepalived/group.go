package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// virtual_server_group, as keepalived 2.x reads it (check_parser.c's vsg_handler,
// check_data.c's alloc_vsg_entry and validate_check_config, ipvswrapper.c's
// ipvs_group_range_cmd; acassen/keepalived, keepalived.conf(5) "Virtual server
// group(s)"):
//
//	virtual_server_group NAME {
//	    IP [PORT]                  # one address
//	    A.B.C.D-E [PORT]           # last octet D to E (decimal, up to 255)
//	    A.B.C.D-W.X.Y.Z [PORT]     # any IPv4 range, both ends included
//	    X:...:Y-Z [PORT]           # IPv6: last 16-bit group Y to Z (hexadecimal)
//	    X:...:Y-X:...:Z [PORT]     # IPv6: both ends written out (same first 112 bits)
//	    IP/LEN [PORT]              # every address of a prefix (host bits zero)
//	    fwmark N [inet|inet6]      # a firewall mark (the marks: xlvsadm --add-mark)
//	}
//	virtual_server group NAME { ...settings, real servers, checkers... }
//
// keepalived makes one IPVS service per address and port of the group, each with the
// block's settings and real servers, and runs the real servers' checkers once for all
// of them (xlvs does the same: VirtualServer.Group names the group, and the health
// checks of services with the same group, protocol and real servers are shared). A
// missing port (or 0) means every port, which needs persistence: keepalived then makes
// the whole block persistent (360 s) with a warning, as xlvs does.

// maxGroupAddrs bounds the services one virtual_server_group entry may expand to (an
// IPv4 /16 or an IPv6 /112), and all the groups of a file together; keepalived without
// nftables creates each one as an IPVS service too.
const maxGroupAddrs = 1 << 16

// vsgUsage is what a virtual_server_group entry looks like, for messages.
const vsgUsage = `"IP [PORT]", "IP-END [PORT]", "IP/LEN [PORT]" or "fwmark N [inet|inet6]"`

// vsgBlock reads a top-level virtual_server_group block.
func (p *parser) vsgBlock(n *node) {
	if !p.opensBlock(n) {
		return
	}
	if len(n.args()) != 1 {
		p.errorf(n.pos, "virtual_server_group: expected \"virtual_server_group NAME {\", got %q", n.text())
		return
	}
	g := &VirtualServerGroup{Pos: n.pos, Name: n.args()[0]}
	for _, prev := range p.vsgs {
		if prev.Name == g.Name {
			p.errorf(n.pos, "virtual_server_group %s is defined twice (first at %s): expected one block per name", g.Name, prev.Pos)
			return
		}
	}
	where := "virtual_server_group " + g.Name
	type key struct {
		a    netip.Addr
		port uint16
	}
	seen := map[key]Pos{}
	marks := map[uint32]Pos{}
	for _, c := range n.children {
		if c.block {
			p.lenient(c.pos, "%s: block after %q ignored, as keepalived does: expected %s", where, c.text(), vsgUsage)
		}
		e, ok := p.vsgEntry(c, where)
		if !ok {
			continue
		}
		if e.IsFWMark {
			if prev, dup := marks[e.FWMark]; dup {
				p.warnf(c.pos, "%s: fwmark %d is listed twice (first at %s): used once", where, e.FWMark, prev)
				continue
			}
			marks[e.FWMark] = c.pos
			g.Entries = append(g.Entries, e)
			continue
		}
		dup := false
		e.Addrs(func(a netip.Addr) bool {
			if prev, ok := seen[key{a, e.Port}]; ok {
				p.warnf(c.pos, "%s: %s is listed twice (first at %s): used once", where, netip.AddrPortFrom(a, e.Port), prev)
				dup = true
				return false
			}
			seen[key{a, e.Port}] = c.pos
			return true
		})
		if dup {
			continue
		}
		g.Entries = append(g.Entries, e)
	}
	if len(g.Entries) == 0 {
		p.warnf(n.pos, "%s has no entries: a virtual_server using it has no services, as keepalived removes an empty group", where)
	}
	p.vsgs = append(p.vsgs, g)
}

// vsgEntry reads one line of a virtual_server_group.
func (p *parser) vsgEntry(c *node, where string) (GroupEntry, bool) {
	e := GroupEntry{Pos: c.pos}
	w := c.words
	if w[0] == "fwmark" {
		if len(w) < 2 {
			p.errorf(c.pos, "%s: fwmark: missing mark: expected \"fwmark N [inet|inet6]\"", where)
			return e, false
		}
		v, err := strconv.ParseUint(w[1], 0, 32)
		if err != nil || v == 0 {
			p.errorf(c.pos, "%s: fwmark %q is not a firewall mark: expected an integer from 1 to 4294967295", where, w[1])
			return e, false
		}
		e.IsFWMark, e.FWMark = true, uint32(v)
		if len(w) > 2 {
			switch w[2] {
			case "inet":
				e.FWMarkFamily = 4
			case "inet6":
				e.FWMarkFamily = 6
			default:
				p.errorf(c.pos, "%s: fwmark %d: unknown family %q: expected inet or inet6", where, v, w[2])
				return e, false
			}
		}
		if len(w) > 3 {
			p.lenient(c.pos, "%s: extra %q ignored, as keepalived does: expected \"fwmark N [inet|inet6]\"", where, strings.Join(w[3:], " "))
		}
		return e, true
	}
	if len(w) > 2 {
		p.lenient(c.pos, "%s: extra %q ignored, as keepalived does: expected %s", where, strings.Join(w[2:], " "), vsgUsage)
	}
	first, last, msg := groupRange(w[0])
	if msg != "" {
		p.errorf(c.pos, "%s: %s", where, msg)
		return e, false
	}
	e.First, e.Last = first, last
	if len(w) >= 2 {
		port, err := strconv.ParseUint(w[1], 10, 16)
		if err != nil {
			p.errorf(c.pos, "%s: %q is not a valid port: expected an integer from 0 to 65535", where, w[1])
			return e, false
		}
		e.Port = uint16(port)
	}
	return e, true
}

// groupRange reads the address part of a virtual_server_group entry: one address, a
// range or a prefix. msg says what is wrong when it cannot.
func groupRange(s string) (first, last netip.Addr, msg string) {
	bad := func(format string, args ...any) (netip.Addr, netip.Addr, string) {
		return netip.Addr{}, netip.Addr{}, fmt.Sprintf(format, args...)
	}
	unicast := func(a netip.Addr, text string) string {
		if a.IsUnspecified() || a.IsMulticast() {
			return fmt.Sprintf("%s is not a unicast address: expected %s", text, vsgUsage)
		}
		return ""
	}
	if addr, bits, isPrefix := strings.Cut(s, "/"); isPrefix {
		a, ok := parseAddr(addr)
		n, err := strconv.Atoi(bits)
		if !ok || err != nil || n < 1 || n > a.BitLen() {
			return bad("%q is not an address prefix: expected IP/LEN such as 192.168.202.8/29 (LEN from 1 to 32, or 128 for IPv6)", s)
		}
		pfx := netip.PrefixFrom(a, n)
		if pfx.Masked().Addr() != a {
			return bad("%q: the address has bits set beyond the /%d prefix: expected %s", s, n, pfx.Masked())
		}
		if a.BitLen()-n > 16 {
			return bad("%q has more than %d addresses: a group entry may list at most a /%d", s, maxGroupAddrs, a.BitLen()-16)
		}
		first = a
		last = a
		for i := 0; i < 1<<(a.BitLen()-n)-1; i++ {
			last = last.Next()
		}
		if m := unicast(first, s); m != "" {
			return bad("%s", m)
		}
		if last.IsMulticast() {
			return bad("%q reaches multicast addresses: expected unicast addresses", s)
		}
		return first, last, ""
	}
	from, to, isRange := strings.Cut(s, "-")
	a, ok := parseAddr(from)
	if !ok {
		return bad("%q is not an IP address, range or prefix: expected %s", s, vsgUsage)
	}
	if m := unicast(a, from); m != "" {
		return bad("%s", m)
	}
	if !isRange {
		return a, a, ""
	}
	var end netip.Addr
	full := (a.Is4() && strings.Contains(to, ".")) || (a.Is6() && strings.Contains(to, ":"))
	if full {
		e, ok := parseAddr(to)
		if !ok || e.Is4() != a.Is4() {
			return bad("%q: the range end %q is not an address of the same family: expected %s", s, to, vsgUsage)
		}
		end = e
		if a.Is6() {
			x, y := a.As16(), e.As16()
			if [14]byte(x[:14]) != [14]byte(y[:14]) {
				return bad("%q: an IPv6 range may differ only in its last 16-bit group (keepalived steps that group): split it", s)
			}
		}
	} else {
		base := 10
		max := uint64(255)
		if a.Is6() {
			base, max = 16, 0xffff
		}
		v, err := strconv.ParseUint(to, base, 64)
		if err != nil || v > max {
			if a.Is6() {
				return bad("%q is not an address range: expected X:...:Y-Z with Z a hexadecimal last group, such as 2001:db8::10-1f", s)
			}
			return bad("%q is not an address range: expected A.B.C.D-E with E the last octet (up to 255), such as 192.168.200.3-10", s)
		}
		if a.Is4() {
			b := a.As4()
			b[3] = byte(v)
			end = netip.AddrFrom4(b)
		} else {
			b := a.As16()
			b[14], b[15] = byte(v>>8), byte(v)
			end = netip.AddrFrom16(b)
		}
		if end.Compare(a) <= 0 {
			return bad("%q: the range end is not above its start, as keepalived requires", s)
		}
	}
	if end.Compare(a) < 0 {
		return bad("%q: the range end is below its start", s)
	}
	if count(a, end) > maxGroupAddrs {
		return bad("%q has more than %d addresses: split it", s, maxGroupAddrs)
	}
	if end.IsMulticast() {
		return bad("%q reaches multicast addresses: expected unicast addresses", s)
	}
	return a, end, ""
}

// count is the number of addresses from a to b (b >= a), capped above maxGroupAddrs.
func count(a, b netip.Addr) int {
	n := 1
	for x := a; x != b && n <= maxGroupAddrs; x = x.Next() {
		n++
	}
	return n
}

// expandGroup expands "virtual_server group NAME" into one raw virtual server per address
// and port of the group, in the group's order. It reports false when the group is
// missing (an error) or lists no address (a warning: nothing to serve).
func (p *parser) expandGroup(r *rawVS) ([]*rawVS, bool) {
	i := slices.IndexFunc(p.vsgs, func(g *VirtualServerGroup) bool { return g.Name == r.group })
	if i < 0 {
		var names []string
		for _, g := range p.vsgs {
			names = append(names, g.Name)
		}
		if len(names) == 0 {
			p.errorf(r.pos, "virtual_server group %s: no virtual_server_group %q is defined: add \"virtual_server_group %s { IP PORT ... }\"", r.group, r.group, r.group)
		} else {
			p.errorf(r.pos, "virtual_server group %s: no virtual_server_group %q is defined: expected one of %s", r.group, r.group, strings.Join(names, ", "))
		}
		return nil, false
	}
	g := p.vsgs[i]
	var out []*rawVS
	zeroPort := false
	for _, e := range g.Entries {
		if e.IsFWMark {
			// One fwmark service, as keepalived makes (the marks are xlvsadm's rules).
			m := *r
			m.fwmark, m.fwmarkFamily, m.entryPos = e.FWMark, e.FWMarkFamily, e.Pos
			out = append(out, &m)
			p.members++
			continue
		}
		if e.Port == 0 {
			zeroPort = true
		}
		if p.members+count(e.First, e.Last) > maxGroupAddrs {
			p.errorf(e.Pos, "virtual_server group %s: the groups of this file give more than %d services: split the configuration or use fewer addresses", r.group, maxGroupAddrs)
			return nil, false
		}
		e.Addrs(func(a netip.Addr) bool {
			m := *r
			m.addr, m.port, m.entryPos = a, e.Port, e.Pos
			out = append(out, &m)
			p.members++
			return true
		})
	}
	if len(out) == 0 {
		p.warnf(r.pos, "virtual_server group %s: the group (at %s) lists no address: nothing to serve", r.group, g.Pos)
		return nil, false
	}
	if zeroPort && r.ptimeout.v == 0 {
		// validate_check_config: a group entry without a port makes the block persistent.
		p.warnf(r.pos, "virtual_server group %s: an entry of the group has no port (every port), which is only valid for a persistent service: persistence_timeout %d set for the group's services, as keepalived does", r.group, DefaultPersistenceTimeout)
		for _, m := range out {
			m.ptimeout = optU32{v: DefaultPersistenceTimeout, set: true}
		}
	}
	return out, true
}
