package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// confFile is the settings file Start writes next to postgresql.conf and
// includes from it; it is rewritten whenever the port changes.
const confFile = "pgtenant.conf"

// defaultSettings are applied unless Config.Settings overrides them.
var defaultSettings = map[string]string{
	// Dynamic shared memory as files in the data directory, not in
	// /dev/shm, where a killed server would leave them behind.
	"dynamic_shared_memory_type": "mmap",
	"fsync":                      "off",
	"max_connections":            "200",
	"password_encryption":        "scram-sha-256",
}

// defaultHBA follows Config.HBA in pg_hba.conf.
var defaultHBA = []string{
	"local all all trust",
	"host all " + Superuser + " 127.0.0.1/32 trust",
	"host all all 127.0.0.1/32 scram-sha-256",
}

// writeHBA replaces pg_hba.conf with extra lines first, then the defaults.
func writeHBA(dataDir string, extra []string, owner osUser) error {
	var b strings.Builder
	b.WriteString("# Written by pgtenant cluster: Config.HBA lines first, then the defaults.\n")
	for _, l := range extra {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for _, l := range defaultHBA {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return writeOwned(filepath.Join(dataDir, "pg_hba.conf"), b.String(), owner)
}

// includeConf makes postgresql.conf include confFile (once, at the end, so
// its settings win over initdb's).
func includeConf(dataDir string) error {
	path := filepath.Join(dataDir, "postgresql.conf")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, werr := fmt.Fprintf(f, "\n# Added by pgtenant cluster.\ninclude = '%s'\n", confFile)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("append to postgresql.conf: %w", werr)
	}
	return nil
}

// writeSettings (re)writes confFile for the given port.
func writeSettings(dataDir, socketDir string, port int, extra map[string]string, owner osUser) error {
	settings := make(map[string]string, len(defaultSettings)+len(extra)+3)
	for k, v := range defaultSettings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[strings.ToLower(k)] = v
	}
	settings["listen_addresses"] = "127.0.0.1"
	settings["port"] = strconv.Itoa(port)
	settings["unix_socket_directories"] = socketDir
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by pgtenant cluster; rewritten on every start with a new port.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, confQuote(settings[k]))
	}
	return writeOwned(filepath.Join(dataDir, confFile), b.String(), owner)
}

// confQuote quotes a postgresql.conf value: single quotes, with embedded
// quotes and backslashes escaped.
func confQuote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `'`, `''`)
	return "'" + v + "'"
}

// writeOwned writes a 0600 file owned by the server user.
func writeOwned(path, content string, owner osUser) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return owner.own(path)
}
