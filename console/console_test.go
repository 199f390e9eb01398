package console

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// source is a Source with fixed figures that records the commands it is given.
type source struct{ calls []string }

func (s *source) Clients() Table {
	return Table{Columns: []string{"type", "user", "database", "state"}, Rows: [][]*string{{S("C"), S("app"), S("app"), S("active")}}}
}
func (s *source) Servers() Table { return Table{Columns: []string{"type"}} }
func (s *source) Pools() Table   { return Table{Columns: []string{"database"}} }
func (s *source) Stats() Table   { return Table{Columns: []string{"database"}} }
func (s *source) Tenants() Table {
	return Table{Columns: []string{"account_id", "connections"}, Rows: [][]*string{{S("42"), I(3)}, {S("7"), nil}}}
}
func (s *source) Config() Table   { return Table{Columns: []string{"key", "value"}} }
func (s *source) Version() string { return "pgtenant test" }
func (s *source) Pause() error    { s.calls = append(s.calls, "pause"); return nil }
func (s *source) Resume() error   { s.calls = append(s.calls, "resume"); return nil }
func (s *source) Reconnect() error {
	s.calls = append(s.calls, "reconnect")
	return nil
}
func (s *source) Kill(id string) error {
	if id != "c1" {
		return errors.New("no client " + id)
	}
	s.calls = append(s.calls, "kill "+id)
	return nil
}
func (s *source) Reload() error { s.calls = append(s.calls, "reload"); return nil }

// query sends q and collects the replies up to ReadyForQuery.
func query(t *testing.T, fe *pgproto3.Frontend, q string) []pgproto3.BackendMessage {
	t.Helper()
	fe.Send(&pgproto3.Query{String: q})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		switch c := m.(type) {
		case *pgproto3.RowDescription:
			cp := *c
			cp.Fields = append([]pgproto3.FieldDescription(nil), c.Fields...)
			for i := range cp.Fields {
				cp.Fields[i].Name = append([]byte(nil), c.Fields[i].Name...)
			}
			out = append(out, &cp)
		case *pgproto3.DataRow:
			vals := make([][]byte, len(c.Values))
			for i, v := range c.Values {
				if v != nil {
					vals[i] = append([]byte{}, v...)
				}
			}
			out = append(out, &pgproto3.DataRow{Values: vals})
		case *pgproto3.CommandComplete:
			out = append(out, &pgproto3.CommandComplete{CommandTag: append([]byte(nil), c.CommandTag...)})
		case *pgproto3.ErrorResponse:
			cp := *c
			out = append(out, &cp)
		case *pgproto3.ReadyForQuery:
			return out
		default:
			out = append(out, m)
		}
	}
}

func start(t *testing.T) (*pgproto3.Frontend, *source) {
	t.Helper()
	srvConn, cliConn := net.Pipe()
	src := &source{}
	done := make(chan error, 1)
	go func() { done <- Serve(srvConn, src, time.Minute) }()
	t.Cleanup(func() {
		cliConn.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after the client closed")
		}
	})
	return pgproto3.NewFrontend(cliConn, cliConn), src
}

func TestShowCommands(t *testing.T) {
	fe, _ := start(t)
	got := query(t, fe, "show tenants; SHOW VERSION;")
	if len(got) != 7 {
		t.Fatalf("replies = %d %#v", len(got), got)
	}
	rd := got[0].(*pgproto3.RowDescription)
	if string(rd.Fields[0].Name) != "account_id" || string(rd.Fields[1].Name) != "connections" {
		t.Fatalf("columns = %s, %s", rd.Fields[0].Name, rd.Fields[1].Name)
	}
	if r := got[2].(*pgproto3.DataRow); string(r.Values[0]) != "7" || r.Values[1] != nil {
		t.Fatalf("NULL cell not sent as NULL: %q", r.Values)
	}
	if tag := got[3].(*pgproto3.CommandComplete); string(tag.CommandTag) != "SHOW" {
		t.Fatalf("tag = %s", tag.CommandTag)
	}
	if r := got[5].(*pgproto3.DataRow); string(r.Values[0]) != "pgtenant test" {
		t.Fatalf("version = %q", r.Values[0])
	}
}

func TestControlCommandsAndErrors(t *testing.T) {
	fe, src := start(t)
	for _, q := range []string{"PAUSE", "resume", "RECONNECT", "KILL c1", "RELOAD"} {
		got := query(t, fe, q)
		if len(got) != 1 || !strings.EqualFold(string(got[0].(*pgproto3.CommandComplete).CommandTag), strings.Fields(q)[0]) {
			t.Fatalf("%s: %#v", q, got)
		}
	}
	if strings.Join(src.calls, ",") != "pause,resume,reconnect,kill c1,reload" {
		t.Fatalf("calls = %v", src.calls)
	}
	for q, code := range map[string]string{"KILL nobody": "55000", "SELECT 1": "42601", "SHOW FOO": "42601", "KILL": "42601"} {
		got := query(t, fe, q)
		e, ok := got[len(got)-1].(*pgproto3.ErrorResponse)
		if !ok || e.Code != code || !strings.HasPrefix(e.Message, "pgtenant: ") {
			t.Fatalf("%s: %#v, want error %s", q, got, code)
		}
	}
	// The session stays usable after errors, and an empty query is answered.
	if got := query(t, fe, " ; "); len(got) != 1 {
		t.Fatalf("empty query: %#v", got)
	}
}

func TestExtendedProtocolRefused(t *testing.T) {
	fe, _ := start(t)
	fe.Send(&pgproto3.Parse{Query: "SHOW CLIENTS"})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Code != "08P01" {
		t.Fatalf("Parse: %#v", m)
	}
	if m, _ := fe.Receive(); m == nil {
		t.Fatal("no ReadyForQuery after Sync")
	} else if _, ok := m.(*pgproto3.ReadyForQuery); !ok {
		t.Fatalf("after Sync: %#v", m)
	}
}
