package ipvsadm

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"xlvs/control/api"
)

// ErrNoService: a listing of one service found none (ipvsadm's message).
var ErrNoService = errors.New("No such service")

// ipvsVersion is the IPVS version the listing header shows when the daemon does not say.
const ipvsVersion = "1.2.1"

// Format writes the output of cmd given the responses to cmd.Requests, in order, byte
// for byte as ipvsadm 1.31 prints it: -L in all its variants, -S, DPVS ipvsadm's
// --get-laddr, and xlvs's --dataplane-stats. Commands without output write nothing. Listings resolve names with
// cmd.Resolver unless cmd.List.Numeric.
func Format(w io.Writer, cmd *Command, resps ...*api.Response) error {
	var (
		info      *api.Info
		services  []api.Service
		timeouts  *api.Timeouts
		conns     []api.Conn
		daemons   []api.SyncDaemon
		dp, xdp   []api.QueueStats
		syncStats []api.QueueStats
		laddrs    []api.LocalAddr
		marks     []api.MarkRule
	)
	for _, r := range resps {
		if r == nil {
			continue
		}
		if r.Info != nil {
			info = r.Info
		}
		if r.Timeouts != nil {
			timeouts = r.Timeouts
		}
		services = append(services, r.Services...)
		conns = append(conns, r.Conns...)
		daemons = append(daemons, r.Daemons...)
		dp = append(dp, r.Dataplane...)
		xdp = append(xdp, r.XDPStats...)
		syncStats = append(syncStats, r.Sync...)
		laddrs = append(laddrs, r.LocalAddrs...)
		marks = append(marks, r.Marks...)
	}

	bw := bufio.NewWriter(w)
	f := &formatter{w: bw, o: cmd.List, names: newNames(cmd.resolver(), cmd.List.Numeric)}
	switch cmd.Kind {
	case KindList:
		switch {
		case cmd.List.Connections:
			f.conns(conns)
		case cmd.Service != nil:
			if len(services) == 0 {
				return ErrNoService
			}
			f.title()
			f.service(&services[0])
		case cmd.List.Timeout:
			if timeouts == nil {
				return errors.New("format timeouts: the daemon sent none")
			}
			fmt.Fprintf(bw, "Timeout (tcp tcpfin udp): %d %d %d\n", timeouts.TCP, timeouts.TCPFin, timeouts.UDP)
		case cmd.List.Daemon:
			f.daemons(daemons)
		default:
			version, size := ipvsVersion, 0
			if info != nil {
				size = info.ConnTable
				if info.IPVSLike != "" {
					version = info.IPVSLike
				}
			}
			fmt.Fprintf(bw, "IP Virtual Server version %s (size=%d)\n", version, size)
			f.title()
			if !cmd.List.NoSort {
				services = sortedServices(services)
			}
			for i := range services {
				f.service(&services[i])
			}
			listMarks(bw, marks)
		}
	case KindSave:
		saveMarks(bw, marks)
		saveTo(bw, services, laddrs, f.names)
	case KindGetLaddr:
		if cmd.Service != nil && len(services) == 0 {
			return ErrNoService
		}
		getLaddrs(bw, services, laddrs)
	case KindDataplaneStats:
		dataplaneStats(bw, dp, xdp, syncStats)
	}
	return bw.Flush()
}

// getLaddrs is DPVS ipvsadm's --get-laddr listing: a title, then every service (in the
// daemon's order, numeric, with its number of local addresses), each followed by its
// local addresses with their port conflicts and connections. Nothing at all when there
// is no service.
func getLaddrs(w *bufio.Writer, services []api.Service, laddrs []api.LocalAddr) {
	if len(services) == 0 {
		return
	}
	fmt.Fprintf(w, "%-20s %-8s %-20s %-10s %-10s\n", "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS")
	n := newNames(NoResolver, true)
	for i := range services {
		s := &services[i]
		var mine []api.LocalAddr
		for _, l := range laddrs {
			if sameService(l.Service, s.ServiceKey) {
				mine = append(mine, l)
			}
		}
		fmt.Fprintf(w, "%-20s %-8d \n", n.addrPort(s.Addr, s.Port, portProto(s)), len(mine))
		for _, l := range mine {
			fmt.Fprintf(w, "%-20s %-8s %-20s %-10d %-10d\n", "", "", l.Addr.Unmap(), l.PortConflicts, l.Conns)
		}
	}
}

// sameService compares service keys as the daemon does (IPv4-mapped is IPv4).
func sameService(a, b api.ServiceKey) bool {
	if a.Protocol != b.Protocol {
		return false
	}
	if a.Protocol == api.ProtoFWMark {
		return a.FWMark == b.FWMark
	}
	return a.Addr.Unmap() == b.Addr.Unmap() && a.Port == b.Port
}

type formatter struct {
	w     *bufio.Writer
	o     ListOptions
	names *names
}

// title is ipvsadm's print_title.
func (f *formatter) title() {
	const local, remote = "Prot LocalAddress:Port", "  -> RemoteAddress:Port\n"
	switch {
	case f.o.Stats:
		fmt.Fprintf(f.w, "%-33s %8s %8s %8s %8s %8s\n"+remote, local, "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case f.o.Rate:
		fmt.Fprintf(f.w, "%-33s %8s %8s %8s %8s %8s\n"+remote, local, "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	case f.o.Thresholds:
		fmt.Fprintf(f.w, "%-33s %-10s %-10s %-10s %-10s\n"+remote, local, "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
	case f.o.PersistentConn:
		fmt.Fprintf(f.w, "%-33s %-9s %-11s %-10s %-10s\n"+remote, local, "Weight", "PersistConn", "ActiveConn", "InActConn")
	case f.o.TunInfo:
		f.w.WriteString("Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
	default:
		f.w.WriteString("Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
}

// service is ipvsadm's print_service_entry for listings.
func (f *formatter) service(s *api.Service) {
	name := f.serviceName(s)
	switch {
	case f.o.Stats:
		fmt.Fprintf(f.w, "%-33s", name)
		f.largenums(s.Stats.Conns, s.Stats.InPkts, s.Stats.OutPkts, s.Stats.InBytes, s.Stats.OutBytes)
	case f.o.Rate:
		fmt.Fprintf(f.w, "%-33s", name)
		f.largenums(s.Stats.CPS, s.Stats.InPPS, s.Stats.OutPPS, s.Stats.InBPS, s.Stats.OutBPS)
	default:
		fmt.Fprintf(f.w, "%s %s", name, s.Scheduler)
		if flags := schedFlagNames(s.Scheduler, schedFlagBits(s.SchedFlags)); len(flags) > 0 {
			fmt.Fprintf(f.w, " (%s)", strings.Join(flags, ","))
		}
		if s.Persistent {
			fmt.Fprintf(f.w, " persistent %d", s.Timeout)
			if m := maskText(s); m != "" {
				fmt.Fprintf(f.w, " mask %s", m)
			}
			if s.PE != "" {
				fmt.Fprintf(f.w, " pe %s", s.PE)
			}
		}
		if s.OnePacket {
			f.w.WriteString(" ops")
		}
	}
	f.w.WriteByte('\n')

	dests := s.Dests
	if !f.o.NoSort {
		dests = sortedDests(dests)
	}
	proto := portProto(s)
	for i := range dests {
		d := &dests[i]
		dname := f.names.addrPort(d.Addr, d.Port, proto)
		if !d.Addr.Is6() && len(dname) > 28 {
			dname = dname[:28]
		}
		switch {
		case f.o.Stats:
			fmt.Fprintf(f.w, "  -> %-28s", dname)
			f.largenums(d.Stats.Conns, d.Stats.InPkts, d.Stats.OutPkts, d.Stats.InBytes, d.Stats.OutBytes)
			f.w.WriteByte('\n')
		case f.o.Rate:
			fmt.Fprintf(f.w, "  -> %-28s %8d %8d %8d", dname, d.Stats.CPS, d.Stats.InPPS, d.Stats.OutPPS)
			f.largenums(d.Stats.InBPS, d.Stats.OutBPS)
			f.w.WriteByte('\n')
		case f.o.Thresholds:
			fmt.Fprintf(f.w, "  -> %-28s %-10d %-10d %-10d %-10d\n", dname, d.UThreshold, d.LThreshold, d.ActiveConns, d.InactConns)
		case f.o.PersistentConn:
			fmt.Fprintf(f.w, "  -> %-28s %-9d %-11d %-10d %-10d\n", dname, uint32(d.Weight), d.PersistConns, d.ActiveConns, d.InactConns)
		case f.o.TunInfo:
			fmt.Fprintf(f.w, "  -> %-28s %-7s %-13s %-6d %-10d %-10d\n", dname, forwardName(d.Method), tunInfo(d), d.Weight, d.ActiveConns, d.InactConns)
		default:
			fmt.Fprintf(f.w, "  -> %-28s %-7s %-6d %-10d %-10d\n", dname, forwardName(d.Method), d.Weight, d.ActiveConns, d.InactConns)
		}
	}
}

// serviceName is the "Prot LocalAddress:Port" column, cut to 33 characters unless IPv6.
func (f *formatter) serviceName(s *api.Service) string {
	if isFWMark(s) {
		n := fmt.Sprintf("FWM  %d", s.FWMark)
		if s.Family == 6 {
			n += " IPv6"
		}
		return n
	}
	// ipvsadm's print_service_entry writes "%s  %s": two blanks after the protocol, so
	// "SCTP  VIP:port" is one column wider than "TCP  VIP:port" (read in the ipvsadm
	// derivative iqiyi/dpvs tools/ipvsadm/ipvsadm.c, which keeps upstream's listing code).
	n := fmt.Sprintf("%s  %s", protoName(s.Protocol), f.names.addrPort(s.Addr, s.Port, portProto(s)))
	if !s.Addr.Is6() && len(n) > 33 {
		n = n[:33]
	}
	return n
}

func (f *formatter) largenums(vals ...uint64) {
	for _, v := range vals {
		f.w.WriteString(largenum(v, f.o.Exact))
	}
}

// largenum is ipvsadm's print_largenum: 9 columns, K/M/G/T (powers of 1000) from 10^8 on,
// or every digit with --exact.
func largenum(n uint64, exact bool) string {
	if exact {
		s := strconv.FormatUint(n, 10)
		w := 9
		if len(s) > 8 {
			w = len(s) + 1
		}
		return fmt.Sprintf("%*s", w, s)
	}
	switch {
	case n < 100_000_000:
		return fmt.Sprintf("%9d", n)
	case n < 1_000_000_000:
		return fmt.Sprintf("%8dK", n/1_000)
	case n < 100_000_000_000:
		return fmt.Sprintf("%8dM", n/1_000_000)
	case n < 100_000_000_000_000:
		return fmt.Sprintf("%8dG", n/1_000_000_000)
	default:
		return fmt.Sprintf("%8dT", n/1_000_000_000_000)
	}
}

// conns is ipvsadm's list_conn. A listing that holds FULLNAT connections (which the
// kernel has not) gets a column "local" between virtual and destination, in the order
// DPVS's ipvsadm prints a connection's four endpoints: the local address and port the
// real server sees as its client ("-" for the other connections); without FULLNAT
// connections the listing is ipvsadm's byte for byte.
func (f *formatter) conns(conns []api.Conn) {
	local := false
	for i := range conns {
		local = local || conns[i].Local.IsValid()
	}
	f.w.WriteString("IPVS connection entries\n")
	head := fmt.Sprintf("pro expire %-11s %-18s %-18s ", "state", "source", "virtual")
	if local {
		head += fmt.Sprintf("%-18s ", "local")
	}
	if f.o.PersistentConn {
		fmt.Fprintf(f.w, "%s%-18s %-16s %s\n", head, "destination", "pe name", "pe_data")
	} else {
		fmt.Fprintf(f.w, "%sdestination\n", head)
	}
	for i := range conns {
		c := &conns[i]
		proto := c.Protocol
		if proto == "" {
			proto = "IP"
		}
		pp := strings.ToLower(proto)
		virtual := c.Virtual
		if !virtual.IsValid() && c.FWMark != 0 {
			// IPVS keys fwmark templates by the mark written as an IPv4 address.
			m := c.FWMark
			virtual = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}), 0)
		}
		secs := max(c.ExpiresMs, 0) / 1000
		expire := fmt.Sprintf("%02d:%02d", secs/60, secs%60)
		fmt.Fprintf(f.w, "%-3s %-6s %-11s %-18s %-18s ", proto, expire, c.State,
			f.names.addrPort(c.Client.Addr(), c.Client.Port(), pp),
			f.names.addrPort(virtual.Addr(), virtual.Port(), pp))
		if local {
			l := "-"
			if c.Local.IsValid() {
				l = f.names.addrPort(c.Local.Addr(), c.Local.Port(), pp)
			}
			fmt.Fprintf(f.w, "%-18s ", l)
		}
		fmt.Fprintf(f.w, "%s\n", f.names.addrPort(c.Dest.Addr(), c.Dest.Port(), pp))
	}
}

// daemons is ipvsadm's list_daemon: the master first, then the backup.
func (f *formatter) daemons(ds []api.SyncDaemon) {
	for _, state := range []string{"master", "backup"} {
		for _, d := range ds {
			if d.State != state {
				continue
			}
			fmt.Fprintf(f.w, "%s sync daemon (mcast=%s, syncid=%d", d.State, d.Interface, d.SyncID)
			if d.MaxLen != 0 {
				fmt.Fprintf(f.w, ", maxlen=%d", d.MaxLen)
			}
			if d.Group != "" {
				fmt.Fprintf(f.w, ", group=%s", d.Group)
			}
			if d.Port != 0 {
				fmt.Fprintf(f.w, ", port=%d", d.Port)
			}
			if d.TTL != 0 {
				fmt.Fprintf(f.w, ", ttl=%d", d.TTL)
			}
			f.w.WriteString(")\n")
		}
	}
}

// dataplaneStats prints --dataplane-stats (xlvs's own), ethtool -S style: per interface
// the XDP program's counters, then per AF_XDP socket the worker's counters, then (when
// the daemon can sync connections) the sync daemon's master and backup counters, sorted.
func dataplaneStats(w *bufio.Writer, dp, xdp, sync []api.QueueStats) {
	section := func(title string, qs []api.QueueStats) {
		qs = slices.Clone(qs)
		slices.SortFunc(qs, func(a, b api.QueueStats) int {
			return cmp.Or(cmp.Compare(a.Interface, b.Interface), cmp.Compare(a.Queue, b.Queue))
		})
		fmt.Fprintf(w, "%s:\n", title)
		for _, q := range qs {
			if q.Queue < 0 {
				fmt.Fprintf(w, "  %s:\n", q.Interface)
			} else {
				fmt.Fprintf(w, "  %s queue %d:\n", q.Interface, q.Queue)
			}
			names := make([]string, 0, len(q.Counters))
			for n := range q.Counters {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				fmt.Fprintf(w, "     %s: %d\n", n, q.Counters[n])
			}
		}
	}
	section("XDP statistics", xdp)
	section("AF_XDP socket statistics", dp)
	if len(sync) > 0 {
		section("Sync daemon statistics", sync)
	}
}

func isFWMark(s *api.Service) bool { return s.Protocol == api.ProtoFWMark || s.FWMark != 0 }

// serviceFamily is 6 for IPv6 services (by address, or Family for fwmark), else 4.
func serviceFamily(s *api.Service) int {
	if isFWMark(s) {
		if s.Family == 6 {
			return 6
		}
		return 4
	}
	return familyOf(s.Addr)
}

// portProto is the protocol whose service names a service's ports take: ipvsadm stores
// fwmark services as TCP.
func portProto(s *api.Service) string {
	switch s.Protocol {
	case api.ProtoUDP:
		return "udp"
	case api.ProtoSCTP:
		return "sctp"
	}
	return "tcp"
}

func protoName(p string) string {
	switch p {
	case api.ProtoTCP:
		return "TCP"
	case api.ProtoUDP:
		return "UDP"
	case api.ProtoSCTP:
		return "SCTP"
	}
	return "?"
}

func forwardName(m string) string {
	switch m {
	case api.MethodMasq:
		return "Masq"
	case api.MethodLocal:
		return "Local"
	case api.MethodTunnel:
		return "Tunnel"
	case api.MethodRoute:
		return "Route"
	case api.MethodFullNAT:
		return "FullNat"
	}
	return m
}

func tunInfo(d *api.Dest) string {
	if d.Method != api.MethodTunnel {
		return "n/a"
	}
	flag := map[string]string{"": "-c", api.TunNoCsum: "-c", api.TunCsum: "+c", api.TunRemCsum: "r+c"}[d.TunFlags]
	switch d.TunType {
	case "", api.TunIPIP:
		return api.TunIPIP
	case api.TunGUE:
		return fmt.Sprintf("gue:%d:%s", d.TunPort, flag)
	case api.TunGRE:
		return "gre:" + flag
	}
	return "n/a"
}

// maskText is the persistence mask to show, or "" for the default (/32, /128).
func maskText(s *api.Service) string {
	m := s.Netmask
	if m == "" {
		return ""
	}
	if serviceFamily(s) == 6 {
		if m == "128" {
			return ""
		}
		return m
	}
	a, err := netip.ParseAddr(m)
	if err != nil {
		// A prefix length: show it as the dotted mask ipvsadm prints.
		n, perr := strconv.Atoi(m)
		if perr != nil || n < 0 || n > 32 {
			return m
		}
		a = prefixMask4(n)
	}
	if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return ""
	}
	return a.String()
}

func prefixMask4(n int) netip.Addr {
	v := uint32(0)
	if n > 0 {
		v = ^uint32(0) << (32 - n)
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// sortedServices orders services as ipvsadm's listing does: by fwmark (plain services
// first), family (IPv4 first), protocol (TCP before UDP), address, port. Addresses compare
// as unsigned numbers (ipvsadm subtracts them as ints, which misorders addresses 2^31
// apart; xlvsadm does not reproduce that).
func sortedServices(in []api.Service) []api.Service {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b api.Service) int {
		return cmp.Or(
			cmp.Compare(a.FWMark, b.FWMark),
			cmp.Compare(serviceFamily(&a), serviceFamily(&b)),
			cmp.Compare(protoNumber(a.Protocol), protoNumber(b.Protocol)),
			a.Addr.Compare(b.Addr),
			cmp.Compare(a.Port, b.Port))
	})
	return out
}

// sortedDests orders destinations by address, then port.
func sortedDests(in []api.Dest) []api.Dest {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b api.Dest) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// protoNumber is the IP protocol number IPVS sorts by (fwmark services are TCP).
func protoNumber(p string) int {
	switch p {
	case api.ProtoUDP:
		return 17
	case api.ProtoSCTP:
		return 132
	}
	return 6
}

// names formats endpoints, numerically or with names, caching lookups for one output.
type names struct {
	r       Resolver
	numeric bool
	hosts   map[netip.Addr]string
	ports   map[string]string
}

func newNames(r Resolver, numeric bool) *names {
	return &names{r: r, numeric: numeric, hosts: map[netip.Addr]string{}, ports: map[string]string{}}
}

// addrPort is ipvsadm's addrport_to_anyname: "host:port" or "[host]:port", cut to 59
// characters as ipvsadm's buffer cuts it.
func (n *names) addrPort(a netip.Addr, port uint16, proto string) string {
	s := n.endpoint(a, port, proto)
	if len(s) > 59 {
		s = s[:59]
	}
	return s
}

// endpoint is addrPort uncut, for rules: a cut name would not restore.
func (n *names) endpoint(a netip.Addr, port uint16, proto string) string {
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	var host, ps string
	if n.numeric {
		host, ps = a.String(), strconv.Itoa(int(port))
	} else {
		host, ps = n.host(a), n.port(proto, port)
	}
	if a.Is4() {
		return host + ":" + ps
	}
	return "[" + host + "]:" + ps
}

func (n *names) host(a netip.Addr) string {
	if h, ok := n.hosts[a]; ok {
		return h
	}
	h, ok := n.r.LookupAddr(a)
	if !ok {
		h = a.String()
	}
	n.hosts[a] = h
	return h
}

func (n *names) port(proto string, port uint16) string {
	key := proto + "/" + strconv.Itoa(int(port))
	if p, ok := n.ports[key]; ok {
		return p
	}
	p := strconv.Itoa(int(port))
	if proto == "tcp" || proto == "udp" || proto == "sctp" {
		if name, ok := n.r.PortName(proto, port); ok {
			p = name
		}
	}
	n.ports[key] = p
	return p
}
