package proto

// Firmware releases over MQTT: the wire format (offers, chunk requests,
// chunks, reports) shared by the edge's release agent (sync.ReleaseAgent)
// and HQ's release server (hq.ReleaseServer). docs/PROTOCOL.md, "Firmware
// releases".

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/signed"
)

// KindRelease is the signed.Envelope kind of a ReleaseOffer.
const KindRelease = "release"

// Release transfer limits and defaults.
const (
	// MaxReleaseOfferLifetime bounds an offer's validity (expires -
	// issued): long enough to wait for a maintenance window, short enough
	// that an old offer cannot be replayed forever.
	MaxReleaseOfferLifetime = 30 * 24 * time.Hour
	// DefaultReleaseOfferLifetime is the lifetime HQ gives an offer
	// unless told otherwise.
	DefaultReleaseOfferLifetime = 7 * 24 * time.Hour
	// DefaultReleaseChunkSize is the chunk size of an offer unless HQ is
	// told otherwise: small enough that one chunk never holds up the
	// device's other traffic for long.
	DefaultReleaseChunkSize = 64 << 10
	// maxReleasePayload bounds the JSON messages of the release protocol
	// (get, report, and an offer apart from its manifest).
	maxReleasePayload = 64 << 10
	// maxOfferPayload bounds an offer: the JSON around the manifest and
	// the manifest.
	maxOfferPayload = maxReleasePayload + firmware.MaxEnvelopeSize
)

// ReleaseOffer is the signed payload (kind KindRelease, signed by an HQ key
// the device pins) that offers a release to one device or to a group. It
// carries the release manifest envelope, which is signed separately by the
// offline release key: HQ decides who installs what and when, the release
// key decides what may be installed at all. Field names are part of the
// protocol.
type ReleaseOffer struct {
	// ID is the offer's nonce: 32 lower-case hex digits, fresh for every
	// publication. Results and reports name it.
	ID string `json:"id"`
	// Site is the addressed site.
	Site string `json:"site"`
	// Device is the addressed device; empty for a group offer.
	Device string `json:"device,omitempty"`
	// Group is the addressed group; empty for a device offer.
	Group string `json:"group,omitempty"`
	// Issued is when HQ made the offer. A device refuses an offer issued
	// before the last one it accepted (replay).
	Issued time.Time `json:"issued"`
	// Expires is when the offer stops being valid; at most
	// MaxReleaseOfferLifetime after Issued.
	Expires time.Time `json:"expires"`
	// ChunkSize is the largest piece a device may ask for at once.
	ChunkSize int `json:"chunk_size"`
	// Manifest is the release's firmware envelope (base64 in JSON).
	Manifest []byte `json:"manifest"`
}

// Validate reports whether o is well formed (not whether it is valid now
// or for the device that holds it). Errors wrap ErrMalformed.
func (o ReleaseOffer) Validate() error {
	if b, err := hex.DecodeString(o.ID); err != nil || len(b) != 16 || hex.EncodeToString(b) != o.ID {
		return fmt.Errorf("%w: release offer id %q is not 32 lower-case hex digits", ErrMalformed, o.ID)
	}
	if err := CheckName(o.Site); err != nil {
		return fmt.Errorf("%w: release offer %s: site: %w", ErrMalformed, o.ID, err)
	}
	switch {
	case (o.Device == "") == (o.Group == ""):
		return fmt.Errorf("%w: release offer %s: want exactly one of device %q and group %q", ErrMalformed, o.ID, o.Device, o.Group)
	case o.Device != "" && CheckName(o.Device) != nil:
		return fmt.Errorf("%w: release offer %s: device: %w", ErrMalformed, o.ID, CheckName(o.Device))
	case o.Group != "" && CheckName(o.Group) != nil:
		return fmt.Errorf("%w: release offer %s: group: %w", ErrMalformed, o.ID, CheckName(o.Group))
	case o.Issued.IsZero() || !o.Expires.After(o.Issued):
		return fmt.Errorf("%w: release offer %s: issued %v, expires %v: want both, expiry after issue", ErrMalformed, o.ID, o.Issued, o.Expires)
	case o.Expires.Sub(o.Issued) > MaxReleaseOfferLifetime:
		return fmt.Errorf("%w: release offer %s lives %v, max %v", ErrMalformed, o.ID, o.Expires.Sub(o.Issued), MaxReleaseOfferLifetime)
	case o.ChunkSize < 1 || o.ChunkSize > MaxChunkSize:
		return fmt.Errorf("%w: release offer %s: chunk size %d, want 1..%d", ErrMalformed, o.ID, o.ChunkSize, MaxChunkSize)
	case len(o.Manifest) == 0 || len(o.Manifest) > firmware.MaxEnvelopeSize:
		return fmt.Errorf("%w: release offer %s: manifest of %d bytes, want 1..%d", ErrMalformed, o.ID, len(o.Manifest), firmware.MaxEnvelopeSize)
	}
	return nil
}

// SignReleaseOffer checks o and returns its signed envelope (HQ side).
func SignReleaseOffer(priv ed25519.PrivateKey, o ReleaseOffer) ([]byte, error) {
	o.Issued, o.Expires = o.Issued.UTC(), o.Expires.UTC()
	return signJSON(priv, KindRelease, o)
}

// OpenReleaseOffer verifies a release offer envelope with v and decodes
// it. It checks the offer's form only: address, expiry and replay are the
// receiver's business. Errors wrap ErrMalformed or one of signed's errors.
func OpenReleaseOffer(v *signed.Verifier, envelope []byte) (ReleaseOffer, error) {
	return openJSON[ReleaseOffer](v, KindRelease, envelope, maxOfferPayload)
}

// parseReleaseOffer decodes and checks an offer payload.
func parseReleaseOffer(payload []byte) (ReleaseOffer, error) {
	return decodeJSON[ReleaseOffer]("release offer", payload, maxOfferPayload)
}

// ReleaseGet is the payload of a device's request for a piece of a
// release binary: Length bytes from Offset of the binary whose SHA-256 the
// manifest names. Field names are part of the protocol.
type ReleaseGet struct {
	// ID is the offer the request belongs to (informative, for logs).
	ID string `json:"id"`
	// SHA256 is the hex SHA-256 of the binary, as in the manifest.
	SHA256 string `json:"sha256"`
	// Offset is the first byte wanted.
	Offset int64 `json:"offset"`
	// Length is how many bytes are wanted, 1..MaxChunkSize.
	Length int `json:"length"`
}

// Validate reports whether g is well formed. Errors wrap ErrMalformed.
func (g ReleaseGet) Validate() error {
	if b, err := hex.DecodeString(g.SHA256); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != g.SHA256 {
		return fmt.Errorf("%w: release get: sha256 %q is not 64 lower-case hex digits", ErrMalformed, g.SHA256)
	}
	if g.Offset < 0 || g.Offset >= firmware.MaxReleaseSize || g.Length < 1 || g.Length > MaxChunkSize {
		return fmt.Errorf("%w: release get of %s: offset %d length %d out of range", ErrMalformed, g.SHA256, g.Offset, g.Length)
	}
	return nil
}

// DecodeReleaseGet parses a release request from topic. The error wraps
// ErrMalformed.
func DecodeReleaseGet(topic string, payload []byte) (site, device string, g ReleaseGet, err error) {
	site, device, err = parseDeviceTopic(topic, LeafReleaseGet)
	if err != nil {
		return "", "", ReleaseGet{}, err
	}
	if len(payload) > maxReleasePayload {
		return "", "", ReleaseGet{}, fmt.Errorf("%w: release get payload is %d bytes", ErrMalformed, len(payload))
	}
	if err := json.Unmarshal(payload, &g); err != nil {
		return "", "", ReleaseGet{}, fmt.Errorf("%w: release get payload: %w", ErrMalformed, err)
	}
	if err := g.Validate(); err != nil {
		return "", "", ReleaseGet{}, err
	}
	return site, device, g, nil
}

// EncodeReleaseChunk returns the payload of a release chunk: "TBF1", the
// 32-byte SHA-256 of the binary, the 8-byte big-endian offset, then data.
func EncodeReleaseChunk(sha string, offset int64, data []byte) ([]byte, error) {
	if offset < 0 {
		return nil, fmt.Errorf("encode release chunk of %s: offset %d out of range", sha, offset)
	}
	return releaseFrame.encode(sha, uint64(offset), data)
}

// DecodeReleaseChunk splits a release chunk payload. The error wraps
// ErrMalformed.
func DecodeReleaseChunk(payload []byte) (sha string, offset int64, data []byte, err error) {
	sha, off, data, err := releaseFrame.decode(payload)
	if err != nil {
		return "", 0, nil, err
	}
	if off >= firmware.MaxReleaseSize {
		return "", 0, nil, fmt.Errorf("%w: release chunk offset %d", ErrMalformed, off)
	}
	return sha, int64(off), data, nil
}

// Offer states in a ReleaseReport.
const (
	// OfferDownloading: the offer was accepted and the binary is being
	// fetched.
	OfferDownloading = "downloading"
	// OfferWaiting: the binary is staged; the switch waits for the
	// controller to be idle or for the maintenance window.
	OfferWaiting = "waiting"
	// OfferInstalled: the release was activated; the device restarts into
	// it and its health gate decides (see ReleaseReport.Firmware.Last).
	OfferInstalled = "installed"
	// OfferRefused: the offer or its release was refused; Reason says why.
	OfferRefused = "refused"
	// OfferFailed: the offer was accepted but the download or the switch
	// failed; the device tries again while the offer is valid.
	OfferFailed = "failed"
)

// OfferOutcome is what became of the last release offer a device handled.
type OfferOutcome struct {
	// ID is the offer's ID ("" when the offer was too broken to tell).
	ID string `json:"id"`
	// Version is the offered release's version, when known.
	Version string `json:"version,omitempty"`
	// State is one of the Offer* constants.
	State string `json:"state"`
	// Reason is a short code: a firmware.Refused* code, or "signature",
	// "wrong_device", "offer_expired", "replayed" for the offer itself.
	Reason string `json:"reason,omitempty"`
	// Error is the full error text.
	Error string `json:"error,omitempty"`
	// Time is when the device decided, by its clock.
	Time time.Time `json:"time"`
}

// Reasons of an offer refused before its release was looked at.
const (
	// OfferReasonSignature: the offer envelope is malformed or not signed
	// by a pinned HQ key.
	OfferReasonSignature = "signature"
	// OfferReasonWrongDevice: addressed to another device, site or group.
	OfferReasonWrongDevice = "wrong_device"
	// OfferReasonExpired: the offer's expiry has passed.
	OfferReasonExpired = "offer_expired"
	// OfferReasonReplayed: issued before the last offer the device
	// accepted.
	OfferReasonReplayed = "replayed"
)

// ReleaseReport is the payload of a device's retained release report: its
// release slots and trial result (firmware.Status) and the outcome of the
// last offer. HQ's rollout view is made of these. Names versions only.
type ReleaseReport struct {
	// Site is the reporting device's site.
	Site string `json:"site"`
	// Device is the reporting device.
	Device string `json:"device"`
	// Time is when the device made the report, by its clock.
	Time time.Time `json:"time"`
	// Firmware is the state of the device's update root.
	Firmware firmware.Status `json:"firmware"`
	// Offer is the outcome of the last offer handled, if any.
	Offer *OfferOutcome `json:"offer,omitempty"`
}

// DecodeReleaseReport parses a release report from topic and checks that
// its site and device match the topic. The error wraps ErrMalformed.
func DecodeReleaseReport(topic string, payload []byte) (ReleaseReport, error) {
	site, device, err := parseDeviceTopic(topic, LeafReleaseReport)
	if err != nil {
		return ReleaseReport{}, err
	}
	if len(payload) > maxReleasePayload {
		return ReleaseReport{}, fmt.Errorf("%w: release report is %d bytes", ErrMalformed, len(payload))
	}
	var r ReleaseReport
	if err := json.Unmarshal(payload, &r); err != nil {
		return ReleaseReport{}, fmt.Errorf("%w: release report: %w", ErrMalformed, err)
	}
	if r.Site != site || r.Device != device {
		return ReleaseReport{}, fmt.Errorf("%w: release report of %s/%s on topic %q", ErrMalformed, r.Site, r.Device, topic)
	}
	return r, nil
}
