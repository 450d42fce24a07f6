package health

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"xlvs/control/keepalived"
)

// FromKeepalived turns a parsed keepalived.conf into the Monitor's configuration: one
// VirtualServer per virtual_server (protocol in lower case, as the control API names
// it), each checker with its resolved timing. The services of a "virtual_server group"
// block share one VirtualServer per protocol and address family (Key.Group set,
// Members listing them), so their checks run once, as keepalived runs them; a member
// whose pool differs (a real server or checker port taken from the member's port) gets
// its own. The SSL block's certificate and key, when
// given, are the client certificate of every SSL_GET.
func FromKeepalived(cfg *keepalived.Config) ([]VirtualServer, error) {
	var certs []tls.Certificate
	if s := cfg.SSL; s != nil && usesSSL(cfg) {
		if s.Password != "" {
			return nil, fmt.Errorf("%s: %w: SSL password (an encrypted key) is not supported: give an unencrypted key", s.Pos, ErrSpec)
		}
		if s.Certificate != "" || s.Key != "" {
			key := s.Key
			if key == "" {
				key = s.Certificate
			}
			c, err := tls.LoadX509KeyPair(s.Certificate, key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w: load SSL certificate: %v", s.Pos, ErrSpec, err)
			}
			certs = []tls.Certificate{c}
		}
	}
	out := make([]VirtualServer, 0, len(cfg.VirtualServers))
	shared := map[ServiceKey]int{} // group key -> index in out
	for _, kvs := range cfg.VirtualServers {
		vs := VirtualServer{
			Key:        ServiceKey{Protocol: strings.ToLower(kvs.Protocol), Addr: kvs.Addr, Port: kvs.Port, FWMark: kvs.FWMark},
			Quorum:     kvs.Quorum,
			Hysteresis: kvs.Hysteresis,
		}
		if vs.Quorum == 0 {
			vs.Quorum = 1
			if vs.Hysteresis > 0 {
				vs.Hysteresis = 0
			}
		}
		if s := kvs.SorryServer; s != nil {
			vs.Sorry = &SorryServer{Addr: s.Addr, Weight: s.Weight, Inhibit: s.Inhibit}
		}
		for _, krs := range kvs.RealServers {
			rs := RealServer{Addr: krs.Addr, Weight: krs.Weight, Inhibit: krs.Inhibit}
			for _, kc := range krs.Checkers {
				chk, err := checker(kc, certs, krs.Weight)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", kc.Pos, err)
				}
				c := Check{
					Checker:    chk,
					Interval:   kc.DelayLoop,
					Retry:      int(kc.Retry),
					RetryDelay: kc.DelayBeforeRetry,
					Warmup:     kc.Warmup,
					Alpha:      kc.Alpha,
				}
				if c.Interval <= 0 {
					return nil, fmt.Errorf("%s: %w: delay_loop %v: must be positive", kc.Pos, ErrSpec, c.Interval)
				}
				rs.Checks = append(rs.Checks, c)
			}
			vs.Servers = append(vs.Servers, rs)
		}
		if kvs.Group != "" {
			// keepalived runs a virtual_server group's checkers once for all its
			// services: so do the members with the same protocol, family and pool.
			gk := ServiceKey{Protocol: vs.Key.Protocol, Addr: netip.IPv4Unspecified(), Group: kvs.Group}
			if kvs.Addr.Is6() {
				gk.Addr = netip.IPv6Unspecified()
			}
			if i, ok := shared[gk]; ok && samePool(out[i], vs) {
				out[i].Members = append(out[i].Members, vs.Key)
				continue
			}
			if _, ok := shared[gk]; !ok {
				shared[gk] = len(out)
				vs.Members = []ServiceKey{vs.Key}
				vs.Key = gk
			}
		}
		out = append(out, vs)
	}
	if err := Validate(out); err != nil {
		return nil, err
	}
	return out, nil
}

// samePool reports whether two services have the same pool: real servers (address,
// weight, inhibit, checks), sorry server, quorum and hysteresis. Group members differ
// only when a real server's port, or a checker's, comes from the member's port.
func samePool(a, b VirtualServer) bool {
	if a.Quorum != b.Quorum || a.Hysteresis != b.Hysteresis || len(a.Servers) != len(b.Servers) {
		return false
	}
	if (a.Sorry == nil) != (b.Sorry == nil) || (a.Sorry != nil && *a.Sorry != *b.Sorry) {
		return false
	}
	for i := range a.Servers {
		x, y := a.Servers[i], b.Servers[i]
		if x.Addr != y.Addr || x.Weight != y.Weight || x.Inhibit != y.Inhibit || !sameChecks(x.Checks, y.Checks) {
			return false
		}
	}
	return true
}

func usesSSL(cfg *keepalived.Config) bool {
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			for _, c := range rs.Checkers {
				if c.Type == keepalived.CheckSSL {
					return true
				}
			}
		}
	}
	return false
}

// checker builds the Checker of one keepalived checker block; weight is the real
// server's configured weight (FILE_CHECK adds to it).
func checker(kc keepalived.Checker, certs []tls.Certificate, weight int32) (Checker, error) {
	d := Dialer{Interface: kc.BindIf, Mark: kc.FWMark}
	if kc.BindTo.IsValid() {
		d.Bind = netip.AddrPortFrom(kc.BindTo, kc.BindPort)
	}
	switch kc.Type {
	case keepalived.CheckTCP:
		return &TCP{Addr: kc.Connect, Timeout: kc.ConnectTimeout, Dialer: d}, nil
	case keepalived.CheckHTTP, keepalived.CheckSSL:
		h := HTTP{Addr: kc.Connect, Timeout: kc.ConnectTimeout, Dialer: d}
		for _, u := range kc.URLs {
			hu := URL{Path: u.Path, Digest: u.Digest, Host: u.VirtualHost}
			for _, r := range u.StatusCodes {
				hu.Status = append(hu.Status, StatusRange{Min: r.Min, Max: r.Max})
			}
			h.URLs = append(h.URLs, hu)
		}
		if kc.Type == keepalived.CheckHTTP {
			return NewHTTP(h)
		}
		if kc.EnableSNI {
			h.ServerName = kc.SNIName
		}
		h.Certificates = certs
		return NewSSL(h)
	case keepalived.CheckMisc:
		return NewMisc(Misc{Args: kc.MiscPath, Timeout: kc.MiscTimeout, Dynamic: kc.MiscDynamic, User: kc.User, Group: kc.Group})
	case keepalived.CheckSMTP:
		return NewSMTP(SMTP{Addr: kc.Connect, Timeout: kc.ConnectTimeout, HeloName: kc.HeloName, Dialer: d})
	case keepalived.CheckDNS:
		return NewDNS(DNS{Addr: kc.Connect, Timeout: kc.ConnectTimeout, Type: kc.DNSType, Name: kc.DNSName, Dialer: d})
	case keepalived.CheckUDP:
		return NewUDP(UDP{Addr: kc.Connect, Timeout: kc.ConnectTimeout, Payload: kc.Payload, RequireReply: kc.RequireReply,
			ReplyData: kc.ReplyData, ReplyMask: kc.ReplyMask, MinReplyLen: kc.MinReplyLen, MaxReplyLen: kc.MaxReplyLen, Dialer: d})
	case keepalived.CheckPing:
		return NewPing(Ping{Addr: kc.Connect.Addr(), Timeout: kc.ConnectTimeout, Dialer: d})
	case keepalived.CheckFile:
		t := kc.TrackFile
		if t == nil {
			return nil, fmt.Errorf("%w: FILE_CHECK without a track_file", ErrSpec)
		}
		return NewFile(File{Path: t.Path, Weight: kc.FileWeight, Reverse: kc.FileReverse, ConfiguredWeight: weight,
			Init: t.Init, InitValue: t.InitValue, Overwrite: t.Overwrite})
	}
	return nil, fmt.Errorf("%w: checker type %q is not run by xlvs", ErrSpec, kc.Type)
}

var errNoInclude = errors.New("include is not allowed in a check")

// ParseChecks reads checker blocks written as in a keepalived real_server (for example
// "TCP_CHECK {\n connect_timeout 3\n delay_loop 5\n}") for the real server rs of the
// service key, with keepalived's defaults for everything not given. It lets checks be
// attached to rules made with xlvsadm, in the same language as keepalived.conf.
func ParseChecks(key ServiceKey, rs netip.AddrPort, text string) ([]Check, error) {
	if !key.Addr.IsValid() || !rs.IsValid() {
		return nil, fmt.Errorf("%w: a check needs a service and a real server address", ErrSpec)
	}
	proto := key.Protocol
	if proto == "" {
		proto = "tcp"
	}
	const prefixLines = 4 // the lines before the text, taken off positions in messages
	src := fmt.Sprintf("virtual_server %s %d {\nprotocol %s\nlb_kind NAT\nreal_server %s %d {\n%s\n}\n}\n",
		key.Addr, key.Port, proto, rs.Addr(), rs.Port(), text)
	cfg, err := keepalived.Parse("check", []byte(src), keepalived.Options{
		Strict:   true, // a typo in a flag's text is an error, not a warning nobody sees
		ReadFile: func(string) ([]byte, error) { return nil, errNoInclude },
		Glob:     func(string) ([]string, error) { return nil, errNoInclude },
	})
	if err != nil {
		var list keepalived.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				e.Pos.Line = max(1, e.Pos.Line-prefixLines)
			}
		}
		return nil, err
	}
	if len(cfg.VirtualServers) != 1 || len(cfg.VirtualServers[0].RealServers) != 1 {
		return nil, fmt.Errorf("%w: check text for %s is not a list of checker blocks", ErrSpec, rs)
	}
	vss, err := FromKeepalived(cfg)
	if err != nil {
		return nil, err
	}
	checks := vss[0].Servers[0].Checks
	if len(checks) == 0 {
		return nil, fmt.Errorf("%w: no checker block (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, DNS_CHECK, UDP_CHECK, PING_CHECK) for %s", ErrSpec, rs)
	}
	return checks, nil
}
