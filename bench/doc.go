// Package bench drives xlvs in network-namespace testbeds: it starts the built binaries
// (xlvsd in the director namespace, xlvsadm against its socket), runs the demo, and —
// with its subpackages testbed (topologies), traffic (servers and load generators) and
// gen (the AF_XDP packet generator) — is shared by the end-to-end tests and the benchmark
// harness.
//
// # Role
//
// The harness (Run, MeasurePacketRate, MeasureConnections) measures xlvs (NAT, DR, TUN,
// FULLNAT) side by side with iptables and nftables DNAT, plain kernel forwarding, kernel
// IPVS where the kernel has it, and a minimal AF_XDP forwarder (the copy-path limit), in a
// generator → director → sink chain built afresh for every measurement: two-armed (a
// veth on each side of the director) for all of them, and one-armed (generator,
// director and sink on one bridge, the director forwarding out of the interface it
// received on; testbed.ChainOptions.OneArm) for xlvs-nat-onearm and
// iptables-dnat-onearm, which share xlvs-nat's and iptables-dnat's set-up. A third
// iptables target, iptables-dnat-xdp, is iptables-dnat with a pass-everything XDP program
// on the director's interfaces: what any XDP-based director pays on a veth (the peer
// loses TSO, every MTU-sized frame is handled on its own), the fair reference for xlvs's
// TCP stream here, as afxdp-l2fwd is for its packet rate. The balancing
// targets (xlvs, iptables and nftables DNAT) spread the flows over PacketOptions.Reals
// (ConnOptions.Reals) real servers, 1 to MaxReals, all addresses of the sink: its own
// 198.18.2.11, then .12–99 and .200–254 added to its interface, each with a permanent
// neighbour entry on the director; xlvs with PacketOptions.Sched (rr by default),
// iptables with statistic nth rules, nftables with numgen inc. The sink counts (packet
// rate) or answers (connections) for every one of them, and xlvsd's per-destination
// packet counts land in the sample's counters ("real.ADDR.in_pkts"). RunOptions.Reals
// sweeps the count within one run (rows "[N reals]"); the report's header and options
// state it. FULLNAT's local
// addresses (one per 32768 flows, in the sink's subnet, up to 100) go on the director's
// sink-side interface, and the sink loses its route to the generator: it answers the local
// addresses, so a FULLNAT connection that works proves the translation both ways. The
// report divides FULLNAT's figures by NAT's, one-armed NAT's by two-armed NAT's and by
// one-armed iptables DNAT's (Comparisons), and takes a one-armed row's "xlvs-nat ÷
// target" ratio from xlvs-nat-onearm. With PacketOptions.Queues N (xlvs-bench run
// --queues) every veth of the two-armed chain has N queues, xlvsd runs N workers on
// PacketOptions.DirCPUs, and the generator sends on all N queues, one AF_XDP socket
// each with the flows dealt out in turn (a veth receives on the queue its peer sent on),
// so every worker gets Flows/N of them; per-worker counters ("workerN.forwarded") show
// the split. For packet rates it reports two figures: the overload rate (what the director delivers when offered all the
// generator can; on a shared core NAPI then starves the forwarder, so it swings) and the
// no-drop rate (the highest paced offered rate with at most MaxLoss lost, found by
// bisection; stable). Each sample carries where the director's CPU went per packet
// (ingress NAPI thread, forwarder user and system time, packets per wakeup), the
// forwarder's own counters, a 100 ms timeline of the delivered rate (stalls show there)
// and how busy the machine was beforehand. The flood is one-way, so xlvsd's XDP fast path
// (--fastpath) never installs a NAT or FULLNAT flow, which needs a packet each way; with
// PacketOptions.AnswerFlows the sink answers each of the director's connections once
// after the warm-up (answer.go: from the real server's address, through the director)
// and counting starts once the installs are in; the sample records what the fast path
// held then (FastPathStart).
//
// # Invariants
//
// Every measurement removes what it built (namespaces, processes, XDP
// programs) before it returns, also on error; targets are interleaved within a round so
// that a noisy host's drifts hit them alike; a target that cannot run here is reported
// with the reason (ErrUnavailable), never silently skipped; Report.Check fails a run in
// which a forwarder that should forward delivered about nothing.
//
// # Concurrency
//
// The measurement functions build their own testbeds and may not run
// concurrently with each other (they pin threads to the same CPUs and the numbers would
// mean nothing); Report values are plain data.
package bench
