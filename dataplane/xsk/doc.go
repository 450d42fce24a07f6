// Package xsk is xlvs's AF_XDP socket layer: the only importer of github.com/asavie/xdp.
//
// # Role
//
// A Socket owns one AF_XDP socket bound to one (interface, queue): its UMEM, its four rings
// and an O(1) free-frame list of its own. There are two: a shared socket (shared.go,
// OpenShared, the default of Open), set up here with its UMEM in a memfd so that it can be
// handed to another process (Shareable.Handover, Adopt: a restarting xlvsd's successor),
// and asavie/xdp's (Config.Private), whose UMEM is private memory. Fake is an in-memory Socket for unit tests and
// microbenchmarks: same contract, no kernel. Config's limits (Min*, Max*) and
// DefaultConfig are the one source xlvsd's flags take theirs from.
//
// # Invariants
//
// Frame ownership: every frame is, at any moment, in exactly one place — the free list, the
// fill ring (kernel), the RX ring (kernel → us), the caller's hands (after Receive or
// Alloc), or the TX ring / completion ring (us → kernel → us). Receive hands frames to the
// caller; the caller must give each one back with Transmit (same socket) or Free. Frames
// come back from the kernel through Complete, and Refill moves free frames to the fill ring.
//
// # Conventions: a shared socket
//
// Its rings are the kernel's, mapped from the socket (XDP_MMAP_OFFSETS): this side
// produces on the fill and TX rings and consumes on the RX and completion rings, with
// sync/atomic loads and stores of the indices. It keeps no state the rings do not hold
// except the free list, which Handover copies out: an adopter starts from the indices as
// it finds them. Its Transmit and kick follow the asavie socket's rules below, without
// the panics.
//
// # Conventions: asavie/xdp
//
// Limits of asavie/xdp v0.3.3 and how this package handles them (see ARCHITECTURE.md):
//   - Its GetDescs scans every frame: not used; the free list here is a LIFO stack.
//   - Its Complete discards the completed addresses: the completion ring is read here
//     directly (located once, by reflection, at start-up, and checked field by field), then
//     asavie's Complete advances the consumer.
//   - Its Transmit calls sendto once, and one sendto moves at most 32 descriptors in copy
//     mode: Transmit here keeps kicking until the TX ring drains or the kernel pushes back.
//   - Its Transmit panics on an unexpected errno (ENETDOWN when the link goes down): the
//     panic is recovered once per Transmit call (per batch, never per packet), counted and
//     returned as an error so the worker can back off.
//   - Its Close leaves the four ring mappings mapped, and they keep the socket (and its
//     queue) alive until the process exits: Close here unmaps them too (unmap.go), so a
//     closed socket's queue can be bound again, by a successor xlvsd above all.
//   - Its Poll consumes completions itself: not used; callers poll FD().
//   - Received data starts XDPPacketHeadroom bytes into the frame, which leaves room to
//     prepend an outer header (TUN) by moving a descriptor's Addr back.
//
// Fake is an in-memory Socket for unit tests and microbenchmarks: same contract, no kernel;
// its CheckFrames verifies the ownership rule above (no frame leaked or given back twice).
//
// # Concurrency
//
// Single owner: the worker that owns a Socket is the only goroutine that touches it;
// nothing here is safe for concurrent use except Stats, which reads single-writer
// counters atomically.
package xsk
