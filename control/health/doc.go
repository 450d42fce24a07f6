// Package health checks real servers as keepalived does and decides, per virtual
// server, which destinations should be in the service and with what weight.
//
// # Pieces
//
//   - Checker, one file per protocol: TCP (TCP_CHECK: a connection opens within the
//     connect timeout), HTTP (HTTP_GET, and SSL_GET over TLS: every url answers an
//     accepted status, default 200-299, and when given a body with the expected MD5;
//     virtualhost as Host header, SNI when asked), Misc (MISC_CHECK: a program run
//     without a shell; exit 0 up, 1 down, with misc_dynamic 2-255 up with weight
//     status-2; killed after misc_timeout with SIGTERM then SIGKILL to its process
//     group); SMTP (SMTP_CHECK: greeting 220, HELO answered 250, QUIT), DNS (DNS_CHECK: a
//     query answered with RCODE 0), UDP (UDP_CHECK: no ICMP unreachable, or a matching
//     reply), Ping (PING_CHECK: ICMP/ICMPv6 echo, unprivileged socket or raw), File
//     (FILE_CHECK: track_file's number, a fault or a weight). Checks use the director's
//     own network stack; Dialer adds bindto, bind_port, bind_if and fwmark.
//   - Check: a Checker with keepalived's timing: Interval (delay_loop), Retry and
//     RetryDelay (delay_before_retry), Warmup (random delay before the first run), Alpha.
//     A check that is up goes down after 1+Retry consecutive failures; a check that is
//     down comes back after one success; at start-up one failure is enough (keepalived
//     does the same).
//   - The pool state machine of a virtual server (keepalived's ipwrapper.c): a real
//     server is alive while all its checks pass; a dead one leaves the service, or stays
//     with weight 0 when Inhibit (inhibit_on_failure); a recovering one returns with its
//     configured (or misc_dynamic) weight. The quorum is lost when the live weight falls
//     below Quorum-Hysteresis (or to 0) and regained at Quorum+Hysteresis; while it is
//     lost the sorry server, if any, replaces every real server. Each transition is an
//     Event, emitted exactly once.
//   - Monitor: runs every check in its own goroutine, with staggered starts (Warmup) and
//     at most Options.MaxConcurrent checks at once, feeds the results to the pools and
//     delivers an Update per change: the events and the full desired state (Dests) of the
//     service's managed destinations.
//   - FromKeepalived turns a keepalived.Config into []VirtualServer; ParseChecks reads
//     checker blocks in keepalived syntax for one real server (for checks attached to
//     rules made with xlvsadm).
//
// # Wiring into xlvsd (for the lead)
//
// Start-up with --keepalived-conf PATH:
//
//	mon := health.New(health.Options{
//		Logger:   log.With("component", "health"), // logs each event once
//		OnUpdate: func(u health.Update) { reconcile(u) },
//	})
//	defer mon.Close()
//	cfg, err := keepalived.Load(path, keepalived.Options{}) // err: refuse to start
//	for _, w := range cfg.Warnings { log.Warn(w.String()) }
//	vss, err := health.FromKeepalived(cfg)                 // err: refuse to start
//	// 1. add every service of cfg.VirtualServers (scheduler, flags, persistence from the
//	//    keepalived.VirtualServer), without destinations;
//	// 2. mon.Apply(append(vss, apiAttached...)): OnUpdate receives one Update per
//	//    service before Apply returns, and reconcile adds the destinations.
//
// reconcile(u), run for every Update (serially, in order; it must not call Apply or
// Close): when u.Removed, do nothing (the reload below deletes the service). Otherwise,
// for each d in u.Dests, with cur the service's destination at d.Addr (if any):
//
//	d.InPool && cur == nil       -> add-dest  d.Addr, weight d.Weight, method/thresholds
//	                                from the keepalived RealServer (or SorryServer when
//	                                d.Sorry) of that address
//	d.InPool && cur.Weight != d.Weight -> edit-dest weight d.Weight
//	!d.InPool && cur != nil      -> del-dest d.Addr
//
// Leave destinations not listed in u.Dests alone. Count u.Events by Event.Kind.String()
// for metrics (Monitor.Counters has the totals too). `xlvsadm -L -n` then shows what
// ipvsadm shows under keepalived: a failed server absent, or present with weight 0 when
// inhibited; the sorry server while the quorum is lost.
//
// SIGHUP: newCfg, err := keepalived.Load(...) and vss, err := health.FromKeepalived(newCfg);
// on either error log it and keep everything running. Otherwise ch :=
// keepalived.Diff(oldCfg, newCfg): add ch.AddedServices (no destinations); edit-service
// the ch.ChangedServices whose RuleChanged(); for their ChangedServers whose RuleChanged()
// apart from the weight (lvs_method, thresholds) edit-dest keeping the current weight;
// then mon.Apply(newVss) (it keeps the state of unchanged checks, applies new weights at
// once and reports the desired state of changed services through OnUpdate); then delete
// ch.RemovedServices and keep newCfg as oldCfg. Unchanged servers are never touched, so
// their connections are not disturbed.
//
// Checks for rules made with xlvsadm: an API call (or flag) carrying the service key, the
// real server and checker text in keepalived syntax ("TCP_CHECK {\n connect_timeout 3\n}")
// gives checks := health.ParseChecks(key, rs, text); keep these per real server and
// build from them (with the destination's current weight, and Quorum 1) the
// VirtualServer entries passed to Apply together with the keepalived ones: Apply always
// takes the whole set.
//
// # Concurrency
//
// Monitor's methods are safe for concurrent use. Apply, and the check goroutines'
// reports, are serialised with their OnUpdate calls, so updates arrive in the order the
// changes happened and never concurrently. State and Counters take only the state lock
// and may be called from OnUpdate. Close cancels every check (a running script gets
// SIGTERM) and waits for the goroutines. The pool state machine is pure and
// single-threaded; Checkers are called by one goroutine each. The package never reads
// flags or the environment and never exits.
package health
