// Package tomlconf decodes tobira's TOML configuration files strictly: a
// syntax error, a key the program does not know and a key given twice are
// all errors naming the file and the line. A typo must not leave a default
// silently in force, and a key written twice must not let the second
// value win unnoticed.
//
// BurntSushi/toml already refuses most keys given twice, but it accepts an
// array given twice in one table (keys = [...] twice: the second wins).
// Decode finds those from the decoder's key list and locates their lines
// with a small pass over the text.
package tomlconf

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// ErrSyntax marks a file that is not valid TOML or does not fit the
// configuration's types.
var ErrSyntax = errors.New("invalid TOML")

// ErrUnknownKey marks a key that the configuration does not have.
var ErrUnknownKey = errors.New("unknown key")

// ErrDuplicateKey marks a key given twice in one table.
var ErrDuplicateKey = errors.New("key given twice")

// typeErrLine matches the decoder's type errors, which carry their line
// in the message only.
var typeErrLine = regexp.MustCompile(`(?s)^toml: line (\d+) (.*)$`)

// Load reads the file at path and decodes it into v (see Decode).
func Load(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return Decode(path, b, v)
}

// Decode decodes TOML data into v, a pointer to a struct with toml tags.
// name is the file name used in errors. Every error names the file and,
// where the decoder or the key pass knows it, the line; unknown and
// duplicated keys are all reported, joined.
func Decode(name string, data []byte, v any) error {
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s line %d: %w: %s", name, pe.Position.Line, ErrSyntax, pe.Message)
		}
		// A value of the wrong type: the decoder names the line in its text.
		if m := typeErrLine.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("%s line %s: %w: %s", name, m[1], ErrSyntax, m[2])
		}
		return fmt.Errorf("%s: %w: %w", name, ErrSyntax, err)
	}
	lines := keyLines(string(data))
	var errs []error
	for _, d := range duplicates(md) {
		first, again := lineOf(lines, d.key, d.first), lineOf(lines, d.key, d.again)
		switch {
		case first > 0 && again > 0:
			errs = append(errs, fmt.Errorf("%s line %d: %w: %s (first on line %d)", name, again, ErrDuplicateKey, d.key, first))
		default:
			errs = append(errs, fmt.Errorf("%s: %w: %s", name, ErrDuplicateKey, d.key))
		}
	}
	for _, k := range md.Undecoded() {
		if l := lineOf(lines, k.String(), 0); l > 0 {
			errs = append(errs, fmt.Errorf("%s line %d: %w %s", name, l, ErrUnknownKey, k))
		} else {
			errs = append(errs, fmt.Errorf("%s: %w %s", name, ErrUnknownKey, k))
		}
	}
	return errors.Join(errs...)
}

// duplicate is a key given twice in one table: the indexes of its two
// occurrences among the occurrences of that key in the file.
type duplicate struct {
	key          string
	first, again int
}

// duplicates lists the keys given twice in one table. The decoder lists
// every key it met in file order, a key once per occurrence; those of an
// array of tables ([[door]]) repeat once per element, so each element
// starts a fresh scope. Only arrays are checked: the decoder itself
// refuses every other kind of key given twice, and keys inside an inline
// array of tables (door = [{...}, {...}]) repeat legitimately.
func duplicates(md toml.MetaData) []duplicate {
	var out []duplicate
	seen := map[string]int{} // key -> occurrence index in the current scope
	count := map[string]int{}
	for _, k := range md.Keys() {
		key := k.String()
		n := count[key]
		count[key]++
		switch md.Type(k...) {
		case "ArrayHash":
			for s := range seen {
				if strings.HasPrefix(s, key+".") {
					delete(seen, s)
				}
			}
			continue
		case "Array":
		default:
			continue
		}
		if inInlineArray(md, k) {
			continue
		}
		if first, dup := seen[key]; dup {
			out = append(out, duplicate{key: key, first: first, again: n})
			continue
		}
		seen[key] = n
	}
	return out
}

// inInlineArray reports whether a proper prefix of k is an inline array.
func inInlineArray(md toml.MetaData, k toml.Key) bool {
	for i := 1; i < len(k); i++ {
		if md.Type(k[:i]...) == "Array" {
			return true
		}
	}
	return false
}

// lineOf returns the line of the n-th occurrence of key (0 when unknown).
func lineOf(lines map[string][]int, key string, n int) int {
	if l := lines[key]; n < len(l) {
		return l[n]
	}
	return 0
}
