// Package keepalived reads the LVS part of keepalived.conf(5) so that a director's
// existing configuration runs unchanged under xlvsd: virtual_server blocks (by address
// and port, or "virtual_server group NAME" over a virtual_server_group, expanded into one
// VirtualServer per address and port as group.go describes) with their real servers,
// sorry server and health checkers (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK,
// DNS_CHECK, UDP_CHECK, PING_CHECK, FILE_CHECK with track_file), into a Config whose every
// default and inherited value is resolved.
//
// # Syntax
//
// As keepalived: statements are a keyword and its values on one line; '{' and '}' open
// and close blocks (a '{' may also stand alone on the next line, and several statements
// may share a line between braces); '#' and '!' start comments outside quotes; "..." and
// '...' group blanks into one value, with the shell's backslash escapes. Also handled:
// include (and includer/m/w/b/a) with globs and {a,b} braces, relative to the including
// file; $NAME=VALUE parameters (multi-line with a trailing backslash) substituted as
// $NAME and ${NAME}, with ${_PWD}, ${_INSTANCE}, ${_HASH}, ${_BANG} and, when
// Options.Getenv is set, ${_ENV NAME}; conditional lines @ID and @^ID against
// Options.ConfigID. As in keepalived, every line a multi-line parameter expands to is read
// like a line of the file when its turn comes, so it may define parameters and use other
// (multi-line) ones, nested. ~SEQ and ~LST are refused with an error.
//
// # Semantics
//
// Keywords, aliases (lb_algo = lvs_sched, lb_kind = lvs_method, nb_get_retry = retry)
// and defaults follow keepalived 2.x (check_parser.c, check_data.c, check_api.c): for
// example delay_loop 60 s, connect_timeout 5 s, retry 1 (MISC_CHECK 0),
// delay_before_retry 1 s (HTTP_GET and SSL_GET 3 s), warmup = delay_loop, status codes
// 200-299, weight 1, quorum 1, persistence_timeout without a value 360 s, scheduler wlc,
// forwarding NAT, protocol UDP when none is given (keepalived's current default, warned
// about). A setting of the virtual server is the default of its real servers, and a real
// server's is the default of its checkers. The corrections keepalived makes (a quorum
// above the total weight, hysteresis not below quorum, a DR real server on another port,
// duplicate real servers, a virtual server without real servers) are made the same way,
// each with a Warning.
//
// # FULLNAT (DPVS's keepalived)
//
// lb_kind (or lvs_method) FNAT, also spelt FULLNAT, is xlvs's FULLNAT method, for a
// virtual server, a real server or a sorry server. Its local addresses come as in DPVS's
// keepalived: a top-level block
//
//	local_address_group NAME {
//	    192.168.100.200-210 dpdk0   # A.B.C.D-E: .200 to .210 (IPv4 only, E <= 254)
//	    192.168.100.220 dpdk0       # IP [IFNAME]
//	    2001:db8:100::200           # IPv6 addresses one per line
//	}
//
// named by "laddr_group_name NAME" inside virtual_server. A virtual server any of whose
// destinations forwards with FNAT gets every address of its group of its own family
// (VirtualServer.LocalAddrs; a group may serve IPv4 and IPv6 services alike); without
// laddr_group_name, with an unknown group or with no address of its family it is an
// error naming the file and line. laddr_group_name elsewhere is a Warning. Interface
// names are accepted and ignored with one Warning per group: xlvs takes a local address
// on whichever interface the kernel has it, and the director must own the address (for
// replies to reach it). syn_proxy is accepted with a Warning; groups may come before or
// after the virtual servers naming them.
//
// Blocks and keywords xlvs does not act on are accepted with one Warning each: top-level
// blocks such as global_defs or vrrp_instance; fwmark virtual servers and the fwmark
// lines of a virtual_server_group; notify and quorum scripts (transitions are logged and
// counted instead); BFD_CHECK; smtp_alert, snmp_name, regex; DPVS-only keywords with no
// xlvs meaning (dpvs.go), while DPVS-only features that would change what a service does
// (SNAT match services, conhash, the PROXY protocol, deny lists with entries) are
// errors. As keepalived, which logs such lines with their position and carries on, an
// unknown or misspelt keyword (skipped with any block it opens), extra words after the
// values a keyword takes, and persistence_timeout 0 (not persistent) are Warnings
// naming file and line. What would make a wrong rule set — a malformed address, port,
// number or boolean, an unknown scheduler, forwarding method or protocol, a missing value
// or an unbalanced brace — is an error naming file, line and what was expected; Parse and
// Load then return an ErrorList (up to 20 errors) and no Config, so a reload with a bad
// file keeps the running configuration.
//
// # Invariants
//
// A Config is resolved: every default and inherited value is filled in, so its users
// read no keepalived default themselves. Load and Parse return either a Config (with its
// Warnings) or an ErrorList, never both, and never panic on any input (fuzzed). Each
// statement is read by the function of its group (parse.go: vsKeyword's vsGroups,
// checkKeyword's checkGroups).
//
// # Reload
//
// Diff(old, new) lists the virtual servers and real servers added, removed and changed
// (with the names of the changed settings), and the FULLNAT local addresses each virtual
// server gains and loses, ignoring file positions and the order of a group, so a SIGHUP
// applies only the difference and leaves unchanged servers, and their connections, alone.
//
// # Concurrency
//
// Load, Parse and Diff keep no state between calls and may run concurrently. A Config is
// a plain value; treat it as read-only once shared. The package reads files only through
// Options (os.ReadFile and filepath.Glob by default), never reads flags or the
// environment itself, and never exits.
package keepalived
