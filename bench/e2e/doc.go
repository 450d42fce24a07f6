// Package e2e holds xlvs's end-to-end tests: real TCP and UDP from real sockets in network
// namespaces, through the real XDP program and AF_XDP sockets of a real xlvsd process, to
// real servers, checking what arrived. They need root; with CI set they must run.
package e2e
