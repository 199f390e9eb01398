package prove

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/regiondb"
)

// clientUser is the user name prove's tenant connections give pgtenant
// (recorded in the audit; the backend login is the service role).
const clientUser = "pgtenant-prove"

// connect opens a connection through pgtenant as account in region r, with
// extra startup parameters.
func (p *prover) connect(ctx context.Context, r *region, account string, params map[string]string) (*pgx.Conn, error) {
	token, err := p.o.Token(account, r.name)
	if err != nil {
		return nil, fmt.Errorf("token for tenant %s in %s: %w", account, r.name, err)
	}
	host, port, err := net.SplitHostPort(p.o.Addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", p.o.Addr, err)
	}
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=%s",
		quoteConn(host), quoteConn(port), clientUser, quoteConn(regiondb.Database(r.cfg)), quoteConn(p.o.SSLMode)))
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", err)
	}
	cc.Password = token
	cc.RuntimeParams["application_name"] = clientUser
	for k, v := range params {
		cc.RuntimeParams[k] = v
	}
	// Unnamed statements only, so each attack controls its own protocol use.
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	cctx, cancel := p.step(ctx)
	defer cancel()
	return pgx.ConnectConfig(cctx, cc)
}

// quoteConn quotes a libpq connection-string value.
func quoteConn(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// sqlState returns the SQLSTATE of a PostgreSQL (or pgtenant) error, or "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// describeErr renders an error for a report: SQLSTATE and message, shortened.
func describeErr(err error) string {
	var pe *pgconn.PgError
	msg := err.Error()
	if errors.As(err, &pe) {
		msg = pe.Code + " " + pe.Message
	}
	if r := []rune(msg); len(r) > 160 {
		msg = string(r[:157]) + "..."
	}
	return msg
}

// queryRows runs sql and returns its rows as text (nil for NULL), with the
// column names. With no args it uses the simple protocol.
func queryRows(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, [][]*string, error) {
	if len(args) == 0 {
		args = []any{pgx.QueryExecModeSimpleProtocol}
	}
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var names []string
	for _, fd := range rows.FieldDescriptions() {
		names = append(names, fd.Name)
	}
	var out [][]*string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]*string, len(raw))
		for i, v := range raw {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	return names, out, rows.Err()
}

// snapshot is a table's rows of one tenant: how many and a digest of their text.
type snapshot struct {
	count  int
	digest string
}

// takeSnapshot reads every row of tenant id in t through conn and digests
// them (order-independent).
func takeSnapshot(ctx context.Context, conn *pgx.Conn, t *table, id string) (snapshot, error) {
	_, rows, err := queryRows(ctx, conn, "SELECT * FROM "+t.name+" WHERE "+ident(t.column)+" = "+typed(id, t.columnType))
	if err != nil {
		return snapshot{}, err
	}
	lines := make([]string, 0, len(rows))
	for _, row := range rows {
		var b strings.Builder
		for _, v := range row {
			if v == nil {
				b.WriteString("\x00N")
			} else {
				b.WriteString(fmt.Sprintf("%d:%s", len(*v), *v))
			}
			b.WriteByte(0x1f)
		}
		lines = append(lines, b.String())
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{0x1e})
	}
	return snapshot{count: len(rows), digest: hex.EncodeToString(h.Sum(nil))[:16]}, nil
}
