package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/pgtenant/pgtenant/config"
)

// newLogger builds the process logger from the log section: JSON by default,
// text for terminals. The level can be changed later through level.
func newLogger(w io.Writer, lc config.Log, level *slog.LevelVar) *slog.Logger {
	setLevel(level, lc.Level)
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(lc.Format, "text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// setLevel applies a config level name (validated by config.Validate).
func setLevel(level *slog.LevelVar, name string) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(name)); err == nil {
		level.Set(l)
	}
}
