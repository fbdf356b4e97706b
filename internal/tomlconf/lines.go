package tomlconf

import (
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines finds the line of every table header and every "key = value"
// statement of a TOML text: full key (as toml.Key.String spells it) -> its
// lines, in file order, one per occurrence. It only locates what the
// decoder already accepted, so it knows just enough TOML to skip strings,
// comments, and arrays or inline tables spanning lines. Keys inside inline
// tables are not located.
func keyLines(text string) map[string][]int {
	out := map[string][]int{}
	var s valueScanner
	var table []string
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if s.open() {
			s.scan(line)
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#':
		case strings.HasPrefix(t, "[["):
			table = splitKey(headerName(t[2:], "]]"))
			add(out, table, n)
		case t[0] == '[':
			table = splitKey(headerName(t[1:], "]"))
			add(out, table, n)
		default:
			eq := indexUnquoted(t, '=')
			if eq < 0 {
				continue
			}
			add(out, append(append([]string(nil), table...), splitKey(t[:eq])...), n)
			s.scan(t[eq+1:])
		}
	}
	return out
}

// add records line n for the key made of parts.
func add(out map[string][]int, parts []string, n int) {
	if len(parts) == 0 {
		return
	}
	k := toml.Key(parts).String()
	out[k] = append(out[k], n)
}

// headerName returns the table name of a header line, up to the closing
// bracket(s) end, outside quotes.
func headerName(s, end string) string {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"' || s[i] == '\'':
			i = skipString(s, i)
		case strings.HasPrefix(s[i:], end):
			return s[:i]
		}
	}
	return s
}

// splitKey splits a dotted key into its parts, unquoting quoted parts.
func splitKey(s string) []string {
	var parts []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && (s[i] == '"' || s[i] == '\'') {
			i = skipString(s, i)
			continue
		}
		if i == len(s) || s[i] == '.' {
			p := strings.TrimSpace(s[start:i])
			if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
				p = p[1 : len(p)-1]
			}
			parts = append(parts, p)
			start = i + 1
		}
	}
	return parts
}

// indexUnquoted returns the index of the first c in s outside quotes, or
// -1.
func indexUnquoted(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\'':
			i = skipString(s, i)
		case c:
			return i
		}
	}
	return -1
}

// skipString returns the index of the quote closing the one-line string
// that starts at s[i] (len(s) when it is not closed on this line).
func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case q == '"' && s[j] == '\\':
			j++
		case s[j] == q:
			return j
		}
	}
	return len(s)
}

// valueScanner follows a value across lines: an open multi-line string or
// an open array or inline table means the next line continues the value.
type valueScanner struct {
	depth     int    // open [ and {
	multiline string // the delimiter of an open multi-line string
}

// open reports whether the value continues on the next line.
func (v *valueScanner) open() bool { return v.depth > 0 || v.multiline != "" }

// scan reads one line (or the rest of one) of a value.
func (v *valueScanner) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.multiline != "" {
			j := strings.Index(s[i:], v.multiline)
			if j < 0 {
				return
			}
			i += j + len(v.multiline) - 1
			v.multiline = ""
			continue
		}
		switch c := s[i]; {
		case strings.HasPrefix(s[i:], `"""`), strings.HasPrefix(s[i:], `'''`):
			v.multiline = s[i : i+3]
			i += 2
		case c == '"' || c == '\'':
			i = skipString(s, i)
		case c == '#':
			return
		case c == '[' || c == '{':
			v.depth++
		case c == ']' || c == '}':
			v.depth--
		}
	}
}
