// Package boltfile holds what tobira's bbolt files have in common: a meta
// bucket whose format marker is written when a file is created and checked
// on every open, so that no program opens another's file (the edge's
// outbox, HQ's store), and 8-byte big-endian sequence-number keys.
package boltfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrBadFile means a bbolt file opened but does not hold what it should
// (another program's data, or a layout of a newer version).
var ErrBadFile = errors.New("unexpected database layout")

// MetaBucket is the bucket of a file's format marker; files keep their
// counters there too.
var MetaBucket = []byte("meta")

// keyFormat is the key of the format marker in MetaBucket.
var keyFormat = []byte("format")

// OpenTimeout is how long an open waits for a file locked by another
// process before it reports it.
const OpenTimeout = 2 * time.Second

// Init creates MetaBucket with the format marker and the given buckets in
// a fresh file, or checks the marker of an existing one (and creates
// buckets it lacks). A file with other buckets but no marker, or with
// another marker, is refused with ErrBadFile and left unchanged.
func Init(tx *bolt.Tx, format []byte, buckets ...[]byte) error {
	meta := tx.Bucket(MetaBucket)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return fmt.Errorf("%w: bucket %q present but no %q bucket", ErrBadFile, k, MetaBucket)
		}
		var err error
		if meta, err = tx.CreateBucket(MetaBucket); err != nil {
			return fmt.Errorf("create bucket %q: %w", MetaBucket, err)
		}
		if err := meta.Put(keyFormat, format); err != nil {
			return fmt.Errorf("write format marker: %w", err)
		}
	}
	if got := meta.Get(keyFormat); !bytes.Equal(got, format) {
		return fmt.Errorf("%w: format %q, want %q", ErrBadFile, got, format)
	}
	for _, name := range buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	return nil
}

// SeqKey encodes a sequence number as a bbolt key (8 bytes, big-endian, so
// keys sort by number).
func SeqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// SeqOf decodes a key made by SeqKey; a missing or malformed value is 0.
func SeqOf(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}
