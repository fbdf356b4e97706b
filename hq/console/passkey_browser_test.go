package console_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/console/browsertest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// emptyHQ is an HQ without devices or events: the account pages need
// none.
type emptyHQ struct{}

func (emptyHQ) Fleet() ([]hq.DeviceInfo, error)                       { return nil, nil }
func (emptyHQ) Query(hq.EventQuery, func(hq.StoredEvent) error) error { return nil }
func (emptyHQ) Result(string) (proto.Result, bool, error)             { return proto.Result{}, false, nil }
func (emptyHQ) QueryPage(context.Context, hq.EventQuery, hq.Cursor, int) (hq.EventPage, error) {
	return hq.EventPage{}, nil
}

// params are the argon2id costs of the browser tests' passwords.
var params = auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}

// accountStores opens the console stores in dir with an account of each
// role, of every site, named as the role ("administrator" is "admin"),
// with the password browserPassword.
func accountStores(t *testing.T, dir string, roles ...auth.Role) *console.Stores {
	t.Helper()
	st, err := console.OpenStores(filepath.Join(dir, "console.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash, err := auth.HashPassword(browserPassword, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		name := string(r)
		if r == auth.Administrator {
			name = "admin"
		}
		if err := st.Accounts.Add(t.Context(), auth.User{Name: name, Role: r, Sites: []string{auth.AllSites}, PasswordHash: hash}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// virtualAuthenticator gives the browser's tab a platform authenticator
// (internal transport, resident keys, user verification that succeeds),
// as a laptop with a fingerprint reader would be.
func virtualAuthenticator() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{
			Options: &cdpwebauthn.VirtualAuthenticatorOptions{
				Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Ctap2version: cdpwebauthn.Ctap2versionCtap21,
				Transport: cdpwebauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true,
			}})
		return err
	})
}

// TestBrowserPasskey registers a passkey on the account page with a
// virtual authenticator of Chromium, logs out, logs in with the passkey
// alone, and manages accounts in the browser (the screenshots of the
// account pages).
func TestBrowserPasskey(t *testing.T) {
	b := browsertest.Start(t)
	dir := t.TempDir()
	st := accountStores(t, dir, auth.Administrator)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// WebAuthn takes a host name, not an IP address, as relying party:
	// the browser opens the console as localhost.
	url := "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	con, err := console.New(console.Config{HQ: emptyHQ{}, Accounts: st.Accounts, Audit: st.Audit, Params: params,
		PublicURL: url, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: con}}
	srv.Start()
	t.Cleanup(srv.Close)

	b.Do("add a virtual authenticator", virtualAuthenticator())
	b.Do("log in with the password",
		chromedp.Navigate(url+"/login"),
		chromedp.SendKeys(chromedp.CSS("#user"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#password"), browserPassword),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#logout")))
	b.Do("register a passkey",
		chromedp.Navigate(url+"/account/passkeys"),
		chromedp.WaitVisible(chromedp.CSS("#no-passkeys")),
		chromedp.SendKeys(chromedp.CSS("#passkey-name"), "laptop"),
		chromedp.Click(chromedp.CSS("#passkey-add")),
		chromedp.WaitVisible(chromedp.CSS("#passkey-added")))
	if got := b.Text("td.passkey-name"); got != "laptop" {
		t.Errorf("passkey listed as %q", got)
	}
	b.Screenshot("console-passkeys")
	b.Do("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#passkey-login")))
	b.Do("log in with the passkey", chromedp.Click(chromedp.CSS("#passkey-login")), chromedp.WaitVisible(chromedp.CSS("#logout")))
	u, err := st.Accounts.User(t.Context(), "admin")
	if err != nil || len(u.Passkeys) != 1 || len(u.Handle) != 32 {
		t.Fatalf("account after registration: %+v, %v", u, err)
	}

	t.Run("cloned authenticator", func(t *testing.T) {
		// A stored signature counter beyond the authenticator's: the
		// answer looks like a copy's, and is refused.
		b := b.For(t)
		u, _ := st.Accounts.User(t.Context(), "admin")
		var cred webauthn.Credential
		if err := json.Unmarshal(u.Passkeys[0].Credential, &cred); err != nil {
			t.Fatal(err)
		}
		good := u.Passkeys[0].Credential
		cred.Authenticator.SignCount = 1 << 20
		u.Passkeys[0].Credential, _ = json.Marshal(cred)
		if err := st.Accounts.Update(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		b.Do("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#passkey-login")))
		b.Do("log in with the cloned passkey", chromedp.Click(chromedp.CSS("#passkey-login")), chromedp.WaitVisible(chromedp.CSS("#passkey-error")))
		if got := b.Text("#passkey-error"); got != "Passkey login failed." {
			t.Errorf("error shown: %q", got)
		}
		u, _ = st.Accounts.User(t.Context(), "admin")
		u.Passkeys[0].Credential = good
		if err := st.Accounts.Update(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		b.Do("log in with the passkey again", chromedp.Click(chromedp.CSS("#passkey-login")), chromedp.WaitVisible(chromedp.CSS("#logout")))
	})

	t.Run("accounts", func(t *testing.T) {
		b := b.For(t)
		b.Do("create an account",
			chromedp.Navigate(url+"/accounts/new"),
			chromedp.SendKeys(chromedp.CSS("#name"), "sato"),
			chromedp.SetValue(chromedp.CSS("#role"), "clerk"),
			chromedp.SetValue(chromedp.CSS("#sites"), "tokyo osaka"),
			chromedp.Click(chromedp.CSS("#account-save")),
			chromedp.WaitVisible(chromedp.CSS("#one-time-password")))
		if pw := b.Text("#one-time-password"); len(pw) < auth.MinPasswordLen {
			t.Errorf("one-time password %q", pw)
		}
		b.Screenshot("console-account-created")
		b.Do("list the accounts", chromedp.Navigate(url+"/accounts"), chromedp.WaitVisible(chromedp.CSS("#account-sato")))
		if got := b.Text("#account-sato"); !strings.Contains(got, "enrollment clerk") || !strings.Contains(got, "osaka tokyo") {
			t.Errorf("account row %q", got)
		}
		b.Screenshot("console-accounts")
		b.Do("the last administrator cannot be disabled",
			chromedp.Navigate(url+"/accounts/admin"),
			chromedp.Click(chromedp.CSS("#disabled")),
			chromedp.Click(chromedp.CSS("#account-save")),
			chromedp.WaitVisible(chromedp.CSS("#error-form")))
		b.Screenshot("console-account")
	})

	got := map[string]bool{}
	_ = st.Audit.Each(func(e audit.Entry) error { got[e.Actor+":"+e.Action+":"+e.After] = true; return nil })
	for _, want := range []string{"admin:login:password", "admin:login:passkey", "admin:logout:",
		"admin:login_failed:passkey: its signature counter went back: a cloned authenticator? Remove the passkey and register it again"} {
		if !got[want] {
			t.Errorf("audit lacks %s: %v", want, got)
		}
	}
}
