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

// Commands carries out HQ's commands, already verified by sync (signature,
// addressee, expiry, nonce). It implements sync.CommandHandler; an error
// becomes a "failed" result message to HQ.
type Commands struct {
	// Doors are the controller's doors by name.
	Doors map[string]CommandDoor
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
		return d.SetMode(ctx, m, causeHQ)
	case proto.ActionLockdown:
		return c.setModes(ctx, cmd.Door, door.ModeLockedDown)
	case proto.ActionRelease:
		return c.setModes(ctx, cmd.Door, door.ModeNormal)
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
func (c *Commands) setModes(ctx context.Context, name string, m door.Mode) error {
	if name != "" {
		d, err := c.door(name)
		if err != nil {
			return err
		}
		return d.SetMode(ctx, m, causeHQ)
	}
	var errs []error
	for n, d := range c.Doors {
		if err := d.SetMode(ctx, m, causeHQ); err != nil {
			errs = append(errs, fmt.Errorf("door %q: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
