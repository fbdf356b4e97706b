package sync

// White-box tests of command and snapshot intake: real outbox files, a fake
// clock, a fake snapshot sink and real signatures.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// testKey returns a deterministic Ed25519 key for seed byte b.
func testKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// fakeSink is an in-memory SnapshotSink: a full snapshot replaces the
// content, a delta appends to it. fail makes the next apply fail after
// reading everything.
type fakeSink struct {
	mu      sync.Mutex
	version uint64
	content []byte
	applies int
	fail    error
}

func (s *fakeSink) Version() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

func (s *fakeSink) ApplyFullStream(_ context.Context, version uint64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.version, s.content = version, b
	s.applies++
	return nil
}

func (s *fakeSink) ApplyDeltaStream(_ context.Context, from, to uint64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if from != s.version {
		return fmt.Errorf("delta from %d applied to %d", from, s.version)
	}
	s.version, s.content = to, append(s.content, b...)
	s.applies++
	return nil
}

func (s *fakeSink) ContentHash() ([32]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sha256.Sum256(s.content), nil
}

// state returns the sink's version and content.
func (s *fakeSink) state() (uint64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, string(s.content)
}

// intakeRig holds a command and a snapshot intake on one outbox.
type intakeRig struct {
	t       *testing.T
	dir     string
	ob      *Outbox
	clk     *clocktest.Fake
	sink    *fakeSink
	handled []proto.Command
	hErr    error
	cmds    *commandIntake
	snaps   *snapshotIntake
	results []proto.Result
	needs   []proto.Need
}

// newIntakeRig opens an outbox in dir (or a new one) pinning testKey(1)
// and testKey(2).
func newIntakeRig(t *testing.T, dir string, sink *fakeSink) *intakeRig {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ob, err := OpenOutbox(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	v, err := signed.NewVerifier(testKey(1).Public().(ed25519.PublicKey), testKey(2).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	r := &intakeRig{t: t, dir: dir, ob: ob, clk: clocktest.New(base0), sink: sink}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	r.cmds = &commandIntake{v: v, ob: ob, clk: r.clk, log: log, site: "s1", device: "d1",
		h: CommandFunc(func(_ context.Context, c proto.Command) error { r.handled = append(r.handled, c); return r.hErr })}
	r.snaps = &snapshotIntake{v: v, sink: sink, ob: ob, dir: filepath.Join(dir, "staging"), clk: r.clk, log: log,
		site: "s1", device: "d1",
		report: func(_ context.Context, res proto.Result) { r.results = append(r.results, res) },
		need:   func(_ context.Context, n proto.Need) { r.needs = append(r.needs, n) },
		poke:   func() {},
		fail:   func(string) {},
	}
	if err := r.snaps.load(); err != nil {
		t.Fatal(err)
	}
	return r
}

// base0 is the fake clock's start.
var base0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// command returns a valid unlock command for s1/d1 issued now.
func command(id byte) proto.Command {
	return proto.Command{
		ID: hex.EncodeToString(bytes.Repeat([]byte{id}, 16)), Site: "s1", Device: "d1",
		Issued: base0, Expires: base0.Add(5 * time.Minute), Action: proto.ActionUnlock, Door: "main-gate",
	}
}

// signCmd signs c with key, bypassing SignCommand's checks.
func signCmd(t *testing.T, key ed25519.PrivateKey, c proto.Command) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signed.Sign(proto.KindCommand, b, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestCommandIntake(t *testing.T) {
	tests := []struct {
		name       string
		env        func(t *testing.T) []byte
		advance    time.Duration
		handlerErr error
		wantStatus string
		wantErr    error
	}{
		{"valid unlock", func(t *testing.T) []byte { return signCmd(t, testKey(1), command(1)) }, 0, nil, proto.ResultDone, nil},
		{"second pinned key", func(t *testing.T) []byte { return signCmd(t, testKey(2), command(1)) }, 0, nil, proto.ResultDone, nil},
		{"unpinned key", func(t *testing.T) []byte { return signCmd(t, testKey(3), command(1)) }, 0, nil, proto.ResultRefused, signed.ErrUnknownKey},
		{"forged payload", func(t *testing.T) []byte {
			var e signed.Envelope
			json.Unmarshal(signCmd(t, testKey(1), command(1)), &e)
			e.Payload = bytes.Replace(e.Payload, []byte("main-gate"), []byte("back-door"), 1)
			b, _ := json.Marshal(e)
			return b
		}, 0, nil, proto.ResultRefused, signed.ErrBadSignature},
		{"snapshot envelope as command", func(t *testing.T) []byte {
			b, _ := json.Marshal(command(1))
			env, _ := signed.Sign(proto.KindSnapshot, b, testKey(1))
			return env
		}, 0, nil, proto.ResultRefused, signed.ErrWrongKind},
		{"expired", func(t *testing.T) []byte { return signCmd(t, testKey(1), command(1)) }, 5 * time.Minute, nil, proto.ResultRefused, proto.ErrExpired},
		{"lifetime too long", func(t *testing.T) []byte {
			c := command(1)
			c.Expires = c.Issued.Add(proto.MaxCommandLifetime + time.Second)
			return signCmd(t, testKey(1), c)
		}, 0, nil, proto.ResultRefused, proto.ErrExpired},
		{"other device", func(t *testing.T) []byte {
			c := command(1)
			c.Device = "d2"
			return signCmd(t, testKey(1), c)
		}, 0, nil, proto.ResultRefused, proto.ErrWrongDevice},
		{"unknown action", func(t *testing.T) []byte {
			c := command(1)
			c.Action = "explode"
			return signCmd(t, testKey(1), c)
		}, 0, nil, proto.ResultRefused, proto.ErrMalformed},
		{"unlock without door", func(t *testing.T) []byte {
			c := command(1)
			c.Door = ""
			return signCmd(t, testKey(1), c)
		}, 0, nil, proto.ResultRefused, proto.ErrMalformed},
		{"handler fails", func(t *testing.T) []byte { return signCmd(t, testKey(1), command(1)) }, 0, errors.New("relay stuck"), proto.ResultFailed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newIntakeRig(t, "", &fakeSink{})
			r.hErr = tt.handlerErr
			r.clk.Advance(tt.advance)
			res := r.cmds.handle(t.Context(), tt.env(t))
			if res.Status != tt.wantStatus || res.Kind != proto.KindCommand || res.Site != "s1" || res.Device != "d1" {
				t.Fatalf("result %+v, want status %s", res, tt.wantStatus)
			}
			if tt.wantErr != nil && !strings.Contains(res.Error, tt.wantErr.Error()) {
				t.Fatalf("result error %q, want it to say %q", res.Error, tt.wantErr)
			}
			wantHandled := 0
			if tt.wantStatus != proto.ResultRefused {
				wantHandled = 1
			}
			if len(r.handled) != wantHandled {
				t.Fatalf("handler called %d times, want %d", len(r.handled), wantHandled)
			}
		})
	}
}

func TestCommandReplayRefusedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	env := signCmd(t, testKey(1), command(7))
	r := newIntakeRig(t, dir, &fakeSink{})
	if res := r.cmds.handle(t.Context(), env); res.Status != proto.ResultDone {
		t.Fatalf("first delivery: %+v", res)
	}
	if res := r.cmds.handle(t.Context(), env); res.Status != proto.ResultRefused || !strings.Contains(res.Error, proto.ErrReplayed.Error()) {
		t.Fatalf("replay: %+v, want refused as replayed", res)
	}
	r.ob.Close()
	r2 := newIntakeRig(t, dir, &fakeSink{})
	if res := r2.cmds.handle(t.Context(), env); res.Status != proto.ResultRefused || !strings.Contains(res.Error, proto.ErrReplayed.Error()) {
		t.Fatalf("replay after reopen: %+v, want refused as replayed", res)
	}
	if len(r.handled)+len(r2.handled) != 1 {
		t.Fatalf("command carried out %d times, want once", len(r.handled)+len(r2.handled))
	}
	// IDs are forgotten a day after expiry, when a replay is refused as
	// expired anyway.
	r2.clk.Advance(proto.MaxCommandLifetime + time.Hour)
	r2.cmds.handle(t.Context(), signCmd(t, testKey(1), proto.Command{ID: command(8).ID, Site: "s1", Device: "d1",
		Issued: r2.clk.Now(), Expires: r2.clk.Now().Add(time.Minute), Action: proto.ActionResync}))
	n := 0
	r2.ob.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketNonces).Stats().KeyN; return nil })
	if n != 1 {
		t.Fatalf("%d command IDs remembered after a day, want 1 (the new one)", n)
	}
	if res := r2.cmds.handle(t.Context(), env); res.Status != proto.ResultRefused || !strings.Contains(res.Error, proto.ErrExpired.Error()) {
		t.Fatalf("old replay after a day: %+v, want refused as expired", res)
	}
}

// offer is a snapshot publication made in a test: the manifest, its
// envelope and its chunks.
type offer struct {
	m      proto.Manifest
	env    []byte
	chunks [][]byte
}

// makeOffer builds a signed offer of payload for s1/d1 in chunks of size
// chunk; edit may change the manifest before signing.
func makeOffer(t *testing.T, key ed25519.PrivateKey, transfer byte, from, version uint64, payload string, chunk int, edit func(*proto.Manifest)) offer {
	t.Helper()
	sum := sha256.Sum256([]byte(payload))
	m := proto.Manifest{
		Transfer: hex.EncodeToString(bytes.Repeat([]byte{transfer}, 16)), Site: "s1", Device: "d1",
		Type: proto.SnapshotFull, Version: version, From: from, Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:]),
		ChunkSize: chunk, Chunks: (len(payload) + chunk - 1) / chunk, Issued: base0,
	}
	if from != 0 {
		m.Type = proto.SnapshotDelta
	}
	if edit != nil {
		edit(&m)
	}
	raw, _ := json.Marshal(m)
	env, err := signed.Sign(proto.KindSnapshot, raw, key)
	if err != nil {
		t.Fatal(err)
	}
	o := offer{m: m, env: env}
	for i := 0; i*chunk < len(payload); i++ {
		c, err := proto.EncodeChunk(m.Transfer, i, []byte(payload[i*chunk:min((i+1)*chunk, len(payload))]))
		if err != nil {
			t.Fatal(err)
		}
		o.chunks = append(o.chunks, c)
	}
	return o
}

// deliver hands the manifest and then the chunks in the given order
// (nil: in order) to the rig.
func (r *intakeRig) deliver(o offer, order []int) {
	r.snaps.onManifest(r.t.Context(), o.env)
	if order == nil {
		for i := range o.chunks {
			order = append(order, i)
		}
	}
	for _, i := range order {
		r.snaps.onChunk(r.t.Context(), o.chunks[i])
	}
}

// lastResult returns the last result reported.
func (r *intakeRig) lastResult() proto.Result {
	r.t.Helper()
	if len(r.results) == 0 {
		r.t.Fatal("no result reported")
	}
	return r.results[len(r.results)-1]
}

func TestSnapshotIntake(t *testing.T) {
	const v3 = "policy version three, opaque to sync"
	tests := []struct {
		name        string
		start       uint64 // version in force before
		offer       func(t *testing.T) offer
		order       []int
		wantStatus  string // "" means no result at all
		wantErr     error
		wantVersion uint64
		wantContent string
	}{
		{"full in order", 2, func(t *testing.T) offer { return makeOffer(t, testKey(1), 1, 0, 3, v3, 5, nil) }, nil, proto.ResultDone, nil, 3, v3},
		{"full out of order, duplicates", 2, func(t *testing.T) offer { return makeOffer(t, testKey(2), 1, 0, 3, v3, 5, nil) },
			[]int{7, 0, 3, 3, 1, 2, 6, 5, 4, 0}, proto.ResultDone, nil, 3, v3},
		{"empty full snapshot", 2, func(t *testing.T) offer { return makeOffer(t, testKey(1), 1, 0, 3, "", 5, nil) }, nil, proto.ResultDone, nil, 3, ""},
		{"delta", 2, func(t *testing.T) offer { return makeOffer(t, testKey(1), 1, 2, 3, "+x", 5, nil) }, nil, proto.ResultDone, nil, 3, "old+x"},
		{"forged: unpinned key", 2, func(t *testing.T) offer { return makeOffer(t, testKey(3), 1, 0, 3, v3, 5, nil) }, nil,
			proto.ResultRefused, signed.ErrUnknownKey, 2, "old"},
		{"forged: content differs from the signed hash", 2, func(t *testing.T) offer {
			o := makeOffer(t, testKey(1), 1, 0, 3, v3, 5, nil)
			forged := makeOffer(t, testKey(1), 1, 0, 3, strings.ToUpper(v3), 5, nil)
			o.chunks = forged.chunks
			return o
		}, nil, proto.ResultRefused, proto.ErrMismatch, 2, "old"},
		{"truncated: manifest signed for more bytes", 2, func(t *testing.T) offer {
			full := makeOffer(t, testKey(1), 1, 0, 3, v3, 5, nil)
			// The attacker cuts the payload but keeps the signed size and
			// hash: the last chunk arrives short and is dropped, the
			// device keeps waiting, and nothing is applied.
			o := full
			o.chunks = append([][]byte(nil), full.chunks...)
			last := o.chunks[len(o.chunks)-1]
			o.chunks[len(o.chunks)-1] = last[:len(last)-1]
			return o
		}, nil, "", nil, 2, "old"},
		{"replayed: older version", 5, func(t *testing.T) offer { return makeOffer(t, testKey(1), 1, 0, 3, v3, 5, nil) }, nil,
			proto.ResultRefused, proto.ErrReplayed, 5, "old"},
		{"retained manifest of the version in force", 3, func(t *testing.T) offer { return makeOffer(t, testKey(1), 1, 0, 3, v3, 5, nil) }, nil,
			"", nil, 3, "old"},
		{"delta out of order", 1, func(t *testing.T) offer { return makeOffer(t, testKey(1), 1, 2, 3, "+x", 5, nil) }, nil,
			proto.ResultRefused, proto.ErrOutOfOrder, 1, "old"},
		{"other device", 2, func(t *testing.T) offer {
			return makeOffer(t, testKey(1), 1, 0, 3, v3, 5, func(m *proto.Manifest) { m.Device = "d2" })
		}, nil, proto.ResultRefused, proto.ErrWrongDevice, 2, "old"},
		{"bad chunk count", 2, func(t *testing.T) offer {
			return makeOffer(t, testKey(1), 1, 0, 3, v3, 5, func(m *proto.Manifest) { m.Chunks++ })
		}, nil, proto.ResultRefused, proto.ErrMalformed, 2, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &fakeSink{version: tt.start, content: []byte("old")}
			r := newIntakeRig(t, "", sink)
			r.deliver(tt.offer(t), tt.order)
			if tt.wantStatus == "" {
				if len(r.results) != 0 {
					t.Fatalf("results %+v, want none", r.results)
				}
			} else if res := r.lastResult(); res.Status != tt.wantStatus || res.Kind != proto.KindSnapshot ||
				tt.wantErr != nil && !strings.Contains(res.Error, tt.wantErr.Error()) {
				t.Fatalf("result %+v, want %s (%v)", res, tt.wantStatus, tt.wantErr)
			}
			if v, c := sink.state(); v != tt.wantVersion || c != tt.wantContent {
				t.Fatalf("sink holds version %d %q, want %d %q", v, c, tt.wantVersion, tt.wantContent)
			}
			if tt.wantStatus != "" {
				if ents, _ := os.ReadDir(r.snaps.dir); len(ents) != 0 {
					t.Fatalf("staging directory not cleaned: %d files", len(ents))
				}
			}
		})
	}
}

func TestSnapshotResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	sink := &fakeSink{version: 1}
	payload := strings.Repeat("0123456789", 10)
	o := makeOffer(t, testKey(1), 9, 0, 2, payload, 7, nil) // 15 chunks
	r := newIntakeRig(t, dir, sink)
	r.snaps.onManifest(t.Context(), o.env)
	for _, i := range []int{0, 1, 2, 5, 6, 14} {
		r.snaps.onChunk(t.Context(), o.chunks[i])
	}
	r.ob.Close() // the device stops (or is killed) mid-transfer

	r2 := newIntakeRig(t, dir, sink)
	r2.snaps.onConnect(t.Context())
	want := proto.Need{Transfer: o.m.Transfer, Missing: [][2]int{{3, 4}, {7, 13}}}
	if len(r2.needs) != 1 || fmt.Sprint(r2.needs[0]) != fmt.Sprint(want) {
		t.Fatalf("needs after restart %v, want %v", r2.needs, want)
	}
	r2.snaps.onManifest(t.Context(), o.env) // the retained manifest again: keeps what is staged
	if v, _ := sink.state(); v != 1 {
		t.Fatalf("applied early: version %d", v)
	}
	for _, i := range []int{3, 4, 7, 8, 9, 10, 11, 12, 13} {
		r2.snaps.onChunk(t.Context(), o.chunks[i])
	}
	if v, c := sink.state(); v != 2 || c != payload || sink.applies != 1 {
		t.Fatalf("sink holds version %d (%d applies), want version 2 applied once with the payload", v, sink.applies)
	}
	if res := r2.lastResult(); res.Status != proto.ResultDone || res.ID != o.m.Transfer || res.Version != 2 {
		t.Fatalf("result %+v", res)
	}
}

func TestSnapshotApplyFailureKeepsCurrent(t *testing.T) {
	sink := &fakeSink{version: 1, content: []byte("old"), fail: errors.New("disk full")}
	r := newIntakeRig(t, "", sink)
	r.deliver(makeOffer(t, testKey(1), 1, 0, 2, "new", 2, nil), nil)
	if res := r.lastResult(); res.Status != proto.ResultFailed || !strings.Contains(res.Error, "disk full") || res.Version != 1 {
		t.Fatalf("result %+v, want failed with version 1", res)
	}
	if v, c := sink.state(); v != 1 || c != "old" {
		t.Fatalf("sink holds %d %q, want the old snapshot", v, c)
	}
}

// With message handlers running concurrently a chunk can overtake its
// manifest: the last few such chunks are held in memory and staged once
// the manifest is verified; the rest are asked for again.
func TestSnapshotChunksBeforeManifest(t *testing.T) {
	const payload = "policy version three, opaque to sync" // 36 bytes
	tests := []struct {
		name        string
		chunk       int
		early       func(o, other offer) [][]byte // chunks delivered before the manifest
		wantStatus  string                        // "" means no result yet
		wantMissing int
	}{
		{"every chunk early", 5, func(o, _ offer) [][]byte { return o.chunks }, proto.ResultDone, 0},
		{"more early chunks than held: the oldest are dropped", 2,
			func(o, _ offer) [][]byte { return o.chunks }, "", len(o18(t).chunks) - maxEarlyChunks},
		{"early chunks of another transfer are not used", 5,
			func(_, other offer) [][]byte { return other.chunks }, "", 8},
		{"a forged early chunk fails the hash check", 5, func(o, _ offer) [][]byte {
			c := append([][]byte(nil), o.chunks...)
			tr, i, _, _ := proto.DecodeChunk(c[0])
			c[0], _ = proto.EncodeChunk(tr, i, []byte("POLIC"))
			return c
		}, proto.ResultRefused, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &fakeSink{version: 2, content: []byte("old")}
			r := newIntakeRig(t, "", sink)
			o := makeOffer(t, testKey(1), 1, 0, 3, payload, tt.chunk, nil)
			other := makeOffer(t, testKey(1), 2, 0, 3, payload, tt.chunk, nil)
			for _, c := range tt.early(o, other) {
				r.snaps.onChunk(t.Context(), c)
			}
			r.snaps.onManifest(t.Context(), o.env)
			switch {
			case tt.wantStatus == "" && len(r.results) != 0:
				t.Fatalf("results %+v, want none", r.results)
			case tt.wantStatus != "" && r.lastResult().Status != tt.wantStatus:
				t.Fatalf("result %+v, want %s", r.lastResult(), tt.wantStatus)
			}
			if tt.wantStatus == proto.ResultDone {
				if v, c := sink.state(); v != 3 || c != payload {
					t.Fatalf("sink holds version %d %q, want 3 %q", v, c, payload)
				}
			}
			if r.snaps.missing != tt.wantMissing {
				t.Fatalf("%d chunks missing, want %d", r.snaps.missing, tt.wantMissing)
			}
			if len(r.snaps.early) != 0 {
				t.Fatalf("%d early chunks still held after the manifest", len(r.snaps.early))
			}
		})
	}
}

// o18 is the payload of TestSnapshotChunksBeforeManifest in 2-byte chunks.
func o18(t *testing.T) offer {
	return makeOffer(t, testKey(1), 1, 0, 3, "policy version three, opaque to sync", 2, nil)
}
