package auth

import (
	"errors"
	"testing"
	"time"
)

// cheap are argon2id parameters that keep tests fast.
var cheap = Params{Time: 1, MemoryKiB: 1024, Threads: 1}

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, pw string
		ok             bool
		err            error
	}{
		{"right", h, "correct horse battery", true, nil},
		{"wrong", h, "correct horse batterx", false, nil},
		{"empty", h, "", false, nil},
		{"not argon2id", "$2a$10$abc", "x", false, ErrInvalid},
		{"bad params", "$argon2id$v=19$m=x$AAAA$AAAA", "x", false, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := CheckPassword(tt.hash, tt.pw)
			if ok != tt.ok || !errors.Is(err, tt.err) {
				t.Errorf("CheckPassword = %v, %v; want %v, %v", ok, err, tt.ok, tt.err)
			}
		})
	}
	if _, err := HashPassword("short", cheap); !errors.Is(err, ErrInvalid) {
		t.Errorf("short password: %v, want ErrInvalid", err)
	}
	if a, b := RandomPassword(), RandomPassword(); a == b || len(a) < MinPasswordLen {
		t.Errorf("RandomPassword gave %q and %q", a, b)
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		role Role
		perm Perm
		want bool
	}{
		{Administrator, PermCommand, true},
		{Administrator, PermAudit, true},
		{Operator, PermCommand, true},
		{Operator, PermNames, false},
		{Operator, PermAudit, false},
		{Clerk, PermCommand, false},
		{Clerk, PermNames, true},
		{Clerk, PermEnroll, true},
		{Administrator, PermEnroll, true},
		{Operator, PermEnroll, false},
		{Auditor, PermEnroll, false},
		{Administrator, PermImport, true},
		{Clerk, PermImport, false},
		{Operator, PermImport, false},
		{Administrator, PermRecordsEdit, true},
		{Clerk, PermRecordsEdit, false},
		{Clerk, PermRevoke, true},
		{Auditor, PermRecords, true},
		{Auditor, PermRevoke, false},
		{Operator, PermRecords, false},
		{Auditor, PermAudit, true},
		{Auditor, PermCommand, false},
		{Auditor, PermNames, false},
		{"nobody", PermView, false},
	}
	for _, tt := range tests {
		if got := tt.role.Can(tt.perm); got != tt.want {
			t.Errorf("%s.Can(%s) = %v, want %v", tt.role, tt.perm, got, tt.want)
		}
	}
	if _, err := ParseRole("root"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseRole(root): %v", err)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	l := NewLimiter(3, time.Minute, func() time.Time { return now })
	for range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("refused before the limit")
		}
		l.Fail("a")
		now = now.Add(time.Second)
	}
	if ok, wait := l.Allow("a"); ok || wait != 57*time.Second {
		t.Fatalf("after 3 failures: %v, %v; want refused for 57s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Error("another key is refused")
	}
	now = now.Add(57 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Error("still refused once the oldest failure left the window")
	}
	l.Fail("a")
	l.Reset("a")
	if ok, _ := l.Allow("a"); !ok {
		t.Error("refused after Reset")
	}
}
