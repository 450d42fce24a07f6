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
// one RX and one TX queue (the kernel's default) unless Options.Queues asks for more (see
// Queues). MACs and addresses are fixed (see Layout); beds in different
// namespaces do not collide. The director's
// IPv4/IPv6 forwarding is off: the load balancer under test does the forwarding
// (Bed.SetForwarding turns the kernel's on for baselines and connectivity checks). On any
// error New removes whatever it made; Bed.Close removes everything and is idempotent.
//
// # Queues
//
// With Options.Queues (ChainOptions.Queues) N, every veth of the bed, both ends, has N RX
// and N TX queues (`ip link add ... numrxqueues N numtxqueues N`), so xlvsd runs one
// worker and one AF_XDP socket per queue. A veth hands a packet to its peer's RX queue
// at the skb's queue mapping, the TX queue the sender picked (drivers/net/veth.c,
// veth_xmit): a socket's flows spread over the queues by the kernel's hash of the flow
// (net/core/dev.c, netdev_pick_tx, skb_tx_hash), an AF_XDP socket sends on the queue it
// is bound to, and SetXPS pins everything a host sends to one queue (TestQueues checks
// this on the running kernel with the veth's per-queue counters). Measured on 6.18,
// with TX checksum offload off on the sender (as New sets it): 64 UDP sockets to one
// peer landed 25/39 on two queues. Queues reports what a namespace's sysfs lists.
//
// The bridge needs care: a frame keeps its queue mapping through it, and the port
// towards the director takes a non-zero mapping m for a recorded receive queue m-1 and
// sends on that queue (net/core/dev.c, skb_tx_hash; veth's NAPI path records one too),
// hashing the flow only when the mapping is 0. Measured: a real server's 64 UDP sockets
// spread 32/34 over its own TX queues, and all 66 frames arrived on int0's queue 0. So in
// a bed with more than one queue, New sets every host behind the bridge to send on TX
// queue 0 (SetXPS) and leaves the switch ports without GRO: the port towards the director
// then picks the queue by the flow's hash (33/33 measured), by addresses only for IP
// fragments (the kernel's flow dissector reads no ports from a fragment), as a NIC's RSS
// does. Hosts wired straight to the director (NATTwoArm's client) spread by their own
// hash.
//
// # A backup director
//
// With Options.Backup (NATOneArm and L2 only) New adds a second director, Bed.Backup with
// its interface Bed.BackupHost ("backup", eth0, 02:00:5e:ss:00:03, .3 and ::3 in each
// subnet of the layout), on the same bridge, with the director's sysctls. The addresses
// the hosts use to reach "the director" float: the VIPs (/32, /128), and in NATOneArm the
// client's and real servers' gateways 198.18.1.1 and 198.18.2.1 (fd00:1::1, fd00:2::1, as
// /32 and /128). Each director keeps addresses of its own, added first so that they are
// its primary ones and its connected routes never depend on what floats: in NATOneArm the
// director has .4 (::4) in both subnets and Ext.Addr is 198.18.1.4; in L2 the director
// keeps .1 (::1), which does not float. Floating IPv6 addresses are deprecated (preferred
// lifetime 0) so that they are never chosen as the directors' own source address. Without
// Backup every layout is addressed exactly as above.
//
// Bed.Failover moves the floating addresses from the director's eth0 to the backup's and
// announces them as a VRRP master does, with gratuitous ARPs and unsolicited neighbour
// advertisements sent from the backup (no arping or ndisc6 needed), until every host of the
// segment resolves them to the backup's MAC; Bed.Failback moves them back. Bed.Active tells
// which director holds them.
//
// The two directors' eth0 form the sync link: IPVS sync messages to 224.0.0.81 or
// ff02::1:81 (UDP 8848) sent out of one eth0 reach a socket joined to the group on the
// other. The bridge does no multicast snooping, so it floods every group to every port and
// no IGMP/MLD querier is needed; the receiver still has to join. IPv4 messages leave from
// the sender's own address (the first IPv4 address of its eth0), IPv6 ones from its
// link-local address, which New waits for on both directors.
//
// # Concurrency
//
// NS and Bed methods are safe for concurrent use. Close may run concurrently with other
// methods; those then fail with ErrClosed (or an error wrapping it).
//
// All of this needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
package testbed
