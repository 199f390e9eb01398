package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSmokePresetAndExplicitFlags(t *testing.T) {
	var errb bytes.Buffer
	o, _, err := parseFlags([]string{"--smoke", "--duration", "3s", "--targets", "direct,pgtenant-spool"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Smoke || o.Duration != 3*time.Second || !slices.Equal(o.Clients, []int{1}) || o.IdleConns != 20 ||
		!slices.Equal(o.Targets, []string{"direct", "pgtenant-spool"}) {
		t.Errorf("smoke options %+v", o)
	}
	o, _, err = parseFlags([]string{"--clients", "1,8,64", "--modes", "simple,prepared", "--idle-conns", "100"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if o.Smoke || !slices.Equal(o.Clients, []int{1, 8, 64}) || !slices.Equal(o.Modes, []string{"simple", "prepared"}) || o.IdleConns != 100 {
		t.Errorf("options %+v", o)
	}
}

func TestBadFlagsExitTwoWithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--clients", "x"},
		{"--modes", "pipelined"},
		{"--targets", "pgpool"},
		{"--duration", "0s", "--tenant", "0"},
		{"stray"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		msg := strings.TrimSpace(errb.String())
		if !strings.HasPrefix(msg, "pgtenant-bench: ") || strings.Contains(msg, "\n") {
			t.Errorf("%q: stderr %q", args, msg)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "--idle-conns") {
		t.Errorf("--help: exit %d, %q", code, errb.String())
	}
}
