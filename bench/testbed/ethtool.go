package testbed

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqData is struct ifreq with its union used as a pointer (ifr_data), padded to the
// kernel's 40 bytes. The pointer field keeps the pointee alive and visible to the GC.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolValue is struct ethtool_value, the argument of the one-flag ethtool commands.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ethtool runs one SIOCETHTOOL request on ifname in the calling thread's namespace.
func ethtool(ifname string, v *ethtoolValue) error {
	if len(ifname) == 0 || len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("check interface name %q: want 1 to %d bytes", ifname, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	ifr := &ifreqData{data: unsafe.Pointer(v)}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.SIOCETHTOOL), uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(v)
	if errno != 0 {
		return fmt.Errorf("ethtool command %#x on %s: %w", v.cmd, ifname, errno)
	}
	return nil
}

// setEthtoolFlag sets a one-flag feature with cmdSet and reads it back with cmdGet.
func setEthtoolFlag(ns *NS, ifname, what string, cmdSet, cmdGet uint32, on bool) error {
	want := uint32(0)
	if on {
		want = 1
	}
	err := ns.Do(func() error {
		if err := ethtool(ifname, &ethtoolValue{cmd: cmdSet, data: want}); err != nil {
			return err
		}
		got := ethtoolValue{cmd: cmdGet}
		if err := ethtool(ifname, &got); err != nil {
			return err
		}
		if (got.data != 0) != on {
			return fmt.Errorf("read back %s on %s: is %d, want %d (the driver fixes it?)", what, ifname, got.data, want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set %s %v on %s in %s: %w", what, on, ifname, ns.Name(), err)
	}
	return nil
}

func getEthtoolFlag(ns *NS, ifname, what string, cmdGet uint32) (bool, error) {
	v := ethtoolValue{cmd: cmdGet}
	err := ns.Do(func() error { return ethtool(ifname, &v) })
	if err != nil {
		return false, fmt.Errorf("get %s of %s in %s: %w", what, ifname, ns.Name(), err)
	}
	return v.data != 0, nil
}

// SetTxChecksum turns TX checksum offload of ifname in ns on or off (`ethtool -K ifname tx
// on|off`), through the ethtool ioctl so the ethtool binary is not needed, and checks the
// result. Turning it off also drops the segmentation offloads that depend on it: the
// stack then hands the device complete checksums.
func SetTxChecksum(ns *NS, ifname string, on bool) error {
	return setEthtoolFlag(ns, ifname, "tx checksum offload", unix.ETHTOOL_STXCSUM, unix.ETHTOOL_GTXCSUM, on)
}

// TxChecksum reports whether TX checksum offload of ifname in ns is on.
func TxChecksum(ns *NS, ifname string) (bool, error) {
	return getEthtoolFlag(ns, ifname, "tx checksum offload", unix.ETHTOOL_GTXCSUM)
}

// SetTSO turns TCP segmentation offload on or off on ifname inside ns.
func SetTSO(ns *NS, ifname string, on bool) error {
	return setEthtoolFlag(ns, ifname, "tso", unix.ETHTOOL_STSO, unix.ETHTOOL_GTSO, on)
}

// TSO reports whether TCP segmentation offload is on on ifname inside ns.
func TSO(ns *NS, ifname string) (bool, error) {
	return getEthtoolFlag(ns, ifname, "tso", unix.ETHTOOL_GTSO)
}

// SetGRO turns generic receive offload of ifname in ns on or off (`ethtool -K ifname gro
// on|off`); benchmarks want it on with threaded NAPI.
func SetGRO(ns *NS, ifname string, on bool) error {
	return setEthtoolFlag(ns, ifname, "gro", unix.ETHTOOL_SGRO, unix.ETHTOOL_GGRO, on)
}

// GRO reports whether generic receive offload of ifname in ns is on.
func GRO(ns *NS, ifname string) (bool, error) {
	return getEthtoolFlag(ns, ifname, "gro", unix.ETHTOOL_GGRO)
}
