package sync

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
)

// Command actions (docs/PROTOCOL.md).
const (
	// ActionUnlock unlocks Door once (one relay pulse).
	ActionUnlock = "unlock"
	// ActionSetMode sets Door's mode to Mode.
	ActionSetMode = "set_mode"
	// ActionLockdown locks Door, or every door when Door is empty, until
	// released.
	ActionLockdown = "lockdown"
	// ActionRelease ends a lockdown of Door, or of every door.
	ActionRelease = "release"
	// ActionResync asks the device to report its snapshot and status again
	// so that HQ can send what is missing.
	ActionResync = "resync"
	// ActionForgiveAPB clears the anti-passback state of Credential (at
	// Door, or everywhere when Door is empty).
	ActionForgiveAPB = "forgive_apb"
)

// Signed envelope kinds.
const (
	// KindCommand is the signed.Envelope kind of a Command.
	KindCommand = "command"
	// KindSnapshot is the signed.Envelope kind of a snapshot Manifest.
	KindSnapshot = "snapshot"
)

// MaxCommandLifetime bounds a command's validity: expires - issued, and
// expires - the device's now. It bounds how long the device must remember
// a nonce to refuse its replay.
const MaxCommandLifetime = 24 * time.Hour

// Result statuses.
const (
	// ResultDone means the command was carried out, or the snapshot
	// applied.
	ResultDone = "done"
	// ResultRefused means the message was not accepted: forged, expired,
	// replayed, addressed elsewhere, malformed, out of order. Nothing was
	// changed.
	ResultRefused = "refused"
	// ResultFailed means the message was accepted but carrying it out
	// failed (the handler or the snapshot store returned an error).
	ResultFailed = "failed"
)

// Errors of command and snapshot intake, reported in Result.Error and
// wrapped in returned errors.
var (
	// ErrExpired means a command's expiry has passed, or its lifetime
	// exceeds MaxCommandLifetime.
	ErrExpired = errors.New("expired")
	// ErrReplayed means a command's ID was seen before, or a snapshot's
	// version is not newer than the one in force.
	ErrReplayed = errors.New("replayed")
	// ErrWrongDevice means a signed message is addressed to another
	// device.
	ErrWrongDevice = errors.New("addressed to another device")
	// ErrOutOfOrder means a delta snapshot does not start at the version
	// in force.
	ErrOutOfOrder = errors.New("out of order")
	// ErrMismatch means a snapshot's bytes do not match the size or
	// SHA-256 of its signed manifest (truncated or altered).
	ErrMismatch = errors.New("content does not match the signed manifest")
)

// Command is the signed payload of a command message from HQ to one
// device. Field names are part of the protocol.
type Command struct {
	// ID is the command's nonce: 32 lower-case hex digits (16 random
	// bytes), never reused. The device refuses an ID it has seen.
	ID string `json:"id"`
	// Site and Device address the one device that may carry it out.
	Site string `json:"site"`
	// Device is the addressed device's name.
	Device string `json:"device"`
	// Issued is when HQ made the command.
	Issued time.Time `json:"issued"`
	// Expires is when the command stops being valid; at most
	// MaxCommandLifetime after Issued.
	Expires time.Time `json:"expires"`
	// Action is one of the Action constants.
	Action string `json:"action"`
	// Door names the door (required for unlock and set_mode).
	Door string `json:"door,omitempty"`
	// Mode is the door mode for set_mode.
	Mode string `json:"mode,omitempty"`
	// Credential is the hex credential key for forgive_apb.
	Credential string `json:"credential,omitempty"`
}

// check reports whether c is well formed (not whether it is valid now).
func (c Command) check() error {
	if b, err := hex.DecodeString(c.ID); err != nil || len(b) != 16 || hex.EncodeToString(b) != c.ID {
		return fmt.Errorf("%w: command id %q is not 32 lower-case hex digits", ErrMalformed, c.ID)
	}
	if err := CheckName(c.Site); err != nil {
		return fmt.Errorf("%w: command %s: site: %w", ErrMalformed, c.ID, err)
	}
	if err := CheckName(c.Device); err != nil {
		return fmt.Errorf("%w: command %s: device: %w", ErrMalformed, c.ID, err)
	}
	if c.Issued.IsZero() || c.Expires.IsZero() || !c.Expires.After(c.Issued) {
		return fmt.Errorf("%w: command %s: issued %v, expires %v: want both, expiry after issue", ErrMalformed, c.ID, c.Issued, c.Expires)
	}
	if len(c.Door) > MaxDoorLen || len(c.Mode) > 32 || len(c.Credential) > MaxCredentialLen {
		return fmt.Errorf("%w: command %s: door, mode or credential too long", ErrMalformed, c.ID)
	}
	need := func(field, v string) error {
		if v == "" {
			return fmt.Errorf("%w: command %s: %s needs %s", ErrMalformed, c.ID, c.Action, field)
		}
		return nil
	}
	switch c.Action {
	case ActionUnlock:
		return need("door", c.Door)
	case ActionSetMode:
		if err := need("door", c.Door); err != nil {
			return err
		}
		return need("mode", c.Mode)
	case ActionForgiveAPB:
		return need("credential", c.Credential)
	case ActionLockdown, ActionRelease, ActionResync:
		return nil
	default:
		return fmt.Errorf("%w: command %s: unknown action %q", ErrMalformed, c.ID, c.Action)
	}
}

// NewCommandID returns a fresh random command ID.
func NewCommandID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// SignCommand checks c and returns its signed envelope (HQ side).
func SignCommand(priv ed25519.PrivateKey, c Command) ([]byte, error) {
	c.Issued, c.Expires = c.Issued.UTC(), c.Expires.UTC()
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.Expires.Sub(c.Issued) > MaxCommandLifetime {
		return nil, fmt.Errorf("%w: command %s lives %v, max %v", ErrExpired, c.ID, c.Expires.Sub(c.Issued), MaxCommandLifetime)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", c.ID, err)
	}
	return signed.Sign(KindCommand, b, priv)
}

// CommandHandler carries out verified commands on the device: the
// controller wires doors and policy behind it. HandleCommand is called
// once per accepted command, after its ID has been recorded (so a crash
// may lose a command, never repeat one); its error becomes a "failed"
// result.
type CommandHandler interface {
	HandleCommand(ctx context.Context, c Command) error
}

// CommandFunc adapts a function to CommandHandler.
type CommandFunc func(ctx context.Context, c Command) error

// HandleCommand implements CommandHandler.
func (f CommandFunc) HandleCommand(ctx context.Context, c Command) error { return f(ctx, c) }

// Result is what a device reports on its result topic for every command
// and every snapshot it receives. Field names are part of the protocol.
type Result struct {
	// ID is the command's ID or the snapshot's transfer ID; empty when
	// the message was too broken to tell.
	ID string `json:"id"`
	// Kind is KindCommand or KindSnapshot.
	Kind string `json:"kind"`
	// Site is the reporting device's site.
	Site string `json:"site"`
	// Device is the reporting device.
	Device string `json:"device"`
	// Status is ResultDone, ResultRefused or ResultFailed.
	Status string `json:"status"`
	// Error says why, for refused and failed.
	Error string `json:"error,omitempty"`
	// Version is the snapshot version in force after a snapshot result.
	Version uint64 `json:"version,omitempty"`
	// Time is when the device decided, by its clock.
	Time time.Time `json:"time"`
}

// CommandTopic returns the topic HQ sends a device's commands to.
func CommandTopic(site, device string) string {
	return deviceTopic(site, device, "cmd")
}

// resultLeaf is the last level of result topics.
const resultLeaf = "result"

// ResultTopic returns the topic a device reports results on.
func ResultTopic(site, device string) string {
	return deviceTopic(site, device, resultLeaf)
}

// ResultSubscription is the filter HQ subscribes to for every device's
// results.
const ResultSubscription = TopicPrefix + "/+/+/" + resultLeaf

// DecodeResult parses a result payload from topic. The error wraps
// ErrMalformed.
func DecodeResult(topic string, payload []byte) (Result, error) {
	site, device, err := parseDeviceTopic(topic, resultLeaf)
	if err != nil {
		return Result{}, err
	}
	if len(payload) > maxStatusPayload {
		return Result{}, fmt.Errorf("%w: result payload is %d bytes", ErrMalformed, len(payload))
	}
	var r Result
	if err := json.Unmarshal(payload, &r); err != nil {
		return Result{}, fmt.Errorf("%w: result payload: %w", ErrMalformed, err)
	}
	if r.Site != site || r.Device != device {
		return Result{}, fmt.Errorf("%w: result of %s/%s on topic %q", ErrMalformed, r.Site, r.Device, topic)
	}
	switch r.Status {
	case ResultDone, ResultRefused, ResultFailed:
	default:
		return Result{}, fmt.Errorf("%w: result status %q", ErrMalformed, r.Status)
	}
	return r, nil
}

// bucketNonces holds, in the outbox file, the IDs of accepted commands:
// 16-byte ID -> 8-byte big-endian expiry (Unix seconds).
var bucketNonces = []byte("nonces")

// commandIntake verifies commands and hands them to the handler.
type commandIntake struct {
	v      *signed.Verifier
	h      CommandHandler
	ob     *Outbox
	clk    clock.Clock
	log    *slog.Logger
	site   string
	device string
}

// handle verifies one command message and carries it out; the Result says
// what happened.
func (ci *commandIntake) handle(ctx context.Context, envelope []byte) Result {
	now := ci.clk.Now().UTC()
	r := Result{Kind: KindCommand, Site: ci.site, Device: ci.device, Time: now}
	c, err := ci.accept(now, envelope)
	r.ID = c.ID
	if err != nil {
		r.Status, r.Error = ResultRefused, err.Error()
		ci.log.Warn("refused command", "id", c.ID, "action", c.Action, "err", err)
		return r
	}
	ci.log.Info("carrying out command", "id", c.ID, "action", c.Action, "door", c.Door, "mode", c.Mode)
	if err := ci.h.HandleCommand(ctx, c); err != nil {
		r.Status, r.Error = ResultFailed, err.Error()
		ci.log.Warn("command failed", "id", c.ID, "action", c.Action, "err", err)
		return r
	}
	r.Status = ResultDone
	return r
}

// accept verifies envelope and records its ID. A command is returned,
// possibly partial, with the error so that the result can name its ID.
func (ci *commandIntake) accept(now time.Time, envelope []byte) (Command, error) {
	payload, _, err := ci.v.Open(KindCommand, envelope)
	if err != nil {
		return Command{}, fmt.Errorf("command envelope: %w", err)
	}
	var c Command
	if err := json.Unmarshal(payload, &c); err != nil {
		return Command{}, fmt.Errorf("%w: command payload: %w", ErrMalformed, err)
	}
	if err := c.check(); err != nil {
		return c, err
	}
	if c.Site != ci.site || c.Device != ci.device {
		return c, fmt.Errorf("%w: command %s is for %s/%s, this is %s/%s", ErrWrongDevice, c.ID, c.Site, c.Device, ci.site, ci.device)
	}
	if !now.Before(c.Expires) {
		return c, fmt.Errorf("%w: command %s expired at %v, now %v", ErrExpired, c.ID, c.Expires, now)
	}
	if c.Expires.Sub(c.Issued) > MaxCommandLifetime || c.Expires.Sub(now) > MaxCommandLifetime {
		return c, fmt.Errorf("%w: command %s valid until %v, more than %v ahead", ErrExpired, c.ID, c.Expires, MaxCommandLifetime)
	}
	id, _ := hex.DecodeString(c.ID) // checked
	err = ci.ob.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		if b.Get(id) != nil {
			return fmt.Errorf("%w: command %s was received before", ErrReplayed, c.ID)
		}
		// Forget IDs whose commands have expired for a day: a replay of
		// them is refused as expired anyway.
		cut := now.Add(-MaxCommandLifetime).Unix()
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) < cut {
				if err := cur.Delete(); err != nil {
					return fmt.Errorf("forget old command id %x: %w", k, err)
				}
				k, v = cur.Seek(k)
				continue
			}
			k, v = cur.Next()
		}
		return b.Put(id, binary.BigEndian.AppendUint64(nil, uint64(c.Expires.Unix())))
	})
	if err != nil {
		return c, fmt.Errorf("record command %s: %w", c.ID, err)
	}
	return c, nil
}
