package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Importer imports CSV tables into HQ's registry: every line or none
// (registry.Registry has it; tobira-hq opens the file for each import).
type Importer interface {
	// ImportCSV validates every line of table read from in (named name
	// in errors) and applies them all to site, or none: its error then
	// wraps registry.ErrInvalid and the registry.LineErrors.
	ImportCSV(ctx context.Context, site, table, name string, in io.Reader) (registry.Applied, error)
}

// maxImportBytes bounds an uploaded CSV file (a million credentials is
// about 100 MB: import those with the CLI).
const maxImportBytes = 32 << 20

// importData is the import page's data.
type importData struct {
	Site, Table string
	Tables      []string
	// Errors maps a field to the message key of its error.
	Errors map[string]string
	// Done is the result of a successful import.
	Done *registry.Applied
	// Summary is the registry's refusal, and Lines its line errors.
	Summary string
	Lines   []*registry.LineError
}

// importPage shows the import form.
func (s *Server) importPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.cfg.Import == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "import.disabled")
		return
	}
	s.render(w, r, rq, http.StatusOK, "import", "import.title", importData{Tables: registry.Tables, Errors: map[string]string{}})
}

// importCSV imports an uploaded CSV table and shows the result: what
// was applied, or every bad line and that nothing was applied.
func (s *Server) importCSV(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.cfg.Import == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "import.disabled")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBytes)
	d := importData{Site: r.PostFormValue("site"), Table: r.PostFormValue("table"), Tables: registry.Tables, Errors: map[string]string{}}
	file, header, err := r.FormFile("csv")
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		d.Errors["csv"] = "import.too_big"
	case err != nil:
		d.Errors["csv"] = "import.need_file"
	default:
		defer file.Close()
	}
	if proto.CheckName(d.Site) != nil {
		d.Errors["site"] = "import.bad_site"
	} else if !rq.user.CanSite(d.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "import " + d.Site})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return
	}
	if !slices.Contains(registry.Tables, d.Table) {
		d.Errors["table"] = "import.bad_table"
	}
	if len(d.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "import", "import.title", d)
		return
	}
	a, err := s.cfg.Import.ImportCSV(r.Context(), d.Site, d.Table, header.Filename, file)
	e := audit.Entry{Action: "import", Target: d.Site + " " + d.Table + " " + header.Filename}
	if err != nil {
		d.Summary, d.Lines = importProblems(err)
		e.After = "nothing applied: " + d.Summary
		s.record(rq, e)
		status := http.StatusUnprocessableEntity
		if !errors.Is(err, registry.ErrInvalid) {
			s.log.Error("console: import", "site", d.Site, "table", d.Table, "err", err)
			status = http.StatusInternalServerError
		}
		s.render(w, r, rq, status, "import", "import.title", d)
		return
	}
	e.After = fmt.Sprintf("put %d, deleted %d, revision %d", a.Put, a.Deleted, a.Rev)
	s.record(rq, e)
	d.Done = &a
	s.render(w, r, rq, http.StatusOK, "import", "import.title", d)
}

// importProblems returns the first line of an import's error and the
// line errors it wraps, in order.
func importProblems(err error) (string, []*registry.LineError) {
	summary, _, _ := strings.Cut(err.Error(), "\n")
	var lines []*registry.LineError
	var walk func(error)
	walk = func(e error) {
		if le, ok := e.(*registry.LineError); ok {
			lines = append(lines, le)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	return strings.TrimSuffix(summary, ":"), lines
}
