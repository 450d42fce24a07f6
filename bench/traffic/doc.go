// Package traffic has the servers and load generators that xlvs tests, the demo and the
// benchmark harness run inside testbed namespaces. It knows nothing about namespaces: it
// takes listeners, packet conns, connections and dial functions made wherever the caller
// wants (testbed.NS.Listen, testbed.NS.DialContext, or plain loopback).
//
// # Conventions
//
// Servers say who they are, so a client behind a load balancer can count the split:
//   - ServeHTTP: "/" answers "NAME\n"; every response carries the header X-Server: NAME;
//     "/blob?size=N&seed=S" streams N deterministic pseudo-random bytes (Blob and
//     BlobReader regenerate them); "POST /upload" answers "LENGTH SHA256HEX\n" for the body.
//   - ServeUDPEcho: each datagram comes back as "NAME\x00" followed by the payload.
//
// Clients check data byte for byte: Download regenerates and compares the blob, Upload
// compares the server's length and SHA-256, UDPEcho compares each echoed payload; a
// difference is an error wrapping ErrMismatch that names the first bad offset.
//
// # Invariants
//
// Everything stops when its context ends; HTTPLoad bounds each request by its
// Timeout, UDPEcho each reply wait by its timeout. Errors are returned only for bad
// options (and, for Download and Upload, for the transfer failing); load generators report
// failed requests in their results instead.
//
// # Concurrency
//
// Servers serve concurrently and are stopped by the caller (http.Server.Close,
// the stop func). HTTPLoad runs Concurrency goroutines and returns after all of them ended.
// Results are plain values owned by the caller.
package traffic
