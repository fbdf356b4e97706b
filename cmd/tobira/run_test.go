package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/metricshttp"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// testRelay is a simulated GPIO line registered in periph's registry, so
// that `tobira run` finds it by name exactly as it finds GPIO17 on a Pi.
var testRelay = sync.OnceValue(func() *gpiotest.Pin {
	p := &gpiotest.Pin{N: "TOBIRA_TEST_RELAY", Num: 4242, L: gpio.High} // left energised, as after a crash
	if err := gpioreg.Register(p); err != nil {
		panic(err)
	}
	return p
})

// waitFor polls cond until it holds or the deadline passes: the test drives
// a whole process through real pcscd, vpcd and mosquitto.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runRig is what TestRunEndToEnd and TestRunLockdownSurvivesSIGKILL
// share: pcscd + vpcd with a simulated card, a real mosquitto, an HQ
// service with a signing sender, and a tobira.toml for device e2e/ctl-1
// with door "front" on TOBIRA_TEST_RELAY.
type runRig struct {
	t      *testing.T
	cfg    string // tobira.toml
	svc    *hq.Service
	sender *hq.Sender
	ca     *jpkitest.CA
	card   *cardsim.Card
	// hqMetrics is the address of HQ's metrics listener.
	hqMetrics string
}

// newRunRig starts the rig's services; HQ runs until ctx ends (its error
// goes to hqDone).
func newRunRig(t *testing.T, ctx context.Context, hqDone chan<- error) *runRig {
	t.Helper()
	pcsctest.Start(t)
	mq := mosquittotest.Start(t)
	dir := t.TempDir()
	now := time.Now()
	ca, err := jpkitest.NewCA("run-e2e", now.AddDate(-1, 0, 0), now.AddDate(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueAuthCert(0x7e570001, now.AddDate(0, -1, 0), now.AddDate(2, 0, 0), key)
	if err != nil {
		t.Fatal(err)
	}
	anchor := writeFile(t, dir, "ca.der", string(ca.DER))
	_, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.WriteKeyPair(filepath.Join(dir, "hq.key"), filepath.Join(dir, "hq.pub"), priv); err != nil {
		t.Fatal(err)
	}
	r := &runRig{t: t, ca: ca}
	r.cfg = writeFile(t, dir, "tobira.toml", `site = "e2e"
device = "ctl-1"
data_dir = "`+filepath.Join(dir, "data")+`"
[trust]
anchors = ["`+anchor+`"]
[hq]
broker = "`+mq.URL()+`"
keys = ["`+filepath.Join(dir, "hq.pub")+`"]
[[door]]
name = "front"
relay_pin = "TOBIRA_TEST_RELAY"
pulse = "300ms"
[[reader]]
name = "`+pcsctest.Reader+`"
door = "front"
[metrics]
listen = "127.0.0.1:0"
`)
	spool := filepath.Join(dir, "spool") // HQ resends snapshot chunks a device asks for from here
	hqReg := prometheus.NewRegistry()
	if r.svc, err = hq.Open(hq.Config{Broker: mq.URL(), ClientID: "hq-e2e", Path: filepath.Join(dir, "hq.db"), Spool: spool, Metrics: hqReg}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.svc.Close() })
	go func() { hqDone <- r.svc.Run(ctx) }()
	hqLn, err := metricshttp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.hqMetrics = hqLn.Addr().String()
	served := make(chan error, 1)
	go func() { served <- metricshttp.Serve(ctx, hqLn, hqReg, nil) }()
	t.Cleanup(func() {
		if err := <-served; err != nil {
			t.Errorf("HQ metrics listener: %v", err)
		}
	})
	if r.sender, err = hq.DialSender(ctx, hq.Config{Broker: mq.URL(), ClientID: "hq-e2e-sender", Spool: spool}, priv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sender.Close() })
	r.card = cardsim.New(cardsim.Profile{TokenLabel: "JPKIAPICCTOKEN2", AuthCert: der, CACert: ca.DER, AuthKey: key, PIN: "1234", Tries: 3})
	return r
}

// device returns the device's entry in HQ's fleet (zero when HQ has none).
func (r *runRig) device() hq.DeviceInfo {
	fleet, err := r.svc.Fleet()
	if err != nil || len(fleet) != 1 {
		return hq.DeviceInfo{}
	}
	return fleet[0]
}

// pushSnapshot has HQ push a signed full snapshot enrolling the card and
// waits until the device applied it; logs is the device's output.
func (r *runRig) pushSnapshot(ctx context.Context, logs fmt.Stringer) {
	r.t.Helper()
	snapPath := filepath.Join(r.t.TempDir(), "snap-1.bin")
	writeSnapshotStream(r.t, snapPath, credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: r.ca.Cert.SubjectKeyId,
		Serial: big.NewInt(0x7e570001).Bytes()})
	man, err := r.sender.PublishSnapshot(ctx, hq.SnapshotOffer{Site: "e2e", Device: "ctl-1", Version: 1, Path: snapPath})
	if err != nil {
		r.t.Fatal(err)
	}
	if res, err := r.sender.WaitResult(ctx, man.Transfer); err != nil || res.Status != proto.ResultDone || res.Version != 1 {
		r.t.Fatalf("snapshot result %+v, %v\n%s", res, err, logs)
	}
}

// command has HQ send a signed command to the device and waits until it
// is done.
func (r *runRig) command(ctx context.Context, action string) {
	r.t.Helper()
	cmd, err := r.sender.SendCommand(ctx, proto.Command{Site: "e2e", Device: "ctl-1", Action: action})
	if err != nil {
		r.t.Fatal(err)
	}
	if res, err := r.sender.WaitResult(ctx, cmd.ID); err != nil || res.Status != proto.ResultDone {
		r.t.Fatalf("%s result %+v, %v", action, res, err)
	}
}

// decisions returns the device's decision events HQ holds.
func (r *runRig) decisions() []proto.Event {
	evs, err := r.svc.Events("e2e", "ctl-1")
	if err != nil {
		r.t.Fatal(err)
	}
	var out []proto.Event
	for _, ev := range evs {
		if ev.Type == proto.TypeDecision {
			out = append(out, ev)
		}
	}
	return out
}

// tap holds the card on the reader until HQ has the n-th decision (a
// person holds a card until the reader beeps), then takes it away, and
// returns that decision.
func (r *runRig) tap(n int) proto.Event {
	r.t.Helper()
	b := pcsctest.Insert(r.t, r.card)
	waitFor(r.t, "the tap's decision at HQ", 20*time.Second, func() bool { return len(r.decisions()) >= n })
	if err := b.Remove(); err != nil {
		r.t.Fatal(err)
	}
	pcsctest.WaitCard(r.t, false)
	return r.decisions()[n-1]
}

// TestRunEndToEnd runs `tobira run` as a device would: relay on a GPIO line
// found by name, a card through pcscd + vpcd, HQ over a real mosquitto. HQ
// pushes a signed snapshot, a card is granted and the relay unlocks and
// relocks, HQ locks the door down with a signed command, the same card is
// then refused, and every event reaches HQ.
func TestRunEndToEnd(t *testing.T) {
	relay := testRelay()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	r := newRunRig(t, runCtx, done)
	var stderr bytes.Buffer
	runLog := &syncWriter{w: &stderr}
	go func() {
		done <- run(runCtx, []string{"run", "--config", r.cfg}, &bytes.Buffer{}, runLog)
	}()
	stopped := false
	shutdown := func() {
		if !stopped {
			stopped = true
			stop()
			for range 2 {
				if err := <-done; err != nil {
					t.Errorf("stopped with %v", err)
				}
			}
		}
	}
	defer shutdown()

	waitFor(t, "the relay driven locked at start", 20*time.Second, func() bool { return relay.Read() == gpio.Low })
	waitFor(t, "the device online at HQ", 20*time.Second, func() bool { return r.device().Online })
	r.pushSnapshot(ctx, &stderr)

	unlocked := make(chan struct{})
	go func() {
		for relay.Read() != gpio.High {
			time.Sleep(time.Millisecond)
		}
		close(unlocked)
	}()
	r.tap(1)
	select {
	case <-unlocked:
	case <-time.After(10 * time.Second):
		t.Fatalf("relay never unlocked for the enrolled card\n%s", stderr.String())
	}
	waitFor(t, "the relay relocked after the pulse", 10*time.Second, func() bool { return relay.Read() == gpio.Low })

	// HQ locks the door down; the same card is then refused.
	r.command(ctx, proto.ActionLockdown)
	r.tap(2)
	d := r.decisions()
	if !d[0].Granted || d[0].Reason != "enrolled" || d[1].Granted || d[1].Reason != "locked_down" {
		t.Errorf("decisions at HQ = %+v", d)
	}
	checkRunMetrics(t, edgeMetricsAddr(t, runLog), r.hqMetrics, r.svc)
	if relay.Read() != gpio.Low {
		t.Error("relay unlocked during lockdown")
	}
	shutdown()
	if relay.Read() != gpio.Low {
		t.Error("relay not locked after shutdown")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.cfg), "data", "events.db")); err != nil {
		t.Errorf("events.db missing: %v", err)
	}
}

// writeSnapshotStream writes a version-1 snapshot stream enrolling cred for
// person p-1 of group staff, who may open door "front" at any time.
func writeSnapshotStream(t *testing.T, path string, cred credential.Credential) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc, err := policy.NewSnapshotEncoder(f, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range []policy.Item{
		policy.Entry{Credential: cred, Person: "p-1"},
		policy.Person{ID: "p-1", Groups: []string{"staff"}},
		policy.Door{ID: "front", Groups: []string{"all"}},
		policy.AccessLevel{ID: "staff-all", Group: "staff", DoorGroup: "all"},
	} {
		if err := enc.Put(it); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

// syncWriter serialises writes from the process's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestRunSecuresEveryRelayFirst: a wrong optional pin on one door stops
// start-up, but only after every door's relay was driven locked.
func TestRunSecuresEveryRelayFirst(t *testing.T) {
	relay := testRelay()
	relay.Out(gpio.High) // energised = unlocked for this fail-secure, active-high door
	dir := t.TempDir()
	ca, err := jpkitest.NewCA("secure-first", time.Now().AddDate(-1, 0, 0), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	anchor := writeFile(t, dir, "ca.der", string(ca.DER))
	cfg := writeFile(t, dir, "tobira.toml", `site = "s1"
device = "d1"
data_dir = "`+filepath.Join(dir, "data")+`"
[trust]
anchors = ["`+anchor+`"]
[hq]
broker = "tcp://127.0.0.1:1"
[[door]]
name = "back"
relay_pin = "NO_SUCH_RELAY"
[[door]]
name = "front"
relay_pin = "TOBIRA_TEST_RELAY"
contact_pin = "NO_SUCH_CONTACT"
[[reader]]
name = "r0"
door = "front"
`)
	err = run(t.Context(), []string{"run", "--config", cfg}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "NO_SUCH_RELAY") {
		t.Fatalf("run = %v, want an error naming the missing relay line", err)
	}
	if relay.Read() != gpio.Low {
		t.Error("the front door's relay was not driven locked before start-up failed")
	}
}
