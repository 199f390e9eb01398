// Package pgtest starts real, throw-away PostgreSQL clusters for tests, on
// top of package cluster.
//
// Start gives a test its own cluster, closed by t.Cleanup. Shared gives all
// tests of a test binary one cluster per name; TestMain must then call Main,
// which closes the shared clusters after the tests:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		c := pgtest.Shared(t, "eu-west")
//		conn := pgtest.Conn(t, c.ServiceDSN())
//		...
//	}
//
// Tests are skipped (not failed) only when no PostgreSQL server binaries are
// installed; every other problem fails the test.
package pgtest
