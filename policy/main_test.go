package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
