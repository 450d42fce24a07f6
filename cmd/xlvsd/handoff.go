package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bpf"
	"xlvs/control"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

// Hitless restart (README "Restarting and upgrading"). On SIGTERM under a service
// manager with a file descriptor store (systemd: FileDescriptorStoreMax=), xlvsd stops
// its workers, sets its XDP program's hold for --handoff-hold (dataplane.Hold), writes
// its connection table, templates, statistics and its sockets' free frames into a
// sealed memfd and stores it with its AF_XDP sockets and their UMEMs' memfds and its
// XDP links (FDSTORE=1), then exits. Its program keeps redirecting into the sockets,
// where the frames wait in the RX rings. The next xlvsd gets all of it back
// (LISTEN_FDS), checks the format version, adopts the sockets and the links, restores
// the rules, imports the table and statistics, starts forwarding from the sockets and
// swaps its own XDP program in. Without a store, or when the successor cannot use what
// it gets, it is a cold start as before.

// buildLabel names this build in the handoff it writes (set with -ldflags
// "-X main.buildLabel=..."); the successor logs it.
var buildLabel = "dev"

func writerName() string {
	return fmt.Sprintf("xlvsd %s (%s, %s)", control.Version, buildLabel, runtime.Version())
}

// Names of the stored file descriptors. A socket's names end in its interface and
// queue ("xlvs-sock-eth0-3").
const (
	fdNameHandoff  = "xlvs-handoff"
	fdNameLinkPref = "xlvs-link-"
	fdNameSockPref = "xlvs-sock-" // an AF_XDP socket
	fdNameUmemPref = "xlvs-umem-" // its UMEM's memfd
)

func sockNames(ifname string, queue int) (sock, umem string) {
	return fmt.Sprintf("%s%s-%d", fdNameSockPref, ifname, queue), fmt.Sprintf("%s%s-%d", fdNameUmemPref, ifname, queue)
}

// sdNotify sends state to the service manager's $NOTIFY_SOCKET with fds attached.
func sdNotify(state string, fds ...int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return errors.New("NOTIFY_SOCKET is not set: not run by a service manager with a notify socket")
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// A leading '@' names an abstract socket; unix.SockaddrUnix maps it.
	if err := unix.Sendmsg(s, []byte(state), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return fmt.Errorf("notify %s: %w", path, err)
	}
	return nil
}

// listenFDs takes the file descriptors the service manager passed (sd_listen_fds with
// names: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES; fds from 3), by name, and unsets the
// variables so that no child inherits them. None when they are meant for another process.
func listenFDs() map[string][]int {
	pid, n, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid != strconv.Itoa(os.Getpid()) {
		return nil
	}
	count, err := strconv.Atoi(n)
	if err != nil || count <= 0 || count > 1024 {
		return nil
	}
	nameList := strings.Split(names, ":")
	out := map[string][]int{}
	for i := 0; i < count; i++ {
		fd := 3 + i
		unix.CloseOnExec(fd)
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		out[name] = append(out[name], fd)
	}
	return out
}

// handoffIn is a predecessor's handoff being taken over.
type handoffIn struct {
	h       *dataplane.Handoff
	links   []dataplane.AdoptLink
	linkFDs []int                   // every XDP link passed, adopted or not
	socks   []dataplane.AdoptSocket // adopted sockets, until dataplane.New takes them
	adopted int                     // how many sockets were adopted
	names   []string                // stored names to remove once taken (or abandoned)
	fds     []int                   // every passed fd of ours not owned by an adopted socket
	log     *slog.Logger
	start   time.Time
}

// receiveHandoff returns the predecessor's handoff when the service manager passed one
// this process can take over, nil otherwise (nothing passed, or unusable: logged with
// the reason, the links detached, the store emptied — a cold start follows). passed
// tells whether a predecessor left anything: it has just exited, and the kernel may
// still be releasing its sockets.
func receiveHandoff(o *options, log *slog.Logger) (in *handoffIn, passed bool) {
	fds := listenFDs()
	if len(fds) == 0 {
		return nil, false
	}
	in = &handoffIn{log: log, start: time.Now()}
	for name, list := range fds {
		in.fds = append(in.fds, list...)
		if name != "unknown" {
			// Every name, known or not (a newer writer's): the store must not keep
			// what this process does not take.
			in.names = append(in.names, name)
		}
		if strings.HasPrefix(name, fdNameLinkPref) {
			in.linkFDs = append(in.linkFDs, list...)
		}
	}
	if err := in.read(o, fds); err != nil {
		log.Error("handoff from the previous xlvsd refused: starting cold (its connections are not kept)", "err", err)
		in.abandon()
		return nil, true
	}
	return in, true
}

func (in *handoffIn) read(o *options, fds map[string][]int) error {
	mem := fds[fdNameHandoff]
	if len(mem) != 1 {
		return fmt.Errorf("%d descriptors named %s passed, want 1 (the previous xlvsd did not finish its handoff)", len(mem), fdNameHandoff)
	}
	var st unix.Stat_t
	if err := unix.Fstat(mem[0], &st); err != nil {
		return fmt.Errorf("handoff memfd: %w", err)
	}
	if st.Size > dataplane.MaxHandoffBytes {
		return fmt.Errorf("handoff of %d bytes, at most %d", st.Size, dataplane.MaxHandoffBytes)
	}
	b := make([]byte, st.Size)
	if _, err := unix.Pread(mem[0], b, 0); err != nil {
		return fmt.Errorf("read the handoff: %w", err)
	}
	h, err := dataplane.DecodeHandoff(b)
	if err != nil {
		return err
	}
	in.h = h
	want := map[string]bool{}
	for _, i := range o.ifaces {
		want[i] = true
	}
	for _, ifc := range h.Interfaces {
		if !want[ifc.Name] {
			return fmt.Errorf("the previous xlvsd ran on interface %s, this one is not given it (-i %s)", ifc.Name, strings.Join(o.ifaces, " -i "))
		}
		lfds := fds[fdNameLinkPref+ifc.Name]
		if len(lfds) != 1 {
			return fmt.Errorf("interface %s: %d XDP links passed, want 1", ifc.Name, len(lfds))
		}
		in.links = append(in.links, dataplane.AdoptLink{Ifname: ifc.Name, FD: lfds[0], Mode: ifc.Mode})
	}
	in.adoptSockets(o, fds)
	if o.shardKeyFile != "" && o.shardKey != h.ShardKey {
		in.log.Warn("--shard-key-file differs from the key the previous xlvsd's table was built with: keeping the table's key until the next cold start (a sync peer's FULLNAT connections are refused meanwhile)")
	}
	return nil
}

// adoptSockets takes over the predecessor's AF_XDP sockets (xsk.Adopt) that this
// process's options would have opened alike: same interface (and index), same ring and
// frame sizes and mode. The others are dropped at once — removed from the store and
// closed, so that the kernel frees their queues for the sockets this process opens.
func (in *handoffIn) adoptSockets(o *options, fds map[string][]int) {
	gone := map[int]bool{} // passed fds now an adopted socket's, or closed
	var refused []string
	for _, hs := range in.h.Sockets {
		sn, un := sockNames(hs.Ifname, hs.Queue)
		why := refuseSocket(o, &hs, fds[sn], fds[un])
		if why == "" {
			s, err := xsk.Adopt(fds[sn][0], fds[un][0], hs.Info)
			if err == nil {
				in.socks = append(in.socks, dataplane.AdoptSocket{Ifname: hs.Ifname, Queue: hs.Queue, Socket: s})
				in.adopted++
				gone[fds[sn][0]], gone[fds[un][0]] = true, true
				continue
			}
			why = err.Error()
		}
		refused = append(refused, why)
	}
	// Every passed socket and UMEM not adopted (refused, or not in the handoff) leaves
	// the store and is closed.
	for name, list := range fds {
		if !strings.HasPrefix(name, fdNameSockPref) && !strings.HasPrefix(name, fdNameUmemPref) || gone[list[0]] {
			continue
		}
		if err := sdNotify("FDSTOREREMOVE=1\nFDNAME=" + name); err != nil {
			in.log.Debug("remove from the fd store", "name", name, "err", err)
		}
		for _, fd := range list {
			unix.Close(fd)
			gone[fd] = true
		}
	}
	keep := in.fds[:0]
	for _, fd := range in.fds {
		if !gone[fd] {
			keep = append(keep, fd)
		}
	}
	in.fds = keep
	if len(refused) > 0 {
		in.log.Warn("not taking over the previous xlvsd's AF_XDP sockets: opening new ones (the packets that arrive until they are bound are dropped)", "reason", refused[0], "refused", len(refused))
	}
}

// refuseSocket says why the handed-over socket hs (with the socket and UMEM fds passed
// under its names) cannot be taken over by a process with options o, "" when it can:
// o would have opened it alike (same interface and index, sizes and mode).
func refuseSocket(o *options, hs *dataplane.HandoffSocket, sfd, ufd []int) string {
	want := o.sock
	want.Private = false
	switch {
	case o.sock.Private:
		return "--private-umem"
	case len(sfd) != 1 || len(ufd) != 1:
		return fmt.Sprintf("%d sockets and %d UMEMs passed for %s queue %d, want 1 each", len(sfd), len(ufd), hs.Ifname, hs.Queue)
	case hs.Info.Config != want:
		return fmt.Sprintf("the previous xlvsd's sockets were sized %+v, this one's are %+v", hs.Info.Config, want)
	}
	if ifc, err := net.InterfaceByName(hs.Ifname); err != nil || ifc.Index != hs.Info.Ifindex {
		return fmt.Sprintf("interface %s is not the one (index %d) the socket of queue %d is bound to", hs.Ifname, hs.Info.Ifindex, hs.Queue)
	}
	return ""
}

// closeSockets closes the adopted sockets dataplane.New has not taken.
func (in *handoffIn) closeSockets() {
	for _, s := range in.socks {
		s.Socket.Close()
	}
	in.socks = nil
}

// abandon detaches the predecessor's programs (so that this process can attach its
// own), empties the store and closes what was passed.
func (in *handoffIn) abandon() {
	for _, lfd := range in.linkFDs {
		if fd, err := unix.FcntlInt(uintptr(lfd), unix.F_DUPFD_CLOEXEC, 3); err == nil {
			if err := bpf.DetachLink(fd); err != nil {
				in.log.Warn("detach the previous xlvsd's XDP program", "err", err)
			}
		}
	}
	in.links, in.linkFDs = nil, nil
	in.closeSockets()
	in.release()
}

// release closes the passed fds and asks the store to drop its copies.
func (in *handoffIn) release() {
	for _, name := range in.names {
		if err := sdNotify("FDSTOREREMOVE=1\nFDNAME=" + name); err != nil {
			in.log.Debug("remove from the fd store", "name", name, "err", err)
		}
	}
	for _, fd := range in.fds {
		unix.Close(fd)
	}
	in.fds, in.names = nil, nil
}

// settleAfter is how long after a takeover the table is made resident (SettleTable).
const settleAfter = 2 * time.Second

// finish imports the table and statistics into the running (rules restored) daemon and
// swaps this build's XDP program in.
func (in *handoffIn) finish(dp *dataplane.Dataplane, d *control.Daemon) error {
	t0 := time.Now()
	res := dp.ImportHandoff(in.h)
	matched, unmatched := d.AdoptStats(in.h.Stats)
	// The frames waiting in adopted sockets find the rules and the table now.
	dp.StartForwarding()
	t1 := time.Now()
	if err := dp.Activate(); err != nil {
		return fmt.Errorf("take over the XDP program: %w", err)
	}
	t2 := time.Now()
	go func() {
		// Not while the connections' first packets come back: zeroing the rest of the
		// table takes a CPU for 60 ms to seconds.
		time.Sleep(settleAfter)
		dp.SettleTable()
	}()
	in.log.Info("took over from the previous xlvsd",
		"writer", in.h.Writer, "connections", res.Conns, "templates", res.Templates, "expired", res.Expired,
		"refused", fmt.Sprint(res.Refused), "stats_kept", matched, "stats_gone", unmatched, "sockets_adopted", in.adopted,
		"since_handoff", t2.Sub(in.h.Written).Round(time.Microsecond).String(),
		"handoff_to_start", in.start.Sub(in.h.Written).Round(time.Microsecond).String(),
		"startup", t0.Sub(in.start).Round(time.Microsecond).String(),
		"import", t1.Sub(t0).Round(time.Microsecond).String(),
		"activate", t2.Sub(t1).Round(time.Microsecond).String())
	in.release()
	return nil
}

// handOff stores the running dataplane's state and links with the service manager for
// the next xlvsd. The dataplane must not be used for forwarding afterwards: it stops
// its workers first. An error means no handoff happened (the caller then shuts down as
// before: XDP is detached and traffic goes to the kernel).
func handOff(dp *dataplane.Dataplane, d *control.Daemon, hold time.Duration, log *slog.Logger) error {
	if hold <= 0 {
		return errors.New("--handoff-hold 0")
	}
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return errors.New("no service manager to keep the state (NOTIFY_SOCKET unset)")
	}
	t0 := time.Now()
	dp.StopWorkers()
	// Hold: frames that find no socket are dropped, not passed, until the successor
	// takes over; and after hold, the handed-over sockets are no longer used (a
	// successor that never comes leaves the kernel in charge).
	if err := dp.Hold(hold); err != nil {
		return err
	}
	var stored []string
	unstore := func() {
		dp.Hold(0)
		for _, name := range stored {
			sdNotify("FDSTOREREMOVE=1\nFDNAME=" + name)
		}
	}
	// The sockets go to the successor as they are, bound, with what they hold; sockets
	// that cannot (--private-umem) are closed, their queues freed for the successor's
	// as early as can be.
	t1 := time.Now()
	socks := dp.HandoffSockets()
	if socks == nil {
		dp.ReleaseSockets()
	}
	released := time.Since(t1)
	h, skipped := dp.ExportHandoff()
	h.Stats = d.HandoffStats()
	h.Writer = writerName()
	h.Sockets = socks
	b, err := dataplane.EncodeHandoff(h)
	if err != nil {
		dp.Hold(0)
		return err
	}
	mem, err := sealedMemfd(fdNameHandoff, b)
	if err != nil {
		dp.Hold(0)
		return err
	}
	defer unix.Close(mem)
	store := func(name string, fd int) error {
		if err := sdNotify("FDSTORE=1\nFDNAME="+name, fd); err != nil {
			unstore()
			return fmt.Errorf("store %s: %w", name, err)
		}
		stored = append(stored, name)
		return nil
	}
	for _, s := range socks {
		sn, un := sockNames(s.Ifname, s.Queue)
		if err := store(sn, s.SockFD); err != nil {
			return err
		}
		if err := store(un, s.MemFD); err != nil {
			return err
		}
	}
	links, _ := dp.HandoffLinks()
	for _, l := range links {
		if err := store(fdNameLinkPref+l.Ifname, l.FD); err != nil {
			return err
		}
	}
	// Last: its presence tells the successor the handoff is complete.
	if err := store(fdNameHandoff, mem); err != nil {
		return err
	}
	conns := 0
	for i := range h.Entries {
		if !h.Entries[i].Template {
			conns++
		}
	}
	log.Info("handed over to the next xlvsd", "connections", conns, "templates", len(h.Entries)-conns, "skipped", skipped,
		"bytes", len(b), "hold", hold.String(), "sockets", len(socks), "took", time.Since(t0).Round(time.Microsecond).String(),
		"sockets_released", released.Round(time.Microsecond).String())
	return nil
}

// sealedMemfd returns a memfd holding b that nobody can change any more.
func sealedMemfd(name string, b []byte) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return -1, fmt.Errorf("write the handoff: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return -1, fmt.Errorf("seal the handoff: %w", err)
	}
	dup, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	f.Close()
	if err != nil {
		return -1, err
	}
	return dup, nil
}
