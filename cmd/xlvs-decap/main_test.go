package main

import (
	"bytes"
	"strings"
	"testing"
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
