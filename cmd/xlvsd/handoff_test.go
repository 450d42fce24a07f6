package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSDNotifyFDs: sdNotify sends the state and the descriptors to $NOTIFY_SOCKET as
// systemd's sd_pid_notify_with_fds does, to a path or an abstract ('@') address.
func TestSDNotifyFDs(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "notify")
		if abstract {
			path = "@xlvsd-test-" + strconv.Itoa(os.Getpid())
		}
		s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(s)
		if err := unix.Bind(s, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", path)
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		if err := sdNotify("FDSTORE=1\nFDNAME=xlvs-test", p[1]); err != nil {
			t.Fatalf("sdNotify: %v", err)
		}
		buf, oob := make([]byte, 256), make([]byte, 256)
		n, oobn, _, _, err := unix.Recvmsg(s, buf, oob, unix.MSG_DONTWAIT)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME=xlvs-test" {
			t.Fatalf("message %q", got)
		}
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(cmsgs) != 1 {
			t.Fatalf("control messages %v, %v", cmsgs, err)
		}
		fds, err := unix.ParseUnixRights(&cmsgs[0])
		if err != nil || len(fds) != 1 {
			t.Fatalf("rights %v, %v", fds, err)
		}
		// The passed descriptor is the pipe's write end: what is written arrives.
		if _, err := unix.Write(fds[0], []byte("x")); err != nil {
			t.Fatal(err)
		}
		unix.Close(fds[0])
		if n, err := unix.Read(p[0], buf); err != nil || n != 1 {
			t.Fatalf("read through the passed fd: %d, %v", n, err)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

// TestListenFDsOtherPID: descriptors meant for another process (LISTEN_PID) are not
// taken, and the variables are gone afterwards either way, so no child inherits them.
func TestListenFDsOtherPID(t *testing.T) {
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1))
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("LISTEN_FDNAMES", "xlvs-handoff:xlvs-link-eth0")
	if got := listenFDs(); got != nil {
		t.Fatalf("took %v meant for another process", got)
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("%s still set", v)
		}
	}
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "many")
	if got := listenFDs(); got != nil {
		t.Fatalf("LISTEN_FDS=many: took %v", got)
	}
}
