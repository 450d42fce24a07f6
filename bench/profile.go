package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"xlvs/bench/testbed"
)

// Profile says where the director's time goes during a packet-rate measurement, per
// delivered packet, so a slow target can be explained stage by stage: the ingress veth's
// NAPI thread (XDP program, redirect and copy into the AF_XDP RX ring, or the whole
// kernel forwarding path for kernel targets), the forwarding process in user space and
// in the kernel (sendto: the copy-mode transmit that builds an skb per packet; poll(2)),
// and how many packets one wakeup of the forwarder handles.
type Profile struct {
	IngressNAPINs float64 `json:"ingress_napi_ns"`           // director's ingress veth NAPI thread
	EgressNAPINs  float64 `json:"egress_napi_ns"`            // director's egress veth NAPI thread
	UserNs        float64 `json:"user_ns,omitempty"`         // forwarder threads, user time
	SysNs         float64 `json:"sys_ns,omitempty"`          // forwarder threads, system time
	PktsPerWakeup float64 `json:"pkts_per_wakeup,omitempty"` // delivered packets per voluntary context switch of the forwarder
	// OtherNs is the director CPU's busy time not accounted for above: softirq work
	// outside the NAPI threads, and other processes on that CPU. Large, it means the
	// figures were disturbed.
	OtherNs float64 `json:"other_ns"`
	// Counters are the forwarder's own counters over the counted interval (for xlvs, what
	// `xlvsadm --dataplane-stats` shows, summed over sockets and workers).
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// taskTimes are CPU times and voluntary context switches of a set of threads.
type taskTimes struct {
	user, sys time.Duration
	wakeups   uint64
}

func (a taskTimes) sub(b taskTimes) taskTimes {
	return taskTimes{user: a.user - b.user, sys: a.sys - b.sys, wakeups: a.wakeups - b.wakeups}
}

// threadSet reads the times of pid's threads: every thread, or only tid when tid > 0.
func threadSet(pid, tid int) (taskTimes, error) {
	var t taskTimes
	if pid <= 0 {
		return t, nil
	}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	var tids []string
	if tid > 0 {
		tids = []string{strconv.Itoa(tid)}
	} else {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return t, fmt.Errorf("list threads of pid %d: %w", pid, err)
		}
		for _, e := range ents {
			tids = append(tids, e.Name())
		}
	}
	for _, id := range tids {
		st, err := os.ReadFile(filepath.Join(dir, id, "stat"))
		if err != nil {
			continue // the thread ended
		}
		u, s, err := parseProcTimes(st)
		if err != nil {
			return t, err
		}
		t.user += u
		t.sys += s
		if status, err := os.ReadFile(filepath.Join(dir, id, "status")); err == nil {
			t.wakeups += parseVoluntarySwitches(status)
		}
	}
	return t, nil
}

// napiTime sums the CPU time of the NAPI threads of the named interfaces.
func napiTime(ifnames ...string) (time.Duration, error) {
	var sum time.Duration
	for _, n := range ifnames {
		pids, err := testbed.NAPIThreads(n)
		if err != nil {
			return 0, err
		}
		for _, pid := range pids {
			st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			if err != nil {
				continue
			}
			u, s, err := parseProcTimes(st)
			if err != nil {
				return 0, err
			}
			sum += u + s
		}
	}
	return sum, nil
}

// parseProcTimes takes fields 14 and 15 (utime, stime) of /proc/PID/stat; the command
// name (field 2) is in parentheses and may hold spaces, so fields are counted after the
// last ')'.
func parseProcTimes(stat []byte) (user, sys time.Duration, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/PID/stat: no ')' after the command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse /proc/PID/stat: %d fields after the name, want at least 13", len(f))
	}
	var v [2]uint64
	for k, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc/PID/stat time %q: %w", s, err)
		}
		v[k] = n
	}
	return time.Duration(v[0]) * clockTick, time.Duration(v[1]) * clockTick, nil
}

// parseVoluntarySwitches reads voluntary_ctxt_switches from /proc/PID/status: how often
// the thread blocked (in poll(2), mostly), i.e. how often it was woken; 0 if absent.
func parseVoluntarySwitches(status []byte) uint64 {
	for line := range bytes.Lines(status) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(k) == "voluntary_ctxt_switches" {
			n, _ := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}

// allBusy reads the time all CPUs together spent not idle, and the wall-clock capacity
// is the caller's to compute; from the aggregate "cpu" line of /proc/stat.
func allBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	return parseCPULine(b, "cpu")
}

// Background measures, over d, the fraction of the machine's CPU capacity (0..1) that
// was busy: taken before a measurement, it tells how much other work competes with the
// benchmark.
func Background(d time.Duration) (float64, error) {
	b0, err := allBusy()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	b1, err := allBusy()
	if err != nil {
		return 0, err
	}
	capacity := time.Since(t0) * time.Duration(max(1, runtime.NumCPU()))
	return min(1, max(0, float64(b1-b0)/float64(capacity))), nil
}
