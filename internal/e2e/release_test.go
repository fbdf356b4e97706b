package e2e_test

// Firmware delivery over a real mosquitto: an offer delivered and its
// binary fetched through a proxy that cuts the connection (the download
// resumes), the trial's end reported back, offers refused for each reason
// with a result, and the download rate bounded (measured on a fake clock).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/faultproxy"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

const relSite = "s1"

// relFixture holds the keys, broker and HQ release server of a test.
type relFixture struct {
	m       *mosquittotest.Mosquitto
	hqPub   ed25519.PublicKey
	hqPriv  ed25519.PrivateKey
	relPub  ed25519.PublicKey
	relPriv ed25519.PrivateKey
	srv     *hq.ReleaseServer
	dir     string
}

func newRelFixture(t *testing.T) *relFixture {
	t.Helper()
	return newRelFixtureOn(t, mosquittotest.Start(t), "")
}

// newRelFixtureOn returns a fixture on broker m whose release server
// records its offers in spool ("": none).
func newRelFixtureOn(t *testing.T, m *mosquittotest.Mosquitto, spool string) *relFixture {
	t.Helper()
	return newRelFixtureAt(t, m, m.URL(), spool)
}

// newRelFixtureAt is newRelFixtureOn with the release server on the broker
// at url (m may be nil: another broker).
func newRelFixtureAt(t *testing.T, m *mosquittotest.Mosquitto, url, spool string) *relFixture {
	t.Helper()
	f := &relFixture{m: m, dir: t.TempDir()}
	var err error
	if f.hqPub, f.hqPriv, err = signed.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	if f.relPub, f.relPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if f.srv, err = hq.DialReleaseServer(ctx, hq.Config{Broker: url, Spool: spool, Logger: testLogger(t)}, f.hqPriv, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Close)
	return f
}

// release writes a random binary of size bytes and returns the manifest
// envelope signed by key (the pinned release key when nil), after edit.
func (f *relFixture) release(t *testing.T, version string, size int, key ed25519.PrivateKey, edit func(*firmware.Manifest)) (env []byte, bin string) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	bin = filepath.Join(f.dir, "tobira-"+version+"-"+strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := sha256File(bin)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	m := firmware.Manifest{Version: version, Arch: runtime.GOOS + "/" + runtime.GOARCH, Size: int64(size), SHA256: sum,
		Issued: now, Expires: now.Add(24 * time.Hour)}
	if edit != nil {
		edit(&m)
	}
	if key == nil {
		key = f.relPriv
	}
	if env, err = firmware.Sign(m, key); err != nil {
		t.Fatal(err)
	}
	return env, bin
}

// relDevice is one device: its update root (1.0.0 installed) and agent.
type relDevice struct {
	name      string
	up        *firmware.Updater
	agent     *tsync.ReleaseAgent
	activated chan firmware.Manifest
}

// device installs 1.0.0 into a fresh root and runs a ReleaseAgent for
// name on broker until the test ends. tune may change the updater and the
// agent's configuration.
func (f *relFixture) device(t *testing.T, name, broker string, tune func(*firmware.Updater, *tsync.ReleaseConfig)) *relDevice {
	t.Helper()
	v, err := firmware.NewVerifier(f.relPub)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "fw")
	up := &firmware.Updater{Root: root, Verifier: v, Device: firmware.Device{ID: name}, Logger: testLogger(t),
		ChunkSize: 32 << 10, RetryDelay: 20 * time.Millisecond, MaxStalls: 50}
	env, bin := f.release(t, "1.0.0", 1000, nil, nil)
	if _, err := up.Install(t.Context(), env, firmware.FileFetcher{Path: bin}); err != nil {
		t.Fatalf("bootstrap 1.0.0: %v", err)
	}
	d := &relDevice{name: name, up: up, activated: make(chan firmware.Manifest, 1)}
	rc := tsync.ReleaseConfig{Installer: up, StateFile: filepath.Join(root, "..", "release-agent.json"),
		RequestTimeout: time.Second, RetryInterval: 200 * time.Millisecond, Groups: []string{"gates"},
		OnActivated: func(m firmware.Manifest) { d.activated <- m }}
	if tune != nil {
		tune(up, &rc)
	}
	d.agent, err = tsync.NewReleaseAgent(tsync.EdgeConfig{Broker: broker, Site: relSite, Device: name,
		Keys: []ed25519.PublicKey{f.hqPub}, ConnectRetry: 100 * time.Millisecond, MaxReconnect: 200 * time.Millisecond,
		Logger: testLogger(t)}, rc)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, d.agent.Run, func(err error) {
		if err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	})
	return d
}

func (d *relDevice) status(t *testing.T) firmware.Status {
	t.Helper()
	st, err := d.up.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestReleaseDeliveredThroughCuttingProxy(t *testing.T) {
	f := newRelFixture(t)
	const size, chunk = 1 << 20, 32 << 10
	p, err := faultproxy.Start(t.Context(), faultproxy.Config{Target: f.m.Addr(), MinBytes: 300_000, MaxBytes: 500_000, MaxCuts: 2,
		Seed: uint64(time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	d := f.device(t, "gate1", p.URL("tcp"), nil)
	env, bin := f.release(t, "1.1.0", size, nil, nil)
	if _, err := f.srv.AddRelease(env, bin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	offers, err := f.srv.Publish(ctx, hq.ReleasePublication{Site: relSite, Devices: []string{"gate1"}, Envelope: env, ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-d.activated:
		if m.Version != "1.1.0" {
			t.Fatalf("activated %s, want 1.1.0", m.Version)
		}
	case <-ctx.Done():
		t.Fatalf("release not activated: %v (cuts %d, served %d bytes)", ctx.Err(), p.Cuts(), f.srv.Served())
	}
	if p.Cuts() == 0 {
		t.Fatal("the proxy never cut the connection; the test proves nothing")
	}
	// Resumed, not restarted: each cut costs at most a chunk or two.
	if served, most := f.srv.Served(), int64(size+2*p.Cuts()*chunk); served < size || served > most {
		t.Errorf("HQ served %d bytes for a %d-byte release through %d cuts; want %d..%d", served, size, p.Cuts(), size, most)
	}
	t.Logf("%d bytes through %d connections, %d cut; HQ served %d bytes", size, p.Connections(), p.Cuts(), f.srv.Served())
	if st := d.status(t); st.Running != "1.1.0" || st.Pending != "1.1.0" || st.Previous != "1.0.0" {
		t.Fatalf("after activation: %+v, want 1.1.0 on trial over 1.0.0", st)
	}
	r, err := f.srv.WaitResult(ctx, offers[0].ID, relSite, "gate1")
	if err != nil || r.Status != proto.ResultDone {
		t.Fatalf("result %+v, %v; want done", r, err)
	}
	if _, err := f.srv.WaitReport(ctx, relSite, "gate1", func(r proto.ReleaseReport) bool {
		return r.Offer != nil && r.Offer.ID == offers[0].ID && r.Offer.State == proto.OfferInstalled && r.Firmware.Pending == "1.1.0"
	}); err != nil {
		t.Fatal(err)
	}

	// The release fails its health gate: the device reports why, as the
	// offer's result.
	if _, err := firmware.Rollback(ctx, firmware.GateOptions{Root: d.up.Root, Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	d.agent.Refresh()
	rep, err := f.srv.WaitReport(ctx, relSite, "gate1", func(r proto.ReleaseReport) bool {
		return r.Firmware.Last != nil && r.Firmware.Last.Outcome == firmware.OutcomeRolledBack
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Firmware.Running != "1.0.0" || rep.Firmware.Last.Reason != firmware.ReasonManual {
		t.Errorf("report after rollback: %+v", rep.Firmware)
	}
	r, err = f.srv.WaitResult(ctx, offers[0].ID, relSite, "gate1")
	for err == nil && r.Status == proto.ResultDone {
		r, err = waitChangedResult(ctx, f.srv, offers[0].ID, "gate1")
	}
	if err != nil || r.Status != proto.ResultFailed || !strings.Contains(r.Error, "rolled_back: manual") {
		t.Fatalf("result after rollback %+v, %v; want failed with the reason", r, err)
	}
	// The rollout view counts it (tobira-hq release rollout prints this).
	if r := firmware.CountRollout(hq.FirmwareReports(f.srv.Reports()), "1.1.0"); r.RolledBack != 1 ||
		len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "manual") {
		t.Errorf("rollout of 1.1.0: %+v, want 1 rolled back (manual)", r)
	}
}

// waitChangedResult polls for a newer result of id (the first one, done,
// is replaced by the trial's end).
func waitChangedResult(ctx context.Context, srv *hq.ReleaseServer, id, device string) (proto.Result, error) {
	for {
		r, err := srv.WaitResult(ctx, id, relSite, device)
		if err != nil || r.Status != proto.ResultDone {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestReleaseTrialCommitReported(t *testing.T) {
	f := newRelFixture(t)
	d := f.device(t, "door1", f.m.URL(), nil)
	env, bin := f.release(t, "1.2.0", 100_000, nil, nil)
	if _, err := f.srv.AddRelease(env, bin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// To the device's group: the offer names the group, not the device.
	offers, err := f.srv.Publish(ctx, hq.ReleasePublication{Site: relSite, Groups: []string{"gates"}, Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.activated:
	case <-ctx.Done():
		t.Fatal("group release not activated")
	}
	trial, err := firmware.Boot(ctx, firmware.GateOptions{Root: d.up.Root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trial.ReportHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	d.agent.Refresh()
	rep, err := f.srv.WaitReport(ctx, relSite, "door1", func(r proto.ReleaseReport) bool {
		return r.Firmware.Committed == "1.2.0" && r.Firmware.Pending == ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Offer == nil || rep.Offer.ID != offers[0].ID || rep.Offer.State != proto.OfferInstalled {
		t.Errorf("offer outcome %+v", rep.Offer)
	}
	r, err := f.srv.WaitResult(ctx, offers[0].ID, relSite, "door1")
	if err != nil || r.Status != proto.ResultDone {
		t.Fatalf("result %+v, %v", r, err)
	}

	// The admin's views (tobira-hq release devices and rollout, tested in
	// cmd/tobira-hq), from the retained reports on a fresh connection.
	_, viewKey, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	view, err := hq.DialReleaseServer(ctx, hq.Config{Broker: f.m.URL(), Logger: testLogger(t)}, viewKey, "")
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	if err := view.WaitQuiet(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	reps := view.Reports()
	if len(reps) != 1 || reps[0].Site != relSite || reps[0].Device != "door1" || reps[0].Firmware.Committed != "1.2.0" ||
		reps[0].Offer == nil || reps[0].Offer.State != proto.OfferInstalled {
		t.Errorf("retained reports %+v, want s1/door1 with 1.2.0 committed and its offer installed", reps)
	}
	if r := firmware.CountRollout(hq.FirmwareReports(reps), "1.2.0"); r.Committed != 1 || r.Trial != 0 || r.RolledBack != 0 {
		t.Errorf("rollout of 1.2.0: %+v, want 1 committed", r)
	}
}

func TestReleaseOffersRefused(t *testing.T) {
	f := newRelFixture(t)
	_, strangerRel, _ := ed25519.GenerateKey(rand.Reader)
	_, strangerHQ, _ := signed.GenerateKey()
	hour := time.Now().UTC().Truncate(time.Second)
	tests := []struct {
		name   string
		key    ed25519.PrivateKey // release key; nil: the pinned one
		edit   func(*firmware.Manifest)
		raw    func(env []byte, self string) []byte // a hand-made offer instead of Publish
		reason string
		noID   bool // the offer cannot be opened: its ID is unknown
	}{
		{name: "forged manifest", key: strangerRel, reason: firmware.RefusedBadSignature},
		{name: "expired manifest", edit: func(m *firmware.Manifest) { m.Expires = hour.Add(-time.Hour); m.Issued = hour.Add(-2 * time.Hour) },
			reason: firmware.RefusedExpired},
		{name: "wrong arch", edit: func(m *firmware.Manifest) { m.Arch = "linux/mips" }, reason: firmware.RefusedWrongArch},
		{name: "not targeted", edit: func(m *firmware.Manifest) { m.Targets = []string{"group:lobby"} }, reason: firmware.RefusedNotTargeted},
		{name: "forged offer", reason: proto.OfferReasonSignature, noID: true, raw: func(env []byte, self string) []byte {
			return mustSignOffer(t, strangerHQ, offer(env, self, hour, hour.Add(time.Hour)))
		}},
		{name: "expired offer", reason: proto.OfferReasonExpired, raw: func(env []byte, self string) []byte {
			return mustSignOffer(t, f.hqPriv, offer(env, self, hour.Add(-2*time.Hour), hour.Add(-time.Hour)))
		}},
		{name: "other device", reason: proto.OfferReasonWrongDevice, raw: func(env []byte, self string) []byte {
			return mustSignOffer(t, f.hqPriv, offer(env, "elsewhere", hour, hour.Add(time.Hour)))
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "ref" + string(rune('a'+i))
			d := f.device(t, name, f.m.URL(), nil)
			env, bin := f.release(t, "2.0.0", 5000, tc.key, tc.edit)
			if _, err := f.srv.AddRelease(env, bin); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			id := ""
			if tc.raw != nil {
				o := tc.raw(env, name)
				if err := f.srv.PublishRaw(ctx, proto.ReleaseTopic(relSite, name), o); err != nil {
					t.Fatal(err)
				}
				if !tc.noID {
					oo, err := proto.OpenReleaseOffer(mustVerifier(t, f.hqPub), o)
					if err != nil {
						t.Fatal(err)
					}
					id = oo.ID
				}
			} else {
				offers, err := f.srv.Publish(ctx, hq.ReleasePublication{Site: relSite, Devices: []string{name}, Envelope: env})
				if err != nil {
					t.Fatal(err)
				}
				id = offers[0].ID
			}
			rep, err := f.srv.WaitReport(ctx, relSite, name, func(r proto.ReleaseReport) bool {
				return r.Offer != nil && r.Offer.State == proto.OfferRefused
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Offer.Reason != tc.reason || rep.Offer.ID != id || rep.Offer.Error == "" {
				t.Errorf("offer outcome %+v, want refused %q for id %q", rep.Offer, tc.reason, id)
			}
			if id != "" {
				r, err := f.srv.WaitResult(ctx, id, relSite, name)
				if err != nil || r.Status != proto.ResultRefused || r.Error != rep.Offer.Error {
					t.Errorf("result %+v, %v; want refused with the report's error", r, err)
				}
			}
			if st := d.status(t); st.Running != "1.0.0" || st.Pending != "" {
				t.Errorf("refused offer changed the device: %+v", st)
			}
			select {
			case m := <-d.activated:
				t.Errorf("refused release %s activated", m.Version)
			default:
			}
		})
	}
}

func offer(env []byte, device string, issued, expires time.Time) proto.ReleaseOffer {
	return proto.ReleaseOffer{ID: proto.NewCommandID(), Site: relSite, Device: device, Issued: issued, Expires: expires,
		ChunkSize: 4096, Manifest: env}
}

func mustSignOffer(t *testing.T, priv ed25519.PrivateKey, o proto.ReleaseOffer) []byte {
	t.Helper()
	env, err := proto.SignReleaseOffer(priv, o)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func mustVerifier(t *testing.T, k ed25519.PublicKey) *signed.Verifier {
	t.Helper()
	v, err := signed.NewVerifier(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReleaseDownloadRateBounded(t *testing.T) {
	f := newRelFixture(t)
	const size, rate, chunk = 320 << 10, 64 << 10, 16 << 10
	fake := clocktest.New(time.Now())
	d := f.device(t, "lane1", f.m.URL(), func(u *firmware.Updater, _ *tsync.ReleaseConfig) {
		u.Clock, u.RateLimit, u.ChunkSize = fake, rate, chunk
	})
	env, bin := f.release(t, "1.3.0", size, nil, nil)
	if _, err := f.srv.AddRelease(env, bin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := f.srv.Publish(ctx, hq.ReleasePublication{Site: relSite, Devices: []string{"lane1"}, Envelope: env, ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	// Only the updater's rate limiter (and its retry pause) wait on the
	// fake clock: advance it whenever they wait, and check that the bytes
	// HQ served never ran ahead of the bucket (burst + rate x time).
	const step = 100 * time.Millisecond
	var elapsed time.Duration
	burst := int64(max(rate, chunk))
	for {
		select {
		case <-d.activated:
			if served := f.srv.Served(); served != size {
				t.Errorf("HQ served %d bytes, want %d", served, size)
			}
			if least := time.Duration(float64(size-burst) / rate * float64(time.Second)); elapsed < least {
				t.Fatalf("downloaded %d bytes in %v of limiter time; a %d B/s limit needs at least %v", size, elapsed, rate, least)
			}
			t.Logf("%d bytes in %v of limiter time at %d B/s", size, elapsed, rate)
			return
		case <-ctx.Done():
			t.Fatalf("not activated: %v (served %d, limiter time %v)", ctx.Err(), f.srv.Served(), elapsed)
		case <-time.After(2 * time.Millisecond): // polling the fake clock's waiters
		}
		if served, most := f.srv.Served(), burst+int64(rate*elapsed.Seconds()); served > most {
			t.Fatalf("after %v of limiter time HQ served %d bytes, the limit allows %d", elapsed, served, most)
		}
		if fake.Pending() > 0 {
			fake.Advance(step)
			elapsed += step
		}
	}
}

// sha256File returns the hex SHA-256 of a file (the same digest the
// manifest names).
func sha256File(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
