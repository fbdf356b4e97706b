package console

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Records is the registry as the record pages read and change it, a page
// at a time (registry.Registry has it; tobira-hq opens the registry file
// for each call). Every change is one registry transaction that bumps the
// site's revision.
type Records interface {
	// List returns up to limit live records of kind in site, in key
	// order, after the cursor after, and the next page's cursor ("" =
	// no more).
	List(ctx context.Context, site string, kind policy.RecordKind, after string, limit int) ([]policy.Item, string, error)
	// Get returns the live record with it's kind and key.
	Get(site string, it policy.Item) (policy.Item, bool, error)
	// Apply validates and applies ch to site in one transaction.
	Apply(ctx context.Context, site string, ch registry.Change) (registry.Applied, error)
	// Revoke revokes a certificate at site and removes its credential.
	Revoke(ctx context.Context, site string, c policy.CertRef) (registry.Applied, error)
	// ImportCRL imports a CRL (DER) signed by ca into site's
	// revocations.
	ImportCRL(ctx context.Context, site string, der []byte, ca *x509.Certificate, now time.Time) (registry.CRLImport, error)
}

// recordsPageSize is how many records a list page shows.
const recordsPageSize = 50

// recordsIndexData is the records start page's data: a site to choose
// and the tables of it.
type recordsIndexData struct {
	Site   string
	Tables []string
	// Errors maps a field to the message key of its error.
	Errors map[string]string
}

// recordsIndex shows the record tables of a site.
func (s *Server) recordsIndex(w http.ResponseWriter, r *http.Request, rq *request) {
	d := recordsIndexData{Site: r.URL.Query().Get("site"), Tables: registry.Tables, Errors: map[string]string{}}
	status := http.StatusOK
	if d.Site != "" && !s.siteOK(w, r, rq, d.Site, d.Errors) {
		if len(d.Errors) == 0 {
			return
		}
		status = http.StatusUnprocessableEntity
	}
	s.render(w, r, rq, status, "records", "records.title", d)
}

// siteOK checks a site of a record page: a bad name is a field error in
// errs (false), a site not granted to rq's account is refused here
// (false, audited).
func (s *Server) siteOK(w http.ResponseWriter, r *http.Request, rq *request, site string, errs map[string]string) bool {
	if proto.CheckName(site) != nil {
		errs["site"] = "records.bad_site"
		return false
	}
	if !rq.user.CanSite(site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "records " + site})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return false
	}
	return true
}

// recordTable returns the table of the request's path, answering 404
// (false) for an unknown one, and 503 when the console has no registry.
func (s *Server) recordTable(w http.ResponseWriter, r *http.Request, rq *request) (string, policy.RecordKind, bool) {
	if s.cfg.Records == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "records.disabled")
		return "", 0, false
	}
	table := r.PathValue("table")
	kind, ok := registry.TableKind(table)
	if !ok {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return "", 0, false
	}
	return table, kind, true
}

// recordRow is one record of a list page.
type recordRow struct {
	// Key is the record's key (registry.RecordKey).
	Key string
	// Cells are the record's fields in the table's column order.
	Cells []string
	// Cert reports a certificate credential (it can be revoked).
	Cert bool
	// Name is the person's name (credentials, roles with PermNames).
	Name string
}

// recordListData is a list page's data.
type recordListData struct {
	Site, Table string
	Columns     []string
	Rows        []recordRow
	// Next is the query string of the next page ("" on the last).
	Next template.URL
	// Notice is the message key of what was just done, Rev the site's
	// revision after it.
	Notice, Rev string
	// Names reports that the page shows people's names.
	Names bool
	// Errors maps a field to the message key of its error.
	Errors map[string]string
}

// recordNotices are the notices a list page shows after a change.
var recordNotices = map[string]string{"saved": "records.saved", "deleted": "records.deleted", "revoked": "records.revoked"}

// recordList shows one page of a site's records of a table.
func (s *Server) recordList(w http.ResponseWriter, r *http.Request, rq *request) {
	table, kind, ok := s.recordTable(w, r, rq)
	if !ok {
		return
	}
	q := r.URL.Query()
	d := recordListData{Site: q.Get("site"), Table: table, Columns: registry.FormColumns(table), Errors: map[string]string{},
		Notice: recordNotices[q.Get("done")], Rev: q.Get("rev")}
	if !s.siteOK(w, r, rq, d.Site, d.Errors) {
		if len(d.Errors) > 0 {
			s.render(w, r, rq, http.StatusUnprocessableEntity, "records_list", "records.title", d)
		}
		return
	}
	items, next, err := s.cfg.Records.List(r.Context(), d.Site, kind, q.Get("after"), recordsPageSize)
	if errors.Is(err, registry.ErrInvalid) {
		d.Errors["after"] = "records.bad_cursor"
		s.render(w, r, rq, http.StatusUnprocessableEntity, "records_list", "records.title", d)
		return
	}
	if err != nil {
		s.log.Error("console: list records", "site", d.Site, "table", table, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	for _, it := range items {
		row := recordRow{}
		row.Key, _ = registry.RecordKey(it)
		_, fields := registry.RecordFields(it)
		for _, c := range d.Columns {
			row.Cells = append(row.Cells, fields[c])
		}
		row.Cert = fields["type"] == "cert"
		d.Rows = append(d.Rows, row)
	}
	s.listNames(rq, &d)
	if next != "" {
		d.Next = template.URL(url.Values{"site": {d.Site}, "after": {next}}.Encode()) // made by url.Values: escaped
	}
	s.render(w, r, rq, http.StatusOK, "records_list", "records.title", d)
}

// formField is one field of a record form.
type formField struct {
	// Name is the field's column name (registry.FormColumns).
	Name, Value string
	// Options, when set, make the field a choice: value -> message key.
	Options [][2]string
	// Multiline makes the field a text area (one item a line).
	Multiline bool
	// Placeholder is an example of the field's format.
	Placeholder string
}

// fieldOptions are the choices of the fields that have a fixed set of
// values (the policy model's), each value with its message key.
var fieldOptions = map[string][][2]string{
	"type":           {{"cert", "credtype.cert"}, {"freearea", "credtype.freearea"}},
	"default_mode":   {{"", "doormode.default"}, {"card", "doormode.card"}, {"card_pin", "doormode.card_pin"}, {"unlocked", "doormode.unlocked"}, {"locked", "doormode.locked"}},
	"passback":       {{"", "passback.none"}, {"hard", "passback.hard"}, {"soft", "passback.soft"}, {"timed", "passback.timed"}},
	"reentry/events": {{"false", "records.no"}, {"true", "records.yes"}},
}

// fieldPlaceholders are examples of the fields' formats.
var fieldPlaceholders = map[string]string{
	"valid_from": "2026-04-01T09:00:00+09:00", "valid_until": "2027-04-01T00:00:00+09:00", "revocations_at": "2026-04-01T00:00:00+09:00",
	"start": "2026-04-01T18:00:00+09:00", "end": "2026-04-01T21:00:00+09:00", "max_revocation_age": "168h", "reentry": "30m",
	"groups": "staff; night", "modes": "office=unlocked; night=card_pin", "issuer_key_id": "40 hex digits", "previous_issuer_key_id": "40 hex digits",
	"serial": "0a1b2c", "previous_serial": "0a1b2c", "time_zone": policy.DefaultTimeZone, "date": "2026-12-31",
	"windows": "mon;tue;wed;thu;fri 09:00 18:00", "special": "2026-12-31 09:00 12:00",
}

// recordForm is a record form's data.
type recordForm struct {
	Site, Table string
	// Key is the record being edited ("" for a new one).
	Key    string
	Fields []formField
	// Errors maps a field to its problem, as the page shows it (the
	// registry's message, the same as a CSV import's).
	Errors map[string]string
	// Problem is a problem of the record as a whole.
	Problem string
}

// newRecordForm returns the form of table with the values of fields.
func newRecordForm(site, table, key string, fields map[string]string) recordForm {
	f := recordForm{Site: site, Table: table, Key: key, Errors: map[string]string{}}
	for _, c := range registry.FormColumns(table) {
		opts := fieldOptions[c]
		if c == "reentry" {
			opts = fieldOptions["reentry/"+table]
		}
		f.Fields = append(f.Fields, formField{Name: c, Value: fields[c], Options: opts,
			Multiline: c == "windows" || c == "special", Placeholder: fieldPlaceholders[c]})
	}
	return f
}

// recordFormPage shows the form of a new record, or of the record key.
func (s *Server) recordFormPage(w http.ResponseWriter, r *http.Request, rq *request) {
	table, site, it, ok := s.recordTarget(w, r, rq, r.URL.Query().Get, true)
	if !ok {
		return
	}
	fields, key := map[string]string{}, ""
	if it != nil {
		_, fields = registry.RecordFields(it)
		key, _ = registry.RecordKey(it)
	}
	f := newRecordForm(site, table, key, fields)
	s.nameForm(rq, &f, fields["person"], "", true)
	s.render(w, r, rq, http.StatusOK, "records_form", "records.form_title", f)
}

// recordTarget returns the table of the request's path, and the site and
// the record named by the values get returns ("site", "key"), answering
// the refusal (false). With optional, no key is no record (nil).
func (s *Server) recordTarget(w http.ResponseWriter, r *http.Request, rq *request, get func(string) string, optional bool) (string, string, policy.Item, bool) {
	table, kind, ok := s.recordTable(w, r, rq)
	if !ok {
		return "", "", nil, false
	}
	site, key := get("site"), get("key")
	if !s.siteParam(w, r, rq, site) {
		return "", "", nil, false
	}
	if key == "" && optional {
		return table, site, nil, true
	}
	it, ok := s.storedRecord(w, r, rq, site, kind, key)
	return table, site, it, ok
}

// siteParam is siteOK for a page without a form of its own: a bad site
// name is answered with the error page.
func (s *Server) siteParam(w http.ResponseWriter, r *http.Request, rq *request, site string) bool {
	errs := map[string]string{}
	if !s.siteOK(w, r, rq, site, errs) {
		if len(errs) > 0 {
			s.fail(w, r, rq, http.StatusUnprocessableEntity, errs["site"])
		}
		return false
	}
	return true
}

// storedRecord returns the record key (of kind) at site, answering 404
// (false) when there is none.
func (s *Server) storedRecord(w http.ResponseWriter, r *http.Request, rq *request, site string, kind policy.RecordKind, key string) (policy.Item, bool) {
	id, err := registry.ItemOfKey(key)
	if err != nil || !strings.HasPrefix(key, fmt.Sprintf("%02x", byte(kind))) {
		s.fail(w, r, rq, http.StatusNotFound, "records.not_found")
		return nil, false
	}
	it, found, err := s.cfg.Records.Get(site, id)
	if err != nil {
		s.log.Error("console: read record", "site", site, "kind", kind, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return nil, false
	}
	if !found {
		s.fail(w, r, rq, http.StatusNotFound, "records.not_found")
		return nil, false
	}
	return it, true
}

// saveRecord validates a record form and applies it: a new record, or a
// change of the record key (when its identity changed, the old record is
// deleted in the same transaction). Nothing is applied on an error: the
// form comes back with the field at fault named.
func (s *Server) saveRecord(w http.ResponseWriter, r *http.Request, rq *request) {
	table, kind, ok := s.recordTable(w, r, rq)
	if !ok {
		return
	}
	site, key := r.PostFormValue("site"), r.PostFormValue("key")
	fields := map[string]string{}
	for _, c := range registry.FormColumns(table) {
		fields[c] = r.PostFormValue(c)
	}
	f := newRecordForm(site, table, key, fields)
	s.nameForm(rq, &f, "", r.PostFormValue(personNameField), false)
	if !s.siteOK(w, r, rq, site, f.Errors) {
		if len(f.Errors) > 0 {
			f.Errors["site"] = rq.lang.T(f.Errors["site"])
			s.render(w, r, rq, http.StatusUnprocessableEntity, "records_form", "records.form_title", f)
		}
		return
	}
	var old policy.Item
	if key != "" {
		if old, ok = s.storedRecord(w, r, rq, site, kind, key); !ok {
			return
		}
	}
	it, err := registry.ParseRecord(table, fields)
	if err != nil {
		s.refuseRecord(w, r, rq, f, err)
		return
	}
	if !checkName(&f) {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "records_form", "records.form_title", f)
		return
	}
	ch := registry.Change{Put: []policy.Item{it}}
	if newKey, _ := registry.RecordKey(it); newKey != key {
		if _, found, err := s.cfg.Records.Get(site, it); err == nil && found {
			if id := identityField(table, fields); id != "" {
				f.Errors[id] = rq.lang.T("records.exists")
			} else {
				f.Problem = rq.lang.T("records.exists")
			}
			s.render(w, r, rq, http.StatusUnprocessableEntity, "records_form", "records.form_title", f)
			return
		}
		if old != nil {
			ch.Delete = []policy.Item{old}
		}
	}
	action, apply := "record_put", func() (registry.Applied, error) { return s.cfg.Records.Apply(r.Context(), site, ch) }
	if rv, isRev := it.(policy.Revocation); isRev && old == nil {
		// A new revocation is a revoke: the certificate's credential goes too.
		action, apply = "revoke", func() (registry.Applied, error) { return s.cfg.Records.Revoke(r.Context(), site, policy.CertRef(rv)) }
	}
	a, err := apply()
	if err != nil {
		s.refuseRecord(w, r, rq, f, err)
		return
	}
	s.record(rq, audit.Entry{Action: action, Target: site + " " + table + " " + recordName(it), Before: recordJSON(old), After: recordJSON(it)})
	if p, ok := it.(policy.Person); ok {
		oldID := ""
		if op, ok := old.(policy.Person); ok {
			oldID = op.ID
		}
		s.saveName(rq, &f, oldID, p.ID)
	}
	s.backToList(w, r, site, table, "saved", a)
}

// refuseRecord shows the form again with the registry's refusal: the
// field at fault named, nothing applied.
func (s *Server) refuseRecord(w http.ResponseWriter, r *http.Request, rq *request, f recordForm, err error) {
	if !errors.Is(err, registry.ErrInvalid) {
		s.log.Error("console: save record", "site", f.Site, "table", f.Table, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	var le *registry.LineError
	switch {
	case errors.As(err, &le) && slices.Contains(registry.FormColumns(f.Table), le.Column):
		f.Errors[le.Column] = le.Err.Error()
	case le != nil:
		f.Problem = le.Err.Error()
	default:
		f.Problem = err.Error()
	}
	s.render(w, r, rq, http.StatusUnprocessableEntity, "records_form", "records.form_title", f)
}

// identityField is the field naming a record of table.
func identityField(table string, fields map[string]string) string {
	if table == "credentials" && fields["type"] == "freearea" {
		return "free_area_id"
	}
	return registry.IdentityField(table)
}

// recordName names a record in the audit log: its kind and key (IDs
// and serials, no names).
func recordName(it policy.Item) string {
	key, err := registry.RecordKey(it)
	if err != nil {
		return fmt.Sprintf("%T", it)
	}
	return key
}

// recordJSON returns a record's fields as JSON for the audit log ("" for
// none).
func recordJSON(it policy.Item) string {
	if it == nil {
		return ""
	}
	table, fields := registry.RecordFields(it)
	b, _ := json.Marshal(map[string]any{"table": table, "fields": fields})
	return string(b)
}

// backToList sends the browser to the list of table at site with the
// notice of what was done and the site's revision.
func (s *Server) backToList(w http.ResponseWriter, r *http.Request, site, table, done string, a registry.Applied) {
	q := url.Values{"site": {site}, "done": {done}, "rev": {fmt.Sprint(a.Rev)}}
	http.Redirect(w, r, "/records/"+table+"?"+q.Encode(), http.StatusSeeOther)
}

// recordDeleteData is the delete confirmation's data.
type recordDeleteData struct {
	Site, Table, Key string
	Form             recordForm
}

// deleteConfirm shows a record and asks to confirm its deletion.
func (s *Server) deleteConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	table, site, it, ok := s.recordTarget(w, r, rq, r.URL.Query().Get, false)
	if !ok {
		return
	}
	key, _ := registry.RecordKey(it)
	_, fields := registry.RecordFields(it)
	s.render(w, r, rq, http.StatusOK, "records_delete", "records.delete_title",
		recordDeleteData{Site: site, Table: table, Key: key, Form: newRecordForm(site, table, key, fields)})
}

// deleteRecord deletes a confirmed record (one registry transaction),
// audited with the record before.
func (s *Server) deleteRecord(w http.ResponseWriter, r *http.Request, rq *request) {
	table, site, it, ok := s.recordTarget(w, r, rq, r.PostFormValue, false)
	if !ok {
		return
	}
	key, _ := registry.RecordKey(it)
	a, err := s.cfg.Records.Apply(r.Context(), site, registry.Change{Delete: []policy.Item{it}})
	if err != nil {
		s.log.Error("console: delete record", "site", site, "table", table, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	s.record(rq, audit.Entry{Action: "record_delete", Target: site + " " + table + " " + key, Before: recordJSON(it)})
	s.forgetName(site, it)
	s.backToList(w, r, site, table, "deleted", a)
}
