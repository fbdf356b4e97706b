package policy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tobira-ac/tobira/internal/credential"
)

// The snapshot stream format (docs/POLICY.md has the full description):
//
//	header  = magic "TBRPOL01" | type ('F' full | 'D' delta) | uvarint version (F) or uvarint from, uvarint to (D)
//	record  = op 'P' (put) | kind | uvarint len(key) | key | uvarint len(value) | value
//	        | op 'X' (delete, delta only) | kind | uvarint len(key) | key
//	trailer = op 'Z' | uvarint record count | 32-byte content hash (all zero in a delta: not checked)
//
// Nothing may follow the trailer.
const streamMagic = "TBRPOL01"

const (
	streamFull  = 'F'
	streamDelta = 'D'
	opPut       = 'P'
	opDelete    = 'X'
	opEnd       = 'Z'
)

// ErrVersionGap means a delta starts from a version newer than the stored
// one: deltas in between are missing, and HQ must send them or a full
// snapshot.
var ErrVersionGap = errors.New("delta does not start at the stored version")

// contentAcc is an order-independent digest of a record set: the sum,
// modulo 2^256, of SHA-256 over each record. Adding and removing single
// records keeps it in step with a delta without reading the whole store.
type contentAcc [32]byte

func recordDigest(kind RecordKind, key, value []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{byte(kind)})
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	h.Write(key)
	h.Write(value)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// add adds (sign 1) or removes (sign -1) one record.
func (a *contentAcc) add(kind RecordKind, key, value []byte, sign int) {
	d := recordDigest(kind, key, value)
	// 256-bit add/sub with carry, big-endian.
	var carry uint64
	for i := 3; i >= 0; i-- {
		x := binary.BigEndian.Uint64(a[i*8:])
		y := binary.BigEndian.Uint64(d[i*8:])
		var r uint64
		if sign > 0 {
			r = x + y + carry
			if r < x || (carry == 1 && r == x) {
				carry = 1
			} else {
				carry = 0
			}
		} else {
			r = x - y - carry
			if x < y || (carry == 1 && x == y) {
				carry = 1
			} else {
				carry = 0
			}
		}
		binary.BigEndian.PutUint64(a[i*8:], r)
	}
}

// hash is the published content hash: SHA-256 of a domain tag and the
// accumulator.
func (a contentAcc) hash() [32]byte {
	return sha256.Sum256(append([]byte("tobira-policy-content-v1\n"), a[:]...))
}

// streamWriter writes the records common to both encoders.
type streamWriter struct {
	w     *bufio.Writer
	count uint64
	acc   contentAcc
	err   error
}

func (sw *streamWriter) header(typ byte, versions ...uint64) {
	b := append([]byte(streamMagic), typ)
	for _, v := range versions {
		b = binary.AppendUvarint(b, v)
	}
	_, sw.err = sw.w.Write(b)
}

func (sw *streamWriter) put(it Item) error {
	if sw.err != nil {
		return sw.err
	}
	k, v, err := recordOf(it)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}
	// Store what the store will store, so that both sides hash the same.
	if v, err = canonicalValue(it.recordKind(), k, v); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrInvalidSnapshot, it.recordKind(), printableKey(k), err)
	}
	b := []byte{opPut, byte(it.recordKind())}
	b = binary.AppendUvarint(b, uint64(len(k)))
	b = append(b, k...)
	b = binary.AppendUvarint(b, uint64(len(v)))
	b = append(b, v...)
	if _, err := sw.w.Write(b); err != nil {
		sw.err = fmt.Errorf("write %s record: %w", it.recordKind(), err)
		return sw.err
	}
	sw.acc.add(it.recordKind(), k, v, 1)
	sw.count++
	return nil
}

func (sw *streamWriter) close(hash [32]byte) error {
	if sw.err != nil {
		return sw.err
	}
	b := binary.AppendUvarint([]byte{opEnd}, sw.count)
	b = append(b, hash[:]...)
	if _, err := sw.w.Write(b); err != nil {
		return fmt.Errorf("write stream trailer: %w", err)
	}
	if err := sw.w.Flush(); err != nil {
		return fmt.Errorf("flush stream: %w", err)
	}
	sw.err = errors.New("stream is closed")
	return nil
}

// SnapshotEncoder writes a full snapshot stream, the format that
// Store.ApplyFullStream reads. HQ uses it to produce snapshots. Records may
// come in any order, but each (kind, key) at most once; key order within a
// kind makes the edge's apply faster.
type SnapshotEncoder struct {
	sw streamWriter
}

// NewSnapshotEncoder starts a full snapshot stream of the given version
// (at least 1) on w.
func NewSnapshotEncoder(w io.Writer, version uint64) (*SnapshotEncoder, error) {
	if version == 0 {
		return nil, fmt.Errorf("%w: version 0 is reserved for \"no snapshot\"", ErrInvalidSnapshot)
	}
	e := &SnapshotEncoder{sw: streamWriter{w: bufio.NewWriterSize(w, 64<<10)}}
	e.sw.header(streamFull, version)
	if e.sw.err != nil {
		return nil, fmt.Errorf("write snapshot header: %w", e.sw.err)
	}
	return e, nil
}

// Put adds one record. An invalid item fails with ErrInvalidSnapshot and
// leaves the stream usable; a write error sticks.
func (e *SnapshotEncoder) Put(it Item) error { return e.sw.put(it) }

// Close writes the trailer (record count and content hash) and flushes. It
// returns the content hash a store holding this snapshot reports from
// ContentHash. It does not close the underlying writer.
func (e *SnapshotEncoder) Close() ([32]byte, error) {
	h := e.sw.acc.hash()
	if err := e.sw.close(h); err != nil {
		return [32]byte{}, err
	}
	return h, nil
}

// DeltaEncoder writes a delta stream, the format Store.ApplyDeltaStream
// reads: puts (insert or replace) and deletes that turn version from into
// version to.
type DeltaEncoder struct {
	sw     streamWriter
	expect [32]byte
}

// NewDeltaEncoder starts a delta stream from version from to version to
// (to > from) on w.
func NewDeltaEncoder(w io.Writer, from, to uint64) (*DeltaEncoder, error) {
	if to <= from {
		return nil, fmt.Errorf("%w: delta from %d to %d does not move forward", ErrInvalidSnapshot, from, to)
	}
	e := &DeltaEncoder{sw: streamWriter{w: bufio.NewWriterSize(w, 64<<10)}}
	e.sw.header(streamDelta, from, to)
	if e.sw.err != nil {
		return nil, fmt.Errorf("write delta header: %w", e.sw.err)
	}
	return e, nil
}

// Put inserts or replaces one record.
func (e *DeltaEncoder) Put(it Item) error { return e.sw.put(it) }

// Delete removes the record with it's kind and key (other fields of it are
// ignored). The record must exist at version from.
func (e *DeltaEncoder) Delete(it Item) error {
	if e.sw.err != nil {
		return e.sw.err
	}
	k, err := it.recordKey()
	if err != nil {
		return fmt.Errorf("%w: %s key: %w", ErrInvalidSnapshot, it.recordKind(), err)
	}
	b := []byte{opDelete, byte(it.recordKind())}
	b = binary.AppendUvarint(b, uint64(len(k)))
	b = append(b, k...)
	if _, err := e.sw.w.Write(b); err != nil {
		e.sw.err = fmt.Errorf("write delete record: %w", err)
		return e.sw.err
	}
	e.sw.count++
	return nil
}

// ExpectHash records the content hash the store must have after applying
// the delta; ApplyDeltaStream refuses the delta otherwise. Without it the
// result is not checked.
func (e *DeltaEncoder) ExpectHash(h [32]byte) { e.expect = h }

// Close writes the trailer and flushes (the underlying writer stays open).
func (e *DeltaEncoder) Close() error { return e.sw.close(e.expect) }

// streamRecord is one decoded record.
type streamRecord struct {
	op    byte
	kind  RecordKind
	key   []byte
	value []byte
}

// streamReader decodes a stream; every error wraps ErrInvalidSnapshot (or
// the reader's error) and names the record's index.
type streamReader struct {
	r     *bufio.Reader
	count uint64
	done  bool
	hash  [32]byte // from the trailer
	full  bool
	buf   []byte
}

// newStreamReader reads the header and returns the reader and the versions
// it names (one for a full snapshot, two for a delta).
func newStreamReader(r io.Reader) (*streamReader, []uint64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h := make([]byte, len(streamMagic)+1)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, nil, fmt.Errorf("%w: read stream header: %w", ErrInvalidSnapshot, err)
	}
	if string(h[:len(streamMagic)]) != streamMagic {
		return nil, nil, fmt.Errorf("%w: stream starts with %q, want %q", ErrInvalidSnapshot, h[:len(streamMagic)], streamMagic)
	}
	sr := &streamReader{r: br}
	n := 0
	switch h[len(streamMagic)] {
	case streamFull:
		sr.full, n = true, 1
	case streamDelta:
		n = 2
	default:
		return nil, nil, fmt.Errorf("%w: unknown stream type %q", ErrInvalidSnapshot, h[len(streamMagic)])
	}
	vs := make([]uint64, n)
	for i := range vs {
		v, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: read stream header version: %w", ErrInvalidSnapshot, err)
		}
		vs[i] = v
	}
	return sr, vs, nil
}

// next returns the next record, or io.EOF after a valid trailer. The
// returned slices are valid until the next call.
func (sr *streamReader) next() (streamRecord, error) {
	if sr.done {
		return streamRecord{}, io.EOF
	}
	idx := sr.count
	fail := func(format string, args ...any) (streamRecord, error) {
		return streamRecord{}, fmt.Errorf("%w: record %d: %s", ErrInvalidSnapshot, idx, fmt.Sprintf(format, args...))
	}
	op, err := sr.r.ReadByte()
	if err != nil {
		return fail("read op: %v (stream truncated?)", noEOF(err))
	}
	switch op {
	case opEnd:
		n, err := binary.ReadUvarint(sr.r)
		if err != nil {
			return fail("read trailer count: %v", noEOF(err))
		}
		if n != sr.count {
			return fail("trailer counts %d records, stream has %d", n, sr.count)
		}
		if _, err := io.ReadFull(sr.r, sr.hash[:]); err != nil {
			return fail("read trailer hash: %v", noEOF(err))
		}
		if _, err := sr.r.ReadByte(); err != io.EOF {
			return fail("data after the trailer")
		}
		sr.done = true
		return streamRecord{}, io.EOF
	case opPut:
	case opDelete:
		if sr.full {
			return fail("delete in a full snapshot")
		}
	default:
		return fail("unknown op 0x%02x", op)
	}
	kb, err := sr.r.ReadByte()
	if err != nil {
		return fail("read kind: %v", noEOF(err))
	}
	kind := RecordKind(kb)
	if !kind.known() {
		return fail("unknown record kind 0x%02x", kb)
	}
	klen, err := binary.ReadUvarint(sr.r)
	if err != nil || klen == 0 || klen > maxKeyLen {
		return fail("%s key length %d (err %v), want 1..%d", kind, klen, noEOF(err), maxKeyLen)
	}
	sr.buf = sr.buf[:0]
	sr.buf = append(sr.buf, make([]byte, klen)...)
	if _, err := io.ReadFull(sr.r, sr.buf); err != nil {
		return fail("read %s key: %v", kind, noEOF(err))
	}
	rec := streamRecord{op: op, kind: kind, key: sr.buf[:klen]}
	if op == opPut {
		vlen, err := binary.ReadUvarint(sr.r)
		if err != nil || vlen > maxValueLen {
			return fail("%s value length %d (err %v), want at most %d", kind, vlen, noEOF(err), maxValueLen)
		}
		sr.buf = append(sr.buf, make([]byte, vlen)...)
		rec.key = sr.buf[:klen]
		if _, err := io.ReadFull(sr.r, sr.buf[klen:]); err != nil {
			return fail("read %s value: %v", kind, noEOF(err))
		}
		rec.value = sr.buf[klen:]
		cv, err := canonicalValue(kind, rec.key, rec.value)
		if err != nil {
			return fail("%s %q: %v", kind, printableKey(rec.key), err)
		}
		if !bytes.Equal(cv, rec.value) {
			return fail("%s %q: value is not in canonical form", kind, printableKey(rec.key))
		}
	} else {
		// A delete's key must at least be well formed for its kind.
		if err := checkKey(kind, rec.key); err != nil {
			return fail("delete %s %q: %v", kind, printableKey(rec.key), err)
		}
	}
	sr.count++
	return rec, nil
}

// checkKey validates a record key alone.
func checkKey(kind RecordKind, k []byte) error {
	switch kind {
	case KindCredential:
		c, err := credential.Parse(k)
		if err != nil {
			return err
		}
		_, err = entryKey(c)
		return err
	case KindRevoked, KindLink:
		return checkCertKey(k)
	case KindPerson:
		return checkPerson(string(k))
	case KindSite:
		if string(k) != "site" {
			return fmt.Errorf("site key %q, want \"site\"", k)
		}
		return nil
	case KindHoliday:
		_, err := Holiday{Date: string(k)}.recordKey()
		return err
	}
	return checkID(kind.String(), string(k))
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: inside a stream, EOF is
// always a truncation.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
