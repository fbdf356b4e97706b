package console

import (
	"net/http"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// revokeData is the revocation confirmation's data.
type revokeData struct {
	Site, Key string
	Form      recordForm
}

// revokeTarget returns the certificate credential key of the request's
// site, answering the refusal (false): a bad or ungranted site, no such
// credential, or one that is not a certificate.
func (s *Server) revokeTarget(w http.ResponseWriter, r *http.Request, rq *request, site, key string) (policy.Entry, bool) {
	if s.cfg.Records == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "records.disabled")
		return policy.Entry{}, false
	}
	if !s.siteParam(w, r, rq, site) {
		return policy.Entry{}, false
	}
	it, ok := s.storedRecord(w, r, rq, site, policy.KindCredential, key)
	if !ok {
		return policy.Entry{}, false
	}
	e := it.(policy.Entry)
	if e.Credential.Kind != credential.KindCertSerial {
		s.fail(w, r, rq, http.StatusUnprocessableEntity, "revoke.not_cert")
		return policy.Entry{}, false
	}
	return e, true
}

// revokeConfirm shows a certificate credential and asks to confirm its
// revocation.
func (s *Server) revokeConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	site, key := r.URL.Query().Get("site"), r.URL.Query().Get("key")
	e, ok := s.revokeTarget(w, r, rq, site, key)
	if !ok {
		return
	}
	_, fields := registry.RecordFields(e)
	s.render(w, r, rq, http.StatusOK, "records_revoke", "revoke.title",
		revokeData{Site: site, Key: key, Form: newRecordForm(site, "credentials", key, fields)})
}

// revoke revokes a confirmed certificate credential (registry.Revoke:
// the revocation added and the credential removed in one revision),
// audited with the credential before.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, rq *request) {
	site, key := r.PostFormValue("site"), r.PostFormValue("key")
	e, ok := s.revokeTarget(w, r, rq, site, key)
	if !ok {
		return
	}
	a, err := s.cfg.Records.Revoke(r.Context(), site, policy.CertRef{IssuerKeyID: e.Credential.IssuerKeyID, Serial: e.Credential.Serial})
	if err != nil {
		s.log.Error("console: revoke", "site", site, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	s.record(rq, audit.Entry{Action: "revoke", Target: site + " " + key, Before: recordJSON(e), After: recordJSON(policy.Revocation{IssuerKeyID: e.Credential.IssuerKeyID, Serial: e.Credential.Serial})})
	s.backToList(w, r, site, "credentials", "revoked", a)
}
