// Command xlvsd is the xlvs daemon: it attaches the XDP classifier to the given
// interfaces, forwards virtual-service traffic through AF_XDP sockets, and serves the
// control API that xlvsadm talks to.
//
// # Role
//
// The only place that reads flags or the environment and that exits. run does the
// start-up steps in order: flags (parseFlags, whose checks name the flag and the range
// allowed), privileges and locked memory, the control socket, the dataplane (taking over
// from a predecessor that handed off, handoff.go), the control daemon and its rules
// (keepalived.conf, an ipvsadm -S file or the state file), health checks, the estimator,
// metrics, then serve until SIGTERM or SIGINT. --check-config (checkconfig.go) loads the
// configuration into an in-memory dataplane instead and attaches nothing.
//
// # Conventions
//
//   - Every default and limit of a flag comes from the library that owns it
//     (dataplane.Default*, dataplane.Max*, xsk.DefaultConfig, xsk.Min*/Max*,
//     conntrack.EntryBytes); readme_test.go checks the numbers README repeats.
//   - Libraries' errors name no flag: flagHint (and the --health-check wrap) add the
//     flag that would change the outcome. A 0 that would silently mean a library default
//     is refused (--batch 0, --icmp-rate 0).
//   - --help and the man page are made from the same flag set (manual.go,
//     cmd/internal/manpage).
//
// # Invariants
//
// A start that fails leaves nothing attached: every step's undo is deferred in order, and
// the XDP program goes with the process (a crash included), so traffic then reaches the
// kernel instead of a black hole.
//
// # Concurrency
//
// Signals: SIGTERM and SIGINT cancel the context every goroutine runs under; SIGHUP
// re-reads --keepalived-conf (handleHUP, one reload at a time). systemd is told READY,
// RELOADING and STOPPING (service.go).
package main
