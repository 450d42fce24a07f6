package api

import "net/netip"

// Version is the protocol version carried in every Request and Response. A daemon refuses a
// request whose Version it does not speak, with an error that names both versions.
const Version = 1

// DefaultSocket is the daemon's control socket when neither --socket nor XLVS_SOCKET is set.
const DefaultSocket = "/run/xlvs/xlvsd.sock"

// EnvSocket names the environment variable that overrides DefaultSocket for both the
// daemon and the CLI.
const EnvSocket = "XLVS_SOCKET"

// Protocols of a virtual service, as ipvsadm names them in -S output (-t, -u, -f,
// --sctp-service).
const (
	ProtoTCP    = "tcp"
	ProtoUDP    = "udp"
	ProtoFWMark = "fwmark"
	ProtoSCTP   = "sctp"
)

// Forwarding methods of a destination (ipvsadm -g, -m, -i; FULLNAT is xlvs/DPVS's).
const (
	MethodRoute   = "route"   // -g, direct routing (ipvsadm's default)
	MethodMasq    = "masq"    // -m, NAT
	MethodTunnel  = "tunnel"  // -i, IPIP
	MethodLocal   = "local"   // destination is the director itself
	MethodFullNAT = "fullnat" // --fullnat
)

// Tunnel types of a MethodTunnel destination (Dest.TunType; ipvsadm --tun-type). Empty
// means TunIPIP.
const (
	TunIPIP = "ipip"
	TunGUE  = "gue"
	TunGRE  = "gre"
)

// Tunnel checksum modes (Dest.TunFlags; ipvsadm --tun-nocsum, --tun-csum, --tun-remcsum).
// Empty means TunNoCsum. ipip has none; gre allows nocsum and csum; gue all three.
const (
	TunNoCsum  = "nocsum"
	TunCsum    = "csum"
	TunRemCsum = "remcsum"
)

// ServiceKey identifies a virtual service: protocol and VIP:port, or a firewall mark.
type ServiceKey struct {
	Protocol string     `json:"protocol"`
	Addr     netip.Addr `json:"addr,omitzero"`
	Port     uint16     `json:"port,omitempty"`
	FWMark   uint32     `json:"fwmark,omitempty"`
	// Family is 4 or 6; it matters only for fwmark services (-f with -6).
	Family int `json:"family,omitempty"`
}

// Service is a virtual service with its destinations in the daemon's list order (the
// kernel's: the newest destination first). Listings sort unless told not to.
type Service struct {
	ServiceKey
	Scheduler  string   `json:"scheduler"`
	SchedFlags []string `json:"sched_flags,omitempty"` // sh-fallback, sh-port, mh-fallback, mh-port
	Persistent bool     `json:"persistent,omitempty"`
	Timeout    uint32   `json:"timeout,omitempty"` // persistence timeout in seconds
	// Netmask is the persistence granularity: an IPv4 netmask ("255.255.255.0") or, for
	// IPv6, a prefix length ("64"). Empty means /32 or /128.
	Netmask   string `json:"netmask,omitempty"`
	OnePacket bool   `json:"ops,omitempty"`
	PE        string `json:"pe,omitempty"`
	Dests     []Dest `json:"dests,omitempty"`
	Stats     Stats  `json:"stats,omitzero"`
}

// Dest is a real server of a service.
type Dest struct {
	Addr       netip.Addr `json:"addr"`
	Port       uint16     `json:"port"`
	Method     string     `json:"method"`
	Weight     int32      `json:"weight"`
	UThreshold uint32     `json:"u_threshold,omitempty"`
	LThreshold uint32     `json:"l_threshold,omitempty"`
	TunType    string     `json:"tun_type,omitempty"` // ipip (default), gue, gre
	TunPort    uint16     `json:"tun_port,omitempty"`
	TunFlags   string     `json:"tun_flags,omitempty"`

	// Read-only, filled by the daemon in listings.
	ActiveConns  uint32 `json:"active_conns,omitempty"`
	InactConns   uint32 `json:"inact_conns,omitempty"`
	PersistConns uint32 `json:"persist_conns,omitempty"`
	Stats        Stats  `json:"stats,omitzero"`
}

// Stats are IPVS's counters and rate estimates for a service or a destination.
// Rates are per second (bytes for BPS), estimated as the kernel's ip_vs_est.c does.
type Stats struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"inpkts"`
	OutPkts  uint64 `json:"outpkts"`
	InBytes  uint64 `json:"inbytes"`
	OutBytes uint64 `json:"outbytes"`
	CPS      uint64 `json:"cps"`
	InPPS    uint64 `json:"inpps"`
	OutPPS   uint64 `json:"outpps"`
	InBPS    uint64 `json:"inbps"`
	OutBPS   uint64 `json:"outbps"`
}

// Timeouts are the --set / --timeout values in seconds; 0 in a set request keeps a value.
type Timeouts struct {
	TCP    uint32 `json:"tcp"`
	TCPFin uint32 `json:"tcpfin"`
	UDP    uint32 `json:"udp"`
}

// Conn is one entry of the connection table as -L -c shows it.
type Conn struct {
	Protocol string `json:"protocol"` // "TCP", "UDP", "SCTP"
	State    string `json:"state"`    // ESTABLISHED, SYN_RECV, ... ; UDP for UDP; INIT1, C-SENT, ... for SCTP
	// ExpiresMs is the time left before the entry expires, in milliseconds.
	ExpiresMs int64          `json:"expires_ms"`
	Client    netip.AddrPort `json:"client"`
	Virtual   netip.AddrPort `json:"virtual"`
	Dest      netip.AddrPort `json:"dest"`
	// Local is a FULLNAT connection's local address and port, the source the director
	// gives its packets to the real server (ipvsadm does not show it); unset otherwise.
	Local netip.AddrPort `json:"local,omitzero"`
	// Template marks a persistence template (-L -c shows them with protocol "TCP"/"UDP" and
	// state NONE, as IPVS does); FWMark is set for fwmark templates.
	Template bool   `json:"template,omitempty"`
	FWMark   uint32 `json:"fwmark,omitempty"`
}

// SyncDaemon describes a running connection-sync daemon (--start-daemon / --daemon).
type SyncDaemon struct {
	State     string `json:"state"` // master or backup
	Interface string `json:"mcast_interface"`
	SyncID    uint8  `json:"syncid"`
	MaxLen    int    `json:"sync_maxlen,omitempty"`
	Group     string `json:"mcast_group,omitempty"`
	Port      uint16 `json:"mcast_port,omitempty"`
	TTL       uint8  `json:"mcast_ttl,omitempty"`
	// VRRPInstance is the keepalived VRRP instance a daemon started from keepalived.conf's
	// lvs_sync_daemon belongs to (informative; ipvsadm does not show it).
	VRRPInstance string `json:"vrrp_instance,omitempty"`
}

// Info describes the daemon.
type Info struct {
	Version   string `json:"version"`    // xlvs version
	IPVSLike  string `json:"ipvs_like"`  // "1.2.1": the IPVS version string the listing header shows
	ConnTable int    `json:"conn_table"` // the "size=" of the listing header
	Conns     int    `json:"conns"`      // entries in the connection table now
}

// QueueStats are one AF_XDP socket's counters (ethtool -S style), for --dataplane-stats.
type QueueStats struct {
	Interface string            `json:"interface"`
	Queue     int               `json:"queue"`
	Counters  map[string]uint64 `json:"counters"`
}

// Operations a Request carries in Op.
const (
	OpInfo           = "info"
	OpAddService     = "add-service"
	OpEditService    = "edit-service"
	OpDelService     = "del-service"
	OpClear          = "clear"
	OpAddDest        = "add-dest"
	OpEditDest       = "edit-dest"
	OpDelDest        = "del-dest"
	OpList           = "list"            // Service (optional) narrows to one service
	OpZero           = "zero"            // Service (optional) narrows to one service
	OpSetTimeouts    = "set-timeouts"    // Timeouts; 0 keeps a value
	OpGetTimeouts    = "get-timeouts"    //
	OpListConns      = "list-conns"      //
	OpRestore        = "restore"         // Batch, applied atomically: all or nothing
	OpStartDaemon    = "start-daemon"    // Daemon
	OpStopDaemon     = "stop-daemon"     // Daemon.State
	OpGetDaemon      = "get-daemon"      //
	OpDataplaneStats = "dataplane-stats" //
)

// Request is one call to the daemon. Exactly the fields its Op needs are set.
type Request struct {
	Version  int         `json:"version"`
	Op       string      `json:"op"`
	Service  *Service    `json:"service,omitempty"` // key (+ attributes for add/edit)
	Dest     *Dest       `json:"dest,omitempty"`
	Timeouts *Timeouts   `json:"timeouts,omitempty"`
	Daemon   *SyncDaemon `json:"daemon,omitempty"`
	// Batch holds the requests of a restore (-R), in input order; Line gives each one's
	// input line number so an error can name it.
	Batch []Request `json:"batch,omitempty"`
	Line  int       `json:"line,omitempty"`
	// LocalAddr is the FULLNAT local address of OpAddLocalAddr / OpDelLocalAddr; Service
	// names the service it belongs to (OpGetLocalAddrs: Service alone, or nil for all).
	LocalAddr *LocalAddr `json:"laddr,omitempty"`
	// Mark is the rule of OpAddMark and OpDelMark.
	Mark *MarkRule `json:"mark,omitempty"`
}

// Error codes in Response.Error.Code. The CLI maps them to ipvsadm's messages and exit
// status; Message always says what was wrong.
const (
	ErrCodeInvalid        = "invalid"         // bad argument (address, port, weight, scheduler, ...)
	ErrCodeNoService      = "no-service"      // service not defined
	ErrCodeServiceExists  = "service-exists"  // service already exists
	ErrCodeNoDest         = "no-dest"         // no such destination
	ErrCodeDestExists     = "dest-exists"     // destination already exists
	ErrCodeNoLocalAddr    = "no-laddr"        // no such FULLNAT local address in the service
	ErrCodeNoMark         = "no-mark"         // no such firewall-mark rule (--del-mark)
	ErrCodeMarkExists     = "mark-exists"     // the firewall-mark rule is already there (--add-mark)
	ErrCodeLaddrExists    = "laddr-exists"    // the FULLNAT local address is already in the service
	ErrCodeNotImplemented = "not-implemented" // valid request this daemon cannot do yet
	ErrCodeDaemonExists   = "daemon-exists"   // --start-daemon of a role already running (the kernel's EEXIST)
	ErrCodeNoDaemon       = "no-daemon"       // --stop-daemon of a role not running (the kernel's ESRCH)
	ErrCodeVersion        = "version"         // protocol version mismatch
	ErrCodeInternal       = "internal"
)

// Error is a failed request's reason.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"` // for restore: the offending input line
}

func (e *Error) Error() string { return e.Message }

// Response answers one Request.
type Response struct {
	Version   int          `json:"version"`
	Error     *Error       `json:"error,omitempty"`
	Info      *Info        `json:"info,omitempty"`
	Services  []Service    `json:"services,omitempty"`
	Timeouts  *Timeouts    `json:"timeouts,omitempty"`
	Conns     []Conn       `json:"conns,omitempty"`
	Daemons   []SyncDaemon `json:"daemons,omitempty"`
	Dataplane []QueueStats `json:"dataplane,omitempty"`
	XDPStats  []QueueStats `json:"xdp,omitempty"` // per interface, Queue -1
	// Sync answers OpDataplaneStats too: the connection-sync daemon's counters, Interface
	// "master" or "backup", Queue -1.
	Sync []QueueStats `json:"sync,omitempty"`
	// LocalAddrs answers OpGetLocalAddrs: the FULLNAT local addresses of the service(s).
	LocalAddrs []LocalAddr `json:"laddrs,omitempty"`
	// Marks answers OpListMarks: the firewall-mark rules in list order.
	Marks []MarkRule `json:"marks,omitempty"`
}

// FULLNAT local-address pool operations (DPVS ipvsadm's --add-laddr, --del-laddr,
// --get-laddr). A local address belongs to one virtual service; FULLNAT destinations of
// that service see connections coming from it.
const (
	OpAddLocalAddr  = "add-laddr"  // Service, LocalAddr
	OpDelLocalAddr  = "del-laddr"  // Service, LocalAddr
	OpGetLocalAddrs = "get-laddrs" // Service (optional): Response.LocalAddrs
)

// LocalAddr is one FULLNAT local address (-z LIP) of a virtual service. Conns and
// PortConflicts are filled in answers only: the connections currently using the address
// and how many times the port allocator found no free port on it (DPVS's "port_conflict").
type LocalAddr struct {
	Service       ServiceKey `json:"service"`
	Addr          netip.Addr `json:"addr"`
	Ifname        string     `json:"ifname,omitempty"` // DPVS's -F IFNAME; optional, informative
	Conns         uint64     `json:"conns,omitempty"`
	PortConflicts uint64     `json:"port_conflicts,omitempty"`
}

// Firewall-mark rule operations (xlvsadm --add-mark, --del-mark; listed by -L, saved by
// -S). XDP runs before netfilter, so xlvs gives packets their marks itself, in place of
// "iptables -t mangle -A PREROUTING ... -j MARK --set-mark N" rules; a fwmark service
// (-f N) takes the packets marked N. OpClear removes every rule with the services.
const (
	OpAddMark   = "add-mark"   // Mark: appended to the list
	OpDelMark   = "del-mark"   // Mark: the rule equal to it
	OpListMarks = "list-marks" // Response.Marks, in list order
)

// MarkRule gives Mark to a client's packets of Protocol to an address of Prefix whose
// destination port is in Ports (none: every port). When several rules match a packet,
// the one added last gives the mark, as the last matching MARK rule of an iptables chain.
type MarkRule struct {
	Protocol string       `json:"protocol"` // ProtoTCP or ProtoUDP
	Prefix   netip.Prefix `json:"prefix"`   // an address is a /32 or /128
	Ports    []PortRange  `json:"ports,omitempty"`
	Mark     uint32       `json:"mark"`
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct {
	Lo uint16 `json:"lo"`
	Hi uint16 `json:"hi"`
}
