package console

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/policy"
)

// postCSV uploads a CSV file named name to /import; name "" sends no
// file.
func (e *env) postCSV(c *http.Client, site, table, name, content string) (*http.Response, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("site", site)
	_ = mw.WriteField("table", table)
	if name != "" {
		fw, _ := mw.CreateFormFile("csv", name)
		_, _ = io.WriteString(fw, content)
	}
	mw.Close()
	res, err := c.Post(e.srv.URL+"/import", mw.FormDataContentType(), &body)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestImport checks the import form: each bad field is named, a file
// with a bad line shows that line and applies nothing, a good one is
// applied and audited, and another site's import is refused.
func TestImport(t *testing.T) {
	e := newEnv(t)
	admin := e.login("admin")
	const good = "person,groups\np-1,staff\np-2,staff\n"
	const bad = "person,valid_from,groups\np-3,,staff\np-4,next tuesday,staff\np-5,,staff\n"
	tests := []struct {
		name, site, table, file, content string
		status                           int
		want                             []string
	}{
		{"no site", "", "people", "p.csv", good, http.StatusUnprocessableEntity, []string{`id="error-site"`}},
		{"bad site", "to kyo", "people", "p.csv", good, http.StatusUnprocessableEntity, []string{`id="error-site"`}},
		{"unknown table", "tokyo", "pets", "p.csv", good, http.StatusUnprocessableEntity, []string{`id="error-table"`}},
		{"no file", "tokyo", "people", "", "", http.StatusUnprocessableEntity, []string{`id="error-csv"`}},
		{"bad line", "tokyo", "people", "bad.csv", bad, http.StatusUnprocessableEntity,
			[]string{`id="import-summary"`, "Nothing was applied.", `<tr id="line-3"><td>3</td><td>valid_from</td>`}},
		{"bad header", "tokyo", "people", "h.csv", "who\np-1\n", http.StatusUnprocessableEntity,
			[]string{`id="import-summary"`, "h.csv:1: who: unknown column"}},
		{"good", "tokyo", "people", "good.csv", good, http.StatusOK, []string{`id="import-done"`, "2 records put"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.postCSV(admin, tt.site, tt.table, tt.file, tt.content)
			if res.StatusCode != tt.status {
				t.Errorf("status %d, want %d", res.StatusCode, tt.status)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
		})
	}
	if n, err := e.reg.Count("tokyo", policy.KindPerson); err != nil || n != 2 {
		t.Errorf("people at tokyo: %d, %v; want the 2 of the good file only", n, err)
	}
	ta := e.login("tokyo-admin")
	if res, _ := e.postCSV(ta, "osaka", "people", "good.csv", good); res.StatusCode != http.StatusForbidden {
		t.Errorf("import into a site not granted: status %d, want 403", res.StatusCode)
	}
	acts := strings.Join(e.actions(), " ")
	for _, want := range []string{"admin:import", "tokyo-admin:denied"} {
		if !strings.Contains(acts, want) {
			t.Errorf("audit log lacks %s: %s", want, acts)
		}
	}
}
