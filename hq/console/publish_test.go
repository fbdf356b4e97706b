package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/sync/proto"
)

// fakeSnapshots publishes version 7 to every device of the fake fleet's
// site, one manifest each, and records what it was asked.
type fakeSnapshots struct {
	mu     sync.Mutex
	f      *fakeHQ
	groups map[string][]string
	asked  []string
	err    error
}

func (p *fakeSnapshots) SnapshotGroups(_ context.Context, site string) ([]string, error) {
	return p.groups[site], nil
}

func (p *fakeSnapshots) PublishSnapshot(_ context.Context, site, group string, delta bool) ([]proto.Manifest, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, where(site, group)+map[bool]string{true: " delta", false: " full"}[delta])
	if p.err != nil {
		return nil, p.err
	}
	var out []proto.Manifest
	for _, d := range p.f.devs {
		if d.Site == site {
			out = append(out, proto.Manifest{Transfer: "t-" + d.Device, Site: site, Device: d.Device, Type: proto.SnapshotFull,
				Version: 7, ContentHash: "aa"})
		}
	}
	return out, nil
}

// TestPublishSnapshot walks a publication: the form's validation field
// by field, a site not granted refused, the confirmation page sends
// nothing, the confirmed publication is audited, and its page shows each
// device waiting, then applied (the version and hash it reports) or
// failed (its result).
func TestPublishSnapshot(t *testing.T) {
	e := newEnv(t)
	snaps := &fakeSnapshots{f: e.hq, groups: map[string][]string{"tokyo": {"lobby"}}}
	e.hq.devs = append(e.hq.devs, e.hq.devs[1])
	e.hq.devs[2].Device = "gate-2"
	admin := e.login("admin")
	if res, _ := e.get(admin, "/publish"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("publish without a publisher: %d, want 503", res.StatusCode)
	}
	e.con.cfg.Snapshots = snaps

	bad := []struct{ query, field string }{
		{"site=&kind=full", "error-site"},
		{"site=tokyo&group=attic&kind=full", "error-group"},
		{"site=tokyo&kind=half", "error-kind"},
	}
	for _, tt := range bad {
		if res, body := e.get(admin, "/publish/confirm?"+tt.query); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tt.field) ||
			strings.Contains(body, `id="no-publications"`) {
			t.Errorf("%s: %d, want 422 naming %s", tt.query, res.StatusCode, tt.field)
		}
	}
	tokyo := e.login("tokyo-admin")
	if res, _ := e.get(tokyo, "/publish/confirm?site=osaka&kind=full"); res.StatusCode != http.StatusForbidden {
		t.Errorf("osaka for tokyo's admin: %d", res.StatusCode)
	}
	if res, _ := e.post(e.login("operator"), "/publish", url.Values{"site": {"tokyo"}, "kind": {"full"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("operator publishes: %d", res.StatusCode)
	}
	if res, body := e.get(tokyo, "/publish?site=tokyo"); res.StatusCode != http.StatusOK || !strings.Contains(body, `value="lobby"`) || strings.Contains(body, "osaka") {
		t.Errorf("form: %d, want tokyo's group and no osaka", res.StatusCode)
	}
	if res, body := e.get(tokyo, "/publish/confirm?site=tokyo&kind=delta"); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="confirm"`) ||
		!strings.Contains(body, "gate-2") {
		t.Fatalf("confirmation: %d", res.StatusCode)
	}
	if len(snaps.asked) != 0 {
		t.Fatal("the confirmation page published")
	}
	if _, body := e.get(tokyo, "/publish"); !strings.Contains(body, `id="no-publications"`) {
		t.Errorf("the form lists publications before any: %s", body)
	}
	res, _ := e.post(tokyo, "/publish", url.Values{"site": {"tokyo"}, "kind": {"delta"}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/publish/") || strings.Join(snaps.asked, ",") != "tokyo delta" {
		t.Fatalf("publish: %d to %q, asked %v", res.StatusCode, loc, snaps.asked)
	}
	if _, body := e.get(tokyo, "/publish"); !strings.Contains(body, `id="op-`+strings.TrimPrefix(loc, "/publish/")+`"`) {
		t.Errorf("the form does not list the publication: %s", body)
	}
	if res, _ := e.get(e.login("admin"), "/publish/0123"); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown publication: %d", res.StatusCode)
	}

	_, body := e.get(tokyo, loc)
	if !strings.Contains(body, `id="publication-waiting"`) || strings.Count(body, `class="state-waiting"`) != 2 || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("watch page before the devices applied it: %s", body)
	}
	e.hq.mu.Lock()
	e.hq.devs[1].Status.Snapshot = proto.SnapshotStatus{Version: 7, Hash: "aa"}
	e.hq.results["t-gate-2"] = proto.Result{ID: "t-gate-2", Site: "tokyo", Device: "gate-2", Kind: proto.KindSnapshot, Status: proto.ResultRefused, Error: "bad signature"}
	e.hq.mu.Unlock()
	_, body = e.get(tokyo, loc)
	if !strings.Contains(body, `id="publication-done"`) || !strings.Contains(body, `id="pub-tokyo-gate-1" class="state-applied"`) ||
		!strings.Contains(body, `id="pub-tokyo-gate-2" class="state-failed"`) || !strings.Contains(body, "bad signature") {
		t.Errorf("watch page after: %s", body)
	}

	snaps.err = errors.New("broker down")
	if res, _ := e.post(tokyo, "/publish", url.Values{"site": {"tokyo"}, "kind": {"full"}}); res.StatusCode != http.StatusBadGateway {
		t.Errorf("failed publication: %d, want 502", res.StatusCode)
	}
	var got []audit.Entry
	_ = e.audit.Each(func(en audit.Entry) error {
		if en.Action == "publish" {
			got = append(got, en)
		}
		return nil
	})
	if len(got) != 2 || got[0].Actor != "tokyo-admin" || got[0].Target != "tokyo" || !strings.Contains(got[0].After, `"transfer":"t-gate-2"`) ||
		!strings.Contains(got[1].After, "broker down") {
		t.Errorf("audit: %+v", got)
	}
}
