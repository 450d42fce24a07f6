// Package health checks real servers as keepalived does and decides, per virtual
// server, which destinations should be in the service and with what weight.
//
// # Role
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
// # Conventions
//
// Keepalived's names and defaults throughout (keepalived.Default*); each checker's file
// names the keepalived source it follows. The callers in xlvsd: control/kaconf.go turns
// keepalived.conf into VirtualServers (FromKeepalived), passes the whole set to Apply
// and turns each Update into add-dest, edit-dest and del-dest requests (and, on SIGHUP,
// keepalived.Diff decides what else changes); control/rulecheck.go attaches ParseChecks'
// checks to the real servers of xlvsadm's rules.
//
// # Invariants
//
//   - Apply always takes the whole set of virtual servers: what is not in it is stopped.
//     Checks of unchanged servers keep their state across Apply, so a reload disturbs
//     nothing it does not change.
//   - An Update lists only the service's managed destinations (Dests); destinations not
//     listed are the caller's to leave alone. Events are emitted once per transition.
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
