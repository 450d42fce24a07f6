package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// DemoOptions configure the demo.
type DemoOptions struct {
	Requests    int    // default 5000
	Concurrency int    // default 100
	Weights     [2]int // default 3 and 1
	DaemonArgs  []string
}

// Demo builds the classic LVS-NAT layout (client; director with an external and an
// internal interface; two real servers), configures a wrr VIP through xlvsadm, drives
// HTTP requests through it, prints the statistics and the split, and removes everything.
// It fails if any request failed.
func Demo(ctx context.Context, bins Binaries, o DemoOptions, out io.Writer) (res traffic.HTTPLoadResult, err error) {
	if o.Requests == 0 {
		o.Requests = 5000
	}
	if o.Concurrency == 0 {
		o.Concurrency = 100
	}
	if o.Weights == [2]int{} {
		o.Weights = [2]int{3, 1}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	fmt.Fprintln(out, "== building the LVS-NAT testbed (client | director ext0+int0 | rs1, rs2)")
	bed, err := testbed.New(testbed.Options{Layout: testbed.NATTwoArm, Reals: 2, Prefix: "demo"})
	if err != nil {
		return res, fmt.Errorf("build testbed: %w", err)
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("tear down testbed: %w", cerr)
		}
		fmt.Fprintln(out, "== testbed removed")
	}()

	for i, rs := range bed.Reals {
		ln, err := rs.NS.Listen("tcp", ":80")
		if err != nil {
			return res, fmt.Errorf("listen on rs%d: %w", i+1, err)
		}
		srv := traffic.ServeHTTP(ln, fmt.Sprintf("rs%d", i+1))
		defer srv.Close()
	}

	fmt.Fprintln(out, "== starting xlvsd -i ext0 -i int0")
	d, err := StartDaemon(ctx, bed.Director, bins, append([]string{"-i", bed.Ext.Iface, "-i", bed.Int.Iface}, o.DaemonArgs...)...)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := d.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("xlvsd: %w", serr)
		}
	}()

	vip := netip.AddrPortFrom(bed.VIP, 80).String()
	cmds := [][]string{{"-A", "-t", vip, "-s", "wrr"}}
	for i, rs := range bed.Reals {
		cmds = append(cmds, []string{"-a", "-t", vip, "-r", netip.AddrPortFrom(rs.Addr, 80).String(), "-m", "-w", fmt.Sprint(o.Weights[i])})
	}
	for _, c := range cmds {
		fmt.Fprintf(out, "# xlvsadm %s\n", strings.Join(c, " "))
		if _, err := d.Adm(ctx, c...); err != nil {
			return res, err
		}
	}
	list, err := d.Adm(ctx, "-L", "-n")
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "# xlvsadm -L -n\n%s", list)

	fmt.Fprintf(out, "== %d HTTP requests (one TCP connection each), concurrency %d, from the client to http://%s/\n", o.Requests, o.Concurrency, vip)
	res, err = traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{
		URL:         "http://" + vip + "/",
		Requests:    o.Requests,
		Concurrency: o.Concurrency,
		Dial:        bed.Client.NS.DialContext,
		Timeout:     10 * time.Second,
	})
	if err != nil {
		return res, err
	}
	fmt.Fprintln(out, res.String())

	stats, err := d.Adm(ctx, "-L", "-n", "--stats")
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "# xlvsadm -L -n --stats\n%s", stats)

	fmt.Fprintln(out, "== responses per real server")
	names := make([]string, 0, len(res.ByServer))
	for n := range res.ByServer {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(out, "%-4s %5d  (%.1f%%)\n", n, res.ByServer[n], 100*float64(res.ByServer[n])/float64(max(res.OK, 1)))
	}
	if res.Failed > 0 || res.OK != o.Requests {
		return res, fmt.Errorf("%d of %d requests failed: %s", res.Failed, o.Requests, strings.Join(res.FirstErrors, "; "))
	}
	fmt.Fprintf(out, "== OK: %d requests, 0 failures\n", res.OK)
	return res, nil
}
