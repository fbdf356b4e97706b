package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// writeRelease puts a signed release of version into the release store
// dir as `tobira-release release publish` lays it out.
func writeRelease(t *testing.T, dir, version string) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bin := make([]byte, 4096)
	_, _ = rand.Read(bin)
	sum := sha256.Sum256(bin)
	now := time.Now().UTC().Truncate(time.Second)
	env, err := firmware.Sign(firmware.Manifest{Version: version, Arch: "linux/arm64", Size: int64(len(bin)), SHA256: hex.EncodeToString(sum[:]),
		Issued: now, Expires: now.Add(24 * time.Hour), Notes: "test release " + version}, key)
	if err != nil {
		t.Fatal(err)
	}
	vdir := filepath.Join(dir, version)
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, firmware.BinaryName), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, "release.json"), env, 0o644); err != nil {
		t.Fatal(err)
	}
}

// groupDevice answers release offers on site's group topic as a
// ReleaseAgent does, with retained release reports: each offer is
// installed (on trial), then healthy, or rolled back when the device is
// named in rollBack.
func groupDevice(t *testing.T, broker, site, group, device string, hqPub ed25519.PublicKey, rollBack bool) {
	t.Helper()
	v, err := signed.NewVerifier(hqPub)
	if err != nil {
		t.Fatal(err)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("dev-" + device))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s: connect: %v", device, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	report := func(st firmware.Status, o *proto.OfferOutcome) {
		b, _ := json.Marshal(proto.ReleaseReport{Site: site, Device: device, Time: time.Now().UTC(), Firmware: st, Offer: o})
		c.Publish(proto.ReleaseReportTopic(site, device), 1, true, b).Wait()
	}
	report(firmware.Status{Running: "1.0.0", Committed: "1.0.0"}, nil)
	tok := c.Subscribe(proto.ReleaseGroupTopic(site, group), 1, func(_ mqtt.Client, m mqtt.Message) {
		o, err := proto.OpenReleaseOffer(v, m.Payload())
		if err != nil {
			t.Errorf("device %s: offer: %v", device, err)
			return
		}
		rel, _ := firmware.PeekManifest(o.Manifest)
		done := &proto.OfferOutcome{ID: o.ID, Version: rel.Version, State: proto.OfferInstalled, Time: time.Now().UTC()}
		go func() {
			report(firmware.Status{Running: rel.Version, Committed: "1.0.0", Pending: rel.Version, Previous: "1.0.0"}, done)
			if rollBack {
				last := &firmware.Result{Version: rel.Version, From: "1.0.0", Outcome: firmware.OutcomeRolledBack, Reason: "health check failed"}
				report(firmware.Status{Running: "1.0.0", Committed: "1.0.0", Bad: []string{rel.Version}, Last: last}, done)
				return
			}
			report(firmware.Status{Running: rel.Version, Committed: rel.Version, Previous: "1.0.0"}, done)
		}()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s: subscribe: %v", device, tok.Error())
	}
}

// TestRollout rolls a release out to a group over a real broker and a
// real hq.ReleaseServer: the form's checks, the confirmation that sends
// nothing, the offer on the group's topic, each device's answer on the
// watch page (one healthy, one rolled back, one of another group absent)
// and the audit entry.
func TestRollout(t *testing.T) {
	e := newEnv(t)
	m := mosquittotest.Start(t)
	hqPub, hqPriv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	writeRelease(t, store, "2.0.0")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	srv, err := hq.DialReleaseServer(ctx, hq.Config{Broker: m.URL()}, hqPriv, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	groupDevice(t, m.URL(), "tokyo", "gates", "gate-1", hqPub, false)
	groupDevice(t, m.URL(), "tokyo", "gates", "gate-2", hqPub, true)
	groupDevice(t, m.URL(), "tokyo", "lobby", "gate-3", hqPub, false)
	e.con.cfg.Releases = ReleaseStore{Server: srv, Dir: store}

	admin := e.login("tokyo-admin")
	if res, body := e.get(admin, "/releases"); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="release-2.0.0"`) || !strings.Contains(body, "test release 2.0.0") {
		t.Fatalf("releases: %d %s", res.StatusCode, body)
	}
	bad := []struct{ query, field string }{
		{"site=tokyo&group=gates&version=9.9.9", "error-version"},
		{"site=tokyo&group=&version=2.0.0", "error-group"},
		{"site=&group=gates&version=2.0.0", "error-site"},
	}
	for _, tt := range bad {
		if res, body := e.get(admin, "/releases/rollout?"+tt.query); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tt.field) {
			t.Errorf("%s: %d, want 422 naming %s", tt.query, res.StatusCode, tt.field)
		}
	}
	if res, _ := e.get(admin, "/releases/rollout?site=osaka&group=gates&version=2.0.0"); res.StatusCode != http.StatusForbidden {
		t.Errorf("osaka for tokyo's admin: %d", res.StatusCode)
	}
	if res, _ := e.post(e.login("operator"), "/releases/rollout", url.Values{"site": {"tokyo"}, "group": {"gates"}, "version": {"2.0.0"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("operator rolls out: %d", res.StatusCode)
	}
	if res, body := e.get(admin, "/releases/rollout?site=tokyo&group=gates&version=2.0.0"); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="confirm"`) {
		t.Fatalf("confirmation: %d", res.StatusCode)
	}
	res, _ := e.post(admin, "/releases/rollout", url.Values{"site": {"tokyo"}, "group": {"gates"}, "version": {"2.0.0"}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/rollouts/") {
		t.Fatalf("rollout: %d to %q", res.StatusCode, loc)
	}
	for _, dev := range []string{"gate-1", "gate-2"} {
		if _, err := srv.WaitReport(ctx, "tokyo", dev, func(r proto.ReleaseReport) bool { return r.Firmware.Pending == "" && r.Offer != nil }); err != nil {
			t.Fatal(err)
		}
	}
	_, body := e.get(admin, loc)
	for _, want := range []string{`id="rollout-tokyo-gate-1" class="state-healthy"`, `id="rollout-tokyo-gate-2" class="state-rolled_back"`,
		"health check failed", "healthy 1, on trial 0, rolled back 1, other 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("watch page lacks %q: %s", want, body)
		}
	}
	if strings.Contains(body, "gate-3") || strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("watch page shows another group's device, or still reloads: %s", body)
	}
	if _, body := e.get(admin, "/releases"); !strings.Contains(body, `id="op-`+strings.TrimPrefix(loc, "/rollouts/")+`"`) {
		t.Errorf("the releases page does not list the rollout: %s", body)
	}
	if acts := strings.Join(e.actions(), " "); !strings.Contains(acts, "tokyo-admin:rollout") {
		t.Errorf("rollout not audited: %s", acts)
	}
}
