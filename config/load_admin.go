package config

import "fmt"

// LoadAdmin reads the YAML file at path like Load for the commands that
// work on the databases as each region's admin role (`setup`, `audit
// init|seal|verify|export`): the admin passwords must resolve, while the
// JWT secret and the service roles' passwords are resolved when possible
// and not required, so that a setup Job or a sealing CronJob needs only
// the secrets it uses. Everything but auth is validated.
func LoadAdmin(path string) (*Config, error) {
	cfg, err := read(path)
	if err != nil {
		return nil, err
	}
	if s, err := resolveSecret("auth.hs256_secret", cfg.Auth.HS256Secret, cfg.Auth.HS256SecretEnv, cfg.Auth.HS256SecretFile); err == nil {
		cfg.Auth.Secret = []byte(s)
	}
	for name, r := range cfg.Regions {
		if pw, err := resolveSecret("regions."+name+".password", r.Password, r.PasswordEnv, r.PasswordFile); err == nil {
			r.Password = pw
		} else {
			r.Password = ""
		}
		if r.AdminPassword != "" || r.AdminPasswordEnv != "" || r.AdminPasswordFile != "" {
			apw, err := resolveSecret("regions."+name+".admin_password", r.AdminPassword, r.AdminPasswordEnv, r.AdminPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("config %s: %w", path, err)
			}
			r.AdminPassword = apw
		}
		cfg.Regions[name] = r
	}
	if err := cfg.validate(false); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}
