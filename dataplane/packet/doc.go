// Package packet holds the per-packet primitives of the xlvs dataplane:
// zero-allocation header views, a frame parser, RFC 1071 checksums with
// RFC 1624 incremental updates, and the NAT rewrites built on them.
//
// # Role
//
// A dataplane worker calls Parse once per received frame, then at most a few
// of RewriteDst, RewriteSrc, RewriteFullNAT, DecrementTTL and SetEthernet on the same frame
// before transmitting it; for ICMP errors about a connection ParseICMPError,
// ICMPChecksumValid and RewriteICMPError, for later fragments RewriteDstAddr
// and RewriteSrcAddr. Everything else in the package (the views, the
// full checksum routines) exists for those calls, for building new packets
// (tunnel headers, ICMP errors) and for tests and tools.
//
// # Conventions
//
//   - Addresses are [16]byte. IPv4 addresses are stored IPv4-mapped
//     (::ffff:a.b.c.d), the same bytes netip.Addr.As16 returns for a 4-byte
//     address. Setters of IPv4 views write the last four bytes and ignore the
//     first twelve.
//   - Ports and other multi-byte fields are host-order integers in the API and
//     big-endian on the wire.
//   - Checksum returns an unfolded 32-bit one's complement sum; Fold folds the
//     carries without complementing, so a header checksum is ^Fold(sum).
//
// # Invariants
//
//   - Parse never panics, whatever the input, and checks every length before
//     it reads: when it returns ResultOK, frame[L3Off:L3Off+L3Len] lies inside
//     the frame, and the whole TCP header (data offset included) or the UDP
//     header lies inside that packet. Bytes after L3Off+L3Len (Ethernet
//     padding) are ignored.
//   - The views (Ethernet, IPv4, IPv6, TCP, UDP, ICMPv4) are plain byte slices
//     in the style of gVisor's header package: check a view once with its
//     IsValid method (or let Parse check it), then the accessors index without
//     further checks and panic on a view too short for the field.
//   - The rewrite functions take the Info that Parse filled for the same frame
//     (and that earlier rewrites kept up to date). They update the IPv4
//     header checksum and the TCP/UDP checksum incrementally (RFC 1624,
//     eqn. 3), so a packet whose checksums verified before a rewrite verifies
//     after it. A UDP-over-IPv4 checksum of zero means "no checksum" and stays
//     zero; a computed UDP checksum of zero is written as 0xFFFF. SCTP
//     (sctp.go): Parse walks every chunk header (ValidSCTP) and puts the chunk
//     type IPVS's state machine takes in Info.TCPFlags; its CRC32c covers no
//     addresses, and a port rewrite updates it in constant time from the
//     CRC's linearity (crc32c.go), so a wrong checksum stays wrong. If info
//     does not fit the frame (a caller bug), the rewrites change nothing
//     rather than panic.
//   - Nothing on the per-packet path (Parse, the rewrites, DecrementTTL,
//     SetEthernet, the incremental checksum helpers) allocates; tests assert
//     it with testing.AllocsPerRun.
//   - Info is pointer-free, so arrays of it cost the garbage collector nothing.
//
// # Concurrency
//
// The package has no state. Every function works only on the frame and Info
// it is given, so distinct frames may be processed concurrently; one frame
// and its Info belong to one goroutine at a time.
package packet
