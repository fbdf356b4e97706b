package proto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/signed"
)

// KindSnapshot is the signed.Envelope kind of a snapshot Manifest.
const KindSnapshot = "snapshot"

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
	// MaxNeedRanges bounds the ranges in one need message.
	MaxNeedRanges = 256
)

// Manifest is the signed description of a snapshot transfer to one
// device, or to every device of a group (published once, on the group's
// topics: SnapshotGroupTopic, ChunkGroupTopic). Field names are part of
// the protocol.
type Manifest struct {
	// Transfer is the transfer's ID: 32 lower-case hex digits, fresh for
	// every publication.
	Transfer string `json:"transfer"`
	// Site and Device address the device.
	Site string `json:"site"`
	// Device is the addressed device; "" for a group transfer.
	Device string `json:"device,omitempty"`
	// Group is the addressed group of the site (SiteGroup: every device
	// of the site); "" for a transfer to one device. Exactly one of Device
	// and Group is set.
	Group string `json:"group,omitempty"`
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

// Validate reports whether m is well formed (not whether it fits the
// device that holds it). The error wraps ErrMalformed.
func (m Manifest) Validate() error {
	if b, err := hex.DecodeString(m.Transfer); err != nil || len(b) != 16 || hex.EncodeToString(b) != m.Transfer {
		return fmt.Errorf("%w: snapshot transfer id %q is not 32 lower-case hex digits", ErrMalformed, m.Transfer)
	}
	if err := CheckName(m.Site); err != nil {
		return fmt.Errorf("%w: snapshot %s: site: %w", ErrMalformed, m.Transfer, err)
	}
	if (m.Device == "") == (m.Group == "") {
		return fmt.Errorf("%w: snapshot %s: want exactly one of device %q and group %q", ErrMalformed, m.Transfer, m.Device, m.Group)
	}
	if err := CheckName(m.Device + m.Group); err != nil {
		return fmt.Errorf("%w: snapshot %s: device or group: %w", ErrMalformed, m.Transfer, err)
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

// ChunkLen returns the length of chunk i.
func (m Manifest) ChunkLen(i int) int {
	if i == m.Chunks-1 {
		return int(m.Size - int64(i)*int64(m.ChunkSize))
	}
	return m.ChunkSize
}

// SignManifest checks m and returns its signed envelope (HQ side).
func SignManifest(priv ed25519.PrivateKey, m Manifest) ([]byte, error) {
	return signJSON(priv, KindSnapshot, m)
}

// OpenManifest verifies a snapshot manifest envelope with v and decodes it
// (device side). It checks the manifest's form only: address and version
// are the receiver's business. A manifest that decodes but is malformed is
// returned with the error, so that the receiver's result can name its
// transfer. Errors wrap ErrMalformed or one of signed's errors.
func OpenManifest(v *signed.Verifier, envelope []byte) (Manifest, error) {
	return openJSON[Manifest](v, KindSnapshot, envelope, signed.MaxEnvelope)
}

// Need is the payload of a need message: the chunks of Transfer the device
// still lacks, as inclusive index ranges.
type Need struct {
	// Transfer is the transfer ID.
	Transfer string `json:"transfer"`
	// Missing holds up to MaxNeedRanges [first, last] ranges of chunk
	// indexes.
	Missing [][2]int `json:"missing"`
}

// EncodeChunk returns the payload of chunk index of transfer: "TBC1", the
// 16-byte transfer ID, the 4-byte big-endian index, then data.
func EncodeChunk(transfer string, index int, data []byte) ([]byte, error) {
	if index < 0 {
		return nil, fmt.Errorf("encode chunk %d of %s: index out of range", index, transfer)
	}
	return snapshotFrame.encode(transfer, uint64(index), data)
}

// DecodeChunk splits a chunk payload into its transfer ID, index and
// data. The error wraps ErrMalformed.
func DecodeChunk(payload []byte) (transfer string, index int, data []byte, err error) {
	transfer, pos, data, err := snapshotFrame.decode(payload)
	return transfer, int(pos), data, err
}

// DecodeNeed parses a need payload from topic. The error wraps
// ErrMalformed.
func DecodeNeed(topic string, payload []byte) (site, device string, n Need, err error) {
	site, device, err = parseDeviceTopic(topic, LeafNeed)
	if err != nil {
		return "", "", Need{}, err
	}
	if len(payload) > maxJSONPayload {
		return "", "", Need{}, fmt.Errorf("%w: need payload is %d bytes", ErrMalformed, len(payload))
	}
	if err := json.Unmarshal(payload, &n); err != nil {
		return "", "", Need{}, fmt.Errorf("%w: need payload: %w", ErrMalformed, err)
	}
	if len(n.Missing) == 0 || len(n.Missing) > MaxNeedRanges {
		return "", "", Need{}, fmt.Errorf("%w: need has %d ranges, want 1..%d", ErrMalformed, len(n.Missing), MaxNeedRanges)
	}
	for _, r := range n.Missing {
		if r[0] < 0 || r[1] < r[0] {
			return "", "", Need{}, fmt.Errorf("%w: need range %v", ErrMalformed, r)
		}
	}
	return site, device, n, nil
}
