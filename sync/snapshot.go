package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Snapshot transfer limits and defaults.
const (
	// DefaultNeedInterval is how long the edge waits without a new chunk
	// before it asks HQ for the missing ones.
	DefaultNeedInterval = 10 * time.Second
)

// SnapshotSink is where the Edge hands verified snapshot bytes: the
// policy store implements it. The payload is opaque to this package.
type SnapshotSink interface {
	// Version returns the version of the snapshot in force (0: none).
	Version() (uint64, error)
	// ApplyFullStream replaces the snapshot with the one read from r,
	// atomically: on error the old one stays.
	ApplyFullStream(ctx context.Context, version uint64, r io.Reader) error
	// ApplyDeltaStream applies the delta read from r to version from,
	// giving version to, atomically.
	ApplyDeltaStream(ctx context.Context, from, to uint64, r io.Reader) error
	// ContentHash returns the SHA-256 content hash of the snapshot in
	// force, as reported in status.
	ContentHash() ([32]byte, error)
}

// Edge state of a snapshot transfer in the outbox file, bucket "transfer":
//
//	manifest = JSON Manifest of the staged transfer
//	have     = bitmap of received chunks, bit i of byte i/8 (LSB first)
var (
	bucketTransfer = []byte("transfer")
	keyManifest    = []byte("manifest")
	keyHave        = []byte("have")
)

// snapshotIntake receives snapshot manifests and chunks on the edge,
// stages the chunks in a file, and applies the whole once verified.
type snapshotIntake struct {
	v      *signed.Verifier
	sink   SnapshotSink
	ob     *Outbox
	dir    string
	clk    clock.Clock
	log    *slog.Logger
	site   string
	device string
	groups []string                                  // the groups whose transfers it takes (proto.SiteGroup first)
	report func(ctx context.Context, r proto.Result) // publishes a result
	need   func(ctx context.Context, n proto.Need)   // publishes a need
	poke   func()                                    // status changed
	fail   func(err string)                          // records the last refusal for status
	up     func() bool                               // connected and subscribed
	// needEvery is how long the intake waits without a new chunk before
	// it asks HQ for the missing ones.
	needEvery time.Duration

	mu       sync.Mutex
	staged   *proto.Manifest
	have     []byte
	missing  int
	lastSeen time.Time // last chunk or manifest
	// early holds the last few chunks of a transfer not staged yet: with
	// handlers running concurrently a chunk can overtake its manifest.
	// They are kept in memory only, and written once the manifest is
	// verified.
	early []earlyChunk
}

// maxEarlyChunks bounds snapshotIntake.early (at most 8 MiB with the
// largest chunks).
const maxEarlyChunks = 8

// earlyChunk is a chunk that came before its manifest.
type earlyChunk struct {
	transfer string
	index    int
	data     []byte
}

// stagingPath is the file that holds the chunks of transfer.
func (si *snapshotIntake) stagingPath(transfer string) string {
	return filepath.Join(si.dir, "snapshot-"+transfer+".part")
}

// load restores a staged transfer from the outbox file after a restart.
func (si *snapshotIntake) load() error {
	si.mu.Lock()
	defer si.mu.Unlock()
	m, have, err := si.ob.staged()
	if err != nil || m == nil {
		return err
	}
	si.staged, si.have, si.missing = m, have, 0
	for i := range m.Chunks {
		if !si.hasChunk(i) {
			si.missing++
		}
	}
	return nil
}

// hasChunk reports whether chunk i of the staged transfer is on disk.
func (si *snapshotIntake) hasChunk(i int) bool {
	return i/8 < len(si.have) && si.have[i/8]&(1<<(i%8)) != 0
}

// result builds a snapshot Result for transfer.
func (si *snapshotIntake) result(transfer, status string, err error, version uint64) proto.Result {
	r := proto.Result{ID: transfer, Kind: proto.KindSnapshot, Site: si.site, Device: si.device, Status: status,
		Version: version, Time: si.clk.Now().UTC()}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// onManifest handles a manifest message.
func (si *snapshotIntake) onManifest(ctx context.Context, envelope []byte) {
	si.mu.Lock()
	defer si.mu.Unlock()
	m, err := si.checkManifest(envelope)
	if err != nil {
		if err == errCurrent {
			si.log.Debug("snapshot manifest for the version in force; nothing to do", "transfer", m.Transfer, "version", m.Version)
			return
		}
		if m.Group != "" && (errors.Is(err, proto.ErrOutOfOrder) || errors.Is(err, proto.ErrReplayed)) {
			// A group's transfer fits the devices at its base version;
			// this one gets its own (or asks with sync-get).
			si.log.Debug("group snapshot does not fit the version in force; ignored", "transfer", m.Transfer, "group", m.Group, "err", err)
			return
		}
		si.log.Warn("refused snapshot", "transfer", m.Transfer, "version", m.Version, "err", err)
		si.fail(err.Error())
		si.report(ctx, si.result(m.Transfer, proto.ResultRefused, err, si.version()))
		return
	}
	if si.staged != nil && si.staged.Transfer == m.Transfer {
		si.lastSeen = si.clk.Now()
		if si.missing > 0 {
			si.need(ctx, si.needMsg())
		}
		return
	}
	if si.staged != nil {
		si.log.Info("new snapshot supersedes the staged one", "old_transfer", si.staged.Transfer, "transfer", m.Transfer)
		si.discard()
	}
	if err := si.stage(m); err != nil {
		si.log.Error("cannot stage snapshot", "transfer", m.Transfer, "err", err)
		si.fail(err.Error())
		si.report(ctx, si.result(m.Transfer, proto.ResultFailed, err, si.version()))
		return
	}
	si.log.Info("receiving snapshot", "transfer", m.Transfer, "type", m.Type, "version", m.Version,
		"from", m.From, "bytes", m.Size, "chunks", m.Chunks)
	early := si.early
	si.early = nil
	for _, c := range early {
		if c.transfer == m.Transfer && si.accept(ctx, c.index, c.data) {
			return
		}
	}
	if si.missing == 0 {
		si.finish(ctx)
	}
}

// errCurrent marks a manifest for the version already in force: the
// retained manifest comes again on every connection.
var errCurrent = fmt.Errorf("snapshot version already in force")

// checkManifest verifies a manifest envelope against the pinned keys, the
// device and the version in force.
func (si *snapshotIntake) checkManifest(envelope []byte) (proto.Manifest, error) {
	m, err := proto.OpenManifest(si.v, envelope)
	if err != nil {
		return m, err
	}
	if m.Site != si.site || (m.Device != si.device && (m.Group == "" || !slices.Contains(si.groups, m.Group))) {
		return m, fmt.Errorf("%w: snapshot %s is for %s/%s group %q, this is %s/%s in groups %v", proto.ErrWrongDevice,
			m.Transfer, m.Site, m.Device, m.Group, si.site, si.device, si.groups)
	}
	cur, err := si.sink.Version()
	if err != nil {
		return m, fmt.Errorf("read snapshot version in force: %w", err)
	}
	switch {
	case m.Version == cur:
		return m, errCurrent
	case m.Version < cur:
		return m, fmt.Errorf("%w: snapshot %s has version %d, version %d is in force", proto.ErrReplayed, m.Transfer, m.Version, cur)
	case m.Type == proto.SnapshotDelta && m.From != cur:
		return m, fmt.Errorf("%w: delta %s applies to version %d, version %d is in force", proto.ErrOutOfOrder, m.Transfer, m.From, cur)
	}
	return m, nil
}

// version returns the version in force, 0 when it cannot be read.
func (si *snapshotIntake) version() uint64 {
	v, err := si.sink.Version()
	if err != nil {
		return 0
	}
	return v
}

// stage creates the staging file for m and records m as staged.
func (si *snapshotIntake) stage(m proto.Manifest) error {
	if err := os.MkdirAll(si.dir, 0o700); err != nil {
		return fmt.Errorf("create snapshot staging directory: %w", err)
	}
	f, err := os.OpenFile(si.stagingPath(m.Transfer), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create snapshot staging file: %w", err)
	}
	err = f.Truncate(m.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size snapshot staging file %s to %d bytes: %w", si.stagingPath(m.Transfer), m.Size, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode snapshot manifest: %w", err)
	}
	have := make([]byte, (m.Chunks+7)/8)
	err = si.ob.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfer)
		if err := b.Put(keyManifest, raw); err != nil {
			return err
		}
		return b.Put(keyHave, have)
	})
	if err != nil {
		return fmt.Errorf("record staged snapshot %s: %w", m.Transfer, err)
	}
	si.staged, si.have, si.missing, si.lastSeen = &m, have, m.Chunks, si.clk.Now()
	return nil
}

// discard forgets the staged transfer and deletes its file.
func (si *snapshotIntake) discard() {
	if si.staged == nil {
		return
	}
	p := si.stagingPath(si.staged.Transfer)
	err := si.ob.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfer)
		if err := b.Delete(keyManifest); err != nil {
			return err
		}
		return b.Delete(keyHave)
	})
	if err != nil {
		si.log.Error("cannot forget staged snapshot", "transfer", si.staged.Transfer, "err", err)
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		si.log.Warn("cannot remove snapshot staging file", "path", p, "err", err)
	}
	si.staged, si.have, si.missing = nil, nil, 0
}

// onChunk handles a chunk message.
func (si *snapshotIntake) onChunk(ctx context.Context, payload []byte) {
	transfer, i, data, err := proto.DecodeChunk(payload)
	if err != nil {
		si.log.Warn("dropped chunk", "err", err)
		return
	}
	si.mu.Lock()
	defer si.mu.Unlock()
	if si.staged == nil || si.staged.Transfer != transfer {
		si.log.Debug("holding chunk of a transfer not staged (yet)", "transfer", transfer, "index", i)
		if len(si.early) == maxEarlyChunks {
			si.early = si.early[1:]
		}
		si.early = append(si.early, earlyChunk{transfer: transfer, index: i, data: bytes.Clone(data)})
		return
	}
	si.accept(ctx, i, data)
}

// accept stages chunk i of the staged transfer, and applies the transfer
// when it was the last one missing; it reports whether it did. It is
// called with mu held.
func (si *snapshotIntake) accept(ctx context.Context, i int, data []byte) (finished bool) {
	m := si.staged
	if i >= m.Chunks || len(data) != m.ChunkLen(i) {
		si.log.Warn("dropped chunk that does not fit the manifest", "transfer", m.Transfer, "index", i,
			"bytes", len(data), "chunks", m.Chunks)
		return false
	}
	si.lastSeen = si.clk.Now()
	if si.hasChunk(i) {
		return false
	}
	if err := si.store(m, i, data); err != nil {
		si.log.Error("cannot stage chunk; it will be asked for again", "transfer", m.Transfer, "index", i, "err", err)
		return false
	}
	if si.missing == 0 {
		si.finish(ctx)
		return true
	}
	return false
}

// store writes chunk i durably, then marks it received.
func (si *snapshotIntake) store(m *proto.Manifest, i int, data []byte) error {
	f, err := os.OpenFile(si.stagingPath(m.Transfer), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open staging file: %w", err)
	}
	_, err = f.WriteAt(data, int64(i)*int64(m.ChunkSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write chunk %d at offset %d: %w", i, int64(i)*int64(m.ChunkSize), err)
	}
	have := append([]byte(nil), si.have...)
	have[i/8] |= 1 << (i % 8)
	err = si.ob.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTransfer).Put(keyHave, have) })
	if err != nil {
		return fmt.Errorf("record chunk %d: %w", i, err)
	}
	si.have = have
	si.missing--
	return nil
}

// finish checks the staged bytes against the manifest and applies them.
// It is called with mu held once every chunk is on disk.
func (si *snapshotIntake) finish(ctx context.Context) {
	m := *si.staged
	defer si.discard()
	if cur := si.version(); cur == m.Version {
		// Applied before a crash that came before the clean-up.
		si.report(ctx, si.result(m.Transfer, proto.ResultDone, nil, cur))
		return
	}
	f, err := os.Open(si.stagingPath(m.Transfer))
	if err != nil {
		si.refuse(ctx, m, proto.ResultFailed, fmt.Errorf("open staged snapshot: %w", err))
		return
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		si.refuse(ctx, m, proto.ResultFailed, fmt.Errorf("hash staged snapshot: %w", err))
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != m.Size || got != m.SHA256 {
		si.refuse(ctx, m, proto.ResultRefused, fmt.Errorf("%w: %d bytes with sha256 %s, manifest says %d bytes with %s",
			proto.ErrMismatch, n, got, m.Size, m.SHA256))
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		si.refuse(ctx, m, proto.ResultFailed, fmt.Errorf("rewind staged snapshot: %w", err))
		return
	}
	r := io.LimitReader(f, m.Size)
	if m.Type == proto.SnapshotFull {
		err = si.sink.ApplyFullStream(ctx, m.Version, r)
	} else {
		err = si.sink.ApplyDeltaStream(ctx, m.From, m.Version, r)
	}
	if err != nil {
		si.refuse(ctx, m, proto.ResultFailed, fmt.Errorf("apply %s snapshot version %d: %w", m.Type, m.Version, err))
		return
	}
	si.log.Info("applied snapshot", "transfer", m.Transfer, "type", m.Type, "version", m.Version, "bytes", m.Size)
	si.fail("")
	si.report(ctx, si.result(m.Transfer, proto.ResultDone, nil, si.version()))
	si.poke()
}

// refuse reports a snapshot that was not applied.
func (si *snapshotIntake) refuse(ctx context.Context, m proto.Manifest, status string, err error) {
	si.log.Warn("snapshot not applied; the current one stays", "transfer", m.Transfer, "version", m.Version, "err", err)
	si.fail(err.Error())
	si.report(ctx, si.result(m.Transfer, status, err, si.version()))
	si.poke()
}

// needMsg lists the missing chunks of the staged transfer, called with mu
// held.
func (si *snapshotIntake) needMsg() proto.Need {
	n := proto.Need{Transfer: si.staged.Transfer}
	for i := 0; i < si.staged.Chunks && len(n.Missing) < proto.MaxNeedRanges; i++ {
		if si.hasChunk(i) {
			continue
		}
		j := i
		for j+1 < si.staged.Chunks && !si.hasChunk(j+1) {
			j++
		}
		n.Missing = append(n.Missing, [2]int{i, j})
		i = j
	}
	return n
}

// onConnect asks for what is missing of a staged transfer, or finishes
// one whose chunks all arrived before a crash.
func (si *snapshotIntake) onConnect(ctx context.Context) {
	si.mu.Lock()
	defer si.mu.Unlock()
	switch {
	case si.staged == nil:
	case si.missing == 0:
		si.finish(ctx)
	default:
		si.lastSeen = si.clk.Now()
		si.need(ctx, si.needMsg())
	}
}

// routes implements feature: the retained signed manifest and the chunks
// of a device's snapshots.
func (si *snapshotIntake) routes() []route {
	manifest := func(ctx context.Context, _ string, p []byte) { si.onManifest(ctx, p) }
	chunk := func(ctx context.Context, _ string, p []byte) { si.onChunk(ctx, p) }
	rs := []route{
		{topic: proto.SnapshotTopic(si.site, si.device), handle: manifest},
		{topic: proto.ChunkTopic(si.site, si.device), handle: chunk},
	}
	for _, g := range si.groups {
		rs = append(rs, route{topic: proto.SnapshotGroupTopic(si.site, g), handle: manifest},
			route{topic: proto.ChunkGroupTopic(si.site, g), handle: chunk})
	}
	return rs
}

// connected implements feature.
func (si *snapshotIntake) connected(ctx context.Context) { si.onConnect(ctx) }

// notify implements feature: snapshots come from HQ only.
func (si *snapshotIntake) notify() {}

// run implements feature: it asks for missing chunks whenever no chunk
// came for needEvery, until ctx ends.
func (si *snapshotIntake) run(ctx context.Context) {
	interval := si.needEvery
	for {
		t := si.clk.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		si.mu.Lock()
		if si.staged != nil && si.missing > 0 && si.up() && !si.clk.Now().Before(si.lastSeen.Add(interval)) {
			si.log.Info("snapshot chunks missing; asking HQ", "transfer", si.staged.Transfer, "missing", si.missing)
			si.lastSeen = si.clk.Now()
			si.need(ctx, si.needMsg())
		}
		si.mu.Unlock()
	}
}

// StagedTransfer reports the snapshot transfer staged in the outbox file:
// its ID ("" when none), how many of its chunks are on disk, and how many
// it has. After a restart the Edge resumes the transfer from there.
func (o *Outbox) StagedTransfer() (transfer string, have, chunks int, err error) {
	m, bitmap, err := o.staged()
	if err != nil || m == nil {
		return "", 0, 0, err
	}
	for _, x := range bitmap {
		have += bits.OnesCount8(x)
	}
	return m.Transfer, have, m.Chunks, nil
}

// staged returns the manifest of the staged transfer (nil when none) and
// the bitmap of its chunks on disk.
func (o *Outbox) staged() (*proto.Manifest, []byte, error) {
	var m *proto.Manifest
	var have []byte
	err := o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfer)
		raw := b.Get(keyManifest)
		if raw == nil {
			return nil
		}
		m = new(proto.Manifest)
		if err := json.Unmarshal(raw, m); err != nil {
			return fmt.Errorf("decode staged snapshot manifest: %w", err)
		}
		have = bytes.Clone(b.Get(keyHave))
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read staged snapshot of outbox %s: %w", o.path, err)
	}
	return m, have, nil
}
