package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// One record at a time, as the console's forms edit them: a form's fields
// are the columns of the record's CSV table (Tables), checked by the same
// parser and the same policy rules as ImportCSV, so a form refuses what an
// import refuses, with the same message, naming the field.

// tableKinds is the record kind of each table.
var tableKinds = map[string]policy.RecordKind{
	"site": policy.KindSite, "people": policy.KindPerson, "credentials": policy.KindCredential, "links": policy.KindLink,
	"revocations": policy.KindRevoked, "doors": policy.KindDoor, "areas": policy.KindArea, "levels": policy.KindLevel,
	"schedules": policy.KindSchedule, "holidays": policy.KindHoliday, "events": policy.KindEvent,
}

// TableKind returns the record kind of table (one of Tables).
func TableKind(table string) (policy.RecordKind, bool) {
	k, ok := tableKinds[table]
	return k, ok
}

// scheduleFormColumns are a schedule's form fields: its ID, its weekly
// windows one a line ("mon;tue 09:00 18:00") and its special days one a
// line ("2026-12-31 09:00 12:00", or the date alone: closed all day).
var scheduleFormColumns = []string{"schedule", "windows", "special"}

// FormColumns returns the fields of a record of table: its CSV columns,
// required first, without "action"; a schedule has scheduleFormColumns
// (all its CSV lines in one form).
func FormColumns(table string) []string {
	if table == "schedules" {
		return scheduleFormColumns
	}
	c := tableColumns[table]
	return slices.Concat(c.required, c.optional)
}

// ParseRecord parses one record of table from its fields (FormColumns),
// with the rules and messages of ImportCSV, and checks it against the
// policy model. Its error wraps ErrInvalid and a *LineError whose Column
// names the field at fault ("" for the record as a whole).
func ParseRecord(table string, fields map[string]string) (policy.Item, error) {
	if _, ok := tableColumns[table]; !ok {
		return nil, fmt.Errorf("%w: unknown table %q, want one of %s", ErrInvalid, table, strings.Join(Tables, ", "))
	}
	rw := row{file: table, cols: map[string]string{}}
	for _, c := range FormColumns(table) {
		if err := policy.CheckText("cell", fields[c]); err != nil && c != "windows" && c != "special" {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, rw.fail(c, "%w", err))
		}
		rw.cols[c] = fields[c]
	}
	var it policy.Item
	var err error
	if table == "schedules" {
		it, err = parseScheduleForm(rw)
	} else {
		it, err = parseRow(table, rw)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := itemKey(it); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, rw.fail(identityColumn(table), "%w", err))
	}
	val, err := newValidator()
	if err != nil {
		return nil, err
	}
	if err := val.check(it); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, &LineError{File: table, Column: fieldOf(table, err), Err: err})
	}
	return it, nil
}

// IdentityField returns the field of table that names a record (a
// credential's serial; "" for the site record, of which there is one).
func IdentityField(table string) string { return identityColumn(table) }

// identityColumn is the field of table naming the record.
func identityColumn(table string) string {
	switch table {
	case "site":
		return ""
	case "credentials", "links", "revocations":
		return "serial"
	}
	return tableColumns[table].required[0]
}

// policyFields names the field a policy rule's complaint is about, by a
// phrase of the message, in order: the first match wins (door group
// before group); none matches: the record's identity field.
var policyFields = map[string][][2]string{
	"people":      {{"validity window", "valid_until"}, {"group", "groups"}},
	"credentials": {{"validity window", "valid_until"}, {"person", "person"}, {"event", "event"}},
	"links":       {{"previous", "previous_serial"}, {"renew itself", "previous_serial"}},
	"doors":       {{"door group", "groups"}, {"area", "area"}, {"default mode", "default_mode"}, {"modes[", "modes"}},
	"areas":       {{"reentry", "reentry"}, {"passback", "passback"}},
	"levels":      {{"door group", "door_group"}, {"schedule", "schedule"}, {"group", "group"}},
	"schedules":   {{"special", "special"}, {"windows", "windows"}},
	"events":      {{"door group", "door_group"}, {"window", "end"}},
	"site":        {{"time zone", "time_zone"}, {"revocation age", "max_revocation_age"}},
}

// fieldOf returns the field of table that err (a policy rule's
// complaint) is about.
func fieldOf(table string, err error) string {
	msg := err.Error()
	for _, p := range policyFields[table] {
		if strings.Contains(msg, p[0]) {
			return p[1]
		}
	}
	return identityColumn(table)
}

// parseScheduleForm parses a schedule's form: each line of windows and of
// special is one schedules CSV line (days start end; date start end).
func parseScheduleForm(rw row) (policy.Item, error) {
	s := policy.Schedule{ID: rw.get("schedule")}
	for i, line := range formLines(rw.cols["windows"]) {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, rw.fail("windows", "line %d: %q, want days start end such as mon;tue 09:00 18:00", i+1, line)
		}
		it, err := parseRow("schedules", row{file: rw.file, cols: map[string]string{"schedule": s.ID, "days": f[0], "start": f[1], "end": f[2]}})
		if err != nil {
			return nil, rw.fail("windows", "line %d: %w", i+1, errors.Unwrap(err))
		}
		s.Windows = append(s.Windows, it.(policy.Schedule).Windows...)
	}
	for i, line := range formLines(rw.cols["special"]) {
		f := strings.Fields(line)
		if len(f) != 1 && len(f) != 3 {
			return nil, rw.fail("special", "line %d: %q, want date [start end] such as 2026-12-31 09:00 12:00", i+1, line)
		}
		cols := map[string]string{"schedule": s.ID, "date": f[0]}
		if len(f) == 3 {
			cols["start"], cols["end"] = f[1], f[2]
		}
		it, err := parseRow("schedules", row{file: rw.file, cols: cols})
		if err != nil {
			return nil, rw.fail("special", "line %d: %w", i+1, errors.Unwrap(err))
		}
		s.Special = append(s.Special, it.(policy.Schedule).Special...)
	}
	return s, nil
}

// formLines returns the non-blank lines of a text field, trimmed; a line
// with a control character is kept whole for the parser to refuse.
func formLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// RecordFields returns the fields of it as its table's form has them
// (FormColumns; what ParseRecord reads back into it), and the table.
func RecordFields(it policy.Item) (string, map[string]string) {
	f := map[string]string{}
	switch v := it.(type) {
	case policy.Site:
		f["time_zone"], f["revocations_at"], f["max_revocation_age"] = v.TimeZone, cellTime(v.RevocationsAt), cellDuration(v.MaxRevocationAge)
		return "site", f
	case policy.Person:
		f["person"], f["valid_from"], f["valid_until"], f["groups"] = v.ID, cellTime(v.ValidFrom), cellTime(v.ValidUntil), strings.Join(v.Groups, "; ")
		return "people", f
	case policy.Entry:
		switch v.Credential.Kind {
		case credential.KindCertSerial:
			f["type"], f["issuer_key_id"], f["serial"] = "cert", hex.EncodeToString(v.Credential.IssuerKeyID), hex.EncodeToString(v.Credential.Serial)
		case credential.KindFreeArea:
			f["type"], f["free_area_id"] = "freearea", v.Credential.ID
		}
		f["person"], f["valid_from"], f["valid_until"], f["event"] = v.Person, cellTime(v.ValidFrom), cellTime(v.ValidUntil), v.Event
		return "credentials", f
	case policy.RenewalLink:
		f["issuer_key_id"], f["serial"] = hex.EncodeToString(v.New.IssuerKeyID), hex.EncodeToString(v.New.Serial)
		f["previous_issuer_key_id"], f["previous_serial"] = hex.EncodeToString(v.Previous.IssuerKeyID), hex.EncodeToString(v.Previous.Serial)
		return "links", f
	case policy.Revocation:
		f["issuer_key_id"], f["serial"] = hex.EncodeToString(v.IssuerKeyID), hex.EncodeToString(v.Serial)
		return "revocations", f
	case policy.Door:
		var modes []string
		for _, m := range v.Modes {
			modes = append(modes, m.Schedule+"="+string(m.Mode))
		}
		f["door"], f["groups"], f["area"], f["default_mode"], f["modes"] = v.ID, strings.Join(v.Groups, "; "), v.Area, string(v.DefaultMode), strings.Join(modes, "; ")
		return "doors", f
	case policy.Area:
		f["area"], f["passback"], f["reentry"] = v.ID, string(v.Passback), cellDuration(v.Reentry)
		return "areas", f
	case policy.AccessLevel:
		f["level"], f["group"], f["door_group"], f["schedule"] = v.ID, v.Group, v.DoorGroup, v.Schedule
		return "levels", f
	case policy.Schedule:
		f["schedule"], f["windows"], f["special"] = v.ID, scheduleWindows(v.Windows), specialDays(v.Special)
		return "schedules", f
	case policy.Holiday:
		f["date"], f["name"] = v.Date, v.Name
		return "holidays", f
	case policy.Event:
		f["event"], f["start"], f["end"], f["door_group"], f["reentry"] = v.ID, cellTime(v.Start), cellTime(v.End), v.DoorGroup, strconv.FormatBool(v.Reentry)
		return "events", f
	}
	return "", f
}

// scheduleWindows renders weekly windows one a line.
func scheduleWindows(ws []policy.Window) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "%s %s %s\n", strings.Join(w.Days, ";"), w.Start, w.End)
	}
	return b.String()
}

// specialDays renders special days one window a line (the date alone:
// closed).
func specialDays(ds []policy.SpecialDay) string {
	var b strings.Builder
	for _, d := range ds {
		if len(d.Windows) == 0 {
			fmt.Fprintf(&b, "%s\n", d.Date)
		}
		for _, w := range d.Windows {
			fmt.Fprintf(&b, "%s %s %s\n", d.Date, w.Start, w.End)
		}
	}
	return b.String()
}

// cellTime renders an optional time as the CSV tables take it.
func cellTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// cellDuration renders an optional duration as the CSV tables take it.
func cellDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// RecordKey returns the registry key of it, hex-encoded: the same for
// every version of the record (List's cursors are such keys).
func RecordKey(it policy.Item) (string, error) {
	k, err := itemKey(it)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return hex.EncodeToString(k), nil
}

// ItemOfKey returns an item with only the identity of the record whose
// RecordKey is key: Get and a Change's Delete take it.
func ItemOfKey(key string) (policy.Item, error) {
	k, err := hex.DecodeString(key)
	if err != nil || len(k) < 2 {
		return nil, fmt.Errorf("%w: record key %q", ErrInvalid, key)
	}
	id := string(k[1:])
	switch kind := policy.RecordKind(k[0]); kind {
	case policy.KindCredential:
		c, err := credential.Parse(k[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: record key %q: %w", ErrInvalid, key, err)
		}
		return policy.Entry{Credential: c}, nil
	case policy.KindRevoked, policy.KindLink:
		if len(k) < 2+credential.KeyIDLen {
			return nil, fmt.Errorf("%w: record key %q is too short", ErrInvalid, key)
		}
		c := policy.CertRef{IssuerKeyID: k[1 : 1+credential.KeyIDLen], Serial: k[1+credential.KeyIDLen:]}
		if kind == policy.KindLink {
			return policy.RenewalLink{New: c}, nil
		}
		return policy.Revocation(c), nil
	case policy.KindPerson:
		return policy.Person{ID: id}, nil
	case policy.KindSite:
		return policy.Site{}, nil
	case policy.KindDoor:
		return policy.Door{ID: id}, nil
	case policy.KindArea:
		return policy.Area{ID: id}, nil
	case policy.KindLevel:
		return policy.AccessLevel{ID: id}, nil
	case policy.KindSchedule:
		return policy.Schedule{ID: id}, nil
	case policy.KindHoliday:
		return policy.Holiday{Date: id}, nil
	case policy.KindEvent:
		return policy.Event{ID: id}, nil
	}
	return nil, fmt.Errorf("%w: record key %q has an unknown kind", ErrInvalid, key)
}

// PersonNames returns the names (names.go) of people at site by person
// ID; a person without a name is absent from the map.
func (r *Registry) PersonNames(site string, people []string) (map[string]string, error) {
	out := make(map[string]string, len(people))
	for _, p := range people {
		name, err := r.b.Name(context.Background(), site, p)
		if err != nil {
			return nil, fmt.Errorf("names of %d people at site %s in %s: %w", len(people), site, r.Path(), err)
		}
		if name != "" {
			out[p] = name
		}
	}
	return out, nil
}
