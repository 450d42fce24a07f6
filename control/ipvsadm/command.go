package ipvsadm

import (
	"xlvs/control/api"
)

// Kind is the command of an xlvsadm invocation.
type Kind int

// Commands, in ipvsadm's order, then xlvs's own.
const (
	KindAddService     Kind = iota + 1 // -A, --add-service
	KindEditService                    // -E, --edit-service
	KindDelService                     // -D, --delete-service
	KindClear                          // -C, --clear
	KindList                           // -L, -l, --list, or no arguments
	KindAddDest                        // -a, --add-server
	KindDelDest                        // -d, --delete-server
	KindEditDest                       // -e, --edit-server
	KindSetTimeouts                    // --set tcp tcpfin udp
	KindStartDaemon                    // --start-daemon master|backup
	KindStopDaemon                     // --stop-daemon master|backup
	KindRestore                        // -R, --restore: rules from stdin (see ParseRules)
	KindSave                           // -S, --save
	KindZero                           // -Z, --zero
	KindDataplaneStats                 // --dataplane-stats (xlvs)
	KindHelp                           // -h, --help
	KindVersion                        // -v, -V, --version
	KindAddLaddr                       // -P, --add-laddr (DPVS ipvsadm): a FULLNAT local address
	KindDelLaddr                       // -Q, --del-laddr (DPVS ipvsadm)
	KindGetLaddr                       // -G, --get-laddr (DPVS ipvsadm): list local addresses
	KindAddMark                        // --add-mark (xlvs): a firewall-mark rule
	KindDelMark                        // --del-mark (xlvs)
)

// cmdNames are ipvsadm's names of the commands, as its messages use them.
var cmdNames = [...]string{
	KindAddService:     "add-service",
	KindEditService:    "edit-service",
	KindDelService:     "delete-service",
	KindClear:          "flush",
	KindList:           "list",
	KindAddDest:        "add-server",
	KindDelDest:        "delete-server",
	KindEditDest:       "edit-server",
	KindSetTimeouts:    "set",
	KindStartDaemon:    "start-daemon",
	KindStopDaemon:     "stop-daemon",
	KindRestore:        "restore",
	KindSave:           "save",
	KindZero:           "zero",
	KindDataplaneStats: "dataplane-stats",
	KindHelp:           "help",
	KindVersion:        "version",
	KindAddLaddr:       "add-laddr",
	KindDelLaddr:       "del-laddr",
	KindGetLaddr:       "get-laddr",
	KindAddMark:        "add-mark",
	KindDelMark:        "del-mark",
}

// String is ipvsadm's name of the command ("add-service", "list", ...).
func (k Kind) String() string {
	if k > 0 && int(k) < len(cmdNames) {
		return cmdNames[k]
	}
	return "unknown"
}

// ListOptions are the listing and formatting options of -L and -S.
type ListOptions struct {
	Numeric        bool // -n: addresses and ports as numbers
	Connections    bool // -c: the connection table
	Timeout        bool // --timeout
	Daemon         bool // --daemon
	Stats          bool // --stats
	Rate           bool // --rate
	Thresholds     bool // --thresholds
	PersistentConn bool // --persistent-conn
	TunInfo        bool // --tun-info
	NoSort         bool // --nosort
	Exact          bool // --exact
}

// Command is a parsed xlvsadm command line.
type Command struct {
	Kind Kind
	// Requests are sent to the daemon in order; Format takes their responses in the same
	// order. Empty for KindHelp, KindVersion and KindRestore (the caller reads the rules
	// with ParseRules).
	Requests []api.Request
	// List holds the listing options (KindList; Numeric also for KindSave).
	List ListOptions
	// Service narrows -L and -Z to one service; nil means all.
	Service *api.ServiceKey
	// Resolver turns addresses and ports into names for listings without -n; nil means
	// SystemResolver.
	Resolver Resolver
}

func (c *Command) resolver() Resolver {
	if c.Resolver == nil {
		return SystemResolver
	}
	return c.Resolver
}
