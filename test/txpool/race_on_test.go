//go:build race

package txpool

// raceEnabled: the race detector slows the in-process proxy several times
// over, so TestScale runs fewer iterations (still every connection at once).
const raceEnabled = true
