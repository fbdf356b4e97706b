// Package browsertest drives a real headless Chromium (Debian's chromium)
// through chromedp for the console's browser tests: it finds the browser,
// starts it with a fresh profile and the flags that work as root without
// network, and takes the screenshots of docs/img when
// TOBIRA_SCREENSHOTS=1.
//
// A missing browser skips the test with the reason, except under CI=true,
// where it fails: CI must run the browser tests.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tobira-ac/tobira/internal/testenv"
)

// Timeout bounds one Run: a page that does not answer fails the test
// instead of hanging it.
const Timeout = 20 * time.Second

// Width and Height are the browser window's size (and the screenshots').
const (
	Width  = 1280
	Height = 800
)

// Browser is one headless Chromium with its own profile.
type Browser struct {
	t   *testing.T
	ctx context.Context
}

// chromium returns the browser's path: $TOBIRA_CHROMIUM, or chromium (or
// chromium-browser) on PATH, or Debian's /usr/bin/chromium.
func chromium() (string, bool) {
	if p := os.Getenv("TOBIRA_CHROMIUM"); p != "" {
		return p, true
	}
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// Start starts a browser for t, closed when t ends. Without a browser it
// skips t (fails under CI=true).
func Start(t *testing.T) *Browser {
	t.Helper()
	path, ok := chromium()
	if !ok {
		testenv.Missing(t, "no chromium found (apt-get install chromium, or set TOBIRA_CHROMIUM; scripts/install-deps test installs it)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(Width, Height),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests may run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", path, err)
	}
	return &Browser{t: t, ctx: ctx}
}

// For returns the browser for the subtest t: its failures fail t.
func (b *Browser) For(t *testing.T) *Browser { return &Browser{t: t, ctx: b.ctx} }

// NewTab returns a second browser on a new tab of the same browser
// (sharing its cookies).
func (b *Browser) NewTab() *Browser {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("new tab: %v", err)
	}
	return &Browser{t: b.t, ctx: ctx}
}

// Do runs steps in order within Timeout and fails the test (naming
// step) on an error.
func (b *Browser) Do(step string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := b.DoWithin(Timeout, steps...); err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
}

// DoWithin runs steps in order within timeout and returns the error.
func (b *Browser) DoWithin(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Run runs one action within Timeout and returns its value, failing the
// test (naming step) on an error.
func Run[T any](b *Browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
	return v
}

// Text returns the text of the first element matching the CSS selector
// sel, waiting for it to be visible.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return Run(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Screenshot saves the browser's window as docs/img/name.png when
// TOBIRA_SCREENSHOTS=1 (the screenshots of the console's guide), and does
// nothing otherwise.
func (b *Browser) Screenshot(name string) {
	b.t.Helper()
	if os.Getenv("TOBIRA_SCREENSHOTS") != "1" {
		return
	}
	png := Run(b, "screenshot "+name, chromedp.CaptureScreenshot())
	dir, err := imgDir()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
}

// imgDir returns docs/img of the module the test runs in (found by
// walking up to go.mod).
func imgDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			img := filepath.Join(dir, "docs", "img")
			return img, os.MkdirAll(img, 0o755)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
