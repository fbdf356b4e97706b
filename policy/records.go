package policy

import (
	"errors"
	"fmt"
	"time"
	"unicode"
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

// known reports whether k is one of the record kinds.
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

// checkID checks the ID of a record or a reference to one; what names the
// record kind in the error.
func checkID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s ID is empty", what)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%s ID is %d bytes, want at most %d", what, len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%s ID %q is not UTF-8", what, id)
	}
	return CheckText(what+" ID", id)
}

// CheckText refuses control characters (NUL, newlines, tabs, escapes: C0,
// DEL and C1) and the Unicode line and paragraph separators in s, the text
// of field what: IDs and names end up in logs, CSV exports and terminals,
// where such characters forge lines or hide text. Every ID of the policy
// model passes it; HQ's registry applies it to every imported cell.
func CheckText(what, s string) error {
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s %q has control character %U at byte %d", what, s, r, i)
		}
	}
	return nil
}

// checkWindow checks a validity window: either end may be unset (zero),
// and a window with both ends set must not be empty.
func checkWindow(from, until time.Time) error {
	if !from.IsZero() && !until.IsZero() && !until.After(from) {
		return fmt.Errorf("validity window %s..%s is empty", from.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	return nil
}
