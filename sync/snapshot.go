package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	gosync "sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/signed"
)

// Snapshot transfer limits and defaults.
const (
	// SnapshotFull is Manifest.Type of a full snapshot.
	SnapshotFull = "full"
	// SnapshotDelta is Manifest.Type of a delta.
	SnapshotDelta = "delta"
	// DefaultChunkSize is the chunk size HQ uses unless told otherwise.
	DefaultChunkSize = 256 << 10
	// MaxChunkSize bounds Manifest.ChunkSize.
	MaxChunkSize = 1 << 20
	// MaxSnapshotSize bounds Manifest.Size (16 GiB).
	MaxSnapshotSize = 16 << 30
	// DefaultNeedInterval is how long the edge waits without a new chunk
	// before it asks HQ for the missing ones.
	DefaultNeedInterval = 10 * time.Second
	// maxNeedRanges bounds the ranges in one need message.
	maxNeedRanges = 256
	// chunkMagic starts every chunk payload.
	chunkMagic = "TBC1"
	// chunkHeader is the length of a chunk payload's header: magic,
	// 16-byte transfer ID, 4-byte index.
	chunkHeader = 4 + 16 + 4
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

// Manifest is the signed description of a snapshot transfer to one device.
// Field names are part of the protocol.
type Manifest struct {
	// Transfer is the transfer's ID: 32 lower-case hex digits, fresh for
	// every publication.
	Transfer string `json:"transfer"`
	// Site and Device address the device.
	Site string `json:"site"`
	// Device is the addressed device.
	Device string `json:"device"`
	// Type is SnapshotFull or SnapshotDelta.
	Type string `json:"type"`
	// Version is the snapshot version the device has once applied.
	Version uint64 `json:"version"`
	// From is the version a delta applies to (0 for full).
	From uint64 `json:"from,omitempty"`
	// Size is the payload's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the payload.
	SHA256 string `json:"sha256"`
	// ChunkSize is the length of every chunk but the last.
	ChunkSize int `json:"chunk_size"`
	// Chunks is ceil(Size / ChunkSize).
	Chunks int `json:"chunks"`
	// Issued is when HQ published it.
	Issued time.Time `json:"issued"`
	// ContentHash, when set, is the hex policy content hash the device's
	// store reports once the snapshot is applied; HQ compares it with the
	// status's snapshot hash to show drift. Devices do not need it.
	ContentHash string `json:"content_hash,omitempty"`
}

// check reports whether m is well formed.
func (m Manifest) check() error {
	if b, err := hex.DecodeString(m.Transfer); err != nil || len(b) != 16 || hex.EncodeToString(b) != m.Transfer {
		return fmt.Errorf("%w: snapshot transfer id %q is not 32 lower-case hex digits", ErrMalformed, m.Transfer)
	}
	if err := CheckName(m.Site); err != nil {
		return fmt.Errorf("%w: snapshot %s: site: %w", ErrMalformed, m.Transfer, err)
	}
	if err := CheckName(m.Device); err != nil {
		return fmt.Errorf("%w: snapshot %s: device: %w", ErrMalformed, m.Transfer, err)
	}
	switch {
	case m.Type != SnapshotFull && m.Type != SnapshotDelta:
		return fmt.Errorf("%w: snapshot %s: type %q, want full or delta", ErrMalformed, m.Transfer, m.Type)
	case m.Version == 0:
		return fmt.Errorf("%w: snapshot %s: version 0", ErrMalformed, m.Transfer)
	case m.Type == SnapshotFull && m.From != 0:
		return fmt.Errorf("%w: snapshot %s: full snapshot with from %d", ErrMalformed, m.Transfer, m.From)
	case m.Type == SnapshotDelta && (m.From == 0 || m.From >= m.Version):
		return fmt.Errorf("%w: snapshot %s: delta from %d to %d", ErrMalformed, m.Transfer, m.From, m.Version)
	case m.Size < 0 || m.Size > MaxSnapshotSize:
		return fmt.Errorf("%w: snapshot %s: size %d, want 0..%d", ErrMalformed, m.Transfer, m.Size, int64(MaxSnapshotSize))
	case m.ChunkSize < 1 || m.ChunkSize > MaxChunkSize:
		return fmt.Errorf("%w: snapshot %s: chunk size %d, want 1..%d", ErrMalformed, m.Transfer, m.ChunkSize, MaxChunkSize)
	case int64(m.Chunks) != (m.Size+int64(m.ChunkSize)-1)/int64(m.ChunkSize):
		return fmt.Errorf("%w: snapshot %s: %d chunks of %d for %d bytes", ErrMalformed, m.Transfer, m.Chunks, m.ChunkSize, m.Size)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("%w: snapshot %s: sha256 %q", ErrMalformed, m.Transfer, m.SHA256)
	}
	return nil
}

// chunkLen returns the length of chunk i.
func (m Manifest) chunkLen(i int) int {
	if i == m.Chunks-1 {
		return int(m.Size - int64(i)*int64(m.ChunkSize))
	}
	return m.ChunkSize
}

// SnapshotTopic returns the topic of a device's (retained) snapshot
// manifest.
func SnapshotTopic(site, device string) string {
	return deviceTopic(site, device, "snapshot")
}

// ChunkTopic returns the topic of a device's snapshot chunks.
func ChunkTopic(site, device string) string {
	return deviceTopic(site, device, "chunk")
}

// needLeaf is the last level of need topics.
const needLeaf = "need"

// NeedTopic returns the topic on which a device asks for missing chunks.
func NeedTopic(site, device string) string {
	return deviceTopic(site, device, needLeaf)
}

// NeedSubscription is the filter HQ subscribes to for chunk requests.
const NeedSubscription = TopicPrefix + "/+/+/" + needLeaf

// Need is the payload of a need message: the chunks of Transfer the device
// still lacks, as inclusive index ranges.
type Need struct {
	// Transfer is the transfer ID.
	Transfer string `json:"transfer"`
	// Missing holds up to 256 [first, last] ranges of chunk indexes.
	Missing [][2]int `json:"missing"`
}

// EncodeChunk returns the payload of chunk index of transfer.
func EncodeChunk(transfer string, index int, data []byte) ([]byte, error) {
	id, err := hex.DecodeString(transfer)
	if err != nil || len(id) != 16 {
		return nil, fmt.Errorf("encode chunk %d: transfer id %q is not 32 hex digits", index, transfer)
	}
	if index < 0 || uint64(index) > math.MaxUint32 {
		return nil, fmt.Errorf("encode chunk %d of %s: index out of range", index, transfer)
	}
	b := make([]byte, 0, chunkHeader+len(data))
	b = append(b, chunkMagic...)
	b = append(b, id...)
	b = binary.BigEndian.AppendUint32(b, uint32(index))
	return append(b, data...), nil
}

// DecodeChunk splits a chunk payload into its transfer ID, index and
// data. The error wraps ErrMalformed.
func DecodeChunk(payload []byte) (transfer string, index int, data []byte, err error) {
	if len(payload) < chunkHeader || string(payload[:4]) != chunkMagic {
		return "", 0, nil, fmt.Errorf("%w: chunk payload of %d bytes has no %q header", ErrMalformed, len(payload), chunkMagic)
	}
	if len(payload) > chunkHeader+MaxChunkSize {
		return "", 0, nil, fmt.Errorf("%w: chunk payload is %d bytes, max %d", ErrMalformed, len(payload), chunkHeader+MaxChunkSize)
	}
	return hex.EncodeToString(payload[4:20]), int(binary.BigEndian.Uint32(payload[20:24])), payload[chunkHeader:], nil
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
	report func(ctx context.Context, r Result) // publishes a result
	need   func(ctx context.Context, n Need)   // publishes a need
	poke   func()                              // status changed
	fail   func(err string)                    // records the last refusal for status

	mu       gosync.Mutex
	staged   *Manifest
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
	return si.ob.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfer)
		raw := b.Get(keyManifest)
		if raw == nil {
			return nil
		}
		var m Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("decode staged snapshot manifest: %w", err)
		}
		si.staged = &m
		si.have = append([]byte(nil), b.Get(keyHave)...)
		si.missing = 0
		for i := range m.Chunks {
			if !si.hasChunk(i) {
				si.missing++
			}
		}
		return nil
	})
}

// hasChunk reports whether chunk i of the staged transfer is on disk.
func (si *snapshotIntake) hasChunk(i int) bool {
	return i/8 < len(si.have) && si.have[i/8]&(1<<(i%8)) != 0
}

// result builds a snapshot Result for transfer.
func (si *snapshotIntake) result(transfer, status string, err error, version uint64) Result {
	r := Result{ID: transfer, Kind: KindSnapshot, Site: si.site, Device: si.device, Status: status,
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
		si.log.Warn("refused snapshot", "transfer", m.Transfer, "version", m.Version, "err", err)
		si.fail(err.Error())
		si.report(ctx, si.result(m.Transfer, ResultRefused, err, si.version()))
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
		si.report(ctx, si.result(m.Transfer, ResultFailed, err, si.version()))
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
func (si *snapshotIntake) checkManifest(envelope []byte) (Manifest, error) {
	payload, _, err := si.v.Open(KindSnapshot, envelope)
	if err != nil {
		return Manifest{}, fmt.Errorf("snapshot envelope: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(payload, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: snapshot manifest: %w", ErrMalformed, err)
	}
	if err := m.check(); err != nil {
		return m, err
	}
	if m.Site != si.site || m.Device != si.device {
		return m, fmt.Errorf("%w: snapshot %s is for %s/%s, this is %s/%s", ErrWrongDevice, m.Transfer, m.Site, m.Device, si.site, si.device)
	}
	cur, err := si.sink.Version()
	if err != nil {
		return m, fmt.Errorf("read snapshot version in force: %w", err)
	}
	switch {
	case m.Version == cur:
		return m, errCurrent
	case m.Version < cur:
		return m, fmt.Errorf("%w: snapshot %s has version %d, version %d is in force", ErrReplayed, m.Transfer, m.Version, cur)
	case m.Type == SnapshotDelta && m.From != cur:
		return m, fmt.Errorf("%w: delta %s applies to version %d, version %d is in force", ErrOutOfOrder, m.Transfer, m.From, cur)
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
func (si *snapshotIntake) stage(m Manifest) error {
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
	transfer, i, data, err := DecodeChunk(payload)
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
	if i >= m.Chunks || len(data) != m.chunkLen(i) {
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
func (si *snapshotIntake) store(m *Manifest, i int, data []byte) error {
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
		si.report(ctx, si.result(m.Transfer, ResultDone, nil, cur))
		return
	}
	f, err := os.Open(si.stagingPath(m.Transfer))
	if err != nil {
		si.refuse(ctx, m, ResultFailed, fmt.Errorf("open staged snapshot: %w", err))
		return
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		si.refuse(ctx, m, ResultFailed, fmt.Errorf("hash staged snapshot: %w", err))
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != m.Size || got != m.SHA256 {
		si.refuse(ctx, m, ResultRefused, fmt.Errorf("%w: %d bytes with sha256 %s, manifest says %d bytes with %s",
			ErrMismatch, n, got, m.Size, m.SHA256))
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		si.refuse(ctx, m, ResultFailed, fmt.Errorf("rewind staged snapshot: %w", err))
		return
	}
	r := io.LimitReader(f, m.Size)
	if m.Type == SnapshotFull {
		err = si.sink.ApplyFullStream(ctx, m.Version, r)
	} else {
		err = si.sink.ApplyDeltaStream(ctx, m.From, m.Version, r)
	}
	if err != nil {
		si.refuse(ctx, m, ResultFailed, fmt.Errorf("apply %s snapshot version %d: %w", m.Type, m.Version, err))
		return
	}
	si.log.Info("applied snapshot", "transfer", m.Transfer, "type", m.Type, "version", m.Version, "bytes", m.Size)
	si.fail("")
	si.report(ctx, si.result(m.Transfer, ResultDone, nil, si.version()))
	si.poke()
}

// refuse reports a snapshot that was not applied.
func (si *snapshotIntake) refuse(ctx context.Context, m Manifest, status string, err error) {
	si.log.Warn("snapshot not applied; the current one stays", "transfer", m.Transfer, "version", m.Version, "err", err)
	si.fail(err.Error())
	si.report(ctx, si.result(m.Transfer, status, err, si.version()))
	si.poke()
}

// needMsg lists the missing chunks of the staged transfer, called with mu
// held.
func (si *snapshotIntake) needMsg() Need {
	n := Need{Transfer: si.staged.Transfer}
	for i := 0; i < si.staged.Chunks && len(n.Missing) < maxNeedRanges; i++ {
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

// run asks for missing chunks whenever no chunk came for interval.
func (si *snapshotIntake) run(ctx context.Context, interval time.Duration, connected func() bool) {
	for {
		t := si.clk.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		si.mu.Lock()
		if si.staged != nil && si.missing > 0 && connected() && !si.clk.Now().Before(si.lastSeen.Add(interval)) {
			si.log.Info("snapshot chunks missing; asking HQ", "transfer", si.staged.Transfer, "missing", si.missing)
			si.lastSeen = si.clk.Now()
			si.need(ctx, si.needMsg())
		}
		si.mu.Unlock()
	}
}

// DecodeNeed parses a need payload from topic. The error wraps
// ErrMalformed.
func DecodeNeed(topic string, payload []byte) (site, device string, n Need, err error) {
	site, device, err = parseDeviceTopic(topic, needLeaf)
	if err != nil {
		return "", "", Need{}, err
	}
	if len(payload) > maxStatusPayload {
		return "", "", Need{}, fmt.Errorf("%w: need payload is %d bytes", ErrMalformed, len(payload))
	}
	if err := json.Unmarshal(payload, &n); err != nil {
		return "", "", Need{}, fmt.Errorf("%w: need payload: %w", ErrMalformed, err)
	}
	if len(n.Missing) == 0 || len(n.Missing) > maxNeedRanges {
		return "", "", Need{}, fmt.Errorf("%w: need has %d ranges, want 1..%d", ErrMalformed, len(n.Missing), maxNeedRanges)
	}
	for _, r := range n.Missing {
		if r[0] < 0 || r[1] < r[0] {
			return "", "", Need{}, fmt.Errorf("%w: need range %v", ErrMalformed, r)
		}
	}
	return site, device, n, nil
}
