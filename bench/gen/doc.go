// Package gen is the benchmark's packet generator: it builds IPv4/UDP frames of a given
// size for a set of flows (varying source addresses and ports) and transmits them as
// fast as an AF_XDP socket takes them.
//
// Why AF_XDP and not AF_PACKET: a Go AF_XDP transmitter on veth copy mode sends faster
// than any forwarder under test delivers (BENCHMARKS.md, "Generator"), while sendmmsg on
// AF_PACKET builds and queues an skb through the qdisc layer per packet and tops out
// lower; the repository's dataplane/xsk already handles asavie/xdp's limits.
// xdp-trafficgen (IPv6 only, fails on 6.18) and trafgen (EAGAIN on veth back-pressure)
// are not used.
//
// # Invariants
//
// Frames are written once into the UMEM before transmission and never
// touched again, so the transmit loop does no per-packet work but descriptor moves; frame
// k carries flow k mod Flows, frames are sent in turn (a queue, not the socket's stack of
// free frames) and each flow has as many frames as every other, so every flow is sent
// equally often at any rate; every frame has valid IPv4 and UDP checksums (the sink's
// kernel, and the director's, verify them).
//
// # Pacing
//
// A Pacer limits the rate through a token bucket (bursts of at most four
// batches), so a harness can search for the highest rate a forwarder takes without loss;
// its rate may change while Run runs.
//
// # Concurrency
//
// Run owns its socket for the whole call and must be the only user of it;
// it locks its goroutine to an OS thread and, if asked, pins that thread to a CPU.
// Results are plain values.
package gen
