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
	cl := &cmdline{r: r, method: api.MethodRoute, weight: 1, timeout: DefaultPersistentTimeout}
	switch tok.spec.tag {
	case tAddService:
		cl.kind = KindAddService
	case tEditService:
		cl.kind = KindEditService
	case tDelService:
		cl.kind = KindDelService
	case tAddDest:
		cl.kind = KindAddDest
	case tEditDest:
		cl.kind = KindEditDest
	case tDelDest:
		cl.kind = KindDelDest
	case tClear:
		cl.kind = KindClear
	case tList:
		cl.kind = KindList
	case tZero:
		cl.kind = KindZero
	case tSet:
		cl.kind = KindSetTimeouts
	case tRestore:
		cl.kind = KindRestore
	case tSave:
		cl.kind = KindSave
	case tDataplaneStats:
		cl.kind = KindDataplaneStats
	case tAddLaddr:
		cl.kind = KindAddLaddr
	case tDelLaddr:
		cl.kind = KindDelLaddr
	case tGetLaddr:
		cl.kind = KindGetLaddr
	case tAddMark:
		cl.kind = KindAddMark
	case tDelMark:
		cl.kind = KindDelMark
	case tStartDaemon, tStopDaemon:
		cl.kind = KindStartDaemon
		if tok.spec.tag == tStopDaemon {
			cl.kind = KindStopDaemon
		}
		if tok.arg != "master" && tok.arg != "backup" {
			return nil, fmt.Errorf("illegal %s parameter specified: `%s' (want master or backup)", cl.kind, tok.arg)
		}
		cl.daemon.State = tok.arg
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
		if err := cl.apply(tok); err != nil {
			return nil, err
		}
	}
	if err := cl.finish(sc.positional); err != nil {
		return nil, err
	}
	return cl.command(), nil
}

// cmdline collects one command line as it is parsed: the command, the options seen and
// their values. command() turns it into the Command.
type cmdline struct {
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

func (cl *cmdline) set(col int) error {
	bit := uint64(1) << col
	if cl.opts&bit != 0 {
		return fmt.Errorf("multiple '%s' options specified", optNames[col])
	}
	cl.opts |= bit
	return nil
}

func (cl *cmdline) has(col int) bool { return cl.opts&(uint64(1)<<col) != 0 }

// apply handles one option after the command: the listing options here, the others by
// what they describe (one function per group).
func (cl *cmdline) apply(tok token) error {
	if cl.markCommand() {
		return cl.applyMark(tok)
	}
	col, flag := listOption(tok.spec.tag, &cl.list)
	if col >= 0 {
		if err := cl.set(col); err != nil {
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
	case tTCP, tUDP, tSCTP, tFWMark, tIPv6:
		return cl.serviceAddress(tok)
	case tScheduler, tSchedFlags, tPersistent, tNetmask, tOps, tPE:
		return cl.serviceOption(tok)
	case tRealServer, tGate, tIPIP, tMasq, tFullNAT, tWeight, tUThreshold, tLThreshold:
		return cl.serverOption(tok)
	case tTunType, tTunPort, tTunNoCsum, tTunCsum, tTunRemCsum:
		return cl.tunnelOption(tok)
	case tMcastInterface, tSyncID, tMcastGroup, tMcastPort, tMcastTTL, tSyncMaxlen:
		return cl.daemonOption(tok)
	case tLaddr, tIfname:
		return cl.laddrOption(tok)
	default: // a command after the command
		return fmt.Errorf("invalid option `%s' (give one command, as the first option)", tok.name)
	}
}

// serviceAddress handles the options that name the virtual service: -t, -u,
// --sctp-service, -f and -6.
func (cl *cmdline) serviceAddress(tok token) error {
	arg := tok.arg
	switch tok.spec.tag {
	case tTCP, tUDP, tSCTP:
		if err := cl.set(optService); err != nil {
			return err
		}
		cl.proto, cl.portProto = api.ProtoTCP, "tcp"
		if tok.spec.tag == tUDP {
			cl.proto, cl.portProto = api.ProtoUDP, "udp"
		}
		if tok.spec.tag == tSCTP {
			cl.proto, cl.portProto = api.ProtoSCTP, "sctp" // service names from /etc/services' sctp entries, as ipvsadm's service_to_port
		}
		e, ok := parseEndpoint(arg, cl.portProto, cl.r)
		if !ok {
			return fmt.Errorf("illegal virtual server address[:port] specified: `%s' (want host[:port], [IPv6]:port or an IPv6 address)", arg)
		}
		cl.addr, cl.family = e.addr, familyOf(e.addr)
		if e.hasPort {
			cl.port = e.port
		}
		if cl.family == 6 {
			cl.netmask = ""
		}
	case tFWMark:
		if err := cl.set(optService); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, math.MaxUint32)
		if !ok {
			return fmt.Errorf("invalid fwmark value `%s' specified (want an integer from 1 to 4294967295)", arg)
		}
		cl.proto, cl.portProto, cl.family, cl.fwmark = api.ProtoFWMark, "tcp", 4, uint32(n)
	case tIPv6:
		if cl.fwmark == 0 {
			return errors.New("-6 used before -f (write -f MARK -6)")
		}
		cl.family, cl.netmask = 6, ""
	}
	return nil
}

// serviceOption handles the options of how the service schedules: -s, -b, -p, -M, -o
// and --pe.
func (cl *cmdline) serviceOption(tok token) error {
	arg := tok.arg
	switch tok.spec.tag {
	case tScheduler:
		if err := cl.set(optScheduler); err != nil {
			return err
		}
		cl.sched = arg
	case tSchedFlags:
		if err := cl.set(optSchedFlags); err != nil {
			return err
		}
		cl.flagsArg = arg
	case tPersistent:
		if err := cl.set(optPersistent); err != nil {
			return err
		}
		cl.persistent = true
		if tok.hasArg {
			n, ok := parseNumber(arg, 1, maxTimeout)
			if !ok {
				return fmt.Errorf("invalid timeout value `%s' specified (want seconds from 1 to %d)", arg, maxTimeout)
			}
			cl.timeout = uint32(n)
		}
	case tNetmask:
		if err := cl.set(optNetmask); err != nil {
			return err
		}
		if cl.family != 6 {
			m, ok := parseNetmask4(arg, cl.r)
			if !ok {
				return fmt.Errorf("illegal virtual server persistent mask specified: `%s' (want a netmask such as 255.255.255.0)", arg)
			}
			cl.netmask = m.String()
			if cl.netmask == "255.255.255.255" {
				cl.netmask = ""
			}
		} else {
			n := atoi(arg)
			if n < 1 || n > 128 {
				return fmt.Errorf("illegal ipv6 netmask specified: `%s' (want a prefix length from 1 to 128)", arg)
			}
			cl.netmask = strconv.FormatInt(n, 10)
			if n == 128 {
				cl.netmask = ""
			}
		}
	case tOps:
		if err := cl.set(optOnePacket); err != nil {
			return err
		}
		cl.ops = true
	case tPE:
		if err := cl.set(optPE); err != nil {
			return err
		}
		cl.pe = arg
	}
	return nil
}

// serverOption handles the options of a real server: -r, its forwarding method (-g, -i,
// -m, --fullnat), -w, -x and -y.
func (cl *cmdline) serverOption(tok token) error {
	arg := tok.arg
	switch tok.spec.tag {
	case tRealServer:
		if err := cl.set(optServer); err != nil {
			return err
		}
		e, ok := parseEndpoint(arg, cl.portProto, cl.r)
		if !ok {
			return fmt.Errorf("illegal real server address[:port] specified: `%s' (want host[:port], [IPv6]:port or an IPv6 address)", arg)
		}
		cl.destAddr, cl.destFamily, cl.destPort = e.addr, familyOf(e.addr), cl.port
		if e.hasPort {
			cl.destPort = e.port
		}
	case tGate, tIPIP, tMasq, tFullNAT:
		if err := cl.set(optForward); err != nil {
			return err
		}
		cl.method = map[tag]string{tGate: api.MethodRoute, tIPIP: api.MethodTunnel,
			tMasq: api.MethodMasq, tFullNAT: api.MethodFullNAT}[tok.spec.tag]
	case tWeight:
		if err := cl.set(optWeight); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 0, 65535)
		if !ok {
			return fmt.Errorf("illegal weight specified: `%s' (want an integer from 0 to 65535)", arg)
		}
		cl.weight = int32(n)
	case tUThreshold, tLThreshold:
		c, name, dst := optUThreshold, "u_threshold", &cl.uThreshold
		if tok.spec.tag == tLThreshold {
			c, name, dst = optLThreshold, "l_threshold", &cl.lThreshold
		}
		if err := cl.set(c); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 0, math.MaxInt32)
		if !ok {
			return fmt.Errorf("illegal %s specified: `%s' (want a connection count from 0 to %d, 0 for none)", name, arg, math.MaxInt32)
		}
		*dst = uint32(n)
	}
	return nil
}

// tunnelOption handles a tunnelling real server's options: --tun-type, --tun-port and the
// checksum options (checkTunnel checks their combination at the end).
func (cl *cmdline) tunnelOption(tok token) error {
	arg := tok.arg
	switch tok.spec.tag {
	case tTunType:
		if err := cl.set(optTunType); err != nil {
			return err
		}
		i := indexOf(tunNames[:], arg)
		if i < 0 {
			return fmt.Errorf("illegal tunnel type specified: `%s' (want ipip, gue or gre)", arg)
		}
		cl.tunType = i
	case tTunPort:
		if err := cl.set(optTunPort); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 65535)
		if !ok {
			return fmt.Errorf("illegal tunnel port specified: `%s' (want a port from 1 to 65535)", arg)
		}
		cl.tunPort = uint16(n)
	case tTunNoCsum:
		return cl.set(optTunNoCsum)
	case tTunCsum:
		cl.tunFlags |= 1
		return cl.set(optTunCsum)
	case tTunRemCsum:
		cl.tunFlags |= 2
		return cl.set(optTunRemCsum)
	}
	return nil
}

// daemonOption handles the sync daemon's options: --mcast-interface, --syncid,
// --mcast-group, --mcast-port, --mcast-ttl and --sync-maxlen.
func (cl *cmdline) daemonOption(tok token) error {
	arg := tok.arg
	switch tok.spec.tag {
	case tMcastInterface:
		if err := cl.set(optMcast); err != nil {
			return err
		}
		cl.daemon.Interface = arg
	case tSyncID:
		if err := cl.set(optSyncID); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 0, 255)
		if !ok {
			return fmt.Errorf("illegal syncid specified: `%s' (want an integer from 0 to 255)", arg)
		}
		cl.daemon.SyncID = uint8(n)
	case tMcastGroup:
		if err := cl.set(optMcastGroup); err != nil {
			return err
		}
		if strings.Contains(arg, ":") {
			a, ok := parseIPv6(arg)
			if !ok || !isMulticast6(a) {
				return fmt.Errorf("invalid IPv6 mcast-group `%s' (want an IPv6 multicast address, ff00::/8)", arg)
			}
			cl.daemon.Group = a.String()
		} else {
			a, err := netip.ParseAddr(arg)
			if err != nil || !isMulticast4(a) {
				return fmt.Errorf("invalid IPv4 mcast-group `%s' (want an IPv4 multicast address, 224.0.0.0/4)", arg)
			}
			cl.daemon.Group = a.String()
		}
	case tMcastPort:
		if err := cl.set(optMcastPort); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 65535)
		if !ok {
			return fmt.Errorf("illegal mcast-port specified: `%s' (want a port from 1 to 65535)", arg)
		}
		cl.daemon.Port = uint16(n)
	case tMcastTTL:
		if err := cl.set(optMcastTTL); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 255)
		if !ok {
			return fmt.Errorf("illegal mcast-ttl specified: `%s' (want an integer from 1 to 255)", arg)
		}
		cl.daemon.TTL = uint8(n)
	case tSyncMaxlen:
		if err := cl.set(optSyncMaxlen); err != nil {
			return err
		}
		n, ok := parseNumber(arg, 1, 65535-20-8)
		if !ok {
			return fmt.Errorf("illegal sync-maxlen specified: `%s' (want bytes from 1 to %d)", arg, 65535-20-8)
		}
		cl.daemon.MaxLen = int(n)
	}
	return nil
}

// laddrOption handles the FULLNAT local address options: -z and -F.
func (cl *cmdline) laddrOption(tok token) error {
	arg := tok.arg
	switch tok.spec.tag {
	case tLaddr:
		if err := cl.set(optLaddr); err != nil {
			return err
		}
		// As DPVS's ipvsadm: an address, possibly with a port, which is ignored.
		e, ok := parseEndpoint(arg, "tcp", cl.r)
		if !ok {
			return fmt.Errorf("illegal local address specified: `%s' (want an IPv4 or IPv6 address)", arg)
		}
		cl.laddr = e.addr
	case tIfname:
		if err := cl.set(optIfname); err != nil {
			return err
		}
		if arg == "" || len(arg) > 15 || strings.ContainsAny(arg, "/ \t") {
			return fmt.Errorf("illegal interface name specified: `%s' (want a name of 1 to 15 characters, such as eth0)", arg)
		}
		cl.ifname = arg
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
func (cl *cmdline) finish(positional []string) error {
	if cl.kind == KindSetTimeouts {
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
		cl.timeouts = api.Timeouts{TCP: v[0], TCPFin: v[1], UDP: v[2]}
		positional = positional[3:]
	}
	if len(positional) > 0 {
		return fmt.Errorf("unexpected argument %s", positional[0])
	}
	if cl.has(optSchedFlags) {
		flags, err := parseSchedFlags(cl.sched, cl.flagsArg)
		if err != nil {
			return err
		}
		cl.schedFlags = flags
	}
	if cl.markCommand() { // not in ipvsadm's table: its options are checked as read
		return cl.finishMark()
	}
	if err := checkCompat(cl.kind, cl.opts); err != nil {
		return err
	}

	switch cl.kind {
	case KindAddService, KindEditService:
		if cl.fwmark == 0 && cl.port == 0 && !cl.persistent {
			return errors.New("Zero port specified for non-persistent service (give a port, or -p for a persistent all-ports service)")
		}
		if cl.ops && cl.fwmark == 0 && cl.proto != api.ProtoUDP {
			return errors.New("One-Packet Scheduling is only for UDP virtual services (use -u, or -f for a mark on UDP traffic)")
		}
		if cl.sched == "" {
			cl.sched = DefaultScheduler
		}
		if cl.sched == "conhash" {
			return fmt.Errorf("Scheduler not found: `conhash' (DPVS's consistent-hash scheduler is not in xlvs: use mh, Maglev hashing, or sh)")
		}
		if indexOf(Schedulers, cl.sched) < 0 {
			return fmt.Errorf("Scheduler not found: `%s' (want one of %s)", cl.sched, strings.Join(Schedulers, " "))
		}
		if cl.pe != "" && indexOf(PersistenceEngines, cl.pe) < 0 {
			return fmt.Errorf("Persistence engine not found: `%s' (want %s)", cl.pe, strings.Join(PersistenceEngines, " "))
		}
	case KindStartDaemon:
		if cl.daemon.Interface == "" {
			cl.daemon.Interface = DefaultMcastInterface
		}
	case KindAddDest, KindEditDest:
		// DR and tunnelled packets keep their destination port.
		if cl.fwmark == 0 && (cl.method == api.MethodTunnel || cl.method == api.MethodRoute) {
			cl.destPort = cl.port
		}
		if cl.destFamily != cl.family && cl.method != api.MethodTunnel {
			return errors.New("Different address family is allowed only for tunneling servers (use -i, or a real server of the service's family)")
		}
		tunOpts := uint64(1)<<optTunType | uint64(1)<<optTunPort | uint64(1)<<optTunNoCsum |
			uint64(1)<<optTunCsum | uint64(1)<<optTunRemCsum
		if cl.opts&tunOpts != 0 && cl.method != api.MethodTunnel {
			return errors.New("Tunnel options conflict with forward method (--tun-* options need -i)")
		}
		if err := checkTunnel(cl.tunType, cl.opts); err != nil {
			return err
		}
	case KindList:
		l := cl.list
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

func (cl *cmdline) key() api.ServiceKey {
	if cl.fwmark != 0 {
		return api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: cl.fwmark, Family: cl.family}
	}
	return api.ServiceKey{Protocol: cl.proto, Addr: cl.addr, Port: cl.port, Family: cl.family}
}

// command builds the requests of a checked command line.
func (cl *cmdline) command() *Command {
	cmd := &Command{Kind: cl.kind, List: cl.list, Resolver: cl.r}
	req := func(op string) api.Request { return api.Request{Version: api.Version, Op: op} }
	var svcKey *api.Service
	if cl.has(optService) {
		k := cl.key()
		svcKey = &api.Service{ServiceKey: k}
	}
	switch cl.kind {
	case KindAddService, KindEditService:
		r := req(api.OpAddService)
		if cl.kind == KindEditService {
			r.Op = api.OpEditService
		}
		r.Service = &api.Service{ServiceKey: cl.key(), Scheduler: cl.sched, SchedFlags: cl.schedFlags,
			Persistent: cl.persistent, Netmask: cl.netmask, OnePacket: cl.ops, PE: cl.pe}
		if cl.persistent {
			r.Service.Timeout = cl.timeout
		}
		cmd.Requests = []api.Request{r}
	case KindDelService:
		r := req(api.OpDelService)
		r.Service = svcKey
		cmd.Requests = []api.Request{r}
	case KindClear:
		cmd.Requests = []api.Request{req(api.OpClear)}
	case KindAddDest, KindEditDest, KindDelDest:
		r := req(map[Kind]string{KindAddDest: api.OpAddDest, KindEditDest: api.OpEditDest, KindDelDest: api.OpDelDest}[cl.kind])
		r.Service = svcKey
		d := &api.Dest{Addr: cl.destAddr, Port: cl.destPort}
		if cl.kind != KindDelDest {
			d.Method, d.Weight, d.UThreshold, d.LThreshold = cl.method, cl.weight, cl.uThreshold, cl.lThreshold
			if cl.method == api.MethodTunnel {
				d.TunType = tunNames[cl.tunType]
				if cl.tunType != 0 {
					d.TunFlags = []string{api.TunNoCsum, api.TunCsum, api.TunRemCsum}[cl.tunFlags]
				}
				d.TunPort = cl.tunPort
			}
		}
		r.Dest = d
		cmd.Requests = []api.Request{r}
	case KindList:
		switch {
		case cl.list.Connections:
			cmd.Requests = []api.Request{req(api.OpListConns)}
		case svcKey != nil:
			k := svcKey.ServiceKey
			cmd.Service = &k
			r := req(api.OpList)
			r.Service = svcKey
			cmd.Requests = []api.Request{r}
		case cl.list.Timeout:
			cmd.Requests = []api.Request{req(api.OpGetTimeouts)}
		case cl.list.Daemon:
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
		t := cl.timeouts
		r.Timeouts = &t
		cmd.Requests = []api.Request{r}
	case KindStartDaemon:
		r := req(api.OpStartDaemon)
		d := cl.daemon
		r.Daemon = &d
		cmd.Requests = []api.Request{r}
	case KindStopDaemon:
		r := req(api.OpStopDaemon)
		r.Daemon = &api.SyncDaemon{State: cl.daemon.State, SyncID: cl.daemon.SyncID}
		cmd.Requests = []api.Request{r}
	case KindSave:
		cmd.Requests = []api.Request{req(api.OpList), req(api.OpGetLocalAddrs), req(api.OpListMarks)}
	case KindAddMark, KindDelMark:
		r := req(api.OpAddMark)
		if cl.kind == KindDelMark {
			r.Op = api.OpDelMark
		}
		m := cl.markRule
		r.Mark = &m
		cmd.Requests = []api.Request{r}
	case KindAddLaddr, KindDelLaddr:
		r := req(api.OpAddLocalAddr)
		if cl.kind == KindDelLaddr {
			r.Op = api.OpDelLocalAddr
		}
		r.Service = svcKey
		r.LocalAddr = &api.LocalAddr{Addr: cl.laddr, Ifname: cl.ifname}
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
