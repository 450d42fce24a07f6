// Package keepalived reads the LVS part of keepalived.conf(5) so that a director's
// existing configuration runs unchanged under xlvsd: virtual_server blocks with their
// real servers, sorry server and health checkers (TCP_CHECK, HTTP_GET, SSL_GET,
// MISC_CHECK), into a Config whose every default and inherited value is resolved.
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
// Options.ConfigID. ~SEQ and ~LST are refused with an error.
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
// Blocks and keywords xlvs does not act on are accepted with one Warning each: top-level
// blocks such as global_defs, vrrp_instance or virtual_server_group; fwmark and group
// virtual servers; notify and quorum scripts (transitions are logged and counted
// instead); SMTP_CHECK, DNS_CHECK and the other checkers xlvs does not run; smtp_alert,
// snmp_name, regex. A keyword that has no meaning where it is written, a malformed value
// or an unbalanced brace is an error naming file, line and what was expected; Parse and
// Load then return an ErrorList (up to 20 errors) and no Config, so a reload with a bad
// file keeps the running configuration.
//
// # Reload
//
// Diff(old, new) lists the virtual servers and real servers added, removed and changed
// (with the names of the changed settings), ignoring file positions, so a SIGHUP applies
// only the difference and leaves unchanged servers, and their connections, alone.
//
// # Concurrency
//
// Load, Parse and Diff keep no state between calls and may run concurrently. A Config is
// a plain value; treat it as read-only once shared. The package reads files only through
// Options (os.ReadFile and filepath.Glob by default), never reads flags or the
// environment itself, and never exits.
package keepalived
