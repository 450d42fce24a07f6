package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/bpf"
)

// ConnOptions configure MeasureConnections.
type ConnOptions struct {
	Concurrency int           // HTTP requests in flight, each on its own TCP connection; 0 means 32
	Duration    time.Duration // HTTP load time; 0 means 3 s
	StreamBytes int           // size of the long TCP stream (one HTTP download); 0 means 256 MiB, < 0 none
	GenCPU      int           // CPU of the sink's softirq (the client, in this process, is not pinned)
	DirCPU      int           // CPU of the director's NAPI threads and of xlvsd
	DaemonArgs  []string      // extra xlvsd flags
	Bins        Binaries      // needed for the xlvs targets
	// Reals and Sched are as in PacketOptions: the balancing targets spread connections
	// over Reals addresses of the sink (0 means 1), which answers on all of them.
	Reals int
	Sched string
}

// ConnSample is one connection-workload measurement: short HTTP connections (one request
// each, so connections/s are requests/s) and one long TCP stream, client in the
// generator namespace, HTTP server in the sink namespace, through the director.
type ConnSample struct {
	Target      Target   `json:"target"`
	Reals       int      `json:"reals,omitempty"` // real servers balanced over (balancing targets)
	Requests    int      `json:"requests"`        // answered in full
	Failed      int      `json:"failed"`          // includes the requests still in flight (at most Concurrency) when the time ran out
	ConnsPerSec float64  `json:"conns_per_sec"`
	P50Ms       float64  `json:"p50_ms"`
	P99Ms       float64  `json:"p99_ms"`
	P999Ms      float64  `json:"p999_ms"`
	StreamGbps  float64  `json:"stream_gbps,omitempty"`
	FirstErrors []string `json:"first_errors,omitempty"`
	Background  float64  `json:"background_busy"`
}

const httpPort = 80

// MeasureConnections builds a fresh chain, serves HTTP in the sink namespace, sets up
// target for TCP port 80 and runs the short-connection load, then the stream. The minimal
// AF_XDP forwarder forwards one way only: unavailable here. For DR the sink gets the VIP on
// its loopback and its replies return through the director's kernel routing. For FULLNAT
// the sink loses its route to the generator: it answers the director's local addresses,
// on its own subnet, and the director translates that back.
func MeasureConnections(ctx context.Context, target Target, o ConnOptions) (s ConnSample, err error) {
	s.Target = target
	if o.Concurrency == 0 {
		o.Concurrency = 32
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.StreamBytes == 0 {
		o.StreamBytes = 256 << 20
	}
	switch target {
	case TargetL2Fwd:
		return s, fmt.Errorf("%s: %w: the minimal forwarder forwards UDP one way only", target, ErrUnavailable)
	}
	if err := targetAvailable(ctx, target); err != nil {
		return s, err
	}
	if s.Background, err = Background(250 * time.Millisecond); err != nil {
		return s, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration+2*time.Minute)
	defer cancel()
	bed, err := newChain(target, "xc", o.GenCPU, []int{o.DirCPU}, 1)
	if err != nil {
		return s, err
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("remove testbed: %w", cerr)
		}
	}()
	gw, sink := bed.Client, bed.Reals[0]
	listen := netip.AddrPortFrom(sink.Addr, httpPort).String()
	reals := []netip.Addr{sink.Addr}
	if balances(target) {
		s.Reals = realsOf(o.Reals)
		if reals, err = realAddrs(s.Reals); err != nil {
			return s, fmt.Errorf("measure %s connections: %w", target, err)
		}
		if len(reals) > 1 {
			// The other real servers are addresses of the sink too (setupTarget adds
			// them): the server answers on every address.
			listen = fmt.Sprintf(":%d", httpPort)
		}
	}
	if target == TargetXLVSTUN {
		// LVS-TUN: the sink strips the IPIP header with xlvs's decapsulator (this kernel
		// has no ipip module), then answers as a DR real server does.
		var dec *bpf.Decap
		err := sink.NS.Do(func() (err error) {
			dec, err = bpf.AttachDecap(sink.Ifindex, bpf.DecapAuto, reals)
			return err
		})
		if err != nil {
			return s, fmt.Errorf("measure %s connections: decapsulator on the sink: %w", target, err)
		}
		defer dec.Close()
	}
	if target == TargetXLVSDR || target == TargetXLVSTUN {
		// LVS-DR: the sink owns the VIP on lo and answers from it straight to the client;
		// its replies pass the director's kernel (XDP leaves them alone), which routes them.
		if _, err := sink.NS.Run(ctx, "ip", "addr", "add", bed.VIP.String()+"/32", "dev", "lo"); err != nil {
			return s, fmt.Errorf("measure %s connections: VIP on the sink's lo: %w", target, err)
		}
		if err := bed.SetForwarding(true); err != nil {
			return s, err
		}
		// The director holds the VIP itself, so replies from it are martians to its
		// kernel unless accepted (a real LVS-DR reply passes a router, not the director).
		for _, k := range []string{"net.ipv4.conf.all.accept_local", "net.ipv4.conf." + bed.Int.Iface + ".accept_local"} {
			if err := bed.Director.SetSysctl(k, "1"); err != nil {
				return s, fmt.Errorf("measure %s connections: %w", target, err)
			}
		}
		listen = fmt.Sprintf(":%d", httpPort)
	}
	ln, err := sink.NS.Listen("tcp", listen)
	if err != nil {
		return s, err
	}
	srv := traffic.ServeHTTP(ln, "sink")
	defer srv.Close()
	_, dst, stop, err := setupTarget(ctx, bed, target, "tcp", httpPort, PacketOptions{Flows: connTableFlows, DirCPU: o.DirCPU, DaemonArgs: o.DaemonArgs, Bins: o.Bins, Reals: o.Reals, Sched: o.Sched})
	if err != nil {
		return s, err
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	url := "http://" + dst.String() + "/"

	// Warm-up: the first answer may wait for the forwarder to learn its routes.
	if err := firstAnswer(ctx, gw, url, 10*time.Second); err != nil {
		return s, fmt.Errorf("measure %s connections: %w", target, err)
	}
	lctx, lcancel := context.WithTimeout(ctx, o.Duration)
	res, err := traffic.HTTPLoad(lctx, traffic.HTTPLoadOptions{
		URL: url, Requests: 1 << 20, Concurrency: o.Concurrency, Dial: gw.NS.DialContext, Timeout: 2 * time.Second,
	})
	lcancel()
	if err != nil {
		return s, err
	}
	s.Requests, s.Failed, s.FirstErrors = res.OK, res.Failed, res.FirstErrors
	s.ConnsPerSec = float64(res.OK) / res.Duration.Seconds()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s.P50Ms, s.P99Ms, s.P999Ms = ms(res.P50), ms(res.P99), ms(res.P999)
	if res.OK == 0 {
		return s, fmt.Errorf("measure %s connections: no request answered of %d (%v)", target, res.Requests, res.FirstErrors)
	}
	if o.StreamBytes > 0 {
		t0 := time.Now()
		n, err := traffic.Download(ctx, gw.NS.DialContext, url, o.StreamBytes, 8)
		if err != nil {
			return s, fmt.Errorf("measure %s stream: %w", target, err)
		}
		s.StreamGbps = float64(n) * 8 / time.Since(t0).Seconds() / 1e9
	}
	return s, nil
}

// firstAnswer GETs url from host's namespace until one request succeeds, at most within.
func firstAnswer(ctx context.Context, host *testbed.Host, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last []string
	for time.Now().Before(deadline) {
		res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: url, Requests: 1, Dial: host.NS.DialContext, Timeout: time.Second})
		if err != nil {
			return err
		}
		if res.OK == 1 {
			return nil
		}
		last = res.FirstErrors
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("no HTTP answer from %s within %s (last: %v)", url, within, last)
}

// String is one line of a log.
func (s ConnSample) String() string {
	return fmt.Sprintf("%-15s %7.0f conn/s (%d ok, %d failed), latency p50 %.2f p99 %.2f p99.9 %.2f ms, stream %.2f Gbit/s, background %s%%",
		string(s.Target)+realsLabel(s.Reals), s.ConnsPerSec, s.Requests, s.Failed, s.P50Ms, s.P99Ms, s.P999Ms, s.StreamGbps, strconv.Itoa(int(100*s.Background)))
}
