// Command xlvsadm administers xlvsd in ipvsadm's language: the same commands, options,
// listings, rule format and messages as ipvsadm 1.31 (plus DPVS ipvsadm's FULLNAT
// local-address commands -P, -Q and -G), sent over xlvsd's control socket ($XLVS_SOCKET,
// or /run/xlvs/xlvsd.sock). It builds without cgo, clang or root.
//
// # Role
//
// A thin main: control/ipvsadm parses the command line and prints the answers, control/api
// carries the requests; this package reads the arguments and the environment, and exits.
//
// # Conventions
//
// Exit status, as ipvsadm's: 0 on success; 2 for an invalid command line or rule file and
// when xlvsd cannot be reached (ipvsadm's "Can't initialize ipvs"); 255 when xlvsd refuses
// a command (ipvsadm returns -1 when the kernel refuses). Messages go to stderr.
package main
