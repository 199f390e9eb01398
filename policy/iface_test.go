package policy_test

import (
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/proxy"
)

// The proxy consumes sessions through its StatementChecker interface.
var (
	_ proxy.StatementChecker = (*policy.Session)(nil)
	_ proxy.CheckerFactory   = func(p auth.Principal) proxy.StatementChecker { return (*policy.Engine)(nil).NewSession(p) }
)
