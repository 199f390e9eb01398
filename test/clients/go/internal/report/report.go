// Package report is the Go programs' side of the client matrix protocol
// (../../../README.md): the PGT_* environment, operations preceded by the
// marker statement, and the JSON report.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
)

// Env is the connection and mode the test passes in.
type Env struct {
	Host, Port, DB, User, Password, URL, Mode string
	Tenant, Other                             int64
}

// FromEnv reads PGT_*.
func FromEnv() Env {
	atoi := func(s string, d int64) int64 {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		return d
	}
	return Env{Host: os.Getenv("PGT_HOST"), Port: os.Getenv("PGT_PORT"), DB: os.Getenv("PGT_DB"), User: os.Getenv("PGT_USER"),
		Password: os.Getenv("PGT_PASSWORD"), URL: os.Getenv("PGT_URL"), Mode: os.Getenv("PGT_MODE"),
		Tenant: atoi(os.Getenv("PGT_TENANT"), 42), Other: atoi(os.Getenv("PGT_OTHER"), 7)}
}

// Op is one operation's outcome.
type Op struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	OK       bool   `json:"ok"`
	SQLState string `json:"sqlstate"`
	Error    string `json:"error"`
	Rows     any    `json:"rows"`
	SQL      string `json:"sql,omitempty"` // the statement, when the op sends one the program wrote
}

// Report collects operations.
type Report struct {
	Client  string `json:"client"`
	Version string `json:"version"`
	Ops     []Op   `json:"ops"`
	// Mark runs the marker statement through the program's client.
	Mark func(sql string) error `json:"-"`
}

// Do runs fn as operation name of kind; fn returns the rows it read or changed.
func (r *Report) Do(name, kind string, fn func() (any, error)) Op {
	if r.Mark != nil {
		if err := r.Mark(fmt.Sprintf("SELECT 'pgtenant-op:%s'", name)); err != nil {
			fmt.Fprintf(os.Stderr, "marker %s: %v\n", name, err)
		}
	}
	op := Op{Name: name, Kind: kind, OK: true}
	rows, err := fn()
	if err != nil {
		op.OK, op.SQLState, op.Error = false, SQLState(err), err.Error()
		fmt.Fprintf(os.Stderr, "op %s: %v\n", name, err)
	} else {
		op.Rows = rows
	}
	r.Ops = append(r.Ops, op)
	return op
}

// Dump prints the report as the program's last line.
func (r *Report) Dump() {
	b, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(b))
}

// SQLState finds the server's SQLSTATE in err (pgx or lib/pq).
func SQLState(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	var pqe *pq.Error
	if errors.As(err, &pqe) {
		return string(pqe.Code)
	}
	// bun's pgdriver and others: "ERROR: ... (SQLSTATE=42501)"
	if i := strings.Index(err.Error(), "SQLSTATE="); i >= 0 && len(err.Error()) >= i+14 {
		return err.Error()[i+9 : i+14]
	}
	return ""
}

// ModVersion is the version of module path in the program's build.
func ModVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}
