package pgtest_test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Each DB is a fresh, separate database on the shared server.
func TestDBIsFreshAndSeparate(t *testing.T) {
	a, b := pgtest.DB(t), pgtest.DB(t)
	if a == b {
		t.Fatalf("two databases share the URL %s", a)
	}
	c, err := pgx.Connect(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	if _, err := c.Exec(t.Context(), "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	d, err := pgx.Connect(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(t.Context())
	var n int
	if err := d.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees %d tables x, %v; want 0", n, err)
	}
}

// TestStop: after Stop the server is gone (its port refuses connections)
// and a throw-away cluster's directory too; a kept cluster (Options.Dir)
// was shut down cleanly, so the next Start finds its data without crash
// recovery.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		kept bool
	}{
		{"throw-away", false},
		{"kept", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := tempDir(t)
			t.Setenv("TMPDIR", tmp)
			var opt pgtest.Options
			if tc.kept {
				opt.Dir = filepath.Join(tmp, "kept")
			}
			srv := start(t, opt)
			execSQL(t, srv.URL("postgres"), "CREATE TABLE survives (n int)")
			addr := hostOf(t, srv.URL("postgres"))
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Fatalf("%s accepts connections after Stop", addr)
			}
			left, _ := filepath.Glob(filepath.Join(tmp, "*"))
			if !tc.kept {
				if len(left) != 0 {
					t.Fatalf("Stop left %v", left)
				}
				return
			}
			srv = start(t, opt)
			defer srv.Stop()
			execSQL(t, srv.URL("postgres"), "SELECT * FROM survives")
			log, err := os.ReadFile(filepath.Join(opt.Dir, "log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(log), "database system was shut down at") || strings.Contains(string(log), "redo starts") {
				t.Fatalf("the kept cluster was not shut down cleanly; its log:\n%s", log)
			}
		})
	}
}

// start starts a server with opt or ends t.
func start(t *testing.T, opt pgtest.Options) *pgtest.Server {
	t.Helper()
	srv, err := pgtest.Start(t.Context(), opt)
	if err != nil {
		pgtest.Unavailable(t, err)
	}
	return srv
}

// execSQL runs sql in the database at url or fails t.
func execSQL(t *testing.T, url, sql string) {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	if _, err := c.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// hostOf returns the host:port of a URL.
func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
