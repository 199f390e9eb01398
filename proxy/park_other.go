//go:build !linux

package proxy

// newParker: idle sessions do not park where there is no epoll; they keep
// both goroutines.
func newParker() parker { return nil }
