package syncd

import (
	"xlvs/conntrack"
	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

func isV4(a *[16]byte) bool {
	return a[0]|a[1]|a[2]|a[3]|a[4]|a[5]|a[6]|a[7]|a[8]|a[9] == 0 && a[10] == 0xff && a[11] == 0xff
}

func isZero(a *[16]byte) bool { return *a == [16]byte{} }

// unspecified4 is 0.0.0.0 as xlvs writes IPv4 addresses.
var unspecified4 = [16]byte{10: 0xff, 11: 0xff}

// toWire turns a queued entry into a sync entry as a kernel master would write it. It
// returns false for an entry whose addresses are of different families (the format has
// one family per entry; the kernel refuses to sync mixed-family services). It does not
// allocate.
func toWire(e *dataplane.SyncConn, c *ipvssync.Conn) bool {
	v4 := isV4(&e.VAddr)
	if isV4(&e.Client) != v4 || isV4(&e.DAddr) != v4 {
		return false
	}
	local := e.Method == conntrack.MethodFullNAT
	if local && !isZero(&e.LAddr) && isV4(&e.LAddr) != v4 {
		return false
	}
	*c = ipvssync.Conn{
		IPv6:     !v4,
		Protocol: e.Proto,
		CPort:    e.CPort,
		VPort:    e.VPort,
		DPort:    e.DPort,
		Timeout:  e.Timeout,
		CAddr:    e.Client,
		VAddr:    e.VAddr,
		DAddr:    e.DAddr,
		HasLocal: local,
		LAddr:    e.LAddr,
		LPort:    e.LPort,
		FWMark:   e.FWMark,
	}
	switch e.Method {
	case conntrack.MethodDR:
		c.Flags = ipvssync.FwdRoute | ipvssync.FlagNoOutput
	case conntrack.MethodTUN:
		c.Flags = ipvssync.FwdTunnel | ipvssync.FlagNoOutput
	default: // NAT, and FULLNAT whose local address travels in OptLocalAddr
		c.Flags = ipvssync.FwdMasq
	}
	if e.Template {
		c.Flags |= ipvssync.FlagTemplate | ipvssync.FlagInactive
		return true
	}
	if !e.State.Active() {
		c.Flags |= ipvssync.FlagInactive
	}
	if n, ok := e.State.SCTPNumber(); ok && e.Proto == conntrack.ProtoSCTP {
		c.State = n // the kernel's IP_VS_SCTP_S_* numbering
	} else if e.State == conntrack.StateUDP {
		c.State = ipvssync.UDPNormal
	} else {
		c.State = uint16(e.State) // conntrack numbers TCP states as IP_VS_TCP_S_*
	}
	return true
}

// fromWire turns a received entry into what the dataplane applies, or returns the drop
// reason (dropSkipped, ...) and -1.
func fromWire(c *ipvssync.Conn, e *dataplane.SyncConn) int {
	if c.Skip {
		return dropSkipped
	}
	tpl := c.Flags&ipvssync.FlagTemplate != 0
	// A fwmark service's template has protocol IPPROTO_IP (ip_vs_sched_persist).
	if c.Protocol != 6 && c.Protocol != 17 && c.Protocol != conntrack.ProtoSCTP && !(c.Protocol == 0 && tpl && c.FWMark != 0) {
		return dropProtocol
	}
	if !ipvssync.ValidState(c) {
		return dropState
	}
	*e = dataplane.SyncConn{
		Proto:    c.Protocol,
		Template: tpl,
		Timeout:  c.Timeout,
		Client:   c.CAddr,
		CPort:    c.CPort,
		VAddr:    c.VAddr,
		VPort:    c.VPort,
		DAddr:    c.DAddr,
		DPort:    c.DPort,
		FWMark:   c.FWMark,
	}
	switch c.Fwd() {
	case ipvssync.FwdMasq:
		e.Method = conntrack.MethodNAT
		if c.HasLocal {
			e.Method, e.LAddr, e.LPort = conntrack.MethodFullNAT, c.LAddr, c.LPort
			if e.LAddr == unspecified4 {
				e.LAddr = [16]byte{} // no local address (a template's): the sender's zero
			}
		}
	case ipvssync.FwdRoute:
		e.Method = conntrack.MethodDR
	case ipvssync.FwdTunnel:
		e.Method = conntrack.MethodTUN
	default:
		return dropMethod
	}
	switch {
	case tpl:
		e.State = conntrack.StateNone
	case c.Protocol == 17:
		e.State = conntrack.StateUDP
	case c.Protocol == conntrack.ProtoSCTP:
		e.State, _ = conntrack.SCTPState(c.State) // ValidState kept it below IP_VS_SCTP_S_LAST
	default:
		e.State = conntrack.State(c.State)
	}
	return -1
}

// senderOf picks the sending socket of an entry from its client address and port, so
// that every update of one connection goes through the same socket, in order.
func senderOf(e *dataplane.SyncConn, n int) int {
	if n == 1 {
		return 0
	}
	h := uint32(2166136261)
	for _, b := range e.Client {
		h = (h ^ uint32(b)) * 16777619
	}
	h = (h ^ uint32(e.CPort>>8)) * 16777619
	h = (h ^ uint32(e.CPort&0xff)) * 16777619
	return int(h % uint32(n))
}
