package console_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/tobira-ac/tobira/hq/console/browsertest"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// TestBrowserRecords creates a person and a credential in the record
// forms, sees a field error named, and deletes with confirmation.
func TestBrowserRecords(t *testing.T) {
	b := browsertest.Start(t)
	w := newWorld(t)
	w.login(b, "admin", chromedp.CSS("#fleet"))

	b.Do("open the people of tokyo", chromedp.Navigate(w.url+"/records"),
		chromedp.SendKeys(chromedp.CSS("#site"), simSite), chromedp.Click(chromedp.CSS("#open-site")),
		chromedp.WaitVisible(chromedp.CSS("#table-people")), chromedp.Click(chromedp.CSS("#table-people")),
		chromedp.WaitVisible(chromedp.CSS("#records-none")))
	b.Do("create a person", chromedp.Click(chromedp.CSS("#new-record")), chromedp.WaitVisible(chromedp.CSS("#record-form")),
		chromedp.SendKeys(chromedp.CSS("#f-person"), "p-0042"),
		chromedp.SendKeys(chromedp.CSS("#f-groups"), "staff; night"),
		chromedp.SendKeys(chromedp.CSS("#f-valid_until"), "2027-04-01T00:00:00+09:00"),
		chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS("#records-notice")))
	if _, ok, err := w.reg.Get(simSite, policy.Person{ID: "p-0042"}); err != nil || !ok {
		t.Fatalf("the person is not in the registry: %v", err)
	}

	b.Do("fill a credential with a bad serial", chromedp.Navigate(w.url+"/records/credentials?site="+simSite),
		chromedp.Click(chromedp.CSS("#new-record")), chromedp.WaitVisible(chromedp.CSS("#record-form")),
		chromedp.SetValue(chromedp.CSS("#f-type"), "cert"),
		chromedp.SendKeys(chromedp.CSS("#f-issuer_key_id"), "00112233445566778899aabbccddeeff00112233"),
		chromedp.SendKeys(chromedp.CSS("#f-serial"), "0a1z"),
		chromedp.SendKeys(chromedp.CSS("#f-person"), "p-0042"),
		chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS("#error-serial")))
	if got := b.Text("#error-serial"); !strings.HasPrefix(got, "Serial: ") || !strings.Contains(got, "not hex") {
		t.Errorf("the field error says %q, want the serial named", got)
	}
	b.Screenshot("console-record-form")
	if n, _ := w.reg.Count(simSite, policy.KindCredential); n != 0 {
		t.Errorf("%d credentials after a refused form", n)
	}
	b.Do("correct it", chromedp.SetValue(chromedp.CSS("#f-serial"), "0a1b"),
		chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS("#records-notice")))
	if n, _ := w.reg.Count(simSite, policy.KindCredential); n != 1 {
		t.Fatalf("%d credentials after saving, want 1", n)
	}

	b.Do("delete it", chromedp.Click(chromedp.CSS("#records a.delete")), chromedp.WaitVisible(chromedp.CSS("#delete-form")))
	if n, _ := w.reg.Count(simSite, policy.KindCredential); n != 1 {
		t.Error("the confirmation page deleted the credential")
	}
	b.Do("confirm", chromedp.Click(chromedp.CSS("#confirm-delete")), chromedp.WaitVisible(chromedp.CSS("#records-none")))
	if n, _ := w.reg.Count(simSite, policy.KindCredential); n != 0 {
		t.Errorf("%d credentials after the delete", n)
	}
	if acts := w.auditActions(t); !acts["admin:record_put"] || !acts["admin:record_delete"] {
		t.Errorf("audit log %v lacks the changes", acts)
	}

	// A list worth a screenshot: a page of people.
	var ch registry.Change
	for i, g := range []string{"staff", "staff; night", "contractor", "staff", "visitor", "staff; cleaning"} {
		ch.Put = append(ch.Put, policy.Person{ID: fmt.Sprintf("p-%04d", 100+i), Groups: strings.Split(g, "; ")})
	}
	if _, err := w.reg.Apply(context.Background(), simSite, ch); err != nil {
		t.Fatal(err)
	}
	b.Do("list the people", chromedp.Navigate(w.url+"/records/people?site="+simSite), chromedp.WaitVisible(chromedp.CSS("#records")))
	if n := browsertest.Run(b, "count rows", chromedp.Evaluate[int](`document.querySelectorAll("#records tbody tr").length`)); n != 7 {
		t.Errorf("%d people listed, want 7", n)
	}
	b.Screenshot("console-records")

	// The same form in Japanese names the field in Japanese.
	b.Do("switch to Japanese", chromedp.Click(chromedp.CSS("#lang-ja")), chromedp.WaitReady(chromedp.CSS(`html[lang="ja"]`)),
		chromedp.Click(chromedp.CSS("#new-record")), chromedp.WaitVisible(chromedp.CSS("#record-form")),
		chromedp.SendKeys(chromedp.CSS("#f-valid_from"), "来週"),
		chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS("#error-valid_from")))
	if got := b.Text("#error-valid_from"); !strings.HasPrefix(got, "有効開始: ") {
		t.Errorf("the Japanese field error says %q", got)
	}
	b.Screenshot("console-record-form-ja")
}
