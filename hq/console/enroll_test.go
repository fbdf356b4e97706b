package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEnrollments holds pending enrollments in memory; Approve fails for
// the person "untrusted".
type fakeEnrollments struct {
	mu       sync.Mutex
	pending  []PendingEnrollment
	approved map[string]string // id -> person
	until    map[string]time.Time
}

// newFakeEnrollments has one pending enrollment at tokyo (e-tokyo) and one
// at osaka (e-osaka).
func newFakeEnrollments() *fakeEnrollments {
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	return &fakeEnrollments{approved: map[string]string{}, until: map[string]time.Time{}, pending: []PendingEnrollment{
		{ID: "e-tokyo", Site: "tokyo", Device: "desk-1", Seq: 1, Received: at, Credential: "01aa"},
		{ID: "e-osaka", Site: "osaka", Device: "desk-1", Seq: 1, Received: at, Credential: "01bb"},
	}}
}

func (f *fakeEnrollments) Pending() ([]PendingEnrollment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]PendingEnrollment(nil), f.pending...), nil
}

// remove drops id from the pending list and returns its credential.
func (f *fakeEnrollments) remove(id string) (string, error) {
	for i, p := range f.pending {
		if p.ID == id {
			f.pending = append(f.pending[:i], f.pending[i+1:]...)
			return p.Credential, nil
		}
	}
	return "", errors.New("no such enrollment")
}

func (f *fakeEnrollments) Approve(_ context.Context, id, person string, until time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if person == "untrusted" {
		return "", errors.New("enroll: certificate chain: issuer not trusted")
	}
	cred, err := f.remove(id)
	if err == nil {
		f.approved[id], f.until[id] = person, until
	}
	return cred, err
}

func (f *fakeEnrollments) Reject(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.remove(id)
	return err
}

// TestEnrollmentForm checks the approval form's validation: each bad
// field is named, and nothing is approved.
func TestEnrollmentForm(t *testing.T) {
	e := newEnv(t)
	c := e.login("clerk")
	tomorrow := time.Now().AddDate(0, 0, 1).Format(time.DateOnly)
	tests := []struct {
		name, person, until string
		wantField, wantText string
	}{
		{"no person", "", "", "error-person", "Enter the person"},
		{"control character", "p-1\n", "", "error-person", "control characters"},
		{"too long", strings.Repeat("p", 129), "", "error-person", "too long"},
		{"day in the past", "p-1", "2020-01-01", "error-until", "a day in the future"},
		{"not a day", "p-1", "next week", "error-until", "YYYY-MM-DD"},
		{"refused by the registry", "untrusted", tomorrow, "enroll-error", "issuer not trusted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.post(c, "/enrollments/e-tokyo/approve", url.Values{"person": {tt.person}, "until": {tt.until}})
			if res.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", res.StatusCode)
			}
			if !strings.Contains(body, `id="`+tt.wantField+`"`) || !strings.Contains(body, tt.wantText) {
				t.Errorf("page lacks %s with %q:\n%s", tt.wantField, tt.wantText, body)
			}
			if len(e.enr.approved) != 0 {
				t.Errorf("approved %v", e.enr.approved)
			}
		})
	}
}

// TestEnrollments approves and rejects, audited, within the account's
// sites.
func TestEnrollments(t *testing.T) {
	e := newEnv(t)
	tc := e.login("tokyo-clerk")
	_, body := e.get(tc, "/enrollments")
	if !strings.Contains(body, "enrollment-e-tokyo") || strings.Contains(body, "enrollment-e-osaka") {
		t.Fatalf("tokyo's clerk should see tokyo's enrollment only:\n%s", body)
	}
	if res, _ := e.post(tc, "/enrollments/e-osaka/approve", url.Values{"person": {"p-9"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("approving another site's enrollment: status %d, want 403", res.StatusCode)
	}
	if res, _ := e.post(tc, "/enrollments/nope/reject", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("rejecting an unknown enrollment: status %d, want 404", res.StatusCode)
	}
	last := time.Now().AddDate(1, 0, 0).Format(time.DateOnly)
	res, _ := e.post(tc, "/enrollments/e-tokyo/approve", url.Values{"person": {"p-0001"}, "until": {last}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/enrollments?done=approved" {
		t.Fatalf("approve: status %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if e.enr.approved["e-tokyo"] != "p-0001" || e.enr.until["e-tokyo"].Format(time.DateOnly) <= last {
		t.Errorf("approved %v until %v, want p-0001 through %s", e.enr.approved, e.enr.until, last)
	}
	_, body = e.get(tc, "/enrollments?done=approved")
	if !strings.Contains(body, `id="enroll-notice"`) || !strings.Contains(body, `id="no-enrollments"`) {
		t.Errorf("after approval the page should say so and list nothing:\n%s", body)
	}
	admin := e.login("admin")
	if res, _ := e.post(admin, "/enrollments/e-osaka/reject", nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("reject: status %d", res.StatusCode)
	}
	if p, _ := e.enr.Pending(); len(p) != 0 {
		t.Errorf("still pending: %v", p)
	}
	acts := strings.Join(e.actions(), " ")
	for _, want := range []string{"tokyo-clerk:denied", "tokyo-clerk:enroll_approve", "admin:enroll_reject"} {
		if !strings.Contains(acts, want) {
			t.Errorf("audit log lacks %s: %s", want, acts)
		}
	}
}
