// Package control is xlvsd's control plane: the rule store (virtual services, their real
// servers in the kernel's list order, FULLNAT local addresses, firewall-mark rules), the
// API handler behind the unix socket, and the translation of rules into dataplane
// snapshots.
//
// # Role
//
// Daemon.Handle serves every control API request (xlvsadm's, and the ones this package
// makes itself). Around the store: keepalived.conf loading and SIGHUP reloads
// (kaconf.go), health checks on xlvsadm's rules (rulecheck.go), the state file
// (state.go), connection sync wiring (sync.go), the rate estimator (estimator.go) and the
// Prometheus metrics (metrics.go).
//
// # Conventions
//
//   - A real server is api.Dest on the wire, ruleDest in the store and dataplane.Dest in a
//     snapshot; ruleDest.snapDest is the one conversion (ARCHITECTURE.md, "One real
//     server, three types"). Services and local addresses follow the same pattern.
//   - daemon.go's change applies a request's operations, one apply… function each;
//     commit does the side effects. Failures are *api.Error with a code; the message
//     says what was wrong and what would be right (xlvsadm puts ipvsadm's text in front,
//     control/ipvsadm.ErrorMessage).
//   - Every service, real server and local address has a stable ID, its counter index in
//     the dataplane and the connection table, for as long as it exists.
//
// # Invariants
//
//   - A change is validated in full, applied to a copy of the rules, turned into a new
//     immutable dataplane.Snapshot and published; only then does the copy become the
//     store's rules and are its side effects done (timeouts handed to the connection
//     table, local addresses draining, IDs released, the state file). A change that fails
//     anywhere — a batch (restore) at any line — changes nothing.
//   - A service keeps its scheduler instance across changes that call none of its
//     scheduler's hooks, as the kernel's ip_vs_ctl.c calls add_dest, upd_dest and
//     del_dest only on the service whose real server changed (schedhooks.go); the hooks
//     of a batch are applied per operation, in order, so a restore ends where the same
//     commands one by one would.
//   - An ID is reused only after its connections are gone; statistics are reported
//     relative to a per-ID base, so a reused ID (or -Z) starts at zero.
//   - A deleted FULLNAT local address, or a deleted NAT/FULLNAT real server, drains:
//     snapshots keep it for the XDP program (its connections' replies still reach the
//     dataplane) until a walk of the connection table, every few estimator periods
//     (RunEstimator), finds no connection using it.
//
// # Concurrency
//
// One mutex in Daemon serialises changes and the reads of the rules; the dataplane never
// waits for it (workers read the last published snapshot). Health checks, the keepalived
// reloads, the notify FIFO and the estimator run in goroutines of their own and change
// the rules only through the same change path. The package never reads flags or the
// environment and never exits.
package control
