package proto

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

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

// KindCommand is the signed.Envelope kind of a Command.
const KindCommand = "command"

// MaxCommandLifetime bounds a command's validity: expires - issued, and
// expires - the device's now. It bounds how long the device must remember
// a nonce to refuse its replay.
const MaxCommandLifetime = 24 * time.Hour

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

// Validate reports whether c is well formed (not whether it is valid now
// or for the device that holds it). The error wraps ErrMalformed.
func (c Command) Validate() error {
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
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Expires.Sub(c.Issued) > MaxCommandLifetime {
		return nil, fmt.Errorf("%w: command %s lives %v, max %v", ErrExpired, c.ID, c.Expires.Sub(c.Issued), MaxCommandLifetime)
	}
	return signJSON(priv, KindCommand, c)
}

// OpenCommand verifies a command envelope with v and decodes it (device
// side). It checks the command's form only: address, expiry and replay are
// the receiver's business. A command that decodes but is malformed is
// returned with the error, so that the receiver's result can name its ID.
// Errors wrap ErrMalformed or one of signed's errors.
func OpenCommand(v *signed.Verifier, envelope []byte) (Command, error) {
	return openJSON[Command](v, KindCommand, envelope, signed.MaxEnvelope)
}
