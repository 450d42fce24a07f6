//go:build !amd64

package dataplane

// prefetchLine does nothing on this platform.
func prefetchLine(addr uintptr) {}
