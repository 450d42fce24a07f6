// Package api is the control protocol between xlvsd and its clients (xlvsadm, tests,
// automation): the wire types, a Client and the server framing (Serve, Listen). It imports
// only the standard library, so xlvsadm builds without cgo, clang or root.
//
// # Conventions: transport and versions
//
// A unix stream socket, DefaultSocket unless --socket or $XLVS_SOCKET says otherwise
// (SocketPath), mode 0600 in a 0755 directory (Listen). One request per connection: the
// client writes one JSON Request followed by '\n'; the server answers one JSON Response
// followed by '\n' and closes the connection. Requests over MaxRequestSize (16 MiB) are
// refused with ErrCodeInvalid. The server gives each connection DefaultConnTimeout (10 s)
// for reading, handling and answering, and handles at most DefaultMaxConns connections at
// once; further clients wait in the listen backlog. The client bounds each call by its
// context, or DefaultClientTimeout.
//
// Every Request and Response carries Version. A server answers a request of another
// version with ErrCodeVersion without executing it. Unknown JSON fields are ignored, so
// fields can be added within a version; removing or renaming one needs a new Version.
//
// # Invariants
//
// One request, one response, then the connection closes; a request of another Version,
// or over MaxRequestSize, is answered with an error and not executed. The package
// imports only the standard library.
//
// # Errors
//
// A failed request is answered with Response.Error: Code (ErrCode*) is for programs,
// Message says what was wrong and what would be right, Line names the offending batch
// entry of a restore. Client.Do returns that *Error as its error value.
//
// # Operations
//
// Exactly the fields an Op needs are set; others are ignored. Services are identified by
// Service.ServiceKey: Protocol "tcp" or "udp" with Addr and Port, or Protocol "fwmark" with
// FWMark (and Family 6 for an IPv6 fwmark service; xlvsadm sets Family 4 or 6 on every
// key). Destinations are identified by Dest.Addr and Dest.Port.
//
//	info            -> Info
//	add-service     Service (key, Scheduler, SchedFlags, Persistent, Timeout, Netmask,
//	                OnePacket, PE): ErrCodeServiceExists when the key is taken
//	edit-service    Service (key + the full new attributes, as ipvsadm -E sends them):
//	                ErrCodeNoService
//	del-service     Service (key): ErrCodeNoService
//	clear           removes every service
//	add-dest        Service (key), Dest (Addr, Port, Method, Weight, UThreshold,
//	                LThreshold, TunType, TunPort, TunFlags): ErrCodeNoService,
//	                ErrCodeDestExists
//	edit-dest       Service (key), Dest (key + the full new attributes): ErrCodeNoService,
//	                ErrCodeNoDest
//	del-dest        Service (key), Dest (Addr, Port): ErrCodeNoService, ErrCodeNoDest
//	list            Service (optional key: only that service) -> Services with Dests in
//	                the daemon's list order (newest destination first), read-only fields
//	                filled; ErrCodeNoService for an unknown key
//	zero            Service (optional key): zero the counters of one or every service
//	set-timeouts    Timeouts (0 keeps a value)
//	get-timeouts    -> Timeouts
//	list-conns      -> Conns
//	restore         Batch (each entry a request of the ops that change state, with
//	                Line = its input line), applied all or nothing; an error names the
//	                entry in Error.Line
//	start-daemon    Daemon (State master|backup, Interface, SyncID, and optional MaxLen,
//	                Group, Port, TTL)
//	stop-daemon     Daemon (State)
//	get-daemon      -> Daemons
//	dataplane-stats -> Dataplane (per AF_XDP socket) and XDPStats (per interface)
//	add-laddr       Service (key), LocalAddr (Addr, Ifname): a FULLNAT local address of
//	                the service, of its address family; ErrCodeNoService,
//	                ErrCodeLaddrExists, ErrCodeInvalid (family, address)
//	del-laddr       Service (key), LocalAddr (Addr): ErrCodeNoService,
//	                ErrCodeNoLocalAddr; connections using it continue until they end
//	get-laddrs      Service (optional key) -> LocalAddrs, services in the daemon's order,
//	                each one's addresses in the order added, Conns and PortConflicts
//	                filled; ErrCodeNoService for an unknown key
//	add-mark        Mark (Protocol, Prefix, Ports, Mark): a firewall-mark rule, appended
//	                (the last matching rule gives a packet its mark); ErrCodeMarkExists,
//	                ErrCodeInvalid
//	del-mark        Mark: the rule equal to it (ports compared once sorted and merged);
//	                ErrCodeNoMark
//	list-marks      -> Marks, in list order (clear removes them with the services)
//
// # Concurrency
//
// Serve calls Handler.Handle from one goroutine per connection, many at once; the handler
// synchronises its own state. Client is safe for concurrent use.
package api
