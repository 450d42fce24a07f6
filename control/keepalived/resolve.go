package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// FileCheckInterval is how often a FILE_CHECK reads its file (keepalived reacts to
// inotify events at once; xlvs polls).
const FileCheckInterval = time.Second

// resolve applies keepalived's defaults, inheritance and corrections (check_data.c's
// validate_check_config) to one virtual server. It returns false when the virtual server
// is dropped (with a warning) or wrong (with an error).
func (p *parser) resolve(r *rawVS) (VirtualServer, bool) {
	name := "virtual_server " + describe(r.addr, r.port)
	if r.fwmark != 0 {
		name = fmt.Sprintf("virtual_server fwmark %d", r.fwmark)
		r.addr = markFamilyAddr(r)
	}
	if r.group != "" {
		// Messages about the block's settings are the same for every member, and said
		// once.
		name = "virtual_server group " + r.group
	}
	if len(r.rs) == 0 {
		p.warnf(r.pos, "%s has no real servers: ignored, as keepalived does", name)
		return VirtualServer{}, false
	}
	if r.ipFamily != 0 && (r.ipFamily == 6) != r.addr.Is6() {
		p.errorf(r.ipFamilyPos, "ip_family: conflicts with the address of %s: remove ip_family or use the matching one", name)
		return VirtualServer{}, false
	}
	if r.pgran != "" && r.pgranV6 != r.addr.Is6() {
		p.warnf(r.pos, "%s: persistence_granularity %s is for IPv%d services: not applied to %s", name, r.pgran, map[bool]int{true: 6, false: 4}[r.pgranV6], describe(r.addr, r.port))
		r.pgran = ""
	}
	vs := VirtualServer{
		Pos:                    r.pos,
		ServiceKey:             ServiceKey{Protocol: r.proto, Addr: r.addr, Port: r.port, FWMark: r.fwmark},
		Group:                  r.group,
		GroupEntry:             r.entryPos,
		Scheduler:              r.sched,
		OnePacket:              r.ops,
		Hashed:                 r.hashed,
		PersistenceTimeout:     r.ptimeout.v,
		PersistenceGranularity: r.pgran,
		PersistenceEngine:      r.pengine,
		DelayLoop:              or(r.delayLoop, DefaultDelayLoop),
		Quorum:                 DefaultQuorum,
		Hysteresis:             r.hysteresis.v,
		QuorumUp:               r.quorumUp,
		QuorumDown:             r.quorumDown,
		Alpha:                  r.alpha,
		Omega:                  r.omega,
		HASuspend:              r.haSuspend,
		VirtualHost:            r.vhost.v,
	}
	if r.quorum.set {
		vs.Quorum = r.quorum.v
	}
	if vs.Protocol == "" {
		p.warnf(r.pos, "%s: no protocol set: UDP assumed, as keepalived does; add \"protocol TCP\" for a TCP service", name)
		vs.Protocol = ProtoUDP
	}
	if vs.OnePacket && vs.Protocol != ProtoUDP && vs.FWMark == 0 {
		p.warnf(r.pos, "%s: ops (one-packet scheduling) needs UDP: ignored", name)
		vs.OnePacket = false
	}
	if vs.PersistenceGranularity != "" && vs.PersistenceTimeout == 0 {
		vs.PersistenceTimeout = DefaultPersistenceTimeout
	}
	if vs.Port == 0 && vs.PersistenceTimeout == 0 && vs.FWMark == 0 {
		p.warnf(r.pos, "%s: port 0 is only valid for a persistent service: persistence_timeout %d set, as keepalived does", name, DefaultPersistenceTimeout)
		vs.PersistenceTimeout = DefaultPersistenceTimeout
	}
	if vs.Scheduler == "" {
		vs.Scheduler = DefaultScheduler
	}
	vs.SchedFlags = p.schedFlags(r, name)

	if r.method != nil {
		vs.Method = *r.method
	} else {
		vs.Method = Method{Kind: MethodNAT}
		if r.sorryMethod == nil || slices.ContainsFunc(r.rs, func(rs *rawRS) bool { return rs.method == nil }) {
			p.warnf(r.pos, "%s: no forwarding method (lb_kind) set: NAT assumed, as keepalived does", name)
		}
	}
	weight := int32(DefaultWeight)
	if r.weight.set {
		weight = int32(r.weight.v)
	}

	var weightSum uint64
	seen := map[netip.AddrPort]Pos{}
	dynamic := false
	for _, rr := range r.rs {
		rs, ok := p.resolveRS(&vs, r, rr, weight)
		if !ok {
			continue
		}
		if prev, dup := seen[rs.Addr]; dup {
			p.warnf(rs.Pos, "%s: real_server %s is a duplicate of the one at %s: ignored, as keepalived does", name, rs.Addr, prev)
			continue
		}
		seen[rs.Addr] = rs.Pos
		n := 0
		for _, c := range rs.Checkers {
			if c.MiscDynamic {
				n++
			}
		}
		if n > 1 && !dynamic {
			p.warnf(rs.Pos, "real_server %s: more than one MISC_CHECK with misc_dynamic: the last result sets the weight", rs.Addr)
			dynamic = true
		}
		weightSum += uint64(rs.Weight)
		vs.RealServers = append(vs.RealServers, rs)
	}
	if len(vs.RealServers) == 0 {
		p.warnf(r.pos, "%s has no usable real servers: ignored", name)
		return VirtualServer{}, false
	}

	if r.sorry != nil {
		vs.SorryServer = p.resolveSorry(&vs, r, name)
	} else if r.sorryInhibitPos != nil {
		p.warnf(*r.sorryInhibitPos, "sorry_server_inhibit without a sorry_server: ignored")
	}
	if ss := vs.SorryServer; ss != nil {
		for _, rs := range vs.RealServers {
			if rs.Addr == ss.Addr && rs.Inhibit != ss.Inhibit {
				p.warnf(ss.Pos, "%s: sorry_server %s is also a real server with a different inhibit_on_failure: the real server's setting is used", name, ss.Addr)
				ss.Inhibit = rs.Inhibit
			}
		}
	}

	if uint64(vs.Quorum) > weightSum {
		p.warnf(r.pos, "%s: quorum %d exceeds the total weight of its real servers %d: reduced to %d, as keepalived does", name, vs.Quorum, weightSum, weightSum)
		vs.Quorum = uint32(weightSum)
	}
	if vs.Hysteresis > 0 && vs.Hysteresis >= vs.Quorum {
		h := uint32(0)
		if vs.Quorum > 0 {
			h = vs.Quorum - 1
		}
		p.warnf(r.pos, "%s: hysteresis %d is not below quorum %d: set to %d, as keepalived does", name, vs.Hysteresis, vs.Quorum, h)
		vs.Hysteresis = h
	}
	if !p.resolveLaddrs(&vs, r, name) {
		return VirtualServer{}, false
	}
	return vs, true
}

func or(o optDur, def time.Duration) time.Duration {
	if o.set {
		return o.v
	}
	return def
}

// first returns the first set value, or def.
func first(def time.Duration, os ...optDur) time.Duration {
	for _, o := range os {
		if o.set {
			return o.v
		}
	}
	return def
}

// schedFlags turns the flag keywords into ipvsadm -b names, as keepalived applies them.
func (p *parser) schedFlags(r *rawVS, name string) []string {
	var out []string
	add := func(f string) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	for _, f := range r.flags {
		switch f {
		case "sh-port", "sh-fallback", "mh-port", "mh-fallback":
			if f[:2] == r.sched {
				add(f)
			} else {
				p.warnf(r.pos, "%s: %s only applies to the %s scheduler: ignored", name, f, f[:2])
			}
		case "flag-1", "flag-2":
			if r.sched == "sh" || r.sched == "mh" {
				add(r.sched + map[string]string{"flag-1": "-fallback", "flag-2": "-port"}[f])
			} else {
				p.warnf(r.pos, "%s: %s has no meaning for the %s scheduler: ignored", name, f, r.schedOrDefault())
			}
		case "flag-3":
			p.warnf(r.pos, "%s: flag-3 has no meaning for any scheduler: ignored", name)
		}
	}
	return out
}

func (r *rawVS) schedOrDefault() string {
	if r.sched == "" {
		return DefaultScheduler
	}
	return r.sched
}

// port resolves a real or sorry server's port against the virtual server's, as
// keepalived does: a missing port is the service's; DR and TUN must use the service's
// (NAT and FNAT rewrite the port).
func (p *parser) port(vs *VirtualServer, m Method, port uint16, pos Pos, what string, a netip.Addr) uint16 {
	if vs.FWMark != 0 {
		return port // 0: the packet's port (IPVS's fwmark services have no port of their own)
	}
	if port == 0 {
		return vs.Port
	}
	if (m.Kind == MethodDR || m.Kind == MethodTUN) && port != vs.Port {
		p.warnf(pos, "%s %s: port %d differs from virtual_server port %d, which %s needs: %d used, as keepalived does",
			what, a, port, vs.Port, m.Kind, vs.Port)
		return vs.Port
	}
	return port
}

func (p *parser) resolveRS(vs *VirtualServer, r *rawVS, rr *rawRS, defWeight int32) (RealServer, bool) {
	rs := RealServer{
		Pos:        rr.pos,
		Weight:     defWeight,
		Method:     vs.Method,
		Inhibit:    r.inhibit,
		UThreshold: rr.uth,
		LThreshold: rr.lth,
		NotifyUp:   rr.notifyUp,
		NotifyDown: rr.notifyDown,
	}
	if rr.weight.set {
		rs.Weight = int32(rr.weight.v)
	}
	if rr.method != nil {
		rs.Method = *rr.method
	}
	if rr.inhibit.set {
		rs.Inhibit = rr.inhibit.v
	}
	if rs.Method.Kind != MethodTUN && rr.addr.Is6() != vs.Addr.Is6() {
		if vs.Group != "" {
			p.warnf(rr.pos, "real_server %s: address family differs from the IPv%d members of virtual_server group %s and forwarding is not TUN: not used for them, as keepalived does", rr.addr, map[bool]int{true: 6, false: 4}[vs.Addr.Is6()], vs.Group)
		} else {
			p.warnf(rr.pos, "real_server %s: address family differs from virtual_server %s and forwarding is not TUN: ignored, as keepalived does", rr.addr, vs.Addr)
		}
		return RealServer{}, false
	}
	rs.Addr = netip.AddrPortFrom(rr.addr, p.port(vs, rs.Method, rr.port, rr.pos, "real_server", rr.addr))
	if rs.UThreshold > 0 && rs.LThreshold > rs.UThreshold {
		p.errorf(rr.pos, "real_server %s: lthreshold %d above uthreshold %d: expected lthreshold <= uthreshold", rs.Addr, rs.LThreshold, rs.UThreshold)
		return RealServer{}, false
	}
	alpha := r.alpha
	if rr.alpha.set {
		alpha = rr.alpha.v
	}
	vhost := r.vhost
	if rr.vhost.set {
		vhost = rr.vhost
	}
	for _, rc := range rr.checks {
		for _, one := range smtpHosts(rc) {
			if c, ok := p.resolveCheck(vs, r, rr, one, rs.Addr, alpha, vhost.v); ok {
				rs.Checkers = append(rs.Checkers, c)
			}
		}
	}
	return rs, true
}

// smtpHosts turns an SMTP_CHECK with host blocks into one checker per host, each with
// the block's settings and the host's connection options (keepalived checks every host
// and passes when all pass, as several checkers do).
func smtpHosts(rc *rawCheck) []*rawCheck {
	if rc.typ != CheckSMTP || len(rc.hosts) == 0 {
		return []*rawCheck{rc}
	}
	out := make([]*rawCheck, 0, len(rc.hosts))
	for _, h := range rc.hosts {
		c := *rc
		c.hosts = nil
		c.pos = h.pos
		if h.connectIP.IsValid() {
			c.connectIP = h.connectIP
		}
		if h.connectPort != 0 {
			c.connectPort = h.connectPort
		}
		if h.bindTo.IsValid() {
			c.bindTo = h.bindTo
		}
		if h.bindPort != 0 {
			c.bindPort = h.bindPort
		}
		if h.bindIf != "" {
			c.bindIf = h.bindIf
		}
		if h.fwmark != 0 {
			c.fwmark = h.fwmark
		}
		for _, o := range []struct{ from, to *optDur }{{&h.connTO, &c.connTO}, {&h.dbr, &c.dbr}, {&h.warmup, &c.warmup}, {&h.delayLoop, &c.delayLoop}} {
			if o.from.set {
				*o.to = *o.from
			}
		}
		if h.retry.set {
			c.retry = h.retry
		}
		if h.alpha.set {
			c.alpha = h.alpha
		}
		out = append(out, &c)
	}
	return out
}

func (p *parser) resolveCheck(vs *VirtualServer, r *rawVS, rr *rawRS, rc *rawCheck, addr netip.AddrPort, alpha bool, rsHost string) (Checker, bool) {
	c := Checker{Pos: rc.pos, Type: rc.typ, Alpha: alpha}
	if rc.alpha.set {
		c.Alpha = rc.alpha.v
	}
	defRetry, defDBR := uint32(DefaultRetry), DefaultDelayBeforeRetry
	switch rc.typ {
	case CheckMisc:
		defRetry = DefaultMiscRetry
	case CheckHTTP, CheckSSL:
		defDBR = DefaultHTTPDelayBeforeTry
	case CheckDNS:
		defRetry, defDBR = DefaultDNSRetry, 0 // 0: delay_loop, below
	}
	c.Retry = defRetry
	for _, o := range []optU32{rc.retry, rr.retry, r.retry} {
		if o.set {
			c.Retry = o.v
			break
		}
	}
	c.DelayLoop = first(vs.DelayLoop, rc.delayLoop, rr.delayLoop)
	c.Warmup = first(c.DelayLoop, rc.warmup, rr.warmup, r.warmup)
	if defDBR == 0 {
		defDBR = c.DelayLoop // DNS_CHECK: delay_before_retry defaults to delay_loop
	}
	c.DelayBeforeRetry = first(defDBR, rc.dbr, rr.dbr, r.dbr)
	where := rc.typ + " of real_server " + addr.String()

	if rc.typ == CheckFile {
		return p.resolveFileCheck(c, rc, where)
	}

	if rc.typ == CheckMisc {
		if len(rc.miscPath) == 0 {
			p.warnf(rc.pos, "%s has no misc_path: ignored, as keepalived does", where)
			return Checker{}, false
		}
		c.MiscPath = rc.miscPath
		c.MiscTimeout = first(vs.DelayLoop, rc.miscTimeout)
		c.MiscDynamic = rc.dynamic
		c.User, c.Group = rc.user, rc.group
		return c, true
	}

	c.ConnectTimeout = first(DefaultConnectTimeout, rc.connTO, rr.connTO, r.connTO)
	ip, port := addr.Addr(), addr.Port()
	if rc.connectIP.IsValid() {
		ip = rc.connectIP
	}
	if rc.connectPort != 0 {
		port = rc.connectPort
	}
	if port == 0 && rc.typ == CheckSMTP {
		port = DefaultSMTPPort
	}
	if port == 0 && rc.typ != CheckPing {
		p.errorf(rc.pos, "%s: no port to connect to (the service port is 0): add connect_port", where)
		return Checker{}, false
	}
	c.Connect = netip.AddrPortFrom(ip, port)
	c.BindTo, c.BindPort, c.BindIf, c.FWMark = rc.bindTo, rc.bindPort, rc.bindIf, rc.fwmark
	if c.BindTo.IsValid() && c.BindTo.Is6() != ip.Is6() {
		p.errorf(rc.pos, "%s: bindto %s and connect address %s are of different address families: expected both IPv4 or both IPv6", where, c.BindTo, ip)
		return Checker{}, false
	}
	if c.BindPort != 0 && !c.BindTo.IsValid() {
		if ip.Is4() {
			c.BindTo = netip.IPv4Unspecified()
		} else {
			c.BindTo = netip.IPv6Unspecified()
		}
	}
	switch rc.typ {
	case CheckTCP:
		return c, true
	case CheckPing:
		c.Connect = netip.AddrPortFrom(ip, 0)
		if c.BindPort != 0 {
			p.warnf(rc.pos, "%s: bind_port ignored: an ICMP echo has no port", where)
			c.BindPort = 0
		}
		return c, true
	case CheckSMTP:
		c.HeloName = DefaultHeloName
		if rc.helo.set {
			c.HeloName = rc.helo.v
		}
		if strings.ContainsAny(c.HeloName, "\r\n") {
			p.errorf(rc.pos, "%s: helo_name must be one line", where)
			return Checker{}, false
		}
		return c, true
	case CheckDNS:
		c.DNSType, c.DNSName = DefaultDNSType, DefaultDNSName
		if rc.dnsType.set {
			c.DNSType = rc.dnsType.v
		}
		if rc.dnsName.set {
			c.DNSName = rc.dnsName.v
		}
		return c, true
	case CheckUDP:
		c.Payload = rc.payload
		c.RequireReply = rc.requireReply
		c.ReplyData, c.ReplyMask = rc.replyData, rc.replyMask
		c.MinReplyLen, c.MaxReplyLen = 0, DefaultMaxReplyLen
		if rc.minReply.set {
			c.MinReplyLen = int(rc.minReply.v)
		}
		if rc.maxReply.set {
			c.MaxReplyLen = int(rc.maxReply.v)
		}
		if c.MinReplyLen > c.MaxReplyLen {
			p.warnf(rc.pos, "%s: min_reply_length %d > max_reply_length %d: the check always fails when a reply is required, as in keepalived", where, c.MinReplyLen, c.MaxReplyLen)
		}
		return c, true
	}

	// HTTP_GET and SSL_GET.
	c.HTTPProtocol = rc.httpProto
	if c.HTTPProtocol == "" {
		c.HTTPProtocol = "1.0"
	}
	chkHost := rsHost
	if rc.vhost.set {
		chkHost = rc.vhost.v
	}
	for _, ru := range rc.urls {
		if !ru.path.set {
			p.warnf(ru.pos, "url without path in %s: ignored, as keepalived does", where)
			continue
		}
		u := URL{Path: ru.path.v, Digest: ru.digest, StatusCodes: ru.codes, VirtualHost: chkHost}
		if ru.vhost.set {
			u.VirtualHost = ru.vhost.v
		}
		if len(u.StatusCodes) == 0 {
			u.StatusCodes = []StatusRange{{Min: DefaultStatusMin, Max: DefaultStatusMax}}
		}
		c.URLs = append(c.URLs, u)
	}
	if len(c.URLs) == 0 {
		p.warnf(rc.pos, "%s has no url with a path: ignored, as keepalived does", where)
		return Checker{}, false
	}
	if rc.sni {
		c.EnableSNI = true
		c.SNIName = rc.sniName
		if c.SNIName == "" {
			c.SNIName = chkHost
		}
		if c.SNIName == "" {
			p.warnf(rc.pos, "%s: enable_sni without sni_name or virtualhost: no server name is sent", where)
			c.EnableSNI = false
		}
		if rc.typ == CheckHTTP {
			p.warnf(rc.pos, "%s: enable_sni only applies to SSL_GET: ignored", where)
			c.EnableSNI, c.SNIName = false, ""
		}
	}
	return c, true
}

// resolveFileCheck links a FILE_CHECK to its track_file block. A FILE_CHECK has none of
// the other checkers' timing: keepalived watches the file with inotify and acts at once
// (no retries, no alpha); xlvs reads it every FileCheckInterval.
func (p *parser) resolveFileCheck(c Checker, rc *rawCheck, where string) (Checker, bool) {
	if rc.trackFile == "" {
		p.warnf(rc.pos, "%s has no track_file: ignored, as keepalived does", where)
		return Checker{}, false
	}
	var t *TrackFile
	for _, x := range p.tracks {
		if x.Name == rc.trackFile {
			t = x
		}
	}
	if t == nil {
		var names []string
		for _, x := range p.tracks {
			names = append(names, x.Name)
		}
		if len(names) == 0 {
			p.errorf(rc.trackFilePos, "track_file: no track_file block %q is defined: add \"track_file %s { file PATH }\"", rc.trackFile, rc.trackFile)
		} else {
			p.errorf(rc.trackFilePos, "track_file: no track_file block %q is defined: expected one of %s", rc.trackFile, strings.Join(names, ", "))
		}
		return Checker{}, false
	}
	tc := *t
	c.TrackFile = &tc
	c.FileWeight, c.FileReverse = t.Weight, t.Reverse
	if rc.fileWeight.set && int32(rc.fileWeight.v) != 0 {
		c.FileWeight, c.FileReverse = int32(rc.fileWeight.v), rc.fileReverse
	} else if rc.fileWeight.set {
		c.FileWeight, c.FileReverse = 0, rc.fileReverse
	}
	c.Retry, c.Alpha, c.Warmup = 0, false, 0
	c.DelayLoop, c.DelayBeforeRetry = FileCheckInterval, FileCheckInterval
	return c, true
}

func (p *parser) resolveSorry(vs *VirtualServer, r *rawVS, name string) *SorryServer {
	rs := r.sorry
	m := vs.Method
	if r.sorryMethod != nil {
		m = *r.sorryMethod
	}
	if m.Kind != MethodTUN && rs.addr.Is6() != vs.Addr.Is6() {
		p.warnf(rs.pos, "%s: sorry_server %s is of another address family and forwarding is not TUN: ignored, as keepalived does", name, rs.addr)
		return nil
	}
	return &SorryServer{
		Pos:     rs.pos,
		Addr:    netip.AddrPortFrom(rs.addr, p.port(vs, m, rs.port, rs.pos, "sorry_server", rs.addr)),
		Weight:  1,
		Inhibit: r.sorryInhibitPos != nil,
		Method:  m,
	}
}

// markFamilyAddr is the unspecified address of a fwmark virtual server's family: the
// group entry's (fwmark N inet6), else ip_family's, else its first real server's, else
// IPv4, as keepalived picks a fwmark service's family.
func markFamilyAddr(r *rawVS) netip.Addr {
	fam := r.fwmarkFamily
	if fam == 0 {
		fam = r.ipFamily
	}
	if fam == 0 && len(r.rs) > 0 && r.rs[0].addr.Is6() {
		fam = 6
	}
	if fam == 6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}
