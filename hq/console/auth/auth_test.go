package auth

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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

func TestStore(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "console.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	s, err := NewStore(db, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	u := User{Name: "alice", Role: Operator, Sites: []string{"tokyo"}, PasswordHash: "h"}
	bad := []struct {
		name string
		u    User
		err  error
	}{
		{"bad name", User{Name: "a/b", Role: Operator, Sites: []string{"tokyo"}}, ErrInvalid},
		{"bad role", User{Name: "bob", Role: "root", Sites: []string{"tokyo"}}, ErrInvalid},
		{"no site", User{Name: "bob", Role: Operator}, ErrInvalid},
		{"bad site", User{Name: "bob", Role: Operator, Sites: []string{"a b"}}, ErrInvalid},
	}
	for _, tt := range bad {
		if err := s.Add(tt.u); !errors.Is(err, tt.err) {
			t.Errorf("%s: Add = %v, want %v", tt.name, err, tt.err)
		}
	}
	if err := s.Add(u); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(u); !errors.Is(err, ErrExists) {
		t.Errorf("second Add: %v", err)
	}
	if err := s.Update(User{Name: "carol", Role: Auditor, Sites: []string{"*"}}); !errors.Is(err, ErrNoUser) {
		t.Errorf("Update of a missing user: %v", err)
	}
	got, err := s.User("alice")
	if err != nil || !got.CanSite("tokyo") || got.CanSite("osaka") || got.AllSites() {
		t.Errorf("User = %+v, %v", got, err)
	}
	if _, err := s.User("nobody"); !errors.Is(err, ErrNoUser) {
		t.Errorf("User(nobody): %v", err)
	}

	if err := s.Commit("tok", []byte("data"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := s.Find("tok"); !ok || string(b) != "data" || err != nil {
		t.Errorf("Find = %q, %v, %v", b, ok, err)
	}
	now = now.Add(2 * time.Hour)
	if _, ok, _ := s.Find("tok"); ok {
		t.Error("expired session found")
	}
	if n, err := s.PruneSessions(); n != 1 || err != nil {
		t.Errorf("PruneSessions = %d, %v", n, err)
	}
	_ = s.Commit("tok2", []byte("x"), now.Add(time.Hour))
	if err := s.EndSessions(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Find("tok2"); ok {
		t.Error("session survived EndSessions")
	}
}
