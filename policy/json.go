package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tobira-ac/tobira/internal/credential"
)

// snapshotJSON is the file shape; entries stay raw so that each one is
// decoded on its own and an error can name its index.
type snapshotJSON struct {
	Version uint64            `json:"version"`
	Allow   []json.RawMessage `json:"allow"`
	Revoked []json.RawMessage `json:"revoked"`
}

// entryJSON is one allowlist entry: either issuer_key_id + serial, or
// free_area_id.
type entryJSON struct {
	IssuerKeyID string `json:"issuer_key_id,omitempty"`
	Serial      string `json:"serial,omitempty"`
	FreeAreaID  string `json:"free_area_id,omitempty"`
	Person      string `json:"person"`
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
//	           {"free_area_id": "...", "person": "p2"}],
//	 "revoked": [{"issuer_key_id": "hex", "serial": "hex"}]}
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
		return Entry{Credential: credential.Credential{Kind: credential.KindFreeArea, ID: ej.FreeAreaID}, Person: ej.Person}, nil
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
		Version uint64           `json:"version"`
		Allow   []entryJSON      `json:"allow"`
		Revoked []revocationJSON `json:"revoked"`
	}{
		Version: s.Version,
		Allow:   make([]entryJSON, 0, len(s.Allow)),
		Revoked: make([]revocationJSON, 0, len(s.Revoked)),
	}
	for _, e := range s.Allow {
		ej := entryJSON{Person: e.Person}
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
