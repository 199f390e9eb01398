package prove

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// seedOrder sorts tables so that every table comes after the tenant tables
// its foreign keys reference (self-references aside). Tables in a cycle come
// last, in discovery order; their seeding may fail and is then reported.
func seedOrder(tables []*table) []*table {
	in := map[uint32]bool{}
	for _, t := range tables {
		in[t.oid] = true
	}
	done := map[uint32]bool{}
	var out []*table
	for len(out) < len(tables) {
		progressed := false
		for _, t := range tables {
			if done[t.oid] {
				continue
			}
			ready := true
			for _, fk := range t.fks {
				if fk.refOID != t.oid && in[fk.refOID] && !done[fk.refOID] {
					ready = false
				}
			}
			if ready {
				done[t.oid] = true
				out = append(out, t)
				progressed = true
			}
		}
		if !progressed {
			for _, t := range tables {
				if !done[t.oid] {
					done[t.oid] = true
					out = append(out, t)
				}
			}
		}
	}
	return out
}

// insertFor builds an INSERT of one row of tenant id into t: the tenant
// column, every NOT NULL column without a default (sample values), and
// foreign key columns taken from a row of the referenced table. n varies
// the sample values.
func (p *prover) insertFor(ctx context.Context, r *region, t *table, id string, n int) (string, error) {
	cols := []string{t.column}
	vals := map[string]string{t.column: typed(id, t.columnType)}
	for _, fk := range t.fks {
		needed := false
		for _, c := range fk.columns {
			if cd, ok := t.col(c); ok && c != t.column && cd.notNull && !cd.defaulted {
				needed = true
			}
		}
		if !needed {
			continue
		}
		parent, err := p.parentRow(ctx, r, fk)
		if err != nil {
			return "", err
		}
		for i, c := range fk.columns {
			v := parent[fk.refColumns[i]]
			if v == nil {
				return "", fmt.Errorf("foreign key to %s: referenced column %s is NULL", fk.refName, fk.refColumns[i])
			}
			cd, _ := t.col(c)
			if c == t.column {
				if *v != id {
					return "", fmt.Errorf("foreign key to %s: the referenced row belongs to tenant %s", fk.refName, *v)
				}
				continue
			}
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
			vals[c] = typed(*v, cd.typ)
		}
	}
	for _, c := range t.columns {
		if c.generated || !c.notNull || c.defaulted || slices.Contains(cols, c.name) {
			continue
		}
		v, err := sampleValue(c, n)
		if err != nil {
			return "", err
		}
		cols = append(cols, c.name)
		vals[c.name] = v
	}
	quoted := make([]string, len(cols))
	values := make([]string, len(cols))
	for i, c := range cols {
		quoted[i], values[i] = ident(c), vals[c]
	}
	return "INSERT INTO " + t.name + " (" + strings.Join(quoted, ", ") + ") VALUES (" + strings.Join(values, ", ") + ")", nil
}

// parentRow returns a row of fk's referenced table: the one seeded as A when
// it is a tenant table, else any row (a global table), read directly.
func (p *prover) parentRow(ctx context.Context, r *region, fk foreignKey) (map[string]*string, error) {
	if byOID(r.tables, fk.refOID) != nil {
		rows := r.seeded[fk.refOID]
		if len(rows) == 0 {
			reason := r.seedErr[fk.refOID]
			if reason == "" {
				reason = "not seeded yet (a foreign key cycle)"
			}
			return nil, fmt.Errorf("foreign key to %s: the referenced table has no row of tenant A: %s", fk.refName, reason)
		}
		return rows[0], nil
	}
	quoted := make([]string, len(fk.refColumns))
	for i, c := range fk.refColumns {
		quoted[i] = ident(c) + "::text"
	}
	cctx, cancel := p.step(ctx)
	defer cancel()
	_, rows, err := queryRows(cctx, r.direct, "SELECT "+strings.Join(quoted, ", ")+" FROM "+fk.refName+" LIMIT 1")
	if err != nil {
		return nil, fmt.Errorf("foreign key to %s: read a referenced row: %w", fk.refName, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("foreign key to %s: the referenced table is empty", fk.refName)
	}
	out := map[string]*string{}
	for i, c := range fk.refColumns {
		out[c] = rows[0][i]
	}
	return out, nil
}

// seed inserts one row of tenant A into every tenant table through pgtenant
// (parents first) and snapshots A's rows. A table that cannot be seeded is
// reported as a warning; its checks still run.
func (p *prover) seed(ctx context.Context, r *region, conn *pgx.Conn) {
	for _, t := range seedOrder(r.usable()) {
		sql, err := p.insertFor(ctx, r, t, p.a, 0)
		if err == nil {
			var names []string
			var rows [][]*string
			cctx, cancel := p.step(ctx)
			names, rows, err = queryRows(cctx, conn, sql+" RETURNING *")
			cancel()
			for _, row := range rows {
				m := map[string]*string{}
				for i, name := range names {
					m[name] = row[i]
				}
				r.seeded[t.oid] = append(r.seeded[t.oid], m)
			}
		}
		if err != nil {
			r.seedErr[t.oid] = describeErr(err)
			p.result(r, t, LayerSetup, "seed_as_a", Warn, "cannot seed a row of tenant A, so the checks below run against no rows of A: "+describeErr(err))
			continue
		}
		p.result(r, t, LayerSetup, "seed_as_a", Pass, fmt.Sprintf("inserted %d row(s) of tenant A through pgtenant", len(r.seeded[t.oid])))
	}
	for _, t := range r.usable() {
		cctx, cancel := p.step(ctx)
		s, err := takeSnapshot(cctx, conn, t, p.a)
		cancel()
		if err != nil {
			p.result(r, t, LayerSetup, "read_as_a", Fail, "tenant A cannot read its own rows through pgtenant: "+describeErr(err))
			continue
		}
		r.before[t.oid] = s
	}
}
