package sync

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// CommandHandler carries out verified commands on the device: the
// controller wires doors and policy behind it. HandleCommand is called
// once per accepted command, after its ID has been recorded (so a crash
// may lose a command, never repeat one); its error becomes a "failed"
// result.
type CommandHandler interface {
	HandleCommand(ctx context.Context, c proto.Command) error
}

// CommandFunc adapts a function to CommandHandler.
type CommandFunc func(ctx context.Context, c proto.Command) error

// HandleCommand implements CommandHandler.
func (f CommandFunc) HandleCommand(ctx context.Context, c proto.Command) error { return f(ctx, c) }

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
	report func(ctx context.Context, r proto.Result) // publishes a result
}

// routes implements feature: HQ's signed commands, each answered with a
// Result.
func (ci *commandIntake) routes() []route {
	return []route{{topic: proto.CommandTopic(ci.site, ci.device), handle: func(ctx context.Context, _ string, payload []byte) {
		ci.report(ctx, ci.handle(ctx, payload))
	}}}
}

// connected implements feature: commands are not asked for; HQ resends
// what it still wants done.
func (ci *commandIntake) connected(context.Context) {}

// run implements feature: the intake has no loop.
func (ci *commandIntake) run(context.Context) {}

// notify implements feature.
func (ci *commandIntake) notify() {}

// handle verifies one command message and carries it out; the Result says
// what happened.
func (ci *commandIntake) handle(ctx context.Context, envelope []byte) proto.Result {
	now := ci.clk.Now().UTC()
	r := proto.Result{Kind: proto.KindCommand, Site: ci.site, Device: ci.device, Time: now}
	c, err := ci.accept(now, envelope)
	r.ID = c.ID
	if err != nil {
		r.Status, r.Error = proto.ResultRefused, err.Error()
		ci.log.Warn("refused command", "id", c.ID, "action", c.Action, "err", err)
		return r
	}
	ci.log.Info("carrying out command", "id", c.ID, "action", c.Action, "door", c.Door, "mode", c.Mode)
	if err := ci.h.HandleCommand(ctx, c); err != nil {
		r.Status, r.Error = proto.ResultFailed, err.Error()
		ci.log.Warn("command failed", "id", c.ID, "action", c.Action, "err", err)
		return r
	}
	r.Status = proto.ResultDone
	return r
}

// accept verifies envelope and records its ID. A command is returned,
// possibly partial, with the error so that the result can name its ID.
func (ci *commandIntake) accept(now time.Time, envelope []byte) (proto.Command, error) {
	c, err := proto.OpenCommand(ci.v, envelope)
	if err != nil {
		return c, err
	}
	if c.Site != ci.site || c.Device != ci.device {
		return c, fmt.Errorf("%w: command %s is for %s/%s, this is %s/%s", proto.ErrWrongDevice, c.ID, c.Site, c.Device, ci.site, ci.device)
	}
	if !now.Before(c.Expires) {
		return c, fmt.Errorf("%w: command %s expired at %v, now %v", proto.ErrExpired, c.ID, c.Expires, now)
	}
	if c.Expires.Sub(c.Issued) > proto.MaxCommandLifetime || c.Expires.Sub(now) > proto.MaxCommandLifetime {
		return c, fmt.Errorf("%w: command %s valid until %v, more than %v ahead", proto.ErrExpired, c.ID, c.Expires, proto.MaxCommandLifetime)
	}
	id, _ := hex.DecodeString(c.ID) // checked
	err = ci.ob.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		if b.Get(id) != nil {
			return fmt.Errorf("%w: command %s was received before", proto.ErrReplayed, c.ID)
		}
		// Forget IDs whose commands have expired for a day: a replay of
		// them is refused as expired anyway.
		cut := now.Add(-proto.MaxCommandLifetime).Unix()
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
