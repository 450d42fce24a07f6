//go:build amd64 && !race

package conntrack

// storeRelease stores v at *p with a plain MOV (release_amd64.s): on x86 no earlier
// load or store of the thread passes it, and the call keeps the compiler from moving
// any across it. Readers elsewhere use atomic loads.
//
//go:noescape
func storeRelease(p *uint32, v uint32)
