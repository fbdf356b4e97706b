package controller

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

// CommandDoor is what an HQ command needs of a door (door.Door).
type CommandDoor interface {
	AdminGrant(ctx context.Context) error
	SetMode(ctx context.Context, m door.Mode, cause string) error
}

// Forgiver clears a person's anti-passback state and finds a credential's
// person (policy.Store).
type Forgiver interface {
	Forgive(ctx context.Context, person string) error
	Decide(c credential.Credential) policy.Decision
}

// ModeStore keeps the door modes HQ set across crashes and restarts
// (sync.Outbox).
type ModeStore interface {
	// SaveMode records durably (fsynced) that command commandID set door's
	// mode.
	SaveMode(door, mode, commandID string) error
	// SavedModes returns the saved modes by door.
	SavedModes() (map[string]tsync.SavedMode, error)
}

// Commands carries out HQ's commands, already verified by sync (signature,
// addressee, expiry, nonce). It implements sync.CommandHandler; an error
// becomes a "failed" result message to HQ.
type Commands struct {
	// Doors are the controller's doors by name.
	Doors map[string]CommandDoor
	// Modes, if set, keeps every mode HQ sets (set_mode, lockdown,
	// release): saved before the door changes and before the command is
	// reported done, so a crash never loses a lockdown (RestoreModes).
	Modes ModeStore
	// Policy forgives anti-passback.
	Policy Forgiver
	// Resync, if set, is called for a resync command (re-publish the
	// status, so HQ sees the snapshot version and hash and resends).
	Resync func()
	// Log receives one line per command.
	Log *slog.Logger
}

// ErrUnknownDoor means a command names a door this controller does not have.
var ErrUnknownDoor = errors.New("no such door on this controller")

// causeHQ is the cause recorded in door changes made by HQ commands.
const causeHQ = "hq_command"

// HandleCommand carries out one command.
func (c *Commands) HandleCommand(ctx context.Context, cmd proto.Command) error {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("HQ command", "id", cmd.ID, "action", cmd.Action, "door", cmd.Door, "mode", cmd.Mode)
	switch cmd.Action {
	case proto.ActionUnlock:
		d, err := c.door(cmd.Door)
		if err != nil {
			return err
		}
		return d.AdminGrant(ctx)
	case proto.ActionSetMode:
		d, err := c.door(cmd.Door)
		if err != nil {
			return err
		}
		m, err := door.ParseMode(cmd.Mode)
		if err != nil {
			return fmt.Errorf("command %s: %w", cmd.ID, err)
		}
		return c.setMode(ctx, cmd.ID, cmd.Door, d, m)
	case proto.ActionLockdown:
		return c.setModes(ctx, cmd.ID, cmd.Door, door.ModeLockedDown)
	case proto.ActionRelease:
		return c.setModes(ctx, cmd.ID, cmd.Door, door.ModeNormal)
	case proto.ActionResync:
		if c.Resync != nil {
			c.Resync()
		}
		return nil
	case proto.ActionForgiveAPB:
		key, err := hex.DecodeString(cmd.Credential)
		if err != nil {
			return fmt.Errorf("command %s: credential %q is not hex", cmd.ID, cmd.Credential)
		}
		cred, err := credential.Parse(key)
		if err != nil {
			return fmt.Errorf("command %s: %w", cmd.ID, err)
		}
		dec := c.Policy.Decide(cred)
		if dec.Person == "" {
			return fmt.Errorf("command %s: credential %s is not enrolled here (%s)", cmd.ID, cred, dec.Reason)
		}
		return c.Policy.Forgive(ctx, dec.Person)
	default:
		return fmt.Errorf("command %s: unknown action %q", cmd.ID, cmd.Action)
	}
}

func (c *Commands) door(name string) (CommandDoor, error) {
	d, ok := c.Doors[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDoor, name)
	}
	return d, nil
}

// setModes sets the mode of one door, or of every door when name is "".
// Every door is tried; the errors are joined.
func (c *Commands) setModes(ctx context.Context, id, name string, m door.Mode) error {
	if name != "" {
		d, err := c.door(name)
		if err != nil {
			return err
		}
		return c.setMode(ctx, id, name, d, m)
	}
	var errs []error
	for n, d := range c.Doors {
		if err := c.setMode(ctx, id, n, d, m); err != nil {
			errs = append(errs, fmt.Errorf("door %q: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// setMode saves m as door name's mode set by command id (when Modes is
// set), then sets it.
func (c *Commands) setMode(ctx context.Context, id, name string, d CommandDoor, m door.Mode) error {
	if c.Modes != nil {
		if err := c.Modes.SaveMode(name, string(m), id); err != nil {
			return fmt.Errorf("command %s: %w", id, err)
		}
	}
	return d.SetMode(ctx, m, causeHQ)
}

// causeHQRestored is the cause recorded when a mode HQ set is applied again
// at start.
const causeHQRestored = "hq_command_restored"

// RestoreModes applies the modes HQ set before the controller last stopped
// (or crashed) to doors, before any card is read. A saved mode of a door
// no longer configured is logged and skipped; a door that refuses its mode
// is an error.
func RestoreModes(ctx context.Context, doors map[string]CommandDoor, modes ModeStore, log *slog.Logger) error {
	saved, err := modes.SavedModes()
	if err != nil {
		return err
	}
	for name, sm := range saved {
		d, ok := doors[name]
		if !ok {
			log.Warn("saved HQ mode of a door not configured; ignored", "door", name, "mode", sm.Mode, "command", sm.Command)
			continue
		}
		m, err := door.ParseMode(sm.Mode)
		if err != nil {
			return fmt.Errorf("restore mode of door %q: %w", name, err)
		}
		if err := d.SetMode(ctx, m, causeHQRestored); err != nil {
			return fmt.Errorf("restore mode %s of door %q: %w", m, name, err)
		}
		log.Info("door mode set by HQ restored", "door", name, "mode", m, "command", sm.Command)
	}
	return nil
}
