package control

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"xlvs/control/api"
	"xlvs/dataplane"
)

// Firewall marks: the rules (xlvsadm --add-mark) that give packets the marks fwmark
// services (-f) match, kept with the services, saved with them and cleared by -C with
// them. The dataplane compiles them for the XDP program and its workers
// (dataplane/fwmark.go).

// MaxMarkRules bounds the firewall-mark rules.
const MaxMarkRules = 8192

// svcAddr is the address a service's family is read from: its VIP, or the unspecified
// address of a fwmark service's family.
func svcAddr(c *api.Service) netip.Addr {
	if c.Protocol == api.ProtoFWMark {
		if c.Family == 6 {
			return netip.IPv6Unspecified()
		}
		return netip.IPv4Unspecified()
	}
	return c.Addr
}

// checkMarkService validates the key of a fwmark service and fills its family (4 when
// not given, as ipvsadm -f without -6).
func checkMarkService(s *api.Service) *api.Error {
	if s.FWMark == 0 {
		return apiErr(api.ErrCodeInvalid, "fwmark 0: a firewall-mark service needs a mark from 1 to 4294967295 (-f MARK)")
	}
	switch s.Family {
	case 0:
		s.Family = 4
	case 4, 6:
	default:
		return apiErr(api.ErrCodeInvalid, "fwmark %d: family %d: want 4, or 6 (-6)", s.FWMark, s.Family)
	}
	if s.Addr.IsValid() || s.Port != 0 {
		return apiErr(api.ErrCodeInvalid, "fwmark %d: a firewall-mark service has no address or port (the mark rules name them: --add-mark)", s.FWMark)
	}
	return nil
}

func cloneMarks(ms []api.MarkRule) []api.MarkRule {
	out := make([]api.MarkRule, len(ms))
	for i, m := range ms {
		m.Ports = slices.Clone(m.Ports)
		out[i] = m
	}
	return out
}

// checkMark validates a mark rule and puts it in its canonical form: the prefix masked
// (as iptables masks -d 10.1.2.3/24), port ranges sorted and merged, none when they
// cover every port.
func checkMark(m *api.MarkRule) *api.Error {
	switch m.Protocol {
	case api.ProtoTCP, api.ProtoUDP, api.ProtoSCTP:
	default:
		return apiErr(api.ErrCodeInvalid, "mark rule: protocol %q: must be tcp (-t), udp (-u) or sctp (--sctp-service)", m.Protocol)
	}
	if m.Mark == 0 {
		return apiErr(api.ErrCodeInvalid, "mark rule: mark 0: marks go from 1 to 4294967295 (-f MARK)")
	}
	p := m.Prefix
	if !p.IsValid() || p.Addr().Zone() != "" {
		return apiErr(api.ErrCodeInvalid, "mark rule: destination %v: want an address or prefix such as 192.0.2.10, 192.0.2.0/24 or 2001:db8::/64", p)
	}
	if p.Addr().Is4In6() {
		return apiErr(api.ErrCodeInvalid, "mark rule: destination %v: write IPv4 addresses as a.b.c.d", p)
	}
	m.Prefix = p.Masked()
	ps := slices.Clone(m.Ports)
	for _, r := range ps {
		if r.Lo > r.Hi {
			return apiErr(api.ErrCodeInvalid, "mark rule: port range %d-%d: the first port must not be above the last", r.Lo, r.Hi)
		}
	}
	slices.SortFunc(ps, func(a, b api.PortRange) int { return cmp.Or(cmp.Compare(a.Lo, b.Lo), cmp.Compare(a.Hi, b.Hi)) })
	var merged []api.PortRange
	for _, r := range ps {
		if n := len(merged); n > 0 && uint32(r.Lo) <= uint32(merged[n-1].Hi)+1 {
			merged[n-1].Hi = max(merged[n-1].Hi, r.Hi)
			continue
		}
		merged = append(merged, r)
	}
	if len(merged) == 1 && merged[0] == (api.PortRange{Lo: 0, Hi: 65535}) {
		merged = nil
	}
	m.Ports = merged
	return nil
}

func sameMark(a, b *api.MarkRule) bool {
	return a.Protocol == b.Protocol && a.Prefix == b.Prefix && a.Mark == b.Mark && slices.Equal(a.Ports, b.Ports)
}

// markString names a rule in messages as its -S line does.
func markString(m *api.MarkRule) string {
	return fmt.Sprintf("%s %s%s -> mark %d", strings.ToUpper(m.Protocol), m.Prefix, portsString(m.Ports), m.Mark)
}

func portsString(ps []api.PortRange) string {
	if len(ps) == 0 {
		return ""
	}
	var b strings.Builder
	for i, r := range ps {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(r.Lo)))
		if r.Hi != r.Lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(r.Hi)))
		}
	}
	return b.String()
}

// applyMark applies OpAddMark or OpDelMark to r.
func applyMark(r *rules, req *api.Request) *api.Error {
	if req.Mark == nil {
		return apiErr(api.ErrCodeInvalid, "%s: no rule given (-t or -u DEST[/LEN][:PORTS] and -f MARK)", req.Op)
	}
	m := *req.Mark
	if e := checkMark(&m); e != nil {
		return e
	}
	i := slices.IndexFunc(r.marks, func(x api.MarkRule) bool { return sameMark(&x, &m) })
	if req.Op == api.OpAddMark {
		if i >= 0 {
			return apiErr(api.ErrCodeMarkExists, "mark rule %s already exists", markString(&m))
		}
		if len(r.marks) >= MaxMarkRules {
			return apiErr(api.ErrCodeInvalid, "too many mark rules: at most %d (use prefixes and port ranges)", MaxMarkRules)
		}
		r.marks = append(r.marks, m)
		return nil
	}
	if i < 0 {
		return apiErr(api.ErrCodeNoMark, "no mark rule %s (--del-mark names a rule as -L lists it)", markString(&m))
	}
	r.marks = slices.Delete(r.marks, i, i+1)
	return nil
}

// dataplaneMarks turns the rules into the dataplane's.
func dataplaneMarks(ms []api.MarkRule) []dataplane.MarkRule {
	if len(ms) == 0 {
		return nil
	}
	out := make([]dataplane.MarkRule, len(ms))
	for i, m := range ms {
		a := m.Prefix.Addr()
		d := dataplane.MarkRule{Proto: protoNum(m.Protocol), Family: 6, Addr: a.As16(), Bits: uint8(m.Prefix.Bits()), Mark: m.Mark}
		if a.Is4() {
			d.Family = 4
		}
		for _, p := range m.Ports {
			d.Ports = append(d.Ports, dataplane.PortRange{Lo: p.Lo, Hi: p.Hi})
		}
		out[i] = d
	}
	return out
}

// listMarks returns the rules in list order.
func (d *Daemon) listMarks() []api.MarkRule {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cloneMarks(d.r.marks)
}

// RestoreMarks adds the firewall-mark rules saved at path (the state file) that are not
// defined yet, in their order, and returns how many it added. Under keepalived.conf,
// whose rules come from the file, the mark rules (made with xlvsadm, as iptables made
// them for keepalived) come back so. A missing file or path "" adds none.
func (d *Daemon) RestoreMarks(path string) (int, error) {
	if path == "" {
		return 0, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read state %s: %w", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("read state %s: %w (fix or remove the file; xlvsd rewrites it on the next change)", path, err)
	}
	have := d.listMarks()
	req := &api.Request{Op: api.OpRestore}
	for i := range st.Marks {
		m := st.Marks[i]
		if checkMark(&m) == nil && slices.ContainsFunc(have, func(x api.MarkRule) bool { return sameMark(&x, &m) }) {
			continue
		}
		req.Batch = append(req.Batch, api.Request{Op: api.OpAddMark, Mark: &m, Line: len(req.Batch) + 1})
	}
	if len(req.Batch) == 0 {
		return 0, nil
	}
	if e := d.change(req); e != nil {
		return 0, fmt.Errorf("restore mark rules from %s: %s", path, e.Message)
	}
	return len(req.Batch), nil
}
