// Package bpf is xlvs's XDP classifier: the C program (xlvs.c), its bpf2go output
// (xlvs_bpfel.go and xlvs_bpfel.o, committed, so building needs no clang) and a small Go
// API to load it, attach it, register AF_XDP sockets and fill its service maps. It also
// holds the real-server decapsulator for TUN (decap.c, see "Decapsulator" below).
//
// # What the program does
//
// For every frame it parses Ethernet, one optional 802.1Q tag, IPv4 (options allowed) or
// IPv6 (TCP, UDP or ICMPv6 directly after the fixed header, or after one fragment
// header), then TCP, UDP or SCTP ports (SCTP: the 12-byte common header; the dataplane checks the chunks), and decides:
//
//   - first of all, when the Port's macs set is not empty (Port.SetMACs; the dataplane
//     gives it the interface's own MAC, those of its macvlans — keepalived's VRRP
//     virtual MAC — and VLANs, and its bridge's), a frame whose destination MAC is not in it is passed and counted
//     as other_host — unicast to another host (a bridge flooding the master director's
//     frames to a standby), broadcast and multicast alike, for IPv4 and IPv6: the kernel
//     drops PACKET_OTHERHOST frames (ip_rcv_core, ip6_rcv_core), and IPVS takes only
//     PACKET_HOST ones (ip_vs_in: "remote client: only PACKET_HOST"; ip_forward drops the
//     rest), so none of them is the dataplane's. An empty set (a Port from Load) takes
//     every destination;
//   - with the fast path on (fp_on[0] != 0), an untagged TCP or UDP packet, or an SCTP
//     packet whose first chunk is DATA, SACK, HEARTBEAT or HEARTBEAT ACK (NAT and FULLNAT:
//     the CRC32c updated for the new ports, sctp_crc_change), whose flow
//     (source, destination, ports, proto) is in fastpath (an established connection
//     the dataplane installed; EnableFastPath): rewritten as the entry says (MACs; NAT:
//     one address and port, FULLNAT: both, with RFC 1624 checksum deltas and the TTL /
//     hop limit decremented; TUN: the TTL / hop limit decremented and an IPIP / ip6ip6,
//     GUE or GRE header pushed in front, bpf_xdp_adjust_head, the entry's MTU bounding
//     the inner packet, a GUE or GRE checksum (FastTunCsum) taken from the inner
//     packet's headers, inner_sum) and sent — XDP_TX on the receiving interface, else
//     bpf_redirect_map(tx_ports, ifindex) (also back out of the receiving interface
//     with FastRedirect: a veth's XDP_TX reaches a peer without an XDP program only
//     late) — unless it is SYN, FIN or RST, a first fragment, has TTL / hop limit <= 1
//     (NAT, FULLNAT), exceeds the entry's MTU or its egress is not in tx_ports: then it
//     is classified as below. The entry counts packets, IP bytes and the last time
//     (bpf_ktime_get_ns) for the dataplane, which stays the authority (package
//     dataplane, fastpath.go);
//   - (proto, destination address, destination port) is in services: redirect;
//   - else (proto, source address, source port) is in reals (a NAT or FULLNAT reply):
//     redirect, unless the destination is one of the director's own addresses (locals)
//     and not a FULLNAT local address (laddrs): FULLNAT real servers answer the local
//     address the director sent from, which is also configured on the director's
//     interface, so laddrs is consulted first;
//   - an ICMP error (IPv4 destination unreachable or time exceeded; ICMPv6 destination
//     unreachable, packet too big or time exceeded) quoting a TCP/UDP/SCTP packet: redirect
//     when the quote's (proto, source, source port) is in services (an error from the
//     client side about a reply from VIP:port) or its (proto, destination, destination
//     port) is in reals (an error from a NAT or FULLNAT real server's side about a
//     request the director sent it; passed when the outer destination is in locals and
//     not in laddrs: the director's own traffic); other ICMP (echo requests to a VIP
//     included) is passed;
//   - a later fragment (offset != 0: no ports): redirect when (proto, destination) is the
//     address of a service or (proto, source) that of a NAT or FULLNAT real server
//     (vaddrs; the locals/laddrs rule applies to the destination); the dataplane
//     forwards it as its first fragment went or drops it;
//   - else XDP_PASS.
//
// Redirect means bpf_redirect_map(xsks, rx_queue_index, XDP_PASS): the AF_XDP socket of
// the frame's receive queue, or the kernel when that queue has no socket. The program
// never drops a frame: malformed, fragmented, non-IP and unmatched frames all go to the
// kernel, so traffic survives the daemon's death. The one exception is a restart's
// handoff (handoff.go): while the hold map's deadline lies ahead, a matched frame whose
// queue has no socket is dropped (XDP_DROP, counted as held) instead of passed, because
// the kernel's stack would reset the NAT connections the successor is about to take
// over; after the deadline such frames are passed again, and so are those of sockets
// still registered (handed over to a successor that did not come).
//
// # Maps
//
//	name      type           key                     value          max    owner
//	services  HASH           struct svc_key (20 B)   struct svc_val 65536  Classifier (shared)
//	reals     HASH           struct svc_key (20 B)   struct svc_val 65536  Classifier (shared)
//	locals    HASH           16-byte address         __u32          4096   Classifier (shared)
//	laddrs    HASH           16-byte address         __u32          256    Classifier (shared)
//	vaddrs    HASH           struct vaddr_key (20 B) struct svc_val 131072 Classifier (shared)
//	xsks      XSKMAP         __u32 rx queue index    __u32 xsk fd   64     Port
//	stats     PERCPU_ARRAY   __u32 slot              __u64 count    8      Port
//	hold      ARRAY          __u32 0, 1              __u64 ns       2      Classifier (shared)
//	fastpath  HASH (no prealloc) struct fp_key (40 B) struct fp_val (104 B) 65536 (EnableFastPath sizes it; 1 when off)  Classifier (shared)
//	tx_ports  DEVMAP_HASH    __u32 ifindex           __u32 ifindex  64     Classifier (shared)
//	fp_on     ARRAY          __u32 0                 __u32 on       1      Classifier (shared)
//	macs      ARRAY          __u32 0                 struct mac_set 1      Port
//
// struct mac_set (72 B): __u32 n (entries used, at most MaxMACs; 0: no filter), __u32 pad,
// then 8 entries of the 6 MAC bytes followed by 2 zero bytes, compared as one __u64.
//
// struct fp_key is FastKey and struct fp_val FastVal (fastpath.go, which gives their
// layouts).
//
// struct svc_key:
//
//	offset  size  field
//	0       16    addr   IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), IPv6 as is
//	16      2     port   network byte order
//	18      1     proto  6 (TCP) or 17 (UDP)
//	19      1     pad    0
//
// struct vaddr_key (the addresses of services and NAT real servers, per protocol, for
// later fragments; SetServices and SetReals keep it in step with their maps):
//
//	offset  size  field
//	0       16    addr   as in svc_key
//	16      1     proto  6 (TCP) or 17 (UDP)
//	17      1     role   1 a service's address (matched as destination), 2 a NAT real
//	                     server's (matched as source)
//	18      2     pad    0
//
// struct svc_val is one __u32 flags, reserved: written as 0, not read.
// An IPv6 packet whose address is IPv4-mapped matches the IPv4 key: such addresses are
// not valid on the wire (RFC 4291 section 2.5.5.2).
//
// stats slots (ABI: new slots are only ever appended):
//
//	0 passed           parsed, matched nothing (other IP protocols, ICMP that is not ours)
//	1 redirected       matched and redirected to the queue's socket
//	2 redirect_failed  matched, the queue has no socket: passed
//	3 malformed        truncated or invalid headers (version, IHL, lengths, TCP offset): passed
//	4 fragment         a later fragment (IPv4 offset != 0, IPv6 fragment header with
//	                   offset != 0) of no service or real server address: passed
//	5 non_ip           EtherType (after one 802.1Q tag) neither IPv4 nor IPv6: passed
//	6 local_reply      a real server's packet to the director's own address: passed
//	7 held             matched, the queue has no socket, a hold runs: dropped
//	8 fastpath_tx      an established flow of fastpath rewritten and sent (XDP_TX or
//	                   XDP_REDIRECT)
//	9 other_host       destination MAC not in macs (another host's, broadcast, multicast):
//	                   passed
//
// hold[0] and hold[1] are CLOCK_MONOTONIC times in nanoseconds (bpf_ktime_get_ns), 0
// when unset: until hold[0] a matched frame that finds no socket is dropped; from
// hold[1] on the sockets are not used (the frame is treated as finding none), so that
// sockets handed to a successor that never comes do not keep the frames from the
// kernel.
//
// Each frame increments exactly one slot. A first fragment (offset 0) carries the ports
// and is classified like any packet (IPv6: the fragment header is followed; other
// extension headers are not). Fragments of one datagram must arrive on one receive queue
// for the dataplane to match them (see package dataplane).
//
// # Go side
//
// A Classifier owns the shared maps; SetServices and SetReals make them equal to a given
// key set, SetLocals and SetLaddrs the address maps to a given address set. Each Port (Classifier.Attach, or Classifier.Load for
// an unattached one in tests) is a program instance for one interface with its own xsks,
// stats and macs maps, attached through a bpf_link so it detaches when the Port is closed or
// the process exits. The interface index given to Attach is resolved in the calling
// thread's network namespace.
//
// # Restart handoff
//
// Port.LinkFD gives a stopping xlvsd the fd of each bpf_link to hand to a keeper
// (systemd's fd store); Classifier.Hold sets the hold deadline. The successor's
// Classifier.Adopt wraps such an fd after checking that it is an XDP link on the
// expected interface and loads the successor's own program instance beside it;
// Port.Activate swaps that instance onto the link (BPF_LINK_UPDATE, atomic, so the
// interface never runs without a program). DetachLink detaches a link that is not taken
// over (BPF_LINK_DETACH), however many processes still hold it.
//
// # Concurrency
//
// Classifier and Port methods are safe for concurrent use; the Set methods are
// serialized. The kernel reads the maps while they change: each element update is atomic,
// a SetServices call as a whole is not (frames see the set part-way through it, and keys
// in both the old and new set are never removed).
//
// # Decapsulator
//
// decap.c runs on a TUN real server whose kernel has no ipip / ip6_tunnel, fou or gre
// module (cmd/xlvs-decap drives it). Its XDP program (bpf_xdp_adjust_head) and its tc
// program (bpf_skb_adjust_room with BPF_F_ADJ_ROOM_DECAP_L3_IPV4/IPV6, attached through
// tcx) share one parser. They strip the outer headers of an untagged frame carrying IPv4
// (20-byte header, valid checksum, not a fragment) or IPv6 (the tunnel's next header
// directly after the fixed one), addressed to one of the addrs map's addresses, whose
// tunnel is IPIP / ip6ip6 (protocol 4 or 41), GRE (47: version 0, no flags or only C,
// protocol 0x0800 or 0x86DD) or GUE (UDP to a port in gue_ports, UDP length equal to the
// IP payload's, a 4-byte header whose version, C, hlen and flags are 0 and whose
// proto_ctype is 4 or 41), and whose inner header has the announced version; the Ethernet
// header moves forward with the inner EtherType. The UDP and GRE checksums are not
// verified (the inner packet's own are end to end). Every frame is passed to the kernel,
// stripped or not, so the program never drops anything.
//
//	name       type          key                              value   max
//	addrs      HASH          16-byte address (v4-mapped)      __u32   256
//	gue_ports  HASH          __be16 UDP port (network order)  __u32   16
//	stats      PERCPU_ARRAY  __u32 slot                       __u64   7
//
// stats slots (ABI, append only): 0 passed (not a tunnel packet), 1 decapsulated,
// 2 not_local (tunnel packet for another address), 3 malformed, 4 fragment, 5 error (the
// helper failed), 6 unsupported (GUE options, control messages, another version or
// payload; GRE key, sequence, routing, another version or protocol: left to the kernel,
// untouched). Each frame increments exactly one. A Decap (LoadDecap, AttachDecap) owns
// both programs and the three maps, attached to one interface through a bpf_link; its methods
// are safe for concurrent use.
//
// # Regenerating
//
// After editing xlvs.c or decap.c run `go generate ./bpf` from the module root (needs clang,
// llvm-strip and libbpf-dev). The output is byte-identical across checkout paths; commit
// the *_bpfel.go and *_bpfel.o files. The object is little-endian (bpfel): the package
// builds on little-endian Linux only.
package bpf
