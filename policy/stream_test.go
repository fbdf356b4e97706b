package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

// model is a snapshot's content as a map from (kind, key) to item, so tests
// can build versions and deltas between them.
type model map[string]Item

func (m model) put(it Item) {
	k, err := it.recordKey()
	if err != nil {
		panic(err)
	}
	m[string(append([]byte{byte(it.recordKind())}, k...))] = it
}

func (m model) clone() model {
	c := model{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

// encodeFull writes m as a full snapshot stream.
func encodeFull(t testing.TB, m model, version uint64) ([]byte, [32]byte) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := NewSnapshotEncoder(&buf, version)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range m {
		if err := enc.Put(it); err != nil {
			t.Fatalf("Put(%+v): %v", it, err)
		}
	}
	h, err := enc.Close()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), h
}

// encodeDelta writes the delta from a to b.
func encodeDelta(t testing.TB, a, b model, from, to uint64, expect *[32]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := NewDeltaEncoder(&buf, from, to)
	if err != nil {
		t.Fatal(err)
	}
	for k, it := range a {
		if _, ok := b[k]; !ok {
			if err := enc.Delete(it); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, it := range b {
		old, ok := a[k]
		if ok {
			ov, _ := old.recordValue()
			nv, _ := it.recordValue()
			if bytes.Equal(ov, nv) {
				continue
			}
		}
		if err := enc.Put(it); err != nil {
			t.Fatal(err)
		}
	}
	if expect != nil {
		enc.ExpectHash(*expect)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var baseTime = time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)

// randomModel builds a model with n credentials and a mix of every kind.
func randomModel(rng *rand.Rand, n int) model {
	m := model{}
	m.put(Site{TimeZone: "Asia/Tokyo", RevocationsAt: baseTime, MaxRevocationAge: 48 * time.Hour})
	for i := range n {
		m.put(randomItem(rng, i))
	}
	return m
}

// randomItem returns an item of a kind chosen by rng, with a key from a
// small space (so that deltas replace records too).
func randomItem(rng *rand.Rand, i int) Item {
	serial := binary.BigEndian.AppendUint32(nil, uint32(rng.IntN(1<<16))|0x0100_0000)
	kid := keyID(byte(1 + rng.IntN(2)))
	person := fmt.Sprintf("p%d", rng.IntN(500))
	switch rng.IntN(10) {
	case 0:
		return Revocation{IssuerKeyID: kid, Serial: serial}
	case 1:
		prev := binary.BigEndian.AppendUint32(nil, uint32(rng.IntN(1<<16))|0x0100_0000)
		if bytes.Equal(prev, serial) {
			prev[3]++
		}
		return RenewalLink{New: CertRef{kid, serial}, Previous: CertRef{kid, prev}}
	case 2:
		return Person{ID: person, Groups: []string{fmt.Sprintf("g%d", rng.IntN(5))}, ValidUntil: baseTime.Add(time.Duration(rng.IntN(1000)) * time.Hour)}
	case 3:
		return Door{ID: fmt.Sprintf("door%d", rng.IntN(20)), Groups: []string{fmt.Sprintf("dg%d", rng.IntN(3))}, Area: "hall"}
	case 4:
		return AccessLevel{ID: fmt.Sprintf("l%d", rng.IntN(20)), Group: fmt.Sprintf("g%d", rng.IntN(5)), DoorGroup: "dg1", Schedule: "office"}
	case 5:
		return Schedule{ID: fmt.Sprintf("s%d", rng.IntN(5)), Windows: []Window{{Days: []string{"mon", "holiday"}, Start: "08:00", End: fmt.Sprintf("%02d:00", 9+rng.IntN(10))}}}
	case 6:
		return Holiday{Date: baseTime.AddDate(0, 0, rng.IntN(300)).Format(time.DateOnly), Name: "h"}
	case 7:
		return Event{ID: fmt.Sprintf("ev%d", rng.IntN(5)), Start: baseTime, End: baseTime.Add(time.Duration(1+rng.IntN(9)) * time.Hour), DoorGroup: "gates"}
	case 8:
		return Area{ID: fmt.Sprintf("a%d", rng.IntN(5)), Passback: PassbackTimed, Reentry: time.Duration(1+rng.IntN(30)) * time.Minute}
	}
	if rng.IntN(4) == 0 {
		return Entry{Credential: freeArea(fmt.Sprintf("EMP-%d", rng.IntN(1<<16))), Person: person}
	}
	return Entry{Credential: credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid, Serial: serial}, Person: person,
		ValidFrom: baseTime.Add(-time.Duration(rng.IntN(100)) * time.Hour)}
}

// mutate returns a copy of m with about k records replaced, added or
// deleted.
func mutate(rng *rand.Rand, m model, k int) model {
	c := m.clone()
	keys := make([]string, 0, len(c))
	for key := range c {
		keys = append(keys, key)
	}
	for i := range k {
		switch rng.IntN(3) {
		case 0:
			if len(keys) > 0 {
				delete(c, keys[rng.IntN(len(keys))])
			}
		default:
			c.put(randomItem(rng, i))
		}
	}
	return c
}

func mustHash(t testing.TB, s *Store) [32]byte {
	t.Helper()
	h, err := s.ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestFullStreamRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := randomModel(rng, 500)
	data, want := encodeFull(t, m, 3)
	s, _ := openStore(t)
	empty := mustHash(t, s)
	if err := s.ApplyFullStream(context.Background(), 3, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got := mustHash(t, s); got != want || got == empty {
		t.Errorf("ContentHash = %x, want the encoder's %x (empty store: %x)", got, want, empty)
	}
	if v, _ := s.Version(); v != 3 {
		t.Errorf("Version = %d, want 3", v)
	}
	// The same content at another version, in another order, has the same hash.
	_, again := encodeFull(t, m, 9)
	if again != want {
		t.Errorf("hash depends on the version or record order: %x vs %x", again, want)
	}
}

// TestDeltaEqualsFull is the property test: for random versions N and N+1,
// applying the delta N -> N+1 to a store at N gives the same content hash as
// applying the full snapshot N+1.
func TestDeltaEqualsFull(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for round := range 20 {
		a := randomModel(rng, 50+rng.IntN(300))
		b := mutate(rng, a, 1+rng.IntN(100))
		fullA, hashA := encodeFull(t, a, 10)
		fullB, hashB := encodeFull(t, b, 11)
		var expect *[32]byte
		if round%2 == 0 {
			expect = &hashB
		}
		delta := encodeDelta(t, a, b, 10, 11, expect)

		viaDelta, _ := openStore(t)
		if err := viaDelta.ApplyFullStream(context.Background(), 10, bytes.NewReader(fullA)); err != nil {
			t.Fatal(err)
		}
		if got := mustHash(t, viaDelta); got != hashA {
			t.Fatalf("round %d: hash after full A = %x, want %x", round, got, hashA)
		}
		if err := viaDelta.ApplyDeltaStream(context.Background(), 10, 11, bytes.NewReader(delta)); err != nil {
			t.Fatalf("round %d: delta: %v", round, err)
		}
		viaFull, _ := openStore(t)
		if err := viaFull.ApplyFullStream(context.Background(), 11, bytes.NewReader(fullB)); err != nil {
			t.Fatal(err)
		}
		if hd, hf := mustHash(t, viaDelta), mustHash(t, viaFull); hd != hf || hd != hashB {
			t.Fatalf("round %d (seed %d): delta gives %x, full gives %x, encoder says %x", round, seed, hd, hf, hashB)
		}
		if v, _ := viaDelta.Version(); v != 11 {
			t.Errorf("round %d: version after delta = %d, want 11", round, v)
		}
	}
}

func TestDeltaRefusals(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a := randomModel(rng, 100)
	fullA, hashA := encodeFull(t, a, 5)
	b := a.clone()
	b.put(Entry{Credential: cert(9, 9), Person: "new"})
	good := encodeDelta(t, a, b, 5, 6, nil)
	missing := model{}
	missing.put(Entry{Credential: cert(9, 8), Person: "ghost"})
	var delGhost bytes.Buffer
	enc, _ := NewDeltaEncoder(&delGhost, 5, 6)
	_ = enc.Delete(Entry{Credential: cert(9, 8)})
	_ = enc.Close()
	wrongHash := [32]byte{1}
	tests := []struct {
		name     string
		from, to uint64
		data     []byte
		want     error
		wantMsg  string
	}{
		{"stale", 4, 6, encodeDelta(t, a, b, 4, 6, nil), ErrStaleVersion, "starts at 4, stored 5"},
		{"gap", 6, 7, encodeDelta(t, a, b, 6, 7, nil), ErrVersionGap, "starts at 6, stored 5"},
		{"header disagrees", 5, 7, good, ErrInvalidSnapshot, "not a delta 5->7"},
		{"full stream as delta", 5, 6, fullA, ErrInvalidSnapshot, "full=true"},
		{"truncated", 5, 6, good[:len(good)-10], ErrInvalidSnapshot, "record"},
		{"trailing garbage", 5, 6, append(append([]byte(nil), good...), 0), ErrInvalidSnapshot, "after the trailer"},
		{"delete of a missing record", 5, 6, delGhost.Bytes(), ErrInvalidSnapshot, "which is not there"},
		{"wrong expected hash", 5, 6, encodeDelta(t, a, b, 5, 6, &wrongHash), ErrInvalidSnapshot, "delta expects"},
		{"not a stream", 5, 6, []byte("{\"version\": 6}"), ErrInvalidSnapshot, "stream starts with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := openStore(t)
			if err := s.ApplyFullStream(context.Background(), 5, bytes.NewReader(fullA)); err != nil {
				t.Fatal(err)
			}
			err := s.ApplyDeltaStream(context.Background(), tt.from, tt.to, bytes.NewReader(tt.data))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ApplyDeltaStream = %v, want %v mentioning %q and %s", err, tt.want, tt.wantMsg, path)
			}
			if v, _ := s.Version(); v != 5 {
				t.Errorf("version after a refused delta = %d, want 5", v)
			}
			if got := mustHash(t, s); got != hashA {
				t.Errorf("content changed by a refused delta")
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		s, _ := openStore(t)
		if err := s.ApplyFullStream(context.Background(), 5, bytes.NewReader(fullA)); err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyDeltaStream(context.Background(), 5, 6, bytes.NewReader(good)); err != nil {
			t.Fatal(err)
		}
		if d := s.Decide(cert(9, 9)); d.Reason != ReasonEnrolled || d.SnapshotVersion != 6 {
			t.Errorf("after the delta, Decide = %+v", d)
		}
	})
}

func TestFullStreamRefusals(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := randomModel(rng, 50)
	data, _ := encodeFull(t, m, 2)
	// A stream that repeats its first record before the trailer.
	var dup []byte
	{
		var buf bytes.Buffer
		enc, _ := NewSnapshotEncoder(&buf, 2)
		it := Entry{Credential: cert(1, 1), Person: "a"}
		_ = enc.Put(it)
		_ = enc.Put(it)
		_, _ = enc.Close()
		dup = buf.Bytes()
	}
	badHash := bytes.Clone(data)
	badHash[len(badHash)-1] ^= 1
	tests := []struct {
		name    string
		version uint64
		data    []byte
		want    error
		wantMsg string
	}{
		{"version disagrees with header", 3, data, ErrInvalidSnapshot, "header says [2]"},
		{"stale", 1, data, ErrStaleVersion, "offered 1, stored 1"},
		{"duplicate record", 2, dup, ErrInvalidSnapshot, "appears twice"},
		{"trailer hash mismatch", 2, badHash, ErrInvalidSnapshot, "trailer says"},
		{"truncated", 2, data[:len(data)/2], ErrInvalidSnapshot, "record"},
		{"empty", 2, nil, ErrInvalidSnapshot, "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := openStore(t)
			mustApply(t, s, Snapshot{Version: 1, Allow: []Entry{{Credential: cert(7, 7), Person: "old"}}})
			before := mustHash(t, s)
			err := s.ApplyFullStream(context.Background(), tt.version, bytes.NewReader(tt.data))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("ApplyFullStream = %v, want %v mentioning %q", err, tt.want, tt.wantMsg)
			}
			if got := mustHash(t, s); got != before {
				t.Error("a refused full snapshot changed the content")
			}
			if d := s.Decide(cert(7, 7)); d.Reason != ReasonEnrolled {
				t.Errorf("old snapshot lost: %+v", d)
			}
			if _, err := filepath.Glob(path + newSuffix); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEncoderRefusesInvalidItems(t *testing.T) {
	tests := []struct {
		name string
		it   Item
		msg  string
	}{
		{"empty person", Entry{Credential: cert(1, 1)}, "person is empty"},
		{"empty window", Entry{Credential: cert(1, 1), Person: "p", ValidFrom: baseTime, ValidUntil: baseTime}, "window"},
		{"self renewal", RenewalLink{New: CertRef{keyID(1), []byte{1}}, Previous: CertRef{keyID(1), []byte{1}}}, "renew itself"},
		{"unknown door mode", Door{ID: "d", DefaultMode: "open"}, "unknown default mode"},
		{"timed passback without time", Area{ID: "a", Passback: PassbackTimed}, "positive reentry"},
		{"bad window", Schedule{ID: "s", Windows: []Window{{Days: []string{"mon"}, Start: "18:00", End: "08:00"}}}, "split a window"},
		{"bad day", Schedule{ID: "s", Windows: []Window{{Days: []string{"funday"}, Start: "08:00", End: "09:00"}}}, "unknown day"},
		{"bad holiday date", Holiday{Date: "2025-13-01"}, "holiday date"},
		{"empty event", Event{ID: "e", Start: baseTime, End: baseTime, DoorGroup: "g"}, "empty"},
		{"unknown zone", Site{TimeZone: "Mars/Olympus"}, "time zone"},
		{"too many groups", Person{ID: "p", Groups: make([]string, MaxGroups+1)}, "groups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := NewSnapshotEncoder(&bytes.Buffer{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			err = enc.Put(tt.it)
			if !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Put = %v, want ErrInvalidSnapshot mentioning %q", err, tt.msg)
			}
		})
	}
}

// FuzzStream feeds arbitrary bytes to both apply paths: no panic, and a
// refused stream leaves the content as it was.
func FuzzStream(f *testing.F) {
	rng := rand.New(rand.NewPCG(8, 9))
	a := randomModel(rng, 20)
	full, _ := encodeFull(f, a, 2)
	f.Add(full)
	f.Add(encodeDelta(f, a, mutate(rng, a, 5), 1, 2, nil))
	f.Add([]byte(streamMagic + "F\x02Z\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _ := openStore(t)
		mustApply(t, s, Snapshot{Version: 1, Allow: []Entry{{Credential: cert(1, 1), Person: "p"}}})
		base := mustHash(t, s)
		if err := s.ApplyDeltaStream(context.Background(), 1, 2, bytes.NewReader(data)); err == nil {
			return // a valid delta
		}
		if got := mustHash(t, s); got != base {
			t.Fatalf("a refused delta changed the content")
		}
		if err := s.ApplyFullStream(context.Background(), 2, bytes.NewReader(data)); err == nil {
			return // a valid full snapshot
		}
		if got := mustHash(t, s); got != base {
			t.Fatalf("a refused full snapshot changed the content")
		}
		if d := s.Decide(cert(1, 1)); d.Reason != ReasonEnrolled {
			t.Fatalf("a refused stream lost the old snapshot: %+v", d)
		}
	})
}

// FuzzStreamDecode fuzzes the stream decoder alone (fast): no panic, and
// every record it returns is well formed and canonical.
func FuzzStreamDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(10, 11))
	a := randomModel(rng, 30)
	full, _ := encodeFull(f, a, 2)
	f.Add(full)
	f.Add(encodeDelta(f, a, mutate(rng, a, 10), 2, 3, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		sr, vs, err := newStreamReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if (sr.full && len(vs) != 1) || (!sr.full && len(vs) != 2) {
			t.Fatalf("header versions %v for full=%v", vs, sr.full)
		}
		for {
			rec, err := sr.next()
			if err != nil {
				if !errors.Is(err, ErrInvalidSnapshot) && err != io.EOF {
					t.Fatalf("error %v does not wrap ErrInvalidSnapshot", err)
				}
				return
			}
			if err := checkKey(rec.kind, rec.key); err != nil {
				t.Fatalf("decoder returned a bad %s key %x: %v", rec.kind, rec.key, err)
			}
			if rec.op == opPut {
				cv, err := canonicalValue(rec.kind, rec.key, rec.value)
				if err != nil || !bytes.Equal(cv, rec.value) {
					t.Fatalf("decoder returned a non-canonical %s value %x: %v", rec.kind, rec.value, err)
				}
			}
		}
	})
}

// TestDeltaSeenWhole flips two credentials with every delta while another
// goroutine decides: a decision is always about one whole version.
func TestDeltaSeenWhole(t *testing.T) {
	s, _ := openStore(t)
	a, b := cert(1, 0x0A), cert(1, 0x0B)
	modelFor := func(v uint64) model {
		m := model{}
		if v%2 == 1 {
			m.put(Entry{Credential: a, Person: "a"})
			m.put(Revocation{IssuerKeyID: b.IssuerKeyID, Serial: b.Serial})
		} else {
			m.put(Entry{Credential: b, Person: "b"})
			m.put(Revocation{IssuerKeyID: a.IssuerKeyID, Serial: a.Serial})
		}
		return m
	}
	full, _ := encodeFull(t, modelFor(1), 1)
	if err := s.ApplyFullStream(context.Background(), 1, bytes.NewReader(full)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	bad := make(chan string, 1)
	go func() {
		defer close(bad)
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, c := range []credential.Credential{a, b} {
				d := s.Decide(c)
				wantGrant := (d.SnapshotVersion%2 == 1) == (c.Serial[0] == 0x0A)
				if d.Granted != wantGrant {
					select {
					case bad <- fmt.Sprintf("version %d: %s got %s", d.SnapshotVersion, c, d.Reason):
					default:
					}
				}
			}
		}
	}()
	for v := uint64(1); v < 60; v++ {
		delta := encodeDelta(t, modelFor(v), modelFor(v+1), v, v+1, nil)
		if err := s.ApplyDeltaStream(context.Background(), v, v+1, bytes.NewReader(delta)); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if msg, ok := <-bad; ok {
		t.Errorf("a decision mixed versions: %s", msg)
	}
}
