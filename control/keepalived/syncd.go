package keepalived

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// SyncDaemon is global_defs' lvs_sync_daemon: the IPVS connection-sync daemon keepalived
// runs.
//
//	lvs_sync_daemon INTERFACE [inst VRRP_INSTANCE] [id SYNCID] [maxlen N] [port N] [ttl N] [group ADDR]
//	lvs_sync_daemon INTERFACE VRRP_INSTANCE [SYNCID] ...   (the older form, still read)
//
// As keepalived (keepalived/core/global_parser.c, lvs_syncd_handler, of
// Postrantor/keepalived at ac200bdadc6a205f991fcf9311fbf461c9833b6c): the interface name
// is shorter than 16 bytes (IP_VS_IFNAME_MAXLEN), id is 0..255, maxlen 1..65507, port
// 1..65535, ttl 1..255, group an IPv4 or IPv6 multicast address. A second
// lvs_sync_daemon is ignored with a Warning; so is one naming a vrrp_instance the file
// does not have (keepalived clears its lvs_syncd configuration then).
//
// With a VRRP instance, keepalived's VRRP process runs the backup daemon while the
// instance is not MASTER and the master daemon while it is; without one, keepalived's
// checker runs both. xlvs does no VRRP: xlvsd runs both roles either way and learns the
// instance's state from keepalived's notify FIFO (NotifyFIFO; see control.Keepalived).
type SyncDaemon struct {
	Pos       Pos
	Interface string
	// VRRPInstance is the vrrp_instance the daemon follows ("" when none).
	VRRPInstance string
	// SyncID is id, or the instance's virtual_router_id when id is not given (0 without
	// an instance), as keepalived defaults it.
	SyncID uint8
	MaxLen int        // 0: the kernel's default (from the MTU)
	Port   uint16     // 0: the kernel's default, 8848
	TTL    uint8      // 0: the kernel's default, 1
	Group  netip.Addr // invalid: the kernel's default, 224.0.0.81
	// NotifyFIFO is the FIFO keepalived writes its VRRP state changes to: global_defs'
	// vrrp_notify_fifo, else notify_fifo ("" when neither is given, or without an
	// instance).
	NotifyFIFO string
}

// notifyFIFO is a notify FIFO statement of global_defs.
type notifyFIFO struct {
	path string
	pos  Pos
}

// ipvsIfnameMax is IP_VS_IFNAME_MAXLEN.
const ipvsIfnameMax = 16

// syncState is what the parser gathers for lvs_sync_daemon until the file is read: the
// statement and the virtual_router_id of each vrrp_instance.
type syncState struct {
	sd       *SyncDaemon
	idSet    bool
	vrids    map[string]uint8
	vridSeen map[string]bool
	// fifos are the notify FIFOs by keyword (vrrp_notify_fifo, notify_fifo), the first
	// of each; scripts the keywords of the scripts keepalived runs on them.
	fifos   map[string]notifyFIFO
	scripts map[string]Pos
}

// globalDefs reads a global_defs block: lvs_sync_daemon and the notify FIFOs
// (vrrp_notify_fifo, notify_fifo) are used, everything else is ignored with one Warning.
func (p *parser) globalDefs(n *node) {
	var used []string
	others := false
	for _, c := range n.children {
		switch kw := c.keyword(); kw {
		case "lvs_sync_daemon":
			p.lvsSyncDaemon(c)
		case "vrrp_notify_fifo", "notify_fifo":
			p.notifyFIFO(c)
		case "vrrp_notify_fifo_script", "notify_fifo_script":
			if p.syncd.scripts == nil {
				p.syncd.scripts = map[string]Pos{}
			}
			if _, dup := p.syncd.scripts[kw]; !dup {
				p.syncd.scripts[kw] = c.pos
			}
			others = true
			continue
		default:
			others = true
			continue
		}
		if !slices.Contains(used, c.keyword()) {
			used = append(used, c.keyword())
		}
	}
	switch {
	case len(used) == 0 && n.block:
		p.warnf(n.pos, "%s block ignored: %s", n.keyword(), topIgnored[n.keyword()])
	case len(used) == 0:
		p.warnf(n.pos, "%s ignored: %s", n.keyword(), topIgnored[n.keyword()])
	case others:
		p.warnf(n.pos, "%s block ignored but for %s: %s", n.keyword(), strings.Join(used, ", "), topIgnored[n.keyword()])
	}
}

// notifyFIFO reads vrrp_notify_fifo or notify_fifo FILE [USER [GROUP]]: the first of each
// keyword counts (a later one is warned about); the user and group are keepalived's
// business (xlvsd opens the FIFO as it runs).
func (p *parser) notifyFIFO(n *node) {
	kw := n.keyword()
	args := n.args()
	if len(args) == 0 {
		p.warnf(n.pos, "%s without a file name ignored: expected \"%s FILE [USER [GROUP]]\"", kw, kw)
		return
	}
	if p.syncd.fifos == nil {
		p.syncd.fifos = map[string]notifyFIFO{}
	}
	if prev, dup := p.syncd.fifos[kw]; dup {
		p.warnf(n.pos, "%s has already been specified as %s (at %s) - ignoring", kw, prev.path, prev.pos)
		return
	}
	p.syncd.fifos[kw] = notifyFIFO{path: args[0], pos: n.pos}
}

// vrrpInstance records the virtual_router_id of a vrrp_instance block (the default sync
// ID of an lvs_sync_daemon naming it); the block is otherwise ignored with a Warning.
func (p *parser) vrrpInstance(n *node) {
	p.warnf(n.pos, "%s block ignored: %s", n.keyword(), topIgnored[n.keyword()])
	if len(n.args()) == 0 {
		return
	}
	name := n.args()[0]
	if !n.block {
		return
	}
	if p.syncd.vrids == nil {
		p.syncd.vrids, p.syncd.vridSeen = map[string]uint8{}, map[string]bool{}
	}
	p.syncd.vridSeen[name] = true
	for _, c := range n.children {
		if c.keyword() == "virtual_router_id" && len(c.args()) > 0 {
			if v, err := strconv.ParseUint(c.args()[0], 10, 8); err == nil && v >= 1 {
				p.syncd.vrids[name] = uint8(v)
			}
		}
	}
}

// lvsSyncDaemon reads one lvs_sync_daemon statement. Malformed values are errors naming
// the line (keepalived -t reports them as configuration errors); the rest follows
// keepalived's reading.
func (p *parser) lvsSyncDaemon(n *node) {
	if sd := p.syncd.sd; sd != nil {
		as := sd.Interface
		if sd.VRRPInstance != "" {
			as += " " + sd.VRRPInstance
		}
		p.warnf(n.pos, "lvs_sync_daemon has already been specified as %s (at %s) - ignoring", as, sd.Pos)
		return
	}
	args := n.args()
	if len(args) == 0 {
		p.errorf(n.pos, "lvs_sync_daemon requires interface: expected \"lvs_sync_daemon INTERFACE [inst VRRP_INSTANCE] [id SYNCID] [maxlen N] [port N] [ttl N] [group ADDR]\"")
		return
	}
	if len(args[0]) >= ipvsIfnameMax {
		p.errorf(n.pos, "lvs_sync_daemon interface name '%s' too long: expected at most %d bytes", args[0], ipvsIfnameMax-1)
		return
	}
	if n.block {
		p.lenient(n.pos, "%s: block ignored, as keepalived does", n.keyword())
	}
	sd := &SyncDaemon{Pos: n.pos, Interface: args[0]}
	ok := true
	bad := func(format string, a ...any) {
		p.errorf(n.pos, format, a...)
		ok = false
	}
	num := func(i int, what string, lo, hi uint64) (uint64, bool) {
		if i+1 >= len(args) {
			bad("No value specified for lvs_sync_daemon %s: expected %s %d..%d", what, what, lo, hi)
			return 0, false
		}
		v, err := strconv.ParseUint(args[i+1], 10, 32)
		if err != nil || v < lo || v > hi {
			bad("Invalid lvs_sync_daemon %s (%s): expected %d..%d", what, args[i+1], lo, hi)
			return 0, false
		}
		return v, true
	}
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "inst":
			if i+1 >= len(args) {
				bad("No value specified for lvs_sync_daemon inst: expected inst VRRP_INSTANCE")
				continue
			}
			if sd.VRRPInstance != "" {
				p.warnf(n.pos, "lvs_sync_daemon vrrp instance has already been specified as %s - ignoring", sd.VRRPInstance)
			} else {
				sd.VRRPInstance = args[i+1]
			}
			i++
		case "id":
			if v, good := num(i, "id", 0, 255); good {
				sd.SyncID, p.syncd.idSet = uint8(v), true
			}
			i++
		case "maxlen":
			if v, good := num(i, "maxlen", 1, 65535-20-8); good {
				sd.MaxLen = int(v)
			}
			i++
		case "port":
			if v, good := num(i, "port", 1, 65535); good {
				sd.Port = uint16(v)
			}
			i++
		case "ttl":
			if v, good := num(i, "ttl", 1, 255); good {
				sd.TTL = uint8(v)
			}
			i++
		case "group":
			if i+1 >= len(args) {
				bad("No value specified for lvs_sync_daemon group: expected group ADDR (IPv4 224.0.0.0/4 or IPv6 ff00::/8)")
				continue
			}
			a, err := netip.ParseAddr(args[i+1])
			switch {
			case err != nil || a.Zone() != "":
				bad("Invalid lvs_sync_daemon group (%s): expected an IPv4 or IPv6 multicast address", args[i+1])
			case !a.IsMulticast():
				bad("lvs_sync_daemon group address %s is not multicast: expected 224.0.0.0/4 or ff00::/8", args[i+1])
			default:
				sd.Group = a.Unmap()
			}
			i++
		default:
			// The older form: lvs_sync_daemon INTERFACE VRRP_INSTANCE [SYNCID].
			switch i {
			case 1:
				sd.VRRPInstance = args[i]
				continue
			case 2:
				v, err := strconv.ParseUint(args[i], 10, 8)
				if err != nil {
					bad("Invalid syncid (%s): expected 0..255", args[i])
					continue
				}
				p.warnf(n.pos, "Please use keyword \"id\" before lvs_sync_daemon SYNCID")
				sd.SyncID, p.syncd.idSet = uint8(v), true
				continue
			}
			bad("Unknown option %s specified for lvs_sync_daemon: expected inst, id, maxlen, port, ttl or group", args[i])
		}
	}
	if ok {
		p.syncd.sd = sd
	}
}

// resolveSync ties the lvs_sync_daemon to its VRRP instance once the file is read.
func (p *parser) resolveSync(cfg *Config) {
	sd := p.syncd.sd
	if sd == nil {
		return
	}
	if sd.VRRPInstance != "" {
		if !p.syncd.vridSeen[sd.VRRPInstance] {
			p.warnf(sd.Pos, "Unable to find vrrp instance %s for lvs_syncd - clearing lvs_syncd config", sd.VRRPInstance)
			return
		}
		if !p.syncd.idSet {
			sd.SyncID = p.syncd.vrids[sd.VRRPInstance] // keepalived: "If no syncid configured, use vrid"
		}
		p.resolveFIFO(sd)
	}
	cfg.SyncDaemon = sd
}

// resolveFIFO picks the notify FIFO xlvsd follows sd's instance through: vrrp_notify_fifo
// (VRRP's notifications only), else notify_fifo (all of them). Without one, or when
// keepalived also runs a script on the one picked (a FIFO's lines go to one reader
// each), it says what xlvsd cannot do then.
func (p *parser) resolveFIFO(sd *SyncDaemon) {
	for _, kw := range []string{"vrrp_notify_fifo", "notify_fifo"} {
		f, ok := p.syncd.fifos[kw]
		if !ok {
			continue
		}
		sd.NotifyFIFO = f.path
		if pos, ok := p.syncd.scripts[kw+"_script"]; ok {
			p.warnf(pos, "%s_script reads the FIFO xlvsd follows VRRP instance %s through (%s): the script and xlvsd would each see only some of its lines; give xlvsd a FIFO of its own (vrrp_notify_fifo for xlvsd, notify_fifo and notify_fifo_script for the script)", kw, sd.VRRPInstance, f.path)
		}
		return
	}
	p.warnf(sd.Pos, "lvs_sync_daemon inst %s: no vrrp_notify_fifo (or notify_fifo) in global_defs, so xlvsd cannot follow the instance's VRRP state: both sync roles run, but no whole table is asked for or sent when it changes (add vrrp_notify_fifo FILE, read by keepalived and xlvsd alike)", sd.VRRPInstance)
}
