package policy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tobira-ac/tobira/internal/credential"
)

// RecordKind names the kind of one snapshot record. Each kind is one bbolt
// bucket of policy.db and one record type of the snapshot stream
// (docs/POLICY.md). The byte values are part of the stream format.
type RecordKind byte

// The record kinds. Credentials, revocations, renewal links and people can
// number in the millions and have compact binary values; the others are the
// site's rules (a few thousand at most), stored as canonical JSON and held
// decoded in memory.
const (
	// KindCredential is an Entry: credential key -> person and validity.
	KindCredential RecordKind = 'C'
	// KindRevoked is a Revocation: issuer key ID || serial -> 0x01.
	KindRevoked RecordKind = 'R'
	// KindLink is a RenewalLink: new issuer key ID || serial -> previous one.
	KindLink RecordKind = 'L'
	// KindPerson is a Person: person ID -> validity and groups.
	KindPerson RecordKind = 'P'
	// KindSite is the Site record (key "site").
	KindSite RecordKind = 'S'
	// KindDoor is a Door: door ID -> JSON.
	KindDoor RecordKind = 'D'
	// KindArea is an Area (anti-passback zone): area ID -> JSON.
	KindArea RecordKind = 'A'
	// KindLevel is an AccessLevel: level ID -> JSON.
	KindLevel RecordKind = 'V'
	// KindSchedule is a Schedule: schedule ID -> JSON.
	KindSchedule RecordKind = 'W'
	// KindHoliday is a Holiday: date "YYYY-MM-DD" -> JSON.
	KindHoliday RecordKind = 'H'
	// KindEvent is an Event (ticketed event): event ID -> JSON.
	KindEvent RecordKind = 'E'
)

// recordKinds lists every kind, in bucket-creation order.
var recordKinds = []RecordKind{KindCredential, KindRevoked, KindLink, KindPerson, KindSite,
	KindDoor, KindArea, KindLevel, KindSchedule, KindHoliday, KindEvent}

// String returns the kind's name as used in errors and docs.
func (k RecordKind) String() string {
	switch k {
	case KindCredential:
		return "credential"
	case KindRevoked:
		return "revocation"
	case KindLink:
		return "renewal link"
	case KindPerson:
		return "person"
	case KindSite:
		return "site"
	case KindDoor:
		return "door"
	case KindArea:
		return "area"
	case KindLevel:
		return "access level"
	case KindSchedule:
		return "schedule"
	case KindHoliday:
		return "holiday"
	case KindEvent:
		return "event"
	}
	return fmt.Sprintf("kind(0x%02x)", byte(k))
}

func (k RecordKind) known() bool {
	for _, kk := range recordKinds {
		if k == kk {
			return true
		}
	}
	return false
}

// bucket returns the bbolt bucket name of the kind.
func (k RecordKind) bucket() []byte { return []byte{'k', byte(k)} }

// Limits on record fields.
const (
	// MaxIDLen bounds every textual ID (person, group, door, area, level,
	// schedule, event) in bytes.
	MaxIDLen = MaxPersonLen
	// MaxGroups bounds the groups of one person or door.
	MaxGroups = 64
	// maxKeyLen and maxValueLen bound a stream record.
	maxKeyLen   = 256
	maxValueLen = 64 << 10
)

// Item is one snapshot record in typed form: Entry, Revocation, RenewalLink,
// Person, Site, Door, Area, AccessLevel, Schedule, Holiday or Event. The
// encoders take Items; only this package implements the interface.
type Item interface {
	recordKind() RecordKind
	recordKey() ([]byte, error)
	recordValue() ([]byte, error)
}

// Entry is one allowlisted credential: a certificate or free-area ID that
// belongs to a person, or a ticket for an event.
type Entry struct {
	// Credential is what the card must present.
	Credential credential.Credential
	// Person is the opaque person ID from HQ (never a name), 1..MaxPersonLen
	// bytes of UTF-8. It is copied into granted Decisions.
	Person string
	// ValidFrom and ValidUntil bound the credential's use (zero: unbounded);
	// stored with one-second precision. ValidUntil is exclusive.
	ValidFrom, ValidUntil time.Time
	// Event, when set, makes the credential a ticket for that Event: it is
	// judged by the event's window, doors and single-entry rule instead of
	// by access levels.
	Event string
}

func (Entry) recordKind() RecordKind { return KindCredential }

func (e Entry) recordKey() ([]byte, error) { return entryKey(e.Credential) }

func (e Entry) recordValue() ([]byte, error) {
	if err := checkPerson(e.Person); err != nil {
		return nil, err
	}
	if e.Event != "" {
		if err := checkID("event", e.Event); err != nil {
			return nil, err
		}
	}
	if err := checkWindow(e.ValidFrom, e.ValidUntil); err != nil {
		return nil, err
	}
	v := appendString(nil, e.Person)
	v = appendTime(v, e.ValidFrom)
	v = appendTime(v, e.ValidUntil)
	return appendString(v, e.Event), nil
}

// entryRecord is a decoded credential value.
type entryRecord struct {
	person      string
	from, until time.Time
	event       string
}

func decodeEntryValue(v []byte) (entryRecord, error) {
	d := decoder{b: v}
	var r entryRecord
	r.person = d.string()
	r.from, _ = d.time()
	r.until, _ = d.time()
	r.event = d.string()
	if err := d.end(); err != nil {
		return entryRecord{}, err
	}
	return r, nil
}

func (Revocation) recordKind() RecordKind { return KindRevoked }

func (r Revocation) recordKey() ([]byte, error) { return revocationKey(r.IssuerKeyID, r.Serial) }

func (Revocation) recordValue() ([]byte, error) { return []byte{1}, nil }

// CertRef names one certificate by its issuer key ID and serial.
type CertRef struct {
	// IssuerKeyID is the issuing CA's key ID, credential.KeyIDLen bytes.
	IssuerKeyID []byte
	// Serial is the certificate serial, unsigned big-endian without leading
	// zero bytes.
	Serial []byte
}

// RenewalLink tells that the certificate New replaced Previous (a renewed
// My Number Card certificate). Decide follows links from a presented
// certificate that is not on the allowlist, at most MaxRenewalHops times.
type RenewalLink struct {
	// New is the renewed certificate.
	New CertRef
	// Previous is the certificate it replaced.
	Previous CertRef
}

func (RenewalLink) recordKind() RecordKind { return KindLink }

func (l RenewalLink) recordKey() ([]byte, error) {
	return revocationKey(l.New.IssuerKeyID, l.New.Serial)
}

func (l RenewalLink) recordValue() ([]byte, error) {
	p, err := revocationKey(l.Previous.IssuerKeyID, l.Previous.Serial)
	if err != nil {
		return nil, fmt.Errorf("previous certificate: %w", err)
	}
	if k, _ := l.recordKey(); bytes.Equal(k, p) {
		return nil, errors.New("a certificate cannot renew itself")
	}
	return p, nil
}

// Person is one person: validity window and group memberships. A credential
// whose person has no Person record is treated as a person without groups
// and without a validity window.
type Person struct {
	// ID is the opaque person ID, as in Entry.Person.
	ID string
	// ValidFrom and ValidUntil bound the person's access (zero: unbounded);
	// one-second precision, ValidUntil exclusive.
	ValidFrom, ValidUntil time.Time
	// Groups are the person's groups (AccessLevel.Group), at most MaxGroups.
	Groups []string
}

func (Person) recordKind() RecordKind { return KindPerson }

func (p Person) recordKey() ([]byte, error) {
	if err := checkPerson(p.ID); err != nil {
		return nil, err
	}
	return []byte(p.ID), nil
}

func (p Person) recordValue() ([]byte, error) {
	if err := checkWindow(p.ValidFrom, p.ValidUntil); err != nil {
		return nil, err
	}
	if len(p.Groups) > MaxGroups {
		return nil, fmt.Errorf("%d groups, want at most %d", len(p.Groups), MaxGroups)
	}
	v := appendTime(nil, p.ValidFrom)
	v = appendTime(v, p.ValidUntil)
	v = binary.AppendUvarint(v, uint64(len(p.Groups)))
	for _, g := range p.Groups {
		if err := checkID("group", g); err != nil {
			return nil, err
		}
		v = appendString(v, g)
	}
	return v, nil
}

func decodePersonValue(id string, v []byte) (Person, error) {
	d := decoder{b: v}
	p := Person{ID: id}
	p.ValidFrom, _ = d.time()
	p.ValidUntil, _ = d.time()
	n := d.uvarint()
	if n > MaxGroups {
		return Person{}, fmt.Errorf("%d groups, want at most %d", n, MaxGroups)
	}
	for range n {
		p.Groups = append(p.Groups, d.string())
	}
	if err := d.end(); err != nil {
		return Person{}, err
	}
	return p, nil
}

// DoorMode is how a door treats a tap.
type DoorMode string

// The door modes.
const (
	// ModeCard: a valid credential opens the door (the default).
	ModeCard DoorMode = "card"
	// ModeCardPIN: a valid credential and a verified PIN open the door.
	ModeCardPIN DoorMode = "card_pin"
	// ModeUnlocked: the door is open; every tap is granted.
	ModeUnlocked DoorMode = "unlocked"
	// ModeLocked: nobody passes (except break-glass credentials).
	ModeLocked DoorMode = "locked"
)

func (m DoorMode) valid() bool {
	switch m {
	case ModeCard, ModeCardPIN, ModeUnlocked, ModeLocked:
		return true
	}
	return false
}

// ScheduledMode puts a door in Mode while Schedule is active.
type ScheduledMode struct {
	// Schedule is a Schedule ID.
	Schedule string `json:"schedule"`
	// Mode applies while the schedule is active.
	Mode DoorMode `json:"mode"`
}

// Door is one door or gate lane, as HQ knows it.
type Door struct {
	// ID is the door's name, as in Request.Door.
	ID string `json:"-"`
	// Groups are the door groups the door belongs to (AccessLevel.DoorGroup,
	// Event.DoorGroup).
	Groups []string `json:"groups,omitempty"`
	// Area is the anti-passback area entered through this door (direction
	// In) and left through it (direction Out); "" for none.
	Area string `json:"area,omitempty"`
	// Modes are tried in order; the first whose schedule is active sets the
	// mode. None active: DefaultMode.
	Modes []ScheduledMode `json:"modes,omitempty"`
	// DefaultMode is the mode outside every scheduled mode; "" is ModeCard.
	DefaultMode DoorMode `json:"default_mode,omitempty"`
}

func (Door) recordKind() RecordKind              { return KindDoor }
func (d Door) recordKey() ([]byte, error)        { return idKey("door", d.ID) }
func (d Door) recordValue() ([]byte, error)      { return jsonValue(d, d.check) }
func (a Area) recordKey() ([]byte, error)        { return idKey("area", a.ID) }
func (a Area) recordValue() ([]byte, error)      { return jsonValue(a, a.check) }
func (Area) recordKind() RecordKind              { return KindArea }
func (AccessLevel) recordKind() RecordKind       { return KindLevel }
func (l AccessLevel) recordKey() ([]byte, error) { return idKey("access level", l.ID) }
func (l AccessLevel) recordValue() ([]byte, error) {
	return jsonValue(l, l.check)
}
func (Schedule) recordKind() RecordKind         { return KindSchedule }
func (s Schedule) recordKey() ([]byte, error)   { return idKey("schedule", s.ID) }
func (s Schedule) recordValue() ([]byte, error) { return jsonValue(s, s.check) }
func (Holiday) recordKind() RecordKind          { return KindHoliday }
func (h Holiday) recordValue() ([]byte, error)  { return jsonValue(h, func() error { return nil }) }
func (Event) recordKind() RecordKind            { return KindEvent }
func (e Event) recordKey() ([]byte, error)      { return idKey("event", e.ID) }
func (e Event) recordValue() ([]byte, error)    { return jsonValue(e, e.check) }
func (Site) recordKind() RecordKind             { return KindSite }
func (Site) recordKey() ([]byte, error)         { return []byte("site"), nil }
func (s Site) recordValue() ([]byte, error)     { return jsonValue(s, s.check) }

func (d Door) check() error {
	if len(d.Groups) > MaxGroups {
		return fmt.Errorf("%d door groups, want at most %d", len(d.Groups), MaxGroups)
	}
	for _, g := range d.Groups {
		if err := checkID("door group", g); err != nil {
			return err
		}
	}
	if d.Area != "" {
		if err := checkID("area", d.Area); err != nil {
			return err
		}
	}
	if d.DefaultMode != "" && !d.DefaultMode.valid() {
		return fmt.Errorf("unknown default mode %q", d.DefaultMode)
	}
	for i, m := range d.Modes {
		if !m.Mode.valid() {
			return fmt.Errorf("modes[%d]: unknown mode %q", i, m.Mode)
		}
		if err := checkID("schedule", m.Schedule); err != nil {
			return fmt.Errorf("modes[%d]: %w", i, err)
		}
	}
	return nil
}

// PassbackMode is an area's anti-passback rule.
type PassbackMode string

// The anti-passback modes.
const (
	// PassbackNone: no anti-passback (the default).
	PassbackNone PassbackMode = ""
	// PassbackHard denies an entry into an area the person is already in,
	// and an exit from an area the person is not in.
	PassbackHard PassbackMode = "hard"
	// PassbackSoft grants those taps but flags them (ReasonPassbackSoft).
	PassbackSoft PassbackMode = "soft"
	// PassbackTimed denies a second entry into the area within
	// Area.Reentry of the last one, whatever the exits.
	PassbackTimed PassbackMode = "timed"
)

// Area is an anti-passback area.
type Area struct {
	// ID names the area (Door.Area).
	ID string `json:"-"`
	// Passback is the rule.
	Passback PassbackMode `json:"passback,omitempty"`
	// Reentry is the minimum time between two entries, for PassbackTimed.
	Reentry time.Duration `json:"reentry_ns,omitempty"`
}

func (a Area) check() error {
	switch a.Passback {
	case PassbackNone, PassbackHard, PassbackSoft:
	case PassbackTimed:
		if a.Reentry <= 0 {
			return errors.New("timed anti-passback needs a positive reentry")
		}
	default:
		return fmt.Errorf("unknown passback mode %q", a.Passback)
	}
	return nil
}

// AccessLevel lets the members of Group through the doors of DoorGroup
// while Schedule is active.
type AccessLevel struct {
	// ID names the level.
	ID string `json:"-"`
	// Group is a person group (Person.Groups).
	Group string `json:"group"`
	// DoorGroup is a door group (Door.Groups).
	DoorGroup string `json:"door_group"`
	// Schedule is a Schedule ID; "" means always.
	Schedule string `json:"schedule,omitempty"`
}

func (l AccessLevel) check() error {
	if err := checkID("group", l.Group); err != nil {
		return err
	}
	if err := checkID("door group", l.DoorGroup); err != nil {
		return err
	}
	if l.Schedule != "" {
		return checkID("schedule", l.Schedule)
	}
	return nil
}

// Window is a weekly time window: on the given days, from Start (inclusive)
// to End (exclusive), "HH:MM" in the site's time zone. End "24:00" is the end
// of the day; a window with End before Start runs past midnight into the
// next day.
type Window struct {
	// Days are "mon".."sun" and "holiday" (the days listed as a Holiday).
	// On a holiday only windows naming "holiday" apply.
	Days []string `json:"days"`
	// Start is "HH:MM".
	Start string `json:"start"`
	// End is "HH:MM" or "24:00".
	End string `json:"end"`
}

// SpecialDay overrides a schedule on one date: only its Windows' times
// apply that day (no windows: closed all day).
type SpecialDay struct {
	// Date is "YYYY-MM-DD" in the site's time zone.
	Date string `json:"date"`
	// Windows are the day's time ranges (Days is ignored).
	Windows []Window `json:"windows,omitempty"`
}

// Schedule is a set of weekly windows with holiday and special-day rules.
type Schedule struct {
	// ID names the schedule.
	ID string `json:"-"`
	// Windows are the weekly windows.
	Windows []Window `json:"windows,omitempty"`
	// Special are per-date overrides.
	Special []SpecialDay `json:"special,omitempty"`
}

func (s Schedule) check() error {
	_, err := compileSchedule(s)
	return err
}

// Holiday marks a date of the site's calendar as a holiday.
type Holiday struct {
	// Date is "YYYY-MM-DD".
	Date string `json:"-"`
	// Name is a label for admins.
	Name string `json:"name,omitempty"`
}

func (h Holiday) recordKey() ([]byte, error) {
	if _, err := time.Parse(time.DateOnly, h.Date); err != nil {
		return nil, fmt.Errorf("holiday date %q: %w", h.Date, err)
	}
	return []byte(h.Date), nil
}

// Event is a ticketed event: tickets (Entry.Event) are valid at the doors of
// DoorGroup from Start to End, for a single entry, with re-entry after an
// exit scan only when Reentry is set.
type Event struct {
	// ID names the event.
	ID string `json:"-"`
	// Start and End bound the event window (End exclusive).
	Start time.Time `json:"start"`
	// End is the end of the event window.
	End time.Time `json:"end"`
	// DoorGroup holds the event's gates.
	DoorGroup string `json:"door_group"`
	// Reentry allows a ticket in again after an exit scan.
	Reentry bool `json:"reentry,omitempty"`
}

func (e Event) check() error {
	if e.Start.IsZero() || !e.End.After(e.Start) {
		return fmt.Errorf("event window %s..%s is empty", e.Start.Format(time.RFC3339), e.End.Format(time.RFC3339))
	}
	return checkID("door group", e.DoorGroup)
}

// Site holds the site-wide settings of a snapshot.
type Site struct {
	// TimeZone is an IANA zone name for schedules and dates; "" means
	// Asia/Tokyo.
	TimeZone string `json:"time_zone,omitempty"`
	// RevocationsAt is when HQ's revocation data in this snapshot was
	// current.
	RevocationsAt time.Time `json:"revocations_at,omitzero"`
	// MaxRevocationAge is how old RevocationsAt may get before the
	// revocation data counts as stale (0: never stale by age).
	MaxRevocationAge time.Duration `json:"max_revocation_age_ns,omitempty"`
}

func (s Site) check() error {
	_, err := s.location()
	if s.MaxRevocationAge < 0 {
		return errors.New("negative max revocation age")
	}
	return err
}

// DefaultTimeZone is the site time zone when Site.TimeZone is empty.
const DefaultTimeZone = "Asia/Tokyo"

func (s Site) location() (*time.Location, error) {
	tz := s.TimeZone
	if tz == "" {
		tz = DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", tz, err)
	}
	return loc, nil
}

// recordOf returns the record of it, validated.
func recordOf(it Item) (k, v []byte, err error) {
	if k, err = it.recordKey(); err != nil {
		return nil, nil, fmt.Errorf("%s key: %w", it.recordKind(), err)
	}
	if v, err = it.recordValue(); err != nil {
		return nil, nil, fmt.Errorf("%s %q: %w", it.recordKind(), printableKey(k), err)
	}
	return k, v, nil
}

// canonicalValue checks one record read from a stream and returns its
// canonical value (JSON kinds are decoded strictly and encoded again).
func canonicalValue(kind RecordKind, key, value []byte) ([]byte, error) {
	switch kind {
	case KindCredential:
		c, err := credential.Parse(key)
		if err != nil {
			return nil, err
		}
		if _, err := entryKey(c); err != nil {
			return nil, err
		}
		e, err := decodeEntryValue(value)
		if err != nil {
			return nil, err
		}
		return Entry{Credential: c, Person: e.person, ValidFrom: e.from, ValidUntil: e.until, Event: e.event}.recordValue()
	case KindRevoked:
		if err := checkCertKey(key); err != nil {
			return nil, err
		}
		if !bytes.Equal(value, []byte{1}) {
			return nil, fmt.Errorf("revocation value is %x, want 01", value)
		}
		return value, nil
	case KindLink:
		if err := checkCertKey(key); err != nil {
			return nil, err
		}
		if err := checkCertKey(value); err != nil {
			return nil, fmt.Errorf("previous certificate: %w", err)
		}
		if bytes.Equal(key, value) {
			return nil, errors.New("a certificate cannot renew itself")
		}
		return value, nil
	case KindPerson:
		if err := checkPerson(string(key)); err != nil {
			return nil, err
		}
		p, err := decodePersonValue(string(key), value)
		if err != nil {
			return nil, err
		}
		return p.recordValue()
	case KindSite:
		if string(key) != "site" {
			return nil, fmt.Errorf("site key %q, want \"site\"", key)
		}
		var s Site
		return rejson(value, &s)
	case KindDoor:
		var d Door
		return rejsonID(key, value, &d, &d.ID)
	case KindArea:
		var a Area
		return rejsonID(key, value, &a, &a.ID)
	case KindLevel:
		var l AccessLevel
		return rejsonID(key, value, &l, &l.ID)
	case KindSchedule:
		var s Schedule
		return rejsonID(key, value, &s, &s.ID)
	case KindHoliday:
		h := Holiday{Date: string(key)}
		if _, err := h.recordKey(); err != nil {
			return nil, err
		}
		return rejson(value, &h)
	case KindEvent:
		var e Event
		return rejsonID(key, value, &e, &e.ID)
	}
	return nil, fmt.Errorf("unknown record kind 0x%02x", byte(kind))
}

// rejsonID decodes value into v (a pointer to a rules struct whose ID
// field is id) and returns its canonical JSON.
func rejsonID(key, value []byte, v any, id *string) ([]byte, error) {
	if err := checkID("id", string(key)); err != nil {
		return nil, err
	}
	*id = string(key)
	return rejson(value, v)
}

// rejson decodes value strictly into v (a pointer to one of the JSON
// record structs), validates it and returns its canonical encoding.
func rejson(value []byte, v any) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("decode JSON value: %w", err)
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	var it Item
	switch p := v.(type) {
	case *Door:
		it = *p
	case *Area:
		it = *p
	case *AccessLevel:
		it = *p
	case *Schedule:
		it = *p
	case *Holiday:
		it = *p
	case *Event:
		it = *p
	case *Site:
		it = *p
	default:
		return nil, fmt.Errorf("no record type %T", v)
	}
	return it.recordValue()
}

func jsonValue(v any, check func() error) ([]byte, error) {
	if err := check(); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func idKey(what, id string) ([]byte, error) {
	if err := checkID(what, id); err != nil {
		return nil, err
	}
	return []byte(id), nil
}

func checkID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s ID is empty", what)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%s ID is %d bytes, want at most %d", what, len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%s ID %q is not UTF-8", what, id)
	}
	return nil
}

func checkWindow(from, until time.Time) error {
	if !from.IsZero() && !until.IsZero() && !until.After(from) {
		return fmt.Errorf("validity window %s..%s is empty", from.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	return nil
}

// checkCertKey checks issuer key ID || serial.
func checkCertKey(k []byte) error {
	if len(k) < credential.KeyIDLen+1 {
		return fmt.Errorf("%w: certificate reference is %d bytes", credential.ErrInvalid, len(k))
	}
	_, err := revocationKey(k[:credential.KeyIDLen], k[credential.KeyIDLen:])
	return err
}

// printableKey renders a record key for an error message.
func printableKey(k []byte) string {
	if utf8.Valid(k) && !bytes.ContainsFunc(k, func(r rune) bool { return r < 0x20 }) {
		return string(k)
	}
	return fmt.Sprintf("%x", k)
}

// Binary value helpers: strings are uvarint length + bytes; times are
// varint Unix seconds with 0 meaning "unset".

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.Unix())
}

// decoder reads the binary values; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("string of %d bytes with %d left", n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() (time.Time, bool) {
	if d.err != nil {
		return time.Time{}, false
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated or overlong time")
		return time.Time{}, false
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}, false
	}
	return time.Unix(v, 0).UTC(), true
}

func (d *decoder) end() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%d bytes after the value", len(d.b))
	}
	return nil
}
