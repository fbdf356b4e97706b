// Package authtest is the contract test of the console's accounts
// stores: the bbolt auth.Store and the PostgreSQL pgaccounts.Store pass
// the same checks.
package authtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/console/auth"
)

// Accounts is the accounts and sessions store under test.
type Accounts interface {
	User(ctx context.Context, name string) (auth.User, error)
	UserByHandle(ctx context.Context, h []byte) (auth.User, error)
	Users(ctx context.Context) ([]auth.User, error)
	Add(ctx context.Context, u auth.User) error
	Update(ctx context.Context, u auth.User) error
	Find(token string) ([]byte, bool, error)
	Commit(token string, b []byte, expiry time.Time) error
	Delete(token string) error
	PruneSessions(ctx context.Context) (int, error)
	EndSessions(ctx context.Context) error
}

// Open returns an empty store whose clock is now.
type Open func(t *testing.T, now func() time.Time) Accounts

// Run runs the contract on the stores open returns.
func Run(t *testing.T, open Open) {
	t.Run("accounts", func(t *testing.T) { accounts(t, open) })
	t.Run("last admin", func(t *testing.T) { lastAdmin(t, open) })
	t.Run("sessions", func(t *testing.T) { sessions(t, open) })
}

// accounts checks validation, Add, Update, User, Users and passkeys.
func accounts(t *testing.T, open Open) {
	ctx := t.Context()
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	s := open(t, func() time.Time { return now })
	u := auth.User{Name: "alice", Role: auth.Operator, Sites: []string{"tokyo"}, PasswordHash: "h"}
	bad := []struct {
		name string
		u    auth.User
		err  error
	}{
		{"bad name", auth.User{Name: "a/b", Role: auth.Operator, Sites: []string{"tokyo"}}, auth.ErrInvalid},
		{"bad role", auth.User{Name: "bob", Role: "root", Sites: []string{"tokyo"}}, auth.ErrInvalid},
		{"no site", auth.User{Name: "bob", Role: auth.Operator}, auth.ErrInvalid},
		{"bad site", auth.User{Name: "bob", Role: auth.Operator, Sites: []string{"a b"}}, auth.ErrInvalid},
	}
	for _, tt := range bad {
		if err := s.Add(ctx, tt.u); !errors.Is(err, tt.err) {
			t.Errorf("%s: Add = %v, want %v", tt.name, err, tt.err)
		}
	}
	if err := s.Add(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, u); !errors.Is(err, auth.ErrExists) {
		t.Errorf("second Add: %v", err)
	}
	if err := s.Update(ctx, auth.User{Name: "carol", Role: auth.Auditor, Sites: []string{"*"}}); !errors.Is(err, auth.ErrNoUser) {
		t.Errorf("Update of a missing user: %v", err)
	}
	got, err := s.User(ctx, "alice")
	if err != nil || !got.CanSite("tokyo") || got.CanSite("osaka") || got.AllSites() || !got.Updated.Equal(now) {
		t.Errorf("User = %+v, %v", got, err)
	}
	if _, err := s.User(ctx, "nobody"); !errors.Is(err, auth.ErrNoUser) {
		t.Errorf("User(nobody): %v", err)
	}
	got.Handle = []byte("handle-1")
	got.Passkeys = []auth.Passkey{{ID: []byte{1, 2, 3}, Name: "laptop", Created: now, Credential: []byte(`{"id":"AQID"}`)}}
	got.Generation, got.Disabled, got.MustChange = 3, true, true
	if err := s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	byHandle, err := s.UserByHandle(ctx, []byte("handle-1"))
	if err != nil || byHandle.Name != "alice" || byHandle.Passkey([]byte{1, 2, 3}) != 0 || byHandle.Passkeys[0].Name != "laptop" ||
		compact(byHandle.Passkeys[0].Credential) != `{"id":"AQID"}` || byHandle.Generation != 3 || !byHandle.Disabled || !byHandle.MustChange {
		t.Errorf("UserByHandle = %+v, %v", byHandle, err)
	}
	if _, err := s.UserByHandle(ctx, []byte("other")); !errors.Is(err, auth.ErrNoUser) {
		t.Errorf("UserByHandle(other): %v", err)
	}
	if err := s.Add(ctx, auth.User{Name: "Bob", Role: auth.Clerk, Sites: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Users(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "Bob" || all[1].Name != "alice" {
		t.Errorf("Users = %+v, %v; want Bob, alice (byte order)", all, err)
	}
}

// compact returns the JSON b without spaces (PostgreSQL's jsonb adds
// some).
func compact(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err.Error()
	}
	return buf.String()
}

// lastAdmin checks that the last administrator of every site cannot be
// disabled or demoted, and that another one can.
func lastAdmin(t *testing.T, open Open) {
	ctx := t.Context()
	s := open(t, nil)
	root := auth.User{Name: "root", Role: auth.Administrator, Sites: []string{"*"}}
	if err := s.Add(ctx, root); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, auth.User{Name: "tokyo-admin", Role: auth.Administrator, Sites: []string{"tokyo"}}); err != nil {
		t.Fatal(err)
	}
	changes := []struct {
		name string
		edit func(u *auth.User)
	}{
		{"disable", func(u *auth.User) { u.Disabled = true }},
		{"demote", func(u *auth.User) { u.Role = auth.Operator }},
		{"narrow sites", func(u *auth.User) { u.Sites = []string{"tokyo"} }},
	}
	for _, c := range changes {
		u := root
		c.edit(&u)
		if err := s.Update(ctx, u); !errors.Is(err, auth.ErrLastAdmin) {
			t.Errorf("%s the last administrator: %v, want ErrLastAdmin", c.name, err)
		}
	}
	if err := s.Add(ctx, auth.User{Name: "second", Role: auth.Administrator, Sites: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	u := root
	u.Disabled = true
	if err := s.Update(ctx, u); err != nil {
		t.Errorf("disable one of two administrators: %v", err)
	}
	u.Disabled = false
	if err := s.Update(ctx, u); err != nil {
		t.Errorf("enable again: %v", err)
	}
}

// sessions checks the scs store and the pruning.
func sessions(t *testing.T, open Open) {
	ctx := t.Context()
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	s := open(t, func() time.Time { return now })
	if err := s.Commit("tok", []byte("data"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit("tok", []byte("data2"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := s.Find("tok"); !ok || string(b) != "data2" || err != nil {
		t.Errorf("Find = %q, %v, %v", b, ok, err)
	}
	now = now.Add(2 * time.Hour)
	if _, ok, _ := s.Find("tok"); ok {
		t.Error("expired session found")
	}
	if n, err := s.PruneSessions(ctx); n != 1 || err != nil {
		t.Errorf("PruneSessions = %d, %v", n, err)
	}
	_ = s.Commit("tok2", []byte("x"), now.Add(time.Hour))
	_ = s.Commit("tok3", []byte("y"), now.Add(time.Hour))
	if err := s.Delete("tok3"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Find("tok3"); ok {
		t.Error("session survived Delete")
	}
	if err := s.EndSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Find("tok2"); ok {
		t.Error("session survived EndSessions")
	}
}
