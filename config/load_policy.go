package config

import "fmt"

// LoadPolicy reads the YAML file at path like Load (defaults, PGTENANT_*
// overrides, unknown keys rejected) but validates only what offline policy
// tools such as `pgtenant check` need: the policy section. Secrets are
// resolved when possible; a region whose password cannot be resolved keeps an
// empty one (its catalog is then simply not discovered), and auth secrets are
// not required, so a CI job can lint SQL without any credentials.
func LoadPolicy(path string) (*Config, error) {
	cfg, err := read(path)
	if err != nil {
		return nil, err
	}
	for name, r := range cfg.Regions {
		if pw, err := resolveSecret("regions."+name+".password", r.Password, r.PasswordEnv, r.PasswordFile); err == nil {
			r.Password = pw
			cfg.Regions[name] = r
		}
	}
	if err := cfg.Policy.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}
