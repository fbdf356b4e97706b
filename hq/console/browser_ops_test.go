package console_test

// Browser test of the operations pages: publish a snapshot and watch the
// devices apply it, roll a release out and watch it, and the stale
// revocation alarm, in a real headless Chromium over fakes of HQ's data
// (the handler tests and TestRollout cover the real release server).

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/browsertest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// opsHQ is a fleet of two devices at tokyo whose snapshot versions the
// test changes, and the devices' results.
type opsHQ struct {
	mu      sync.Mutex
	devs    []hq.DeviceInfo
	results map[string]proto.Result
}

func (h *opsHQ) Fleet() ([]hq.DeviceInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hq.DeviceInfo(nil), h.devs...), nil
}

func (h *opsHQ) Query(hq.EventQuery, func(hq.StoredEvent) error) error { return nil }

func (h *opsHQ) QueryPage(context.Context, hq.EventQuery, hq.Cursor, int) (hq.EventPage, error) {
	return hq.EventPage{}, nil
}

func (h *opsHQ) Result(id string) (proto.Result, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.results[id]
	return r, ok, nil
}

// apply makes device i report version (or answer transfer with an
// error when refused is set).
func (h *opsHQ) apply(i int, version uint64, transfer, refused string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := &h.devs[i]
	if refused != "" {
		h.results[transfer] = proto.Result{ID: transfer, Site: d.Site, Device: d.Device, Kind: proto.KindSnapshot, Status: proto.ResultRefused, Error: refused}
		return
	}
	d.Status.Snapshot, d.Drift = proto.SnapshotStatus{Version: version, Hash: "5e1f"}, false
}

// opsPublisher publishes version 8 to each tokyo device.
type opsPublisher struct{ h *opsHQ }

func (p opsPublisher) SnapshotGroups(context.Context, string) ([]string, error) { return nil, nil }

func (p opsPublisher) PublishSnapshot(_ context.Context, site, _ string, delta bool) ([]proto.Manifest, error) {
	devs, _ := p.h.Fleet()
	var out []proto.Manifest
	for _, d := range devs {
		m := proto.Manifest{Transfer: "7f3a0c" + d.Device, Site: site, Device: d.Device, Type: proto.SnapshotFull, Version: 8, ContentHash: "5e1f"}
		if delta {
			m.Type, m.From = proto.SnapshotDelta, 7
		}
		out = append(out, m)
	}
	return out, nil
}

// opsReleases holds 1.4.0 and 1.5.0; a rollout of 1.5.0 is answered by
// gate-1 (healthy) and gate-2 (rolled back).
type opsReleases struct {
	mu     sync.Mutex
	offers []string
}

func (r *opsReleases) List() ([]firmware.Manifest, error) {
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	return []firmware.Manifest{
		{Version: "1.5.0", Arch: "linux/arm64", Size: 14_188_056, Issued: at, Notes: "faster CRL import"},
		{Version: "1.4.0", Arch: "linux/arm64", Size: 14_020_112, Issued: at.Add(-30 * 24 * time.Hour), Notes: "anti-passback"},
	}, nil
}

func (r *opsReleases) Rollout(_ context.Context, site, group, _ string) ([]proto.ReleaseOffer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offers = append(r.offers, "0ffe7"+group)
	return []proto.ReleaseOffer{{ID: "0ffe7" + group, Site: site, Group: group}}, nil
}

func (r *opsReleases) Reports() []proto.ReleaseReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now().UTC()
	reps := []proto.ReleaseReport{
		{Site: "tokyo", Device: "gate-1", Time: now, Firmware: firmware.Status{Running: "1.4.0", Committed: "1.4.0"}},
		{Site: "tokyo", Device: "gate-2", Time: now, Firmware: firmware.Status{Running: "1.4.0", Committed: "1.4.0"}},
	}
	if len(r.offers) == 0 {
		return reps
	}
	id := r.offers[len(r.offers)-1]
	reps[0].Firmware = firmware.Status{Running: "1.5.0", Committed: "1.5.0", Previous: "1.4.0"}
	reps[0].Offer = &proto.OfferOutcome{ID: id, Version: "1.5.0", State: proto.OfferInstalled, Time: now}
	reps[1].Firmware = firmware.Status{Running: "1.4.0", Committed: "1.4.0", Bad: []string{"1.5.0"},
		Last: &firmware.Result{Version: "1.5.0", From: "1.4.0", Outcome: firmware.OutcomeRolledBack, Reason: "health check failed"}}
	reps[1].Offer = &proto.OfferOutcome{ID: id, Version: "1.5.0", State: proto.OfferInstalled, Time: now}
	return reps
}

// TestBrowserOps publishes a snapshot and watches the page follow the
// devices (one applies it, one refuses it), rolls a release out to a
// group and reads each device's outcome, and sees the stale-revocation
// alarm the sweep raised.
func TestBrowserOps(t *testing.T) {
	b := browsertest.Start(t)
	h := &opsHQ{results: map[string]proto.Result{}}
	old := time.Now().Add(-26 * time.Hour)
	for _, name := range []string{"gate-1", "gate-2"} {
		h.devs = append(h.devs, hq.DeviceInfo{Site: "tokyo", Device: name, Online: true, Seen: time.Now(), ExpectedVersion: 7, Published: old,
			Status: proto.Status{Online: true, Version: "1.4.0", Snapshot: proto.SnapshotStatus{Version: 7, Hash: "a11c"}}})
	}
	h.devs[1].Drift, h.devs[1].ExpectedVersion = true, 8 // missed a publication 26 hours ago

	st, params := browserStores(t, t.TempDir(), auth.Administrator)
	con, err := console.New(console.Config{HQ: h, Accounts: st.Accounts, Audit: st.Audit, Alarms: st.Alarms, Snapshots: opsPublisher{h},
		Releases: &opsReleases{}, Params: params})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	w := &world{url: srv.URL, audit: st.Audit}
	w.login(b, "admin", chromedp.CSS("#fleet"))

	// The sweep raises gate-2's stale revocation alarm.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := con.Sweep(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	b.Do("alarms", chromedp.Navigate(srv.URL+"/alarms"), chromedp.WaitVisible(chromedp.CSS(`tr[data-kind="stale_revocation"]`)))
	b.Screenshot("console-alarm-stale")

	b.Do("publish form", chromedp.Navigate(srv.URL+"/publish"), chromedp.WaitVisible(chromedp.CSS("#publish-form")),
		chromedp.Click(chromedp.CSS("#kind-full")), chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#publish-confirm")))
	b.Screenshot("console-publish-confirm")
	b.Do("confirm", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#publication-waiting")))
	if got := b.Text("#pub-tokyo-gate-1 td.pub-state"); got != "waiting" {
		t.Errorf("gate-1 before applying: %q", got)
	}
	h.apply(0, 8, "", "")
	h.apply(1, 0, "7f3a0cgate-2", "snapshot signature: unknown key")
	if err := b.DoWithin(10*time.Second, chromedp.WaitVisible(chromedp.CSS("#publication-done"))); err != nil {
		t.Fatalf("the publication page did not follow the devices: %v", err)
	}
	if got := b.Text("#pub-tokyo-gate-1 td.pub-state"); got != "applied" {
		t.Errorf("gate-1 after applying: %q", got)
	}
	b.Screenshot("console-publication")

	b.Do("releases", chromedp.Navigate(srv.URL+"/releases"), chromedp.WaitVisible(chromedp.CSS("#releases")))
	b.Screenshot("console-releases")
	b.Do("roll out 1.5.0 to gates",
		chromedp.SendKeys(chromedp.CSS(`#release-1\.5\.0 input[name="group"]`), "gates"),
		chromedp.Click(chromedp.CSS(`#rollout-1\.5\.0`)), chromedp.WaitVisible(chromedp.CSS("#rollout-confirm")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#rollout")))
	if got := b.Text("#rollout-tokyo-gate-2 td.rollout-state"); got != "rolled back: rolled_back health check failed" {
		t.Errorf("gate-2's rollout state: %q", got)
	}
	b.Screenshot("console-rollout")
	acts := w.auditActions(t)
	if !acts["admin:publish"] || !acts["admin:rollout"] || !acts["hq:alarm"] {
		t.Errorf("audit log: %v", acts)
	}
}
