//go:build race

package conntrack

// raceEnabled shortens the longest tests under the race detector.
const raceEnabled = true
