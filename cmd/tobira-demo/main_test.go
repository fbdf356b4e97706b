package main

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs the whole demo in-process and checks its table and summary.
func TestDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), nil, &out, &errOut); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	text := out.String()
	for _, want := range []string{"enrolled", "not_enrolled", "revoked", "expired", "untrusted_issuer", "not_my_number_card",
		"unlocked, relocked after"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	// 6 decisions, and the door's changes: driven locked at start, unlocked
	// for the grant, relocked.
	if !regexp.MustCompile(`(?m)^demo: 6 taps, 1 granted, 5 denied, 9 events acknowledged by HQ$`).MatchString(text) {
		t.Errorf("summary line missing or wrong:\n%s", text)
	}
}

// help, -h and --help print the usage to stdout and succeed; anything else
// unknown is a usage error.
func TestUsage(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr error
	}{
		{[]string{"help"}, nil},
		{[]string{"-h"}, nil},
		{[]string{"--help"}, nil},
		{[]string{"-help"}, nil},
		{[]string{"--bogus"}, errUsage},
		{[]string{"frobnicate"}, errUsage},
		{[]string{"help", "me"}, errUsage},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(t.Context(), tt.args, &out, &errOut)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("run(%q) = %v, want %v", tt.args, err, tt.wantErr)
		}
		if tt.wantErr == nil && !strings.HasPrefix(out.String(), "usage: tobira-demo") {
			t.Errorf("run(%q) printed %q, want the usage on stdout", tt.args, out.String())
		}
	}
}
