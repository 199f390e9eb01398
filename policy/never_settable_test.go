package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// policy.allowed_settings cannot open up settings that change the session's
// identity, bypass RLS or change how strings are lexed.
func TestAllowedSettingsCannotOpenDangerousSettings(t *testing.T) {
	cfg := config.Default().Policy
	cfg.AllowedSettings = []string{"role", "session_replication_role", "row_security", "standard_conforming_strings", "app.current_subject", "work_mem"}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := e.NewSession(auth.Principal{Account: "42", Region: "eu-west"})
	for sql, allow := range map[string]bool{
		`SET role = postgres`:                        false,
		`SET session_replication_role = replica`:     false,
		`SET row_security = off`:                     false,
		`SET standard_conforming_strings = off`:      false,
		`SET app.current_subject = 'x'`:              false,
		`SET standard_conforming_strings = on`:       true, // allowlisted, and the value pgtenant pins
		`SET work_mem = '64MB'`:                      true, // an ordinary allowlisted setting
		`RESET standard_conforming_strings`:          false,
		`SET standard_conforming_strings TO DEFAULT`: false,
	} {
		if d := s.CheckQuery(sql); d.Allow != allow {
			t.Errorf("%s: allow=%v (%s), want %v", sql, d.Allow, d.Message, allow)
		}
	}
}
