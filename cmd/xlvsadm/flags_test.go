package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"xlvs/control/ipvsadm"
)

// The model below is written from ipvsadm 1.31's ipvsadm.c (cezarsa/ipvsadm at
// 33c20a873b11, "2019/12/24"): its command names (cmdnames), option names (optnames)
// and its table of legal command/option combinations (commands_v_options), and
// generic_opt_check's three messages. xlvsadm must give the same first message for the
// same command line (it may add an explanation after it).

// ipvsCommands are ipvsadm's commands in the table's row order: the name its messages
// use and a command line that selects it.
var ipvsCommands = []struct {
	name string
	args []string
}{
	{"add-service", []string{"-A"}},
	{"edit-service", []string{"-E"}},
	{"delete-service", []string{"-D"}},
	{"flush", []string{"-C"}},
	{"list", []string{"-L"}},
	{"add-server", []string{"-a"}},
	{"delete-server", []string{"-d"}},
	{"edit-server", []string{"-e"}},
	{"set", []string{"--set", "900", "120", "300"}},
	{"start-daemon", []string{"--start-daemon", "master"}},
	{"stop-daemon", []string{"--stop-daemon", "master"}},
	{"restore", []string{"-R"}},
	{"save", []string{"-S"}},
	{"zero", []string{"-Z"}},
}

// ipvsOptions are ipvsadm's options in the table's column order: the name its messages
// use and a valid use of it on the command line.
var ipvsOptions = []struct {
	name string
	args []string
}{
	{"numeric", []string{"-n"}},
	{"connection", []string{"-c"}},
	{"service-address", []string{"-t", "198.18.0.1:80"}},
	{"scheduler", []string{"-s", "rr"}},
	{"persistent", []string{"-p", "300"}},
	{"netmask", []string{"-M", "255.255.255.0"}},
	{"real-server", []string{"-r", "198.18.1.1:80"}},
	{"forwarding-method", []string{"-m"}},
	{"weight", []string{"-w", "2"}},
	{"u-threshold", []string{"-x", "100"}},
	{"l-threshold", []string{"-y", "50"}},
	{"mcast-interface", []string{"--mcast-interface", "eth0"}},
	{"timeout", []string{"--timeout"}},
	{"daemon", []string{"--daemon"}},
	{"stats", []string{"--stats"}},
	{"rate", []string{"--rate"}},
	{"thresholds", []string{"--thresholds"}},
	{"persistent-conn", []string{"--persistent-conn"}},
	{"nosort", []string{"--nosort"}},
	{"syncid", []string{"--syncid", "7"}},
	{"exact", []string{"--exact"}},
	{"ops", []string{"-o"}},
	{"pe", []string{"--pe", "sip"}},
	{"sched-flags", []string{"-b", "flag-1"}},
	{"mcast-group", []string{"--mcast-group", "224.0.0.81"}},
	{"mcast-port", []string{"--mcast-port", "8848"}},
	{"mcast-ttl", []string{"--mcast-ttl", "1"}},
	{"sync-maxlen", []string{"--sync-maxlen", "1472"}},
	{"tun-info", []string{"--tun-info"}},
	{"tun-type", []string{"--tun-type", "ipip"}},
	{"tun-port", []string{"--tun-port", "6080"}},
	{"tun-nocsum", []string{"--tun-nocsum"}},
	{"tun-csum", []string{"--tun-csum"}},
	{"tun-remcsum", []string{"--tun-remcsum"}},
}

// legal is commands_v_options: one row per command, one character per option:
// '+' compulsory, 'x' illegal, '1' at most one of the row's '1' options, ' ' optional.
var legal = []string{
	/* add-service    */ "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
	/* edit-service   */ "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
	/* delete-service */ "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* flush          */ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* list           */ " 11xxxxxxxxx11       xxxxxxx xxxxx",
	/* add-server     */ "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
	/* delete-server  */ "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* edit-server    */ "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
	/* set            */ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* start-daemon   */ "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
	/* stop-daemon    */ "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
	/* restore        */ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* save           */ " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* zero           */ "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}

// runParse runs xlvsadm in-process against a socket nothing listens on: a command line
// that does not parse never reaches a daemon.
func runParse(t *testing.T, args []string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	sock := filepath.Join(t.TempDir(), "none.sock")
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb, sock)
	if out.Len() != 0 {
		t.Errorf("%q: stdout %q, want nothing", args, out.String())
	}
	return code, errb.String()
}

// compulsory is the command line of command i with its compulsory options.
func compulsory(i int) []string {
	args := append([]string(nil), ipvsCommands[i].args...)
	for j, c := range legal[i] {
		if c == '+' {
			args = append(args, ipvsOptions[j].args...)
		}
	}
	return args
}

// TestIllegalOptions: every option the table marks illegal for a command, given with
// the command's compulsory options, is refused with ipvsadm's message and status 2.
func TestIllegalOptions(t *testing.T) {
	if len(legal) != len(ipvsCommands) {
		t.Fatalf("%d table rows for %d commands", len(legal), len(ipvsCommands))
	}
	n := 0
	for i, cmd := range ipvsCommands {
		if len(legal[i]) != len(ipvsOptions) {
			t.Fatalf("row %s has %d columns, want %d", cmd.name, len(legal[i]), len(ipvsOptions))
		}
		for j, opt := range ipvsOptions {
			if legal[i][j] != 'x' {
				continue
			}
			n++
			args := append(compulsory(i), opt.args...)
			t.Run(cmd.name+"/"+opt.name, func(t *testing.T) {
				code, stderr := runParse(t, args)
				want := fmt.Sprintf("Illegal '%s' option with the '%s' command", opt.name, cmd.name)
				if code != exitUsage || !strings.HasPrefix(stderr, want) {
					t.Errorf("xlvsadm %s: status %d, stderr %q; want status %d and %q", strings.Join(args, " "), code, stderr, exitUsage, want)
				}
			})
		}
	}
	if n < 300 {
		t.Fatalf("only %d illegal combinations checked", n)
	}
}

// TestMissingCompulsoryOptions: leaving out a compulsory option is refused with
// ipvsadm's message (the first missing one in the table's order).
func TestMissingCompulsoryOptions(t *testing.T) {
	for i, cmd := range ipvsCommands {
		for j, c := range legal[i] {
			if c != '+' {
				continue
			}
			args := append([]string(nil), cmd.args...)
			for k, ck := range legal[i] {
				if ck == '+' && k != j {
					args = append(args, ipvsOptions[k].args...)
				}
			}
			t.Run(cmd.name+"/"+ipvsOptions[j].name, func(t *testing.T) {
				code, stderr := runParse(t, args)
				want := fmt.Sprintf("You need to supply the '%s' option for the '%s' command", ipvsOptions[j].name, cmd.name)
				if code != exitUsage || !strings.HasPrefix(stderr, want) {
					t.Errorf("xlvsadm %s: status %d, stderr %q; want status %d and %q", strings.Join(args, " "), code, stderr, exitUsage, want)
				}
			})
		}
	}
}

// TestExclusiveListOptions: two of list's '1' options together are refused, naming the
// later column first and the earlier one second, as generic_opt_check does.
func TestExclusiveListOptions(t *testing.T) {
	const list = 4
	var ones []int
	for j, c := range legal[list] {
		if c == '1' {
			ones = append(ones, j)
		}
	}
	for a := 0; a < len(ones); a++ {
		for b := a + 1; b < len(ones); b++ {
			first, second := ipvsOptions[ones[a]], ipvsOptions[ones[b]]
			args := append(append(append([]string(nil), ipvsCommands[list].args...), second.args...), first.args...)
			t.Run(first.name+"+"+second.name, func(t *testing.T) {
				code, stderr := runParse(t, args)
				want := fmt.Sprintf("The option '%s' conflicts with the '%s' option in the 'list' command", second.name, first.name)
				if code != exitUsage || !strings.HasPrefix(stderr, want) {
					t.Errorf("xlvsadm %s: status %d, stderr %q; want status %d and %q", strings.Join(args, " "), code, stderr, exitUsage, want)
				}
			})
		}
	}
}

// TestOptionAndValueErrors: ipvsadm's other parse messages (parse_options, set_command,
// set_option, process_options, the tunnel table), each with status 2.
func TestOptionAndValueErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// A second command is an option parse_options's loop does not know: its default
		// case names it (set_command's "multiple commands specified" is not reached).
		{[]string{"-A", "-L"}, "invalid option `-L'"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-s", "rr", "-s", "wlc"}, "multiple 'scheduler' options specified"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-u", "198.18.0.1:53"}, "multiple 'service-address' options specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-m", "-g"}, "multiple 'forwarding-method' options specified"},
		{[]string{"-A", "-t", "nonsense::x"}, "illegal virtual server address[:port] specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1:port99x"}, "illegal real server address[:port] specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-w", "65536"}, "illegal weight specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-w", "-1"}, "illegal weight specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-x", "x"}, "illegal u_threshold specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-y", "-2"}, "illegal l_threshold specified"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-p", "0"}, "invalid timeout value `0' specified"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-p", "2678401"}, "invalid timeout value `2678401' specified"},
		{[]string{"-A", "-f", "0"}, "invalid fwmark value `0' specified"},
		{[]string{"-A", "-f", "4294967296"}, "invalid fwmark value `4294967296' specified"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-p", "-M", "255.255.0.300"}, "illegal virtual server persistent mask specified"},
		{[]string{"-A", "-t", "[2001:db8::1]:80", "-p", "-M", "129"}, "illegal ipv6 netmask specified"},
		{[]string{"--start-daemon", "primary"}, "illegal start-daemon parameter specified"},
		// Deviation, kept: ipvsadm 1.31 says "illegal start_daemon specified" here (its
		// copy of the start-daemon case); xlvsadm names the command it was given.
		{[]string{"--stop-daemon", "primary"}, "illegal stop-daemon parameter specified"},
		{[]string{"--start-daemon", "master", "--syncid", "256"}, "illegal syncid specified"},
		{[]string{"--start-daemon", "master", "--mcast-port", "0"}, "illegal mcast-port specified"},
		{[]string{"--start-daemon", "master", "--mcast-ttl", "256"}, "illegal mcast-ttl specified"},
		{[]string{"--start-daemon", "master", "--sync-maxlen", "65508"}, "illegal sync-maxlen specified"},
		{[]string{"--start-daemon", "master", "--mcast-group", "198.18.0.1"}, "invalid IPv4 mcast-group `198.18.0.1'"},
		{[]string{"--start-daemon", "master", "--mcast-group", "2001:db8::1"}, "invalid IPv6 mcast-group `2001:db8::1'"},
		{[]string{"--set", "900", "120"}, "--set option requires 3 timeout values"},
		{[]string{"--set", "900", "120", "x"}, "invalid timeout value `x' specified"},
		{[]string{"-C", "extra"}, "unexpected argument extra"},
		{[]string{"-A", "-t", "198.18.0.1:0"}, "Zero port specified for non-persistent service"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-o"}, "One-Packet Scheduling is only for UDP virtual services"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-s", "rr", "-b", "sh-port"}, "incompatible scheduler flag `sh-port'"},
		{[]string{"-A", "-t", "198.18.0.1:80", "-b", "flag-9"}, "invalid scheduler flag `flag-9'"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "2001:db8::10", "-m"}, "Different address family is allowed only for tunneling servers"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-m", "--tun-type", "gue"}, "Tunnel options conflict with forward method"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gue"}, "You need to supply the 'tun-port' option for the 'gue' tunnel type"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-port", "6080"}, "Illegal 'tun-port' option with the 'ipip' tunnel type"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gre", "--tun-csum", "--tun-nocsum"}, "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gre' tunnel type"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gre", "--tun-remcsum"}, "Illegal 'tun-remcsum' option with the 'gre' tunnel type"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "vxlan"}, "illegal tunnel type specified"},
		{[]string{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-i", "--tun-type", "gue", "--tun-port", "0"}, "illegal tunnel port specified"},
		{[]string{"-L", "-c", "--stats"}, "options conflicts in the list command"},
		{[]string{"-L", "--timeout", "--persistent-conn"}, "options conflicts in the list command"},
		{[]string{"-L", "--daemon", "--rate"}, "options conflicts in the list command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stderr := runParse(t, tc.args)
			if code != exitUsage || !strings.HasPrefix(stderr, tc.want) {
				t.Errorf("status %d, stderr %q; want status %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

// TestRunPaths covers run's other outcomes in-process: help and version on stdout,
// restore input that does not parse, a daemon that refuses, and output that cannot be
// written.
func TestRunPaths(t *testing.T) {
	_, sock := startDaemon(t)
	call := func(args []string, stdin string, stdout *bytes.Buffer) (int, string) {
		var errb bytes.Buffer
		return run(context.Background(), args, strings.NewReader(stdin), stdout, &errb, sock), errb.String()
	}
	var out bytes.Buffer
	if code, stderr := call([]string{"-h"}, "", &out); code != exitOK || stderr != "" || !strings.Contains(out.String(), "Usage:\n  xlvsadm -A|E virtual-service") {
		t.Errorf("-h: status %d, stderr %q, stdout %.80q", code, stderr, out.String())
	}
	out.Reset()
	if code, _ := call([]string{"--version"}, "", &out); code != exitOK || out.String() != ipvsadm.VersionText+"\n" {
		t.Errorf("--version: status %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code, stderr := call([]string{"-R"}, "-A -t 198.18.0.1:80 -s nosuch\n", &out); code != exitUsage || !strings.HasPrefix(stderr, "line 1: ") {
		t.Errorf("-R with a bad rule: status %d, stderr %q", code, stderr)
	}
	if code, stderr := call([]string{"-R"}, "-A -t 198.18.0.7:80\n-A -t 198.18.0.7:80\n", &out); code != exitRefused || !strings.Contains(stderr, "Service already exists") {
		t.Errorf("-R refused: status %d, stderr %q", code, stderr)
	}
	if code, stderr := call([]string{"-D", "-t", "198.18.0.9:80"}, "", &out); code != exitRefused || stderr != "No such service\n" {
		t.Errorf("-D of no service: status %d, stderr %q", code, stderr)
	}
	if code, _ := call([]string{"-R"}, "", &out); code != exitOK {
		t.Errorf("-R of nothing: status %d", code)
	}
	// A reader that fails is not a rule error: status 1.
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"-R"}, failingReader{}, &out, &errb, sock); code != exitFail {
		t.Errorf("-R with a failing stdin: status %d, stderr %q", code, errb.String())
	}
	// Output that cannot be written: status 1.
	for _, args := range [][]string{{"-Ln"}, {"-h"}} {
		errb.Reset()
		if code := run(context.Background(), args, strings.NewReader(""), failingWriter{}, &errb, sock); code != exitFail {
			t.Errorf("%q to a failing stdout: status %d, stderr %q", args, code, errb.String())
		}
	}
}

var errBroken = errors.New("broken pipe (test)")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errBroken }

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errBroken }
