package auth_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// accessVerifier is an HS256 verifier with the default access rules, or a's.
func accessVerifier(t *testing.T, a *config.Access) *auth.Verifier {
	t.Helper()
	var opts []auth.Option
	if a != nil {
		opts = append(opts, auth.WithAccess(*a))
	}
	v, err := auth.NewVerifier(baseAuth("HS256"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var agent = map[string]any{"sub": "agent@support.example"}

// Every role, actor and support claim that is accepted, with the principal
// it yields.
func TestAccessClaimsAccepted(t *testing.T) {
	now := time.Now()
	v := accessVerifier(t, nil)
	tests := []struct {
		name   string
		claims map[string]any
		want   auth.Principal // only Roles, Actor, Purpose, Ticket, ReadOnly compared
	}{
		{"no role keeps full access", nil, auth.Principal{}},
		{"null role", map[string]any{"role": nil}, auth.Principal{}},
		{"empty role string", map[string]any{"role": ""}, auth.Principal{}},
		{"empty role array", map[string]any{"role": []any{}}, auth.Principal{Roles: []string{}}},
		{"owner", map[string]any{"role": "owner"}, auth.Principal{Roles: []string{"owner"}}},
		{"viewer is read-only", map[string]any{"role": "viewer"}, auth.Principal{Roles: []string{"viewer"}, ReadOnly: true}},
		{"auditor is read-only", map[string]any{"role": "auditor"}, auth.Principal{Roles: []string{"auditor"}, ReadOnly: true}},
		{"all roles read-only", map[string]any{"role": []any{"viewer", "auditor"}}, auth.Principal{Roles: []string{"viewer", "auditor"}, ReadOnly: true}},
		{"one writing role among several", map[string]any{"role": []any{"viewer", "admin"}}, auth.Principal{Roles: []string{"viewer", "admin"}}},
		{"role names are case-sensitive", map[string]any{"role": "Viewer"}, auth.Principal{Roles: []string{"Viewer"}}},
		{"support with act object", map[string]any{"act": agent, "purpose": "SUP-7 check totals"},
			auth.Principal{Actor: "agent@support.example", Purpose: "SUP-7 check totals", Ticket: "SUP-7 check totals", ReadOnly: true}},
		{"support with ticket claim", map[string]any{"act": agent, "purpose": "check totals", "ticket": "SUP-7"},
			auth.Principal{Actor: "agent@support.example", Purpose: "check totals", Ticket: "SUP-7", ReadOnly: true}},
		{"support with nested delegation", map[string]any{"act": map[string]any{"sub": "a", "act": map[string]any{"sub": "b"}}, "purpose": "p"},
			auth.Principal{Actor: "a", Purpose: "p", Ticket: "p", ReadOnly: true}},
		{"support with actor as string", map[string]any{"act": "agent-9", "purpose": "p"},
			auth.Principal{Actor: "agent-9", Purpose: "p", Ticket: "p", ReadOnly: true}},
		{"support with an owner role stays read-only", map[string]any{"act": agent, "purpose": "p", "role": "owner"},
			auth.Principal{Roles: []string{"owner"}, Actor: "agent@support.example", Purpose: "p", Ticket: "p", ReadOnly: true}},
		{"support at exactly max_ttl", map[string]any{"act": agent, "purpose": "p", "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()},
			auth.Principal{Actor: "agent@support.example", Purpose: "p", Ticket: "p", ReadOnly: true}},
		{"null act is no actor", map[string]any{"act": nil, "purpose": "p"}, auth.Principal{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Authenticate(hs(t, with(tt.claims)))
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			got := auth.Principal{Roles: p.Roles, Actor: p.Actor, Purpose: p.Purpose, Ticket: p.Ticket, ReadOnly: p.ReadOnly}
			if len(got.Roles) == 0 && len(tt.want.Roles) == 0 {
				got.Roles, tt.want.Roles = nil, nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("principal %+v, want %+v", got, tt.want)
			}
			if p.Support() != (tt.want.Actor != "") {
				t.Errorf("Support() = %v", p.Support())
			}
		})
	}
}

// Every rejection of the access claims, with its reason and a message that
// names the problem without echoing the token.
func TestAccessClaimsRejected(t *testing.T) {
	now := time.Now()
	v := accessVerifier(t, nil)
	tests := []struct {
		name   string
		claims map[string]any
		reason string
		inMsg  string
	}{
		{"role a number", map[string]any{"role": 3}, auth.ReasonBadClaim, "role"},
		{"role an object", map[string]any{"role": map[string]any{"x": 1}}, auth.ReasonBadClaim, "role"},
		{"role array with a number", map[string]any{"role": []any{"viewer", 1}}, auth.ReasonBadClaim, "role"},
		{"role array with an empty role", map[string]any{"role": []any{""}}, auth.ReasonBadClaim, "role"},
		{"role with a control character", map[string]any{"role": "view\ner"}, auth.ReasonBadClaim, "role"},
		{"role too long", map[string]any{"role": strings.Repeat("r", 129)}, auth.ReasonBadClaim, "role"},
		{"too many roles", map[string]any{"role": manyRoles(65)}, auth.ReasonBadClaim, "role"},
		{"act a number", map[string]any{"act": 5, "purpose": "p"}, auth.ReasonBadClaim, "act"},
		{"act without sub", map[string]any{"act": map[string]any{"iss": "x"}, "purpose": "p"}, auth.ReasonBadClaim, "act"},
		{"act with empty sub", map[string]any{"act": map[string]any{"sub": ""}, "purpose": "p"}, auth.ReasonBadClaim, "act"},
		{"act sub a number", map[string]any{"act": map[string]any{"sub": 1}, "purpose": "p"}, auth.ReasonBadClaim, "act"},
		{"act empty string", map[string]any{"act": "", "purpose": "p"}, auth.ReasonBadClaim, "act"},
		{"act with a control character", map[string]any{"act": "a\x00b", "purpose": "p"}, auth.ReasonBadClaim, "act"},
		{"support without purpose", map[string]any{"act": agent}, auth.ReasonSupportPurpose, "purpose"},
		{"support with empty purpose", map[string]any{"act": agent, "purpose": ""}, auth.ReasonSupportPurpose, "purpose"},
		{"support with purpose a number", map[string]any{"act": agent, "purpose": 12}, auth.ReasonBadClaim, "purpose"},
		{"support with purpose too long", map[string]any{"act": agent, "purpose": strings.Repeat("p", 513)}, auth.ReasonBadClaim, "purpose"},
		{"support with ticket a number", map[string]any{"act": agent, "purpose": "p", "ticket": 4521}, auth.ReasonBadClaim, "ticket"},
		{"support without iat", map[string]any{"act": agent, "purpose": "p", "iat": nil}, auth.ReasonSupportIssuedAt, "iat"},
		{"support over max_ttl", map[string]any{"act": agent, "purpose": "p", "iat": now.Unix(), "exp": now.Add(24*time.Hour + time.Second).Unix()},
			auth.ReasonSupportTTL, "24h0m0s"},
		{"support with an old iat", map[string]any{"act": agent, "purpose": "p", "iat": now.Add(-30 * time.Hour).Unix()}, auth.ReasonSupportTTL, "max_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := hs(t, with(tt.claims))
			p, err := v.Authenticate(tok)
			assertRejected(t, tok, err, tt.reason)
			if !strings.Contains(err.Error(), tt.inMsg) {
				t.Errorf("message %q does not name %q", err, tt.inMsg)
			}
			if !reflect.DeepEqual(p, auth.Principal{}) {
				t.Errorf("rejection returned a principal %+v", p)
			}
		})
	}
}

func manyRoles(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = "r"
	}
	return out
}

// The access section and the claim names are configurable.
func TestAccessConfigured(t *testing.T) {
	a := config.Access{ReadOnlyRoles: []string{"reader"},
		Support: config.Support{PurposeClaim: "https://example.com/purpose", TicketClaim: "https://example.com/ticket", MaxTTL: time.Hour, ReadOnly: false}}
	cfg := baseAuth("HS256")
	cfg.RoleClaim, cfg.ActorClaim = "https://example.com/roles", "https://example.com/act"
	v, err := auth.NewVerifier(cfg, auth.WithAccess(a))
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Authenticate(hs(t, with(map[string]any{"https://example.com/roles": []any{"reader"}})))
	if err != nil || !p.ReadOnly || p.Role() != "reader" {
		t.Errorf("namespaced read-only role: %+v, %v", p, err)
	}
	p, err = v.Authenticate(hs(t, with(map[string]any{"role": "reader"})))
	if err != nil || p.ReadOnly || len(p.Roles) != 0 {
		t.Errorf("the default role claim was read although another is configured: %+v, %v", p, err)
	}
	p, err = v.Authenticate(hs(t, with(map[string]any{"https://example.com/act": map[string]any{"sub": "ag"},
		"https://example.com/purpose": "why", "https://example.com/ticket": "T-1"})))
	if err != nil || p.ReadOnly || p.Actor != "ag" || p.Ticket != "T-1" {
		t.Errorf("support with read_only false: %+v, %v", p, err)
	}
	now := time.Now()
	tok := hs(t, with(map[string]any{"https://example.com/act": "ag", "https://example.com/purpose": "why", "exp": now.Add(2 * time.Hour).Unix()}))
	_, err = v.Authenticate(tok)
	assertRejected(t, tok, err, auth.ReasonSupportTTL)

	// a claim read for two meanings is a configuration error
	for _, bad := range []func(c *config.Auth, a *config.Access){
		func(c *config.Auth, _ *config.Access) { c.RoleClaim = c.TenantClaim },
		func(c *config.Auth, _ *config.Access) { c.ActorClaim = "role" },
		func(c *config.Auth, _ *config.Access) { c.RoleClaim = "exp" },
		func(_ *config.Auth, a *config.Access) { a.Support.PurposeClaim = "act" },
		func(_ *config.Auth, a *config.Access) { a.Support.TicketClaim = "data_region" },
	} {
		c, acc := baseAuth("HS256"), a
		bad(&c, &acc)
		if _, err := auth.NewVerifier(c, auth.WithAccess(acc)); err == nil {
			t.Errorf("claims %+v / %+v accepted", c, acc.Support)
		}
	}
}
