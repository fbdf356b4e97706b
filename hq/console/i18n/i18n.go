// Package i18n holds the console's messages in Japanese and English: one
// catalogue per language with the same keys, the choice of language from
// a cookie or the browser's Accept-Language, and dates in each language's
// format.
package i18n

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lang is a language of the console.
type Lang string

// The console's languages.
const (
	// EN is English, the default.
	EN Lang = "en"
	// JA is Japanese.
	JA Lang = "ja"
)

// Langs lists every language, in the order the language switch shows them.
var Langs = []Lang{JA, EN}

// catalogues maps each language to its messages: key -> fmt format.
var catalogues = map[Lang]map[string]string{EN: en, JA: ja}

// timeLayouts is each language's date and time format.
var timeLayouts = map[Lang]string{
	EN: "Jan 2, 2006 15:04:05 MST",
	JA: "2006年1月2日 15:04:05 MST",
}

// Parse returns the language named s ("ja", "en", or a tag such as
// "ja-JP") and whether it is one of Langs.
func Parse(s string) (Lang, bool) {
	base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "-")
	l := Lang(base)
	return l, slices.Contains(Langs, l)
}

// Match returns the language of a request: the one named by the cookie
// when it is known, else the first known language of the Accept-Language
// header by its q-values, else EN.
func Match(cookie, acceptLanguage string) Lang {
	if l, ok := Parse(cookie); ok {
		return l
	}
	best, bestQ := EN, 0.0
	for part := range strings.SplitSeq(acceptLanguage, ",") {
		tag, params, _ := strings.Cut(part, ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			q = f
		}
		if l, ok := Parse(tag); ok && q > bestQ {
			best, bestQ = l, q
		}
	}
	return best
}

// T returns the message key in l, formatted with args as fmt.Sprintf
// does. A key missing from the catalogue shows as "!key!" (the tests
// check that none is missing).
func (l Lang) T(key string, args ...any) string {
	f, ok := catalogues[l][key]
	if !ok {
		return "!" + key + "!"
	}
	if len(args) == 0 {
		return f
	}
	return fmt.Sprintf(f, args...)
}

// Has reports whether key is in l's catalogue.
func (l Lang) Has(key string) bool {
	_, ok := catalogues[l][key]
	return ok
}

// Time formats t in l's date format, in t's location; the zero time is
// "-".
func (l Lang) Time(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(timeLayouts[l])
}

// Keys returns the sorted keys of l's catalogue.
func (l Lang) Keys() []string {
	keys := make([]string, 0, len(catalogues[l]))
	for k := range catalogues[l] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
