package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/i18n"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// assetVersion is the first hex digits of each static file's SHA-256,
// added to its URL so a new release is fetched at once despite caching.
var assetVersion = func() map[string]string {
	v := map[string]string{}
	entries, _ := fs.ReadDir(staticFS, "static")
	for _, e := range entries {
		b, _ := staticFS.ReadFile("static/" + e.Name())
		h := sha256.Sum256(b)
		v[e.Name()] = hex.EncodeToString(h[:6])
	}
	return v
}()

// asset returns the URL of a static file, with its version.
func asset(name string) string { return "/static/" + name + "?v=" + assetVersion[name] }

// pages are the templates, each the layout with one page's "content".
var pages = func() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(template.FuncMap{"asset": asset, "list": func(xs ...string) []string { return xs }}).ParseFS(templateFS, "templates/layout.html"))
	out := map[string]*template.Template{}
	names, _ := fs.Glob(templateFS, "templates/*.html")
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, n))
	}
	return out
}()

// navItem is one link of the menu.
type navItem struct {
	Href, Key string
	Perm      auth.Perm
}

// nav is the menu, each item shown to the roles that may open it.
var nav = []navItem{
	{"/fleet", "nav.fleet", auth.PermFleet},
	{"/events", "nav.events", auth.PermEvents},
	{"/live", "nav.live", auth.PermEvents},
	{"/alarms", "nav.alarms", auth.PermAlarms},
	{"/enrollments", "nav.enrollments", auth.PermEnroll},
	{"/records", "nav.records", auth.PermRecords},
	{"/import", "nav.import", auth.PermImport},
	{"/audit", "nav.audit", auth.PermAudit},
}

// page is what every template gets.
type page struct {
	// L is the language of the page.
	L i18n.Lang
	// User is the logged-in account (nil on the login page).
	User *auth.User
	// Title is the message key of the page's title.
	Title string
	// Path is the page's own URL, for the language switch.
	Path string
	// Data is the page's own data.
	Data any
}

// T returns the message key in the page's language.
func (p page) T(key string, args ...any) string { return p.L.T(key, args...) }

// Time formats t in the page's language, in the server's time zone.
func (p page) Time(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return p.L.Time(t.Local())
}

// Langs are the languages of the switch.
func (p page) Langs() []i18n.Lang { return i18n.Langs }

// Nav returns the menu items the user may open.
func (p page) Nav() []navItem {
	var out []navItem
	for _, n := range nav {
		if p.User != nil && p.User.Role.Can(n.Perm) {
			out = append(out, n)
		}
	}
	return out
}

// Can reports whether the user has permission perm.
func (p page) Can(perm string) bool { return p.User != nil && p.User.Role.Can(auth.Perm(perm)) }

// render writes template name with data for rq, with status.
func (s *Server) render(w http.ResponseWriter, r *http.Request, rq *request, status int, name, title string, data any) {
	var buf bytes.Buffer
	p := page{L: rq.lang, User: rq.user, Title: title, Path: r.URL.RequestURI(), Data: data}
	if err := pages[name].Execute(&buf, p); err != nil {
		s.log.Error("cannot render console page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", string(rq.lang))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders the error page with status and the message key msg.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, rq *request, status int, msg string) {
	s.render(w, r, rq, status, "error", "error.title", msg)
}

// static serves an embedded asset; with the right version it may be
// cached for a year.
func (s *Server) static(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	b, err := staticFS.ReadFile("static/" + name)
	if err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return
	}
	if v := r.URL.Query().Get("v"); v != "" && v == assetVersion[name] {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	_, _ = w.Write(b)
}

// setLang remembers the language chosen with the switch and returns to
// the page it was chosen on.
func (s *Server) setLang(w http.ResponseWriter, r *http.Request, _ *request) {
	if l, ok := i18n.Parse(r.PathValue("lang")); ok {
		http.SetCookie(w, &http.Cookie{Name: langCookie, Value: string(l), Path: "/", MaxAge: 365 * 24 * 3600,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.cfg.SecureCookie})
	}
	http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}

// localPath returns next when it is a path on this server, else "/" (no
// open redirect to another site).
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

// home sends the account to its first page.
func (s *Server) home(w http.ResponseWriter, r *http.Request, rq *request) {
	to := "/events"
	if rq.user.Role.Can(auth.PermFleet) {
		to = "/fleet"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
