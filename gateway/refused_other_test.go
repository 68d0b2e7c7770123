//go:build !unix

package gateway_test

import "testing"

// refusedAddr returns a loopback address nothing listens on. Elsewhere than on unix the port is
// only free, not held: a server another test starts may take it.
func refusedAddr(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
