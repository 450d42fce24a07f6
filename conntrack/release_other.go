//go:build !amd64 || race

package conntrack

import "sync/atomic"

// storeRelease stores v at *p atomically: the release elsewhere, and what the race
// detector sees as one (release_amd64.go has the plain store).
func storeRelease(p *uint32, v uint32) {
	atomic.StoreUint32(p, v)
}
