package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"xlvs/control/ipvsadm"
)

// completionWords returns the words of the shell variable name in the completion script.
func completionWords(t *testing.T, script, name string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)` + name + `='([^']*)'`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("completion script has no %s", name)
	}
	w := strings.Fields(m[1])
	sort.Strings(w)
	return w
}

// usageOptions returns the option words of xlvsadm -h, split into the Commands section's
// and the others.
func usageOptions(t *testing.T) (commands, options []string) {
	t.Helper()
	var b strings.Builder
	if err := ipvsadm.Usage(&b, ipvsadm.Program); err != nil {
		t.Fatal(err)
	}
	word := regexp.MustCompile(`(?:^|[ |])(--?[A-Za-z0-9][A-Za-z0-9-]*)`)
	section := ""
	seen := map[string]bool{}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			section = strings.TrimSuffix(line, ":")
			continue
		}
		if section == "Usage" || !strings.HasPrefix(line, "  --") {
			continue
		}
		// The option words of an entry come before its help text (two or more spaces).
		entry := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		for _, m := range word.FindAllStringSubmatch(strings.Join(entry[:len(entry)-1], " "), -1) {
			if seen[m[1]] {
				continue
			}
			seen[m[1]] = true
			if section == "Commands" {
				commands = append(commands, m[1])
			} else {
				options = append(options, m[1])
			}
		}
	}
	sort.Strings(commands)
	sort.Strings(options)
	return commands, options
}

// TestCompletion: the completion offers exactly the commands and options xlvsadm -h
// lists, and completes them in a real bash.
func TestCompletion(t *testing.T) {
	b, err := os.ReadFile("completion/xlvsadm")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	commands, options := usageOptions(t)
	if len(commands) < 30 || len(options) < 50 {
		t.Fatalf("parsed %d commands and %d options from -h", len(commands), len(options))
	}
	if got := completionWords(t, script, "_xlvsadm_commands"); !slices.Equal(got, commands) {
		t.Errorf("completion commands %v\n-h commands %v", got, commands)
	}
	if got := completionWords(t, script, "_xlvsadm_options"); !slices.Equal(got, options) {
		t.Errorf("completion options %v\n-h options %v", got, options)
	}
	scheds := slices.Clone(ipvsadm.Schedulers)
	sort.Strings(scheds)
	if got := completionWords(t, script, "_xlvsadm_schedulers"); !slices.Equal(got, scheds) {
		t.Errorf("completion schedulers %v, xlvsadm's %v", got, scheds)
	}

	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash not found")
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"xlvsadm", "--st"}, "--start-daemon --stop-daemon"},
		{[]string{"xlvsadm", "-A", "-t", "192.0.2.1:80", "-s", "w"}, "wrr wlc"},
		{[]string{"xlvsadm", "--start-daemon", ""}, "master backup"},
		{[]string{"xlvsadm", "-a", "-t", "192.0.2.1:80", "-r", "10.0.0.1", "--tun-t"}, "--tun-type"},
		{[]string{"xlvsadm", "-a", "-t", ""}, ""}, // an address: nothing to offer
		{[]string{"xlvsadm", "-L", "--ra"}, "--rate"},
	} {
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", `source completion/xlvsadm
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _xlvsadm; echo "${COMPREPLY[*]}"`, "bash")
		cmd.Args = append(cmd.Args, c.words...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil || errb.Len() > 0 {
			t.Fatalf("%q: %v %s", c.words, err, errb.String())
		}
		if got := strings.TrimSpace(out.String()); got != c.want {
			t.Errorf("completing %q: %q, want %q", c.words, got, c.want)
		}
	}
}

// unitKeys reads the [Service] keys of a unit file (a key given twice keeps both values,
// space-joined, as systemd's list settings do).
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", path, line)
		}
		if section == "[Service]" {
			out[k] = strings.TrimSpace(out[k] + " " + v)
		}
	}
	return out
}

// TestUnits: the units grant what they bound and nothing more, never CAP_SYS_ADMIN, and
// run as the package's user.
func TestUnits(t *testing.T) {
	for path, want := range map[string]string{
		"systemd/xlvsd.service":       "CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON",
		"systemd/xlvs-decap@.service": "CAP_NET_ADMIN CAP_BPF CAP_PERFMON",
	} {
		k := unitKeys(t, path)
		if k["AmbientCapabilities"] != want || k["CapabilityBoundingSet"] != want {
			t.Errorf("%s: ambient %q, bounding %q, want both %q", path, k["AmbientCapabilities"], k["CapabilityBoundingSet"], want)
		}
		if strings.Contains(k["AmbientCapabilities"]+k["CapabilityBoundingSet"], "SYS_ADMIN") {
			t.Errorf("%s grants CAP_SYS_ADMIN", path)
		}
		for key, v := range map[string]string{"User": "xlvs", "Group": "xlvs", "NoNewPrivileges": "yes", "LimitMEMLOCK": "infinity", "ProtectSystem": "strict", "Restart": "on-failure"} {
			if k[key] != v {
				t.Errorf("%s: %s=%q, want %q", path, key, k[key], v)
			}
		}
	}
	k := unitKeys(t, "systemd/xlvsd.service")
	for key, v := range map[string]string{"Type": "notify", "ExecReload": "/bin/kill -HUP $MAINPID", "StateDirectory": "xlvs", "RuntimeDirectory": "xlvs", "EnvironmentFile": "/etc/xlvs/xlvsd.conf", "SupplementaryGroups": "xlvsadm"} {
		if k[key] != v {
			t.Errorf("xlvsd.service: %s=%q, want %q", key, k[key], v)
		}
	}
}
