package proto

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/signed"
)

var testSHA = hex.EncodeToString(make([]byte, sha256.Size))

func TestReleaseChunkRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		sha    string
		offset int64
		data   []byte
		encErr bool
	}{
		{"first", testSHA, 0, []byte("abc"), false},
		{"empty means end", testSHA, 1 << 20, nil, false},
		{"max chunk", testSHA, 7, bytes.Repeat([]byte{1}, MaxChunkSize), false},
		{"too big", testSHA, 0, make([]byte, MaxChunkSize+1), true},
		{"bad sha", "xyz", 0, nil, true},
		{"negative offset", testSHA, -1, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := EncodeReleaseChunk(tc.sha, tc.offset, tc.data)
			if (err != nil) != tc.encErr {
				t.Fatalf("encode: %v, want error %v", err, tc.encErr)
			}
			if err != nil {
				return
			}
			sha, off, data, err := DecodeReleaseChunk(p)
			if err != nil || sha != tc.sha || off != tc.offset || !bytes.Equal(data, tc.data) {
				t.Fatalf("decode: %s %d %d bytes, %v", sha, off, len(data), err)
			}
		})
	}
}

func TestDecodeReleaseGet(t *testing.T) {
	topic := ReleaseGetTopic("s1", "d1")
	tests := []struct {
		name, topic, payload string
		ok                   bool
	}{
		{"good", topic, `{"id":"x","sha256":"` + testSHA + `","offset":65536,"length":4096}`, true},
		{"wrong leaf", ReleaseChunkTopic("s1", "d1"), `{"sha256":"` + testSHA + `","offset":0,"length":1}`, false},
		{"zero length", topic, `{"sha256":"` + testSHA + `","offset":0,"length":0}`, false},
		{"huge length", topic, `{"sha256":"` + testSHA + `","offset":0,"length":2000000}`, false},
		{"negative offset", topic, `{"sha256":"` + testSHA + `","offset":-5,"length":1}`, false},
		{"upper-case sha", topic, `{"sha256":"` + strings.Repeat("A", 64) + `","offset":0,"length":1}`, false},
		{"not json", topic, `offset=0`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			site, device, g, err := DecodeReleaseGet(tc.topic, []byte(tc.payload))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if tc.ok && (site != "s1" || device != "d1" || g.Offset != 65536 || g.Length != 4096) {
				t.Errorf("got %s/%s %+v", site, device, g)
			}
		})
	}
}

func TestReleaseOfferSignAndOpen(t *testing.T) {
	pub, priv, err := signed.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := signed.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)
	good := ReleaseOffer{ID: NewCommandID(), Site: "s1", Device: "d1", Issued: now, Expires: now.Add(time.Hour), ChunkSize: 4096, Manifest: []byte("{}")}
	tests := []struct {
		name string
		edit func(*ReleaseOffer)
		ok   bool
	}{
		{"device offer", func(*ReleaseOffer) {}, true},
		{"group offer", func(o *ReleaseOffer) { o.Device, o.Group = "", "gates" }, true},
		{"device and group", func(o *ReleaseOffer) { o.Group = "gates" }, false},
		{"neither", func(o *ReleaseOffer) { o.Device = "" }, false},
		{"lives too long", func(o *ReleaseOffer) { o.Expires = now.Add(MaxReleaseOfferLifetime + time.Second) }, false},
		{"expires before issue", func(o *ReleaseOffer) { o.Expires = now.Add(-time.Second) }, false},
		{"chunk too big", func(o *ReleaseOffer) { o.ChunkSize = MaxChunkSize + 1 }, false},
		{"no manifest", func(o *ReleaseOffer) { o.Manifest = nil }, false},
		{"bad id", func(o *ReleaseOffer) { o.ID = "1234" }, false},
		{"bad site", func(o *ReleaseOffer) { o.Site = "a/b" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			env, err := SignReleaseOffer(priv, o)
			if (err == nil) != tc.ok {
				t.Fatalf("sign: %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				return
			}
			got, err := OpenReleaseOffer(v, env)
			if err != nil || got.ID != o.ID || got.Device != o.Device || got.Group != o.Group || !got.Expires.Equal(o.Expires) {
				t.Fatalf("open: %+v, %v", got, err)
			}
			if _, err := OpenReleaseOffer(v, bytes.Replace(env, []byte(`"kind":"release"`), []byte(`"kind":"command"`), 1)); err == nil {
				t.Error("an offer relabelled as a command opened")
			}
		})
	}
}

func FuzzDecodeReleaseChunk(f *testing.F) {
	good, _ := EncodeReleaseChunk(testSHA, 4096, []byte("data"))
	f.Add(good)
	f.Add([]byte("TBF1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		sha, off, data, err := DecodeReleaseChunk(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if off < 0 || len(data) > MaxChunkSize || len(sha) != 64 {
			t.Fatalf("decoded offset %d, %d bytes, sha %q", off, len(data), sha)
		}
		again, err := EncodeReleaseChunk(sha, off, data)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

func FuzzDecodeReleaseGet(f *testing.F) {
	f.Add([]byte(`{"id":"x","sha256":"` + testSHA + `","offset":1,"length":2}`))
	f.Add([]byte(`{"offset":1e99}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		_, _, g, err := DecodeReleaseGet(ReleaseGetTopic("s1", "d1"), p)
		if err != nil {
			return
		}
		if g.Offset < 0 || g.Length < 1 || g.Length > MaxChunkSize || len(g.SHA256) != 64 {
			t.Fatalf("accepted %+v", g)
		}
	})
}

func FuzzParseReleaseOffer(f *testing.F) {
	f.Add([]byte(`{"id":"00112233445566778899aabbccddeeff","site":"s1","device":"d1","issued":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","chunk_size":4096,"manifest":"e30="}`))
	f.Add([]byte(`{"group":"g","device":"d"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		o, err := parseReleaseOffer(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if (o.Device == "") == (o.Group == "") || o.ChunkSize < 1 || o.ChunkSize > MaxChunkSize ||
			!o.Expires.After(o.Issued) || o.Expires.Sub(o.Issued) > MaxReleaseOfferLifetime || len(o.Manifest) == 0 {
			t.Fatalf("accepted %+v", o)
		}
	})
}

func FuzzDecodeReleaseReport(f *testing.F) {
	f.Add([]byte(`{"site":"s1","device":"d1","time":"2026-01-01T00:00:00Z","firmware":{"running":"1.0.0"},"offer":{"id":"x","state":"refused"}}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeReleaseReport(ReleaseReportTopic("s1", "d1"), p)
		if err == nil && (r.Site != "s1" || r.Device != "d1") {
			t.Fatalf("accepted a report of %s/%s on d1's topic", r.Site, r.Device)
		}
	})
}
