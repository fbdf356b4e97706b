package console

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/i18n"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// testKID is an issuer key ID of the record tests.
const testKID = "00112233445566778899aabbccddeeff00112233"

// form returns url.Values of site and the pairs kv.
func form(site string, kv ...string) url.Values {
	v := url.Values{"site": {site}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// TestRecordFormValidation posts a bad field of every table's form, in
// both languages: the page names the field (its label in the page's
// language, the registry's message as a CSV import gives it) and
// nothing is applied.
func TestRecordFormValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		table  string
		values url.Values
		field  string
		msg    string
	}{
		{"people", form("tokyo", "person", ""), "person", "empty ID"},
		{"people", form("tokyo", "person", "p-1", "valid_from", "next tuesday"), "valid_from", "want RFC 3339"},
		{"people", form("tokyo", "person", "p-1", "valid_from", "2026-05-01T00:00:00Z", "valid_until", "2026-04-01T00:00:00Z"), "valid_until", "validity window"},
		{"credentials", form("tokyo", "type", "cert", "issuer_key_id", "abc", "serial", "01", "person", "p-1"), "issuer_key_id", "want 40 hex digits"},
		{"credentials", form("tokyo", "type", "cert", "issuer_key_id", testKID, "serial", "xyz", "person", "p-1"), "serial", "is not hex"},
		{"credentials", form("tokyo", "type", "cert", "issuer_key_id", testKID, "serial", "01"), "person", "required"},
		{"credentials", form("tokyo", "type", "freearea", "person", "p-1"), "free_area_id", "required for type freearea"},
		{"credentials", form("tokyo", "type", "cert", "issuer_key_id", testKID, "serial", "01", "person", "p-1", "valid_until", "soon"), "valid_until", "want RFC 3339"},
		{"links", form("tokyo", "issuer_key_id", testKID, "serial", "01", "previous_issuer_key_id", testKID, "previous_serial", "zz"), "previous_serial", "is not hex"},
		{"revocations", form("tokyo", "issuer_key_id", testKID, "serial", ""), "serial", "zero or empty"},
		{"doors", form("tokyo", "door", "main", "default_mode", "ajar"), "default_mode", "unknown default mode"},
		{"doors", form("tokyo", "door", "main", "modes", "office"), "modes", "want schedule=mode"},
		{"areas", form("tokyo", "area", "hall", "passback", "timed"), "reentry", "positive reentry"},
		{"areas", form("tokyo", "area", "hall", "reentry", "a while"), "reentry", "want a duration"},
		{"levels", form("tokyo", "level", "l1", "group", "staff"), "door_group", "door group ID is empty"},
		{"levels", form("tokyo", "level", "l1", "door_group", "front"), "group", "group ID is empty"},
		{"schedules", form("tokyo", "schedule", "office", "windows", "mon 09:00"), "windows", "want days start end"},
		{"schedules", form("tokyo", "schedule", "office", "windows", "mon 09:00 25:00"), "windows", "out of range"},
		{"schedules", form("tokyo", "schedule", "office", "special", "2026-02-30"), "special", "want YYYY-MM-DD"},
		{"holidays", form("tokyo", "date", "new year"), "date", "holiday date"},
		{"events", form("tokyo", "event", "live", "start", "2026-04-01T18:00:00Z", "end", "2026-04-01T17:00:00Z", "door_group", "gates"), "end", "is empty"},
		{"events", form("tokyo", "event", "live", "start", "tonight", "door_group", "gates"), "start", "want RFC 3339"},
		{"site", form("tokyo", "time_zone", "Mars/Olympus"), "time_zone", "Mars/Olympus"},
		{"site", form("tokyo", "max_revocation_age", "a week"), "max_revocation_age", "want a duration"},
		{"people", form("to kyo", "person", "p-1"), "site", ""},
	}
	for _, lang := range i18n.Langs {
		c := e.login("admin")
		e.get(c, "/lang/"+string(lang))
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s %s %s", lang, tt.table, tt.field), func(t *testing.T) {
				res, body := e.post(c, "/records/"+tt.table+"/edit", tt.values)
				if res.StatusCode != http.StatusUnprocessableEntity {
					t.Errorf("status %d, want 422", res.StatusCode)
				}
				label := lang.T("field." + tt.field)
				if tt.field == "site" {
					label = lang.T("col.site")
				}
				want := fmt.Sprintf(`id="error-%s">%s: `, tt.field, label)
				if !strings.Contains(body, want) || !strings.Contains(body, tt.msg) || !strings.Contains(body, lang.T("records.refused")) {
					t.Errorf("page lacks %q and %q:\n%s", want, tt.msg, body)
				}
			})
		}
	}
	if rev, err := e.reg.Revision("tokyo"); err != nil || rev != 0 {
		t.Errorf("tokyo at revision %d, %v: a refused form applied something", rev, err)
	}
}

// location returns the redirect target of res.
func location(t *testing.T, res *http.Response) string {
	t.Helper()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d, want 303", res.StatusCode)
	}
	return res.Header.Get("Location")
}

// auditEntries returns the audit entries of action.
func (e *env) auditEntries(action string) []audit.Entry {
	var out []audit.Entry
	_ = e.audit.Each(func(en audit.Entry) error {
		if en.Action == action {
			out = append(out, en)
		}
		return nil
	})
	return out
}

// TestRecordLifecycle creates, edits (renames), and deletes a record in
// the forms: each is one registry revision, audited with before and
// after; a record that exists is not created twice.
func TestRecordLifecycle(t *testing.T) {
	e := newEnv(t)
	c := e.login("admin")
	res, _ := e.post(c, "/records/people/edit", form("tokyo", "person", "p-1", "groups", "staff; night"))
	if got := location(t, res); got != "/records/people?done=saved&rev=1&site=tokyo" {
		t.Errorf("after create: %s", got)
	}
	_, body := e.get(c, "/records/people?done=saved&rev=1&site=tokyo")
	key := hex.EncodeToString([]byte("Pp-1"))
	for _, w := range []string{`id="records-notice"`, `id="record-` + key + `"`, "staff; night", "/records/people/edit?site=tokyo&amp;key=" + key} {
		if !strings.Contains(body, w) {
			t.Errorf("list lacks %q:\n%s", w, body)
		}
	}
	res, body = e.post(c, "/records/people/edit", form("tokyo", "person", "p-1"))
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error-person"`) {
		t.Errorf("creating p-1 again: status %d:\n%s", res.StatusCode, body)
	}
	_, body = e.get(c, "/records/people/edit?site=tokyo&key="+key)
	if !strings.Contains(body, `value="p-1"`) || !strings.Contains(body, `value="staff; night"`) {
		t.Errorf("edit form lacks the record:\n%s", body)
	}
	res, _ = e.post(c, "/records/people/edit", form("tokyo", "key", key, "person", "p-2", "groups", "staff"))
	location(t, res)
	if _, ok, _ := e.reg.Get("tokyo", policy.Person{ID: "p-1"}); ok {
		t.Error("renamed p-1 is still there")
	}
	if it, ok, _ := e.reg.Get("tokyo", policy.Person{ID: "p-2"}); !ok || len(it.(policy.Person).Groups) != 1 {
		t.Errorf("p-2 = %v, %v", it, ok)
	}
	key2 := hex.EncodeToString([]byte("Pp-2"))
	res, body = e.get(c, "/records/people/delete?site=tokyo&key="+key2)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `id="confirm-delete"`) {
		t.Errorf("delete confirmation: %d:\n%s", res.StatusCode, body)
	}
	if _, ok, _ := e.reg.Get("tokyo", policy.Person{ID: "p-2"}); !ok {
		t.Error("the confirmation page deleted the record")
	}
	res, _ = e.post(c, "/records/people/delete", form("tokyo", "key", key2))
	location(t, res)
	if _, ok, _ := e.reg.Get("tokyo", policy.Person{ID: "p-2"}); ok {
		t.Error("deleted p-2 is still there")
	}
	if rev, _ := e.reg.Revision("tokyo"); rev != 3 {
		t.Errorf("revision %d, want 3 (create, rename, delete)", rev)
	}
	puts, dels := e.auditEntries("record_put"), e.auditEntries("record_delete")
	if len(puts) != 2 || len(dels) != 1 {
		t.Fatalf("audit: %d puts, %d deletes", len(puts), len(dels))
	}
	if puts[0].Before != "" || !strings.Contains(puts[0].After, `"person":"p-1"`) ||
		!strings.Contains(puts[1].Before, `"person":"p-1"`) || !strings.Contains(puts[1].After, `"person":"p-2"`) ||
		!strings.Contains(dels[0].Before, `"person":"p-2"`) || dels[0].Actor != "admin" {
		t.Errorf("audit before/after: %+v %+v", puts, dels)
	}
	if res, _ := e.get(c, "/records/people/edit?site=tokyo&key="+key2); res.StatusCode != http.StatusNotFound {
		t.Errorf("edit of a deleted record: %d, want 404", res.StatusCode)
	}
	if res, _ := e.get(c, "/records/pets?site=tokyo"); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown table: %d, want 404", res.StatusCode)
	}
}

// TestRecordPagesAndSites pages through a kind with more records than a
// page, and refuses a site the account is not granted (audited).
func TestRecordPagesAndSites(t *testing.T) {
	e := newEnv(t)
	var ch registry.Change
	for i := range 2*recordsPageSize + 5 {
		ch.Put = append(ch.Put, policy.Person{ID: fmt.Sprintf("p-%03d", i)})
	}
	if _, err := e.reg.Apply(t.Context(), "osaka", ch); err != nil {
		t.Fatal(err)
	}
	c := e.login("auditor")
	seen, pages := 0, 0
	next := "/records/people?site=osaka"
	for next != "" {
		res, body := e.get(c, next)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", next, res.StatusCode)
		}
		seen += strings.Count(body, `<tr id="record-`)
		if strings.Contains(body, `class="edit"`) {
			t.Error("the auditor is offered to edit")
		}
		pages++
		next = ""
		if _, rest, ok := strings.Cut(body, `<a href="?`); ok {
			q, _, _ := strings.Cut(rest, `"`)
			next = "/records/people?" + strings.ReplaceAll(q, "&amp;", "&")
		}
	}
	if seen != 2*recordsPageSize+5 || pages != 3 {
		t.Errorf("%d records on %d pages, want %d on 3", seen, pages, 2*recordsPageSize+5)
	}
	if res, _ := e.get(c, "/records/people?site=osaka&after=zz"); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("bad cursor: %d, want 422", res.StatusCode)
	}
	ta := e.login("tokyo-admin")
	for _, req := range []func() *http.Response{
		func() *http.Response { res, _ := e.get(ta, "/records/people?site=osaka"); return res },
		func() *http.Response { res, _ := e.get(ta, "/records?site=osaka"); return res },
		func() *http.Response {
			res, _ := e.post(ta, "/records/people/edit", form("osaka", "person", "x"))
			return res
		},
		func() *http.Response {
			res, _ := e.post(ta, "/records/people/delete", form("osaka", "key", hex.EncodeToString([]byte("Pp-001"))))
			return res
		},
	} {
		if res := req(); res.StatusCode != http.StatusForbidden {
			t.Errorf("a site not granted: %d, want 403", res.StatusCode)
		}
	}
	if n, _ := e.reg.Count("osaka", policy.KindPerson); n != 2*recordsPageSize+5 {
		t.Errorf("osaka has %d people after refused changes", n)
	}
	if !strings.Contains(strings.Join(e.actions(), " "), "tokyo-admin:denied") {
		t.Error("refusal not audited")
	}
}

// testCA is a CA that signs CRLs in the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTestCA makes a CA.
func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign,
		SubjectKeyId: bytes.Repeat([]byte{0xab}, credential.KeyIDLen)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key}
}

// crl returns a CRL of the serials, signed by ca.
func (ca testCA) crl(t *testing.T, serials ...int64) []byte {
	t.Helper()
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range serials {
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// postCRL uploads a CRL and a CA certificate to /crl.
func (e *env) postCRL(c *http.Client, site string, crl, ca []byte) (*http.Response, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("site", site)
	for name, b := range map[string][]byte{"crl": crl, "ca": ca} {
		if b != nil {
			fw, _ := mw.CreateFormFile(name, name+".der")
			_, _ = fw.Write(b)
		}
	}
	mw.Close()
	res, err := c.Post(e.srv.URL+"/crl", mw.FormDataContentType(), &body)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestRevokeAndCRL revokes a certificate credential after confirmation
// (a clerk may), and imports a CRL: "N new", a wrong CA named on the CRL
// field, both audited.
func TestRevokeAndCRL(t *testing.T) {
	e := newEnv(t)
	kid, _ := hex.DecodeString(testKID)
	cert := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid, Serial: []byte{0x0a}}
	free := credential.Credential{Kind: credential.KindFreeArea, ID: "F1"}
	if _, err := e.reg.Apply(t.Context(), "tokyo", registry.Change{Put: []policy.Item{policy.Entry{Credential: cert, Person: "p-1"}, policy.Entry{Credential: free, Person: "p-1"}}}); err != nil {
		t.Fatal(err)
	}
	certKey, _ := registry.RecordKey(policy.Entry{Credential: cert})
	freeKey, _ := registry.RecordKey(policy.Entry{Credential: free})
	c := e.login("clerk")
	_, body := e.get(c, "/records/credentials?site=tokyo")
	if !strings.Contains(body, "/credentials/revoke?site=tokyo&amp;key="+certKey) || strings.Contains(body, "revoke?site=tokyo&amp;key="+freeKey) {
		t.Errorf("revoke links: want one on the certificate only:\n%s", body)
	}
	if res, _ := e.get(c, "/credentials/revoke?site=tokyo&key="+freeKey); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("revoke a free-area ID: %d, want 422", res.StatusCode)
	}
	res, body := e.get(c, "/credentials/revoke?site=tokyo&key="+certKey)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `id="confirm-revoke"`) {
		t.Fatalf("revoke confirmation: %d:\n%s", res.StatusCode, body)
	}
	res, _ = e.post(c, "/credentials/revoke", form("tokyo", "key", certKey))
	if got := location(t, res); !strings.Contains(got, "done=revoked") {
		t.Errorf("after revoke: %s", got)
	}
	if _, ok, _ := e.reg.Get("tokyo", policy.Entry{Credential: cert}); ok {
		t.Error("the revoked credential is still on the allowlist")
	}
	if _, ok, _ := e.reg.Get("tokyo", policy.Revocation{IssuerKeyID: kid, Serial: []byte{0x0a}}); !ok {
		t.Error("no revocation")
	}
	if rv := e.auditEntries("revoke"); len(rv) != 1 || !strings.Contains(rv[0].Before, `"serial":"0a"`) || rv[0].Actor != "clerk" {
		t.Errorf("revoke audit: %+v", rv)
	}

	// A revocation added in the revocations form removes the credential
	// too, as a revoke does.
	other10 := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid, Serial: []byte{0x10}}
	if _, err := e.reg.Apply(t.Context(), "tokyo", registry.Change{Put: []policy.Item{policy.Entry{Credential: other10, Person: "p-2"}}}); err != nil {
		t.Fatal(err)
	}
	admin := e.login("admin")
	res, _ = e.post(admin, "/records/revocations/edit", form("tokyo", "issuer_key_id", testKID, "serial", "10"))
	location(t, res)
	if _, ok, _ := e.reg.Get("tokyo", policy.Entry{Credential: other10}); ok {
		t.Error("a revocation from the form left its credential on the allowlist")
	}
	if rv := e.auditEntries("revoke"); len(rv) != 2 || rv[1].Actor != "admin" {
		t.Errorf("revoke audit: %+v", rv)
	}

	ca, other := newTestCA(t), newTestCA(t)
	res, body = e.postCRL(admin, "tokyo", ca.crl(t, 0x0a, 0x0b, 0x0c), other.cert.Raw)
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error-crl"`) || !strings.Contains(body, "CRL signature does not verify") {
		t.Errorf("CRL of another CA: %d:\n%s", res.StatusCode, body)
	}
	res, body = e.postCRL(admin, "tokyo", ca.crl(t, 0x0a), []byte("not a certificate"))
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error-ca"`) {
		t.Errorf("bad CA certificate: %d:\n%s", res.StatusCode, body)
	}
	if res, body = e.postCRL(admin, "tokyo", nil, ca.cert.Raw); !strings.Contains(body, `id="error-crl"`) {
		t.Errorf("no CRL file: %d:\n%s", res.StatusCode, body)
	}
	res, body = e.postCRL(admin, "tokyo", ca.crl(t, 0x0a, 0x0b, 0x0c), ca.cert.Raw)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "3 new revocations of 3 serials") {
		t.Errorf("CRL import: %d:\n%s", res.StatusCode, body)
	}
	if imp := e.auditEntries("crl_import"); len(imp) != 2 || !strings.Contains(imp[0].After, "nothing applied") || !strings.Contains(imp[1].After, "3 new") {
		t.Errorf("CRL audit: %+v", imp)
	}
	if res, _ := e.postCRL(c, "tokyo", ca.crl(t, 1), ca.cert.Raw); res.StatusCode != http.StatusForbidden {
		t.Errorf("a clerk imports a CRL: %d, want 403", res.StatusCode)
	}
}

// TestForgiveAPBAndModes sends forgive anti-passback with its
// credential after confirmation, and shows door modes in the page's
// language.
func TestForgiveAPBAndModes(t *testing.T) {
	e := newEnv(t)
	c := e.login("operator")
	res, body := e.get(c, "/doors/command?site=tokyo&device=gate-1&door=main&action=forgive_apb")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `id="credential"`) || strings.Contains(body, `id="error-credential"`) {
		t.Errorf("forgive's confirmation page: %d:\n%s", res.StatusCode, body)
	}
	for _, cred := range []string{"", "not hex"} {
		v := url.Values{"site": {"tokyo"}, "device": {"gate-1"}, "door": {"main"}, "action": {"forgive_apb"}, "credential": {cred}}
		if res, body := e.post(c, "/doors/command", v); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error-credential"`) {
			t.Errorf("forgive credential %q: %d", cred, res.StatusCode)
		}
	}
	v := url.Values{"site": {"tokyo"}, "device": {"gate-1"}, "door": {"main"}, "action": {"forgive_apb"}}
	v.Set("credential", "01ABCD")
	res, _ = e.post(c, "/doors/command", v)
	location(t, res)
	if n := len(e.cmd.sent); n != 1 || e.cmd.sent[0].Action != "forgive_apb" || e.cmd.sent[0].Credential != "01abcd" {
		t.Errorf("sent %+v", e.cmd.sent)
	}
	ev := hq.StoredEvent{Site: "tokyo", Device: "gate-1"}
	ev.Seq, ev.Type, ev.Door, ev.Time, ev.Credential, ev.Reason = 999, "decision", "main", time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC), "c0ffee", "passback"
	e.hq.events = append(e.hq.events, ev)
	link := `/doors/command?site=tokyo&amp;device=gate-1&amp;door=main&amp;action=forgive_apb&amp;credential=c0ffee`
	if _, body := e.get(c, "/events?site=tokyo"); !strings.Contains(body, link) {
		t.Errorf("the events page offers no forgive on a passback denial:\n%s", body)
	}
	if _, body := e.get(e.login("auditor"), "/events?site=tokyo"); strings.Contains(body, "forgive_apb") {
		t.Error("the events page offers the auditor to forgive")
	}
	e.get(c, "/lang/ja")
	if _, body := e.get(c, "/fleet"); !strings.Contains(body, "モード: 通常") && !strings.Contains(body, ": 通常") {
		t.Errorf("fleet shows the mode untranslated:\n%s", body)
	}
}

// TestPersonNameForm sets a person's name in the person form (roles
// that may see names): the name is kept apart from the record, shown on
// the people page to those roles only, each view audited, the change
// audited without the name; a bad name is named and nothing applied; a
// rename moves the name and a delete forgets it.
func TestPersonNameForm(t *testing.T) {
	e := newEnv(t)
	admin := e.login("admin")
	res, body := e.post(admin, "/records/people/edit", form("tokyo", "person", "p-1", personNameField, "Yamada\x1bTaro"))
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error-person_name"`) {
		t.Errorf("a name with a control character: %d:\n%s", res.StatusCode, body)
	}
	if rev, _ := e.reg.Revision("tokyo"); rev != 0 {
		t.Error("a refused name applied the person")
	}
	res, _ = e.post(admin, "/records/people/edit", form("tokyo", "person", "p-1", personNameField, "Yamada Taro"))
	location(t, res)
	if names, _ := e.reg.PersonNames("tokyo", []string{"p-1"}); names["p-1"] != "Yamada Taro" {
		t.Errorf("names %v", names)
	}
	if _, body := e.get(admin, "/records/people?site=tokyo"); !strings.Contains(body, "Yamada Taro") {
		t.Errorf("the administrator's people page lacks the name:\n%s", body)
	}
	if _, body := e.get(e.login("auditor"), "/records/people?site=tokyo"); strings.Contains(body, "Yamada Taro") {
		t.Error("the auditor sees a name")
	}
	if _, body := e.get(e.login("clerk"), "/records/people?site=tokyo"); !strings.Contains(body, "Yamada Taro") {
		t.Error("the clerk sees no name")
	}
	key := hex.EncodeToString([]byte("Pp-1"))
	res, _ = e.post(admin, "/records/people/edit", form("tokyo", "key", key, "person", "p-2", personNameField, "Yamada Taro"))
	location(t, res)
	if names, _ := e.reg.PersonNames("tokyo", []string{"p-1", "p-2"}); len(names) != 1 || names["p-2"] != "Yamada Taro" {
		t.Errorf("after the rename: names %v, want p-2's only", names)
	}
	res, _ = e.post(admin, "/records/people/delete", form("tokyo", "key", hex.EncodeToString([]byte("Pp-2"))))
	location(t, res)
	if names, _ := e.reg.PersonNames("tokyo", []string{"p-2"}); len(names) != 0 {
		t.Errorf("after the delete: names %v", names)
	}
	if views := e.auditEntries("view_names"); len(views) != 2 {
		t.Errorf("%d audited views of names, want 2 (administrator, clerk)", len(views))
	}
	sets := e.auditEntries("set_name")
	if len(sets) != 2 {
		t.Errorf("%d audited name changes, want 2", len(sets))
	}
	_ = e.audit.Each(func(en audit.Entry) error {
		if strings.Contains(en.Before+en.After+en.Target, "Yamada") {
			t.Errorf("the audit log holds the name: %+v", en)
		}
		return nil
	})
}
