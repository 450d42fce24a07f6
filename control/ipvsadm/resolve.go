package ipvsadm

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver turns host and service names into addresses and ports and back, as ipvsadm
// does with gethostbyname, gethostbyaddr, getservbyname and getservbyport. Parse uses the
// first and third for arguments that are not numeric; listings without -n use the others.
// Implementations must be safe for concurrent use.
type Resolver interface {
	// LookupHost returns an IPv4 address of a host name (ipvsadm resolves names to IPv4
	// only).
	LookupHost(name string) (netip.Addr, bool)
	// LookupAddr returns the host name of an address.
	LookupAddr(addr netip.Addr) (string, bool)
	// LookupPort returns the port of a service name for proto ("tcp" or "udp").
	LookupPort(proto, name string) (uint16, bool)
	// PortName returns the service name of a port for proto ("tcp" or "udp").
	PortName(proto string, port uint16) (string, bool)
}

// SystemResolver resolves with the host's resolver configuration (/etc/hosts, DNS)
// through Go's resolver, and service names from /etc/services. Each DNS lookup is bounded
// by a few seconds.
var SystemResolver Resolver = systemResolver{}

// NoResolver resolves nothing: every name is unknown, every address and port stays
// numeric.
var NoResolver Resolver = noResolver{}

type noResolver struct{}

func (noResolver) LookupHost(string) (netip.Addr, bool)     { return netip.Addr{}, false }
func (noResolver) LookupAddr(netip.Addr) (string, bool)     { return "", false }
func (noResolver) LookupPort(string, string) (uint16, bool) { return 0, false }
func (noResolver) PortName(string, uint16) (string, bool)   { return "", false }

const lookupTimeout = 5 * time.Second

type systemResolver struct{}

func (systemResolver) LookupHost(name string) (netip.Addr, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", name)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, false
	}
	return addrs[0].Unmap(), true
}

func (systemResolver) LookupAddr(addr netip.Addr) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, addr.String())
	if err != nil || len(names) == 0 {
		return "", false
	}
	name := strings.TrimSuffix(names[0], ".")
	return name, name != ""
}

func (systemResolver) LookupPort(proto, name string) (uint16, bool) {
	return loadServices().port(proto, name)
}

func (systemResolver) PortName(proto string, port uint16) (string, bool) {
	return loadServices().name(proto, port)
}

// services is a parsed /etc/services.
type services struct {
	byName map[string]uint16 // "tcp/http" -> 80, aliases included
	byPort map[string]string // "tcp/80" -> "http", the first entry wins
}

var (
	servicesOnce sync.Once
	servicesDB   *services
)

func loadServices() *services {
	servicesOnce.Do(func() {
		f, err := os.Open("/etc/services")
		if err != nil {
			servicesDB = &services{}
			return
		}
		defer f.Close()
		servicesDB = parseServices(f)
	})
	return servicesDB
}

// parseServices reads the services(5) format: "name port/proto [aliases...] [# comment]".
func parseServices(r io.Reader) *services {
	db := &services{byName: map[string]uint16{}, byPort: map[string]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		portStr, proto, ok := strings.Cut(f[1], "/")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			continue
		}
		pk := proto + "/" + portStr
		if _, dup := db.byPort[pk]; !dup {
			db.byPort[pk] = f[0]
		}
		for _, n := range append([]string{f[0]}, f[2:]...) {
			if _, dup := db.byName[proto+"/"+n]; !dup {
				db.byName[proto+"/"+n] = uint16(port)
			}
		}
	}
	return db
}

func (db *services) port(proto, name string) (uint16, bool) {
	p, ok := db.byName[proto+"/"+name]
	return p, ok
}

func (db *services) name(proto string, port uint16) (string, bool) {
	n, ok := db.byPort[proto+"/"+strconv.Itoa(int(port))]
	return n, ok
}
