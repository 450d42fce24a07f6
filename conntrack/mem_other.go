//go:build !linux

package conntrack

// mapArena: arenas come from the Go heap on this platform.
func mapArena(size int, huge bool) (arena, bool) { return arena{}, false }

// adviseHuge: no huge pages to ask for on this platform.
func (a *arena) adviseHuge() {}

// populateRange: nothing to ask the kernel on this platform.
func (a *arena) populateRange(off, n int) {}

// populate: nothing to ask the kernel on this platform.
func (a *arena) populate() bool { return false }

// release drops the arena; the garbage collector frees it.
func (a *arena) release() error {
	*a = arena{}
	return nil
}
