package ipvsadm

import (
	"strings"
	"testing"
)

// TestDPVSOptions: DPVS ipvsadm's options (tools/ipvsadm/ipvsadm.c of iqiyi/dpvs) that
// xlvsadm does not have get a message naming the DPVS option and what to do instead,
// not "missing argument" or a bare "unknown option".
func TestDPVSOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// DPVS's tutorial: ./ipvsadm -a -t 10.0.0.100:80 -r 192.168.100.2 -b
		{[]string{"-a", "-t", "10.0.0.100:80", "-r", "192.168.100.2", "-b"},
			"-b: no scheduler flags given: in ipvsadm -b is --sched-flags FLAGS (such as -b sh-port); for DPVS ipvsadm's -b (--fullnat, FULLNAT forwarding) write --fullnat"},
		{[]string{"-a", "-t", "10.0.0.100:80", "-r", "192.168.100.2", "-b", "-w", "100"}, "for DPVS ipvsadm's -b (--fullnat, FULLNAT forwarding) write --fullnat"},
		{[]string{"-A", "-t", "10.0.0.100:80", "-s", "rr", "-j", "enable"}, "-j: DPVS ipvsadm's --synproxy is not supported by xlvsadm: xlvs has no SYN proxy"},
		{[]string{"-A", "-t", "10.0.0.100:80", "--synproxy", "enable"}, "--synproxy: DPVS ipvsadm's --synproxy is not supported by xlvsadm"},
		{[]string{"-A", "-s", "rr", "-H", "proto=tcp,src-range=192.168.100.0-192.168.100.254,oif=dpdk1"}, "-H: DPVS ipvsadm's --match is not supported by xlvsadm: DPVS's SNAT match services"},
		{[]string{"-a", "-t", "10.0.0.100:80", "-r", "123.1.2.3:0", "-J"}, "-J: DPVS ipvsadm's --snat is not supported by xlvsadm: DPVS's SNAT forwarding is not supported by xlvs: use -m, -g, -i or --fullnat"},
		{[]string{"-A", "-t", "10.0.0.100:80", "-s", "conhash", "-Y", "qid"}, "-Y: DPVS ipvsadm's --hash-target is not supported by xlvsadm"},
		{[]string{"-A", "-t", "10.0.0.100:80", "-s", "conhash"}, "Scheduler not found: `conhash' (DPVS's consistent-hash scheduler is not in xlvs: use mh, Maglev hashing, or sh)"},
		{[]string{"-U", "-t", "10.0.0.100:80", "-k", "1.2.3.4"}, "-U: DPVS ipvsadm's --add-blklst is not supported by xlvsadm: DPVS's deny lists"},
		{[]string{"--get-blklst"}, "--get-blklst: DPVS ipvsadm's --get-blklst is not supported by xlvsadm"},
		{[]string{"-A", "-q", "10.0.0.100:0"}, "-q: DPVS ipvsadm's --icmp-service is not supported by xlvsadm"},
		{[]string{"-L", "-c", "--sockpair", "tcp:1.1.1.1:1:2.2.2.2:2"}, "--sockpair: DPVS ipvsadm's --sockpair is not supported by xlvsadm"},
	} {
		_, err := testParser.Parse(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v\nwant an error containing %q", tc.args, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "missing argument") || strings.Contains(err.Error(), "unknown option")) {
			t.Errorf("Parse(%q): %v: want the DPVS message, not a generic one", tc.args, err)
		}
	}
	// ipvsadm's own -b still takes its flags.
	if _, err := testParser.Parse([]string{"-A", "-t", "10.0.0.100:80", "-s", "sh", "-b", "sh-port"}); err != nil {
		t.Errorf("-b sh-port: %v", err)
	}
	if _, err := testParser.Parse([]string{"-A", "-t", "10.0.0.100:80", "-s", "mh", "-bmh-port"}); err != nil {
		t.Errorf("-bmh-port: %v", err)
	}
	if _, err := testParser.Parse([]string{"-a", "-t", "10.0.0.100:80", "-r", "192.168.100.2", "--fullnat"}); err != nil {
		t.Errorf("--fullnat: %v", err)
	}
}
