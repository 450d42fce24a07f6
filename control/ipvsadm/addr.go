package ipvsadm

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// parseNumber reads a whole decimal integer in [lo, hi] as C's strtol does (leading white
// space and a sign allowed, nothing after the digits); ok is false otherwise.
func parseNumber(s string, lo, hi int64) (int64, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	body := strings.TrimLeft(t, "+-")
	if len(t)-len(body) > 1 || body == "" {
		return 0, false
	}
	for i := 0; i < len(body); i++ {
		if body[i] < '0' || body[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// atoi is C's atoi: leading white space, a sign, then as many digits as there are; 0 when
// there are none.
func atoi(s string) int64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if n > math.MaxInt32 {
			break
		}
		n = n*10 + int64(s[i]-'0')
	}
	if neg {
		n = -n
	}
	return n
}

// allDigits is ipvsadm's str_is_digit: true for "" and for strings of decimal digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseInetAton reads an IPv4 address in every form inet_aton(3) accepts: one to four
// parts separated by dots, each decimal, octal (leading 0) or hexadecimal (leading 0x),
// the last part filling the remaining bytes ("10.1" is 10.0.0.1, "167772161" is 10.0.0.1).
func parseInetAton(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals [4]uint64
	for i, p := range parts {
		v, ok := parseCNumber(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(parts) - 1
	for i := 0; i < last; i++ {
		if vals[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	if vals[last] > uint64(1)<<(8*(4-last))-1 {
		return netip.Addr{}, false
	}
	var v uint32
	for i := 0; i < last; i++ {
		v |= uint32(vals[i]) << (24 - 8*i)
	}
	v |= uint32(vals[last])
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b), true
}

// parseCNumber reads one inet_aton part: 0x-prefixed hex, 0-prefixed octal, or decimal.
func parseCNumber(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := uint64(10)
	digits := p
	switch {
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, digits = 16, p[2:]
		if digits == "" {
			return 0, true // "0x" is 0, as glibc reads it
		}
	case p[0] == '0':
		base = 8
	}
	var v uint64
	for i := 0; i < len(digits); i++ {
		var d uint64
		c := digits[i]
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > math.MaxUint32 {
			return 0, false
		}
	}
	return v, true
}

// parseIPv6 reads an IPv6 address as inet_pton(AF_INET6) does: no zone, no IPv4 form.
func parseIPv6(s string) (netip.Addr, bool) {
	if !strings.Contains(s, ":") || strings.Contains(s, "%") {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

// endpoint is what parseEndpoint found.
type endpoint struct {
	addr    netip.Addr
	port    uint16
	hasPort bool
}

// parseEndpoint reads host[:port] as ipvsadm's parse_service does: "[v6]:port" (the
// brackets need the port), a bare IPv6 address (no port), or an IPv4 address or host
// name with an optional ":port". Hosts resolve to IPv4 only; ports may be service names
// of proto. A string of digits alone is refused.
func parseEndpoint(s, proto string, r Resolver) (endpoint, bool) {
	var e endpoint
	if allDigits(s) {
		return e, false
	}
	buf := s
	portStr, hasPort := "", false
	if strings.HasPrefix(buf, "[") {
		inner, rest, ok := strings.Cut(buf[1:], "]")
		if !ok || !strings.HasPrefix(rest, ":") {
			return e, false
		}
		buf, portStr, hasPort = inner, rest[1:], true
	}
	if a, ok := parseIPv6(buf); ok {
		e.addr = a
	} else {
		// Not IPv6: the last colon, if any, starts the port (this also applies to the
		// inside of brackets, as in ipvsadm).
		hasPort = false
		if i := strings.LastIndexByte(buf, ':'); i >= 0 {
			buf, portStr, hasPort = buf[:i], buf[i+1:], true
		}
		if a, ok := parseInetAton(buf); ok {
			e.addr = a
		} else if a, ok := lookupHost(r, buf); ok {
			e.addr = a
		} else {
			return e, false
		}
	}
	if hasPort {
		e.hasPort = true
		if n, ok := parseNumber(portStr, 0, 65535); ok {
			e.port = uint16(n)
		} else if p, ok := lookupPort(r, proto, portStr); ok {
			e.port = p
		} else {
			return e, false
		}
	}
	return e, true
}

func lookupHost(r Resolver, name string) (netip.Addr, bool) {
	if name == "" {
		return netip.Addr{}, false
	}
	a, ok := r.LookupHost(name)
	if !ok || !a.Unmap().Is4() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func lookupPort(r Resolver, proto, name string) (uint16, bool) {
	if proto == "" || name == "" {
		return 0, false
	}
	return r.LookupPort(proto, name)
}

// parseNetmask4 reads an IPv4 persistence mask as ipvsadm does: an inet_aton address or
// a host name.
func parseNetmask4(s string, r Resolver) (netip.Addr, bool) {
	if a, ok := parseInetAton(s); ok {
		return a, true
	}
	return lookupHost(r, s)
}

// isMulticast4 and isMulticast6 test multicast group addresses.
func isMulticast4(a netip.Addr) bool { return a.Is4() && a.As4()[0]&0xf0 == 0xe0 }
func isMulticast6(a netip.Addr) bool { return a.Is6() && a.As16()[0] == 0xff }
