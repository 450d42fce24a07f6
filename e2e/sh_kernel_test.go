package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
)

// The kernel's source hashing, written here from mainline's net/netfilter/ipvs/ip_vs_sh.c
// and include/linux/hash.h (read in github.com/intel-lab-lkp/linux, ip_vs_sh.c at commit
// 80aeb2c77a6c62fa942d8fb1514d54094bfdde15, hash.h at
// ab26e4a46c43f9f318d24c5c4d602588ab2f2b2c) for the end-to-end tests, apart from the sched
// package (which this package cannot see into):
//
//   - ip_vs_sh_reassign fills 256 buckets walking the service's list round and round,
//     each server taking as many consecutive buckets as its weight (at least one);
//   - ip_vs_sh_hashkey, without sh-port and sh-fallback, is hash_32(ntohl(saddr), 8):
//     the top 8 bits of saddr * 0x61C88647 mod 2^32;
//   - the bucket's server is the answer if its weight is above zero.
//
// The kernel's list is the newest server first (ip_vs_ctl.c adds with list_add_rcu).

// kernelSHBucket is ip_vs_sh_hashkey of an IPv4 source address, port 0, offset 0.
func kernelSHBucket(src netip.Addr) int {
	b := src.As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	return int(v * 0x61C88647 % (1 << 32) / (1 << 24))
}

// kernelSHChoice returns the index, in the kernel's list order, of the server sh picks
// for src among servers of the given weights (in the kernel's list order); -1 if none.
func kernelSHChoice(src netip.Addr, weights []int) int {
	if len(weights) == 0 {
		return -1
	}
	var table [256]int
	p, count := 0, 0
	for i := range table {
		table[i] = p
		count++
		if count >= weights[p] {
			p, count = (p+1)%len(weights), 0
		}
	}
	d := table[kernelSHBucket(src)]
	if weights[d] <= 0 {
		return -1
	}
	return d
}

// TestSHKernelHash runs an sh service over four real servers of unequal weights and
// connects from 48 client addresses, three connections each: every connection must
// reach the server the kernel's hash gives that address. With the old low-bits hash
// most of them would not (issue 14).
func TestSHKernelHash(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	bed, err := testbed.New(testbed.Options{Layout: testbed.NATTwoArm, Reals: 4, Prefix: "e2esh"})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	d, err := bench.StartDaemon(ctx, bed.Director, bins, "-i", bed.Ext.Iface, "-i", bed.Int.Iface)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("xlvsd exit: %v\n%s", err, d.Log())
		}
		if t.Failed() {
			t.Logf("xlvsd log:\n%s", d.Log())
		}
	})
	e := &env{t: t, ctx: ctx, bed: bed, d: d}
	e.nameServers()

	// rs1..rs4 added in that order with weights 1 2 1 3: the kernel's list is rs4 rs3 rs2
	// rs1, weights 3 1 2 1.
	added := []int{1, 2, 1, 3}
	args := make([][]string, len(added))
	for i, w := range added {
		args[i] = []string{"-w", fmt.Sprint(w)}
	}
	vip := e.schedService(schedPorts[0], "sh", args...)
	listWeights := make([]int, len(added))
	listNames := make([]string, len(added))
	for i := range added {
		listWeights[i] = added[len(added)-1-i]
		listNames[i] = fmt.Sprintf("rs%d", len(added)-i)
	}

	const clients, per = 48, 3
	wantPerServer := map[string]int{}
	for k := 0; k < clients; k++ {
		src := netip.AddrFrom4([4]byte{198, 18, 1, byte(20 + k)})
		if out, err := bed.Client.NS.Run(ctx, "ip", "addr", "add", src.String()+"/24", "dev", bed.Client.Iface); err != nil {
			t.Fatalf("add %v to the client: %v %s", src, err, out)
		}
		i := kernelSHChoice(src, listWeights)
		if i < 0 {
			t.Fatalf("%v: the kernel model finds no server", src)
		}
		want := listNames[i]
		wantPerServer[want]++
		got := tally(e.names(vip, src, per))
		if got[want] != per {
			t.Errorf("client %v (bucket %d) reached %v, want all %d on %s", src, kernelSHBucket(src), got, per, want)
		}
	}
	// The addresses spread over every server: the test would notice a hash that sends
	// everything to one.
	if len(wantPerServer) != len(added) {
		t.Errorf("the kernel model spreads the %d clients as %v; pick addresses that reach every server", clients, wantPerServer)
	}
	t.Logf("clients per server (kernel model): %v", wantPerServer)
}

// TestKernelSHModel checks the model's hash against values worked out apart from it with
// python3 -c 'print(((v * 0x61C88647) & 0xffffffff) >> 24)'.
func TestKernelSHModel(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want int
	}{
		{"192.0.2.1", 50},
		{"198.18.1.2", 231},
		{"0.0.0.0", 0},
		{"255.255.255.255", 158},
	} {
		if got := kernelSHBucket(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("bucket of %s: %d, want %d", tc.addr, got, tc.want)
		}
	}
	// Weights 1 1: buckets alternate a b a b ...; 192.0.2.1's bucket 50 is even.
	if got := kernelSHChoice(netip.MustParseAddr("192.0.2.1"), []int{1, 1}); got != 0 {
		t.Errorf("choice for 192.0.2.1 over weights 1 1: %d, want 0", got)
	}
	// Weights 3 1: a a a b ...; bucket 231 mod 4 = 3 → b.
	if got := kernelSHChoice(netip.MustParseAddr("198.18.1.2"), []int{3, 1}); got != 1 {
		t.Errorf("choice for 198.18.1.2 over weights 3 1: %d, want 1", got)
	}
}
