package keepalived

import (
	"math"
	"strconv"
	"strings"
)

// The checkers keepalived 2.x added to TCP_CHECK, HTTP_GET, SSL_GET and MISC_CHECK, read
// as keepalived.conf(5) describes them and check_smtp.c, check_dns.c, check_udp.c,
// check_ping.c, check_file.c and track_file.c parse them (acassen/keepalived):
//
//	SMTP_CHECK { helo_name NAME; host { connection options } ... }   (host: deprecated)
//	DNS_CHECK  { type A|NS|CNAME|SOA|MX|TXT|AAAA; name NAME }        (retry 3)
//	UDP_CHECK  { payload HEX; require_reply [HEX]; min_reply_length N; max_reply_length N }
//	PING_CHECK { }
//	FILE_CHECK { track_file NAME; weight W [reverse|noreverse]; dynamic }
//	track_file NAME { file PATH; weight W [reverse]; init_file [VALUE] [overwrite] }
//
// All but FILE_CHECK take the common and connection options (connect_ip, connect_port,
// bindto, bind_port, bind_if, fwmark, connect_timeout, retry, delay_before_retry,
// warmup, delay_loop, alpha).

// dnsTypes are the query types DNS_CHECK knows (check_dns.c's DNS_TYPE).
var dnsTypes = []string{"A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"}

// checkKeyword2 reads the keywords of the checkers added in keepalived 2.x.
func (p *parser) checkKeyword2(c *rawCheck, n *node) {
	kw := n.keyword()
	switch kw {
	case "nb_sock_retry":
		// DPVS's keepalived (its TCP_CHECK samples): no xlvs meaning.
		if p.value(n, 1, 1, "nb_sock_retry N") {
			p.warnf(n.pos, "nb_sock_retry ignored: a DPVS keepalived keyword with no xlvs meaning; use retry")
		}
	case "helo_name":
		p.str(n, &c.helo)
	case "host":
		if !p.opensBlock(n) {
			return
		}
		p.extraArgs(n, "host {")
		p.warnf(n.pos, "SMTP_CHECK host blocks are deprecated in keepalived: each host is checked as an SMTP_CHECK of its own")
		h := &rawCheck{pos: n.pos, typ: "host"}
		p.checkBody(h, n.children)
		c.hosts = append(c.hosts, h)
	case "type":
		if p.value(n, 1, 1, "type "+strings.Join(dnsTypes, "|")) {
			t := strings.ToUpper(n.args()[0])
			for _, k := range dnsTypes {
				if t == k {
					c.dnsType = optStr{v: t, set: true}
					return
				}
			}
			p.errorf(n.pos, "type: unknown DNS query type %q: expected one of %s", n.args()[0], strings.Join(dnsTypes, ", "))
		}
	case "name":
		if p.value(n, 1, 1, "name DOMAIN") {
			name := n.args()[0]
			if msg := checkDNSName(name); msg != "" {
				p.errorf(n.pos, "name: %q %s", name, msg)
				return
			}
			c.dnsName = optStr{v: name, set: true}
		}
	case "payload":
		if !p.value(n, 1, 1<<10, "payload HEX") {
			return
		}
		b, _, ok := readHex(strings.Join(n.args(), " "), false)
		if !ok {
			p.errorf(n.pos, "payload: %q is not a hexadecimal string: expected pairs of hex digits, blanks allowed, such as \"48 65 6c6c6f\"", strings.Join(n.args(), " "))
			return
		}
		c.payload = b
	case "require_reply":
		c.requireReply = true
		if len(n.args()) == 0 {
			return
		}
		b, m, ok := readHex(strings.Join(n.args(), " "), true)
		if !ok {
			p.errorf(n.pos, "require_reply: %q is not a hexadecimal string: expected pairs of hex digits (x for a nibble not checked), blanks allowed", strings.Join(n.args(), " "))
			return
		}
		c.replyData, c.replyMask = b, m
	case "min_reply_length":
		p.uint32Val(n, 0, 65535, "reply length", &c.minReply)
	case "max_reply_length":
		p.uint32Val(n, 0, 65535, "reply length", &c.maxReply)
	case "track_file":
		if p.value(n, 1, 1, "track_file NAME") {
			c.trackFile, c.trackFilePos = n.args()[0], n.pos
		}
	case "weight":
		// FILE_CHECK: weight W [reverse|noreverse].
		if !p.value(n, 1, 2, "weight W [reverse|noreverse]") {
			return
		}
		v, err := strconv.ParseInt(n.args()[0], 10, 32)
		if err != nil || v < -math.MaxInt32 {
			p.errorf(n.pos, "weight: %q is not a valid weight: expected an integer from -2147483647 to 2147483647", n.args()[0])
			return
		}
		c.fileWeight = optU32{v: uint32(int32(v)), set: true}
		if len(n.args()) == 2 {
			switch n.args()[1] {
			case "reverse":
				c.fileReverse = true
			case "noreverse":
			default:
				p.errorf(n.pos, "weight: unknown option %q: expected reverse or noreverse", n.args()[1])
			}
		}
	case "dynamic":
		// keepalived 2.3: a weighted FILE_CHECK adjusts the weight; so does xlvs's.
		p.value(n, 0, 0, "dynamic")
	}
}

// checkDNSName reports what is wrong with a DNS query name, "" when nothing.
func checkDNSName(name string) string {
	if name == "." {
		return ""
	}
	if len(name) > 253 {
		return "is longer than 253 characters"
	}
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			return "has an empty label: expected labels separated by single dots, such as www.example.com"
		}
		if len(l) > 63 {
			return "has a label longer than 63 characters"
		}
	}
	return ""
}

// readHex reads keepalived's HEX_STR (utils.c's read_hex_str): blanks separate groups;
// within a group digits pair into bytes and a digit left alone is a byte of its own
// ("Ab12f 3" is AB 12 0F 03). With wildcards, x or X is a nibble whose bits are set in
// mask (not compared). It reports false on any other character or an empty string.
func readHex(s string, wildcards bool) (data, mask []byte, ok bool) {
	nibble := func(c byte) (v, m byte, ok bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', 0, true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, 0, true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, 0, true
		case wildcards && (c == 'x' || c == 'X'):
			return 0, 0xf, true
		}
		return 0, 0, false
	}
	masked := false
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		v, m, ok := nibble(s[i])
		if !ok {
			return nil, nil, false
		}
		i++
		if i < len(s) && s[i] != ' ' && s[i] != '\t' {
			v2, m2, ok := nibble(s[i])
			if !ok {
				return nil, nil, false
			}
			v, m = v<<4|v2, m<<4|m2
			i++
		}
		data = append(data, v)
		mask = append(mask, m)
		if m != 0 {
			masked = true
		}
	}
	if len(data) == 0 {
		return nil, nil, false
	}
	if !masked {
		mask = nil
	}
	return data, mask, true
}

var trackFileKeywords = []string{"file", "weight", "init_file"}

// trackFileBlock reads a top-level track_file block.
func (p *parser) trackFileBlock(n *node) {
	if !p.opensBlock(n) {
		return
	}
	if len(n.args()) != 1 {
		p.errorf(n.pos, "track_file: expected \"track_file NAME {\", got %q", n.text())
		return
	}
	t := &TrackFile{Pos: n.pos, Name: n.args()[0], Weight: DefaultTrackWeight}
	for _, prev := range p.tracks {
		if prev.Name == t.Name {
			p.errorf(n.pos, "track_file %s is defined twice (first at %s): expected one block per name", t.Name, prev.Pos)
			return
		}
	}
	where := "track_file " + t.Name
	for _, k := range n.children {
		switch k.keyword() {
		case "file":
			if p.value(k, 1, 1, "file PATH") {
				t.Path = k.args()[0]
			}
		case "weight":
			if !p.value(k, 1, 2, "weight W [reverse]") {
				continue
			}
			v, err := strconv.ParseInt(k.args()[0], 10, 32)
			if err != nil || v < -254 || v > 254 {
				p.errorf(k.pos, "%s: weight %q: expected an integer from -254 to 254", where, k.args()[0])
				continue
			}
			t.Weight = int32(v)
			if len(k.args()) == 2 {
				if k.args()[1] != "reverse" {
					p.errorf(k.pos, "%s: weight: unknown option %q: expected reverse", where, k.args()[1])
					continue
				}
				t.Reverse = true
			}
		case "init_file":
			if !p.value(k, 0, 2, "init_file [VALUE] [overwrite]") {
				continue
			}
			t.Init = true
			for _, a := range k.args() {
				if a == "overwrite" {
					t.Overwrite = true
					continue
				}
				v, err := strconv.ParseInt(a, 10, 32)
				if err != nil {
					p.errorf(k.pos, "%s: init_file: %q is not a number: expected \"init_file [VALUE] [overwrite]\"", where, a)
					continue
				}
				t.InitValue = v
			}
		default:
			p.unknown(k, where, trackFileKeywords)
		}
	}
	if t.Path == "" {
		p.errorf(n.pos, "%s has no file: add \"file PATH\"", where)
		return
	}
	p.tracks = append(p.tracks, t)
}
