package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
)

// TestCardInspect runs `tobira card inspect` against a simulated card
// through pcscd + vpcd and checks what it prints.
func TestCardInspect(t *testing.T) {
	pcsctest.Start(t)
	now := time.Now()
	ca, err := jpkitest.NewCA("inspect", now.AddDate(-1, 0, 0), now.AddDate(5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueAuthCert(0x5eed0001, now.AddDate(0, -1, 0), now.AddDate(2, 0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	anchor := writeFile(t, dir, "ca.der", string(ca.DER))
	cfg := writeFile(t, dir, "tobira.toml", baseConfig(filepath.Join(dir, "data"), anchor))
	card := cardsim.New(cardsim.Profile{TokenLabel: "JPKIAPICCTOKEN2", AuthCert: der, CACert: ca.DER, PIN: "1234", Tries: 2})
	pcsctest.Insert(t, card)
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"card", "inspect", "--config", cfg, "--wait", "20s"}, &out, &errOut); err != nil {
		t.Fatalf("card inspect: %v\n%s\n%s", err, &out, &errOut)
	}
	for _, want := range []string{"My Number Card (JPKIAPICCTOKEN2)", "5eed0001", "chain:", "ok", "PIN tries left:", "2"} {
		if !strings.Contains(strings.ToLower(out.String()), strings.ToLower(want)) {
			t.Errorf("inspect output lacks %q:\n%s", want, &out)
		}
	}
	if card.Tries() != 2 {
		t.Errorf("inspect changed the PIN tries counter to %d", card.Tries())
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("inspect created the data directory (it must store nothing): %v", err)
	}
}
