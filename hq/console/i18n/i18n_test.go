package i18n

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

// verbs matches fmt verbs.
var verbs = regexp.MustCompile(`%[-+# 0]*[0-9]*[a-zA-Z]`)

// TestCataloguesMatch checks that every message key exists in both
// catalogues, with the same fmt verbs.
func TestCataloguesMatch(t *testing.T) {
	for _, a := range Langs {
		for _, b := range Langs {
			for _, k := range a.Keys() {
				if !b.Has(k) {
					t.Errorf("key %q is in %s but not in %s", k, a, b)
					continue
				}
				if va, vb := verbs.FindAllString(catalogues[a][k], -1), verbs.FindAllString(catalogues[b][k], -1); !slices.Equal(va, vb) {
					t.Errorf("key %q: verbs %v in %s, %v in %s", k, va, a, vb, b)
				}
			}
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		cookie, accept string
		want           Lang
	}{
		{"", "", EN},
		{"", "ja-JP,ja;q=0.9,en;q=0.8", JA},
		{"", "en-US,en;q=0.9,ja;q=0.8", EN},
		{"", "fr-FR,ja;q=0.5", JA},
		{"", "fr", EN},
		{"", "en;q=0.2, ja;q=0.7", JA},
		{"", "ja;q=bad, en", EN},
		{"en", "ja", EN},
		{"ja", "en", JA},
		{"xx", "ja", JA},
	}
	for _, tt := range tests {
		if got := Match(tt.cookie, tt.accept); got != tt.want {
			t.Errorf("Match(%q, %q) = %s, want %s", tt.cookie, tt.accept, got, tt.want)
		}
	}
}

func TestTAndTime(t *testing.T) {
	if got := JA.T("login.too_many", 3); got != "ログインの失敗が多すぎます。3 分後にもう一度お試しください。" {
		t.Errorf("T = %q", got)
	}
	if got := EN.T("no.such.key"); got != "!no.such.key!" {
		t.Errorf("missing key = %q", got)
	}
	tm := time.Date(2026, 4, 1, 9, 5, 7, 0, time.UTC)
	tests := []struct {
		l    Lang
		want string
	}{{EN, "Apr 1, 2026 09:05:07 UTC"}, {JA, "2026年4月1日 09:05:07 UTC"}}
	for _, tt := range tests {
		if got := tt.l.Time(tm); got != tt.want {
			t.Errorf("%s.Time = %q, want %q", tt.l, got, tt.want)
		}
	}
	if EN.Time(time.Time{}) != "-" {
		t.Error("zero time is not -")
	}
}
