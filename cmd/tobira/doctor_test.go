package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	"github.com/tobira-ac/tobira/reader/pcsc"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// heldPin is a GPIO line as periph's gpioioctl driver shows one that
// another process has requested: its Consumer names the holder, and a
// write fails with the kernel's EBUSY as periph reports it (plain text).
type heldPin struct {
	gpiotest.Pin
	holder string
}

// Consumer implements lineHolder.
func (p *heldPin) Consumer() string { return p.holder }

// Out fails as a request of a line held elsewhere does.
func (p *heldPin) Out(gpio.Level) error {
	return errors.New("GPIOLine.Out(): line_request ioctl: device or resource busy")
}

// The doctor's test lines, registered in periph's registry so that the
// doctor finds them by name as it finds GPIO17 on a Pi.
var (
	docRelay   = &gpiotest.Pin{N: "DOC_RELAY", Num: 4301, L: gpio.High} // left unlocked, as after a crash
	docContact = &gpiotest.Pin{N: "DOC_CONTACT", Num: 4302}
	docHeld    = &heldPin{Pin: gpiotest.Pin{N: "DOC_HELD", Num: 4303}, holder: "tobira@812"}
	// docBusy is held, but the driver did not see the holder when it
	// scanned the chips: only the write tells.
	docBusy       = &heldPin{Pin: gpiotest.Pin{N: "DOC_BUSY", Num: 4304}}
	registerLines = sync.OnceFunc(func() {
		for _, p := range []gpio.PinIO{docRelay, docContact, docHeld, docBusy} {
			if err := gpioreg.Register(p); err != nil {
				panic(err)
			}
		}
	})
)

// doctorRig is a healthy controller's setup: pcscd with the vpcd reader,
// the shipped mosquitto configuration with a test device CA, GPIO lines,
// keys, anchors and a data directory with a fresh snapshot. Each case
// changes one thing.
type doctorRig struct {
	Broker, CACert, ClientCert, ClientKey string
	Keys, Anchors                         []string
	DataDir, Relay, Contact, Reader       string
	OnStale                               string
}

// toml is the rig's tobira.toml.
func (r doctorRig) toml() string {
	list := func(xs []string) string { return `["` + strings.Join(xs, `", "`) + `"]` }
	return `site = "s1"
device = "d1"
data_dir = "` + r.DataDir + `"
[trust]
anchors = ` + list(r.Anchors) + `
[hq]
broker = "` + r.Broker + `"
ca_cert = "` + r.CACert + `"
client_cert = "` + r.ClientCert + `"
client_key = "` + r.ClientKey + `"
keys = ` + list(r.Keys) + `
[[door]]
name = "front"
relay_pin = "` + r.Relay + `"
contact_pin = "` + r.Contact + `"
on_stale_revocations = "` + r.OnStale + `"
[[reader]]
name = "` + r.Reader + `"
door = "front"
`
}

// writeSnapshot makes dir/policy.db with snapshot 1, its revocation data
// from revAt (stale after a day), and trusted as the last trusted time.
func writeSnapshot(t *testing.T, dir string, revAt, trusted time.Time) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := policy.Open(filepath.Join(dir, "policy.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyFull(t.Context(), policy.Snapshot{Version: 1, Site: &policy.Site{RevocationsAt: revAt, MaxRevocationAge: 24 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	s.TrustTime(trusted)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pemFiles issues a certificate for l from ca, writes it and its key in
// dir and returns their paths.
func pemFiles(t *testing.T, dir, name string, ca *mosquittotest.CA, l mosquittotest.Leaf) (certPath, keyPath string) {
	t.Helper()
	cert, key := ca.Issue(t, l)
	return writeFile(t, dir, name+".pem", string(cert)), writeFile(t, dir, name+".key", string(key))
}

// unwritableDir is a directory this process cannot create files in: one
// without write permission, or for root (who ignores permissions) sysfs.
func unwritableDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		return "/sys/kernel"
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	return dir
}

// healthyRig sets up a healthy controller (doctorRig), the doctor's
// environment for it.
func healthyRig(t *testing.T) (doctorRig, doctorEnv, *mosquittotest.CA) {
	t.Helper()
	pcsctest.Start(t)
	registerLines()
	dir := t.TempDir()
	now := time.Now()

	ca := mosquittotest.NewCA(t, "tobira test device CA")
	mq := mosquittotest.StartShipped(t, ca)
	caPath := writeFile(t, dir, "ca.pem", string(ca.PEM()))
	devCert, devKey := pemFiles(t, dir, "device", ca, mosquittotest.Leaf{CN: "s1/d1", Serial: 10})

	jpki, err := jpkitest.NewCA("doctor", now.AddDate(-1, 0, 0), now.AddDate(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.WriteKeyPair(filepath.Join(dir, "hq.key"), filepath.Join(dir, "hq.pub"), priv); err != nil {
		t.Fatal(err)
	}
	rig := doctorRig{Broker: mq.URL(), CACert: caPath, ClientCert: devCert, ClientKey: devKey,
		Keys: []string{filepath.Join(dir, "hq.pub")}, Anchors: []string{writeFile(t, dir, "jpki.der", string(jpki.DER))},
		DataDir: writeSnapshot(t, filepath.Join(dir, "data"), now.Add(-time.Hour), now.Add(-time.Minute)),
		Relay:   "DOC_RELAY", Contact: "DOC_CONTACT", Reader: pcsctest.Reader, OnStale: "deny"}
	env := doctorEnv{Clock: clock.System{}, Timeout: 3 * time.Second,
		OpenPCSC:    func() (readerLister, error) { return pcsc.Open(nil) },
		ClockSynced: func() (bool, error) { return true, nil }}
	return rig, env, ca
}

// TestDoctor runs `tobira doctor` against a healthy setup and against each
// failure it names: each failure's line has its verdict and a fix, and the
// doctor exits non-zero.
func TestDoctor(t *testing.T) {
	healthy, env, ca := healthyRig(t)
	dir, now := t.TempDir(), time.Now()
	wrongCA := writeFile(t, dir, "wrong-ca.pem", string(mosquittotest.NewCA(t, "another CA").PEM()))
	expCert, expKey := pemFiles(t, dir, "expired", ca, mosquittotest.Leaf{CN: "s1/d1", Serial: 11, NotAfter: now.Add(-time.Hour)})
	otherCert, otherKey := pemFiles(t, dir, "other", ca, mosquittotest.Leaf{CN: "s1/intruder", Serial: 12})
	oldJPKI, err := jpkitest.NewCA("doctor-old", now.AddDate(-10, 0, 0), now.AddDate(0, 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(r *doctorRig, e *doctorEnv)
		// check and what are the failed line's check and a part of it
		// ("" for the healthy setup).
		check, what string
	}{
		{name: "healthy", edit: func(*doctorRig, *doctorEnv) {}},
		{"missing config file", nil, "config", "no such file"},
		{"reader absent", func(r *doctorRig, _ *doctorEnv) { r.Reader = "No Such Reader 00 00" }, "reader", `"No Such Reader 00 00" not present`},
		{"pcscd down", func(_ *doctorRig, e *doctorEnv) {
			e.OpenPCSC = func() (readerLister, error) {
				return nil, errors.New("open PC/SC (is pcscd running?): the Smart card resource manager is not running")
			}
		}, "pcscd", "unreachable"},
		{"GPIO line missing", func(r *doctorRig, _ *doctorEnv) { r.Contact = "DOC_NO_SUCH_LINE" }, "gpio", "no such GPIO line"},
		{"relay line held by another process", func(r *doctorRig, _ *doctorEnv) { r.Relay = "DOC_HELD" }, "relay", `held by "tobira@812"`},
		{"relay line busy on write", func(r *doctorRig, _ *doctorEnv) { r.Relay = "DOC_BUSY" }, "relay", "device or resource busy"},
		{"broker unreachable", func(r *doctorRig, _ *doctorEnv) { r.Broker = "ssl://127.0.0.1:1" }, "broker", "unreachable"},
		{"wrong CA", func(r *doctorRig, _ *doctorEnv) { r.CACert = wrongCA }, "tls", "does not chain to hq.ca_cert"},
		{"expired device certificate", func(r *doctorRig, _ *doctorEnv) { r.ClientCert, r.ClientKey = expCert, expKey }, "tls", "expired"},
		// The shipped broker binds the client ID to the certificate's CN:
		// another device's certificate is refused at login, before the
		// ACL could deny it anything.
		{"another device's certificate", func(r *doctorRig, _ *doctorEnv) { r.ClientCert, r.ClientKey = otherCert, otherKey }, "broker", "refused the login"},
		{"expired trust anchor", func(r *doctorRig, _ *doctorEnv) {
			r.Anchors = append(r.Anchors, writeFile(t, dir, "old.der", string(oldJPKI.DER)))
		}, "trust", "expired"},
		{"HQ key unreadable", func(r *doctorRig, _ *doctorEnv) { r.Keys = []string{writeFile(t, dir, "bad.pub", "not a key")} }, "hq.keys", "hq.keys[0]"},
		{"untrusted clock", func(r *doctorRig, _ *doctorEnv) {
			r.DataDir = writeSnapshot(t, filepath.Join(t.TempDir(), "data"), now.Add(-time.Hour), now.Add(time.Hour))
		}, "clock", "behind the last trusted time"},
		{"data_dir unwritable", func(r *doctorRig, _ *doctorEnv) { r.DataDir = unwritableDir(t) }, "data_dir", "not writable"},
		{"stale snapshot", func(r *doctorRig, _ *doctorEnv) {
			r.DataDir = writeSnapshot(t, filepath.Join(t.TempDir(), "data"), now.Add(-48*time.Hour), now.Add(-time.Minute))
		}, "snapshot", "older than the site allows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig, e := healthy, env
			path := filepath.Join(t.TempDir(), "missing.toml")
			if tt.edit != nil {
				tt.edit(&rig, &e)
				path = writeFile(t, t.TempDir(), "tobira.toml", rig.toml())
			}
			if err := docRelay.Out(gpio.High); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := runDoctor(context.Background(), path, e, &out)
			t.Logf("tobira doctor:\n%s", out.String())
			if tt.check == "" {
				if err != nil || strings.Contains(out.String(), "\nfail ") || strings.HasPrefix(out.String(), "fail ") {
					t.Fatalf("healthy setup: runDoctor = %v", err)
				}
				for _, check := range []string{"config", "pcscd", "reader", "relay", "gpio", "tls", "broker", "acl", "hq.keys", "trust", "clock", "data_dir", "snapshot"} {
					if !regexp.MustCompile(`(?m)^ok    ` + regexp.QuoteMeta(check) + ` `).MatchString(out.String()) {
						t.Errorf("no ok line for %s", check)
					}
				}
				if docRelay.Read() != gpio.Low {
					t.Error("the relay was not driven to its locked level")
				}
				return
			}
			if !errors.Is(err, errDoctorFailed) {
				t.Errorf("runDoctor = %v, want %v", err, errDoctorFailed)
			}
			line := regexp.MustCompile(`(?m)^fail  ` + regexp.QuoteMeta(tt.check) + ` +.*` + regexp.QuoteMeta(tt.what) + `.*\n +fix: \S`)
			if !line.MatchString(out.String()) {
				t.Errorf("no %q failure naming %q followed by a fix", tt.check, tt.what)
			}
		})
	}
}

// TestDoctorPCSCDStopped stops the real pcscd (when the test started it):
// the pcscd line fails with a fix.
func TestDoctorPCSCDStopped(t *testing.T) {
	rig, env, _ := healthyRig(t)
	pcsctest.StopPCSCD(t)
	var out bytes.Buffer
	err := runDoctor(context.Background(), writeFile(t, t.TempDir(), "tobira.toml", rig.toml()), env, &out)
	t.Logf("tobira doctor:\n%s", out.String())
	if !errors.Is(err, errDoctorFailed) {
		t.Errorf("runDoctor = %v, want %v", err, errDoctorFailed)
	}
	if !regexp.MustCompile(`(?m)^fail  pcscd +PC/SC service unreachable.*\n +fix: \S`).MatchString(out.String()) {
		t.Error("no pcscd failure followed by a fix")
	}
}

// TestDoctorKeepsRetainedStatus: with a controller's retained online
// status on the broker, the ACL check re-sends that very status (not
// retained), and the retained message is unchanged afterwards.
func TestDoctorKeepsRetainedStatus(t *testing.T) {
	rig, env, _ := healthyRig(t)
	tlsCfg, err := hqTLS(HQConfig{CACert: rig.CACert, ClientCert: rig.ClientCert, ClientKey: rig.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	c := mqtt.NewClient(mqttconn.Settings{Broker: rig.Broker, ClientID: "s1/d1", TLS: tlsCfg}.Options().SetConnectRetry(false))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := waitToken(ctx, c.Connect()); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	topic := proto.StatusTopic("s1", "d1")
	online := []byte(`{"online":true,"site":"s1","device":"d1","outbox_depth":0,"acked_seq":7,"clock_trusted":true}`)
	if err := waitToken(ctx, c.Publish(topic, 1, true, online)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runDoctor(ctx, writeFile(t, t.TempDir(), "tobira.toml", rig.toml()), env, &out); err != nil {
		t.Fatalf("runDoctor = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "the retained online status, again") {
		t.Errorf("the ACL check did not re-send the retained status:\n%s", out.String())
	}
	got := make(chan mqtt.Message, 1)
	if err := waitToken(ctx, c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m })); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if !m.Retained() || string(m.Payload()) != string(online) {
			t.Errorf("retained status after the doctor: %s (retained %t), want %s", m.Payload(), m.Retained(), online)
		}
	case <-ctx.Done():
		t.Fatal("the retained status is gone")
	}
}

// TestDoorLinesListInputs checks that doctor checks every input line of a
// door, the tamper input's included, under its configuration key.
func TestDoorLinesListInputs(t *testing.T) {
	c := &Config{Doors: []DoorConfig{{Name: "front", RelayPin: "GPIO17", ContactPin: "GPIO22", REXPin: "GPIO23",
		FirePin: "GPIO24", LockdownPin: "GPIO25", TamperPin: "GPIO26"}}}
	got := doorLines(c)
	want := []gpioLine{{"door[0].contact_pin", "GPIO22"}, {"door[0].rex_pin", "GPIO23"}, {"door[0].fire_pin", "GPIO24"},
		{"door[0].lockdown_pin", "GPIO25"}, {"door[0].tamper_pin", "GPIO26"}}
	if !slices.Equal(got, want) {
		t.Errorf("doorLines = %v, want %v", got, want)
	}
}
