// Command xlvsadm administers xlvsd in ipvsadm's language: the same commands, options,
// listings, rule format and messages as ipvsadm 1.31, sent over xlvsd's control socket
// ($XLVS_SOCKET, or /run/xlvs/xlvsd.sock). It builds without cgo, clang or root.
//
// Exit status: 0 on success; 1 when xlvsd refuses a command or cannot be reached; 2 for
// an invalid command line or rule file (ipvsadm's status for argument errors). Messages
// go to stderr.
package main
