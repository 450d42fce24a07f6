package keepalived

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Load reads the configuration file name and everything it includes.
func Load(name string, opts Options) (*Config, error) {
	s := &loader{opts: opts}
	s.readFile(name, Pos{}, "include")
	return s.finish()
}

// Parse reads a configuration from src; name is used in messages and includes are
// relative to its directory.
func Parse(name string, src []byte, opts Options) (*Config, error) {
	s := &loader{opts: opts}
	s.files = append(s.files, name)
	s.stack = append(s.stack, filepath.Clean(name))
	s.lexSource(name, src)
	s.stack = nil
	return s.finish()
}

func (s *loader) finish() (*Config, error) {
	p := &parser{loader: s}
	cfg := p.top(s.buildTree())
	if len(s.errs) > 0 {
		return nil, s.errs
	}
	cfg.Warnings = s.warns
	cfg.Files = s.files
	return cfg, nil
}

// Optional values: set records whether the configuration gave one.
type (
	optDur struct {
		v   time.Duration
		set bool
	}
	optU32 struct {
		v   uint32
		set bool
	}
	optBool struct{ v, set bool }
	optStr  struct {
		v   string
		set bool
	}
)

type rawVS struct {
	pos                   Pos
	addr                  netip.Addr
	port                  uint16
	proto                 string
	sched                 string
	flags                 []string
	ops, hashed           bool
	method                *Method
	ptimeout              optU32
	pgran, pengine        string
	delayLoop             optDur
	quorum, hysteresis    optU32
	quorumUp, quorumDown  string
	alpha, omega          bool
	inhibit, haSuspend    bool
	vhost                 optStr
	connTO, dbr, warmup   optDur
	retry                 optU32
	weight                optU32
	sorry                 *rawSorry
	sorryInhibitPos       *Pos
	sorryMethod           *Method
	rs                    []*rawRS
	ipFamily              int // 4 or 6 from ip_family, 0 when absent
	ipFamilyPos           Pos
	persistenceTimeoutPos Pos
	laddrGroup            string // laddr_group_name, "" when absent
	laddrGroupPos         Pos
	// fwmark is the mark of "virtual_server fwmark N" (or of a group's "fwmark N" entry,
	// with fwmarkFamily when the entry names one); addr is then unset until resolve.
	fwmark       uint32
	fwmarkFamily int
	// group is the virtual_server_group of a "virtual_server group NAME" block; each of
	// its members is a copy with addr, port and entryPos set.
	group    string
	entryPos Pos
	pgranV6  bool // persistence_granularity was read as an IPv6 prefix length
	// DPVS's deny and allow lists (daddr_group_name, waddr_group_name).
	daddr, waddr       string
	daddrPos, waddrPos Pos
}

type rawSorry struct {
	pos  Pos
	addr netip.Addr
	port uint16
}

type rawRS struct {
	pos                            Pos
	addr                           netip.Addr
	port                           uint16
	weight                         optU32
	method                         *Method
	inhibit, alpha                 optBool
	uth, lth                       uint32
	notifyUp, notifyDown           string
	vhost                          optStr
	connTO, dbr, warmup, delayLoop optDur
	retry                          optU32
	checks                         []*rawCheck
}

type rawCheck struct {
	pos                            Pos
	typ                            string
	connectIP                      netip.Addr
	connectPort                    uint16
	bindTo                         netip.Addr
	bindPort                       uint16
	bindIf                         string
	fwmark                         uint32
	connTO, dbr, warmup, delayLoop optDur
	retry                          optU32
	alpha                          optBool
	vhost                          optStr
	helo                           optStr
	dnsType, dnsName               optStr
	payload                        []byte
	requireReply                   bool
	replyData, replyMask           []byte
	minReply, maxReply             optU32
	trackFile                      string
	trackFilePos                   Pos
	fileWeight                     optU32 // int32 stored as uint32
	fileReverse                    bool
	hosts                          []*rawCheck // SMTP_CHECK host blocks
	httpProto                      string
	sni                            bool
	sniName                        string
	urls                           []*rawURL
	miscPath                       []string
	miscTimeout                    optDur
	dynamic                        bool
	user, group                    string
}

type rawURL struct {
	pos    Pos
	path   optStr
	digest string
	codes  []StatusRange
	vhost  optStr
}

type parser struct {
	*loader
	ssl    *SSL
	groups []*LocalAddressGroup // local_address_group blocks, in file order
	syncd  syncState            // global_defs' lvs_sync_daemon and the VRRP instances' ids
	vsgs   []*VirtualServerGroup
	// members counts the services the virtual_server groups gave so far.
	members int
	tracks  []*TrackFile
	// DPVS's deny_address_group and allow_address_group blocks: name -> entries.
	denyGroups, allowGroups map[string]addrList
}

// Keywords of blocks xlvs does not act on at the top level; anything else unknown at the
// top level gets the same treatment (keepalived.conf has many more).
var topIgnored = map[string]string{
	"global_defs":     "global definitions",
	"vrrp_instance":   "VRRP is not done by xlvs; run keepalived for VRRP",
	"vrrp_sync_group": "VRRP is not done by xlvs; run keepalived for VRRP",
	"vrrp_script":     "VRRP is not done by xlvs; run keepalived for VRRP",
	"vrrp_track_file": "VRRP is not done by xlvs; run keepalived for VRRP (FILE_CHECK reads track_file blocks)",
	"tunnel_group":    "DPVS's tunnel devices are not made by xlvs; create them with ip link",
}

func (p *parser) top(nodes []*node) *Config {
	cfg := &Config{}
	var raws []*rawVS
	for _, n := range nodes {
		switch n.keyword() {
		case "virtual_server":
			if vs := p.virtualServer(n); vs != nil {
				raws = append(raws, vs)
			}
		case "virtual_server_group":
			p.vsgBlock(n)
		case "track_file":
			p.trackFileBlock(n)
		case "deny_address_group", "allow_address_group":
			p.dpvsAddrGroup(n)
		case "SSL":
			p.sslBlock(n)
		case "local_address_group":
			p.localAddressGroup(n)
		case "global_defs":
			p.globalDefs(n)
		case "vrrp_instance":
			p.vrrpInstance(n)
		default:
			what := topIgnored[n.keyword()]
			if what == "" {
				what = "not used by xlvs"
			}
			if n.block {
				p.warnf(n.pos, "%s block ignored: %s", n.keyword(), what)
			} else {
				p.warnf(n.pos, "%s ignored: %s", n.keyword(), what)
			}
		}
	}
	cfg.SSL = p.ssl
	p.resolveSync(cfg)
	for _, g := range p.groups {
		cfg.LocalAddressGroups = append(cfg.LocalAddressGroups, *g)
	}
	for _, g := range p.vsgs {
		cfg.Groups = append(cfg.Groups, *g)
	}
	for _, t := range p.tracks {
		cfg.TrackFiles = append(cfg.TrackFiles, *t)
	}
	seen := map[ServiceKey]VirtualServer{}
	for _, r := range raws {
		one := []*rawVS{r}
		if r.group != "" {
			var ok bool
			if one, ok = p.expandGroup(r); !ok {
				continue
			}
		}
		p.dpvsLists(r)
		for _, m := range one {
			vs, ok := p.resolve(m)
			if !ok {
				continue
			}
			if prev, dup := seen[vs.ServiceKey]; dup {
				p.errorf(where(vs), "%s is defined twice (first at %s): expected one service per protocol, address and port", kaName(vs), where(prev))
				continue
			}
			seen[vs.ServiceKey] = vs
			cfg.VirtualServers = append(cfg.VirtualServers, vs)
		}
	}
	return cfg
}

// kaName names a virtual server in messages: "virtual_server TCP 10.0.0.1:80", or for a
// group member "virtual_server group G member TCP 10.0.0.1:80".
func kaName(vs VirtualServer) string {
	if vs.Group != "" {
		return fmt.Sprintf("virtual_server group %s member %s", vs.Group, vs.ServiceKey)
	}
	return "virtual_server " + vs.ServiceKey.String()
}

// where is the line that defines vs: its virtual_server_group entry for a group member.
func where(vs VirtualServer) Pos {
	if vs.Group != "" {
		return vs.GroupEntry
	}
	return vs.Pos
}

// ---- helpers that check a statement's shape and read values ----

// value checks that n has between min and max arguments. As keepalived, it reads the
// values it needs and ignores the rest: extra words and a block after a keyword that
// takes none are a Warning (n keeps only the first max arguments); a missing value is
// an error (keepalived stops on it too).
func (p *parser) value(n *node, min, max int, usage string) bool {
	a := len(n.args())
	if a < min {
		if a == 0 {
			p.errorf(n.pos, "%s: missing value: expected %q", n.keyword(), usage)
		} else {
			p.errorf(n.pos, "%s: too few values: expected %q", n.keyword(), usage)
		}
		return false
	}
	if a > max {
		p.lenient(n.pos, "%s: extra %q ignored, as keepalived does: expected %q", n.keyword(), strings.Join(n.args()[max:], " "), usage)
		n.words = n.words[:1+max]
	}
	if n.block {
		p.lenient(n.pos, "%s: block ignored, as keepalived does: expected %q", n.keyword(), usage)
	}
	return true
}

// lenient reports what keepalived logs and carries on from (an unknown keyword, extra
// words, a block where none belongs): a Warning, or under Options.Strict an error, the
// message without its "ignored".
func (p *parser) lenient(pos Pos, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !p.opts.Strict {
		p.warnf(pos, "%s", msg)
		return
	}
	for _, s := range []string{" ignored, as keepalived does", " ignored with its block", " ignored"} {
		if i := strings.Index(msg, s); i >= 0 {
			msg = msg[:i] + msg[i+len(s):]
			break
		}
	}
	p.errorf(pos, "%s", msg)
}

// extraArgs warns about words after a block keyword that takes none ("TCP_CHECK x {"),
// as keepalived reports and ignores them.
func (p *parser) extraArgs(n *node, usage string) {
	if len(n.args()) > 0 {
		p.lenient(n.pos, "%s: extra %q ignored, as keepalived does: expected %q", n.keyword(), strings.Join(n.args(), " "), usage)
	}
}

// opensBlock checks that n opens a block.
func (p *parser) opensBlock(n *node) bool {
	if !n.block {
		p.errorf(n.pos, "%s: expected '{' to open its block", n.text())
		return false
	}
	return true
}

// timer reads a <TIMER>: seconds, fractions allowed.
func (p *parser) timer(n *node, into *optDur) {
	if !p.value(n, 1, 1, n.keyword()+" SECONDS") {
		return
	}
	s := n.args()[0]
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e7 {
		p.errorf(n.pos, "%s: %q is not a time: expected seconds such as 6 or 2.5 (at most 10000000)", n.keyword(), s)
		return
	}
	*into = optDur{v: time.Duration(f * float64(time.Second)), set: true}
}

// uintArg reads an unsigned integer in [min, max].
func (p *parser) uintArg(n *node, s string, min, max uint64, what string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < min || v > max {
		p.errorf(n.pos, "%s: %q is not a valid %s: expected an integer from %d to %d", n.keyword(), s, what, min, max)
		return 0, false
	}
	return v, true
}

func (p *parser) uint32Val(n *node, min, max uint64, what string, into *optU32) {
	if !p.value(n, 1, 1, n.keyword()+" N") {
		return
	}
	if v, ok := p.uintArg(n, n.args()[0], min, max, what); ok {
		*into = optU32{v: uint32(v), set: true}
	}
}

// boolArg reads an optional <BOOL>; the keyword alone means true.
func (p *parser) boolArg(n *node) (bool, bool) {
	if !p.value(n, 0, 1, n.keyword()+" [on|off]") {
		return false, false
	}
	if len(n.args()) == 0 {
		return true, true
	}
	switch strings.ToLower(n.args()[0]) {
	case "on", "true", "yes":
		return true, true
	case "off", "false", "no":
		return false, true
	}
	p.errorf(n.pos, "%s: %q is not a boolean: expected on, off, true, false, yes or no", n.keyword(), n.args()[0])
	return false, false
}

func (p *parser) optBool(n *node, into *optBool) {
	if v, ok := p.boolArg(n); ok {
		*into = optBool{v: v, set: true}
	}
}

// flag reads a keyword that takes no value; a <BOOL> after it (as keepalived 2.x
// accepts for some) is honoured, any other word is ignored with a Warning.
func (p *parser) flag(n *node, into *bool) {
	if len(n.args()) == 1 && !n.block {
		switch strings.ToLower(n.args()[0]) {
		case "on", "true", "yes":
			*into = true
			return
		case "off", "false", "no":
			*into = false
			return
		}
	}
	if p.value(n, 0, 0, n.keyword()) {
		*into = true
	}
}

func (p *parser) str(n *node, into *optStr) {
	if p.value(n, 1, 1, n.keyword()+" STRING") {
		*into = optStr{v: n.args()[0], set: true}
	}
}

// script reads a notify/quorum script: the program and arguments (an optional user and
// group may follow a quoted script; they are kept in the text).
func (p *parser) script(n *node) string {
	if !p.value(n, 1, 1<<10, n.keyword()+" SCRIPT [USER [GROUP]]") {
		return ""
	}
	return strings.Join(n.args(), " ")
}

// parseAddr reads an IP address, with or without brackets.
func parseAddr(s string) (netip.Addr, bool) {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (p *parser) addrArg(n *node, s, usage string) (netip.Addr, bool) {
	a, ok := parseAddr(s)
	if !ok {
		p.errorf(n.pos, "%s: %q is not an IP address: expected %q", n.keyword(), s, usage)
		return netip.Addr{}, false
	}
	if a.IsUnspecified() || a.IsMulticast() {
		p.errorf(n.pos, "%s: %s is not a unicast address: expected %q", n.keyword(), s, usage)
		return netip.Addr{}, false
	}
	return a, true
}

func (p *parser) portArg(n *node, s string, allowZero bool) (uint16, bool) {
	min := uint64(1)
	if allowZero {
		min = 0
	}
	v, ok := p.uintArg(n, s, min, 65535, "port")
	return uint16(v), ok
}

// unknown warns about a keyword that has no meaning in a block, suggesting the closest
// known one. keepalived logs "Unknown keyword" with its position and carries on
// (lib/parser.c, process_stream); so does xlvs, skipping the keyword and any block it
// opens.
func (p *parser) unknown(n *node, where string, known []string) {
	what := "ignored"
	if n.block {
		what = "ignored with its block"
	}
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(n.keyword()), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		p.lenient(n.pos, "%s: unknown keyword %q %s: did you mean %q?", where, n.keyword(), what, best)
		return
	}
	sorted := slices.Clone(known)
	slices.Sort(sorted)
	p.lenient(n.pos, "%s: unknown keyword %q %s: expected one of %s", where, n.keyword(), what, strings.Join(sorted, ", "))
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ignored warns about a keyword xlvs accepts but does not act on.
func (p *parser) ignored(n *node, why string) {
	p.warnf(n.pos, "%s ignored: %s", n.keyword(), why)
}

// ---- virtual_server ----

var schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

// Keywords of a virtual_server block that are accepted and not acted on.
var vsIgnored = map[string]string{
	"smtp_alert": "xlvs sends no e-mail",
	"snmp_name":  "xlvs has no SNMP agent",
	"nat_mask":   "obsolete keepalived keyword",
	"syn_proxy":  "xlvs has no SYN proxy (DPVS's keepalived); the real servers answer SYNs themselves",
}

var vsKeywords = []string{
	"delay_loop", "lb_algo", "lvs_sched", "lb_kind", "lvs_method", "persistence_timeout",
	"persistence_granularity", "persistence_engine", "protocol", "sorry_server",
	"sorry_server_inhibit", "sorry_server_lvs_method", "quorum", "hysteresis", "quorum_up",
	"quorum_down", "alpha", "omega", "inhibit_on_failure", "virtualhost", "connect_timeout",
	"retry", "delay_before_retry", "warmup", "ha_suspend", "ops", "hashed", "flag-1",
	"flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback", "weight",
	"ip_family", "real_server", "smtp_alert", "snmp_name", "nat_mask", "laddr_group_name",
	"syn_proxy", "establish_timeout", "bps", "limit_proportion", "hash_target", "vip_bind_dev",
	"expire_quiescent_conn", "quic", "proxy_protocol", "daddr_group_name", "waddr_group_name",
	"src-range", "dst-range", "oif", "iif",
}

const vsUsage = "virtual_server IP [PORT] {"

func (p *parser) virtualServer(n *node) *rawVS {
	if !p.opensBlock(n) {
		return nil
	}
	args := n.args()
	if len(args) >= 1 && args[0] == "fwmark" {
		// The marks are xlvs's own rules (xlvsadm --add-mark), as iptables' were.
		const usage = "virtual_server fwmark N {"
		if len(args) < 2 {
			p.errorf(n.pos, "virtual_server fwmark: missing mark: expected %q", usage)
			return nil
		}
		v, err := strconv.ParseUint(args[1], 0, 32)
		if err != nil || v == 0 {
			p.errorf(n.pos, "virtual_server fwmark %q: not a firewall mark: expected an integer from 1 to 4294967295", args[1])
			return nil
		}
		if len(args) > 2 {
			p.lenient(n.pos, "virtual_server fwmark: extra %q ignored, as keepalived does: expected %q", strings.Join(args[2:], " "), usage)
		}
		vs := &rawVS{pos: n.pos, fwmark: uint32(v)}
		where := "virtual_server fwmark " + args[1]
		for _, c := range n.children {
			p.vsKeyword(vs, c, where)
		}
		return vs
	}
	if len(args) >= 1 && args[0] == "match" {
		p.errorf(n.pos, "%s: DPVS's SNAT \"match\" services are not supported by xlvs: remove the block (xlvs balances services by address and port)", n.text())
		return nil
	}
	if len(args) >= 1 && args[0] == "group" {
		if len(args) != 2 {
			p.errorf(n.pos, "virtual_server group: expected \"virtual_server group NAME {\", got %q", n.text())
			return nil
		}
		vs := &rawVS{pos: n.pos, group: args[1]}
		where := "virtual_server group " + args[1]
		for _, c := range n.children {
			p.vsKeyword(vs, c, where)
		}
		return vs
	}
	if len(args) < 1 {
		p.errorf(n.pos, "virtual_server: expected %q, got %q", vsUsage, n.text())
		return nil
	}
	if len(args) > 2 {
		p.lenient(n.pos, "virtual_server: extra %q ignored, as keepalived does: expected %q", strings.Join(args[2:], " "), vsUsage)
		args = args[:2]
	}
	vs := &rawVS{pos: n.pos}
	var ok bool
	if vs.addr, ok = p.addrArg(n, args[0], vsUsage); !ok {
		return nil
	}
	if len(args) == 2 {
		if vs.port, ok = p.portArg(n, args[1], true); !ok {
			return nil
		}
	}
	where := "virtual_server " + strings.Join(args, " ")
	for _, c := range n.children {
		p.vsKeyword(vs, c, where)
	}
	return vs
}

// vsKeyword reads one statement of a virtual_server block, handing it to the group of
// statements it belongs to (vsGroups); where names the block in errors.
func (p *parser) vsKeyword(vs *rawVS, n *node, where string) {
	kw := n.keyword()
	if why, ok := vsIgnored[kw]; ok {
		p.ignored(n, why)
		return
	}
	switch kw {
	case "real_server":
		if rs := p.realServer(n); rs != nil {
			vs.rs = append(vs.rs, rs)
		}
	case "establish_timeout", "bps", "limit_proportion", "hash_target", "vip_bind_dev",
		"expire_quiescent_conn", "quic", "proxy_protocol", "daddr_group_name", "waddr_group_name",
		"src-range", "dst-range", "oif", "iif":
		p.dpvsKeyword(vs, n)
	default:
		for _, group := range vsGroups {
			if group(p, vs, n) {
				return
			}
		}
		p.unknown(n, where, vsKeywords)
	}
}

// vsGroups read the statements of a virtual_server block other than real_server and
// DPVS's: each reports whether the statement was its own.
var vsGroups = []func(*parser, *rawVS, *node) bool{
	(*parser).vsService, (*parser).vsPersistence, (*parser).vsSorry, (*parser).vsQuorum, (*parser).vsCheckDefaults,
}

// vsService reads the statements that shape the service: its scheduler and flags,
// forwarding method, protocol, family, one-packet scheduling, the real servers' default
// weight and the FULLNAT local address group.
func (p *parser) vsService(vs *rawVS, n *node) bool {
	switch kw := n.keyword(); kw {
	case "lb_algo", "lvs_sched":
		if p.value(n, 1, 1, kw+" SCHEDULER") {
			s := n.args()[0]
			if s == "conhash" {
				p.errorf(n.pos, "%s conhash: DPVS's consistent-hash scheduler is not supported by xlvs: use mh (Maglev hashing, with mh-port for the source port) or sh", kw)
				return true
			}
			if !slices.Contains(schedulers, s) {
				p.errorf(n.pos, "%s: unknown scheduler %q: expected one of %s", kw, s, strings.Join(schedulers, ", "))
				return true
			}
			vs.sched = s
		}
	case "lb_kind", "lvs_method":
		if m, ok := p.method(n); ok {
			vs.method = &m
		}
	case "protocol":
		if p.value(n, 1, 1, "protocol TCP|UDP|SCTP") {
			switch strings.ToUpper(n.args()[0]) {
			case ProtoTCP, ProtoUDP, ProtoSCTP:
				vs.proto = strings.ToUpper(n.args()[0])
			case "ICMP", "ICMPV6":
				p.errorf(n.pos, "protocol %s: DPVS's ICMP services (SNAT) are not supported by xlvs: expected TCP, UDP or SCTP", n.args()[0])
			default:
				p.errorf(n.pos, "protocol: unknown protocol %q: expected TCP, UDP or SCTP", n.args()[0])
			}
		}
	case "ip_family":
		if p.value(n, 1, 1, "ip_family inet|inet6") {
			switch n.args()[0] {
			case "inet":
				vs.ipFamily = 4
			case "inet6":
				vs.ipFamily = 6
			default:
				p.errorf(n.pos, "ip_family: unknown family %q: expected inet or inet6", n.args()[0])
				return true
			}
			vs.ipFamilyPos = n.pos
		}
	case "ops":
		p.flag(n, &vs.ops)
	case "hashed":
		p.flag(n, &vs.hashed)
	case "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback":
		if p.value(n, 0, 0, kw) && !slices.Contains(vs.flags, kw) {
			vs.flags = append(vs.flags, kw)
		}
	case "weight":
		p.uint32Val(n, 0, 65535, "weight", &vs.weight)
	case "laddr_group_name":
		if p.value(n, 1, 1, "laddr_group_name NAME") {
			vs.laddrGroup, vs.laddrGroupPos = n.args()[0], n.pos
		}
	default:
		return false
	}
	return true
}

// vsPersistence reads persistence_timeout, persistence_granularity and
// persistence_engine.
func (p *parser) vsPersistence(vs *rawVS, n *node) bool {
	switch n.keyword() {
	case "persistence_timeout":
		if !p.value(n, 0, 1, "persistence_timeout [SECONDS]") {
			return true
		}
		vs.persistenceTimeoutPos = n.pos
		if len(n.args()) == 0 {
			vs.ptimeout = optU32{v: DefaultPersistenceTimeout, set: true}
			return true
		}
		v, ok := p.uintArg(n, n.args()[0], 0, math.MaxUint32, "persistence timeout")
		if !ok {
			return true
		}
		if v == 0 {
			// keepalived refuses 0 (its range starts at 1), reports it and leaves the
			// service's timeout at 0: not persistent.
			p.warnf(n.pos, "persistence_timeout 0: the service is not persistent, as keepalived does; remove the line or give seconds")
		}
		vs.ptimeout = optU32{v: uint32(v), set: true}
	case "persistence_granularity":
		if p.value(n, 1, 1, "persistence_granularity NETMASK|PREFIXLEN") {
			v6 := vs.addr.Is6()
			if vs.group != "" || vs.fwmark != 0 {
				// As keepalived for a service whose family is not known yet: a dotted
				// value is an IPv4 netmask, anything else an IPv6 prefix length.
				v6 = !strings.Contains(n.args()[0], ".")
			}
			if g, ok := p.granularity(n, v6); ok {
				vs.pgran, vs.pgranV6 = g, v6
			}
		}
	case "persistence_engine":
		if p.value(n, 1, 1, "persistence_engine NAME") {
			vs.pengine = n.args()[0]
		}
	default:
		return false
	}
	return true
}

// vsSorry reads the sorry server statements.
func (p *parser) vsSorry(vs *rawVS, n *node) bool {
	switch kw := n.keyword(); kw {
	case "sorry_server":
		if !p.value(n, 1, 2, "sorry_server IP [PORT]") {
			return true
		}
		ss := &rawSorry{pos: n.pos}
		var ok bool
		if ss.addr, ok = p.addrArg(n, n.args()[0], "sorry_server IP [PORT]"); !ok {
			return true
		}
		if len(n.args()) == 2 {
			if ss.port, ok = p.portArg(n, n.args()[1], true); !ok {
				return true
			}
		}
		vs.sorry = ss
	case "sorry_server_inhibit":
		if p.value(n, 0, 0, kw) {
			pos := n.pos
			vs.sorryInhibitPos = &pos
		}
	case "sorry_server_lvs_method":
		if m, ok := p.method(n); ok {
			vs.sorryMethod = &m
		}
	default:
		return false
	}
	return true
}

// vsQuorum reads how the service's health decides: quorum, hysteresis and their
// scripts, alpha, omega, inhibit_on_failure and ha_suspend.
func (p *parser) vsQuorum(vs *rawVS, n *node) bool {
	switch kw := n.keyword(); kw {
	case "quorum":
		p.uint32Val(n, 0, math.MaxUint32, "quorum", &vs.quorum)
		if vs.quorum.set && vs.quorum.v < 1 {
			p.warnf(n.pos, "quorum 0 raised to 1, as keepalived does: the quorum is at least 1")
			vs.quorum.v = 1
		}
	case "hysteresis":
		p.uint32Val(n, 0, math.MaxUint32, "hysteresis", &vs.hysteresis)
	case "quorum_up":
		if vs.quorumUp = p.script(n); vs.quorumUp != "" {
			p.warnf(n.pos, "quorum_up script is not run by xlvs: quorum changes are logged and counted instead")
		}
	case "quorum_down":
		if vs.quorumDown = p.script(n); vs.quorumDown != "" {
			p.warnf(n.pos, "quorum_down script is not run by xlvs: quorum changes are logged and counted instead")
		}
	case "alpha":
		p.flag(n, &vs.alpha)
	case "omega":
		p.flag(n, &vs.omega)
	case "inhibit_on_failure":
		p.flag(n, &vs.inhibit)
	case "ha_suspend":
		if p.value(n, 0, 0, kw) {
			vs.haSuspend = true
			p.warnf(n.pos, "ha_suspend ignored: xlvs checks real servers whether or not the virtual address is configured")
		}
	default:
		return false
	}
	return true
}

// vsCheckDefaults reads the checker settings a virtual_server gives its checkers:
// delay_loop, virtualhost, connect_timeout, retry, delay_before_retry and warmup.
func (p *parser) vsCheckDefaults(vs *rawVS, n *node) bool {
	switch n.keyword() {
	case "delay_loop":
		p.timer(n, &vs.delayLoop)
	case "virtualhost":
		p.str(n, &vs.vhost)
	case "connect_timeout":
		p.timer(n, &vs.connTO)
	case "retry":
		p.uint32Val(n, 0, math.MaxUint32, "retry count", &vs.retry)
	case "delay_before_retry":
		p.timer(n, &vs.dbr)
	case "warmup":
		p.timer(n, &vs.warmup)
	default:
		return false
	}
	return true
}

// method reads "NAT", "DR", "FNAT" (or "FULLNAT") or "TUN [type ipip|gue port N|gre]
// [nocsum|csum|remcsum]".
func (p *parser) method(n *node) (Method, bool) {
	const usage = "NAT|DR|FNAT|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]"
	if !p.value(n, 1, 6, n.keyword()+" "+usage) {
		return Method{}, false
	}
	a := n.args()
	m := Method{Kind: a[0]}
	if a[0] == "FULLNAT" {
		m.Kind = MethodFNAT
	}
	if a[0] == "SNAT" {
		p.errorf(n.pos, "%s SNAT: DPVS's SNAT forwarding is not supported by xlvs: expected NAT, DR, TUN or FNAT", n.keyword())
		return Method{}, false
	}
	switch m.Kind {
	case MethodNAT, MethodDR, MethodFNAT:
		if len(a) > 1 {
			p.lenient(n.pos, "%s %s: extra %q ignored, as keepalived does: only TUN takes options", n.keyword(), a[0], strings.Join(a[1:], " "))
		}
		return m, true
	case MethodTUN:
	default:
		p.errorf(n.pos, "%s: unknown forwarding method %q: expected NAT, DR, TUN or FNAT (upper case)", n.keyword(), a[0])
		return Method{}, false
	}
	m.TunType = "ipip"
	i := 1
	if i < len(a) && a[i] == "type" {
		if i+1 >= len(a) {
			p.errorf(n.pos, "%s TUN type: missing tunnel type: expected ipip, gue or gre", n.keyword())
			return Method{}, false
		}
		m.TunType = a[i+1]
		i += 2
		switch m.TunType {
		case "ipip", "gre":
		case "gue":
			if i+1 >= len(a) || a[i] != "port" {
				p.errorf(n.pos, "%s TUN type gue: missing port: expected \"type gue port N\"", n.keyword())
				return Method{}, false
			}
			port, ok := p.portArg(n, a[i+1], false)
			if !ok {
				return Method{}, false
			}
			m.TunPort = port
			i += 2
		default:
			p.errorf(n.pos, "%s TUN: unknown tunnel type %q: expected ipip, gue or gre", n.keyword(), m.TunType)
			return Method{}, false
		}
	}
	if i < len(a) {
		switch f := a[i]; {
		case m.TunType == "ipip":
			p.errorf(n.pos, "%s TUN: unexpected %q: ipip tunnels take no checksum option", n.keyword(), f)
			return Method{}, false
		case f == "nocsum" || f == "csum" || f == "remcsum" && m.TunType == "gue":
			m.TunFlags = f
			i++
		default:
			p.errorf(n.pos, "%s TUN type %s: unknown option %q: expected nocsum or csum%s", n.keyword(), m.TunType, f, map[bool]string{true: " or remcsum"}[m.TunType == "gue"])
			return Method{}, false
		}
	}
	if i < len(a) {
		p.lenient(n.pos, "%s: extra %q after the tunnel options ignored, as keepalived does", n.keyword(), strings.Join(a[i:], " "))
	}
	return m, true
}

// granularity reads an IPv4 netmask with contiguous ones, or an IPv6 prefix length.
func (p *parser) granularity(n *node, v6 bool) (string, bool) {
	s := n.args()[0]
	if v6 {
		if _, ok := p.uintArg(n, s, 1, 128, "IPv6 prefix length"); !ok {
			return "", false
		}
		return s, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		p.errorf(n.pos, "persistence_granularity: %q is not an IPv4 netmask: expected a mask such as 255.255.255.0", s)
		return "", false
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if m == 0 || m|(m-1) != math.MaxUint32 {
		p.errorf(n.pos, "persistence_granularity: netmask %s is not contiguous: expected leading ones then zeros, such as 255.255.255.0", s)
		return "", false
	}
	return s, true
}

// ---- real_server ----

var rsIgnored = map[string]string{
	"smtp_alert": "xlvs sends no e-mail",
	"snmp_name":  "xlvs has no SNMP agent",
}

// Checker blocks keepalived has and xlvs does not run.
var unsupportedCheckers = map[string]bool{"BFD_CHECK": true}

var rsKeywords = []string{
	"weight", "lvs_method", "lb_kind", "inhibit_on_failure", "notify_up", "notify_down",
	"uthreshold", "lthreshold", "virtualhost", "alpha", "connect_timeout", "retry",
	"delay_before_retry", "warmup", "delay_loop", CheckTCP, CheckHTTP, CheckSSL, CheckMisc,
	CheckSMTP, CheckDNS, CheckUDP, CheckPing, CheckFile, "smtp_alert", "snmp_name",
}

const rsUsage = "real_server IP [PORT] {"

func (p *parser) realServer(n *node) *rawRS {
	if !p.opensBlock(n) {
		return nil
	}
	args := n.args()
	if len(args) < 1 {
		p.errorf(n.pos, "real_server: expected %q, got %q", rsUsage, n.text())
		return nil
	}
	if len(args) > 2 {
		p.lenient(n.pos, "real_server: extra %q ignored, as keepalived does: expected %q", strings.Join(args[2:], " "), rsUsage)
		args = args[:2]
	}
	rs := &rawRS{pos: n.pos}
	var ok bool
	if rs.addr, ok = p.addrArg(n, args[0], rsUsage); !ok {
		return nil
	}
	if len(args) == 2 {
		if rs.port, ok = p.portArg(n, args[1], true); !ok {
			return nil
		}
	}
	where := "real_server " + strings.Join(args, " ")
	for _, c := range n.children {
		p.rsKeyword(rs, c, where)
	}
	return rs
}

func (p *parser) rsKeyword(rs *rawRS, n *node, where string) {
	kw := n.keyword()
	if why, ok := rsIgnored[kw]; ok {
		p.ignored(n, why)
		return
	}
	if unsupportedCheckers[kw] {
		p.warnf(n.pos, "%s ignored: xlvs has no BFD; %s is not checked this way (use PING_CHECK or TCP_CHECK)", kw, where)
		return
	}
	switch kw {
	case CheckTCP, CheckHTTP, CheckSSL, CheckMisc, CheckSMTP, CheckDNS, CheckUDP, CheckPing, CheckFile:
		if c := p.checker(n); c != nil {
			rs.checks = append(rs.checks, c)
		}
	case "weight":
		p.uint32Val(n, 0, 65535, "weight", &rs.weight)
	case "lvs_method", "lb_kind":
		if m, ok := p.method(n); ok {
			rs.method = &m
		}
	case "inhibit_on_failure":
		p.optBool(n, &rs.inhibit)
	case "alpha":
		p.optBool(n, &rs.alpha)
	case "notify_up":
		if rs.notifyUp = p.script(n); rs.notifyUp != "" {
			p.warnf(n.pos, "notify_up script is not run by xlvs: transitions are logged and counted instead")
		}
	case "notify_down":
		if rs.notifyDown = p.script(n); rs.notifyDown != "" {
			p.warnf(n.pos, "notify_down script is not run by xlvs: transitions are logged and counted instead")
		}
	case "uthreshold", "lthreshold":
		var v optU32
		p.uint32Val(n, 0, math.MaxUint32, "connection threshold", &v)
		if kw == "uthreshold" {
			rs.uth = v.v
		} else {
			rs.lth = v.v
		}
	case "virtualhost":
		p.str(n, &rs.vhost)
	case "connect_timeout":
		p.timer(n, &rs.connTO)
	case "retry":
		p.uint32Val(n, 0, math.MaxUint32, "retry count", &rs.retry)
	case "delay_before_retry":
		p.timer(n, &rs.dbr)
	case "warmup":
		p.timer(n, &rs.warmup)
	case "delay_loop":
		p.timer(n, &rs.delayLoop)
	default:
		p.unknown(n, where, rsKeywords)
	}
}

// ---- checkers ----

var checkCommon = []string{"retry", "nb_get_retry", "delay_before_retry", "warmup", "delay_loop", "alpha", "log_all_failures"}
var checkConn = []string{"connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark", "connect_timeout"}
var checkHTTP = []string{"virtualhost", "http_protocol", "enable_sni", "sni_name", "fast_recovery", "tls_compliant", "url"}
var checkMisc = []string{"misc_path", "misc_timeout", "misc_dynamic", "user"}
var checkSMTP = []string{"helo_name", "host"}
var checkDNS = []string{"type", "name"}
var checkUDP = []string{"payload", "require_reply", "min_reply_length", "max_reply_length"}
var checkFile = []string{"track_file", "weight", "dynamic"}

func (p *parser) checker(n *node) *rawCheck {
	if !p.opensBlock(n) {
		return nil
	}
	p.extraArgs(n, n.keyword()+" {")
	c := &rawCheck{pos: n.pos, typ: n.keyword()}
	p.checkBody(c, n.children)
	return c
}

// checkBody reads the statements of a checker block (or of an SMTP_CHECK host block,
// which takes the connection and common keywords).
func (p *parser) checkBody(c *rawCheck, children []*node) {
	known := slices.Clone(checkCommon)
	switch c.typ {
	case CheckMisc:
		known = append(known, checkMisc...)
	case CheckHTTP, CheckSSL:
		known = append(append(known, checkConn...), checkHTTP...)
	case CheckSMTP:
		known = append(append(known, checkConn...), checkSMTP...)
	case CheckDNS:
		known = append(append(known, checkConn...), checkDNS...)
	case CheckUDP:
		known = append(append(known, checkConn...), checkUDP...)
	case CheckFile:
		known = checkFile // FILE_CHECK has none of the common options
	case "host":
		known = append(known, checkConn...)
	default:
		known = append(known, checkConn...)
	}
	if c.typ == CheckTCP {
		known = append(known, "nb_sock_retry")
	}
	for _, k := range children {
		if !slices.Contains(known, k.keyword()) {
			if c.typ == CheckMisc && slices.Contains(checkConn, k.keyword()) {
				p.lenient(k.pos, "%s ignored: not valid in MISC_CHECK, a script makes its own connections", k.keyword())
				continue
			}
			p.unknown(k, c.typ, known)
			continue
		}
		p.checkKeyword(c, k)
	}
}

// checkKeyword reads one statement of a checker block (checkBody has checked it is
// one the checker takes), handing it to the group it belongs to.
func (p *parser) checkKeyword(c *rawCheck, n *node) {
	for _, group := range checkGroups {
		if group(p, c, n) {
			return
		}
	}
	p.checkKeyword2(c, n)
}

// checkGroups read the statements of keepalived 1.x's checkers; checkKeyword2 those of
// the checkers 2.x added. Each reports whether the statement was its own.
var checkGroups = []func(*parser, *rawCheck, *node) bool{
	(*parser).checkTiming, (*parser).checkConnection, (*parser).checkHTTP, (*parser).checkMisc,
}

// checkTiming reads when a checker runs and how it counts: retry (and nb_get_retry),
// delay_before_retry, warmup, delay_loop, alpha and log_all_failures.
func (p *parser) checkTiming(c *rawCheck, n *node) bool {
	switch n.keyword() {
	case "retry":
		p.uint32Val(n, 0, math.MaxUint32, "retry count", &c.retry)
	case "nb_get_retry":
		p.uint32Val(n, 0, math.MaxUint32, "retry count", &c.retry)
		p.warnf(n.pos, "nb_get_retry is deprecated: use retry")
	case "delay_before_retry":
		p.timer(n, &c.dbr)
	case "warmup":
		p.timer(n, &c.warmup)
	case "delay_loop":
		p.timer(n, &c.delayLoop)
	case "alpha":
		p.optBool(n, &c.alpha)
	case "log_all_failures":
		p.boolArg(n) // every failure is visible in the health state already
	default:
		return false
	}
	return true
}

// checkConnection reads where a checker connects from and to: connect_ip,
// connect_port, bindto, bind_port, bind_if, fwmark and connect_timeout.
func (p *parser) checkConnection(c *rawCheck, n *node) bool {
	switch n.keyword() {
	case "connect_ip":
		if p.value(n, 1, 1, "connect_ip IP") {
			c.connectIP, _ = p.addrArg(n, n.args()[0], "connect_ip IP")
		}
	case "connect_port":
		if p.value(n, 1, 1, "connect_port PORT") {
			c.connectPort, _ = p.portArg(n, n.args()[0], false)
		}
	case "bindto":
		if p.value(n, 1, 1, "bindto IP") {
			if a, ok := parseAddr(n.args()[0]); ok {
				c.bindTo = a
			} else {
				p.errorf(n.pos, "bindto: %q is not an IP address: expected \"bindto IP\"", n.args()[0])
			}
		}
	case "bind_port":
		if p.value(n, 1, 1, "bind_port PORT") {
			c.bindPort, _ = p.portArg(n, n.args()[0], false)
		}
	case "bind_if":
		if p.value(n, 1, 1, "bind_if IFNAME") {
			if len(n.args()[0]) > 15 {
				p.errorf(n.pos, "bind_if: interface name %q is longer than 15 characters", n.args()[0])
				return true
			}
			c.bindIf = n.args()[0]
		}
	case "fwmark":
		var v optU32
		p.uint32Val(n, 0, math.MaxUint32, "firewall mark", &v)
		c.fwmark = v.v
	case "connect_timeout":
		p.timer(n, &c.connTO)
		if c.connTO.set && c.connTO.v == 0 {
			c.connTO.v = time.Second // keepalived refuses a zero timeout and uses one second
		}
	default:
		return false
	}
	return true
}

// checkHTTP reads the statements of HTTP_GET and SSL_GET: virtualhost,
// http_protocol, enable_sni, sni_name, fast_recovery, tls_compliant and url blocks.
func (p *parser) checkHTTP(c *rawCheck, n *node) bool {
	switch kw := n.keyword(); kw {
	case "virtualhost":
		p.str(n, &c.vhost)
	case "http_protocol":
		if p.value(n, 1, 1, "http_protocol 1.0|1.0C|1.1") {
			switch v := n.args()[0]; v {
			case "1.0", "1.1", "1.0C":
				c.httpProto = v
			case "1.0c":
				c.httpProto = "1.0C"
			default:
				p.errorf(n.pos, "http_protocol: unknown version %q: expected 1.0, 1.0C or 1.1", v)
			}
		}
	case "enable_sni":
		if v, ok := p.boolArg(n); ok {
			c.sni = v
		}
	case "sni_name":
		if p.value(n, 1, 1, "sni_name NAME") {
			c.sniName = n.args()[0]
			c.sni = true
		}
	case "fast_recovery":
		if _, ok := p.boolArg(n); ok {
			p.warnf(n.pos, "fast_recovery has no effect in xlvs: every url is checked in each round already")
		}
	case "tls_compliant":
		p.value(n, 0, 0, kw)
	case "url":
		if u := p.url(n); u != nil {
			c.urls = append(c.urls, u)
		}
	default:
		return false
	}
	return true
}

// checkMisc reads the statements of MISC_CHECK: misc_path, misc_timeout, misc_dynamic
// and user.
func (p *parser) checkMisc(c *rawCheck, n *node) bool {
	switch n.keyword() {
	case "misc_path":
		if !p.value(n, 1, 1<<10, "misc_path PROGRAM [ARGS...]") {
			return true
		}
		// One value is a command line (split on blanks outside quotes); several values
		// are already the program and its arguments.
		argv := n.args()
		if len(argv) == 1 {
			argv = splitCommand(argv[0])
		}
		if len(argv) == 0 {
			p.errorf(n.pos, "misc_path: empty command: expected a program path")
			return true
		}
		c.miscPath = argv
	case "misc_timeout":
		p.timer(n, &c.miscTimeout)
	case "misc_dynamic":
		p.flag(n, &c.dynamic)
	case "user":
		if p.value(n, 1, 2, "user USER [GROUP]") {
			c.user = n.args()[0]
			if len(n.args()) == 2 {
				c.group = strings.TrimPrefix(n.args()[1], ":")
			}
		}
	default:
		return false
	}
	return true
}

var urlKeywords = []string{"path", "digest", "status_code", "virtualhost", "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset", "tls_compliant"}

func (p *parser) url(n *node) *rawURL {
	if !p.opensBlock(n) {
		return nil
	}
	p.extraArgs(n, "url {")
	u := &rawURL{pos: n.pos}
	for _, k := range n.children {
		switch k.keyword() {
		case "path":
			p.str(k, &u.path)
		case "digest":
			if !p.value(k, 1, 1, "digest MD5HEX") {
				continue
			}
			d := strings.ToLower(k.args()[0])
			if len(d) != 32 || strings.IndexFunc(d, func(r rune) bool { return !isHex(byte(r)) || r > 0x7f }) >= 0 {
				p.errorf(k.pos, "digest: %q is not an MD5 digest: expected 32 hexadecimal digits (genhash prints it)", k.args()[0])
				continue
			}
			u.digest = d
		case "status_code":
			if !p.value(k, 1, 1<<10, "status_code CODE|MIN-MAX ...") {
				continue
			}
			for _, a := range k.args() {
				lo, hi, isRange := strings.Cut(a, "-")
				if !isRange {
					hi = lo
				}
				l, err1 := strconv.Atoi(lo)
				h, err2 := strconv.Atoi(hi)
				if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
					p.errorf(k.pos, "status_code: %q is not a status code or range: expected codes from 100 to 599 such as 200 or 200-299", a)
					continue
				}
				u.codes = append(u.codes, StatusRange{Min: l, Max: h})
			}
		case "virtualhost":
			p.str(k, &u.vhost)
		case "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset":
			p.warnf(k.pos, "%s ignored: xlvs does not match the body against regular expressions; use digest or status_code", k.keyword())
		case "tls_compliant":
			p.value(k, 0, 0, "tls_compliant")
		default:
			p.unknown(k, "url", urlKeywords)
		}
	}
	return u
}

// splitCommand splits a command line on blanks; single or double quotes keep blanks
// inside an argument.
func splitCommand(s string) []string {
	var out []string
	var b strings.Builder
	in := false
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				b.WriteByte(c)
			}
		case c == '\'' || c == '"':
			q, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, b.String())
	}
	return out
}

// ---- SSL ----

func (p *parser) sslBlock(n *node) {
	if !p.opensBlock(n) {
		return
	}
	p.extraArgs(n, "SSL {")
	if p.ssl != nil {
		p.warnf(n.pos, "SSL block given twice (first at %s): the later one replaces it", p.ssl.Pos)
	}
	ssl := &SSL{Pos: n.pos}
	for _, k := range n.children {
		var into *string
		switch k.keyword() {
		case "password":
			into = &ssl.Password
		case "ca":
			into = &ssl.CA
			p.warnf(k.pos, "ca ignored: xlvs does not verify the real servers' certificates in SSL_GET")
		case "certificate":
			into = &ssl.Certificate
		case "key":
			into = &ssl.Key
		default:
			p.unknown(k, "SSL", []string{"password", "ca", "certificate", "key"})
			continue
		}
		if p.value(k, 1, 1, k.keyword()+" VALUE") {
			*into = k.args()[0]
		}
	}
	p.ssl = ssl
}

// describe names a real server in messages.
func describe(a netip.Addr, port uint16) string {
	return fmt.Sprint(netip.AddrPortFrom(a, port))
}
