package control

import (
	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/dataplane/packet"
)

// checkMethod validates a destination's forwarding method (and its tunnel options) for
// service s, filling the default (-g, direct routing, as ipvsadm).
func checkMethod(s *ruleSvc, d *api.Dest) *api.Error {
	if d.Method == "" {
		d.Method = api.MethodRoute
	}
	switch d.Method {
	case api.MethodMasq, api.MethodRoute, api.MethodTunnel, api.MethodFullNAT:
	case api.MethodLocal:
		return apiErr(api.ErrCodeNotImplemented, "forwarding method %q is not implemented yet: use masquerading (-m), direct routing (-g), tunnelling (-i) or full NAT (--fullnat)", d.Method)
	default:
		return apiErr(api.ErrCodeInvalid, "forwarding method %q: must be one of -g (route), -m (masq), -i (tunnel), --fullnat", d.Method)
	}
	return checkTunnel(d)
}

// checkTunnel validates a destination's tunnel options as ipvsadm's table of tunnel types
// against options does: only a tunnelling (-i) real server has them; ipip takes none, gue
// needs its port and takes any checksum option, gre takes nocsum or csum.
func checkTunnel(d *api.Dest) *api.Error {
	if d.Method != api.MethodTunnel {
		if d.TunType != "" || d.TunPort != 0 || d.TunFlags != "" {
			return apiErr(api.ErrCodeInvalid, "tunnel options (type %q, port %d, flags %q) given for a %s real server: only tunnelling (-i) real servers have them", d.TunType, d.TunPort, d.TunFlags, d.Method)
		}
		return nil
	}
	switch d.TunFlags {
	case "", api.TunNoCsum, api.TunCsum, api.TunRemCsum:
	default:
		return apiErr(api.ErrCodeInvalid, "tunnel checksum option %q: want nocsum, csum or remcsum", d.TunFlags)
	}
	switch d.TunType {
	case "", api.TunIPIP:
		if d.TunPort != 0 || d.TunFlags != "" {
			return apiErr(api.ErrCodeInvalid, "an ipip tunnel takes no port or checksum option (got port %d, %q): use --tun-type gue for a port, gue or gre for a checksum", d.TunPort, d.TunFlags)
		}
	case api.TunGUE:
		if d.TunPort == 0 {
			return apiErr(api.ErrCodeInvalid, "a gue tunnel needs its UDP port: give --tun-port 1 to 65535")
		}
	case api.TunGRE:
		if d.TunPort != 0 {
			return apiErr(api.ErrCodeInvalid, "a gre tunnel takes no port (got %d): only gue has one", d.TunPort)
		}
		if d.TunFlags == api.TunRemCsum {
			return apiErr(api.ErrCodeInvalid, "a gre tunnel takes nocsum or csum, not remcsum (remote checksum offload is gue's)")
		}
	default:
		return apiErr(api.ErrCodeInvalid, "tunnel type %q: want ipip, gue or gre", d.TunType)
	}
	return nil
}

// encapOf is the dataplane's encapsulation of tunnelling destination d (checked by
// checkTunnel). remcsum is csum for the dataplane: IPVS uses remote checksum offload only
// for a packet whose checksum its kernel left partial, which no packet the dataplane
// forwards has, and computes the UDP checksum otherwise.
func encapOf(d *api.Dest) packet.Encap {
	if d.Method != api.MethodTunnel {
		return packet.Encap{}
	}
	csum := d.TunFlags == api.TunCsum || d.TunFlags == api.TunRemCsum
	switch d.TunType {
	case api.TunGUE:
		return packet.Encap{Type: packet.EncapGUE, Port: d.TunPort, Csum: csum}
	case api.TunGRE:
		return packet.Encap{Type: packet.EncapGRE, Csum: csum}
	}
	return packet.Encap{}
}

// methodOf maps an API forwarding method to the dataplane's.
func methodOf(m string) conntrack.Method {
	switch m {
	case api.MethodRoute:
		return conntrack.MethodDR
	case api.MethodTunnel:
		return conntrack.MethodTUN
	case api.MethodFullNAT:
		return conntrack.MethodFullNAT
	default:
		return conntrack.MethodNAT
	}
}
