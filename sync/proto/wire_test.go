package proto_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// readFixture returns a file from testdata.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeBatchFixture(t *testing.T) {
	b, err := proto.DecodeBatch(readFixture(t, "batch.json"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Site != "tokyo-hq" || b.Device != "gate-01" {
		t.Errorf("site/device = %s/%s, want tokyo-hq/gate-01", b.Site, b.Device)
	}
	want := []proto.Event{
		{Seq: 41, Time: time.Date(2026, 4, 1, 8, 59, 58, 120e6, time.UTC), Type: proto.TypeDecision, Door: "main-gate",
			Granted: true, Reason: "enrolled", Credential: "01a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10f4240", Token: "mynumber", DecisionUS: 1840},
		{Seq: 42, Time: time.Date(2026, 4, 1, 8, 59, 59, 500e6, time.UTC), Type: proto.TypeDecision, Door: "main-gate",
			Reason: "revoked", Credential: "01a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10f4241", Token: "mynumber", DecisionUS: 912},
		{Seq: 43, Time: time.Date(2026, 4, 1, 9, 0, 3, 0, time.UTC), Type: proto.TypeDoor, Door: "main-gate",
			Reason: "held_open", Detail: "open for 30s"},
	}
	if d := prototest.DiffEvents(b.Events, want); d != "" {
		t.Error(d)
	}
}

// mutate decodes the fixture into a generic map, applies f and re-encodes.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFixture(t, "batch.json"), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// event returns event i of a generic batch.
func event(m map[string]any, i int) map[string]any {
	return m["events"].([]any)[i].(map[string]any)
}

func TestDecodeBatchRejects(t *testing.T) {
	manyEvents := func(n int) func(m map[string]any) {
		return func(m map[string]any) {
			evs := make([]any, n)
			for i := range evs {
				evs[i] = map[string]any{"seq": i + 1, "time": "2026-04-01T00:00:00Z", "type": "door"}
			}
			m["events"] = evs
		}
	}
	tests := []struct {
		name    string
		payload []byte
		want    string // in the error text
	}{
		{"empty", nil, "unexpected end"},
		{"not JSON", []byte("hello"), "invalid character"},
		{"array", []byte("[]"), "cannot unmarshal"},
		{"trailing data", append(readFixture(t, "batch.json"), []byte(" {}")...), "invalid character"},
		{"too big", []byte(`{"pad":"` + strings.Repeat("x", proto.MaxPayload) + `"}`), "max"},
		{"no site", mutate(t, func(m map[string]any) { delete(m, "site") }), "site"},
		{"site with slash", mutate(t, func(m map[string]any) { m["site"] = "a/b" }), "site"},
		{"device wildcard", mutate(t, func(m map[string]any) { m["device"] = "+" }), "device"},
		{"device too long", mutate(t, func(m map[string]any) { m["device"] = strings.Repeat("d", proto.MaxNameLen+1) }), "device"},
		{"no events", mutate(t, func(m map[string]any) { m["events"] = []any{} }), "0 events"},
		{"null events", mutate(t, func(m map[string]any) { m["events"] = nil }), "0 events"},
		{"too many events", mutate(t, manyEvents(proto.MaxBatch+1)), "1001 events"},
		{"seq 0", mutate(t, func(m map[string]any) {
			m["events"] = []any{map[string]any{"seq": 0, "time": "2026-04-01T00:00:00Z", "type": "door"}}
		}), "seq 0"},
		{"gap", mutate(t, func(m map[string]any) { event(m, 2)["seq"] = 44 }), "consecutive"},
		{"descending", mutate(t, func(m map[string]any) { event(m, 1)["seq"] = 40 }), "consecutive"},
		{"negative seq", mutate(t, func(m map[string]any) { event(m, 0)["seq"] = -1 }), "cannot unmarshal"},
		{"seq wraps", mutate(t, func(m map[string]any) {
			m["events"] = []any{
				map[string]any{"seq": uint64(1<<64 - 1), "time": "2026-04-01T00:00:00Z", "type": "door"},
				map[string]any{"seq": 0, "time": "2026-04-01T00:00:00Z", "type": "door"},
			}
		}), "consecutive"},
		{"no type", mutate(t, func(m map[string]any) { delete(event(m, 0), "type") }), "empty type"},
		{"undefined type", mutate(t, func(m map[string]any) { event(m, 1)["type"] = "admin_override" }), `type "admin_override"`},
		{"no time", mutate(t, func(m map[string]any) { delete(event(m, 1), "time") }), "zero time"},
		{"bad time", mutate(t, func(m map[string]any) { event(m, 1)["time"] = "yesterday" }), "cannot parse"},
		{"detail too long", mutate(t, func(m map[string]any) { event(m, 2)["detail"] = strings.Repeat("x", proto.MaxDetailLen+1) }), "detail"},
		{"negative decision time", mutate(t, func(m map[string]any) { event(m, 0)["decision_us"] = -5 }), "decision_us"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := proto.DecodeBatch(tt.payload)
			if !errors.Is(err, proto.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestDecodeBatchIgnoresUnknownFields(t *testing.T) {
	p := mutate(t, func(m map[string]any) {
		m["firmware"] = "2.0"
		event(m, 0)["lane"] = 3
	})
	b, err := proto.DecodeBatch(p)
	if err != nil {
		t.Fatalf("a newer device's extra fields must be accepted: %v", err)
	}
	if len(b.Events) != 3 {
		t.Fatalf("%d events, want 3", len(b.Events))
	}
}

func TestDecodeAck(t *testing.T) {
	tests := []struct {
		payload string
		want    uint64
		wantErr string
	}{
		{string(readFixture(t, "ack.json")), 43, ""},
		{`{"seq":1}`, 1, ""},
		{`{"seq":18446744073709551615}`, 1<<64 - 1, ""},
		{` {"seq": 7, "note": "extra fields are ignored"} `, 7, ""},
		{`{"seq":0}`, 0, "seq 0"},
		{`{}`, 0, "no seq"},
		{`null`, 0, "no seq"},
		{`{"seq":null}`, 0, "no seq"},
		{`{"seq":-1}`, 0, "cannot unmarshal"},
		{`{"seq":1.5}`, 0, "cannot unmarshal"},
		{`{"seq":"5"}`, 0, "cannot unmarshal"},
		{`{"seq":18446744073709551616}`, 0, "cannot unmarshal"},
		{`[5]`, 0, "cannot unmarshal"},
		{`seq=5`, 0, "invalid character"},
		{``, 0, "unexpected end"},
		{`{"seq":5}` + strings.Repeat(" ", 300), 0, "max"},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			got, err := proto.DecodeAck([]byte(tt.payload))
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("DecodeAck = %d, %v; want %d", got, err, tt.want)
				}
				if back, err := proto.DecodeAck(proto.EncodeAck(got)); err != nil || back != got {
					t.Fatalf("EncodeAck round trip = %d, %v; want %d", back, err, got)
				}
				return
			}
			if !errors.Is(err, proto.ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeAck = %d, %v; want ErrMalformed mentioning %q", got, err, tt.wantErr)
			}
		})
	}
}

func TestTopics(t *testing.T) {
	if got, want := proto.EventsTopic("tokyo-hq", "gate-01"), "tobira/v1/tokyo-hq/gate-01/events"; got != want {
		t.Errorf("EventsTopic = %q, want %q", got, want)
	}
	if got, want := proto.AckTopic("tokyo-hq", "gate-01"), "tobira/v1/tokyo-hq/gate-01/ack"; got != want {
		t.Errorf("AckTopic = %q, want %q", got, want)
	}
	tests := []struct {
		topic        string
		site, device string // empty: want ErrMalformed
	}{
		{"tobira/v1/tokyo-hq/gate-01/events", "tokyo-hq", "gate-01"},
		{"tobira/v1/s.1/D_2/events", "s.1", "D_2"},
		{"tobira/v1/tokyo-hq/gate-01/ack", "", ""},
		{"tobira/v2/tokyo-hq/gate-01/events", "", ""},
		{"tobira/v1/tokyo-hq/events", "", ""},
		{"tobira/v1/a/b/c/events", "", ""},
		{"tobira/v1//gate-01/events", "", ""},
		{"tobira/v1/tokyo hq/gate-01/events", "", ""},
		{"tobira/v1/+/gate-01/events", "", ""},
		{"/tobira/v1/s/d/events", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			site, device, err := proto.ParseEventsTopic(tt.topic)
			if tt.site == "" {
				if !errors.Is(err, proto.ErrMalformed) {
					t.Fatalf("ParseEventsTopic = %q, %q, %v; want ErrMalformed", site, device, err)
				}
				return
			}
			if err != nil || site != tt.site || device != tt.device {
				t.Fatalf("ParseEventsTopic = %q, %q, %v; want %q, %q", site, device, err, tt.site, tt.device)
			}
			if back := proto.EventsTopic(site, device); back != tt.topic {
				t.Fatalf("EventsTopic(ParseEventsTopic(%q)) = %q", tt.topic, back)
			}
		})
	}
}

// FuzzDecodeBatch feeds arbitrary payloads to HQ's decoder: it must not
// panic, must fail only with ErrMalformed, and what it accepts must obey the
// protocol and survive a round trip.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(readFixture(f, "batch.json"))
	f.Add([]byte(`{"device":"d","site":"s","events":[{"seq":1,"time":"2026-01-01T00:00:00+09:00","type":"system"}]}`))
	f.Add([]byte(`{"device":"d","site":"s","events":[{"seq":18446744073709551615,"time":"2026-01-01T00:00:00Z","type":"x"}]}`))
	f.Add([]byte(`{"device":"d","site":"s","events":[{"seq":0}]}`))
	f.Add([]byte(`{"events":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := proto.DecodeBatch(payload)
		if err != nil {
			if !errors.Is(err, proto.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if proto.CheckName(b.Site) != nil || proto.CheckName(b.Device) != nil {
			t.Fatalf("accepted bad names %q/%q", b.Site, b.Device)
		}
		if len(b.Events) == 0 || len(b.Events) > proto.MaxBatch {
			t.Fatalf("accepted %d events", len(b.Events))
		}
		for i, ev := range b.Events {
			if ev.Seq != b.Events[0].Seq+uint64(i) || ev.Seq == 0 {
				t.Fatalf("accepted seq %d at %d after first seq %d", ev.Seq, i, b.Events[0].Seq)
			}
			if ev.Type == "" || ev.Time.IsZero() {
				t.Fatalf("accepted event without type or time: %+v", ev)
			}
		}
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("re-encode accepted batch: %v", err)
		}
		b2, err := proto.DecodeBatch(again)
		if err != nil {
			t.Fatalf("re-encoded batch rejected: %v", err)
		}
		if b2.Site != b.Site || b2.Device != b.Device {
			t.Fatalf("round trip changed names")
		}
		if d := prototest.DiffEvents(b2.Events, b.Events); d != "" {
			t.Fatalf("round trip: %s", d)
		}
	})
}

// FuzzParseEventsTopic checks that accepted topics are exactly those
// EventsTopic builds.
func FuzzParseEventsTopic(f *testing.F) {
	f.Add("tobira/v1/tokyo-hq/gate-01/events")
	f.Add("tobira/v1/+/+/events")
	f.Add("tobira/v1/a/b/ack")
	f.Fuzz(func(t *testing.T, topic string) {
		site, device, err := proto.ParseEventsTopic(topic)
		if err != nil {
			if !errors.Is(err, proto.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if proto.EventsTopic(site, device) != topic {
			t.Fatalf("accepted %q as %q/%q", topic, site, device)
		}
	})
}

// FuzzDecodeAck feeds arbitrary payloads to the edge's ack decoder: no
// panic, only ErrMalformed, and an accepted seq is at least 1 and survives
// a round trip.
func FuzzDecodeAck(f *testing.F) {
	f.Add(readFixture(f, "ack.json"))
	f.Add([]byte(`{"seq":0}`))
	f.Add([]byte(`{"seq":-1}`))
	f.Add([]byte(`{"seq":1e3}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		seq, err := proto.DecodeAck(payload)
		if err != nil {
			if !errors.Is(err, proto.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if seq == 0 {
			t.Fatal("accepted seq 0")
		}
		if back, err := proto.DecodeAck(proto.EncodeAck(seq)); err != nil || back != seq {
			t.Fatalf("round trip of %d = %d, %v", seq, back, err)
		}
	})
}

// EncodeBatch gives the bytes json.Marshal(Batch) gives, and splits a batch
// that would exceed MaxPayload into the longest prefix that fits.
func TestEncodeBatch(t *testing.T) {
	event := func(seq uint64) proto.Event {
		return proto.Event{Seq: seq, Time: time.Date(2026, 4, 1, 9, 0, int(seq), 0, time.UTC), Type: proto.TypeDoor, Door: "d", Reason: "opened"}
	}
	encode := func(evs []proto.Event) ([]byte, int, error) {
		raws := make([][]byte, len(evs))
		for i, ev := range evs {
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			raws[i] = b
		}
		return proto.EncodeBatch("s1", "d1", evs[0].Seq, raws)
	}
	small := []proto.Event{event(1), event(2)}
	got, n, err := encode(small)
	want, _ := json.Marshal(proto.Batch{Site: "s1", Device: "d1", Events: small})
	if err != nil || n != 2 || string(got) != string(want) {
		t.Fatalf("EncodeBatch = %s, %d, %v; want %s, 2", got, n, err, want)
	}

	evs := make([]proto.Event, proto.MaxBatch)
	for i := range evs {
		evs[i] = event(uint64(i + 1))
		evs[i].Detail = strings.Repeat("\x01", proto.MaxDetailLen) // 6 bytes each in JSON
	}
	payload, n, err := encode(evs)
	if err != nil {
		t.Fatal(err)
	}
	if len(payload) > proto.MaxPayload || n == 0 || n == len(evs) {
		t.Fatalf("encode took %d of %d events in %d bytes; want a prefix within %d bytes", n, len(evs), len(payload), proto.MaxPayload)
	}
	b, err := proto.DecodeBatch(payload)
	if err != nil {
		t.Fatalf("split batch rejected: %v", err)
	}
	if len(b.Events) != n || b.Events[0].Seq != 1 {
		t.Fatalf("payload holds %d events from seq %d, want %d from 1", len(b.Events), b.Events[0].Seq, n)
	}
}
