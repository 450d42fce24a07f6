package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"xlvs/control/api"
)

// store is a minimal in-memory daemon: enough of the control API for xlvsadm's commands,
// with IPVS's rules (newest destination first, restore all or nothing).
type store struct {
	mu       sync.Mutex
	services []api.Service
	laddrs   []api.LocalAddr // FULLNAT local addresses, in the order added
	timeouts api.Timeouts
	restores int // restore requests seen
}

func (s *store) Handle(_ context.Context, req *api.Request) *api.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Op == api.OpRestore {
		s.restores++
		saved, savedLaddrs := slices.Clone(s.services), slices.Clone(s.laddrs)
		for i := range saved {
			saved[i].Dests = slices.Clone(saved[i].Dests)
		}
		for i := range req.Batch {
			if resp := s.apply(&req.Batch[i]); resp.Error != nil {
				s.services, s.laddrs = saved, savedLaddrs
				resp.Error.Line = req.Batch[i].Line
				return resp
			}
		}
		return &api.Response{}
	}
	return s.apply(req)
}

func fail(code, format string, args ...any) *api.Response {
	return &api.Response{Error: &api.Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func (s *store) find(k api.ServiceKey) int {
	return slices.IndexFunc(s.services, func(x api.Service) bool { return x.ServiceKey == k })
}

func (s *store) apply(req *api.Request) *api.Response {
	switch req.Op {
	case api.OpInfo:
		return &api.Response{Info: &api.Info{Version: "test", IPVSLike: "1.2.1", ConnTable: 4096}}
	case api.OpAddService:
		if s.find(req.Service.ServiceKey) >= 0 {
			return fail(api.ErrCodeServiceExists, "service exists")
		}
		s.services = append(s.services, *req.Service)
	case api.OpEditService:
		i := s.find(req.Service.ServiceKey)
		if i < 0 {
			return fail(api.ErrCodeNoService, "no such service")
		}
		dests := s.services[i].Dests
		s.services[i] = *req.Service
		s.services[i].Dests = dests
	case api.OpDelService:
		i := s.find(req.Service.ServiceKey)
		if i < 0 {
			return fail(api.ErrCodeNoService, "no such service")
		}
		s.services = slices.Delete(s.services, i, i+1)
		s.laddrs = slices.DeleteFunc(s.laddrs, func(l api.LocalAddr) bool { return l.Service == req.Service.ServiceKey })
	case api.OpClear:
		s.services, s.laddrs = nil, nil
	case api.OpAddLocalAddr, api.OpDelLocalAddr:
		if s.find(req.Service.ServiceKey) < 0 {
			return fail(api.ErrCodeNoService, "service %s %v:%d is not defined", req.Service.Protocol, req.Service.Addr, req.Service.Port)
		}
		j := slices.IndexFunc(s.laddrs, func(l api.LocalAddr) bool {
			return l.Service == req.Service.ServiceKey && l.Addr == req.LocalAddr.Addr
		})
		switch {
		case req.Op == api.OpAddLocalAddr && j >= 0:
			return fail(api.ErrCodeLaddrExists, "local address %v exists", req.LocalAddr.Addr)
		case req.Op == api.OpDelLocalAddr && j < 0:
			return fail(api.ErrCodeNoLocalAddr, "no local address %v", req.LocalAddr.Addr)
		case req.Op == api.OpAddLocalAddr:
			la := *req.LocalAddr
			la.Service = req.Service.ServiceKey
			s.laddrs = append(s.laddrs, la)
		default:
			s.laddrs = slices.Delete(s.laddrs, j, j+1)
		}
	case api.OpGetLocalAddrs:
		var out []api.LocalAddr
		for _, l := range s.laddrs {
			if req.Service == nil || l.Service == req.Service.ServiceKey {
				l.Conns, l.PortConflicts = 2, 1 // the daemon's figures, as the listing shows them
				out = append(out, l)
			}
		}
		return &api.Response{LocalAddrs: out}
	case api.OpAddDest, api.OpEditDest, api.OpDelDest:
		i := s.find(req.Service.ServiceKey)
		if i < 0 {
			return fail(api.ErrCodeNoService, "service %s %v:%d is not defined", req.Service.Protocol, req.Service.Addr, req.Service.Port)
		}
		svc := &s.services[i]
		j := slices.IndexFunc(svc.Dests, func(d api.Dest) bool { return d.Addr == req.Dest.Addr && d.Port == req.Dest.Port })
		switch {
		case req.Op == api.OpAddDest && j >= 0:
			return fail(api.ErrCodeDestExists, "destination exists")
		case req.Op != api.OpAddDest && j < 0:
			return fail(api.ErrCodeNoDest, "no such destination")
		case req.Op == api.OpAddDest:
			svc.Dests = append([]api.Dest{*req.Dest}, svc.Dests...)
		case req.Op == api.OpEditDest:
			svc.Dests[j] = *req.Dest
		default:
			svc.Dests = slices.Delete(svc.Dests, j, j+1)
		}
	case api.OpList:
		if req.Service != nil {
			i := s.find(req.Service.ServiceKey)
			if i < 0 {
				return fail(api.ErrCodeNoService, "no such service")
			}
			return &api.Response{Services: []api.Service{s.services[i]}}
		}
		return &api.Response{Services: slices.Clone(s.services)}
	case api.OpZero:
	case api.OpSetTimeouts:
		t := req.Timeouts
		s.timeouts = api.Timeouts{TCP: cmpOr(t.TCP, s.timeouts.TCP), TCPFin: cmpOr(t.TCPFin, s.timeouts.TCPFin), UDP: cmpOr(t.UDP, s.timeouts.UDP)}
	case api.OpGetTimeouts:
		t := s.timeouts
		return &api.Response{Timeouts: &t}
	case api.OpListConns, api.OpListMarks:
		return &api.Response{}
	default:
		return fail(api.ErrCodeNotImplemented, "%s is not implemented by this test daemon", req.Op)
	}
	return &api.Response{}
}

func cmpOr(v, old uint32) uint32 {
	if v == 0 {
		return old
	}
	return v
}

// buildXlvsadm builds the binary without cgo, once per test binary.
var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

func xlvsadm(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xlvsadm-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "xlvsadm")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", buildPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
	os.Exit(code)
}

// startDaemon serves a fresh store on a socket in its own directory.
func startDaemon(t *testing.T) (*store, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "xc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "d.sock")
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	st := &store{timeouts: api.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, st, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return st, path
}

type result struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, socket, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, xlvsadm(t), args...)
	cmd.Env = append(os.Environ(), api.EnvSocket+"="+socket)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run xlvsadm %q: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

func expect(t *testing.T, r result, code int, stdout, stderrSub string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if stdout != "*" && r.stdout != stdout {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, stdout)
	}
	if stderrSub == "" && r.stderr != "" {
		t.Errorf("unexpected stderr %q", r.stderr)
	}
	if !strings.Contains(r.stderr, stderrSub) {
		t.Errorf("stderr %q lacks %q", r.stderr, stderrSub)
	}
}

const listing = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.1:80 rr
  -> 198.18.1.1:8080              Masq    3      0          0         
  -> 198.18.1.2:80                Route   1      0          0         
UDP  [2001:db8::1]:53 wlc persistent 300 mask 64
  -> [2001:db8::10]:53            Tunnel  1      0          0         
`

const saved = `-A -t 198.18.0.1:80 -s rr
-a -t 198.18.0.1:80 -r 198.18.1.1:8080 -m -w 3
-a -t 198.18.0.1:80 -r 198.18.1.2:80 -g -w 1
-A -u [2001:db8::1]:53 -s wlc -p 300 -M 64
-a -u [2001:db8::1]:53 -r [2001:db8::10]:53 -i -w 1 --tun-type ipip
`

func TestXlvsadm(t *testing.T) {
	st, sock := startDaemon(t)

	t.Run("add", func(t *testing.T) {
		for _, args := range [][]string{
			{"-A", "-t", "198.18.0.1:80", "-s", "rr"},
			{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.2"},
			{"-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1:8080", "-m", "-w", "3"},
			{"--add-service", "--udp-service", "[2001:db8::1]:53", "-p", "-M", "64"},
			{"-a", "-u", "[2001:db8::1]:53", "-r", "2001:db8::10", "-i"},
		} {
			expect(t, runBin(t, sock, "", args...), 0, "", "")
		}
	})
	t.Run("list", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "-Ln"), 0, listing, "")
		expect(t, runBin(t, sock, "", "-L", "-n", "-t", "198.18.0.1:80"), 0,
			strings.Join(strings.Split(listing, "\n")[1:6], "\n")+"\n", "")
	})
	t.Run("save", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "-S", "-n"), 0, saved, "")
	})
	t.Run("clear then restore", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "-C"), 0, "", "")
		expect(t, runBin(t, sock, "", "-Ln"), 0, strings.Join(strings.Split(listing, "\n")[:3], "\n")+"\n", "")
		expect(t, runBin(t, sock, "# from -S\n"+saved, "-R"), 0, "", "")
		expect(t, runBin(t, sock, "", "-Ln"), 0, listing, "")
	})
	t.Run("daemon errors", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "-a", "-t", "198.18.0.1:80", "-r", "198.18.1.2"), 255, "", "Destination already exists")
		expect(t, runBin(t, sock, "", "-a", "-t", "198.18.0.9:80", "-r", "198.18.1.2"), 255, "", "Service not defined: service tcp 198.18.0.9:80 is not defined")
		expect(t, runBin(t, sock, "", "-A", "-t", "198.18.0.1:80"), 255, "", "Service already exists")
		expect(t, runBin(t, sock, "", "-d", "-t", "198.18.0.1:80", "-r", "198.18.1.9"), 255, "", "No such destination")
		expect(t, runBin(t, sock, "", "-D", "-t", "198.18.0.9:80"), 255, "", "No such service")
		expect(t, runBin(t, sock, "", "-L", "-t", "198.18.0.9:80"), 255, "", "No such service")
		expect(t, runBin(t, sock, "", "--start-daemon", "master"), 255, "", "not implemented")
	})
	t.Run("restore refused by the daemon changes nothing", func(t *testing.T) {
		rules := "-C\n-A -t 198.18.0.5:80\n\n-a -t 198.18.0.6:80 -r 198.18.1.1\n"
		expect(t, runBin(t, sock, rules, "-R"), 255, "", "line 4: Service not defined")
		expect(t, runBin(t, sock, "", "-Ln"), 0, listing, "")
	})
	t.Run("restore with a bad line sends nothing", func(t *testing.T) {
		st.mu.Lock()
		before := st.restores
		st.mu.Unlock()
		expect(t, runBin(t, sock, "-C\n-a -t 198.18.0.1:80 -r 198.18.1.1 -w heavy\n", "-R"), 2, "", "line 2: illegal weight specified")
		st.mu.Lock()
		after := st.restores
		st.mu.Unlock()
		if after != before {
			t.Errorf("a restore request reached the daemon (%d -> %d)", before, after)
		}
		expect(t, runBin(t, sock, "", "-Ln"), 0, listing, "")
	})
	t.Run("fullnat local addresses", func(t *testing.T) {
		for _, args := range [][]string{
			{"-A", "-t", "198.18.0.2:80", "-s", "rr"},
			{"-a", "-t", "198.18.0.2:80", "-r", "198.18.1.1:8080", "--fullnat"},
			{"-P", "-t", "198.18.0.2:80", "-z", "198.18.2.50"},
			{"--add-laddr", "-t", "198.18.0.2:80", "--laddr", "198.18.2.51", "-F", "int0"},
		} {
			expect(t, runBin(t, sock, "", args...), 0, "", "")
		}
		expect(t, runBin(t, sock, "", "-P", "-t", "198.18.0.2:80", "-z", "198.18.2.50"), 255, "", "Local address already exists")
		expect(t, runBin(t, sock, "", "-Q", "-t", "198.18.0.2:80", "-z", "198.18.2.99"), 255, "", "No such Local address")
		expect(t, runBin(t, sock, "", "-P", "-t", "198.18.0.9:80", "-z", "198.18.2.50"), 255, "", "Service not defined")
		expect(t, runBin(t, sock, "", "-P", "-t", "198.18.0.2:80"), 2, "", "You need to supply the 'local-address' option for the 'add-laddr' command")
		getAll := "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n" +
			"198.18.0.1:80        0        \n" +
			"[2001:db8::1]:53     0        \n" +
			"198.18.0.2:80        2        \n" +
			"                              198.18.2.50          1          2         \n" +
			"                              198.18.2.51          1          2         \n"
		expect(t, runBin(t, sock, "", "-G"), 0, getAll, "")
		expect(t, runBin(t, sock, "", "--get-laddr", "-t", "198.18.0.2:80"), 0,
			strings.Join(append(strings.Split(getAll, "\n")[:1], strings.Split(getAll, "\n")[3:]...), "\n"), "")
		expect(t, runBin(t, sock, "", "-G", "-t", "198.18.0.9:80"), 255, "", "No such service")
		// -S sorts services: the new one comes after 198.18.0.1:80's lines.
		lines := strings.SplitAfter(saved, "\n")
		withLaddrs := strings.Join(lines[:3], "") + "-A -t 198.18.0.2:80 -s rr\n-a -t 198.18.0.2:80 -r 198.18.1.1:8080 --fullnat -w 1\n" +
			"-P -t 198.18.0.2:80 -z 198.18.2.50\n-P -t 198.18.0.2:80 -z 198.18.2.51 -F int0\n" + strings.Join(lines[3:], "")
		expect(t, runBin(t, sock, "", "-S", "-n"), 0, withLaddrs, "")
		// Saved rules restore: local addresses included.
		expect(t, runBin(t, sock, "-C\n"+withLaddrs, "-R"), 0, "", "")
		expect(t, runBin(t, sock, "", "-S", "-n"), 0, withLaddrs, "")
		expect(t, runBin(t, sock, "", "-Q", "-t", "198.18.0.2:80", "-z", "198.18.2.50"), 0, "", "")
		expect(t, runBin(t, sock, "", "-D", "-t", "198.18.0.2:80"), 0, "", "")
		expect(t, runBin(t, sock, "", "-S", "-n"), 0, saved, "")
	})
	t.Run("timeouts", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "--set", "1000", "0", "30"), 0, "", "")
		expect(t, runBin(t, sock, "", "-L", "--timeout"), 0, "Timeout (tcp tcpfin udp): 1000 120 30\n", "")
	})
	t.Run("zero and connections", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "-Z"), 0, "", "")
		expect(t, runBin(t, sock, "", "-Lnc"), 0,
			"IPVS connection entries\npro expire state       source             virtual            destination\n", "")
	})
	t.Run("usage errors", func(t *testing.T) {
		expect(t, runBin(t, sock, "", "-A", "-t", "198.18.0.1:http:x"), 2, "", "illegal virtual server address[:port] specified")
		expect(t, runBin(t, sock, "", "-n"), 2, "", "Try `xlvsadm -h' or 'xlvsadm --help' for more information.")
		expect(t, runBin(t, sock, "", "-A", "-t", "198.18.0.1:80", "-w", "2"), 2, "", "Illegal 'weight' option with the 'add-service' command")
		expect(t, runBin(t, sock, "", "-L", "--bogus"), 2, "", "--bogus: unknown option")
	})
	t.Run("help and version", func(t *testing.T) {
		r := runBin(t, sock, "", "-h")
		expect(t, r, 0, "*", "")
		// The version is the binary's (git describe, or the commit go build stamps).
		versionLine := regexp.MustCompile(`^xlvsadm \S+ \(compatible with ipvsadm v1\.31\)\n`)
		if !versionLine.MatchString(r.stdout) || !strings.Contains(r.stdout, "\nUsage:\n  xlvsadm -A|E virtual-service") {
			t.Errorf("usage starts %q", r.stdout[:min(len(r.stdout), 120)])
		}
		for _, v := range []string{"-V", "-v", "--version"} {
			r := runBin(t, sock, "", v)
			expect(t, r, 0, "*", "")
			if !versionLine.MatchString(r.stdout) || strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("%s: %q", v, r.stdout)
			}
		}
	})
}

func TestXlvsadmWithoutDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "xc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "none.sock")
	expect(t, runBin(t, sock, "", "-Ln"), 2, "", "is xlvsd running? (socket "+sock+")")
	// Help, version and usage errors need no daemon.
	expect(t, runBin(t, sock, "", "-V"), 0, "*", "")
	expect(t, runBin(t, sock, "", "-A"), 2, "", "You need to supply the 'service-address' option")
}

// TestRun covers run in-process (no build), including a cancelled context.
func TestRun(t *testing.T) {
	_, sock := startDaemon(t)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-A", "-u", "198.18.0.1:53", "-o"}, nil, &out, &errb, sock); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"-S", "-n"}, nil, &out, &errb, sock); code != 0 || out.String() != "-A -u 198.18.0.1:53 -s wlc -o\n" {
		t.Errorf("exit %d, output %q, stderr %q", code, out.String(), errb.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errb.Reset()
	if code := run(ctx, []string{"-Ln"}, nil, &out, &errb, sock); code != 2 || !strings.Contains(errb.String(), "context canceled") {
		t.Errorf("cancelled: exit %d, stderr %q", code, errb.String())
	}
}
