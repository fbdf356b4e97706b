package hq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/tobira-ac/tobira/sync/proto"
)

// ErrSpoolDiverged means the spool CopySpool copies into holds, for a
// device or a group, something the copied spool does not: HQ has
// published into it already, and copying would undo that.
var ErrSpoolDiverged = errors.New("the destination spool holds what the copied spool does not")

// SpoolCopy counts what CopySpool copied: each figure is what the source
// holds, and New... how much of it the destination lacked.
type SpoolCopy struct {
	// Transfers are the snapshot transfers (manifest, envelope, payload).
	Transfers, NewTransfers int
	// Latest are the devices and groups that have a latest transfer.
	Latest int
	// Commands are the devices that have commands in force.
	Commands, NewCommands int
	// Offers are the release offers in force per device and per group.
	Offers, NewOffers int
}

// CopySpool copies everything src holds into dst: every transfer, each
// device's and group's latest transfer (the same after the copy as
// before), the commands in force per device (dst's Commands returns them
// as src's does) and the release offers. Running it again copies nothing;
// it resumes a copy that stopped half-way.
//
// It reads and checks the whole of src before it writes anything, and a
// file it cannot read or parse, a payload whose length or SHA-256 is not
// its manifest's, or a transfer that never became its device's latest (a
// publication interrupted) stops it with an error naming the file. It
// does not skip a bad transfer: that could be the one a device is served,
// and the copy would then serve it an older snapshot (a revoked credential
// valid again) or none. Fix or remove the file (a transfer that is no
// device's latest may go: its three files) and run it again. Where dst
// holds for a device or group what src does not (HQ published into it
// already), it stops with ErrSpoolDiverged before writing anything.
func CopySpool(ctx context.Context, src *FileSpool, dst Spool) (SpoolCopy, error) {
	c, err := src.contents()
	if err != nil {
		return SpoolCopy{}, err
	}
	if err := c.check(ctx, dst, false); err != nil {
		return SpoolCopy{}, err
	}
	n := SpoolCopy{Transfers: len(c.transfers), Latest: len(c.latest), Commands: len(c.commands), Offers: len(c.offers)}
	if n.NewTransfers, err = c.copyTransfers(ctx, src, dst); err != nil {
		return n, err
	}
	if n.NewCommands, err = c.copyCommands(ctx, dst); err != nil {
		return n, err
	}
	if n.NewOffers, err = c.copyOffers(ctx, dst); err != nil {
		return n, err
	}
	return n, c.check(ctx, dst, true)
}

// check compares dst with c, device by device and group by group. Before
// the copy (done false) dst may lack any of it or hold the start of it;
// after (done true) it must answer as c does. A difference is an error
// wrapping ErrSpoolDiverged.
func (c spoolContents) check(ctx context.Context, dst Spool, done bool) error {
	if err := c.checkLatest(ctx, dst, done); err != nil {
		return err
	}
	if err := c.checkCommands(ctx, dst, done); err != nil {
		return err
	}
	return c.checkOffers(ctx, dst, done)
}

// checkLatest compares the latest transfers (see check): before the copy,
// dst's may be none or any transfer of c (a copy that stopped half-way).
func (c spoolContents) checkLatest(ctx context.Context, dst Spool, done bool) error {
	for _, l := range c.latest {
		got, err := latestOf(ctx, dst, l.target)
		switch {
		case errors.Is(err, ErrNotSpooled) && !done:
		case err != nil && !errors.Is(err, ErrNotSpooled):
			return err
		case err != nil:
			return fmt.Errorf("%w: %s has no latest transfer after the copy, want %s", ErrSpoolDiverged, l.target, l.transfer)
		case done && got.Value.Transfer != l.transfer:
			return fmt.Errorf("%w: the latest transfer to %s is %s after the copy, want %s", ErrSpoolDiverged, l.target, got.Value.Transfer, l.transfer)
		case !c.held[got.Value.Transfer]:
			return fmt.Errorf("%w: its latest transfer to %s is %s, which the copied spool does not hold (HQ published into it already)",
				ErrSpoolDiverged, l.target, got.Value.Transfer)
		}
	}
	return nil
}

// checkCommands compares the commands in force (see check): before the
// copy, dst's may be the first ones of c's.
func (c spoolContents) checkCommands(ctx context.Context, dst Spool, done bool) error {
	for _, cs := range c.commands {
		got, err := dst.Commands(ctx, cs.site, cs.device)
		if err != nil {
			return err
		}
		want := cs.commands
		if !done {
			want = want[:min(len(got), len(want))]
		}
		if !slices.EqualFunc(got, want, sameJSON) {
			return fmt.Errorf("%w: %d commands in force for %s/%s, not the %d of the copied spool", ErrSpoolDiverged, len(got), cs.site, cs.device, len(cs.commands))
		}
	}
	return nil
}

// checkOffers compares the release offers (see check): before the copy,
// dst may lack them.
func (c spoolContents) checkOffers(ctx context.Context, dst Spool, done bool) error {
	for _, o := range c.offers {
		got, ok, err := offerOf(ctx, dst, o.target)
		switch {
		case err != nil:
			return err
		case !ok && done:
			return fmt.Errorf("%w: no release offer for %s after the copy, want %s", ErrSpoolDiverged, o.target, o.offer.Value.ID)
		case ok && !sameJSON(got, o.offer):
			return fmt.Errorf("%w: release offer %s for %s, not the copied spool's %s", ErrSpoolDiverged, got.Value.ID, o.target, o.offer.Value.ID)
		}
	}
	return nil
}

// copyTransfers copies the transfers dst lacks, each device's and group's
// latest last (putting a transfer makes it the latest), and returns how
// many it copied.
func (c spoolContents) copyTransfers(ctx context.Context, src *FileSpool, dst Spool) (int, error) {
	latest := make(map[string]bool, len(c.latest))
	for _, l := range c.latest {
		latest[l.transfer] = true
	}
	n := 0
	for _, last := range []bool{false, true} {
		for _, m := range c.transfers {
			if latest[m.Transfer] != last {
				continue
			}
			put, err := copyTransfer(ctx, src, dst, m)
			if err != nil {
				return n, err
			}
			if put {
				n++
			}
		}
	}
	return n, nil
}

// copyTransfer puts transfer m of src into dst unless dst holds it
// already (with the same manifest), and reports whether it put it.
func copyTransfer(ctx context.Context, src *FileSpool, dst Spool, m proto.Manifest) (bool, error) {
	got, err := dst.Transfer(ctx, m.Transfer)
	if err == nil && !sameJSON(got, m) {
		return false, fmt.Errorf("%w: transfer %s has another manifest", ErrSpoolDiverged, m.Transfer)
	}
	if err == nil || !errors.Is(err, ErrNotSpooled) {
		return false, err
	}
	env, err := os.ReadFile(src.transferPath(m.Transfer, ".envelope"))
	if errors.Is(err, fs.ErrNotExist) {
		env, err = []byte{}, nil // spooled before envelopes were: none to serve, as FileSpool.Latest says
	}
	if err != nil {
		return false, fmt.Errorf("spool file: %w", err)
	}
	f, err := os.Open(spoolData(src.dir, m.Transfer))
	if err != nil {
		return false, fmt.Errorf("spool file: %w", err)
	}
	defer f.Close()
	return true, dst.PutTransfer(ctx, m, env, f)
}

// copyCommands puts the commands in force of each device into dst where
// they are not there yet, and returns for how many devices. Put in their
// order, they come out in it (ModesInForce), also onto the first of them
// (a copy that stopped half-way).
func (c spoolContents) copyCommands(ctx context.Context, dst Spool) (int, error) {
	n := 0
	for _, cs := range c.commands {
		got, err := dst.Commands(ctx, cs.site, cs.device)
		if err != nil {
			return n, err
		}
		if slices.EqualFunc(got, cs.commands, sameJSON) {
			continue
		}
		for _, cmd := range cs.commands {
			if err := dst.PutCommand(ctx, cmd); err != nil {
				return n, err
			}
		}
		n++
	}
	return n, nil
}

// copyOffers puts the release offers dst lacks, and returns how many.
func (c spoolContents) copyOffers(ctx context.Context, dst Spool) (int, error) {
	n := 0
	for _, o := range c.offers {
		_, ok, err := offerOf(ctx, dst, o.target)
		if err != nil {
			return n, err
		}
		if ok { // the same: check said so
			continue
		}
		if err := dst.PutOffer(ctx, o.offer); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// latestOf returns the latest transfer of t in sp.
func latestOf(ctx context.Context, sp Spool, t spoolTarget) (SpooledEnvelope[proto.Manifest], error) {
	if t.kind == "group" {
		return sp.LatestGroup(ctx, t.site, t.name)
	}
	return sp.Latest(ctx, t.site, t.name)
}

// offerOf returns the release offer of t in sp, false when there is none.
func offerOf(ctx context.Context, sp Spool, t spoolTarget) (SpooledEnvelope[proto.ReleaseOffer], bool, error) {
	device, groups := t.name, []string(nil)
	if t.kind == "group" {
		device, groups = "", []string{t.name}
	}
	offers, err := sp.Offers(ctx, t.site, device, groups)
	if err != nil || len(offers) == 0 {
		return SpooledEnvelope[proto.ReleaseOffer]{}, false, err
	}
	return offers[0], true, nil
}

// sameJSON reports whether a and b encode to the same JSON: what a spool
// keeps of them.
func sameJSON[T any](a, b T) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}
