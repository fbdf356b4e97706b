package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoConsole runs the demo with --console: after the six taps it
// serves the console with a one-time admin login, and the live feed shows
// the taps it keeps making; Ctrl-C (ctx) ends it cleanly.
func TestDemoConsole(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"--console"}, pw, io.Discard)
		pw.Close()
		done <- err
	}()
	lines := make(chan string, 256) // stdout, line by line; drained to the end
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(pr); sc.Scan(); {
			select {
			case lines <- sc.Text():
			default: // the test stopped reading
			}
		}
	}()

	urlLine := regexp.MustCompile(`^console: http://(127\.0\.0\.1:\d+)/$`)
	loginLine := regexp.MustCompile(`^console: log in as (\S+) with the one-time password (\S+) `)
	var host, user, password string
	summary := false
	for timeout := time.After(60 * time.Second); password == ""; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before serving the console: %v", <-done)
			}
			summary = summary || strings.HasPrefix(line, "demo: 6 taps, 1 granted, 5 denied")
			if m := urlLine.FindStringSubmatch(line); m != nil {
				host = m[1]
			}
			if m := loginLine.FindStringSubmatch(line); m != nil {
				user, password = m[1], m[2]
			}
		case <-timeout:
			t.Fatal("no console URL and login within 60s")
		}
	}
	if !summary || host == "" {
		t.Fatalf("summary line seen %v, console URL %q before the login line", summary, host)
	}
	base := "http://" + host
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	res, err := c.Get(base + "/login")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("login page: %v %v", res, err)
	}
	res.Body.Close()
	// The one-time password logs in, and must be changed first.
	form := func(path string, v url.Values) {
		t.Helper()
		res, err := c.PostForm(base+path, v)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %v %v", path, res, err)
		}
		res.Body.Close()
	}
	form("/login", url.Values{"user": {user}, "password": {password}, "next": {"/live"}})
	const mine = "the admin's own password"
	form("/account/password", url.Values{"current": {password}, "new": {mine}, "again": {mine}})

	// The live feed shows the next tap at the demo's door.
	sctx, scancel := context.WithTimeout(ctx, 4*consoleTapEvery)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/live/stream", nil)
	res, err = c.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("live stream: %v %v", res, err)
	}
	defer res.Body.Close()
	if !feedShowsTap(res.Body) {
		t.Fatalf("no tap at %s/%s in the live feed within %s", demoSite, demoDevice, 4*consoleTapEvery)
	}

	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo --console ended with %v after Ctrl-C", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo --console did not stop within 20s of Ctrl-C")
	}
}

// feedShowsTap reads server-sent events until one is a decision at the
// demo's door.
func feedShowsTap(r io.Reader) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"site":"`+demoSite+`"`) &&
			strings.Contains(line, `"door":"`+demoDoor+`"`) && strings.Contains(line, `"type":"decision"`) {
			return true
		}
	}
	return false
}
