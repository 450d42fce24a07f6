package ipvsadm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"xlvs/control/api"
)

func TestParseRules(t *testing.T) {
	in := `# saved by xlvsadm -S
-A -t 198.18.0.1:80 -s rr

ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.1:80 -m -w 2   # trailing comment
	/usr/sbin/xlvsadm	-a -t 198.18.0.1:80 -r 198.18.1.2 -g` + "\r" + `
   # indented comment
-C
--set 1 2 3
-Z
-d -t 198.18.0.1:80 -r 198.18.1.2
-D -t 198.18.0.1:80
--start-daemon master
--stop-daemon master
-E -t 198.18.0.1:80 -s wrr
-e -t 198.18.0.1:80 -r 198.18.1.1:80 -m -w 5` // no final newline
	got, err := testParser.ParseRules(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != api.OpRestore || got.Version != api.Version {
		t.Fatalf("got op %q version %d", got.Op, got.Version)
	}
	type opLine struct {
		op   string
		line int
	}
	var ops []opLine
	for _, r := range got.Batch {
		ops = append(ops, opLine{r.Op, r.Line})
	}
	want := []opLine{{api.OpAddService, 2}, {api.OpAddDest, 4}, {api.OpAddDest, 5}, {api.OpClear, 7},
		{api.OpSetTimeouts, 8}, {api.OpZero, 9}, {api.OpDelDest, 10}, {api.OpDelService, 11},
		{api.OpStartDaemon, 12}, {api.OpStopDaemon, 13}, {api.OpEditService, 14}, {api.OpEditDest, 15}}
	if !reflect.DeepEqual(ops, want) {
		t.Errorf("batch ops:\n%v\nwant\n%v", ops, want)
	}
	if d := got.Batch[1].Dest; d == nil || d.Weight != 2 || d.Method != api.MethodMasq {
		t.Errorf("line 4 dest = %+v", d)
	}
	if d := got.Batch[2].Dest; d == nil || d.Port != 80 || d.Addr != ip("198.18.1.2") {
		t.Errorf("line 5 dest = %+v (the CR must not stick to the last word)", d)
	}
}

func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		want string
	}{
		{name: "bad weight", in: "-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.18.1.1 -w x\n", line: 2, want: "illegal weight specified"},
		{name: "no command", in: "\n\n-t 198.18.0.1:80\n", line: 3, want: "-t is not a command"},
		{name: "list not allowed", in: "-A -t 198.18.0.1:80\n-L -n\n", line: 2, want: "the 'list' command cannot be restored"},
		{name: "restore not allowed", in: "-R\n", line: 1, want: "the 'restore' command cannot be restored"},
		{name: "save not allowed", in: "-S\n", line: 1, want: "the 'save' command cannot be restored"},
		{name: "help not allowed", in: "# x\n-h\n", line: 2, want: "the 'help' command cannot be restored"},
		{name: "unknown option", in: "-A -t 198.18.0.1:80 --bogus\n", line: 1, want: "--bogus: unknown option"},
		{name: "last line without newline", in: "-C\n-A -t 198.18.0.1", line: 2, want: "Zero port specified"},
		{name: "line too long", in: "-C\n-A " + strings.Repeat("x", MaxRuleLine) + "\n", line: 2, want: "line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testParser.ParseRules(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("got %+v, want an error", got)
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Line != tt.line {
				t.Fatalf("err = %v, want a *RuleError for line %d", err, tt.line)
			}
			prefix := fmt.Sprintf("line %d: ", tt.line)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want %q... containing %q", err, prefix, tt.want)
			}
		})
	}
}

func TestParseRulesEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# nothing\n   \n\t\n", "ipvsadm\n"} {
		got, err := testParser.ParseRules(strings.NewReader(in))
		if err != nil || len(got.Batch) != 0 {
			t.Errorf("ParseRules(%q) = %+v, %v; want an empty batch", in, got, err)
		}
	}
}

// table applies the service and destination requests of a restore, as a daemon would,
// to compare a saved and restored table with the original.
func table(t *testing.T, batch []api.Request) []api.Service {
	t.Helper()
	var out []api.Service
	find := func(k api.ServiceKey) *api.Service {
		for i := range out {
			if out[i].ServiceKey == k {
				return &out[i]
			}
		}
		t.Fatalf("restore refers to unknown service %+v", k)
		return nil
	}
	for _, r := range batch {
		switch r.Op {
		case api.OpAddService:
			out = append(out, *r.Service)
		case api.OpAddDest:
			s := find(r.Service.ServiceKey)
			s.Dests = append(s.Dests, *r.Dest)
		default:
			t.Fatalf("unexpected op %s in a saved table", r.Op)
		}
	}
	return out
}

// canonical drops what -S does not save (counters, rates, connection counts, "local"),
// and puts services and destinations in listing order.
func canonical(svcs []api.Service) []api.Service {
	out := sortedServices(svcs)
	for i := range out {
		s := &out[i]
		s.Stats = api.Stats{}
		s.SchedFlags = schedFlagNames(s.Scheduler, schedFlagBits(s.SchedFlags))
		if m := maskText(s); m != s.Netmask {
			s.Netmask = m
		}
		s.Dests = sortedDests(s.Dests)
		for j := range s.Dests {
			d := &s.Dests[j]
			d.Stats, d.ActiveConns, d.InactConns, d.PersistConns = api.Stats{}, 0, 0, 0
			if d.Method == api.MethodLocal {
				d.Method = api.MethodRoute // saved as -g: the daemon decides what is local
			}
		}
		if len(s.Dests) == 0 {
			s.Dests = nil
		}
	}
	return out
}

// noV6Names resolves like fakeResolver but gives IPv6 addresses no names: ipvsadm reads
// host names as IPv4 only, so a named IPv6 service would not restore (in ipvsadm either).
type noV6Names struct{ fakeResolver }

func (r noV6Names) LookupAddr(a netip.Addr) (string, bool) {
	if a.Is6() {
		return "", false
	}
	return r.fakeResolver.LookupAddr(a)
}

func TestSaveRestoreRoundTrip(t *testing.T) {
	for _, numeric := range []bool{true, false} {
		t.Run(fmt.Sprintf("numeric=%v", numeric), func(t *testing.T) {
			var buf bytes.Buffer
			if err := SaveWith(&buf, fixture(), numeric, noV6Names{}); err != nil {
				t.Fatal(err)
			}
			req, err := Parser{Resolver: noV6Names{}}.ParseRules(&buf)
			if err != nil {
				t.Fatalf("restore of saved rules: %v\n%s", err, buf.String())
			}
			got, want := canonical(table(t, req.Batch)), canonical(fixture())
			if len(got) != len(want) {
				t.Fatalf("restored %d services, saved %d", len(got), len(want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], want[i]) {
					g, _ := json.Marshal(got[i])
					w, _ := json.Marshal(want[i])
					t.Errorf("save then restore changed a service:\ngot  %s\nwant %s", g, w)
				}
			}
			// Saving the restored table gives the same rules.
			var again bytes.Buffer
			if err := SaveWith(&again, table(t, req.Batch), numeric, noV6Names{}); err != nil {
				t.Fatal(err)
			}
			var first bytes.Buffer
			SaveWith(&first, fixture(), numeric, noV6Names{})
			if again.String() != first.String() {
				t.Errorf("second save differs:\n%s\nvs\n%s", again.String(), first.String())
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	restore := api.Request{Op: api.OpRestore, Batch: []api.Request{
		{Op: api.OpAddService, Line: 1}, {Op: api.OpAddDest, Line: 3}}}
	tests := []struct {
		name string
		req  api.Request
		err  api.Error
		want string
	}{
		{"service exists", api.Request{Op: api.OpAddService}, api.Error{Code: api.ErrCodeServiceExists, Message: "service already exists"}, "Service already exists"},
		{"service exists, detail", api.Request{Op: api.OpAddService}, api.Error{Code: api.ErrCodeServiceExists, Message: "TCP 198.18.0.1:80 is defined"}, "Service already exists: TCP 198.18.0.1:80 is defined"},
		{"edit unknown service", api.Request{Op: api.OpEditService}, api.Error{Code: api.ErrCodeNoService}, "No such service"},
		{"dest on unknown service", api.Request{Op: api.OpAddDest}, api.Error{Code: api.ErrCodeNoService}, "Service not defined"},
		{"dest exists", api.Request{Op: api.OpAddDest}, api.Error{Code: api.ErrCodeDestExists}, "Destination already exists"},
		{"no dest", api.Request{Op: api.OpDelDest}, api.Error{Code: api.ErrCodeNoDest, Message: "no such destination"}, "No such destination"},
		{"other code", api.Request{Op: api.OpStartDaemon}, api.Error{Code: api.ErrCodeNotImplemented, Message: "sync daemon not implemented"}, "sync daemon not implemented"},
		// libipvs's texts for the kernel's EEXIST and ESRCH of the daemon commands.
		// The daemon's message names no option; xlvsadm adds the one that helps.
		{"daemon running", api.Request{Op: api.OpStartDaemon, Daemon: &api.SyncDaemon{State: "master"}}, api.Error{Code: api.ErrCodeDaemonExists, Message: "sync daemon: the master sync daemon is already running"},
			"Daemon has already run: sync daemon: the master sync daemon is already running (stop it first with --stop-daemon master)"},
		{"no daemon", api.Request{Op: api.OpStopDaemon}, api.Error{Code: api.ErrCodeNoDaemon}, "No daemon is running"},
		{"restore line", restore, api.Error{Code: api.ErrCodeNoService, Line: 3, Message: "x"}, "line 3: Service not defined: x"},
		{"restore without line", restore, api.Error{Code: api.ErrCodeInternal, Message: "boom"}, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorMessage(&tt.req, &tt.err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseServices(t *testing.T) {
	db := parseServices(strings.NewReader(`# comment
http		80/tcp		www		# WorldWideWeb HTTP
http		80/udp
domain		53/tcp
domain		53/udp
webcache	80/tcp		# a later name for 80/tcp
bad		x/tcp
short
`))
	if p, ok := db.port("tcp", "www"); !ok || p != 80 {
		t.Errorf("alias www = %d, %v", p, ok)
	}
	if n, ok := db.name("tcp", 80); !ok || n != "http" {
		t.Errorf("80/tcp = %q, %v; want the first entry, http", n, ok)
	}
	if _, ok := db.port("sctp", "http"); ok {
		t.Error("found http/sctp")
	}
	if _, ok := db.name("tcp", 81); ok {
		t.Error("found 81/tcp")
	}
}

func TestResolvers(t *testing.T) {
	if _, ok := NoResolver.LookupHost("localhost"); ok {
		t.Error("NoResolver resolved a name")
	}
	// /etc/services is part of every Debian base system; skip where it is not.
	if _, err := os.Stat("/etc/services"); err == nil {
		if p, ok := SystemResolver.LookupPort("tcp", "ssh"); !ok || p != 22 {
			t.Errorf("SystemResolver ssh/tcp = %d, %v", p, ok)
		}
		if n, ok := SystemResolver.PortName("tcp", 22); !ok || n != "ssh" {
			t.Errorf("SystemResolver 22/tcp = %q, %v", n, ok)
		}
	}
}

// FuzzParseRules: no input makes ParseRules panic; an error is a *RuleError naming a line
// of the input; a success has one batch entry per command line, with increasing lines
// inside the input.
func FuzzParseRules(f *testing.F) {
	for _, name := range []string{"save_numeric", "save_names"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name+".golden")); err == nil {
			f.Add(string(b))
		}
	}
	seeds := []string{
		"-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.18.1.1 -w 70000\n",
		"-C\n--set 1 2\n", "-Lnc", "#\n\n-A -f 1 -6 -p -M 64 -b flag-1,flag-2", "-a -t [2001:db8::1]:80 -r [",
		"-A -u 198.18.0.1:53 -o -s sh -b sh-port\r\n-e -u 198.18.0.1:53 -r 198.18.1.1 -i --tun-type gue --tun-port 1 --tun-csum",
		"--start-daemon master --mcast-group ff02::1 --sync-maxlen 1\n--stop-daemon backup", "-p\x00", "\n\n\n-",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	p := Parser{Resolver: NoResolver}
	f.Fuzz(func(t *testing.T, in string) {
		req, err := p.ParseRules(strings.NewReader(in))
		lines := strings.Count(in, "\n") + 1
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RuleError", err)
			}
			if re.Line < 1 || re.Line > lines {
				t.Fatalf("error names line %d of a %d-line input: %v", re.Line, lines, err)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", re.Line)) {
				t.Fatalf("error %q does not start with its line", err)
			}
			return
		}
		if req.Op != api.OpRestore {
			t.Fatalf("op %q", req.Op)
		}
		last := 0
		for _, r := range req.Batch {
			if r.Line <= last || r.Line > lines {
				t.Fatalf("batch line %d after %d in a %d-line input", r.Line, last, lines)
			}
			last = r.Line
			if !slices.Contains([]string{api.OpAddService, api.OpEditService, api.OpDelService, api.OpClear,
				api.OpAddDest, api.OpEditDest, api.OpDelDest, api.OpZero, api.OpSetTimeouts,
				api.OpStartDaemon, api.OpStopDaemon}, r.Op) {
				t.Fatalf("op %q in a restore batch", r.Op)
			}
			if r.Version != api.Version {
				t.Fatalf("batch entry without version: %+v", r)
			}
		}
	})
}

// FuzzParse: no command line makes Parse panic, and what parses formats without error.
func FuzzParse(f *testing.F) {
	f.Add("-A\x00-t\x00198.18.0.1:80\x00-p")
	f.Add("-Lnc")
	f.Add("-a\x00-f\x001\x00-6\x00-r\x00[2001:db8::1]:0\x00-i\x00--tun-type=gue\x00--tun-port\x001")
	f.Add("--set\x00--\x001\x002\x003")
	f.Add("-L\x00-t\x00[::1]:1\x00--stats\x00--exact")
	p := Parser{Resolver: NoResolver}
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		cmd, err := p.Parse(args)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		var buf bytes.Buffer
		resp := &api.Response{Info: &api.Info{ConnTable: 1}, Services: fixture()[:2], Timeouts: &api.Timeouts{}}
		if err := Format(&buf, cmd, resp); err != nil {
			t.Fatalf("Format after Parse(%q): %v", args, err)
		}
	})
}
