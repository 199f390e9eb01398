package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Account ids that differ only in formatting ("042", "+42", " 42", "42.0",
// ...) through the live proxy: only the canonical text connects (a number
// spelled otherwise is refused with 28000, so a tenant has exactly one id in
// the audit and the limits); for those, RLS sees exactly the token's text
// and the policy and RLS agree on whose rows it may read.
func TestAccountTextFormsThroughProxy(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Policy: true, Regions: []string{"eu-west"}})
	ctx := ctxT(t)

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	marker := "forms-42-" + hex.EncodeToString(rnd[:])
	owner := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := owner.Exec(ctx, "INSERT INTO orders (account_id, note) VALUES (42, $1)", marker); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = owner.Exec(context.Background(), "DELETE FROM orders WHERE account_id = 42 AND note = $1", marker)
	})
	direct := connect(t, env.DirectDSN("eu-west"))

	for _, text := range []string{"42", "042", "0042", "+42", " 42", "42 ", "42.0", "4.2e1", "7", "07", "+7"} {
		t.Run(strconv.Quote(text), func(t *testing.T) {
			// How PostgreSQL (and so the RLS policy's ::bigint cast) reads the text.
			var rlsTenant int64
			castErr := direct.QueryRow(ctx, "SELECT $1::text::bigint", text).Scan(&rlsTenant)
			castOK := castErr == nil

			token := proxytest.SignedToken(t, map[string]any{"account_id": text, "data_region": "eu-west",
				"sub": "forms", "exp": time.Now().Add(time.Hour).Unix()})
			conn, err := pgx.Connect(ctx, env.DSNWithToken(token))
			if canonical := text == "42" || text == "7"; !canonical {
				// One tenant, one id: a number spelled otherwise would split
				// its audit chain and its connection limit across spellings.
				if pgCode(err) != "28000" {
					t.Fatalf("token for the non-canonical %q: %v, want 28000", text, err)
				}
				if err == nil {
					conn.Close(ctx)
				}
				return
			}
			if err != nil {
				t.Fatalf("token for %q refused: %v", text, err)
			}
			defer conn.Close(context.Background())

			var setting string
			if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_account_id')").Scan(&setting); err != nil {
				t.Fatal(err)
			}
			if setting != text {
				t.Fatalf("RLS sees account %q, the token says %q", setting, text)
			}

			// A literal pin on tenant 42: the policy's comparison.
			notes, err := queryNotes(ctx, conn, "SELECT account_id, note FROM orders WHERE account_id = 42")
			t.Logf("PostgreSQL reads %q as %d (cast error: %v); literal pin on 42: %v", text, rlsTenant, castErr != nil, pgCodeOr(err, "allowed"))
			switch {
			case err == nil:
				if !castOK || rlsTenant != 42 {
					t.Fatalf("the policy let %q pin tenant 42, but PostgreSQL reads it as %d (cast error %v)", text, rlsTenant, castErr)
				}
				if !notes[42][marker] {
					t.Errorf("%q pinned tenant 42 but RLS hid tenant 42's row", text)
				}
			case pgCode(err) == "42501":
				// Refused: fine whatever RLS would do (the policy may be stricter).
				if castOK && rlsTenant == 42 && (text == "42" || text == "042") {
					t.Errorf("%q is tenant 42 to PostgreSQL but the policy refused its pin: %v", text, err)
				}
			default:
				t.Fatalf("literal pin: %v", err)
			}

			// The tenant setting as the pin: RLS alone decides whose rows.
			notes, err = queryNotes(ctx, conn, "SELECT account_id, note FROM orders WHERE account_id = current_setting('app.current_account_id')::bigint")
			t.Logf("setting pin: %v, marker visible %v", pgCodeOr(err, "allowed"), notes[42][marker])
			switch {
			case err == nil:
				if !castOK {
					t.Fatalf("rows returned for %q, which PostgreSQL cannot read as bigint", text)
				}
				for acct := range notes {
					if acct != rlsTenant {
						t.Errorf("token %q read rows of tenant %d (RLS maps it to %d)", text, acct, rlsTenant)
					}
				}
				if (rlsTenant == 42) != notes[42][marker] {
					t.Errorf("token %q (tenant %d to RLS): marker visible %v", text, rlsTenant, notes[42][marker])
				}
			case pgCode(err) == "22P02" && !castOK:
				// The RLS cast fails closed for a text that is not an integer.
			default:
				t.Fatalf("setting pin: %v", err)
			}
		})
	}
}

func pgCodeOr(err error, ok string) string {
	if err == nil {
		return ok
	}
	return "SQLSTATE " + pgCode(err)
}

// queryNotes runs sql and returns the notes by account.
func queryNotes(ctx context.Context, conn *pgx.Conn, sql string) (map[int64]map[string]bool, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	out := map[int64]map[string]bool{}
	for rows.Next() {
		var acct int64
		var note *string
		if err := rows.Scan(&acct, &note); err != nil {
			rows.Close()
			return nil, err
		}
		if out[acct] == nil {
			out[acct] = map[string]bool{}
		}
		if note != nil {
			out[acct][*note] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, err
	}
	return out, nil
}
