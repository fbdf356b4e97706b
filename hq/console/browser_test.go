package console_test

// Browser tests: a real headless Chromium (hq/console/browsertest) drives
// the console of a running hq.Service, which talks over an embedded MQTT
// broker to an in-process device (sync.Edge) that taps and answers
// commands.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/browsertest"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// browserPassword is every account's password in the browser tests.
const browserPassword = "a long browser password"

// Names of the simulated device.
const (
	simSite   = "tokyo"
	simDevice = "gate-1"
	simDoor   = "main"
)

// simDev is a device on the link: one door whose mode the commands
// change, and an outbox the test taps into.
type simDev struct {
	edge   *tsync.Edge
	outbox *tsync.Outbox
	mu     sync.Mutex
	mode   string
}

// handle carries out a verified command on the door.
func (d *simDev) handle(_ context.Context, c proto.Command) error {
	d.mu.Lock()
	switch c.Action {
	case proto.ActionLockdown:
		d.mode = "locked_down"
	case proto.ActionRelease:
		d.mode = "normal"
	case proto.ActionSetMode:
		d.mode = c.Mode
	}
	d.mu.Unlock()
	d.edge.PublishStatus()
	return nil
}

// doorMode returns the door's mode.
func (d *simDev) doorMode() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mode
}

// status is the device's status message.
func (d *simDev) status(context.Context) (proto.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return proto.Status{Version: "1.4.0", ClockTrusted: true,
		Doors: []proto.DoorStatus{{Name: simDoor, State: "locked", Mode: d.mode}}}, nil
}

// tap records a decision for credential at the door and sends it.
func (d *simDev) tap(t *testing.T, credential string, granted bool) {
	t.Helper()
	reason := "not_enrolled"
	if granted {
		reason = "enrolled"
	}
	if _, err := d.outbox.Append(proto.Event{Time: time.Now(), Type: proto.TypeDecision, Door: simDoor,
		Granted: granted, Reason: reason, Credential: credential, Token: "mynumber"}); err != nil {
		t.Fatal(err)
	}
	d.edge.Notify()
}

// oneEnrollment is one pending enrollment, approved for a person.
type oneEnrollment struct {
	mu      sync.Mutex
	pending []console.PendingEnrollment
	person  string
}

func (o *oneEnrollment) Pending() ([]console.PendingEnrollment, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending, nil
}

func (o *oneEnrollment) Approve(_ context.Context, _, person string, _ time.Time) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending, o.person = nil, person
	return "01aa", nil
}

func (o *oneEnrollment) Reject(string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = nil
	return nil
}

// world is HQ with its console on a test server, and one device.
type world struct {
	url    string
	dev    *simDev
	audit  *audit.Log
	enroll *oneEnrollment
	reg    *registry.Registry
	dir    string
}

// run starts fn in a goroutine that t's cleanup cancels and waits for.
func run(t *testing.T, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Error(err)
		}
	})
}

// newWorld starts an embedded broker, HQ, the console (accounts admin and
// auditor) and the device, and waits until HQ sees the device online.
func newWorld(t *testing.T) *world {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	brk, err := broker.Start(context.Background(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brk.Close() })
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := hq.Config{Broker: brk.URL(), ClientID: "hq", Path: filepath.Join(dir, "hq.db"), ConnectRetry: 100 * time.Millisecond, Logger: log}
	svc, err := hq.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	run(t, svc.Run)
	<-svc.Ready()
	sender, err := hq.DialSender(t.Context(), hq.Config{Broker: brk.URL(), Logger: log}, priv) // its own client ID
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close() })

	st, err := console.OpenStores(filepath.Join(dir, "console.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	params := auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	hash, err := auth.HashPassword(browserPassword, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []auth.User{{Name: "admin", Role: auth.Administrator}, {Name: "auditor", Role: auth.Auditor}} {
		u.Sites, u.PasswordHash = []string{auth.AllSites}, hash
		if err := st.Accounts.Add(u); err != nil {
			t.Fatal(err)
		}
	}
	enroll := &oneEnrollment{pending: []console.PendingEnrollment{{ID: "0123456789abcdef", Site: simSite, Device: "desk-1", Seq: 1,
		Received: time.Now(), Credential: "01aa"}}}
	reg, err := registry.Open(filepath.Join(dir, "registry.db"), registry.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	con, err := console.New(console.Config{HQ: svc, Commands: sender, Accounts: st.Accounts, Audit: st.Audit, Enrollments: enroll,
		Import: reg, Records: reg, Params: params, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	svc.OnEvent(con.Publish)
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)

	d := &simDev{mode: "normal"}
	if d.outbox, err = tsync.OpenOutbox(filepath.Join(dir, "events.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.outbox.Close() })
	d.edge, err = tsync.NewEdge(tsync.EdgeConfig{Broker: brk.URL(), Site: simSite, Device: simDevice, Keys: []ed25519.PublicKey{pub},
		Commands: tsync.CommandFunc(d.handle), Status: tsync.StatusFunc(d.status),
		ConnectRetry: 100 * time.Millisecond, MaxReconnect: 200 * time.Millisecond, Logger: log}, d.outbox)
	if err != nil {
		t.Fatal(err)
	}
	run(t, d.edge.Run)
	deadline := time.Now().Add(10 * time.Second)
	for !online(svc) {
		if time.Now().After(deadline) {
			t.Fatal("HQ did not see the device online within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &world{url: srv.URL, dev: d, audit: st.Audit, enroll: enroll, reg: reg, dir: dir}
}

// online reports whether HQ's fleet shows the simulated device online.
func online(svc *hq.Service) bool {
	fl, err := svc.Fleet()
	if err != nil {
		return false
	}
	for _, d := range fl {
		if d.Site == simSite && d.Device == simDevice {
			return d.Online
		}
	}
	return false
}

// login logs b in as user and waits for the first page.
func (w *world) login(b *browsertest.Browser, user string, first chromedp.CSS) {
	b.Do("log in as "+user,
		chromedp.Navigate(w.url+"/login"),
		chromedp.SendKeys(chromedp.CSS("#user"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), browserPassword),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(first),
	)
}

// auditActions returns the audit log's actor:action pairs.
func (w *world) auditActions(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	if err := w.audit.Each(func(e audit.Entry) error { out[e.Actor+":"+e.Action] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBrowser logs in, watches a tap arrive in the live feed, locks a
// door down and reads the device's answer, switches the language,
// approves an enrollment, sees a CSV's bad line, and is refused by the server as a role without
// the right.
func TestBrowser(t *testing.T) {
	b := browsertest.Start(t)
	w := newWorld(t)

	// A wrong password is refused; the right one opens the fleet.
	b.Do("open the login page", chromedp.Navigate(w.url+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	b.Screenshot("console-login")
	b.Do("wrong password",
		chromedp.SendKeys(chromedp.CSS("#user"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#password"), "not the password"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	w.login(b, "admin", chromedp.CSS("#fleet"))
	if got := b.Text("#device-tokyo-gate-1 td.online"); got != "online" {
		t.Errorf("fleet shows the device as %q", got)
	}
	b.Screenshot("console-fleet")

	t.Run("live feed", func(t *testing.T) {
		b := b.For(t)
		b.Do("open the live feed", chromedp.Navigate(w.url+"/live"),
			chromedp.WaitVisible(chromedp.Search(`//span[@id="live-status"][text()="Connected."]`)))
		for i := range 3 {
			cred := fmt.Sprintf("c0ffee%04d", i)
			start := time.Now()
			w.dev.tap(t, cred, i != 1)
			if err := b.DoWithin(time.Second, chromedp.WaitVisible(chromedp.Search(`//table[@id="live"]//td[text()="`+cred+`"]`))); err != nil {
				t.Fatalf("tap %s did not appear in the live feed within a second: %v", cred, err)
			}
			t.Logf("tap %s in the feed after %s", cred, time.Since(start).Round(time.Millisecond))
		}
		b.Screenshot("console-live")
		b.Do("open the events page", chromedp.Navigate(w.url+"/events"), chromedp.WaitVisible(chromedp.CSS("#events")))
		if n := browsertest.Run(b, "count event rows", chromedp.Evaluate[int](`document.querySelectorAll("#events tbody tr").length`)); n < 3 {
			t.Errorf("events page shows %d rows, want the 3 taps", n)
		}
		b.Screenshot("console-events")
	})

	t.Run("lockdown", func(t *testing.T) {
		b := b.For(t)
		b.Do("confirm a lockdown", chromedp.Navigate(w.url+"/fleet"),
			chromedp.Click(chromedp.CSS("#lockdown-tokyo-gate-1")),
			chromedp.WaitVisible(chromedp.CSS("#command-form")))
		b.Screenshot("console-command")
		b.Do("send it", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#result-status")))
		if got := b.Text("#result-status"); got != proto.ResultDone {
			t.Errorf("result %q, want %q", got, proto.ResultDone)
		}
		if class := browsertest.Run(b, "result's class", chromedp.Evaluate[string](`document.getElementById("result").className`)); class != "ok" {
			t.Errorf("a done command is shown as %q, want ok", class)
		}
		b.Screenshot("console-result")
		if mode := w.dev.doorMode(); mode != "locked_down" {
			t.Errorf("device's door mode %q after the lockdown", mode)
		}
		if !w.auditActions(t)["admin:command"] {
			t.Error("the command is not in the audit log")
		}
	})

	t.Run("alarm", func(t *testing.T) {
		b := b.For(t)
		if _, err := w.dev.outbox.Append(proto.Event{Time: time.Now(), Type: proto.TypeDoor, Door: simDoor, Reason: "forced_open",
			Detail: "cause=forced relay=locked"}); err != nil {
			t.Fatal(err)
		}
		w.dev.edge.Notify()
		row := `//table[@id="alarms"]//tr[@data-kind="forced_open"][@class="alarm-active"]`
		b.Do("see the alarm", chromedp.Navigate(w.url+"/alarms"), chromedp.WaitVisible(chromedp.Search(row)))
		b.Screenshot("console-alarms")
		comment := "guard checked the door: a delivery"
		b.Do("acknowledge it", chromedp.Click(chromedp.Search(row+`//a`)), chromedp.WaitVisible(chromedp.CSS("#ack-form")),
			chromedp.SendKeys(chromedp.CSS("#ack-comment"), comment), chromedp.Click(chromedp.CSS("#ack-submit")),
			chromedp.WaitVisible(chromedp.Search(`//table[@id="alarms"]//tr[@data-kind="forced_open"][@class="alarm-acknowledged"]`)))
		b.Do("find both in the audit log", chromedp.Navigate(w.url+"/audit"), chromedp.WaitVisible(chromedp.CSS("#audit")))
		for _, want := range []string{"alarm raised", "alarm acknowledged", comment} {
			if err := b.DoWithin(time.Second, chromedp.WaitVisible(chromedp.Search(`//table[@id="audit"]//td[contains(., "`+want+`")]`))); err != nil {
				t.Errorf("audit log page lacks %q: %v", want, err)
			}
		}
		if acts := w.auditActions(t); !acts["hq:alarm"] || !acts["admin:alarm_ack"] {
			t.Errorf("audit log %v lacks the alarm or its acknowledgement", acts)
		}
	})

	t.Run("language", func(t *testing.T) {
		b := b.For(t)
		b.Do("switch to Japanese", chromedp.Navigate(w.url+"/fleet"), chromedp.Click(chromedp.CSS("#lang-ja")),
			chromedp.WaitReady(chromedp.CSS(`html[lang="ja"]`)))
		if got := b.Text("h1"); got != "機器一覧" {
			t.Errorf("Japanese fleet title %q", got)
		}
		b.Screenshot("console-fleet-ja")
		b.Do("switch back", chromedp.Click(chromedp.CSS("#lang-en")), chromedp.WaitReady(chromedp.CSS(`html[lang="en"]`)))
		if got := b.Text("h1"); got != "Fleet" {
			t.Errorf("English fleet title %q", got)
		}
	})

	t.Run("enrollment", func(t *testing.T) {
		b := b.For(t)
		b.Do("open the enrollments", chromedp.Navigate(w.url+"/enrollments"),
			chromedp.WaitVisible(chromedp.CSS("#enrollment-0123456789abcdef")),
			chromedp.SendKeys(chromedp.CSS("#approve-0123456789abcdef input[name=person]"), "p-0042"))
		b.Screenshot("console-enrollments")
		b.Do("approve it", chromedp.Click(chromedp.CSS("#approve-0123456789abcdef button")),
			chromedp.WaitVisible(chromedp.CSS("#enroll-notice")), chromedp.WaitVisible(chromedp.CSS("#no-enrollments")))
		w.enroll.mu.Lock()
		person := w.enroll.person
		w.enroll.mu.Unlock()
		if person != "p-0042" {
			t.Errorf("approved for %q, want p-0042", person)
		}
		if !w.auditActions(t)["admin:enroll_approve"] {
			t.Error("the approval is not in the audit log")
		}
	})

	t.Run("import", func(t *testing.T) {
		b := b.For(t)
		bad := filepath.Join(w.dir, "people.csv")
		if err := os.WriteFile(bad, []byte("person,valid_from,groups\np-1,,staff\np-2,next tuesday,staff\np-3,,staff\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b.Do("upload a CSV with a bad line", chromedp.Navigate(w.url+"/import"),
			chromedp.SendKeys(chromedp.CSS("#site"), simSite),
			chromedp.SetValue(chromedp.CSS("#table"), "people"),
			chromedp.SetUploadFiles(chromedp.CSS("#csv"), []string{bad}),
			chromedp.Click(chromedp.CSS("#import")),
			chromedp.WaitVisible(chromedp.CSS("#import-lines")))
		if got := b.Text("#line-3"); !strings.Contains(got, "valid_from") {
			t.Errorf("line 3 says %q, want its valid_from column named", got)
		}
		b.Screenshot("console-import")
		if n, err := w.reg.Count(simSite, policy.KindPerson); err != nil || n != 0 {
			t.Errorf("people after the refused import: %d, %v; want none", n, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		b := b.For(t)
		b.Do("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login")))
		w.login(b, "auditor", chromedp.CSS("#fleet"))
		if n := browsertest.Run(b, "count command links", chromedp.Evaluate[int](`document.querySelectorAll("a[href^='/doors/command']").length`)); n != 0 {
			t.Errorf("the auditor's fleet page shows %d command links", n)
		}
		// The page hides the links; the server refuses the request itself,
		// whether the page is opened or the form posted by hand.
		b.Do("open the command page", chromedp.Navigate(w.url+"/doors/command?site=tokyo&device=gate-1&action=release"),
			chromedp.WaitVisible(chromedp.CSS("#error")))
		if got := b.Text("#error"); got != "Your role does not allow this." {
			t.Errorf("refusal says %q", got)
		}
		status := browsertest.Run(b, "post a command by hand", chromedp.Evaluate[int](
			`fetch("/doors/command", {method: "POST", body: new URLSearchParams({site: "tokyo", device: "gate-1", action: "release"})}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		if status != 403 {
			t.Errorf("posted command answered %d, want 403", status)
		}
		if mode := w.dev.doorMode(); mode != "locked_down" {
			t.Errorf("the refused release reached the device (mode %q)", mode)
		}
		if !w.auditActions(t)["auditor:denied"] {
			t.Error("the refusal is not in the audit log")
		}
	})
}
