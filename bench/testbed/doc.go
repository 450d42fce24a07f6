// Package testbed builds network-namespace testbeds for xlvs: a client, a director and real
// servers wired by veth pairs (and a bridge in a "switch" namespace), addressed exactly as
// the end-to-end tests, the demo and the benchmark harness expect.
//
// # Namespaces
//
// NS is a named network namespace made the way `ip netns add` makes one: a bind mount of
// the namespace onto /run/netns/NAME, so `ip netns exec NAME ...` works on it. Names are
// "xlvs-<prefix>-<pid>-<n>", unique within the process (n is a process-wide counter) and
// across processes (pid). NS.Close unmounts and removes that file; it kills no process.
// The namespace itself lives on while anything still holds it (a process inside it, an
// open socket made in it); its veths disappear with it. RemoveStale deletes namespaces left
// by processes that died before cleaning up (pids are checked in this pid namespace).
//
// Everything is configured through netlink sockets opened inside the namespace
// (vishvananda/netlink) and /proc/sys written from a thread switched into it; the ip
// binary is used only by NS.Command (`ip netns exec`).
//
// # Threads
//
// NS.Do runs a function on a fresh goroutine locked to its OS thread, switched into the
// namespace; afterwards the thread's namespace is restored, or, if that fails, the
// goroutine exits still locked so the Go runtime discards the thread. The caller's own
// goroutine and thread are never switched. Sockets made inside Do (NS.Listen,
// NS.ListenPacket, NS.DialContext) stay in the namespace for their whole life and can be
// used from any goroutine.
//
// # Beds
//
// New builds one of three layouts (NATTwoArm, NATOneArm, L2; see Layout) and returns only
// when it is usable: links up (lo too), IPv6 DAD off, addresses and routes in place, TX
// checksum offload off on every sender whose packets cross the director (client and real
// servers), ICMP redirects off, rp_filter off, and nothing to wait for. Every veth has
// one RX and one TX queue (the kernel's default), so one AF_XDP socket per interface sees
// all its traffic. MACs and addresses are fixed (see Layout); beds in different
// namespaces do not collide. The director's
// IPv4/IPv6 forwarding is off: the load balancer under test does the forwarding
// (Bed.SetForwarding turns the kernel's on for baselines and connectivity checks). On any
// error New removes whatever it made; Bed.Close removes everything and is idempotent.
//
// # Concurrency
//
// NS and Bed methods are safe for concurrent use. Close may run concurrently with other
// methods; those then fail with ErrClosed (or an error wrapping it).
//
// All of this needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
package testbed
