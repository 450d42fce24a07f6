package control

import (
	"xlvs/conntrack"
	"xlvs/control/api"
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
	if d.TunType != "" && d.TunType != api.TunIPIP {
		return apiErr(api.ErrCodeNotImplemented, "tunnel type %q is not supported: only ipip (IPv4-in-IPv4, or IPv6-in-IPv6 for an IPv6 service)", d.TunType)
	}
	return nil
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
