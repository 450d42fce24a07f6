// Package e2e holds xlvs's end-to-end tests: real TCP and UDP from real sockets in network
// namespaces, through the real XDP program and AF_XDP sockets of a real xlvsd process, to
// real servers, checking what arrived.
//
// They live at the top level, not under bench/: they judge behaviour (bytes, counts, which
// server), never speed. They reuse bench's testbeds, servers and clients (bench/testbed,
// bench/traffic) and its daemon runner, which the benchmark harness uses too.
//
// # Conventions
//
// TestMain builds xlvsd and xlvsadm once, unless XLVS_BIN names a directory holding them
// (make build). Each test builds its testbed with bench/testbed (uniquely named
// namespaces, removed in t.Cleanup, on failure too) and bounds every process it starts by its
// context. Expected results come from IPVS's behaviour, not from xlvs's code.
//
// # Invariants
//
// The tests need root; without it they skip, and with CI set a skip is a failure.
package e2e
