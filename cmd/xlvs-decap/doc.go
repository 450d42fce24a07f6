// Command xlvs-decap decapsulates a TUN (-i) director's IPIP, ip6ip6, GRE and GUE packets
// on a real server whose kernel lacks the ipip, ip6_tunnel, gre or fou modules. It attaches
// bpf/decap.c to an interface (XDP, or tc ingress as a fallback), stays in the foreground,
// and detaches on SIGINT or SIGTERM (or when it dies: the attachment is a bpf_link).
//
// # Role
//
//	xlvs-decap -i IFACE [--mode auto|xdp|tc] [--addr ADDR ...] [--gue-port PORT ...]
//
// Without --addr it decapsulates packets addressed to any address IFACE holds at start;
// without --gue-port it takes no GUE packet (IPIP, ip6ip6 and GRE are always on).
// The real server also needs what any TUN real server needs: the VIP on lo, arp_ignore=1
// and arp_announce=2, and rp_filter that accepts the client's source on IFACE.
//
// # Concurrency
//
// One goroutine: it attaches, waits for a signal and detaches.
package main
