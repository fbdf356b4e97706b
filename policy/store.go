package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/credential"
)

// Errors about the store file. Each is wrapped with the file's path.
var (
	// ErrLocked means another process (or another Store in this process)
	// holds the store file open: bbolt allows one writer per file, and Open
	// gave up after waiting two seconds for the lock.
	ErrLocked = errors.New("policy store is locked by another process")

	// ErrCorrupt means the file is not a bbolt file, or it is one but its
	// content does not have the policy store's layout (missing buckets, a
	// version record of the wrong size). Open writes nothing to such a
	// file; OpenWithOptions moves it aside and starts empty.
	ErrCorrupt = errors.New("policy store is corrupt")

	// ErrFormat means the file was written in a store format this build does
	// not know (by another tobira version). Open leaves it untouched;
	// OpenWithOptions moves it aside and starts empty.
	ErrFormat = errors.New("policy store has an unknown format")
)

// openTimeout is how long Open waits for another holder of the store file to
// let go before it fails with ErrLocked. Tests shorten it.
var openTimeout = 2 * time.Second

// formatVersion is the store layout this code reads and writes. Format 1
// (allow/revoked buckets only) was the spine's.
const formatVersion = 2

// Bucket and record names.
var (
	bucketMeta  = []byte("meta")          // formatKey, versionKey, accKey
	bucketAllow = KindCredential.bucket() // credential.Key() -> entry value
	formatKey   = []byte("format")        // uint32 big-endian
	versionKey  = []byte("version")       // uint64 big-endian
	accKey      = []byte("content-acc")   // 32-byte contentAcc
	newSuffix   = ".new"                  // a full snapshot being built aside
	localSuffix = "-local.db"             // the local state file
	corruptTag  = ".corrupt-"             // moved-aside files
)

// ctxCheckEvery is how many records an apply reads between looks at ctx.
const ctxCheckEvery = 4096

// fullBatch is how many records a full apply writes per bbolt transaction
// of the file it builds aside: it bounds the memory of dirty pages.
var fullBatch = 50_000

// DefaultMaxRenewalHops bounds how many renewal links Decide follows.
const DefaultMaxRenewalHops = 4

// Fallback is what a door does when it cannot trust its data: the
// revocation data is stale, or the clock went back below the last trusted
// time.
type Fallback uint8

// The fallbacks.
const (
	// FallbackDeny denies (the default): certificate credentials when the
	// revocation data is stale (free-area IDs and tickets have nothing to
	// revoke), every credential when the clock is untrusted.
	FallbackDeny Fallback = iota
	// FallbackGrantFlag decides as usual and marks a grant with
	// ReasonGrantedStaleRevocations or ReasonGrantedClockUntrusted.
	FallbackGrantFlag
)

// DoorOptions is the local (not HQ-pushed) configuration of one door.
type DoorOptions struct {
	// OnStaleRevocations applies when the revocation data is older than
	// Site.MaxRevocationAge or an imported CRL is past its nextUpdate.
	OnStaleRevocations Fallback
	// OnUntrustedClock applies when the request's time is before the last
	// trusted time stored on disk.
	OnUntrustedClock Fallback
}

// BreakGlass is an emergency credential from the local configuration: it
// opens every door, in every mode, even with an empty or corrupt snapshot.
// Only a revocation of its certificate (when the store can be read) stops
// it.
type BreakGlass struct {
	// Credential is the card's credential.
	Credential credential.Credential
	// Label names the holder in decisions (Decision.Person) and logs.
	Label string
}

// Options configure OpenWithOptions. The zero value is usable.
type Options struct {
	// Log receives the store's logs; nil means slog.Default().
	Log *slog.Logger
	// Clock names moved-aside files; nil means the system clock. Decisions
	// take their time from Request.Now only.
	Clock clock.Clock
	// LocalPath is the local state file (trusted time, anti-passback state,
	// ticket marks, CRLs); "" means the store path with "-local.db" in place
	// of ".db".
	LocalPath string
	// BreakGlass lists the emergency credentials.
	BreakGlass []BreakGlass
	// Doors holds per-door options by door ID; a door not listed gets
	// DefaultDoor.
	Doors map[string]DoorOptions
	// DefaultDoor applies to doors not in Doors.
	DefaultDoor DoorOptions
	// MaxRenewalHops bounds renewal-link chains; 0 means
	// DefaultMaxRenewalHops.
	MaxRenewalHops int
	// TrustedTimePersistEvery is how far the trusted time must advance
	// before it is written to disk again; 0 means one minute.
	TrustedTimePersistEvery time.Duration
}

// Recovery reports a store file that OpenWithOptions found corrupt or of
// an unknown format and moved aside.
type Recovery struct {
	// Path is the file's path.
	Path string
	// MovedTo is where it is now.
	MovedTo string
	// Err is why it was moved (wraps ErrCorrupt or ErrFormat).
	Err error
}

// Store is the snapshot store: policy.db holding the active snapshot, and a
// local file holding what the device itself learns (trusted time,
// anti-passback state, ticket marks, CRLs). It is safe for concurrent use;
// Decide never waits for an apply to finish.
type Store struct {
	path string
	log  *slog.Logger
	opts Options
	clk  clock.Clock

	mu sync.RWMutex // guards db against the swap at the end of a full apply
	db *bolt.DB

	rules   atomic.Pointer[rules] // decoded rules of the current version
	applyMu sync.Mutex            // one apply at a time
	local   *localStore

	breakGlass map[string]string // credential key -> label
	recovered  []Recovery

	ticketCheck atomic.Pointer[ticketChecker] // the online check (SetTicketCheck); nil: off
}

// Open opens (creating if needed) the store file at path and its local
// file. A new file gets the empty layout (Version 0). It fails with
// ErrLocked when another holder keeps the file locked for two seconds, with
// ErrCorrupt when the file is not a policy store, and with ErrFormat for an
// unknown layout version; the file is then left untouched. A nil log means
// slog.Default(). See OpenWithOptions for the recovering variant.
func Open(path string, log *slog.Logger) (*Store, error) {
	return open(path, Options{Log: log}, false)
}

// OpenWithOptions opens the store like Open, but a corrupt store file or
// one of an unknown format (policy.db or the local file) is renamed to
// "<path>.corrupt-<UTC time>", reported by Recoveries and the log, and
// replaced by an empty one: the controller keeps running on break-glass
// credentials until HQ resends a snapshot. ErrLocked and I/O errors still
// fail.
func OpenWithOptions(path string, opts Options) (*Store, error) {
	return open(path, opts, true)
}

func open(path string, opts Options, recoverCorrupt bool) (*Store, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.MaxRenewalHops <= 0 {
		opts.MaxRenewalHops = DefaultMaxRenewalHops
	}
	if opts.TrustedTimePersistEvery <= 0 {
		opts.TrustedTimePersistEvery = time.Minute
	}
	if opts.LocalPath == "" {
		opts.LocalPath = strings.TrimSuffix(path, ".db") + localSuffix
	}
	s := &Store{path: path, opts: opts, clk: opts.Clock, log: opts.Log.With("store", path), breakGlass: map[string]string{}}
	for i, bg := range opts.BreakGlass {
		k, err := entryKey(bg.Credential)
		if err != nil {
			return nil, fmt.Errorf("open policy store %s: break-glass credential %d (%s): %w", path, i, bg.Label, err)
		}
		s.breakGlass[string(k)] = bg.Label
	}
	// A full snapshot left half-built by a crash is garbage.
	if err := os.Remove(path + newSuffix); err == nil {
		s.log.Warn("removed a full snapshot left half-built by an interrupted apply", "path", path+newSuffix)
	}
	db, err := s.openRecovering(path, recoverCorrupt, func() (*bolt.DB, error) { return openSnapshotDB(path) })
	if err != nil {
		return nil, err
	}
	s.db = db
	local, err := s.openRecovering(opts.LocalPath, recoverCorrupt, func() (*bolt.DB, error) { return openLocalDB(opts.LocalPath) })
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.local = &localStore{db: local, path: opts.LocalPath, every: opts.TrustedTimePersistEvery, log: s.log}
	if err := s.local.load(); err != nil {
		return nil, errors.Join(err, db.Close(), local.Close())
	}
	v, err := s.Version()
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if err := db.View(func(tx *bolt.Tx) error {
		r, err := loadRules(tx, v)
		if r != nil {
			r.appliedAt = s.clk.Now()
		}
		s.rules.Store(r)
		return err
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("open policy store %s: %w", path, err), s.Close())
	}
	s.log.Info("policy store opened", "version", v, "break_glass", len(s.breakGlass))
	return s, nil
}

// openRecovering opens one file; when it is corrupt or of an unknown
// format and recoverCorrupt is set, the file is moved aside and opened
// afresh.
func (s *Store) openRecovering(path string, recoverCorrupt bool, openFn func() (*bolt.DB, error)) (*bolt.DB, error) {
	db, err := openFn()
	if err == nil || !recoverCorrupt || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrFormat)) {
		return db, err
	}
	moved := path + corruptTag + s.clk.Now().UTC().Format("20060102T150405.000000000Z")
	if rerr := os.Rename(path, moved); rerr != nil {
		return nil, errors.Join(err, fmt.Errorf("move corrupt store aside: %w", rerr))
	}
	if derr := syncDir(filepath.Dir(path)); derr != nil {
		s.log.Warn("fsync directory after moving a corrupt store", "err", derr)
	}
	s.recovered = append(s.recovered, Recovery{Path: path, MovedTo: moved, Err: err})
	s.log.Error("policy store file was unusable: moved aside, starting empty (break-glass credentials only until HQ resends a snapshot)",
		"path", path, "moved_to", moved, "err", err)
	return openFn()
}

// Recoveries lists the files OpenWithOptions moved aside (nil when none).
func (s *Store) Recoveries() []Recovery { return s.recovered }

// openSnapshotDB opens policy.db and checks or creates its layout.
func openSnapshotDB(path string) (db *bolt.DB, err error) {
	db, err = openBolt(path, &bolt.Options{Timeout: openTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	defer func() {
		// bbolt panics on some damaged pages; that is corruption too.
		if p := recover(); p != nil {
			err = errors.Join(fmt.Errorf("open policy store %s: %w: %v", path, ErrCorrupt, p), db.Close())
		}
	}()
	if err := db.Update(initLayout); err != nil {
		return nil, errors.Join(fmt.Errorf("open policy store %s: %w", path, err), db.Close())
	}
	return db, nil
}

// openBolt opens a bbolt file, mapping its errors to this package's.
func openBolt(path string, o *bolt.Options) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, o)
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("open policy store %s: %w (waited %s): %w", path, ErrLocked, openTimeout, err)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open policy store %s: %w: %w", path, ErrCorrupt, err)
	case err != nil:
		var pe *fs.PathError
		if !errors.As(err, &pe) && !errors.Is(err, syscall.EIO) {
			// bbolt reports a truncated file ("file size too small") and
			// similar damage with plain errors.
			return nil, fmt.Errorf("open policy store %s: %w: %w", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open policy store %s: %w", path, err)
	}
	return db, nil
}

// initLayout creates the buckets of an empty file, or checks that an
// existing file has them and a known format.
func initLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return io.EOF })
		if !empty {
			return fmt.Errorf("%w: a bbolt file without a %q bucket (another program's file?)", ErrCorrupt, bucketMeta)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketMeta, err)
		}
		if err := meta.Put(formatKey, binary.BigEndian.AppendUint32(nil, formatVersion)); err != nil {
			return fmt.Errorf("write format: %w", err)
		}
		if err := meta.Put(versionKey, binary.BigEndian.AppendUint64(nil, 0)); err != nil {
			return fmt.Errorf("write version: %w", err)
		}
		if err := meta.Put(accKey, make([]byte, 32)); err != nil {
			return fmt.Errorf("write content digest: %w", err)
		}
		for _, k := range recordKinds {
			if _, err := tx.CreateBucket(k.bucket()); err != nil {
				return fmt.Errorf("create %s bucket: %w", k, err)
			}
		}
		return nil
	}
	f := meta.Get(formatKey)
	if len(f) != 4 {
		return fmt.Errorf("%w: format record is %d bytes, want 4", ErrCorrupt, len(f))
	}
	if got := binary.BigEndian.Uint32(f); got != formatVersion {
		return fmt.Errorf("%w: format %d, this build reads %d", ErrFormat, got, formatVersion)
	}
	if _, err := readVersion(tx); err != nil {
		return err
	}
	if _, err := readAcc(tx); err != nil {
		return err
	}
	for _, k := range recordKinds {
		if tx.Bucket(k.bucket()) == nil {
			return fmt.Errorf("%w: %s bucket %q is missing", ErrCorrupt, k, k.bucket())
		}
	}
	return nil
}

// readVersion reads the stored snapshot version inside tx.
func readVersion(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, bucketMeta)
	}
	v := meta.Get(versionKey)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: version record is %d bytes, want 8", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// readAcc reads the content digest accumulator inside tx.
func readAcc(tx *bolt.Tx) (contentAcc, error) {
	var a contentAcc
	v := tx.Bucket(bucketMeta).Get(accKey)
	if len(v) != len(a) {
		return a, fmt.Errorf("%w: content digest record is %d bytes, want %d", ErrCorrupt, len(v), len(a))
	}
	copy(a[:], v)
	return a, nil
}

// writeMeta stores version and digest inside tx.
func writeMeta(tx *bolt.Tx, version uint64, acc contentAcc) error {
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(versionKey, binary.BigEndian.AppendUint64(nil, version)); err != nil {
		return fmt.Errorf("write version: %w", err)
	}
	if err := meta.Put(accKey, append([]byte(nil), acc[:]...)); err != nil {
		return fmt.Errorf("write content digest: %w", err)
	}
	return nil
}

// view runs fn in a read transaction of the current snapshot file.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading %s: %v", ErrCorrupt, s.path, p)
		}
	}()
	return s.db.View(fn)
}

// Close closes the store files, waiting for running transactions to end.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close policy store %s: %w", s.path, err))
	}
	if s.local != nil {
		if err := s.local.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Version returns the version of the stored snapshot; 0 means no snapshot
// has been applied yet.
func (s *Store) Version() (uint64, error) {
	var v uint64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		v, err = readVersion(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read snapshot version from %s: %w", s.path, err)
	}
	return v, nil
}

// ContentHash is the SHA-256 over the canonical content (HQ compares it to
// detect drift). It is computed from a running digest kept with the
// snapshot (see docs/POLICY.md), so it costs one read; it equals the hash
// SnapshotEncoder.Close returns for the same records. An empty store
// (version 0) has the hash of no records.
func (s *Store) ContentHash() ([32]byte, error) {
	var a contentAcc
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		a, err = readAcc(tx)
		return err
	})
	if err != nil {
		return [32]byte{}, fmt.Errorf("read content hash from %s: %w", s.path, err)
	}
	return a.hash(), nil
}

// ApplyFull atomically replaces the stored snapshot with snap (a
// compatibility wrapper around ApplyFullStream for allowlist-and-revocation
// snapshots). Every entry is validated first (see Snapshot.Validate); a bad
// entry, a snap.Version not newer than the stored one (ErrStaleVersion) or
// a cancelled ctx leave the stored snapshot as it was.
func (s *Store) ApplyFull(ctx context.Context, snap Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("apply snapshot version %d to %s: %w", snap.Version, s.path, err)
	}
	p, err := snap.prepare()
	if err != nil {
		return fmt.Errorf("apply snapshot version %d to %s: %w", snap.Version, s.path, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(p.encode(pw, snap.Version)) }()
	err = s.ApplyFullStream(ctx, snap.Version, pr)
	pr.CloseWithError(errors.New("apply finished"))
	return err
}

// ApplyFullStream replaces the whole snapshot with the one read from r
// (policy's snapshot stream format, docs/POLICY.md), atomically; version
// must be greater than the current one (else ErrStaleVersion) and equal the
// stream's. The new snapshot is built aside in "<path>.new" in several
// transactions, checked against the stream's content hash, synced and
// renamed over the store file: readers keep deciding on the old version
// until the swap, and a crash at any moment leaves the old or the new file.
// A malformed stream fails with ErrInvalidSnapshot naming the record.
func (s *Store) ApplyFullStream(ctx context.Context, version uint64, r io.Reader) error {
	start := s.clk.Now()
	n, err := s.applyFull(ctx, version, r)
	if err != nil {
		return fmt.Errorf("apply snapshot version %d to %s: %w", version, s.path, err)
	}
	s.log.Info("applied full snapshot", "version", version, "records", n, "took", s.clk.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// applyFull is ApplyFullStream's work: it checks the offer, builds the new
// snapshot aside and swaps it in.
func (s *Store) applyFull(ctx context.Context, version uint64, r io.Reader) (uint64, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	sr, err := s.openFullStream(version, r)
	if err != nil {
		return 0, err
	}
	tmp := s.path + newSuffix
	count, err := buildAside(ctx, tmp, version, sr)
	if err != nil {
		return 0, err
	}
	if err := s.swapIn(tmp, version); err != nil {
		return 0, err
	}
	return count, nil
}

// openFullStream reads the header of a full snapshot stream offered as
// version, which must be newer than the stored one and the stream's own.
func (s *Store) openFullStream(version uint64, r io.Reader) (*streamReader, error) {
	old, err := s.Version()
	if err != nil {
		return nil, err
	}
	if version <= old {
		return nil, fmt.Errorf("%w: offered %d, stored %d", ErrStaleVersion, version, old)
	}
	sr, vs, err := newStreamReader(r)
	if err != nil {
		return nil, err
	}
	if !sr.full || vs[0] != version {
		return nil, fmt.Errorf("%w: stream is not a full snapshot of version %d (header says %v)", ErrInvalidSnapshot, version, vs)
	}
	return sr, nil
}

// buildAside writes every record of sr into a new store file at tmp, in
// transactions of fullBatch records, checks the stream's content hash and
// syncs the file. It returns the number of records; on failure tmp is
// removed.
func buildAside(ctx context.Context, tmp string, version uint64, sr *streamReader) (uint64, error) {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	// The file aside needs no fsync per transaction: it is synced once
	// before the rename, and a crash before that discards it.
	ndb, err := openBolt(tmp, &bolt.Options{Timeout: openTimeout, NoSync: true, NoFreelistSync: true, NoGrowSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, err
	}
	done := false
	defer func() {
		if !done {
			_ = ndb.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := ndb.Update(initLayout); err != nil {
		return 0, fmt.Errorf("lay out %s: %w", tmp, err)
	}
	var acc contentAcc
	var count uint64
	for eof := false; !eof; {
		err := ndb.Update(func(tx *bolt.Tx) error {
			var err error
			eof, err = writeBatch(ctx, tx, sr, &acc, &count)
			if eof && err == nil {
				err = writeMeta(tx, version, acc)
			}
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	if got := acc.hash(); got != sr.hash {
		return 0, fmt.Errorf("%w: content hash %x, the stream's trailer says %x", ErrInvalidSnapshot, got, sr.hash)
	}
	// Persist the freelist once, so that opening the new file does not
	// scan (and map) every page to rebuild it.
	ndb.NoFreelistSync = false
	if err := ndb.Update(func(tx *bolt.Tx) error { return writeMeta(tx, version, acc) }); err != nil {
		return 0, fmt.Errorf("write the freelist of %s: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := ndb.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := ndb.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", tmp, err)
	}
	done = true
	return count, nil
}

// writeBatch writes up to fullBatch records of sr in tx, adding them to acc
// and counting them in count; eof tells that the stream has ended. A record
// that repeats an earlier one fails with ErrInvalidSnapshot.
func writeBatch(ctx context.Context, tx *bolt.Tx, sr *streamReader, acc *contentAcc, count *uint64) (eof bool, err error) {
	buckets := map[RecordKind]*bolt.Bucket{}
	for i := 0; i < fullBatch; i++ {
		rec, err := sr.next()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		b := buckets[rec.kind]
		if b == nil {
			b = tx.Bucket(rec.kind.bucket())
			b.FillPercent = 0.95
			buckets[rec.kind] = b
		}
		if b.Get(rec.key) != nil {
			return false, fmt.Errorf("%w: record %d: %s %q appears twice", ErrInvalidSnapshot, *count, rec.kind, printableKey(rec.key))
		}
		k := append([]byte(nil), rec.key...)
		v := append([]byte(nil), rec.value...)
		if err := b.Put(k, v); err != nil {
			return false, fmt.Errorf("write %s %q: %w", rec.kind, printableKey(k), err)
		}
		acc.add(rec.kind, k, v, 1)
		if *count++; *count%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}

// swapIn renames the file built aside at tmp over the store file and
// switches readers to it, with the rules of version decoded.
func (s *Store) swapIn(tmp string, version uint64) error {
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename %s over the store: %w", tmp, err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		s.log.Warn("fsync directory after the snapshot swap", "err", err)
	}
	// From here the new version is on disk; switch readers to it.
	db, err := openSnapshotDB(s.path)
	if err != nil {
		return fmt.Errorf("reopen after the swap: %w", err)
	}
	var rl *rules
	if err := db.View(func(tx *bolt.Tx) error { rl, err = loadRules(tx, version); return err }); err != nil {
		return errors.Join(err, db.Close())
	}
	rl.appliedAt = s.clk.Now()
	s.mu.Lock()
	oldDB := s.db
	s.db = db
	s.rules.Store(rl)
	s.mu.Unlock()
	if err := oldDB.Close(); err != nil {
		s.log.Warn("close the replaced snapshot file", "err", err)
	}
	return nil
}

// ApplyDeltaStream applies a delta read from r in one transaction; refused
// (ErrStaleVersion or ErrVersionGap) unless the store is at version from;
// afterwards it is at to. A put replaces a record; a delete of a record that
// is not there, a malformed stream or a result that does not match the
// delta's expected content hash fail with ErrInvalidSnapshot and change
// nothing.
func (s *Store) ApplyDeltaStream(ctx context.Context, from, to uint64, r io.Reader) error {
	start := s.clk.Now()
	n, err := s.applyDelta(ctx, from, to, r)
	if err != nil {
		return fmt.Errorf("apply delta %d->%d to %s: %w", from, to, s.path, err)
	}
	s.log.Info("applied delta", "from", from, "to", to, "records", n, "took", s.clk.Now().Sub(start).Round(time.Millisecond))
	return nil
}

func (s *Store) applyDelta(ctx context.Context, from, to uint64, r io.Reader) (uint64, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if to <= from {
		return 0, fmt.Errorf("%w: delta does not move forward", ErrInvalidSnapshot)
	}
	s.mu.RLock()
	db := s.db // stable: only a full apply swaps it, and applyMu is held
	s.mu.RUnlock()
	tx, err := db.Begin(true)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	cur, err := readVersion(tx)
	if err != nil {
		return 0, err
	}
	switch {
	case cur > from:
		return 0, fmt.Errorf("%w: delta starts at %d, stored %d", ErrStaleVersion, from, cur)
	case cur < from:
		return 0, fmt.Errorf("%w: delta starts at %d, stored %d", ErrVersionGap, from, cur)
	}
	sr, vs, err := newStreamReader(r)
	if err != nil {
		return 0, err
	}
	if sr.full || vs[0] != from || vs[1] != to {
		return 0, fmt.Errorf("%w: stream is not a delta %d->%d (full=%v, header says %v)", ErrInvalidSnapshot, from, to, sr.full, vs)
	}
	acc, err := readAcc(tx)
	if err != nil {
		return 0, err
	}
	var count uint64
	for {
		rec, err := sr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		b := tx.Bucket(rec.kind.bucket())
		if old := b.Get(rec.key); old != nil {
			acc.add(rec.kind, rec.key, old, -1)
		} else if rec.op == opDelete {
			return 0, fmt.Errorf("%w: record %d deletes %s %q, which is not there", ErrInvalidSnapshot, count, rec.kind, printableKey(rec.key))
		}
		k := append([]byte(nil), rec.key...)
		if rec.op == opDelete {
			if err := b.Delete(k); err != nil {
				return 0, fmt.Errorf("delete %s %q: %w", rec.kind, printableKey(k), err)
			}
		} else {
			v := append([]byte(nil), rec.value...)
			if err := b.Put(k, v); err != nil {
				return 0, fmt.Errorf("write %s %q: %w", rec.kind, printableKey(k), err)
			}
			acc.add(rec.kind, k, v, 1)
		}
		if count++; count%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
	}
	if sr.hash != ([32]byte{}) && sr.hash != acc.hash() {
		return 0, fmt.Errorf("%w: content hash after the delta is %x, the delta expects %x", ErrInvalidSnapshot, acc.hash(), sr.hash)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := writeMeta(tx, to, acc); err != nil {
		return 0, err
	}
	rl, err := loadRules(tx, to)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	rl.appliedAt = s.clk.Now()
	s.rules.Store(rl)
	return count, nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
