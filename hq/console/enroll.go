package console

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/policy"
)

// PendingEnrollment is an enrollment a device sent, waiting for an admin.
type PendingEnrollment struct {
	// ID is the registry's ID of the pending enrollment.
	ID string
	// Site and Device name the enrollment station that sent it.
	Site, Device string
	// Seq is the device's enrollment sequence number.
	Seq uint64
	// Received is when HQ stored it.
	Received time.Time
	// Credential is the card's credential key (hex), or "" when the
	// record cannot be decoded.
	Credential string
}

// Enrollments approves and rejects the enrollments devices sent
// (cmd/tobira-hq's registry adapter has it).
type Enrollments interface {
	// Pending returns the enrollments waiting for approval.
	Pending() ([]PendingEnrollment, error)
	// Approve verifies pending enrollment id against HQ's trust anchors,
	// adds its credential to its site's allowlist for person (until
	// until; zero: no end), removes it from the pending list, and
	// returns the credential (hex).
	Approve(ctx context.Context, id, person string, until time.Time) (string, error)
	// Reject removes pending enrollment id.
	Reject(id string) error
}

// enrollForm is an approval form sent back with its errors.
type enrollForm struct {
	ID, Person, Until string
	// Errors maps a field to the message key of its error.
	Errors map[string]string
	// Failure is why the registry refused the approval.
	Failure string
}

// enrollData is the enrollments page's data.
type enrollData struct {
	Pending []PendingEnrollment
	// Notice is the message key of what was just done.
	Notice string
	// Form is the form that was refused, if any.
	Form enrollForm
}

// FormFor returns the refused form when it is the one of enrollment id.
func (d enrollData) FormFor(id string) enrollForm {
	if d.Form.ID == id {
		return d.Form
	}
	return enrollForm{}
}

// enrollNotices are the notices the page shows after a redirect.
var enrollNotices = map[string]string{"approved": "enroll.approved", "rejected": "enroll.rejected"}

// enrollmentsPage lists the pending enrollments of rq's sites.
func (s *Server) enrollmentsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.showEnrollments(w, r, rq, http.StatusOK, enrollData{Notice: enrollNotices[r.URL.Query().Get("done")]})
}

// showEnrollments renders the enrollments page with d and the pending
// enrollments of rq's sites.
func (s *Server) showEnrollments(w http.ResponseWriter, r *http.Request, rq *request, status int, d enrollData) {
	if s.cfg.Enrollments == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "enroll.disabled")
		return
	}
	all, err := s.cfg.Enrollments.Pending()
	if err != nil {
		s.log.Error("console: pending enrollments", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	for _, p := range all {
		if rq.user.CanSite(p.Site) {
			d.Pending = append(d.Pending, p)
		}
	}
	s.render(w, r, rq, status, "enrollments", "enroll.title", d)
}

// pendingFor returns pending enrollment id when rq's account may handle
// it, answering the request otherwise.
func (s *Server) pendingFor(w http.ResponseWriter, r *http.Request, rq *request, id string) (PendingEnrollment, bool) {
	if s.cfg.Enrollments == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "enroll.disabled")
		return PendingEnrollment{}, false
	}
	all, err := s.cfg.Enrollments.Pending()
	if err != nil {
		s.log.Error("console: pending enrollments", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return PendingEnrollment{}, false
	}
	for _, p := range all {
		if p.ID != id {
			continue
		}
		if !rq.user.CanSite(p.Site) {
			s.record(rq, audit.Entry{Action: "denied", Target: "enrollment " + p.Site + "/" + id})
			s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
			return PendingEnrollment{}, false
		}
		return p, true
	}
	s.fail(w, r, rq, http.StatusNotFound, "enroll.not_found")
	return PendingEnrollment{}, false
}

// readEnrollForm reads and checks an approval form: a person ID, and
// an optional last valid day (the credential is valid through it).
func readEnrollForm(id string, get func(string) string, now time.Time) (enrollForm, time.Time) {
	f := enrollForm{ID: id, Person: get("person"), Until: get("until"), Errors: map[string]string{}}
	switch {
	case f.Person == "":
		f.Errors["person"] = "enroll.need_person"
	case len(f.Person) > policy.MaxIDLen || policy.CheckText("person", f.Person) != nil:
		f.Errors["person"] = "enroll.bad_person"
	}
	var until time.Time
	if f.Until != "" {
		day, err := time.ParseInLocation(time.DateOnly, f.Until, now.Location())
		if until = day.AddDate(0, 0, 1); err != nil || !until.After(now) {
			f.Errors["until"] = "enroll.bad_until"
		}
	}
	return f, until
}

// approveEnrollment approves a pending enrollment for the person of the
// form, audited with the credential and the person.
func (s *Server) approveEnrollment(w http.ResponseWriter, r *http.Request, rq *request) {
	p, ok := s.pendingFor(w, r, rq, r.PathValue("id"))
	if !ok {
		return
	}
	f, until := readEnrollForm(p.ID, r.PostFormValue, s.clk.Now())
	if len(f.Errors) > 0 {
		s.showEnrollments(w, r, rq, http.StatusUnprocessableEntity, enrollData{Form: f})
		return
	}
	cred, err := s.cfg.Enrollments.Approve(r.Context(), p.ID, f.Person, until)
	after, _ := json.Marshal(struct {
		Person     string    `json:"person"`
		Credential string    `json:"credential"`
		ValidUntil time.Time `json:"valid_until,omitzero"`
	}{f.Person, cred, until})
	e := audit.Entry{Action: "enroll_approve", Target: p.Site + "/" + p.Device + " enrollment " + p.ID, After: string(after)}
	if err != nil {
		e.After += " error: " + err.Error()
		s.record(rq, e)
		s.log.Warn("console: enrollment not approved", "id", p.ID, "site", p.Site, "err", err)
		f.Failure = err.Error()
		s.showEnrollments(w, r, rq, http.StatusUnprocessableEntity, enrollData{Form: f})
		return
	}
	s.record(rq, e)
	http.Redirect(w, r, "/enrollments?done=approved", http.StatusSeeOther)
}

// rejectEnrollment drops a pending enrollment, audited.
func (s *Server) rejectEnrollment(w http.ResponseWriter, r *http.Request, rq *request) {
	p, ok := s.pendingFor(w, r, rq, r.PathValue("id"))
	if !ok {
		return
	}
	e := audit.Entry{Action: "enroll_reject", Target: p.Site + "/" + p.Device + " enrollment " + p.ID, Before: p.Credential}
	if err := s.cfg.Enrollments.Reject(p.ID); err != nil {
		s.log.Error("console: cannot reject enrollment", "id", p.ID, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	s.record(rq, e)
	http.Redirect(w, r, "/enrollments?done=rejected", http.StatusSeeOther)
}
