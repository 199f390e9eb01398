//go:build !race

package txpool

// raceEnabled: see race_on_test.go.
const raceEnabled = false
