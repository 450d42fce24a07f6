package dataplane

import "xlvs/conntrack"

// SyncConn is a connection, or a persistence template, as the connection-sync daemon
// (IPVS's sync master and backup) sees it: what the workers hand over to be sent, and what
// a backup applies. Pointer-free. Addresses are IPv4-mapped for IPv4.
type SyncConn struct {
	Proto    uint8
	Template bool             // a persistence template (IP_VS_CONN_F_TEMPLATE)
	Method   conntrack.Method // forwarding method
	State    conntrack.State  // templates: StateNone
	// Timeout is in seconds: the state's timeout for a connection, the persistence
	// timeout for a template; 0 on a received entry means "the state's own" (version 0).
	Timeout uint32
	Client  [16]byte // templates: the client's address masked by the service's netmask
	CPort   uint16   // templates: 0
	VAddr   [16]byte
	VPort   uint16
	DAddr   [16]byte // real server
	DPort   uint16
	// LAddr and LPort are a FULLNAT connection's local address and port (Method
	// MethodFullNAT).
	LAddr [16]byte
	LPort uint16
	// Queued is when a worker queued the entry (the dataplane's monotonic clock, ns): the
	// sender's lag is its send time minus Queued. Zero on received entries.
	Queued int64
}
