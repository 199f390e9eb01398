package regiondb

import (
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

func TestConnConfigQuotesAndDefaults(t *testing.T) {
	r := config.Region{Host: "db.internal", User: "svc", Password: `p'w\ x`, SSLMode: "", ConnectTimeout: 3 * time.Second}
	l := Login{User: "o'brien", Password: r.Password, Database: "my db", Application: "pgtenant test"}
	cc, err := ConnConfig("eu-west", r, l)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Host != "db.internal" || cc.Port != 5432 || cc.User != "o'brien" || cc.Database != "my db" || cc.Password != `p'w\ x` {
		t.Errorf("parsed %s:%d user=%q db=%q pw=%q", cc.Host, cc.Port, cc.User, cc.Database, cc.Password)
	}
	if cc.TLSConfig != nil {
		t.Error("empty sslmode must mean disable")
	}
	if cc.ConnectTimeout != 3*time.Second || cc.RuntimeParams["application_name"] != "pgtenant test" {
		t.Errorf("timeout %s, application_name %q", cc.ConnectTimeout, cc.RuntimeParams["application_name"])
	}
	if strings.Contains(cc.ConnString(), "p'w") || strings.Contains(cc.ConnString(), `p\'w`) {
		t.Error("the password is part of the connection string")
	}
}

func TestLogins(t *testing.T) {
	r := config.Region{User: "app", Password: "pw"}
	if got := Service(r, "x"); got.Database != "app" || got.User != "app" {
		t.Errorf("service login without a pinned database: %+v (want the role's own database, as libpq)", got)
	}
	if got := Admin(r, "x"); got.User != "app" {
		t.Errorf("admin without admin_user must fall back to the service role: %+v", got)
	}
	r.AdminUser, r.AdminPassword, r.Database = "postgres", "apw", "shop"
	if got := Admin(r, "x"); got.User != "postgres" || got.Password != "apw" || got.Database != "shop" {
		t.Errorf("admin login: %+v", got)
	}
}
