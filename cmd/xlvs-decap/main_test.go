package main

import (
	"bytes"
	"strings"
	"testing"

	"xlvs/bpf"
)

// TestRunRefuses checks the command's answers to bad invocations: the exit status and a
// message that says what was wrong. None of them needs root: they fail before attaching.
func TestRunRefuses(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no interface", nil, 2, "-i IFACE is required"},
		{"stray argument", []string{"-i", "lo", "extra"}, 2, `unexpected argument "extra"`},
		{"bad mode", []string{"-i", "lo", "--mode", "native"}, 2, "want auto, xdp or tc"},
		{"bad address", []string{"-i", "lo", "--addr", "198.18.0.300"}, 2, "want an IPv4 or IPv6 address"},
		{"GUE port 0", []string{"-i", "lo", "--gue-port", "0"}, 2, `parse GUE port "0": want a UDP port 1-65535`},
		{"GUE port too big", []string{"-i", "lo", "--gue-port", "6080,65536"}, 2, `parse GUE port "65536": want a UDP port 1-65535`},
		{"GUE port not a number", []string{"-i", "lo", "--gue-port", "gue"}, 2, `parse GUE port "gue"`},
		{"GUE port empty", []string{"-i", "lo", "--gue-port", "6080,"}, 2, `parse GUE port ""`},
		{"too many GUE ports", []string{"-i", "lo", "--gue-port", "1,2,3,4,5,6,7,8", "--gue-port", "9,10,11,12,13,14,15,16,17"}, 2, "GUE port 17: at most 16 distinct ports"},
		{"missing interface", []string{"-i", "xlvs-no-such-if0"}, 1, `find interface "xlvs-no-such-if0"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(c.args, &out); code != c.code {
				t.Errorf("exit status %d, want %d; output:\n%s", code, c.code, out.String())
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("output %q does not say %q", out.String(), c.want)
			}
		})
	}
}

func TestAddrList(t *testing.T) {
	var a addrList
	for _, v := range []string{"198.18.0.11", "2001:db8::11, 198.18.0.12"} {
		if err := a.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := a.String(), "198.18.0.11,2001:db8::11,198.18.0.12"; got != want {
		t.Errorf("addresses %q, want %q", got, want)
	}
}

func TestPortList(t *testing.T) {
	var p portList
	// Repeated ports are one port; up to bpf.MaxDecapGUEPorts distinct ones, in order.
	for _, v := range []string{"6080", " 5555,6080", "1,2,3,4,5,6,7,8,9,10,11,12,13,14"} {
		if err := p.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	want := "6080,5555,1,2,3,4,5,6,7,8,9,10,11,12,13,14"
	if got := p.String(); got != want {
		t.Errorf("ports %q, want %q", got, want)
	}
	if len(p) != bpf.MaxDecapGUEPorts {
		t.Fatalf("%d ports, want the map's %d", len(p), bpf.MaxDecapGUEPorts)
	}
	if err := p.Set("14,65535"); err == nil {
		t.Errorf("a 17th port was accepted: %v", p)
	}
}
