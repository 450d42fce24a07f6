// Package manpage renders a command's --help text and its man page from one description,
// so that the two cannot drift: the options come from the command's own flag.FlagSet (the
// one it parses its arguments with) or, for xlvsadm, from the usage text its -h prints.
//
// # Role
//
// `make man` runs every command with --help-man, which writes the roff page; `make deb`
// installs the pages, and CI renders each with `man -l`.
//
// # Concurrency
//
// A Page is a plain value; rendering reads it and writes to the given writer only.
package manpage
