package console

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq/pgstore/pgstoretest"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// replicas returns n consoles whose shared records are on one new
// PostgreSQL database, each on its own connection pool and file: tobira-hq
// replicas behind a load balancer, or one restarted.
func replicas(t *testing.T, n int) []*env {
	t.Helper()
	var out []*env
	for _, st := range pgstoretest.Replicas(t, n) {
		out = append(out, newEnvOn(t, Shared{Audit: st.AuditChain(), Alarms: st.Alarms(), Ops: st.ConsoleOps()}))
	}
	return out
}

// fakeReleases holds release 2.0.0 and offers it to any group.
type fakeReleases struct{}

func (fakeReleases) List() ([]firmware.Manifest, error) {
	return []firmware.Manifest{{Version: "2.0.0"}}, nil
}

func (fakeReleases) Rollout(_ context.Context, site, group, version string) ([]proto.ReleaseOffer, error) {
	return []proto.ReleaseOffer{{ID: "offer-" + site + "-" + group, Site: site, Group: group}}, nil
}

func (fakeReleases) Reports() []proto.ReleaseReport { return nil }

// TestOpsSharedByReplicas: a publication and a rollout started on one
// replica are listed and watched on another, and on a replica started
// afterwards (a restart); an account sees only its sites' ones.
func TestOpsSharedByReplicas(t *testing.T) {
	es := replicas(t, 3)
	for _, e := range es {
		e.con.cfg.Snapshots = &fakeSnapshots{f: e.hq}
		e.con.cfg.Releases = fakeReleases{}
	}
	a, b, restarted := es[0], es[1], es[2]
	res, _ := a.post(a.login("tokyo-admin"), "/publish", url.Values{"site": {"tokyo"}, "kind": {"full"}})
	pub := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(pub, "/publish/") {
		t.Fatalf("publish on A: %d to %q", res.StatusCode, pub)
	}
	res, _ = a.post(a.login("tokyo-admin"), "/releases/rollout", url.Values{"site": {"tokyo"}, "group": {"gates"}, "version": {"2.0.0"}})
	ro := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(ro, "/rollouts/") {
		t.Fatalf("rollout on A: %d to %q", res.StatusCode, ro)
	}
	res, _ = a.post(a.login("admin"), "/publish", url.Values{"site": {"osaka"}, "kind": {"full"}})
	osaka := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("publish osaka on A: %d", res.StatusCode)
	}
	tests := []struct {
		path, want string
	}{
		{pub, `id="pub-tokyo-gate-1" class="state-waiting"`},
		{ro, `id="rollout-none"`},
		{"/publish", `id="op-` + strings.TrimPrefix(pub, "/publish/") + `"`},
		{"/releases", `id="op-` + strings.TrimPrefix(ro, "/rollouts/") + `"`},
	}
	for name, e := range map[string]*env{"B": b, "restarted": restarted} {
		c := e.login("tokyo-admin")
		for _, tt := range tests {
			if res, body := e.get(c, tt.path); res.StatusCode != http.StatusOK || !strings.Contains(body, tt.want) {
				t.Errorf("%s %s: %d, want 200 with %s: %s", name, tt.path, res.StatusCode, tt.want, body)
			}
		}
		if _, body := e.get(c, "/publish"); strings.Contains(body, strings.TrimPrefix(osaka, "/publish/")) {
			t.Errorf("%s: tokyo's admin sees osaka's publication", name)
		}
		if res, _ := e.get(c, osaka); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: osaka's publication for tokyo's admin: %d, want 403", name, res.StatusCode)
		}
	}
}

// TestWrongPINsSharedByReplicas: wrong PINs at one door whose events went
// 2 to one replica and 1 to another raise one wrong_pin alarm, listed on
// both.
func TestWrongPINsSharedByReplicas(t *testing.T) {
	es := replicas(t, 2)
	wrong := proto.Event{Type: proto.TypeDecision, Door: "main", Reason: "pin_wrong"}
	for _, e := range []*env{es[0], es[1], es[0]} {
		e.con.Publish("tokyo", "gate-1", wrong)
	}
	for i, e := range es {
		_, body := e.get(e.login("admin"), "/alarms")
		if n := strings.Count(body, `data-kind="wrong_pin"`); n != 1 {
			t.Errorf("replica %d lists %d wrong_pin alarms, want 1: %s", i, n, body)
		}
	}
}
