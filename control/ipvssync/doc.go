// Package ipvssync holds the messages of IPVS's connection synchronization protocol, the one
// the kernel's sync daemon multicasts between LVS directors (ipvsadm --start-daemon): an
// encoder for version 1 messages and a decoder for versions 1 and 0, so an xlvs director can
// sync with another xlvs director or with a kernel IPVS one.
//
// # Role
//
// The sync daemon (master side) fills a Writer with one Conn per connection change and sends
// Writer.Bytes as one UDP datagram; the backup side hands each datagram it receives to
// Decode and applies the connections it returns. Sockets, timers and the decision of what to
// sync live with the daemon, not here.
//
// # Reference
//
// The layout, sizes and checks follow net/netfilter/ipvs/ip_vs_sync.c of the mainline tree
// as stored at torvalds/linux commit 002c6ca75289a4ac4f6738213dd2d258704886e4 (the newest
// copy the search index holds; the message format has not changed since version 1 was added
// in 2.6.39) and the flag values of include/uapi/linux/ip_vs.h. Facts were carried over,
// not code.
//
// Version 1 message (all multi-byte fields big-endian):
//
//	header (8 bytes):  reserved=0 u8 | syncid u8 | size u16 | nr_conns u8 | version=1 u8 | spare=0 u16
//	connection:        type u8 (bit 0: IPv6) | protocol u8 | ver_size u16 (version<<12 | size)
//	                   flags u32 | state u16 | cport u16 | vport u16 | dport u16
//	                   fwmark u32 | timeout u32 (seconds) | caddr | vaddr | daddr (4 or 16 bytes each)
//	                   options: type u8 | length u8 | data, until size
//
// A connection's size counts its fixed part and its options but not the padding that brings
// the next connection to a 32-bit boundary (the kernel writes that padding before the next
// entry, so the last entry of a message has none); the header's size counts everything, and
// a receiver drops a datagram whose length differs from it. Options: 1 sequence data (two
// struct ip_vs_seq of three u32 each), 2 persistence-engine data (at most 255 bytes), 3 the
// persistence engine's name (at most 16). An option whose type has bit 6 set
// (IPVS_OPT_F_PARAM) may be skipped by a receiver that does not know it; an unknown option
// without it makes the receiver drop that connection.
//
// Version 0 (the kernel's sync_version=0, IPv4 only): a 4-byte header nr_conns u8 | syncid
// u8 | size u16, then 24-byte connections reserved u8 | protocol u8 | cport | vport | dport
// | caddr | vaddr | daddr | flags u16 | state u16, each followed by the 24 bytes of sequence
// data when the flags ask for it (copied from the sender's memory, so in the sender's byte
// order: Decode reads it little-endian, as x86 and arm64 directors write it).
//
// # The xlvs option
//
// FULLNAT connections also need their local address and port, which the kernel's format has
// no field for. Writer puts them in option OptLocalAddr (0x50 = IPVS_OPT_F_PARAM | 16): a
// kernel backup skips it and keeps the connection (without a local address, which it does
// not use); an xlvs backup reads it. Its data is the local address (4 or 16 bytes, the
// entry's family) and the local port.
//
// # Invariants
//
// Decode never panics and never returns part of a message: either every connection of a
// datagram is returned, or none and an error saying why (the kernel applies the entries
// before a malformed one; xlvs prefers all or nothing). A connection the kernel would skip
// on its own (an unknown mandatory option) is returned with Skip set, so the caller counts it.
// Writer never allocates after NewWriter.
//
// # Concurrency
//
// A Writer belongs to one goroutine. Decode keeps no state.
package ipvssync
