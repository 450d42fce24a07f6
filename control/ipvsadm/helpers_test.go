package ipvsadm

import (
	"net/netip"
	"strings"

	"xlvs/control/api"
)

// fakeResolver is a fixed name table, so tests never touch DNS or /etc/services.
type fakeResolver struct{}

var fakeHosts = map[string]string{
	"vip.example.test":    "198.18.0.1",
	"web1.example.test":   "198.18.1.1",
	"web2.example.test":   "198.18.1.2",
	"mask.example.test":   "255.255.0.0",
	"v6only.example.test": "2001:db8::99", // a name with no IPv4 address
	"a-very-long-host-name-used-to-check-truncation.example.test": "198.18.7.7",
}

var fakePorts = map[string]uint16{"tcp/http": 80, "tcp/www": 80, "tcp/https": 443, "udp/domain": 53, "tcp/domain": 53, "udp/syslog": 514}

func (fakeResolver) LookupHost(name string) (netip.Addr, bool) {
	s, ok := fakeHosts[name]
	if !ok {
		return netip.Addr{}, false
	}
	a := netip.MustParseAddr(s)
	return a, a.Is4()
}

func (fakeResolver) LookupAddr(a netip.Addr) (string, bool) {
	for n, s := range fakeHosts {
		if s == a.String() && !strings.HasPrefix(n, "mask") {
			return n, true
		}
	}
	if a == netip.MustParseAddr("2001:db8::1") {
		return "v6vip.example.test", true
	}
	return "", false
}

func (fakeResolver) LookupPort(proto, name string) (uint16, bool) {
	p, ok := fakePorts[proto+"/"+name]
	return p, ok
}

func (fakeResolver) PortName(proto string, port uint16) (string, bool) {
	switch {
	case proto == "tcp" && port == 80:
		return "http", true
	case proto == "tcp" && port == 443:
		return "https", true
	case port == 53:
		return "domain", true
	case proto == "udp" && port == 514:
		return "syslog", true
	}
	return "", false
}

var testParser = Parser{Resolver: fakeResolver{}}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func tcpKey(addr string, port uint16) api.ServiceKey {
	a := ip(addr)
	return api.ServiceKey{Protocol: api.ProtoTCP, Addr: a, Port: port, Family: familyOf(a)}
}

func udpKey(addr string, port uint16) api.ServiceKey {
	k := tcpKey(addr, port)
	k.Protocol = api.ProtoUDP
	return k
}

func fwmKey(mark uint32, family int) api.ServiceKey {
	return api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: mark, Family: family}
}

func req(op string) api.Request { return api.Request{Version: api.Version, Op: op} }
