package console

import (
	"net/http"
	"strconv"

	"github.com/tobira-ac/tobira/hq/console/audit"
)

// auditData is the audit page's data.
type auditData struct {
	Entries []audit.Entry
	// Next is the "before" of the next (older) page, 0 on the last.
	Next uint64
	// Verified is set when the page was asked to check the chain.
	Verified bool
	// Count and Head are what Verify returned; VerifyError its error.
	Count       uint64
	Head        string
	VerifyError string
}

// auditPage lists the audit log, newest first, a page at a time; with
// verify=1 it checks the chain of hashes too.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, rq *request) {
	before, _ := strconv.ParseUint(r.URL.Query().Get("before"), 10, 64)
	entries, err := s.cfg.Audit.Page(before, pageSize+1)
	if err != nil {
		s.log.Error("console: audit page", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	d := auditData{Entries: entries}
	if len(entries) > pageSize {
		d.Entries = entries[:pageSize]
		d.Next = d.Entries[pageSize-1].Seq
	}
	if r.URL.Query().Get("verify") == "1" {
		d.Verified = true
		if d.Count, d.Head, err = s.cfg.Audit.Verify(); err != nil {
			d.VerifyError = err.Error()
		}
	}
	s.render(w, r, rq, http.StatusOK, "audit", "audit.title", d)
}

// auditExport exports the whole log as CSV (/audit.csv) or JSON lines
// (/audit.json); the export is itself recorded first.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, rq *request) {
	format := "csv"
	if r.URL.Path == "/audit.json" {
		format = "json"
	}
	s.record(rq, audit.Entry{Action: "export_audit", Target: format})
	w.Header().Set("Content-Disposition", `attachment; filename="tobira-audit.`+format+`"`)
	write := s.cfg.Audit.WriteJSON
	w.Header().Set("Content-Type", "application/x-ndjson")
	if format == "csv" {
		write = s.cfg.Audit.WriteCSV
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	}
	// Send the header (which commits the session, a write to the same
	// bbolt file) before the export's read transaction: bbolt may wait
	// for read transactions to end before it writes.
	w.WriteHeader(http.StatusOK)
	err := write(w)
	if err != nil {
		s.log.Warn("console: audit export", "user", rq.user.Name, "err", err)
	}
}
