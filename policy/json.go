package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

// snapshotJSON is the file shape; entries stay raw so that each one is
// decoded on its own and an error can name its index.
type snapshotJSON struct {
	Version   uint64            `json:"version"`
	Allow     []json.RawMessage `json:"allow"`
	Revoked   []json.RawMessage `json:"revoked"`
	Site      json.RawMessage   `json:"site,omitempty"`
	People    []json.RawMessage `json:"people,omitempty"`
	Links     []json.RawMessage `json:"links,omitempty"`
	Doors     []json.RawMessage `json:"doors,omitempty"`
	Areas     []json.RawMessage `json:"areas,omitempty"`
	Levels    []json.RawMessage `json:"levels,omitempty"`
	Schedules []json.RawMessage `json:"schedules,omitempty"`
	Holidays  []json.RawMessage `json:"holidays,omitempty"`
	Events    []json.RawMessage `json:"events,omitempty"`
}

// entryJSON is one allowlist entry: either issuer_key_id + serial, or
// free_area_id.
type entryJSON struct {
	IssuerKeyID string    `json:"issuer_key_id,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	FreeAreaID  string    `json:"free_area_id,omitempty"`
	Person      string    `json:"person"`
	ValidFrom   time.Time `json:"valid_from,omitzero"`
	ValidUntil  time.Time `json:"valid_until,omitzero"`
	Event       string    `json:"event,omitempty"`
}

// The rules model's sections: each record with its ID as "id" (or "date").
type (
	personJSON struct {
		ID         string    `json:"id"`
		ValidFrom  time.Time `json:"valid_from,omitzero"`
		ValidUntil time.Time `json:"valid_until,omitzero"`
		Groups     []string  `json:"groups,omitempty"`
	}
	linkJSON struct {
		IssuerKeyID         string `json:"issuer_key_id"`
		Serial              string `json:"serial"`
		PreviousIssuerKeyID string `json:"previous_issuer_key_id"`
		PreviousSerial      string `json:"previous_serial"`
	}
	doorJSON struct {
		ID string `json:"id"`
		Door
	}
	areaJSON struct {
		ID string `json:"id"`
		Area
	}
	levelJSON struct {
		ID string `json:"id"`
		AccessLevel
	}
	scheduleJSON struct {
		ID string `json:"id"`
		Schedule
	}
	holidayJSON struct {
		Date string `json:"date"`
		Holiday
	}
	eventJSON struct {
		ID string `json:"id"`
		Event
	}
)

// decodeList decodes each raw element strictly into a W and converts it,
// naming the element in errors ("doors[2]: ...").
func decodeList[W, T any](raws []json.RawMessage, name string, conv func(W) (T, error)) ([]T, error) {
	var out []T
	for i, raw := range raws {
		var w W
		if err := decodeStrict(raw, &w); err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %w", ErrInvalidSnapshot, name, i, err)
		}
		t, err := conv(w)
		if fe := (*fieldError)(nil); errors.As(err, &fe) {
			return nil, fmt.Errorf("%w: %s[%d]%w", ErrInvalidSnapshot, name, i, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %w", ErrInvalidSnapshot, name, i, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// nilIfEmpty maps an empty slice to nil: the writer omits empty sections,
// so a round trip gives nil either way.
func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// utc drops a time's zone so that snapshots compare equal after a round
// trip (the store keeps Unix seconds anyway).
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// decodeRules fills the rules-model sections of snap from f.
func decodeRules(f snapshotJSON, snap *Snapshot) error {
	var err error
	if len(f.Site) > 0 && !bytes.Equal(bytes.TrimSpace(f.Site), []byte("null")) {
		var site Site
		if err := decodeStrict(f.Site, &site); err != nil {
			return fmt.Errorf("%w: site: %w", ErrInvalidSnapshot, err)
		}
		site.RevocationsAt = utc(site.RevocationsAt)
		snap.Site = &site
	}
	if snap.People, err = decodeList(f.People, "people", func(w personJSON) (Person, error) {
		return Person{ID: w.ID, ValidFrom: utc(w.ValidFrom), ValidUntil: utc(w.ValidUntil), Groups: nilIfEmpty(w.Groups)}, nil
	}); err != nil {
		return err
	}
	if snap.Links, err = decodeList(f.Links, "links", func(w linkJSON) (RenewalLink, error) {
		var l RenewalLink
		var err error
		if l.New.IssuerKeyID, err = decodeKeyID(w.IssuerKeyID); err != nil {
			return l, &fieldError{field: "issuer_key_id", err: err}
		}
		if l.New.Serial, err = decodeSerial(w.Serial); err != nil {
			return l, &fieldError{field: "serial", err: err}
		}
		if l.Previous.IssuerKeyID, err = decodeKeyID(w.PreviousIssuerKeyID); err != nil {
			return l, &fieldError{field: "previous_issuer_key_id", err: err}
		}
		if l.Previous.Serial, err = decodeSerial(w.PreviousSerial); err != nil {
			return l, &fieldError{field: "previous_serial", err: err}
		}
		return l, nil
	}); err != nil {
		return err
	}
	if snap.Doors, err = decodeList(f.Doors, "doors", func(w doorJSON) (Door, error) { w.Door.ID = w.ID; return w.Door, nil }); err != nil {
		return err
	}
	if snap.Areas, err = decodeList(f.Areas, "areas", func(w areaJSON) (Area, error) { w.Area.ID = w.ID; return w.Area, nil }); err != nil {
		return err
	}
	if snap.Levels, err = decodeList(f.Levels, "levels", func(w levelJSON) (AccessLevel, error) {
		w.AccessLevel.ID = w.ID
		return w.AccessLevel, nil
	}); err != nil {
		return err
	}
	if snap.Schedules, err = decodeList(f.Schedules, "schedules", func(w scheduleJSON) (Schedule, error) {
		w.Schedule.ID = w.ID
		w.Schedule.Windows, w.Schedule.Special = nilIfEmpty(w.Schedule.Windows), nilIfEmpty(w.Schedule.Special)
		for i := range w.Schedule.Special {
			w.Schedule.Special[i].Windows = nilIfEmpty(w.Schedule.Special[i].Windows)
		}
		return w.Schedule, nil
	}); err != nil {
		return err
	}
	if snap.Holidays, err = decodeList(f.Holidays, "holidays", func(w holidayJSON) (Holiday, error) {
		w.Holiday.Date = w.Date
		return w.Holiday, nil
	}); err != nil {
		return err
	}
	if snap.Events, err = decodeList(f.Events, "events", func(w eventJSON) (Event, error) {
		w.Event.ID = w.ID
		w.Event.Start, w.Event.End = utc(w.Event.Start), utc(w.Event.End)
		return w.Event, nil
	}); err != nil {
		return err
	}
	return nil
}

// revocationJSON is one revoked certificate.
type revocationJSON struct {
	IssuerKeyID string `json:"issuer_key_id"`
	Serial      string `json:"serial"`
}

// ReadSnapshotJSON decodes a snapshot file:
//
//	{"version": N,
//	 "allow": [{"issuer_key_id": "hex", "serial": "hex", "person": "p1"},
//	           {"free_area_id": "...", "person": "p2", "valid_until": "RFC 3339", "event": "ev"}],
//	 "revoked": [{"issuer_key_id": "hex", "serial": "hex"}],
//	 "site": {...}, "people": [...], "links": [...], "doors": [...], "areas": [...],
//	 "levels": [...], "schedules": [...], "holidays": [...], "events": [...]}
//
// The rules-model sections are optional; each element is the record's
// JSON (docs/POLICY.md, testdata/site.json) plus its "id" ("date" for a
// holiday); a link has issuer_key_id, serial, previous_issuer_key_id and
// previous_serial. Times are RFC 3339 and come back in UTC.
//
// Unknown fields, trailing data and entries with neither or both kinds of
// identifier are refused. Serials are hex of the unsigned big-endian value;
// leading zero bytes (as in a DER INTEGER) are dropped. The result is
// checked with Snapshot.Validate. Errors wrap ErrInvalidSnapshot and name
// the entry index and field, as in "allow[2].serial: ...".
func ReadSnapshotJSON(r io.Reader) (Snapshot, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f snapshotJSON
	if err := dec.Decode(&f); err != nil {
		return Snapshot{}, fmt.Errorf("%w: decode snapshot JSON: %w", ErrInvalidSnapshot, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Snapshot{}, fmt.Errorf("%w: decode snapshot JSON: data after the snapshot object", ErrInvalidSnapshot)
	}
	snap := Snapshot{Version: f.Version}
	for i, raw := range f.Allow {
		e, err := decodeEntry(raw)
		if err != nil {
			return Snapshot{}, fmt.Errorf("%w: allow[%d]%w", ErrInvalidSnapshot, i, err)
		}
		snap.Allow = append(snap.Allow, e)
	}
	for i, raw := range f.Revoked {
		var rj revocationJSON
		if err := decodeStrict(raw, &rj); err != nil {
			return Snapshot{}, fmt.Errorf("%w: revoked[%d]: %w", ErrInvalidSnapshot, i, err)
		}
		kid, err := decodeKeyID(rj.IssuerKeyID)
		if err != nil {
			return Snapshot{}, fmt.Errorf("%w: revoked[%d].issuer_key_id: %w", ErrInvalidSnapshot, i, err)
		}
		serial, err := decodeSerial(rj.Serial)
		if err != nil {
			return Snapshot{}, fmt.Errorf("%w: revoked[%d].serial: %w", ErrInvalidSnapshot, i, err)
		}
		snap.Revoked = append(snap.Revoked, Revocation{IssuerKeyID: kid, Serial: serial})
	}
	if err := decodeRules(f, &snap); err != nil {
		return Snapshot{}, err
	}
	if err := snap.Validate(); err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}

// fieldError prefixes an entry error with the field it is about, so that
// "allow[%d]%w" reads "allow[3].serial: ...".
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return ": " + e.err.Error()
	}
	return "." + e.field + ": " + e.err.Error()
}

func (e *fieldError) Unwrap() error { return e.err }

// decodeEntry decodes one allowlist entry.
func decodeEntry(raw json.RawMessage) (Entry, error) {
	var ej entryJSON
	if err := decodeStrict(raw, &ej); err != nil {
		return Entry{}, &fieldError{err: err}
	}
	if ej.Person == "" {
		return Entry{}, &fieldError{field: "person", err: errors.New("missing or empty")}
	}
	hasCert := ej.IssuerKeyID != "" || ej.Serial != ""
	switch {
	case hasCert && ej.FreeAreaID != "":
		return Entry{}, &fieldError{field: "free_area_id", err: errors.New("set together with issuer_key_id/serial; an entry has one or the other")}
	case ej.FreeAreaID != "":
		return Entry{Credential: credential.Credential{Kind: credential.KindFreeArea, ID: ej.FreeAreaID}, Person: ej.Person,
			ValidFrom: utc(ej.ValidFrom), ValidUntil: utc(ej.ValidUntil), Event: ej.Event}, nil
	case !hasCert:
		return Entry{}, &fieldError{err: errors.New("neither issuer_key_id+serial nor free_area_id is set")}
	}
	kid, err := decodeKeyID(ej.IssuerKeyID)
	if err != nil {
		return Entry{}, &fieldError{field: "issuer_key_id", err: err}
	}
	serial, err := decodeSerial(ej.Serial)
	if err != nil {
		return Entry{}, &fieldError{field: "serial", err: err}
	}
	return Entry{
		Credential: credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid, Serial: serial},
		Person:     ej.Person,
		ValidFrom:  utc(ej.ValidFrom),
		ValidUntil: utc(ej.ValidUntil),
		Event:      ej.Event,
	}, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields.
func decodeStrict(raw json.RawMessage, v any) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return errors.New("null entry")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func decodeKeyID(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not hex: %w", s, err)
	}
	if len(b) != credential.KeyIDLen {
		return nil, fmt.Errorf("%q is %d bytes, want %d", s, len(b), credential.KeyIDLen)
	}
	return b, nil
}

func decodeSerial(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not hex: %w", s, err)
	}
	b = bytes.TrimLeft(b, "\x00")
	if len(b) == 0 {
		return nil, fmt.Errorf("%q is zero", s)
	}
	if len(b) > credential.MaxSerialLen {
		return nil, fmt.Errorf("%q is %d bytes, want at most %d", s, len(b), credential.MaxSerialLen)
	}
	return b, nil
}

// WriteSnapshotJSON encodes s, indented, in the format ReadSnapshotJSON
// reads, with lower-case hex. It validates s first, so that every file it
// writes can be read back into an equal Snapshot.
func WriteSnapshotJSON(w io.Writer, s Snapshot) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("write snapshot JSON version %d: %w", s.Version, err)
	}
	f := struct {
		Version   uint64           `json:"version"`
		Allow     []entryJSON      `json:"allow"`
		Revoked   []revocationJSON `json:"revoked"`
		Site      *Site            `json:"site,omitempty"`
		People    []personJSON     `json:"people,omitempty"`
		Links     []linkJSON       `json:"links,omitempty"`
		Doors     []doorJSON       `json:"doors,omitempty"`
		Areas     []areaJSON       `json:"areas,omitempty"`
		Levels    []levelJSON      `json:"levels,omitempty"`
		Schedules []scheduleJSON   `json:"schedules,omitempty"`
		Holidays  []holidayJSON    `json:"holidays,omitempty"`
		Events    []eventJSON      `json:"events,omitempty"`
	}{
		Version: s.Version,
		Allow:   make([]entryJSON, 0, len(s.Allow)),
		Revoked: make([]revocationJSON, 0, len(s.Revoked)),
		Site:    s.Site,
	}
	for _, p := range s.People {
		f.People = append(f.People, personJSON(p))
	}
	for _, l := range s.Links {
		f.Links = append(f.Links, linkJSON{IssuerKeyID: hex.EncodeToString(l.New.IssuerKeyID), Serial: hex.EncodeToString(l.New.Serial),
			PreviousIssuerKeyID: hex.EncodeToString(l.Previous.IssuerKeyID), PreviousSerial: hex.EncodeToString(l.Previous.Serial)})
	}
	for _, d := range s.Doors {
		f.Doors = append(f.Doors, doorJSON{ID: d.ID, Door: d})
	}
	for _, a := range s.Areas {
		f.Areas = append(f.Areas, areaJSON{ID: a.ID, Area: a})
	}
	for _, l := range s.Levels {
		f.Levels = append(f.Levels, levelJSON{ID: l.ID, AccessLevel: l})
	}
	for _, sc := range s.Schedules {
		f.Schedules = append(f.Schedules, scheduleJSON{ID: sc.ID, Schedule: sc})
	}
	for _, h := range s.Holidays {
		f.Holidays = append(f.Holidays, holidayJSON{Date: h.Date, Holiday: h})
	}
	for _, e := range s.Events {
		f.Events = append(f.Events, eventJSON{ID: e.ID, Event: e})
	}
	for _, e := range s.Allow {
		ej := entryJSON{Person: e.Person, ValidFrom: e.ValidFrom, ValidUntil: e.ValidUntil, Event: e.Event}
		if e.Credential.Kind == credential.KindFreeArea {
			ej.FreeAreaID = e.Credential.ID
		} else {
			ej.IssuerKeyID = hex.EncodeToString(e.Credential.IssuerKeyID)
			ej.Serial = hex.EncodeToString(e.Credential.Serial)
		}
		f.Allow = append(f.Allow, ej)
	}
	for _, r := range s.Revoked {
		f.Revoked = append(f.Revoked, revocationJSON{IssuerKeyID: hex.EncodeToString(r.IssuerKeyID), Serial: hex.EncodeToString(r.Serial)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("write snapshot JSON version %d: %w", s.Version, err)
	}
	return nil
}
