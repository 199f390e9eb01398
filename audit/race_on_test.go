//go:build race

package audit

// raceEnabled: under the race detector sync.Pool drops a quarter of what it
// is given, so encoding buffers are allocated again at random and
// allocation counts are not the product's.
const raceEnabled = true
