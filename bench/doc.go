// Package bench drives xlvs in network-namespace testbeds: it starts the built binaries
// (xlvsd in the director namespace, xlvsadm against its socket), runs the demo, and —
// with its subpackages testbed (topologies) and traffic (servers and load generators) —
// is shared by the end-to-end tests and the benchmark harness.
package bench
