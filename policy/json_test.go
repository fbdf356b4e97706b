package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/internal/credential"
)

func TestReadSnapshotJSONFixture(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadSnapshotJSON(f)
	if err != nil {
		t.Fatalf("ReadSnapshotJSON(testdata/snapshot.json): %v", err)
	}
	want := Snapshot{
		Version: 3,
		Allow: []Entry{
			{Credential: cert(0xA1, 0x01, 0x02, 0x03, 0x04), Person: "p-0001"},
			{Credential: cert(0xA2, 0xFF, 0x00, 0x01), Person: "p-0002"}, // upper-case hex, leading 00 dropped
			{Credential: freeArea("EMP-0042"), Person: "p-0003"},
		},
		Revoked: []Revocation{{IssuerKeyID: keyID(0xA1), Serial: []byte{0x0B, 0xAD}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadSnapshotJSON(testdata/snapshot.json) =\n%+v\nwant\n%+v", got, want)
	}

	// Written back, it is the canonical form kept in testdata.
	var buf bytes.Buffer
	if err := WriteSnapshotJSON(&buf, got); err != nil {
		t.Fatalf("WriteSnapshotJSON: %v", err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "snapshot.canonical.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), golden) {
		t.Errorf("WriteSnapshotJSON =\n%s\nwant testdata/snapshot.canonical.json:\n%s", buf.Bytes(), golden)
	}
}

func TestReadSnapshotJSONErrors(t *testing.T) {
	const kid = `"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"`
	tests := []struct {
		name, in, want string
	}{
		{"empty input", ``, "decode snapshot JSON: EOF"},
		{"not an object", `[]`, "decode snapshot JSON"},
		{"unknown top-level field", `{"version":1,"extra":true}`, `unknown field "extra"`},
		{"version as string", `{"version":"1"}`, "version"},
		{"bad door mode", `{"version":1,"doors":[{"id":"d","default_mode":"card"},{"id":"e","default_mode":"open"}]}`, `doors[1]: door "e": unknown default mode "open"`},
		{"unknown person field", `{"version":1,"people":[{"id":"p","name":"Taro"}]}`, `people[0]: json: unknown field "name"`},
		{"door twice", `{"version":1,"doors":[{"id":"d"},{"id":"d"}]}`, "doors[1] repeats doors[0]"},
		{"link without previous", `{"version":1,"links":[{"issuer_key_id":` + kid + `,"serial":"01","previous_issuer_key_id":` + kid + `,"previous_serial":""}]}`, "links[0].previous_serial: missing"},
		{"bad site zone", `{"version":1,"site":{"time_zone":"Mars/Olympus"}}`, `site: site "site": time zone`},
		{"version missing", `{"allow":[]}`, "version 0"},
		{"negative version", `{"version":-1}`, "version"},
		{"trailing data", `{"version":1} {"version":2}`, "data after the snapshot object"},
		{"unknown entry field", `{"version":1,"allow":[{"free_area_id":"x","person":"p"},{"free_area_id":"y","person":"p","name":"n"}]}`, `allow[1]: json: unknown field "name"`},
		{"null entry", `{"version":1,"allow":[null]}`, "allow[0]: null entry"},
		{"entry not an object", `{"version":1,"allow":[7]}`, "allow[0]: json: cannot unmarshal number"},
		{"person missing", `{"version":1,"allow":[{"free_area_id":"x"}]}`, "allow[0].person: missing or empty"},
		{"no identifier", `{"version":1,"allow":[{"person":"p"}]}`, "allow[0]: neither issuer_key_id+serial nor free_area_id"},
		{"both identifiers", `{"version":1,"allow":[{"issuer_key_id":` + kid + `,"serial":"01","free_area_id":"x","person":"p"}]}`, "allow[0].free_area_id: set together"},
		{"serial missing", `{"version":1,"allow":[{"issuer_key_id":` + kid + `,"person":"p"}]}`, "allow[0].serial: missing"},
		{"issuer missing", `{"version":1,"allow":[{"serial":"01","person":"p"}]}`, "allow[0].issuer_key_id: missing"},
		{"issuer not hex", `{"version":1,"allow":[{"issuer_key_id":"zz","serial":"01","person":"p"}]}`, `allow[0].issuer_key_id: "zz" is not hex`},
		{"issuer short", `{"version":1,"allow":[{"issuer_key_id":"a1a1","serial":"01","person":"p"}]}`, `allow[0].issuer_key_id: "a1a1" is 2 bytes, want 20`},
		{"serial odd hex", `{"version":1,"allow":[{"issuer_key_id":` + kid + `,"serial":"123","person":"p"}]}`, `allow[0].serial: "123" is not hex`},
		{"serial zero", `{"version":1,"allow":[{"issuer_key_id":` + kid + `,"serial":"0000","person":"p"}]}`, `allow[0].serial: "0000" is zero`},
		{"serial too long", `{"version":1,"allow":[{"issuer_key_id":` + kid + `,"serial":"` + strings.Repeat("11", 21) + `","person":"p"}]}`, "allow[0].serial: "},
		{"free-area ID too long", `{"version":1,"allow":[{"free_area_id":"` + strings.Repeat("x", credential.MaxFreeAreaIDLen+1) + `","person":"p"}]}`, "allow[0]: invalid credential: free-area ID is 65 bytes"},
		{"duplicate", `{"version":1,"allow":[{"free_area_id":"x","person":"p"},{"free_area_id":"x","person":"q"}]}`, "allow[1] (freearea:x) repeats allow[0]"},
		{"revocation unknown field", `{"version":1,"revoked":[{"issuer_key_id":` + kid + `,"serial":"01","person":"p"}]}`, `revoked[0]: json: unknown field "person"`},
		{"revocation bad serial", `{"version":1,"revoked":[{"issuer_key_id":` + kid + `,"serial":"01"},{"issuer_key_id":` + kid + `,"serial":"x"}]}`, `revoked[1].serial: "x" is not hex`},
		{"revocation bad issuer", `{"version":1,"revoked":[{"issuer_key_id":"","serial":"01"}]}`, "revoked[0].issuer_key_id: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := ReadSnapshotJSON(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ReadSnapshotJSON(%s) = %+v, want an error", tt.in, snap)
			}
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Errorf("ReadSnapshotJSON error %q does not wrap ErrInvalidSnapshot", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadSnapshotJSON error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestWriteSnapshotJSONRefusesInvalid(t *testing.T) {
	var buf bytes.Buffer
	err := WriteSnapshotJSON(&buf, Snapshot{Version: 1, Allow: []Entry{{Credential: cert(1), Person: "p"}}})
	if !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), "allow[0]") {
		t.Errorf("WriteSnapshotJSON(invalid) = %v, want ErrInvalidSnapshot naming allow[0]", err)
	}
	if buf.Len() != 0 {
		t.Errorf("WriteSnapshotJSON(invalid) wrote %q", buf.Bytes())
	}
}

// FuzzReadSnapshotJSON feeds arbitrary bytes to the decoder: it must not
// panic, anything it accepts must validate, and writing it back and reading
// it again must give the same snapshot.
func FuzzReadSnapshotJSON(f *testing.F) {
	fixture, err := os.ReadFile(filepath.Join("testdata", "snapshot.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	if site, err := os.ReadFile(filepath.Join("testdata", "site.json")); err == nil {
		f.Add(site)
	}
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"allow":[{"free_area_id":"\u00e9","person":"p"}],"revoked":[]}`))
	f.Add([]byte(`{"version":18446744073709551615,"allow":null,"revoked":[{"issuer_key_id":"0000000000000000000000000000000000000000","serial":"00000001"}]}`))
	f.Add([]byte(`{"version":1,"allow":[{"issuer_key_id":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","serial":"01","person":"p"},{"issuer_key_id":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","serial":"0001","person":"q"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := ReadSnapshotJSON(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("error %q does not wrap ErrInvalidSnapshot", err)
			}
			return
		}
		if err := snap.Validate(); err != nil {
			t.Fatalf("accepted snapshot does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := WriteSnapshotJSON(&buf, snap); err != nil {
			t.Fatalf("WriteSnapshotJSON of an accepted snapshot: %v", err)
		}
		again, err := ReadSnapshotJSON(&buf)
		if err != nil {
			t.Fatalf("reading back what WriteSnapshotJSON wrote: %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(snap, again) {
			t.Fatalf("round trip changed the snapshot:\n%+v\n%+v", snap, again)
		}
	})
}

// TestSiteJSON reads the rules-model fixture, applies it and decides on it:
// the JSON sections reach DecideAt, and the file survives a write/read
// round trip.
func TestSiteJSON(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "site.json"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := ReadSnapshotJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("ReadSnapshotJSON(testdata/site.json): %v", err)
	}
	if len(snap.Doors) != 3 || snap.Doors[1].ID != "server" || snap.Doors[1].DefaultMode != ModeCardPIN || snap.Site == nil || len(snap.Holidays) != 1 {
		t.Fatalf("decoded snapshot = %+v", snap)
	}
	var buf bytes.Buffer
	if err := WriteSnapshotJSON(&buf, snap); err != nil {
		t.Fatal(err)
	}
	again, err := ReadSnapshotJSON(&buf)
	if err != nil || !reflect.DeepEqual(again, snap) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, again, snap)
	}
	s, _ := openStore(t)
	mustApply(t, s, snap)
	tests := []struct {
		req  Request
		want Reason
	}{
		{Request{Credential: cert(1, 0xA1), Door: "front", Now: at(7, 10, 0)}, ReasonEnrolled},
		{Request{Credential: cert(1, 0xA2), Door: "front", Now: at(7, 10, 1)}, ReasonRenewed},
		{Request{Credential: cert(1, 0xA1), Door: "front", Now: at(8, 10, 0)}, ReasonOutsideSchedule},
		{Request{Credential: cert(1, 0xB0), Door: "server", Now: at(8, 10, 1)}, ReasonPINRequired},
		{Request{Credential: cert(1, 0xB0), Door: "server", Now: at(8, 10, 2), PINVerified: true}, ReasonEnrolled},
		{Request{Credential: cert(1, 0xB0), Door: "server", Now: at(8, 10, 3), PINVerified: true}, ReasonPassback},
		{Request{Credential: cert(1, 0xF0), Door: "front", Now: at(8, 10, 4)}, ReasonRevoked},
		{Request{Credential: freeArea("TKT-1"), Door: "gate1", Now: at(12, 18, 0)}, ReasonTicket},
	}
	for _, tt := range tests {
		if d := s.DecideAt(tt.req); d.Reason != tt.want || d.SnapshotVersion != 12 {
			t.Errorf("DecideAt(%s at %s, %s) = %+v, want %s", tt.req.Credential, tt.req.Door, tt.req.Now, d, tt.want)
		}
	}
}
