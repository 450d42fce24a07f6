package ipvsadm

import (
	"errors"
	"fmt"
	"strings"
)

// tag names an option of the command line.
type tag int

const (
	// Commands.
	tAddService tag = iota + 1
	tEditService
	tDelService
	tClear
	tList
	tZero
	tAddDest
	tEditDest
	tDelDest
	tSet
	tHelp
	tVersion
	tRestore
	tSave
	tStartDaemon
	tStopDaemon
	tDataplaneStats
	tAddLaddr
	tDelLaddr
	tGetLaddr

	// Options.
	tTCP
	tUDP
	tSCTP
	tFWMark
	tScheduler
	tPersistent
	tNetmask
	tRealServer
	tMasq
	tIPIP
	tGate
	tFullNAT
	tWeight
	tUThreshold
	tLThreshold
	tNumeric
	tConnection
	tMcastInterface
	tSyncID
	tTimeout
	tDaemon
	tStats
	tRate
	tThresholds
	tPersistentConn
	tNoSort
	tSort
	tExact
	tIPv6
	tOps
	tPE
	tSchedFlags
	tMcastGroup
	tMcastPort
	tMcastTTL
	tSyncMaxlen
	tTunInfo
	tTunType
	tTunPort
	tTunNoCsum
	tTunCsum
	tTunRemCsum
	tLaddr
	tIfname

	// xlvs's firewall-mark rule commands (marks.go).
	tAddMark
	tDelMark
)

type argMode uint8

const (
	argNone argMode = iota
	argRequired
	argOptional // taken only when attached or when the next word does not start with '-'
)

type optSpec struct {
	long  string
	short byte
	arg   argMode
	tag   tag
}

// optTable is ipvsadm 1.31's option table (names, short letters, arguments), plus
// xlvs's --fullnat, --dataplane-stats and -V, and DPVS ipvsadm's local-address commands
// and options (-P/--add-laddr, -Q/--del-laddr, -G/--get-laddr, -z/--laddr, -F/--ifname).
var optTable = []optSpec{
	{"add-service", 'A', argNone, tAddService},
	{"edit-service", 'E', argNone, tEditService},
	{"delete-service", 'D', argNone, tDelService},
	{"clear", 'C', argNone, tClear},
	{"list", 'L', argNone, tList},
	{"", 'l', argNone, tList},
	{"zero", 'Z', argNone, tZero},
	{"add-server", 'a', argNone, tAddDest},
	{"edit-server", 'e', argNone, tEditDest},
	{"delete-server", 'd', argNone, tDelDest},
	{"set", 0, argNone, tSet},
	{"help", 'h', argNone, tHelp},
	{"version", 'v', argNone, tVersion},
	{"", 'V', argNone, tVersion},
	{"restore", 'R', argNone, tRestore},
	{"save", 'S', argNone, tSave},
	{"start-daemon", 0, argRequired, tStartDaemon},
	{"stop-daemon", 0, argRequired, tStopDaemon},
	{"dataplane-stats", 0, argNone, tDataplaneStats},
	{"add-laddr", 'P', argNone, tAddLaddr},
	{"del-laddr", 'Q', argNone, tDelLaddr},
	{"get-laddr", 'G', argNone, tGetLaddr},
	{"tcp-service", 't', argRequired, tTCP},
	{"udp-service", 'u', argRequired, tUDP},
	{"sctp-service", 0, argRequired, tSCTP},
	{"fwmark-service", 'f', argRequired, tFWMark},
	{"scheduler", 's', argRequired, tScheduler},
	{"persistent", 'p', argOptional, tPersistent},
	{"netmask", 'M', argRequired, tNetmask},
	{"real-server", 'r', argRequired, tRealServer},
	{"masquerading", 'm', argNone, tMasq},
	{"ipip", 'i', argNone, tIPIP},
	{"gatewaying", 'g', argNone, tGate},
	{"fullnat", 0, argNone, tFullNAT},
	{"weight", 'w', argRequired, tWeight},
	{"u-threshold", 'x', argRequired, tUThreshold},
	{"l-threshold", 'y', argRequired, tLThreshold},
	{"numeric", 'n', argNone, tNumeric},
	{"connection", 'c', argNone, tConnection},
	{"mcast-interface", 0, argRequired, tMcastInterface},
	{"syncid", 0, argRequired, tSyncID},
	{"timeout", 0, argNone, tTimeout},
	{"daemon", 0, argNone, tDaemon},
	{"stats", 0, argNone, tStats},
	{"rate", 0, argNone, tRate},
	{"thresholds", 0, argNone, tThresholds},
	{"persistent-conn", 0, argNone, tPersistentConn},
	{"nosort", 0, argNone, tNoSort},
	{"sort", 0, argNone, tSort},
	{"exact", 'X', argNone, tExact},
	{"ipv6", '6', argNone, tIPv6},
	{"ops", 'o', argNone, tOps},
	{"pe", 0, argRequired, tPE},
	{"sched-flags", 'b', argRequired, tSchedFlags},
	{"mcast-group", 0, argRequired, tMcastGroup},
	{"mcast-port", 0, argRequired, tMcastPort},
	{"mcast-ttl", 0, argRequired, tMcastTTL},
	{"sync-maxlen", 0, argRequired, tSyncMaxlen},
	{"tun-info", 0, argNone, tTunInfo},
	{"tun-type", 0, argRequired, tTunType},
	{"tun-port", 0, argRequired, tTunPort},
	{"tun-nocsum", 0, argNone, tTunNoCsum},
	{"tun-csum", 0, argNone, tTunCsum},
	{"tun-remcsum", 0, argNone, tTunRemCsum},
	{"laddr", 'z', argRequired, tLaddr},
	{"ifname", 'F', argRequired, tIfname},
	{"add-mark", 0, argNone, tAddMark},
	{"del-mark", 0, argNone, tDelMark},
}

// dpvsOnly are DPVS ipvsadm's options (iqiyi/dpvs tools/ipvsadm/ipvsadm.c) that xlvsadm
// does not have, with why: a clear message instead of "unknown option" or a missing
// argument. DPVS's --fullnat is its -b, which ipvsadm (and xlvsadm) use for
// --sched-flags; -b without flags is taken for DPVS's (short).
var dpvsOnly = []struct {
	long  string
	short byte
	why   string
}{
	{"snat", 'J', "DPVS's SNAT forwarding is not supported by xlvs: use -m, -g, -i or --fullnat"},
	{"synproxy", 'j', "xlvs has no SYN proxy: remove it (the real servers answer SYNs themselves)"},
	{"match", 'H', "DPVS's SNAT match services are not supported by xlvs: give the service with -t or -u"},
	{"hash-target", 'Y', "it sets the key of DPVS's conhash scheduler, which xlvs does not have (use -s mh or -s sh)"},
	{"blklst", 'k', "DPVS's deny lists are not supported by xlvs: filter clients in front of the director"},
	{"add-blklst", 'U', "DPVS's deny lists are not supported by xlvs: filter clients in front of the director"},
	{"del-blklst", 0, "DPVS's deny lists are not supported by xlvs"},
	{"get-blklst", 'B', "DPVS's deny lists are not supported by xlvs"},
	{"icmp-service", 'q', "DPVS's ICMP services are not supported by xlvs: use -t, -u or --sctp-service"},
	{"sockpair", 0, "DPVS's connection lookup by socket pair is not supported by xlvs: list with -L -c"},
}

// dpvsError is the message for a DPVS ipvsadm option xlvsadm does not have, or nil.
func dpvsError(name string, long string, short byte) error {
	for _, o := range dpvsOnly {
		if (long != "" && o.long == long) || (short != 0 && o.short == short) {
			return fmt.Errorf("%s: DPVS ipvsadm's --%s is not supported by xlvsadm: %s", name, o.long, o.why)
		}
	}
	return nil
}

func findLong(name string) *optSpec {
	for i := range optTable {
		if optTable[i].long == name {
			return &optTable[i]
		}
	}
	return nil
}

func findShort(c byte) *optSpec {
	for i := range optTable {
		if optTable[i].short == c {
			return &optTable[i]
		}
	}
	return nil
}

// token is one option of the command line.
type token struct {
	spec   *optSpec
	arg    string
	hasArg bool
	name   string // as written, for messages: "-L", "--list"
}

// scanner splits a command line into options the way ipvsadm's option parser (popt)
// does: short options bundle ("-Ln"), a short option's argument may be attached ("-w5")
// or the next word, long options take "--name=value" or "--name value", an optional
// argument is taken only when attached or when the next word does not start with '-',
// words that are not options are collected as positional arguments, and "--" ends the
// options.
type scanner struct {
	args       []string
	i          int
	bundle     string // short options left in the current word
	positional []string
	noMore     bool
}

// next returns the next option; ok is false when there are none left.
func (s *scanner) next() (tok token, ok bool, err error) {
	if s.bundle != "" {
		return s.short()
	}
	for s.i < len(s.args) {
		a := s.args[s.i]
		s.i++
		switch {
		case s.noMore || a == "-" || !strings.HasPrefix(a, "-"):
			s.positional = append(s.positional, a)
		case a == "--":
			s.noMore = true
		case strings.HasPrefix(a, "--"):
			return s.long(a)
		default:
			s.bundle = a[1:]
			return s.short()
		}
	}
	return token{}, false, nil
}

func (s *scanner) long(a string) (token, bool, error) {
	name, val, hasVal := strings.Cut(a[2:], "=")
	spec := findLong(name)
	if spec == nil || name == "" {
		if err := dpvsError("--"+name, name, 0); err != nil && name != "" {
			return token{}, false, err
		}
		return token{}, false, fmt.Errorf("--%s: unknown option", name)
	}
	tok := token{spec: spec, name: "--" + name}
	switch spec.arg {
	case argNone:
		if hasVal {
			return token{}, false, fmt.Errorf("%s: option does not take an argument", tok.name)
		}
	case argRequired:
		if hasVal {
			tok.arg, tok.hasArg = val, true
		} else if s.i < len(s.args) {
			tok.arg, tok.hasArg = s.args[s.i], true
			s.i++
		} else {
			return token{}, false, fmt.Errorf("%s: missing argument", tok.name)
		}
	case argOptional:
		if hasVal {
			tok.arg, tok.hasArg = val, true
		} else {
			s.optionalNext(&tok)
		}
	}
	return tok, true, nil
}

func (s *scanner) short() (token, bool, error) {
	c := s.bundle[0]
	s.bundle = s.bundle[1:]
	spec := findShort(c)
	if spec == nil {
		s.bundle = ""
		if err := dpvsError("-"+string(c), "", c); err != nil {
			return token{}, false, err
		}
		return token{}, false, fmt.Errorf("-%c: unknown option", c)
	}
	tok := token{spec: spec, name: "-" + string(c)}
	if spec.tag == tSchedFlags && s.bundle == "" && (s.i >= len(s.args) || strings.HasPrefix(s.args[s.i], "-")) {
		// ipvsadm's -b takes scheduler flags; DPVS ipvsadm's -b (--fullnat) takes none.
		return token{}, false, errors.New("-b: no scheduler flags given: in ipvsadm -b is --sched-flags FLAGS (such as -b sh-port); " +
			"for DPVS ipvsadm's -b (--fullnat, FULLNAT forwarding) write --fullnat")
	}
	switch spec.arg {
	case argRequired:
		if s.bundle != "" {
			tok.arg, tok.hasArg = s.bundle, true
			s.bundle = ""
		} else if s.i < len(s.args) {
			tok.arg, tok.hasArg = s.args[s.i], true
			s.i++
		} else {
			return token{}, false, fmt.Errorf("%s: missing argument", tok.name)
		}
	case argOptional:
		if s.bundle != "" {
			tok.arg, tok.hasArg = s.bundle, true
			s.bundle = ""
		} else {
			s.optionalNext(&tok)
		}
	}
	return tok, true, nil
}

func (s *scanner) optionalNext(tok *token) {
	if s.i < len(s.args) && !s.noMore && !strings.HasPrefix(s.args[s.i], "-") {
		tok.arg, tok.hasArg = s.args[s.i], true
		s.i++
	}
}

// Option columns of ipvsadm's command/option compatibility table, in its order.
const (
	optNumeric = iota
	optConnection
	optService
	optScheduler
	optPersistent
	optNetmask
	optServer
	optForward
	optWeight
	optUThreshold
	optLThreshold
	optMcast
	optTimeout
	optDaemon
	optStats
	optRate
	optThresholds
	optPersistentConn
	optNoSort
	optSyncID
	optExact
	optOnePacket
	optPE
	optSchedFlags
	optMcastGroup
	optMcastPort
	optMcastTTL
	optSyncMaxlen
	optTunInfo
	optTunType
	optTunPort
	optTunNoCsum
	optTunCsum
	optTunRemCsum
	optLaddr  // DPVS's "local-address"
	optIfname // DPVS's "ifname"
	numOpts
)

// optNames are ipvsadm's names of the option columns, as its messages use them.
var optNames = [numOpts]string{
	"numeric", "connection", "service-address", "scheduler", "persistent", "netmask",
	"real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
	"mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds",
	"persistent-conn", "nosort", "syncid", "exact", "ops", "pe", "sched-flags",
	"mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
	"tun-port", "tun-nocsum", "tun-csum", "tun-remcsum", "local-address", "ifname",
}

// compat is ipvsadm's table of legal command/option combinations, one string per command
// with one character per option column above: '+' required, 'x' illegal, '1' at most one
// of the '1' options, ' ' optional. --dataplane-stats is xlvs's and takes no options. The
// local-address commands and the last two columns are DPVS ipvsadm's, except that -F
// (informative here) is optional where DPVS requires it.
var compat = map[Kind]string{
	//                  -n-csvc-s-p-M-rfwd-w-x-y-mctotdmn-strtthrpcsrtsid-exopspe-bgrpprtttlsiztinftyptprnocsumrem-z-F
	KindAddService:     "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxx",
	KindEditService:    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxx",
	KindDelService:     "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindClear:          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindList:           " 11xxxxxxxxx11       xxxxxxx xxxxxxx",
	KindAddDest:        "xx+xxx+    xxxxxxxxxxxxxxxxxx     xx",
	KindDelDest:        "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindEditDest:       "xx+xxx+    xxxxxxxxxxxxxxxxxx     xx",
	KindSetTimeouts:    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindStartDaemon:    "xxxxxxxxxxx xxxxxxx xxxx    xxxxxxxx",
	KindStopDaemon:     "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxxx",
	KindRestore:        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindSave:           " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindZero:           "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindDataplaneStats: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	KindAddLaddr:       "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ ",
	KindDelLaddr:       "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ ",
	KindGetLaddr:       "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}

// checkCompat applies the table as ipvsadm does: columns in order, the first violation
// wins.
func checkCompat(k Kind, opts uint64) error {
	row := compat[k]
	name := k.String()
	first := -1
	for j := range numOpts {
		set := opts&(1<<j) != 0
		switch {
		case !set && row[j] == '+':
			return fmt.Errorf("You need to supply the '%s' option for the '%s' command", optNames[j], name)
		case set && row[j] == 'x':
			return fmt.Errorf("Illegal '%s' option with the '%s' command", optNames[j], name)
		case set && row[j] == '1':
			if first < 0 {
				first = j
				continue
			}
			return fmt.Errorf("The option '%s' conflicts with the '%s' option in the '%s' command", optNames[j], optNames[first], name)
		}
	}
	return nil
}
