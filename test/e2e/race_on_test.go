//go:build race

package e2e

// idleClientBound is the most heap and goroutine stack an idle client may
// cost. The race detector enlarges every goroutine's frames, so an idle
// client goroutine keeps a 4 KiB stack there; the product's bound (8 KiB)
// holds without it, and `make test` measures it in a run of its own.
const idleClientBound = 10 << 10
