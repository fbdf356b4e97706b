package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/export"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/sync/proto"
)

// pageSize is how many events a page of the events list shows.
const pageSize = 50

// eventFilter is the events page's form.
type eventFilter struct {
	Site, Device, Door, Credential, Person, Reason, Type, From, To string
	// After is the cursor: the last event of the previous page, as
	// hq.Cursor.String makes it ("" for the first page).
	After string
	// Errors maps a field to the message key of its error.
	Errors map[string]string
}

// Get returns the text field of the filter named field.
func (f eventFilter) Get(field string) string {
	switch field {
	case "site":
		return f.Site
	case "device":
		return f.Device
	case "door":
		return f.Door
	case "credential":
		return f.Credential
	case "person":
		return f.Person
	case "reason":
		return f.Reason
	}
	return ""
}

// timeInput is the layout of an HTML datetime-local input.
const timeInput = "2006-01-02T15:04"

// parseFilter reads the filter form from r's query and returns it with
// the query it selects (times in the server's zone).
func parseFilter(r *http.Request) (eventFilter, hq.EventQuery) {
	v := r.URL.Query()
	f := eventFilter{Site: v.Get("site"), Device: v.Get("device"), Door: v.Get("door"), Credential: v.Get("credential"),
		Person: v.Get("person"), Reason: v.Get("reason"), Type: v.Get("type"), From: v.Get("from"), To: v.Get("to"), After: v.Get("after"), Errors: map[string]string{}}
	q := hq.EventQuery{Site: f.Site, Device: f.Device, Door: f.Door, Credential: f.Credential, Reason: f.Reason, Type: f.Type}
	for _, t := range []struct {
		field, in string
		out       *time.Time
	}{{"from", f.From, &q.From}, {"to", f.To, &q.To}} {
		if t.in == "" {
			continue
		}
		tm, err := time.ParseInLocation(timeInput, t.in, time.Local)
		if err != nil {
			f.Errors[t.field] = "events.bad_time"
		}
		*t.out = tm
	}
	switch f.Type {
	case "", proto.TypeDecision, proto.TypeDoor, proto.TypeSystem, proto.TypeTicket:
	default:
		f.Errors["type"] = "events.bad_type"
	}
	return f, q
}

// personFilter restricts q to the credentials of the filter's person at
// its site (when the filter names one: people's IDs are per site), or
// notes in f why it cannot. An error is the registry's.
func (s *Server) personFilter(ctx context.Context, f eventFilter, q *hq.EventQuery) error {
	switch {
	case f.Person == "":
		return nil
	case s.cfg.People == nil:
		f.Errors["person"] = "events.no_people"
		return nil
	case f.Site == "":
		f.Errors["person"] = "events.person_needs_site"
		return nil
	}
	creds, err := s.cfg.People.PersonCredentials(ctx, f.Site, f.Person)
	switch {
	case errors.Is(err, registry.ErrInvalid):
		// Not a site name: no such person there either.
	case err != nil:
		return fmt.Errorf("credentials of person %q at site %s: %w", f.Person, f.Site, err)
	}
	if len(creds) == 0 {
		f.Errors["person"] = "events.unknown_person"
		return nil
	}
	q.Credentials = creds
	return nil
}

// eventRow is one event on the page, with the holder's name for the
// roles that may see it.
type eventRow struct {
	hq.StoredEvent
	Name string
}

// eventsData is the events page's data.
type eventsData struct {
	Filter eventFilter
	Rows   []eventRow
	// Next is the query string of the next page ("" on the last).
	Next template.URL
	// Names reports that the page shows people's names.
	Names bool
	// People reports that the page can filter by person.
	People bool
	// Export is the query string of the CSV export.
	Export template.URL
}

// eventsPage lists the events the filter selects, newest first, a page at
// a time (server-side keyset pages: hq.Service.QueryPage), limited to the
// account's sites.
func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	f, q := parseFilter(r)
	after, err := hq.ParseCursor(f.After)
	if err != nil {
		f.Errors["after"] = "events.bad_cursor"
	}
	if f.Site != "" && !rq.user.CanSite(f.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "events site " + f.Site})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return
	}
	if err := s.personFilter(r.Context(), f, &q); err != nil {
		s.log.Error("console: events person filter", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	d := eventsData{Filter: f, Names: s.cfg.Names != nil && rq.user.Role.Can(auth.PermNames), People: s.cfg.People != nil}
	if len(f.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "events", "events.title", d)
		return
	}
	if !rq.user.AllSites() {
		q.Sites = rq.user.Sites
	}
	page, err := s.cfg.HQ.QueryPage(r.Context(), q, after, pageSize)
	if err != nil {
		s.log.Error("console: events query", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	for _, ev := range page.Events {
		row := eventRow{StoredEvent: ev}
		if d.Names && ev.Credential != "" {
			row.Name, _ = s.cfg.Names.Name(ev.Site, ev.Credential)
		}
		d.Rows = append(d.Rows, row)
	}
	vals := r.URL.Query()
	vals.Del("after")
	d.Export = template.URL(vals.Encode()) // made by url.Values: escaped
	if page.More {
		vals.Set("after", page.Next.String())
		d.Next = template.URL(vals.Encode())
	}
	if d.Names {
		s.auditNames(rq, r.URL.Query(), d.Rows)
	}
	s.render(w, r, rq, http.StatusOK, "events", "events.title", d)
}

// auditNames records that rq's account saw the names of rows.
func (s *Server) auditNames(rq *request, filter url.Values, rows []eventRow) {
	n := 0
	for _, row := range rows {
		if row.Name != "" {
			n++
		}
	}
	if n > 0 {
		s.record(rq, audit.Entry{Action: "view_names", Target: "events?" + filter.Encode(), After: fmt.Sprintf("%d names", n)})
	}
}

// eventsCSV exports the events the filter selects (all pages) as CSV,
// safe for spreadsheets, limited to the account's sites; audited.
func (s *Server) eventsCSV(w http.ResponseWriter, r *http.Request, rq *request) {
	f, q := parseFilter(r)
	if f.Site != "" && !rq.user.CanSite(f.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "events.csv site " + f.Site})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return
	}
	if err := s.personFilter(r.Context(), f, &q); err != nil {
		s.log.Error("console: events export person filter", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	if len(f.Errors) > 0 {
		s.fail(w, r, rq, http.StatusUnprocessableEntity, "events.bad_filter")
		return
	}
	s.record(rq, audit.Entry{Action: "export_events", Target: "events.csv?" + r.URL.RawQuery})
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="tobira-events.csv"`)
	ew, err := export.NewEventWriter(w, "csv")
	if err == nil {
		err = s.cfg.HQ.Query(q, func(ev hq.StoredEvent) error {
			if !rq.user.CanSite(ev.Site) {
				return nil
			}
			return ew.Write(ev)
		})
	}
	if err == nil {
		err = ew.Flush()
	}
	if err != nil {
		s.log.Warn("console: events export", "user", rq.user.Name, "err", err)
	}
}
