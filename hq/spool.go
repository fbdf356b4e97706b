package hq

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/tobira-ac/tobira/sync/proto"
)

// Spool is where HQ keeps what it serves the devices besides their events:
// the snapshot transfers it published (manifest, signed envelope, payload),
// the latest one per device, the door modes it set per device (the
// commands in force) and the release offers in force per device and per
// group. Every replica of HQ answers a device's sync-get and need from it,
// so it must be shared by them: FileSpool (a directory, for one HQ) or
// PostgreSQL (hq/pgstore.Spool). Implementations are safe for concurrent
// use.
type Spool interface {
	// PutTransfer stores transfer m with its signed manifest envelope and
	// its payload (m.Size bytes read from payload), then makes it the
	// latest transfer of m's device, or of m's group.
	PutTransfer(ctx context.Context, m proto.Manifest, envelope []byte, payload io.Reader) error
	// Transfer returns the manifest of transfer; the error wraps
	// ErrNotSpooled when there is none.
	Transfer(ctx context.Context, transfer string) (proto.Manifest, error)
	// Chunk returns the bytes of chunk i of transfer m.
	Chunk(ctx context.Context, m proto.Manifest, i int) ([]byte, error)
	// Latest returns the transfer last published to site/device and its
	// signed envelope; the error wraps ErrNotSpooled when there is none.
	Latest(ctx context.Context, site, device string) (SpooledEnvelope[proto.Manifest], error)
	// LatestGroup is Latest for the transfers to a group of site.
	LatestGroup(ctx context.Context, site, group string) (SpooledEnvelope[proto.Manifest], error)
	// PutCommand records a door-mode command (set_mode, lockdown,
	// release) sent to its device: the commands in force change as
	// ModesInForce says. Other actions are ignored.
	PutCommand(ctx context.Context, c SpooledEnvelope[proto.Command]) error
	// Commands returns the commands in force for site/device, in the order
	// they were issued.
	Commands(ctx context.Context, site, device string) ([]SpooledEnvelope[proto.Command], error)
	// PutOffer records a release offer sent to a device or a group: it
	// replaces the one before it for the same device or group.
	PutOffer(ctx context.Context, o SpooledEnvelope[proto.ReleaseOffer]) error
	// Offers returns the offers recorded for site/device and for the
	// groups of site named.
	Offers(ctx context.Context, site, device string, groups []string) ([]SpooledEnvelope[proto.ReleaseOffer], error)
}

// SpooledEnvelope is a signed message HQ sent, with its decoded payload.
type SpooledEnvelope[T any] struct {
	// Value is the decoded payload.
	Value T `json:"value"`
	// Envelope is the signed envelope as sent.
	Envelope []byte `json:"envelope"`
}

// ErrNotSpooled means a spool holds no such transfer.
var ErrNotSpooled = errors.New("not in the spool")

// modeCommand reports whether c sets a door mode, and so stays in force
// until another one replaces it.
func modeCommand(c proto.Command) bool {
	switch c.Action {
	case proto.ActionSetMode, proto.ActionLockdown, proto.ActionRelease:
		return true
	}
	return false
}

// ModesInForce returns the commands in force for a device after c, given
// those in force before (oldest first): c is appended, and it replaces
// the commands it overrides. A command for every door (Door "") overrides
// all before it; one for a door overrides the earlier ones for that door.
// Re-applying the result in order gives every door the mode its last
// command set. A command that sets no mode leaves before as it is.
func ModesInForce(before []SpooledEnvelope[proto.Command], c SpooledEnvelope[proto.Command]) []SpooledEnvelope[proto.Command] {
	if !modeCommand(c.Value) {
		return before
	}
	out := slices.DeleteFunc(slices.Clone(before), func(o SpooledEnvelope[proto.Command]) bool {
		return c.Value.Door == "" || o.Value.Door == c.Value.Door || o.Value.ID == c.Value.ID
	})
	return append(out, c)
}

// offerInForce returns the newest offer of offers valid at now, false when
// none is.
func offerInForce(offers []SpooledEnvelope[proto.ReleaseOffer], now time.Time) (SpooledEnvelope[proto.ReleaseOffer], bool) {
	var best SpooledEnvelope[proto.ReleaseOffer]
	found := false
	for _, o := range offers {
		if now.Before(o.Value.Expires) && (!found || o.Value.Issued.After(best.Value.Issued)) {
			best, found = o, true
		}
	}
	return best, found
}

// spool returns c's Spool: SpoolStore, else a FileSpool in Spool, else nil.
func (c Config) spool() (Spool, error) {
	if c.SpoolStore != nil {
		return c.SpoolStore, nil
	}
	if c.Spool == "" {
		return nil, nil
	}
	return NewFileSpool(c.Spool)
}
