package controller

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

type cmdDoor struct{ calls []string }

func (d *cmdDoor) AdminGrant(context.Context) error {
	d.calls = append(d.calls, "admin-grant")
	return nil
}
func (d *cmdDoor) SetMode(_ context.Context, m door.Mode, cause string) error {
	d.calls = append(d.calls, "mode:"+string(m)+":"+cause)
	return nil
}

// memModes is a ModeStore in memory.
type memModes map[string]tsync.SavedMode

func (m memModes) SaveMode(d, mode, id string) error {
	m[d] = tsync.SavedMode{Mode: mode, Command: id}
	return nil
}
func (m memModes) SavedModes() (map[string]tsync.SavedMode, error) { return maps.Clone(m), nil }

// String lists the saved modes as "door=mode", sorted.
func (m memModes) String() string {
	var out []string
	for d, s := range m {
		out = append(out, d+"="+s.Mode)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

type cmdPolicy struct{ forgiven []string }

func (p *cmdPolicy) Forgive(_ context.Context, person string) error {
	p.forgiven = append(p.forgiven, person)
	return nil
}
func (p *cmdPolicy) Decide(c credential.Credential) policy.Decision {
	if c.ID == "EMP-1" {
		return policy.Decision{Granted: true, Reason: policy.ReasonEnrolled, Person: "p-1"}
	}
	return policy.Decision{Reason: policy.ReasonNotEnrolled}
}

func TestCommands(t *testing.T) {
	key, _ := credential.Credential{Kind: credential.KindFreeArea, ID: "EMP-1"}.Key()
	stranger, _ := credential.Credential{Kind: credential.KindFreeArea, ID: "EMP-2"}.Key()
	tests := []struct {
		cmd            proto.Command
		front, back    string
		forgiven, resy string
		saved          string // modes saved for a restart
		wantErr        string
	}{
		{cmd: proto.Command{Action: proto.ActionUnlock, Door: "front"}, front: "admin-grant"},
		{cmd: proto.Command{Action: proto.ActionUnlock, Door: "side"}, wantErr: "no such door"},
		{cmd: proto.Command{Action: proto.ActionSetMode, Door: "back", Mode: "unlocked"}, back: "mode:unlocked:hq_command", saved: "back=unlocked"},
		{cmd: proto.Command{Action: proto.ActionSetMode, Door: "back", Mode: "ajar"}, wantErr: "ajar"},
		{cmd: proto.Command{Action: proto.ActionLockdown}, front: "mode:locked_down:hq_command", back: "mode:locked_down:hq_command",
			saved: "back=locked_down,front=locked_down"},
		{cmd: proto.Command{Action: proto.ActionRelease, Door: "front"}, front: "mode:normal:hq_command", saved: "front=normal"},
		{cmd: proto.Command{Action: proto.ActionResync}, resy: "resync"},
		{cmd: proto.Command{Action: proto.ActionForgiveAPB, Credential: hex.EncodeToString(key)}, forgiven: "p-1"},
		{cmd: proto.Command{Action: proto.ActionForgiveAPB, Credential: hex.EncodeToString(stranger)}, wantErr: "not enrolled"},
		{cmd: proto.Command{Action: proto.ActionForgiveAPB, Credential: "zz"}, wantErr: "not hex"},
		{cmd: proto.Command{Action: "reboot"}, wantErr: `unknown action "reboot"`},
	}
	for _, tt := range tests {
		t.Run(tt.cmd.Action+"/"+tt.cmd.Door, func(t *testing.T) {
			front, back, pol := &cmdDoor{}, &cmdDoor{}, &cmdPolicy{}
			resynced := ""
			modes := memModes{}
			c := &Commands{Doors: map[string]CommandDoor{"front": front, "back": back}, Modes: modes, Policy: pol,
				Resync: func() { resynced = "resync" }, Log: slog.New(slog.DiscardHandler)}
			err := c.HandleCommand(context.Background(), tt.cmd)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "door") && !errors.Is(err, ErrUnknownDoor) {
					t.Errorf("error %v is not ErrUnknownDoor", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(front.calls, ","); got != tt.front {
				t.Errorf("front door calls = %q, want %q", got, tt.front)
			}
			if got := strings.Join(back.calls, ","); got != tt.back {
				t.Errorf("back door calls = %q, want %q", got, tt.back)
			}
			if got := strings.Join(pol.forgiven, ","); got != tt.forgiven {
				t.Errorf("forgiven = %q, want %q", got, tt.forgiven)
			}
			if resynced != tt.resy {
				t.Errorf("resync = %q, want %q", resynced, tt.resy)
			}
			if got := modes.String(); got != tt.saved {
				t.Errorf("saved modes = %q, want %q", got, tt.saved)
			}
		})
	}
}

func TestRestoreModes(t *testing.T) {
	front, back := &cmdDoor{}, &cmdDoor{}
	saved := memModes{"front": {Mode: "locked_down", Command: "c1"}, "gone": {Mode: "unlocked"}}
	doors := map[string]CommandDoor{"front": front, "back": back}
	if err := RestoreModes(context.Background(), doors, saved, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(front.calls, ","); got != "mode:locked_down:hq_command_restored" {
		t.Errorf("front door calls = %q", got)
	}
	if len(back.calls) != 0 {
		t.Errorf("back door, never set by HQ, got %v", back.calls)
	}
	bad := memModes{"front": {Mode: "ajar"}}
	if err := RestoreModes(context.Background(), doors, bad, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "ajar") {
		t.Errorf("restoring an unknown mode = %v, want an error naming it", err)
	}
}

type statusStore struct {
	version uint64
	trusted bool
}

func (s statusStore) Version() (uint64, error)       { return s.version, nil }
func (s statusStore) ContentHash() ([32]byte, error) { return [32]byte{0xab}, nil }
func (s statusStore) TrustTime(now time.Time) (time.Time, bool) {
	return now, s.trusted
}

type statusDoor struct {
	name string
	st   door.Status
}

func (d statusDoor) Name() string        { return d.name }
func (d statusDoor) Status() door.Status { return d.st }

func TestDeviceStatus(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	src := DeviceStatus("v1.2.3", statusStore{version: 7, trusted: true}, []StatusDoor{
		statusDoor{"front", door.Status{Mode: door.ModeNormal}},
		statusDoor{"lab", door.Status{Mode: door.ModeLockedDown, Open: true, ForcedOpen: true, LockdownInput: true}},
		statusDoor{"vault", door.Status{Mode: door.ModeLockedDown, Commanded: door.ModeLockedDown}},
		statusDoor{"gate", door.Status{Mode: door.ModeNormal, Tamper: true}},
	}, memModes{"vault": {Mode: "locked_down"}}, clk)
	st, err := src.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v1.2.3" || st.Snapshot.Version != 7 || !strings.HasPrefix(st.Snapshot.Hash, "ab00") || !st.ClockTrusted {
		t.Errorf("status = %+v", st)
	}
	want := []proto.DoorStatus{{Name: "front", State: "locked", Mode: "normal", ModeSource: "default"},
		{Name: "lab", State: "forced_open", Mode: "locked_down", ModeSource: "input"},
		{Name: "vault", State: "locked", Mode: "locked_down", ModeSource: "hq"},
		{Name: "gate", State: "tamper", Mode: "normal", ModeSource: "default"}}
	if !slices.Equal(st.Doors, want) {
		t.Errorf("doors = %+v, want %+v", st.Doors, want)
	}
	empty, err := DeviceStatus("v", statusStore{}, nil, nil, clk).Status(context.Background())
	if err != nil || empty.Snapshot.Hash != "" || empty.ClockTrusted {
		t.Errorf("status without snapshot = %+v, %v", empty, err)
	}
}

func TestActivityBusy(t *testing.T) {
	quiet := statusDoor{"front", door.Status{Mode: door.ModeNormal}}
	a := &Activity{Doors: []StatusDoor{quiet}}
	if busy, why := a.Busy(); busy {
		t.Fatalf("idle controller busy: %s", why)
	}
	a.enter()
	if busy, why := a.Busy(); !busy || !strings.Contains(why, "card transaction") {
		t.Errorf("during a card session: %t %q", busy, why)
	}
	a.leave()
	a.Doors = append(a.Doors, statusDoor{"lab", door.Status{Unlocked: true}})
	if busy, why := a.Busy(); !busy || !strings.Contains(why, `door "lab" is unlocked`) {
		t.Errorf("with an unlocked door: %t %q", busy, why)
	}
	var none *Activity
	none.enter() // a loop without an Activity must not panic
	none.leave()
}
