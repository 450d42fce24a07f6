package ipvsadm

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"xlvs/control/api"
)

// Program is the name the messages and the usage text give the command.
const Program = "xlvsadm"

// ErrTryHelp ends the message of a command line that has no command, or an unknown
// option, as ipvsadm's does.
var ErrTryHelp = errors.New("Try `" + Program + " -h' or '" + Program + " --help' for more information.")

// Defaults and limits, as ipvsadm's.
const (
	DefaultScheduler         = "wlc"
	DefaultPersistentTimeout = 300 // seconds, -p without a value
	DefaultMcastInterface    = "eth0"
	maxTimeout               = 86400 * 31 // 31 days
)

// Schedulers are the scheduler names -s accepts.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

// PersistenceEngines are the names --pe accepts.
var PersistenceEngines = []string{"sip"}

// Parser parses command lines and rule files. The zero value uses SystemResolver.
type Parser struct {
	// Resolver resolves host and service names in arguments; nil means SystemResolver.
	// Commands the Parser returns carry it for their listings.
	Resolver Resolver
}

// Parse parses an xlvsadm command line (without the program name) with SystemResolver.
// See Parser.Parse.
func Parse(args []string) (*Command, error) { return Parser{}.Parse(args) }

// Parse parses a command line as ipvsadm 1.31 does: the first option must be the
// command; options follow in any order; each option's argument is validated; the
// command/option table and the checks that follow it (ports, address families, tunnel
// options, list conflicts) are applied in ipvsadm's order, so the first problem reported
// is the one ipvsadm would report. No arguments at all means -L. Error messages start
// with ipvsadm's text and add what would be right.
func (p Parser) Parse(args []string) (*Command, error) {
	r := p.Resolver
	if r == nil {
		r = SystemResolver
	}
	if len(args) == 0 {
		return &Command{Kind: KindList, Resolver: r, Requests: []api.Request{
			{Version: api.Version, Op: api.OpInfo}, {Version: api.Version, Op: api.OpList}, {Version: api.Version, Op: api.OpListMarks}}}, nil
	}
	sc := &scanner{args: args}
	tok, ok, err := sc.next()
	if err != nil {
		return nil, fmt.Errorf("%v\n%w", err, ErrTryHelp)
	}
	if !ok {
		return nil, fmt.Errorf("no command given: the first option must be a command such as -A, -a, -L or -h\n%w", ErrTryHelp)
	}
	st := &state{r: r, method: api.MethodRoute, weight: 1, timeout: DefaultPersistentTimeout}
	switch tok.spec.tag {
	case tAddService:
		st.kind = KindAddService
	case tEditService:
		st.kind = KindEditService
	case tDelService:
		st.kind = KindDelService
	case tAddDest:
		st.kind = KindAddDest
	case tEditDest:
		st.kind = KindEditDest
	case tDelDest:
		st.kind = KindDelDest
	case tClear:
		st.kind = KindClear
	case tList:
		st.kind = KindList
	case tZero:
		st.kind = KindZero
	case tSet:
		st.kind = KindSetTimeouts
	case tRestore:
		st.kind = KindRestore
	case tSave:
		st.kind = KindSave
	case tDataplaneStats:
		st.kind = KindDataplaneStats
	case tAddLaddr:
		st.kind = KindAddLaddr
	case tDelLaddr:
		st.kind = KindDelLaddr
	case tGetLaddr:
		st.kind = KindGetLaddr
	case tAddMark:
		st.kind = KindAddMark
	case tDelMark:
		st.kind = KindDelMark
	case tStartDaemon, tStopDaemon:
		st.kind = KindStartDaemon
		if tok.spec.tag == tStopDaemon {
			st.kind = KindStopDaemon
		}
		if tok.arg != "master" && tok.arg != "backup" {
			return nil, fmt.Errorf("illegal %s parameter specified: `%s' (want master or backup)", st.kind, tok.arg)
		}
		st.daemon.State = tok.arg
	case tHelp:
		return &Command{Kind: KindHelp, Resolver: r}, nil
	case tVersion:
		return &Command{Kind: KindVersion, Resolver: r}, nil
	default:
		return nil, fmt.Errorf("%s is not a command: the first option must be a command such as -A, -a, -L or -h\n%w", tok.name, ErrTryHelp)
	}

	for {
		tok, ok, err := sc.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if err := st.apply(tok); err != nil {
			return nil, err
		}
	}
	if err := st.finish(sc.positional); err != nil {
		return nil, err
	}
	return st.command(), nil
}

// state collects one command line.
type state struct {
	r    Resolver
	kind Kind
	opts uint64 // bits of the option columns seen

	// Virtual service.
	proto      string // api.ProtoTCP, api.ProtoUDP, api.ProtoSCTP, api.ProtoFWMark
	portProto  string // protocol for service names: "tcp" for fwmark, as ipvsadm
	addr       netip.Addr
	port       uint16
	fwmark     uint32
	family     int // 0 before -t/-u/-f, then 4 or 6
	sched      string
	schedFlags []string
	flagsArg   string
	persistent bool
	timeout    uint32
	netmask    string
	ops        bool
	pe         string

	// Real server.
	destAddr   netip.Addr
	destPort   uint16
	destFamily int
	method     string
	weight     int32
	uThreshold uint32
	lThreshold uint32
	tunType    int // index in tunNames
	tunPort    uint16
	tunFlags   int // 0 nocsum, 1 csum, 2 remcsum

	// FULLNAT local address (-z) and its interface (-F, informative).
	laddr  netip.Addr
	ifname string

	timeouts api.Timeouts
	daemon   api.SyncDaemon
	list     ListOptions

	markRule api.MarkRule // --add-mark, --del-mark (marks.go)
}

func (st *state) set(col int) error {
	bit := uint64(1) << col
	if st.opts&bit != 0 {
		return fmt.Errorf("multiple '%s' options specified", optNames[col])
	}
	st.opts |= bit
	return nil
}

func (st *state) has(col int) bool { return st.opts&(uint64(1)<<col) != 0 }

// apply handles one option after the command.
func (st *state) apply(tok token) error {
	if st.markCommand() {
		return st.applyMark(tok)
	}
	arg := tok.arg
	col, flag := listOption(tok.spec.tag, &st.list)
	if col >= 0 {
		if err := st.set(col); err != nil {
			return err
		}
		if flag != nil {
			*flag = true
		}
		return nil
	}
	switch tok.spec.tag {
	case tSort: // the default; accepted for compatibility
		return nil
	case tTCP, tUDP, tSCTP:
		if err := st.set(optService); err != nil {
			return err
		}
		st.proto, st.portProto = api.ProtoTCP, "tcp"
		if tok.spec.tag == tUDP {
			st.proto, st.portProto = api.ProtoUDP, "udp"
		}
		if tok.spec.tag == tSCTP {
			st.proto, st.portProto = api.ProtoSCTP, "sctp" // service names from /etc/services' sctp entries, as ipvsadm's service_to_port
		}
		e, ok := parseEndpoint(arg, st.portProto, st.r)
		if !ok {
			return fmt.Errorf("illegal virtual server address[:port] specified: `%s' (want host[:port], [IPv6]:port or an IPv6 address)", arg)
		}
		st.addr, st.family = e.addr, familyOf(e.addr)
		if e.hasPort {
			st.port = e.port
		}
		if st.family == 6 {
			st.netmask = ""
		}
	case tFWMark:
		if err := st.set(optService); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, math.MaxUint32)
		if !ok {
			return fmt.Errorf("invalid fwmark value `%s' specified (want an integer from 1 to 4294967295)", arg)
		}
		st.proto, st.portProto, st.family, st.fwmark = api.ProtoFWMark, "tcp", 4, uint32(n)
	case tScheduler:
		if err := st.set(optScheduler); err != nil {
			return err
		}
		st.sched = arg
	case tPersistent:
		if err := st.set(optPersistent); err != nil {
			return err
		}
		st.persistent = true
		if tok.hasArg {
			n, ok := parseNumber(arg, 1, maxTimeout)
			if !ok {
				return fmt.Errorf("invalid timeout value `%s' specified (want seconds from 1 to %d)", arg, maxTimeout)
			}
			st.timeout = uint32(n)
		}
	case tNetmask:
		if err := st.set(optNetmask); err != nil {
			return err
		}
		if st.family != 6 {
			m, ok := parseNetmask4(arg, st.r)
			if !ok {
				return fmt.Errorf("illegal virtual server persistent mask specified: `%s' (want a netmask such as 255.255.255.0)", arg)
			}
			st.netmask = m.String()
			if st.netmask == "255.255.255.255" {
				st.netmask = ""
			}
		} else {
			n := atoi(arg)
			if n < 1 || n > 128 {
				return fmt.Errorf("illegal ipv6 netmask specified: `%s' (want a prefix length from 1 to 128)", arg)
			}
			st.netmask = strconv.FormatInt(n, 10)
			if n == 128 {
				st.netmask = ""
			}
		}
	case tRealServer:
		if err := st.set(optServer); err != nil {
			return err
		}
		e, ok := parseEndpoint(arg, st.portProto, st.r)
		if !ok {
			return fmt.Errorf("illegal real server address[:port] specified: `%s' (want host[:port], [IPv6]:port or an IPv6 address)", arg)
		}
		st.destAddr, st.destFamily, st.destPort = e.addr, familyOf(e.addr), st.port
		if e.hasPort {
			st.destPort = e.port
		}
	case tGate, tIPIP, tMasq, tFullNAT:
		if err := st.set(optForward); err != nil {
			return err
		}
		st.method = map[tag]string{tGate: api.MethodRoute, tIPIP: api.MethodTunnel,
			tMasq: api.MethodMasq, tFullNAT: api.MethodFullNAT}[tok.spec.tag]
	case tWeight:
		if err := st.set(optWeight); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 0, 65535)
		if !ok {
			return fmt.Errorf("illegal weight specified: `%s' (want an integer from 0 to 65535)", arg)
		}
		st.weight = int32(n)
	case tUThreshold, tLThreshold:
		c, name, dst := optUThreshold, "u_threshold", &st.uThreshold
		if tok.spec.tag == tLThreshold {
			c, name, dst = optLThreshold, "l_threshold", &st.lThreshold
		}
		if err := st.set(c); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 0, math.MaxInt32)
		if !ok {
			return fmt.Errorf("illegal %s specified: `%s' (want a connection count from 0 to %d, 0 for none)", name, arg, math.MaxInt32)
		}
		*dst = uint32(n)
	case tMcastInterface:
		if err := st.set(optMcast); err != nil {
			return err
		}
		st.daemon.Interface = arg
	case tSyncID:
		if err := st.set(optSyncID); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 0, 255)
		if !ok {
			return fmt.Errorf("illegal syncid specified: `%s' (want an integer from 0 to 255)", arg)
		}
		st.daemon.SyncID = uint8(n)
	case tIPv6:
		if st.fwmark == 0 {
			return errors.New("-6 used before -f (write -f MARK -6)")
		}
		st.family, st.netmask = 6, ""
	case tOps:
		if err := st.set(optOnePacket); err != nil {
			return err
		}
		st.ops = true
	case tPE:
		if err := st.set(optPE); err != nil {
			return err
		}
		st.pe = arg
	case tSchedFlags:
		if err := st.set(optSchedFlags); err != nil {
			return err
		}
		st.flagsArg = arg
	case tMcastGroup:
		if err := st.set(optMcastGroup); err != nil {
			return err
		}
		if strings.Contains(arg, ":") {
			a, ok := parseIPv6(arg)
			if !ok || !isMulticast6(a) {
				return fmt.Errorf("invalid IPv6 mcast-group `%s' (want an IPv6 multicast address, ff00::/8)", arg)
			}
			st.daemon.Group = a.String()
		} else {
			a, err := netip.ParseAddr(arg)
			if err != nil || !isMulticast4(a) {
				return fmt.Errorf("invalid IPv4 mcast-group `%s' (want an IPv4 multicast address, 224.0.0.0/4)", arg)
			}
			st.daemon.Group = a.String()
		}
	case tMcastPort:
		if err := st.set(optMcastPort); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 65535)
		if !ok {
			return fmt.Errorf("illegal mcast-port specified: `%s' (want a port from 1 to 65535)", arg)
		}
		st.daemon.Port = uint16(n)
	case tMcastTTL:
		if err := st.set(optMcastTTL); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 255)
		if !ok {
			return fmt.Errorf("illegal mcast-ttl specified: `%s' (want an integer from 1 to 255)", arg)
		}
		st.daemon.TTL = uint8(n)
	case tSyncMaxlen:
		if err := st.set(optSyncMaxlen); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 65535-20-8)
		if !ok {
			return fmt.Errorf("illegal sync-maxlen specified: `%s' (want bytes from 1 to %d)", arg, 65535-20-8)
		}
		st.daemon.MaxLen = int(n)
	case tTunType:
		if err := st.set(optTunType); err != nil {
			return err
		}
		i := indexOf(tunNames[:], arg)
		if i < 0 {
			return fmt.Errorf("illegal tunnel type specified: `%s' (want ipip, gue or gre)", arg)
		}
		st.tunType = i
	case tTunPort:
		if err := st.set(optTunPort); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 65535)
		if !ok {
			return fmt.Errorf("illegal tunnel port specified: `%s' (want a port from 1 to 65535)", arg)
		}
		st.tunPort = uint16(n)
	case tLaddr:
		if err := st.set(optLaddr); err != nil {
			return err
		}
		// As DPVS's ipvsadm: an address, possibly with a port, which is ignored.
		e, ok := parseEndpoint(arg, "tcp", st.r)
		if !ok {
			return fmt.Errorf("illegal local address specified: `%s' (want an IPv4 or IPv6 address)", arg)
		}
		st.laddr = e.addr
	case tIfname:
		if err := st.set(optIfname); err != nil {
			return err
		}
		if arg == "" || len(arg) > 15 || strings.ContainsAny(arg, "/ \t") {
			return fmt.Errorf("illegal interface name specified: `%s' (want a name of 1 to 15 characters, such as eth0)", arg)
		}
		st.ifname = arg
	case tTunNoCsum:
		return st.set(optTunNoCsum)
	case tTunCsum:
		st.tunFlags |= 1
		return st.set(optTunCsum)
	case tTunRemCsum:
		st.tunFlags |= 2
		return st.set(optTunRemCsum)
	default: // a command after the command
		return fmt.Errorf("invalid option `%s' (give one command, as the first option)", tok.name)
	}
	return nil
}

// listOption maps the options that only set a column and a listing flag.
func listOption(t tag, l *ListOptions) (int, *bool) {
	switch t {
	case tNumeric:
		return optNumeric, &l.Numeric
	case tConnection:
		return optConnection, &l.Connections
	case tTimeout:
		return optTimeout, &l.Timeout
	case tDaemon:
		return optDaemon, &l.Daemon
	case tStats:
		return optStats, &l.Stats
	case tRate:
		return optRate, &l.Rate
	case tThresholds:
		return optThresholds, &l.Thresholds
	case tPersistentConn:
		return optPersistentConn, &l.PersistentConn
	case tNoSort:
		return optNoSort, &l.NoSort
	case tExact:
		return optExact, &l.Exact
	case tTunInfo:
		return optTunInfo, &l.TunInfo
	}
	return -1, nil
}

var tunNames = [...]string{"ipip", "gue", "gre"}

// tunCompat is ipvsadm's table of tunnel types against the options --tun-port,
// --tun-nocsum, --tun-csum and --tun-remcsum (same key as compat).
var tunCompat = [...]string{"xxxx", "+111", "x11x"}

var tunCols = [...]int{optTunPort, optTunNoCsum, optTunCsum, optTunRemCsum}

func checkTunnel(tunType int, opts uint64) error {
	row := tunCompat[tunType]
	name := tunNames[tunType]
	first := -1
	for j, c := range tunCols {
		set := opts&(uint64(1)<<c) != 0
		switch {
		case !set && row[j] == '+':
			return fmt.Errorf("You need to supply the '%s' option for the '%s' tunnel type", optNames[c], name)
		case set && row[j] == 'x':
			return fmt.Errorf("Illegal '%s' option with the '%s' tunnel type", optNames[c], name)
		case set && row[j] == '1':
			if first < 0 {
				first = c
				continue
			}
			return fmt.Errorf("The option '%s' conflicts with the '%s' option in the '%s' tunnel type", optNames[c], optNames[first], name)
		}
	}
	return nil
}

// finish applies the checks ipvsadm makes once every option is read, in its order.
func (st *state) finish(positional []string) error {
	if st.kind == KindSetTimeouts {
		if len(positional) < 3 {
			return errors.New("--set option requires 3 timeout values (tcp tcpfin udp, in seconds; 0 keeps a value)")
		}
		var v [3]uint32
		for i, a := range positional[:3] {
			n, ok := parseNumber(a, 0, maxTimeout)
			if !ok {
				return fmt.Errorf("invalid timeout value `%s' specified (want seconds from 0 to %d)", a, maxTimeout)
			}
			v[i] = uint32(n)
		}
		st.timeouts = api.Timeouts{TCP: v[0], TCPFin: v[1], UDP: v[2]}
		positional = positional[3:]
	}
	if len(positional) > 0 {
		return fmt.Errorf("unexpected argument %s", positional[0])
	}
	if st.has(optSchedFlags) {
		flags, err := parseSchedFlags(st.sched, st.flagsArg)
		if err != nil {
			return err
		}
		st.schedFlags = flags
	}
	if st.markCommand() { // not in ipvsadm's table: its options are checked as read
		return st.finishMark()
	}
	if err := checkCompat(st.kind, st.opts); err != nil {
		return err
	}

	switch st.kind {
	case KindAddService, KindEditService:
		if st.fwmark == 0 && st.port == 0 && !st.persistent {
			return errors.New("Zero port specified for non-persistent service (give a port, or -p for a persistent all-ports service)")
		}
		if st.ops && st.fwmark == 0 && st.proto != api.ProtoUDP {
			return errors.New("One-Packet Scheduling is only for UDP virtual services (use -u, or -f for a mark on UDP traffic)")
		}
		if st.sched == "" {
			st.sched = DefaultScheduler
		}
		if st.sched == "conhash" {
			return fmt.Errorf("Scheduler not found: `conhash' (DPVS's consistent-hash scheduler is not in xlvs: use mh, Maglev hashing, or sh)")
		}
		if indexOf(Schedulers, st.sched) < 0 {
			return fmt.Errorf("Scheduler not found: `%s' (want one of %s)", st.sched, strings.Join(Schedulers, " "))
		}
		if st.pe != "" && indexOf(PersistenceEngines, st.pe) < 0 {
			return fmt.Errorf("Persistence engine not found: `%s' (want %s)", st.pe, strings.Join(PersistenceEngines, " "))
		}
	case KindStartDaemon:
		if st.daemon.Interface == "" {
			st.daemon.Interface = DefaultMcastInterface
		}
	case KindAddDest, KindEditDest:
		// DR and tunnelled packets keep their destination port.
		if st.fwmark == 0 && (st.method == api.MethodTunnel || st.method == api.MethodRoute) {
			st.destPort = st.port
		}
		if st.destFamily != st.family && st.method != api.MethodTunnel {
			return errors.New("Different address family is allowed only for tunneling servers (use -i, or a real server of the service's family)")
		}
		tunOpts := uint64(1)<<optTunType | uint64(1)<<optTunPort | uint64(1)<<optTunNoCsum |
			uint64(1)<<optTunCsum | uint64(1)<<optTunRemCsum
		if st.opts&tunOpts != 0 && st.method != api.MethodTunnel {
			return errors.New("Tunnel options conflict with forward method (--tun-* options need -i)")
		}
		if err := checkTunnel(st.tunType, st.opts); err != nil {
			return err
		}
	case KindList:
		l := st.list
		if ((l.Connections || l.Timeout || l.Daemon) && (l.Stats || l.Rate || l.Thresholds)) ||
			((l.Timeout || l.Daemon) && l.PersistentConn) {
			return errors.New("options conflicts in the list command (-c, --timeout and --daemon do not combine with --stats, --rate or --thresholds, nor --timeout and --daemon with --persistent-conn)")
		}
	}
	return nil
}

// parseSchedFlags reads -b: a comma-separated list of flags valid for the scheduler (or
// the default one), and returns them as the listing names them.
func parseSchedFlags(sched, arg string) ([]string, error) {
	if sched == "" {
		sched = DefaultScheduler
	}
	const want = "want sh-fallback, sh-port with -s sh; mh-fallback, mh-port with -s mh; or flag-1, flag-2, flag-3"
	var bits uint8
	n := 0
	for _, f := range strings.Split(arg, ",") {
		if f == "" {
			continue
		}
		n++
		switch f {
		case "flag-1":
			bits |= 1
		case "flag-2":
			bits |= 2
		case "flag-3":
			bits |= 4
		case "sh-fallback", "sh-port", "mh-fallback", "mh-port":
			if !strings.HasPrefix(f, sched+"-") {
				return nil, fmt.Errorf("incompatible scheduler flag `%s' (%s)", f, want)
			}
			if strings.HasSuffix(f, "-fallback") {
				bits |= 1
			} else {
				bits |= 2
			}
		default:
			return nil, fmt.Errorf("invalid scheduler flag `%s' (%s)", f, want)
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("invalid scheduler flag `%s' (%s)", arg, want)
	}
	return schedFlagNames(sched, bits), nil
}

// schedFlagNames names the scheduler flag bits as ipvsadm prints them for sched.
func schedFlagNames(sched string, bits uint8) []string {
	var names []string
	switch sched {
	case "sh", "mh":
		if bits&1 != 0 {
			names = append(names, sched+"-fallback")
		}
		if bits&2 != 0 {
			names = append(names, sched+"-port")
		}
	default:
		for i, n := range []string{"flag-1", "flag-2", "flag-3"} {
			if bits&(1<<i) != 0 {
				names = append(names, n)
			}
		}
	}
	return names
}

// schedFlagBits is the inverse of schedFlagNames for any scheduler's names.
func schedFlagBits(flags []string) uint8 {
	var bits uint8
	for _, f := range flags {
		switch f {
		case "flag-1", "sh-fallback", "mh-fallback":
			bits |= 1
		case "flag-2", "sh-port", "mh-port":
			bits |= 2
		case "flag-3":
			bits |= 4
		}
	}
	return bits
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func (st *state) key() api.ServiceKey {
	if st.fwmark != 0 {
		return api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: st.fwmark, Family: st.family}
	}
	return api.ServiceKey{Protocol: st.proto, Addr: st.addr, Port: st.port, Family: st.family}
}

// command builds the requests of a checked command line.
func (st *state) command() *Command {
	cmd := &Command{Kind: st.kind, List: st.list, Resolver: st.r}
	req := func(op string) api.Request { return api.Request{Version: api.Version, Op: op} }
	var svcKey *api.Service
	if st.has(optService) {
		k := st.key()
		svcKey = &api.Service{ServiceKey: k}
	}
	switch st.kind {
	case KindAddService, KindEditService:
		r := req(api.OpAddService)
		if st.kind == KindEditService {
			r.Op = api.OpEditService
		}
		r.Service = &api.Service{ServiceKey: st.key(), Scheduler: st.sched, SchedFlags: st.schedFlags,
			Persistent: st.persistent, Netmask: st.netmask, OnePacket: st.ops, PE: st.pe}
		if st.persistent {
			r.Service.Timeout = st.timeout
		}
		cmd.Requests = []api.Request{r}
	case KindDelService:
		r := req(api.OpDelService)
		r.Service = svcKey
		cmd.Requests = []api.Request{r}
	case KindClear:
		cmd.Requests = []api.Request{req(api.OpClear)}
	case KindAddDest, KindEditDest, KindDelDest:
		r := req(map[Kind]string{KindAddDest: api.OpAddDest, KindEditDest: api.OpEditDest, KindDelDest: api.OpDelDest}[st.kind])
		r.Service = svcKey
		d := &api.Dest{Addr: st.destAddr, Port: st.destPort}
		if st.kind != KindDelDest {
			d.Method, d.Weight, d.UThreshold, d.LThreshold = st.method, st.weight, st.uThreshold, st.lThreshold
			if st.method == api.MethodTunnel {
				d.TunType = tunNames[st.tunType]
				if st.tunType != 0 {
					d.TunFlags = []string{api.TunNoCsum, api.TunCsum, api.TunRemCsum}[st.tunFlags]
				}
				d.TunPort = st.tunPort
			}
		}
		r.Dest = d
		cmd.Requests = []api.Request{r}
	case KindList:
		switch {
		case st.list.Connections:
			cmd.Requests = []api.Request{req(api.OpListConns)}
		case svcKey != nil:
			k := svcKey.ServiceKey
			cmd.Service = &k
			r := req(api.OpList)
			r.Service = svcKey
			cmd.Requests = []api.Request{r}
		case st.list.Timeout:
			cmd.Requests = []api.Request{req(api.OpGetTimeouts)}
		case st.list.Daemon:
			cmd.Requests = []api.Request{req(api.OpGetDaemon)}
		default:
			cmd.Requests = []api.Request{req(api.OpInfo), req(api.OpList), req(api.OpListMarks)}
		}
	case KindZero:
		r := req(api.OpZero)
		if svcKey != nil {
			k := svcKey.ServiceKey
			cmd.Service = &k
			r.Service = svcKey
		}
		cmd.Requests = []api.Request{r}
	case KindSetTimeouts:
		r := req(api.OpSetTimeouts)
		t := st.timeouts
		r.Timeouts = &t
		cmd.Requests = []api.Request{r}
	case KindStartDaemon:
		r := req(api.OpStartDaemon)
		d := st.daemon
		r.Daemon = &d
		cmd.Requests = []api.Request{r}
	case KindStopDaemon:
		r := req(api.OpStopDaemon)
		r.Daemon = &api.SyncDaemon{State: st.daemon.State, SyncID: st.daemon.SyncID}
		cmd.Requests = []api.Request{r}
	case KindSave:
		cmd.Requests = []api.Request{req(api.OpList), req(api.OpGetLocalAddrs), req(api.OpListMarks)}
	case KindAddMark, KindDelMark:
		r := req(api.OpAddMark)
		if st.kind == KindDelMark {
			r.Op = api.OpDelMark
		}
		m := st.markRule
		r.Mark = &m
		cmd.Requests = []api.Request{r}
	case KindAddLaddr, KindDelLaddr:
		r := req(api.OpAddLocalAddr)
		if st.kind == KindDelLaddr {
			r.Op = api.OpDelLocalAddr
		}
		r.Service = svcKey
		r.LocalAddr = &api.LocalAddr{Addr: st.laddr, Ifname: st.ifname}
		cmd.Requests = []api.Request{r}
	case KindGetLaddr:
		// The services too: -G lists every service, those without local addresses
		// included, and one that does not exist is an error.
		l, g := req(api.OpList), req(api.OpGetLocalAddrs)
		if svcKey != nil {
			k := svcKey.ServiceKey
			cmd.Service = &k
			l.Service, g.Service = svcKey, svcKey
		}
		cmd.Requests = []api.Request{l, g}
	case KindDataplaneStats:
		cmd.Requests = []api.Request{req(api.OpDataplaneStats)}
	}
	return cmd
}
