package keepalived

import (
	"fmt"
	"net/netip"
	"time"
)

// Defaults keepalived applies when a keyword is absent (keepalived.conf(5), check_data.c,
// check_api.c). Values the configuration sets explicitly are never replaced by these.
const (
	DefaultDelayLoop          = 60 * time.Second // delay_loop
	DefaultConnectTimeout     = 5 * time.Second  // connect_timeout
	DefaultRetry              = 1                // retry, for every checker but MISC_CHECK
	DefaultMiscRetry          = 0                // retry of a MISC_CHECK
	DefaultDelayBeforeRetry   = 1 * time.Second  // delay_before_retry, TCP_CHECK and MISC_CHECK
	DefaultHTTPDelayBeforeTry = 3 * time.Second  // delay_before_retry, HTTP_GET and SSL_GET
	DefaultWeight             = 1                // weight of a real server
	DefaultQuorum             = 1                // quorum
	DefaultPersistenceTimeout = 360              // persistence_timeout without a value, seconds
	DefaultScheduler          = "wlc"            // lb_algo / lvs_sched
	DefaultStatusMin          = 200              // status_code when none is given: 200-299
	DefaultStatusMax          = 299
)

// Forwarding methods (lb_kind / lvs_method).
const (
	MethodNAT = "NAT"
	MethodDR  = "DR"
	MethodTUN = "TUN"
	// MethodFNAT is FULLNAT, as DPVS's keepalived spells it ("FULLNAT" is read as FNAT
	// too): source and destination are both rewritten, the source to one of the virtual
	// server's local addresses (laddr_group_name).
	MethodFNAT = "FNAT"
)

// Protocols of a virtual server.
const (
	ProtoTCP  = "TCP"
	ProtoUDP  = "UDP"
	ProtoSCTP = "SCTP"
)

// Checker types xlvs runs.
const (
	CheckTCP  = "TCP_CHECK"
	CheckHTTP = "HTTP_GET"
	CheckSSL  = "SSL_GET"
	CheckMisc = "MISC_CHECK"
	CheckSMTP = "SMTP_CHECK" // greeting 220, HELO answered 250, QUIT answered
	CheckDNS  = "DNS_CHECK"  // a DNS query over UDP answered without error
	CheckUDP  = "UDP_CHECK"  // a UDP datagram not refused (ICMP unreachable), or answered
	CheckPing = "PING_CHECK" // an ICMP or ICMPv6 echo answered
	CheckFile = "FILE_CHECK" // the number in a track_file: a fault or a weight change
)

// Defaults of the checkers added in keepalived 2.x (check_dns.h, check_smtp.h,
// check_udp.c, keepalived.conf(5)).
const (
	DefaultDNSRetry    = 3                            // retry of a DNS_CHECK
	DefaultDNSType     = "SOA"                        // type of a DNS_CHECK query
	DefaultDNSName     = "."                          // name of a DNS_CHECK query
	DefaultHeloName    = "smtpchecker.keepalived.org" // helo_name of an SMTP_CHECK
	DefaultSMTPPort    = 25                           // SMTP_CHECK port when the real server has none
	DefaultMaxReplyLen = 255                          // max_reply_length of a UDP_CHECK
	DefaultTrackWeight = 1                            // weight of a track_file block
)

// Pos is where something was written: a file name as the configuration named it
// (absolute, or relative to the process's directory) and a 1-based line (0 for the file
// as a whole).
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Warning is something the parser accepted but xlvs does not act on, or corrected as
// keepalived would (a missing protocol, a quorum above the total weight, ...).
type Warning struct {
	Pos Pos
	Msg string
}

func (w Warning) String() string { return fmt.Sprintf("%s: warning: %s", w.Pos, w.Msg) }

// Config is the LVS part of a keepalived.conf: its virtual servers in file order, with
// every default and inherited value resolved (virtual server → real server → checker).
type Config struct {
	VirtualServers []VirtualServer
	// SSL is the top-level SSL block (client certificate for SSL_GET), nil when absent.
	SSL *SSL
	// LocalAddressGroups are the top-level local_address_group blocks (DPVS's keepalived),
	// in file order.
	LocalAddressGroups []LocalAddressGroup
	// Groups are the top-level virtual_server_group blocks, in file order. Their
	// address entries are expanded into VirtualServers by "virtual_server group NAME".
	Groups []VirtualServerGroup
	// TrackFiles are the top-level track_file blocks (FILE_CHECK's files), in file order.
	TrackFiles []TrackFile
	// SyncDaemon is global_defs' lvs_sync_daemon, nil when absent.
	SyncDaemon *SyncDaemon
	// Warnings, in file order.
	Warnings []Warning
	// Files lists every file read: the main file first, then includes in reading order.
	Files []string
}

// ServiceKey identifies a virtual server: protocol, address and port, or a firewall
// mark ("virtual_server fwmark N", a group's "fwmark N" entry): FWMark set, Addr the
// unspecified address of the service's family (IPv4 unless the entry, ip_family or the
// real servers say IPv6), Port 0; Protocol is then the checkers' and the OPS rule's.
type ServiceKey struct {
	Protocol string // ProtoTCP, ProtoUDP or ProtoSCTP
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
}

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		if k.Addr.Is6() {
			return fmt.Sprintf("FWM %d IPv6", k.FWMark)
		}
		return fmt.Sprintf("FWM %d", k.FWMark)
	}
	return fmt.Sprintf("%s %s", k.Protocol, netip.AddrPortFrom(k.Addr, k.Port))
}

// Method is a forwarding method with its tunnel options.
type Method struct {
	Kind     string // MethodNAT, MethodDR, MethodTUN or MethodFNAT
	TunType  string // "ipip" (default for TUN), "gue" or "gre"
	TunPort  uint16 // gue only
	TunFlags string // "", "nocsum", "csum" or "remcsum"
}

func (m Method) String() string {
	s := m.Kind
	if m.Kind == MethodTUN && m.TunType != "" && m.TunType != "ipip" {
		s += " type " + m.TunType
		if m.TunType == "gue" {
			s += fmt.Sprintf(" port %d", m.TunPort)
		}
		if m.TunFlags != "" {
			s += " " + m.TunFlags
		}
	}
	return s
}

// VirtualServer is one virtual_server block, or one member (address and port) of the
// virtual_server_group a "virtual_server group NAME" block names: keepalived makes one
// IPVS service per address and port of the group, all with the block's settings and
// real servers.
type VirtualServer struct {
	Pos Pos
	ServiceKey
	// Group is the virtual_server_group this service is a member of, "" for a
	// "virtual_server IP PORT" block; GroupEntry is the group's line that lists it.
	Group      string
	GroupEntry Pos
	Scheduler  string   // lb_algo / lvs_sched, DefaultScheduler when absent
	SchedFlags []string // flag-1, flag-2, flag-3, sh-port, sh-fallback, mh-port, mh-fallback
	OnePacket  bool     // ops (UDP only)
	Hashed     bool     // hashed
	Method     Method   // lb_kind / lvs_method: the default of the real servers, NAT when absent
	// PersistenceTimeout in seconds; 0 means not persistent.
	PersistenceTimeout uint32
	// PersistenceGranularity is the -M mask: an IPv4 netmask ("255.255.255.0") or an IPv6
	// prefix length ("64"); "" means a single address.
	PersistenceGranularity string
	PersistenceEngine      string // persistence_engine
	DelayLoop              time.Duration
	Quorum                 uint32
	Hysteresis             uint32
	QuorumUp               string // quorum_up script (not run by xlvs)
	QuorumDown             string // quorum_down script (not run by xlvs)
	Alpha                  bool
	Omega                  bool
	HASuspend              bool
	VirtualHost            string
	SorryServer            *SorryServer
	RealServers            []RealServer
	// LaddrGroup is the laddr_group_name of a virtual server that forwards with FNAT (the
	// virtual server's method, or a real or sorry server's); "" otherwise.
	LaddrGroup string
	// LocalAddrs are the FULLNAT local addresses: every address of LaddrGroup of the
	// virtual server's family, ranges expanded, in the group's order; nil without FNAT.
	LocalAddrs []netip.Addr
}

// VirtualServerGroup is one virtual_server_group block.
type VirtualServerGroup struct {
	Pos     Pos
	Name    string
	Entries []GroupEntry
}

// GroupEntry is one line of a virtual_server_group: an address range with a port
// (0: every port, for a persistent service), or a firewall mark.
type GroupEntry struct {
	Pos Pos
	// First and Last bound the addresses, Last included (First == Last for one
	// address); both invalid for a fwmark entry.
	First, Last netip.Addr
	Port        uint16
	// FWMark is the mark of a "fwmark N [inet|inet6]" entry (0 otherwise); FWMarkFamily
	// is 4, 6 or 0 (not given: the block's ip_family, else its real servers' family).
	FWMark       uint32
	FWMarkFamily int
	IsFWMark     bool
}

// Addrs calls f with each address of the entry in order until f returns false.
func (e GroupEntry) Addrs(f func(netip.Addr) bool) {
	if e.IsFWMark {
		return
	}
	for a := e.First; a.IsValid() && a.Compare(e.Last) <= 0; a = a.Next() {
		if !f(a) {
			return
		}
	}
}

// TrackFile is one track_file block: a file holding a number, read by FILE_CHECK.
type TrackFile struct {
	Pos     Pos
	Name    string
	Path    string
	Weight  int32 // default weight of the FILE_CHECKs that track it, DefaultTrackWeight when absent
	Reverse bool  // weight ... reverse
	// Init: init_file was given: the file is created with InitValue when it does not
	// exist (or always, with Overwrite) before it is first read.
	Init      bool
	InitValue int64
	Overwrite bool
}

// LocalAddressGroup is one local_address_group block: the director's addresses that
// FULLNAT connections of a virtual server naming it come from. Interface names written
// after the addresses are not kept: xlvs uses each address wherever the kernel has it.
type LocalAddressGroup struct {
	Pos  Pos
	Name string
	// Addrs are the addresses in the order written, ranges expanded, each once.
	Addrs []netip.Addr
}

// SorryServer is the server that takes the traffic while the quorum is lost.
type SorryServer struct {
	Pos     Pos
	Addr    netip.AddrPort
	Weight  int32 // always 1, as keepalived sets it
	Inhibit bool  // sorry_server_inhibit: listed with weight 0 while not in use
	Method  Method
}

// RealServer is one real_server block.
type RealServer struct {
	Pos        Pos
	Addr       netip.AddrPort
	Weight     int32
	Method     Method
	Inhibit    bool // inhibit_on_failure: weight 0 instead of removal
	UThreshold uint32
	LThreshold uint32
	NotifyUp   string // notify_up script (not run by xlvs)
	NotifyDown string // notify_down script (not run by xlvs)
	Checkers   []Checker
}

// Checker is one checker block (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK,
// DNS_CHECK, UDP_CHECK, PING_CHECK or FILE_CHECK) with every timing value resolved.
type Checker struct {
	Pos  Pos
	Type string // CheckTCP, CheckHTTP, ...

	// Connection options (not MISC_CHECK). Connect defaults to the real server's address.
	Connect  netip.AddrPort
	BindTo   netip.Addr // bindto; invalid when absent
	BindPort uint16     // bind_port
	BindIf   string     // bind_if
	FWMark   uint32     // fwmark set on the checker's socket (SO_MARK)

	ConnectTimeout   time.Duration
	Retry            uint32
	DelayBeforeRetry time.Duration
	DelayLoop        time.Duration
	// Warmup is the upper bound of the random delay before the first check.
	Warmup time.Duration
	// Alpha: the checker starts failed and must succeed once before the server is used.
	Alpha bool

	// HTTP_GET and SSL_GET.
	HTTPProtocol string // "1.0" (default), "1.0C" or "1.1"
	EnableSNI    bool
	SNIName      string // server name sent when EnableSNI; defaults to the virtual host
	URLs         []URL

	// MISC_CHECK.
	MiscPath    []string // program and arguments
	MiscTimeout time.Duration
	MiscDynamic bool
	User        string // user [group] to run the script as; "" runs as the daemon
	Group       string

	// SMTP_CHECK.
	HeloName string

	// DNS_CHECK: the query's type (A, NS, CNAME, SOA, MX, TXT or AAAA) and name.
	DNSType string
	DNSName string

	// UDP_CHECK. Payload is sent (random bytes when nil). With RequireReply a reply of
	// MinReplyLen to MaxReplyLen bytes must come, matching ReplyData on the bytes both
	// have, except the bits set in ReplyMask (the x nibbles of require_reply).
	Payload      []byte
	RequireReply bool
	ReplyData    []byte
	ReplyMask    []byte
	MinReplyLen  int
	MaxReplyLen  int

	// FILE_CHECK: the track_file it reads and the weight applied to the file's number
	// (0: a non-zero number is a failure, or with FileReverse a zero one; otherwise the
	// number times the weight, negated with FileReverse, is added to the real server's
	// weight).
	TrackFile   *TrackFile
	FileWeight  int32
	FileReverse bool
}

// URL is one url block of an HTTP_GET or SSL_GET.
type URL struct {
	Path string
	// Digest is the expected MD5 of the body in lower-case hex, "" when not checked.
	Digest string
	// StatusCodes accepted; DefaultStatusMin-DefaultStatusMax when none was given.
	StatusCodes []StatusRange
	// VirtualHost sent in the Host header (url, checker, real server, then virtual
	// server setting); "" sends the connect address.
	VirtualHost string
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// SSL is the top-level SSL block.
type SSL struct {
	Pos         Pos
	Password    string
	CA          string
	Certificate string
	Key         string
}
