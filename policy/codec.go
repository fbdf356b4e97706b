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

// The codec of the snapshot records (the model is in records.go): each Item
// gives its kind, key and value bytes as the stream and policy.db hold
// them. Credentials, revocations, renewal links and people have compact
// binary values; the rules records are canonical JSON.

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

func (h Holiday) recordKey() ([]byte, error) {
	if _, err := time.Parse(time.DateOnly, h.Date); err != nil {
		return nil, fmt.Errorf("holiday date %q: %w", h.Date, err)
	}
	return []byte(h.Date), nil
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
