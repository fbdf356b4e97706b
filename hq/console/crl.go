package console

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/registry"
)

// maxCRLBytes bounds an uploaded CRL and CA certificate together.
const maxCRLBytes = 16 << 20

// crlData is the CRL import page's data.
type crlData struct {
	Site string
	// Errors maps a field to its problem as the page shows it.
	Errors map[string]string
	// Done is the result of a successful import.
	Done *registry.CRLImport
}

// crlPage shows the CRL import form.
func (s *Server) crlPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.cfg.Records == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "records.disabled")
		return
	}
	s.render(w, r, rq, http.StatusOK, "records_crl", "crl.title", crlData{Site: r.URL.Query().Get("site"), Errors: map[string]string{}})
}

// importCRL imports an uploaded CRL, verified with the uploaded CA
// certificate (both PEM or DER, as tobira-hq crl import takes them),
// into a site's revocations, and shows how many serials were new.
func (s *Server) importCRL(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.cfg.Records == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "records.disabled")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxCRLBytes)
	d := crlData{Site: r.PostFormValue("site"), Errors: map[string]string{}}
	if !s.siteOK(w, r, rq, d.Site, d.Errors) && len(d.Errors) == 0 {
		return
	}
	for k, v := range d.Errors {
		d.Errors[k] = rq.lang.T(v)
	}
	crl, crlErr := uploaded(r, "crl")
	if crlErr != nil {
		d.Errors["crl"] = rq.lang.T(crlErr.Error())
	}
	var ca *x509.Certificate
	caDER, err := uploaded(r, "ca")
	if err == nil {
		if ca, err = x509.ParseCertificate(caDER); err != nil {
			d.Errors["ca"] = fmt.Sprintf("%s %v", rq.lang.T("crl.bad_ca"), err)
		}
	} else {
		d.Errors["ca"] = rq.lang.T(err.Error())
	}
	if len(d.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "records_crl", "crl.title", d)
		return
	}
	res, err := s.cfg.Records.ImportCRL(r.Context(), d.Site, crl, ca, s.clk.Now())
	e := audit.Entry{Action: "crl_import", Target: d.Site + " " + ca.Subject.String()}
	if err != nil {
		e.After = "nothing applied: " + err.Error()
		s.record(rq, e)
		switch {
		case errors.Is(err, registry.ErrCRLSignature):
			d.Errors["crl"] = rq.lang.T("crl.bad_signature") + " " + err.Error()
		case errors.Is(err, registry.ErrCRLTime):
			d.Errors["crl"] = rq.lang.T("crl.not_current") + " " + err.Error()
		case errors.Is(err, registry.ErrInvalid):
			d.Errors["crl"] = err.Error()
		default:
			s.log.Error("console: import CRL", "site", d.Site, "err", err)
			s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
			return
		}
		s.render(w, r, rq, http.StatusUnprocessableEntity, "records_crl", "crl.title", d)
		return
	}
	e.After = fmt.Sprintf("%d serials, %d new, thisUpdate %s, revision %d", res.Serials, res.New, res.ThisUpdate.Format("2006-01-02T15:04:05Z07:00"), res.Applied.Rev)
	s.record(rq, e)
	d.Done = &res
	s.render(w, r, rq, http.StatusOK, "records_crl", "crl.title", d)
}

// uploaded returns the uploaded file of field name, PEM-decoded when it
// is PEM; its error is the message key of the problem.
func uploaded(r *http.Request, name string) ([]byte, error) {
	f, _, err := r.FormFile(name)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, errors.New("crl.too_big")
	case err != nil:
		return nil, errors.New("crl.need_file")
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, errors.New("crl.need_file")
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	return b, nil
}
