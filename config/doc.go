// Package config holds pgtenant's configuration: plain structs with documented
// defaults, Load (YAML through viper, PGTENANT_* environment overrides, secrets
// from *_env and *_file keys) and Validate, whose errors name the key at fault.
// viper is used only here.
package config

//go:generate go test -run TestExampleMatchesStructs -update .
