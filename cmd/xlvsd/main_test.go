package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no interface", nil, "no interface given"},
		{"both modes", []string{"-i", "eth0", "--copy", "--zerocopy"}, "choose one"},
		{"ring not power of two", []string{"-i", "eth0", "--rx-ring", "1000"}, "power of two"},
		{"too few frames", []string{"-i", "eth0", "--frames", "1024"}, "at least fill ring + tx ring"},
		{"bad frame size", []string{"-i", "eth0", "--frame-size", "1500"}, "frame size"},
		{"small table", []string{"-i", "eth0", "--conn-max", "10"}, "at least 1024"},
		{"table beyond memory", []string{"-i", "eth0", "--conn-max", "1000000000000"}, "more than half of this machine's"},
		{"negative icmp rate", []string{"-i", "eth0", "--icmp-rate", "-5"}, "0 for no limit"},
		{"zero icmp burst", []string{"-i", "eth0", "--icmp-burst", "0"}, "at least 1"},
		{"stray argument", []string{"-i", "eth0", "extra"}, "unexpected argument"},
		{"unknown flag", []string{"-i", "eth0", "--nope"}, "not defined"},
		{"bad number", []string{"-i", "eth0", "--batch", "many"}, "invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	o, err := parseFlags([]string{"-i", "ext0", "-i", "int0", "--batch", "32", "--copy"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ifaces) != 2 || o.batch != 32 || !o.sock.Copy || o.icmpRate != 1000 || o.icmpBurst != 50 {
		t.Fatalf("parsed %+v", o)
	}
}

func TestParseCPUs(t *testing.T) {
	got, err := parseCPUs("0,0-1")
	if err != nil || len(got) != 3 || got[0] != 0 || got[2] != 1 {
		t.Fatalf("parseCPUs = %v, %v", got, err)
	}
	for _, bad := range []string{"x", "1-0", "-1", "0,", "99999"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) accepted", bad)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, ok := range map[string]bool{"native": true, "generic": true, "auto": true, "hw": false} {
		if _, err := parseMode(in); (err == nil) != ok {
			t.Errorf("parseMode(%q) err = %v", in, err)
		}
	}
}

func TestDefaultConnMax(t *testing.T) {
	for _, tc := range []struct {
		ram  uint64
		want int
	}{
		{0, 1 << 16},
		{512 << 20, 1 << 17},
		{24 << 30, 4 << 20}, // this machine: 768 MiB / 128 B
		{64 << 30, 16 << 20},
		{1 << 40, 16 << 20},
	} {
		if got := defaultConnMax(tc.ram); got != tc.want {
			t.Errorf("defaultConnMax(%d MiB) = %d, want %d", tc.ram>>20, got, tc.want)
		}
	}
	o, err := parseFlags([]string{"-i", "eth0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.connMax != defaultConnMax(totalRAM()) || o.connMax < 1<<16 {
		t.Fatalf("default --conn-max %d", o.connMax)
	}
}
