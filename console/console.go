// Package console is pgtenant's admin console in PgBouncer's convention: a
// client connects to the special database "pgtenant" on the proxy's port
// with a token whose role is in admin.roles, and runs SHOW and control
// commands over the simple query protocol:
//
//	SHOW CLIENTS | SERVERS | POOLS | STATS | TENANTS | CONFIG | VERSION
//	PAUSE | RESUME | RECONNECT | KILL <client> | RELOAD
//
// Column names follow PgBouncer's where the concept is the same, so existing
// dashboards and habits carry over. SHOW TENANTS holds what cannot be a
// Prometheus label: per-tenant connections, statements, denials and budgets.
// The proxy answers the startup itself; this package serves the session
// after it (Serve).
package console

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Database is the name a client connects to for the console.
const Database = "pgtenant"

// Table is a command's answer: column names and rows of text (nil = NULL).
type Table struct {
	Columns []string
	Rows    [][]*string
}

// Source supplies the console's figures and carries out its commands; the
// proxy implements it.
type Source interface {
	Clients() Table
	Servers() Table
	Pools() Table
	Stats() Table
	Tenants() Table
	Config() Table
	Version() string
	// Pause stops new statements from being forwarded (they wait) until Resume.
	Pause() error
	Resume() error
	// Reconnect closes every backend connection once its client is idle.
	Reconnect() error
	// Kill ends the client session with the given id.
	Kill(id string) error
	// Reload re-reads the configuration file.
	Reload() error
}

// Serve answers console commands on conn until the client terminates. The
// proxy has already completed the startup (AuthenticationOk, ParameterStatus,
// BackendKeyData, ReadyForQuery).
func Serve(conn net.Conn, src Source, idle time.Duration) error {
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(64 << 10)
	for {
		if idle > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(idle))
		}
		msg, err := be.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			answer(be, src, m.String)
		case *pgproto3.Terminate:
			return nil
		case *pgproto3.Sync:
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute, *pgproto3.Close, *pgproto3.Flush:
			// Like PgBouncer's console: the simple protocol only.
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "08P01",
				Message: "pgtenant: the admin console accepts the simple query protocol only",
				Hint:    "use psql, or your driver's simple protocol mode"})
			if _, ok := m.(*pgproto3.Flush); ok {
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			}
		default:
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "08P01", Message: fmt.Sprintf("pgtenant: unexpected message %T", msg)})
			_ = be.Flush()
			return nil
		}
		if err := be.Flush(); err != nil {
			return err
		}
	}
}

// answer runs one simple Query (one or more commands separated by ';').
func answer(be *pgproto3.Backend, src Source, q string) {
	defer be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	cmds := splitCommands(q)
	if len(cmds) == 0 {
		be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	for _, c := range cmds {
		if err := run(be, src, c); err != nil {
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: errCode(err), Message: "pgtenant: " + err.Error(), Hint: hintFor(err)})
			return
		}
	}
}

func splitCommands(q string) []string {
	var out []string
	for _, c := range strings.Split(q, ";") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// usageError is a command the console does not know or got wrong.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func errCode(err error) string {
	var u usageError
	if errors.As(err, &u) {
		return "42601" // syntax_error
	}
	return "55000" // object_not_in_prerequisite_state
}

func hintFor(err error) string {
	var u usageError
	if errors.As(err, &u) {
		return "commands: SHOW CLIENTS|SERVERS|POOLS|STATS|TENANTS|CONFIG|VERSION, PAUSE, RESUME, RECONNECT, KILL <client>, RELOAD"
	}
	return ""
}

func run(be *pgproto3.Backend, src Source, cmd string) error {
	f := strings.Fields(cmd)
	verb := strings.ToUpper(f[0])
	if verb == "SHOW" {
		if len(f) != 2 {
			return usageError{"SHOW takes one word, e.g. SHOW CLIENTS"}
		}
		show, ok := shows(src)[strings.ToUpper(f[1])]
		if !ok {
			return usageError{fmt.Sprintf("unknown SHOW %s", f[1])}
		}
		sendTable(be, show())
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
		return nil
	}
	act, ok := actions(src)[verb]
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q", verb)}
	}
	if err := act(f[1:]); err != nil {
		return err
	}
	be.Send(&pgproto3.CommandComplete{CommandTag: []byte(verb)})
	return nil
}

// shows maps each SHOW word to the table it answers with.
func shows(src Source) map[string]func() Table {
	return map[string]func() Table{
		"CLIENTS": src.Clients, "SERVERS": src.Servers, "POOLS": src.Pools,
		"STATS": src.Stats, "TENANTS": src.Tenants, "CONFIG": src.Config,
		"VERSION": func() Table {
			v := src.Version()
			return Table{Columns: []string{"version"}, Rows: [][]*string{{&v}}}
		},
	}
}

// actions maps each control command to what it does with its arguments.
func actions(src Source) map[string]func(args []string) error {
	noArgs := func(name string, do func() error) func([]string) error {
		return func(args []string) error {
			if len(args) != 0 {
				return usageError{name + " takes no argument here (every database is paused or resumed together)"}
			}
			return do()
		}
	}
	return map[string]func([]string) error{
		"PAUSE": noArgs("PAUSE", src.Pause), "RESUME": noArgs("RESUME", src.Resume),
		"RECONNECT": noArgs("RECONNECT", src.Reconnect), "RELOAD": noArgs("RELOAD", src.Reload),
		"KILL": func(args []string) error {
			if len(args) != 1 {
				return usageError{"KILL takes a client id from SHOW CLIENTS"}
			}
			return src.Kill(args[0])
		},
	}
}

// sendTable sends t as a RowDescription (all columns text) and DataRows.
func sendTable(be *pgproto3.Backend, t Table) {
	fields := make([]pgproto3.FieldDescription, len(t.Columns))
	for i, c := range t.Columns {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	be.Send(&pgproto3.RowDescription{Fields: fields})
	for _, r := range t.Rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			if v != nil {
				vals[i] = []byte(*v)
			}
		}
		be.Send(&pgproto3.DataRow{Values: vals})
	}
}

// Helpers for Sources building rows.

// S returns a pointer to s, for a Table cell.
func S(s string) *string { return &s }

// I returns an integer cell.
func I(n int64) *string { return S(strconv.FormatInt(n, 10)) }

// T returns a timestamp cell in PgBouncer's format, or NULL for the zero time.
func T(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	return S(t.UTC().Format("2006-01-02 15:04:05 UTC"))
}
