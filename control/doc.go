// Package control is xlvsd's control plane: the rule store (virtual services and their
// real servers, in the kernel's list order), the API handler behind the unix socket, and
// the translation of rules into dataplane snapshots.
//
// Every change is validated in full, applied to a copy of the rules, turned into a new
// immutable dataplane.Snapshot and published; only then does the copy become the store's
// state, and only then are its side effects done (timeouts handed to the connection
// table, local addresses draining, IDs released, the state file). A change that fails
// anywhere — a batch (restore) at any line — changes nothing. One mutex serialises
// changes; the dataplane never waits for it (it reads the last published snapshot).
//
// Schedulers: a service keeps its scheduler instance across changes that call none of
// its scheduler's hooks, as in the kernel, where ip_vs_ctl.c calls add_dest, upd_dest and
// del_dest only on the service whose real server changed and binds a new scheduler only
// when -s changes: editing another service, a local address, timeouts or a health check
// of another service's server leaves wrr's and rr's positions alone. The hooks of a
// batch are applied per operation, in order (one sched.Rebuild each), so a restore ends
// where the same commands one by one would.
//
// Identifiers: every service and destination gets a stable counter index (its ID) for as
// long as it exists; the dataplane's counters and the connection table's per-destination
// counts are indexed by it. An ID is reused only after its connections are gone, and
// statistics are reported relative to a per-ID base so a reused ID (or -Z) starts at zero.
//
// FULLNAT local addresses (add-laddr, del-laddr, get-laddrs) belong to a service, in the
// order added, and are saved with the rules. A deleted one drains: snapshots keep it for
// the XDP program (so its connections' replies still reach the dataplane) until a walk
// of the connection table, every few estimator periods (RunEstimator), finds no
// connection using it.
package control
