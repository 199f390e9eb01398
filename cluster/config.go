package cluster

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Defaults applied by Start to a zero Config field.
const (
	DefaultServiceUser     = "app"
	DefaultServicePassword = "app-password"
	DefaultDatabase        = "app"
	DefaultName            = "pg"
	// Superuser is the bootstrap superuser every cluster is created with.
	Superuser = "postgres"
)

// Config describes a cluster to start. The zero value is usable.
type Config struct {
	Name            string            // label, e.g. "eu-west"; used in the directory name; default "pg"
	Dir             string            // parent directory of the cluster's directory; "" = $PGTENANT_PG_TMPDIR, /dev/shm or os.TempDir()
	Port            int               // TCP port on 127.0.0.1; 0 = pick a free port
	ServiceUser     string            // default "app": LOGIN, NOSUPERUSER, NOBYPASSRLS, NOCREATEDB, NOCREATEROLE
	ServicePassword string            // default "app-password" (stored as a SCRAM-SHA-256 verifier)
	Database        string            // default "app": created, owned by the superuser
	Settings        map[string]string // extra postgresql.conf settings (override the defaults)
	HBA             []string          // extra pg_hba.conf lines placed BEFORE the defaults
}

// reservedSettings are chosen by the cluster itself; overriding them would
// make Addr, DSN or the socket directory lie.
var reservedSettings = map[string]bool{
	"port":                    true,
	"listen_addresses":        true,
	"unix_socket_directories": true,
	"data_directory":          true,
	"hba_file":                true,
	"ident_file":              true,
	"config_file":             true,
	"external_pid_file":       true,
	// Directives, not settings: they would pull in other files.
	"include":           true,
	"include_if_exists": true,
	"include_dir":       true,
}

var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$`)
	settingKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,99}$`)
)

// withDefaults returns cfg with zero fields defaulted, or an error naming
// the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.ServiceUser == "" {
		cfg.ServiceUser = DefaultServiceUser
	}
	if cfg.ServicePassword == "" {
		cfg.ServicePassword = DefaultServicePassword
	}
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	var errs []error
	if !nameRE.MatchString(cfg.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-40 characters of [A-Za-z0-9._-], starting with a letter or digit", cfg.Name))
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: out of range 0-65535", cfg.Port))
	}
	if err := checkSQLName("service user", cfg.ServiceUser); err != nil {
		errs = append(errs, err)
	}
	if cfg.ServiceUser == Superuser {
		errs = append(errs, fmt.Errorf("service user %q: must differ from the superuser", cfg.ServiceUser))
	}
	if strings.ContainsRune(cfg.ServicePassword, 0) {
		errs = append(errs, errors.New("service password: contains a NUL byte"))
	}
	if err := checkSQLName("database", cfg.Database); err != nil {
		errs = append(errs, err)
	}
	for k, v := range cfg.Settings {
		switch {
		case !settingKeyRE.MatchString(k):
			errs = append(errs, fmt.Errorf("setting %q: not a valid parameter name", k))
		case reservedSettings[strings.ToLower(k)]:
			errs = append(errs, fmt.Errorf("setting %q: chosen by the cluster, cannot be overridden", k))
		case strings.ContainsAny(v, "\x00\r\n"):
			errs = append(errs, fmt.Errorf("setting %q: value contains a line break or NUL", k))
		}
	}
	for i, line := range cfg.HBA {
		if strings.ContainsAny(line, "\x00\r\n") {
			errs = append(errs, fmt.Errorf("hba line %d: contains a line break or NUL", i+1))
		}
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("cluster: invalid config: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// checkSQLName accepts any identifier PostgreSQL can store (it is always
// quoted when used in SQL): 1-63 bytes, no NUL.
func checkSQLName(what, s string) error {
	if s == "" || len(s) > 63 || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s %q: want 1-63 bytes without NUL", what, s)
	}
	return nil
}
