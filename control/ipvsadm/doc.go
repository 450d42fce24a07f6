// Package ipvsadm speaks ipvsadm's language for xlvs: it parses ipvsadm 1.31 command
// lines (Parse) and rule files (ParseRules, the -R input) into control API requests, and
// prints the daemon's answers exactly as ipvsadm prints them (Format, Save), so scripts
// and tools written for ipvsadm (keepalived's checks, monitoring that scrapes -L -n
// --stats, saved rule files) work unchanged with xlvsadm.
//
// # Role
//
// Parse reads one command line: the first option is the command, each later one is
// handed by cmdline.apply to the function of its group (service address, service
// options, real server, tunnel, sync daemon, local address, and marks.go's mark rules),
// and finish makes ipvsadm's checks once every option is read. command turns the result
// into api.Requests. Format and Save print the daemon's answers; ErrorMessage turns a
// refusal into ipvsadm's text, adding the option that would help (the daemon's messages
// name none).
//
// # Conventions
//
// The grammar follows ipvsadm.c: popt-style options (bundled short options such as -Lnc,
// attached or separate values, -p with an optional timeout), the command/option
// compatibility table and the checks after it in ipvsadm's order, its defaults
// (scheduler wlc, direct routing, weight 1, persistence 300 s, mcast interface eth0, a
// real server without a port inherits the service's port, DR and tunnel servers always
// do), inet_aton address forms, host and service names resolved as ipvsadm does (IPv4
// hosts, /etc/services ports). Messages start with ipvsadm's text and add what would be
// right. Listings reproduce ipvsadm's printf formats byte for byte, including column
// truncation, trailing blanks and the K/M/G/T abbreviation of large counters.
//
// Deliberate differences: xlvsadm checks scheduler and persistence-engine names itself
// (ipvsadm leaves that to the kernel); --fullnat selects
// xlvs's full-NAT forwarding (listed as "FullNat", saved as --fullnat); -S also saves
// non-zero -x/-y and never cuts a long host name (ipvsadm's 59-byte buffer would make the
// rule unrestorable); DPVS ipvsadm's FULLNAT local-address commands are spoken
// (-P/--add-laddr, -Q/--del-laddr, -G/--get-laddr with -z/--laddr and -F/--ifname, -F
// optional and informative, --get-laddr printed as DPVS does) and -S saves local
// addresses as -P lines, which DPVS does not; -R refuses listing commands in its input
// and names the line of any error; -V is accepted besides -v; --dataplane-stats is xlvs's own; sorting
// compares addresses as unsigned numbers, where ipvsadm's int subtraction misorders
// addresses 2^31 apart.
//
// # Invariants
//
//   - Output is byte for byte ipvsadm's: the tests compare with golden files
//     (testdata/*.golden) and exact strings; change them only with a reference to
//     ipvsadm's source.
//   - Bad input is an error, never a panic: FuzzParse and FuzzParseRules check it, and
//     that whatever parses also formats.
//
// # Concurrency
//
// Parse, ParseRules, Format and Save keep no state between calls and may run
// concurrently; they are as safe as the Resolver they use (SystemResolver and NoResolver
// are). The package never reads flags or the environment and never exits.
package ipvsadm
