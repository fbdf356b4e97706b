package registry

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// Tables lists the CSV tables ImportCSV reads, in the order an admin
// usually imports them (docs/HQ.md describes each column).
var Tables = []string{"site", "people", "credentials", "links", "revocations", "doors", "areas", "levels", "schedules", "holidays", "events"}

// tableColumns are the columns of each table: required ones first, then
// optional; every table also takes the optional column "action" ("put",
// the default, or "delete").
var tableColumns = map[string]struct{ required, optional []string }{
	"site":        {nil, []string{"time_zone", "revocations_at", "max_revocation_age"}},
	"people":      {[]string{"person"}, []string{"valid_from", "valid_until", "groups"}},
	"credentials": {[]string{"type"}, []string{"issuer_key_id", "serial", "free_area_id", "person", "valid_from", "valid_until", "event"}},
	"links":       {[]string{"issuer_key_id", "serial", "previous_issuer_key_id", "previous_serial"}, nil},
	"revocations": {[]string{"issuer_key_id", "serial"}, nil},
	"doors":       {[]string{"door"}, []string{"groups", "area", "default_mode", "modes"}},
	"areas":       {[]string{"area"}, []string{"passback", "reentry"}},
	"levels":      {[]string{"level", "group", "door_group"}, []string{"schedule"}},
	"schedules":   {[]string{"schedule"}, []string{"days", "start", "end", "date"}},
	"holidays":    {[]string{"date"}, []string{"name"}},
	"events":      {[]string{"event", "start", "end", "door_group"}, []string{"reentry"}},
}

// maxLineErrors bounds the line errors one import reports.
const maxLineErrors = 50

// LineError is a problem with one CSV line. Its text is
// "file:line: column: problem" (column omitted when the whole line is at
// fault).
type LineError struct {
	// File is the input's name.
	File string
	// Line is the 1-based line number (the header is line 1).
	Line int
	// Column is the column name, "" for the whole line.
	Column string
	// Err is the problem.
	Err error
}

// Error implements error.
func (e *LineError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Column, e.Err)
}

// Unwrap returns the problem.
func (e *LineError) Unwrap() error { return e.Err }

// row is one CSV line by column name.
type row struct {
	file string
	line int
	cols map[string]string
}

// get returns the cell of column c ("" when absent).
func (r row) get(c string) string { return strings.TrimSpace(r.cols[c]) }

// fail returns a LineError for column c.
func (r row) fail(c string, format string, args ...any) error {
	return &LineError{File: r.file, Line: r.line, Column: c, Err: fmt.Errorf(format, args...)}
}

// ImportCSV reads table (one of Tables) from r, named name in errors,
// validates every line against the CSV format and the policy model, and
// applies all lines to the site in one transaction, or none: when any line
// is bad the transaction is rolled back and the error (ErrInvalid) gives
// the number of bad lines and lists the first 50 LineErrors, each
// "file:line: column: problem". Lines put (insert or replace) records, or
// delete them when their action column says "delete". Several schedule
// lines with the same schedule ID add windows to it.
//
// The input is streamed into the transaction: memory grows with a key per
// line and the transaction's pages, not with whole records.
func (r *Registry) ImportCSV(ctx context.Context, site, table, name string, in io.Reader) (Applied, error) {
	if err := checkSite(site); err != nil {
		return Applied{}, err
	}
	out, err := r.change(ctx, site, func(c *siteChange) error {
		return parseCSV(table, name, in, func(it policy.Item, del bool) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if del {
				k, err := itemKey(it)
				if err != nil {
					return err
				}
				return c.remove(ctx, k)
			}
			k, v, err := encodeItem(it)
			if err != nil {
				return err
			}
			return c.put(ctx, preparedPut{k, v})
		})
	})
	if err != nil {
		return Applied{}, fmt.Errorf("import %s %s into site %s: %w", table, name, site, err)
	}
	return out, nil
}

// ParseCSV parses and validates table from in without touching a
// registry, and returns all its lines as one Change (Apply takes it).
// Errors are as for ImportCSV.
func ParseCSV(table, name string, in io.Reader) (Change, error) {
	var ch Change
	err := parseCSV(table, name, in, func(it policy.Item, del bool) error {
		if del {
			ch.Delete = append(ch.Delete, it)
		} else {
			ch.Put = append(ch.Put, it)
		}
		return nil
	})
	if err != nil {
		return Change{}, err
	}
	return ch, nil
}

// parseCSV parses and validates table from in and passes each line's item
// to emit (del: a delete) as long as no line was bad; merged schedules come
// last. It returns ErrInvalid with the bad lines' count and the first
// maxLineErrors of them, or emit's first error.
func parseCSV(table, name string, in io.Reader, emit func(it policy.Item, del bool) error) error {
	cols, ok := tableColumns[table]
	if !ok {
		return fmt.Errorf("%w: unknown table %q, want one of %s", ErrInvalid, table, strings.Join(Tables, ", "))
	}
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.ReuseRecord = true
	header, err := readHeader(cr, table, name, cols.required, cols.optional)
	if err != nil {
		return err
	}
	header = slices.Clone(header)
	val, err := newValidator()
	if err != nil {
		return err
	}
	p := &csvParse{table: table, name: name, header: header, val: val, emit: emit,
		firstAt: map[string]int{}, scheds: map[string]*policy.Schedule{}}
	for {
		fields, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			line := 0
			if errors.As(err, &pe) {
				line = pe.Line
			}
			p.add(&LineError{File: name, Line: line, Err: err})
			if pe == nil {
				break
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		p.line(line, fields)
		if p.failed != nil {
			return p.failed
		}
	}
	return p.result()
}

// readHeader reads the header line of table and checks its columns: each
// known, none twice, every required one present. It returns the column
// names, trimmed (and without a UTF-8 byte order mark).
func readHeader(cr *csv.Reader, table, name string, required, optional []string) ([]string, error) {
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %s:1: read header: %w", ErrInvalid, name, err)
	}
	allowed := append(append([]string{"action"}, required...), optional...)
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		header[i] = h
		if !slices.Contains(allowed, h) {
			return nil, fmt.Errorf("%w: %s:1: %s: unknown column; %s takes %s", ErrInvalid, name, h, table, strings.Join(allowed, ", "))
		}
		if slices.Index(header[:i], h) >= 0 {
			return nil, fmt.Errorf("%w: %s:1: %s: column appears twice", ErrInvalid, name, h)
		}
	}
	for _, c := range required {
		if !slices.Contains(header, c) {
			return nil, fmt.Errorf("%w: %s:1: %s: required column missing", ErrInvalid, name, c)
		}
	}
	return header, nil
}

// csvParse collects the lines of one CSV input into a Change, and the
// problems of its lines.
type csvParse struct {
	table, name string
	header      []string
	val         validator
	emit        func(it policy.Item, del bool) error
	failed      error                       // emit's error: the parse stops
	errs        []error                     // the first maxLineErrors problems
	bad         int                         // lines with a problem
	firstAt     map[string]int              // registry key -> line
	scheds      map[string]*policy.Schedule // schedules by ID, for merging
	order       []string                    // schedule IDs in input order
}

// add records the problem of a line; it is counted, and listed up to
// maxLineErrors.
func (p *csvParse) add(e error) {
	p.bad++
	if len(p.errs) < maxLineErrors {
		p.errs = append(p.errs, e)
	}
}

// line parses the line numbered line and adds its put or delete to the
// change, or its problem to the errors.
func (p *csvParse) line(line int, fields []string) {
	if len(fields) != len(p.header) {
		p.add(&LineError{File: p.name, Line: line, Err: fmt.Errorf("%d fields, the header has %d", len(fields), len(p.header))})
		return
	}
	rw := row{file: p.name, line: line, cols: make(map[string]string, len(p.header))}
	for i, h := range p.header {
		if err := policy.CheckText("cell", fields[i]); err != nil {
			p.add(rw.fail(h, "%w", err))
			return
		}
		rw.cols[h] = fields[i]
	}
	del := false
	switch a := rw.get("action"); a {
	case "", "put":
	case "delete":
		del = true
	default:
		p.add(rw.fail("action", "%q, want put or delete", a))
		return
	}
	it, err := parseRow(p.table, rw)
	if err != nil {
		p.add(err)
		return
	}
	k, err := itemKey(it)
	if err != nil {
		p.add(&LineError{File: p.name, Line: line, Err: err})
		return
	}
	if s, isSched := it.(policy.Schedule); isSched && !del {
		p.addSchedule(s, k, line)
		return
	}
	if prev, dup := p.firstAt[string(k)]; dup {
		p.add(&LineError{File: p.name, Line: line, Err: fmt.Errorf("%s already on line %d", describeKey(k), prev)})
		return
	}
	p.firstAt[string(k)] = line
	if !del {
		if err := p.val.check(it); err != nil {
			p.add(&LineError{File: p.name, Line: line, Err: err})
			return
		}
	}
	p.send(it, del)
}

// send passes a good line's item on while no line was bad.
func (p *csvParse) send(it policy.Item, del bool) {
	if p.bad == 0 && p.failed == nil {
		p.failed = p.emit(it, del)
	}
}

// addSchedule merges the windows of a schedule line (key k) into the
// schedule of the same ID from earlier lines; result checks them together.
func (p *csvParse) addSchedule(s policy.Schedule, k []byte, line int) {
	if prev, ok := p.scheds[s.ID]; ok {
		prev.Windows = append(prev.Windows, s.Windows...)
		prev.Special = append(prev.Special, s.Special...)
		return
	}
	p.scheds[s.ID] = &s
	p.order = append(p.order, s.ID)
	p.firstAt[string(k)] = line
}

// result checks and sends the merged schedules, and returns ErrInvalid
// with the count of bad lines and the first of their problems, or emit's
// error.
func (p *csvParse) result() error {
	for _, id := range p.order {
		s := *p.scheds[id]
		if err := p.val.check(s); err != nil {
			k, _ := itemKey(s)
			p.add(&LineError{File: p.name, Line: p.firstAt[string(k)], Column: "schedule", Err: err})
			continue
		}
		p.send(s, false)
	}
	if p.failed != nil {
		return p.failed
	}
	if p.bad > 0 {
		more := ""
		if p.bad > len(p.errs) {
			more = fmt.Sprintf(" (first %d shown)", len(p.errs))
		}
		return fmt.Errorf("%w: %s: %d bad lines%s, nothing applied:\n%w", ErrInvalid, p.name, p.bad, more, errors.Join(p.errs...))
	}
	return nil
}

// parseRow turns one line of table into an item.
func parseRow(table string, r row) (policy.Item, error) {
	switch table {
	case "site":
		var s policy.Site
		var err error
		s.TimeZone = r.get("time_zone")
		if s.RevocationsAt, err = r.time("revocations_at"); err != nil {
			return nil, err
		}
		if s.MaxRevocationAge, err = r.duration("max_revocation_age"); err != nil {
			return nil, err
		}
		return s, nil
	case "people":
		p := policy.Person{ID: r.get("person"), Groups: r.list("groups")}
		var err error
		if p.ValidFrom, err = r.time("valid_from"); err != nil {
			return nil, err
		}
		if p.ValidUntil, err = r.time("valid_until"); err != nil {
			return nil, err
		}
		return p, nil
	case "credentials":
		return r.entry()
	case "links":
		n, err := r.cert("issuer_key_id", "serial")
		if err != nil {
			return nil, err
		}
		p, err := r.cert("previous_issuer_key_id", "previous_serial")
		if err != nil {
			return nil, err
		}
		return policy.RenewalLink{New: n, Previous: p}, nil
	case "revocations":
		c, err := r.cert("issuer_key_id", "serial")
		if err != nil {
			return nil, err
		}
		return policy.Revocation(c), nil
	case "doors":
		d := policy.Door{ID: r.get("door"), Groups: r.list("groups"), Area: r.get("area"), DefaultMode: policy.DoorMode(r.get("default_mode"))}
		for _, m := range r.list("modes") {
			sched, mode, ok := strings.Cut(m, "=")
			if !ok {
				return nil, r.fail("modes", "%q, want schedule=mode", m)
			}
			d.Modes = append(d.Modes, policy.ScheduledMode{Schedule: strings.TrimSpace(sched), Mode: policy.DoorMode(strings.TrimSpace(mode))})
		}
		return d, nil
	case "areas":
		a := policy.Area{ID: r.get("area"), Passback: policy.PassbackMode(r.get("passback"))}
		var err error
		if a.Reentry, err = r.duration("reentry"); err != nil {
			return nil, err
		}
		return a, nil
	case "levels":
		return policy.AccessLevel{ID: r.get("level"), Group: r.get("group"), DoorGroup: r.get("door_group"), Schedule: r.get("schedule")}, nil
	case "schedules":
		s := policy.Schedule{ID: r.get("schedule")}
		w := policy.Window{Days: r.list("days"), Start: r.get("start"), End: r.get("end")}
		if date := r.get("date"); date != "" {
			if _, err := time.Parse(time.DateOnly, date); err != nil {
				return nil, r.fail("date", "%q, want YYYY-MM-DD", date)
			}
			sd := policy.SpecialDay{Date: date}
			if w.Start != "" || w.End != "" {
				w.Days = nil
				sd.Windows = []policy.Window{w}
			}
			s.Special = []policy.SpecialDay{sd}
		} else if w.Start != "" || w.End != "" || len(w.Days) > 0 {
			s.Windows = []policy.Window{w}
		}
		return s, nil
	case "holidays":
		return policy.Holiday{Date: r.get("date"), Name: r.get("name")}, nil
	case "events":
		e := policy.Event{ID: r.get("event"), DoorGroup: r.get("door_group")}
		var err error
		if e.Start, err = r.time("start"); err != nil {
			return nil, err
		}
		if e.End, err = r.time("end"); err != nil {
			return nil, err
		}
		if v := r.get("reentry"); v != "" {
			if e.Reentry, err = strconv.ParseBool(v); err != nil {
				return nil, r.fail("reentry", "%q, want true or false", v)
			}
		}
		return e, nil
	}
	return nil, fmt.Errorf("unknown table %q", table)
}

// entry parses a credentials line.
func (r row) entry() (policy.Entry, error) {
	e := policy.Entry{Person: r.get("person"), Event: r.get("event")}
	switch t := r.get("type"); t {
	case "cert":
		c, err := r.cert("issuer_key_id", "serial")
		if err != nil {
			return e, err
		}
		if r.get("free_area_id") != "" {
			return e, r.fail("free_area_id", "must be empty for type cert")
		}
		e.Credential = credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: c.IssuerKeyID, Serial: c.Serial}
	case "freearea":
		id := r.get("free_area_id")
		if id == "" {
			return e, r.fail("free_area_id", "required for type freearea")
		}
		if r.get("issuer_key_id") != "" || r.get("serial") != "" {
			return e, r.fail("serial", "issuer_key_id and serial must be empty for type freearea")
		}
		e.Credential = credential.Credential{Kind: credential.KindFreeArea, ID: id}
	default:
		return e, r.fail("type", "%q, want cert or freearea", t)
	}
	if _, err := e.Credential.Key(); err != nil {
		return e, r.fail("", "%v", err)
	}
	if e.Person == "" && r.get("action") != "delete" {
		return e, r.fail("person", "required")
	}
	var err error
	if e.ValidFrom, err = r.time("valid_from"); err != nil {
		return e, err
	}
	if e.ValidUntil, err = r.time("valid_until"); err != nil {
		return e, err
	}
	return e, nil
}

// cert parses an issuer key ID and serial column pair.
func (r row) cert(kidCol, serialCol string) (policy.CertRef, error) {
	kid, err := hex.DecodeString(r.get(kidCol))
	if err != nil || len(kid) != credential.KeyIDLen {
		return policy.CertRef{}, r.fail(kidCol, "%q, want %d hex digits", r.get(kidCol), 2*credential.KeyIDLen)
	}
	serial, err := ParseSerial(r.get(serialCol))
	if err != nil {
		return policy.CertRef{}, r.fail(serialCol, "%v", err)
	}
	return policy.CertRef{IssuerKeyID: kid, Serial: serial}, nil
}

// ParseSerial parses a certificate serial in hex (an optional "0x" prefix
// and ':' separators allowed) into the canonical form: unsigned big-endian
// without leading zero bytes.
func ParseSerial(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"), ":", "")
	if len(h)%2 == 1 {
		h = "0" + h
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("serial %q is not hex", s)
	}
	b = bytes.TrimLeft(b, "\x00")
	if len(b) == 0 {
		return nil, fmt.Errorf("serial %q is zero or empty", s)
	}
	if len(b) > credential.MaxSerialLen {
		return nil, fmt.Errorf("serial %q is %d bytes, want at most %d", s, len(b), credential.MaxSerialLen)
	}
	return b, nil
}

// list splits a ';'-separated cell.
func (r row) list(c string) []string {
	var out []string
	for _, s := range strings.Split(r.get(c), ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// time parses an optional RFC 3339 cell.
func (r row) time(c string) (time.Time, error) {
	v := r.get(c)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, r.fail(c, "%q, want RFC 3339 such as 2026-04-01T09:00:00+09:00", v)
	}
	return t.UTC(), nil
}

// duration parses an optional Go duration cell ("30m", "168h").
func (r row) duration(c string) (time.Duration, error) {
	v := r.get(c)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, r.fail(c, "%q, want a duration such as 30m or 168h", v)
	}
	return d, nil
}
