//go:build !race

package e2e

// idleClientBound is the most heap and goroutine stack an idle client may
// cost (issue 13: 8 KiB, measured over 1,000 idle clients).
const idleClientBound = 8 << 10
