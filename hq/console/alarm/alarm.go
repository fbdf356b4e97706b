// Package alarm is the console's alarm list: alarms derived from HQ's
// events as they arrive (a door forced or held open, tamper, repeated
// wrong PINs, a device's messages refused by HQ, ticket conflicts) and
// from the fleet (a device offline). Each alarm has a priority and a
// state: active, acknowledged (by an operator, with a comment) or
// cleared (the condition ended). The list keeps its alarms in a Store:
// in memory (NewMemory), in a bbolt file's "alarms" bucket so a restart
// keeps it (Open), or in PostgreSQL (hq/pgstore), shared by every
// tobira-hq replica, with the wrong-PIN counts (PINCounter).
package alarm

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Kind is what an alarm is about.
type Kind string

// The kinds of alarm.
const (
	// ForcedOpen: a door opened while locked (door event forced_open).
	ForcedOpen Kind = "forced_open"
	// HeldOpen: a door stood open too long (door event held_open).
	HeldOpen Kind = "held_open"
	// Tamper: a device or door reported tamper (reason "tamper";
	// "tamper_cleared" clears it).
	Tamper Kind = "tamper"
	// WrongPIN: WrongPINCount wrong PINs at a door within WrongPINWindow.
	WrongPIN Kind = "wrong_pin"
	// DeviceRefused: HQ refused a device's messages (device_refused).
	DeviceRefused Kind = "device_refused"
	// TicketConflict: a single-entry ticket entered at two gates.
	TicketConflict Kind = "ticket_conflict"
	// Offline: a device stopped reporting.
	Offline Kind = "offline"
	// StaleRevocation: a device's revocation data (its policy snapshot)
	// is older than the console allows (the console's sweep raises and
	// clears it with SetCondition).
	StaleRevocation Kind = "stale_revocation"
)

// Repeated wrong PINs: WrongPINCount pin_wrong denials at one door
// within WrongPINWindow raise a WrongPIN alarm.
const (
	WrongPINCount  = 3
	WrongPINWindow = 5 * time.Minute
)

// priorities are each kind's priority: 1 is the most urgent.
var priorities = map[Kind]int{ForcedOpen: 1, Tamper: 1, HeldOpen: 2, WrongPIN: 2, TicketConflict: 2, Offline: 2, StaleRevocation: 2, DeviceRefused: 3}

// State is where an alarm is in its life.
type State string

// The states: active -> acknowledged -> cleared, or active -> cleared.
const (
	// Active: the condition stands and nobody acknowledged it.
	Active State = "active"
	// Acknowledged: an operator saw it (with a comment).
	Acknowledged State = "acknowledged"
	// Cleared: the condition ended.
	Cleared State = "cleared"
)

// Alarm is one alarm.
type Alarm struct {
	// ID names the alarm: a hash of site, device, door and kind (one
	// alarm per kind and place; a cleared one raised again starts afresh).
	ID string `json:"id"`
	// Site, Device and Door are where it stands (Door "" for a device).
	Site   string `json:"site"`
	Device string `json:"device"`
	Door   string `json:"door,omitempty"`
	// Kind is what it is about; Priority its urgency (1 highest).
	Kind     Kind `json:"kind"`
	Priority int  `json:"priority"`
	// State is active, acknowledged or cleared.
	State State `json:"state"`
	// First and Last are when it was raised and last seen again; Count
	// how many times it was seen since raised.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
	// Detail is the last event's detail.
	Detail string `json:"detail,omitempty"`
	// AckBy, AckAt and AckComment record the acknowledgement.
	AckBy      string    `json:"ack_by,omitempty"`
	AckAt      time.Time `json:"ack_at,omitzero"`
	AckComment string    `json:"ack_comment,omitempty"`
	// Cleared is when the condition ended.
	Cleared time.Time `json:"cleared,omitzero"`
}

// ErrNotFound means no alarm has the ID given.
var ErrNotFound = errors.New("no such alarm")

// ErrState means the alarm is not in a state that allows the change.
var ErrState = errors.New("alarm state")

// ErrComment means an acknowledgement lacks its comment.
var ErrComment = errors.New("alarm comment")

// MaxComment bounds an acknowledgement's comment (bytes).
const MaxComment = 500

// Store keeps a List's alarms. Update must be atomic per alarm against
// every other writer, also in other processes.
type Store interface {
	// Update calls fn with the stored alarm id (nil: none) and stores the
	// alarm fn returns (nil: no change); fn's error is returned and
	// nothing is stored. fn may be called again (a retry).
	Update(id string, fn func(a *Alarm) (*Alarm, error)) error
	// Get returns the alarm id, false when none is stored.
	Get(id string) (Alarm, bool, error)
	// All returns every alarm, in any order.
	All() ([]Alarm, error)
}

// PINCounter is a Store that also counts the wrong PINs at each door, for
// lists in several processes sharing the store (tobira-hq replicas on
// PostgreSQL, each seeing part of a door's events). A List on a Store
// without it counts in memory, per process.
type PINCounter interface {
	// WrongPIN notes a wrong PIN at site/device/door at now, forgets the
	// door's wrong PINs at or before now-WrongPINWindow and returns how
	// many remain (this one included), atomically against every other
	// writer of the door.
	WrongPIN(site, device, door string, now time.Time) (int, error)
}

// pinKey is one door's wrong-PIN history.
type pinKey struct{ site, device, door string }

// List is the alarm list: safe for concurrent use. The wrong-PIN counts
// are kept by the Store when it is a PINCounter, else in memory.
type List struct {
	st Store
	pc PINCounter // nil: pins counts the wrong PINs

	mu   sync.Mutex // guards pins
	pins map[pinKey][]time.Time
}

// NewList returns the list kept in st.
func NewList(st Store) *List {
	pc, _ := st.(PINCounter)
	return &List{st: st, pc: pc, pins: map[pinKey][]time.Time{}}
}

// NewMemory returns a list kept in memory only.
func NewMemory() *List {
	return NewList(&memStore{alarms: map[string]Alarm{}})
}

// memStore is a Store in memory.
type memStore struct {
	mu     sync.Mutex
	alarms map[string]Alarm
}

// Update implements Store.
func (m *memStore) Update(id string, fn func(*Alarm) (*Alarm, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cur *Alarm
	if a, ok := m.alarms[id]; ok {
		cur = &a
	}
	a, err := fn(cur)
	if err == nil && a != nil {
		m.alarms[id] = *a
	}
	return err
}

// Get implements Store.
func (m *memStore) Get(id string) (Alarm, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.alarms[id]
	return a, ok, nil
}

// All implements Store.
func (m *memStore) All() ([]Alarm, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Alarm, 0, len(m.alarms))
	for _, a := range m.alarms {
		out = append(out, a)
	}
	return out, nil
}

// ID returns the ID of the alarm of kind at site/device/door: hex
// digits of a hash, safe in a URL path whatever the door's name.
func ID(site, device, door string, kind Kind) string {
	h := sha256.Sum256([]byte(site + "\x00" + device + "\x00" + door + "\x00" + string(kind)))
	return hex.EncodeToString(h[:8])
}

// Where names the alarm's place and kind for people and the audit log:
// site/device[/door] kind.
func (a Alarm) Where() string {
	w := a.Site + "/" + a.Device
	if a.Door != "" {
		w += "/" + a.Door
	}
	return w + " " + string(a.Kind)
}

// Observe derives alarms from ev, an event of site/device HQ just
// stored (at now), and returns the alarms it raised anew (for the
// audit log).
func (l *List) Observe(site, device string, ev proto.Event, now time.Time) ([]Alarm, error) {
	kind, door, clear := classify(ev)
	if ev.Reason == "pin_wrong" {
		if n, err := l.wrongPINs(pinKey{site, device, ev.Door}, now); n < WrongPINCount || err != nil {
			return nil, err
		}
	}
	if ev.Reason == hq.ReasonDeviceRefused && ev.Type == proto.TypeSystem {
		device = field(ev.Detail, "device")
	}
	switch {
	case kind != "":
		a, err := l.raise(site, device, door, kind, ev.Detail, now, false)
		if a == nil || err != nil {
			return nil, err
		}
		return []Alarm{*a}, nil
	case clear != nil:
		for _, k := range clear {
			if err := l.clear(ID(site, device, door, k), now); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// classify returns the kind of alarm ev raises (with its door), or the
// kinds it clears at its door.
func classify(ev proto.Event) (raise Kind, door string, clear []Kind) {
	switch {
	case ev.Reason == "tamper":
		return Tamper, ev.Door, nil
	case ev.Reason == "tamper_cleared":
		return "", ev.Door, []Kind{Tamper}
	case ev.Type == proto.TypeDoor && ev.Reason == "forced_open":
		return ForcedOpen, ev.Door, nil
	case ev.Type == proto.TypeDoor && ev.Reason == "held_open":
		return HeldOpen, ev.Door, nil
	case ev.Type == proto.TypeDoor && ev.Reason == "forced_cleared":
		return "", ev.Door, []Kind{ForcedOpen}
	case ev.Type == proto.TypeDoor && ev.Reason == "held_cleared":
		return "", ev.Door, []Kind{HeldOpen}
	case ev.Type == proto.TypeDoor && ev.Reason == "closed":
		return "", ev.Door, []Kind{ForcedOpen, HeldOpen}
	case ev.Type == proto.TypeTicket && ev.Reason == "ticket_conflict":
		return TicketConflict, ev.Door, nil
	case ev.Type == proto.TypeSystem && ev.Reason == hq.ReasonDeviceRefused:
		if field(ev.Detail, "refused") == "ticket_conflict" {
			return TicketConflict, "", nil
		}
		return DeviceRefused, "", nil
	case ev.Type == proto.TypeDecision && ev.Reason == "pin_wrong":
		return WrongPIN, ev.Door, nil
	case ev.Type == proto.TypeDecision && ev.Granted:
		return "", ev.Door, []Kind{WrongPIN}
	}
	return "", "", nil
}

// field returns the value of "name=value" in detail ("" when absent).
func field(detail, name string) string {
	for f := range strings.FieldsSeq(detail) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return strings.TrimSuffix(v, ":")
		}
	}
	return ""
}

// wrongPINs notes a wrong PIN at k at now and returns how many the door
// has had within WrongPINWindow.
func (l *List) wrongPINs(k pinKey, now time.Time) (int, error) {
	if l.pc != nil {
		n, err := l.pc.WrongPIN(k.site, k.device, k.door, now)
		if err != nil {
			return 0, fmt.Errorf("count the wrong PINs at %s/%s/%s: %w", k.site, k.device, k.door, err)
		}
		return n, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := slices.DeleteFunc(append(l.pins[k], now), func(t time.Time) bool { return now.Sub(t) >= WrongPINWindow })
	l.pins[k] = ts
	return len(ts), nil
}

// raise raises the alarm of kind at site/device/door, or sees it again
// (unless onlyNew) when it stands; it returns the alarm when raised anew.
func (l *List) raise(site, device, door string, kind Kind, detail string, now time.Time, onlyNew bool) (*Alarm, error) {
	var raised *Alarm
	err := l.st.Update(ID(site, device, door, kind), func(a *Alarm) (*Alarm, error) {
		raised = nil
		if a != nil && a.State != Cleared {
			if onlyNew {
				return nil, nil
			}
			a.Last, a.Detail = now, detail
			a.Count++
			return a, nil
		}
		raised = &Alarm{ID: ID(site, device, door, kind), Site: site, Device: device, Door: door, Kind: kind, Priority: priorities[kind],
			State: Active, First: now, Last: now, Count: 1, Detail: detail}
		return raised, nil
	})
	if err != nil {
		return nil, fmt.Errorf("raise alarm %s/%s/%s %s: %w", site, device, door, kind, err)
	}
	return raised, nil
}

// clear ends the alarm id if it stands (looked up first: most events
// clear nothing).
func (l *List) clear(id string, now time.Time) error {
	if a, ok, err := l.st.Get(id); err != nil || !ok || a.State == Cleared {
		return err
	}
	err := l.st.Update(id, func(a *Alarm) (*Alarm, error) {
		if a == nil || a.State == Cleared {
			return nil, nil
		}
		a.State, a.Cleared = Cleared, now
		return a, nil
	})
	if err != nil {
		return fmt.Errorf("clear alarm %s: %w", id, err)
	}
	return nil
}

// SetOnline raises or clears site/device's Offline alarm from the
// fleet's view at now; it returns the alarm when raised anew.
func (l *List) SetOnline(site, device string, online bool, now time.Time) (*Alarm, error) {
	return l.SetCondition(site, device, Offline, !online, "", now)
}

// SetCondition raises (on) or clears (!on) site/device's alarm of a
// device-wide kind that is checked again and again (Offline,
// StaleRevocation) at now; it returns the alarm when raised anew. A
// standing alarm is not "seen again" on every check.
func (l *List) SetCondition(site, device string, kind Kind, on bool, detail string, now time.Time) (*Alarm, error) {
	if !on {
		return nil, l.clear(ID(site, device, "", kind), now)
	}
	return l.raise(site, device, "", kind, detail, now, true)
}

// Ack acknowledges the active alarm id by user with comment at now and
// returns it before and after.
func (l *List) Ack(id, user, comment string, now time.Time) (before, after Alarm, err error) {
	comment = strings.TrimSpace(comment)
	if comment == "" || len(comment) > MaxComment {
		return Alarm{}, Alarm{}, fmt.Errorf("%w: acknowledge %s: a comment of 1 to %d bytes is needed", ErrComment, id, MaxComment)
	}
	err = l.st.Update(id, func(a *Alarm) (*Alarm, error) {
		switch {
		case a == nil:
			return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
		case a.State != Active:
			before, after = *a, *a
			return nil, fmt.Errorf("%w: acknowledge %s: it is %s", ErrState, id, a.State)
		}
		before, after = *a, *a
		after.State, after.AckBy, after.AckAt, after.AckComment = Acknowledged, user, now, comment
		return &after, nil
	})
	if err != nil && !errors.Is(err, ErrState) {
		return before, before, err
	}
	return before, after, err
}

// Get returns the alarm id.
func (l *List) Get(id string) (Alarm, error) {
	a, ok, err := l.st.Get(id)
	switch {
	case err != nil:
		return Alarm{}, fmt.Errorf("read alarm %s: %w", id, err)
	case !ok:
		return Alarm{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return a, nil
}

// All returns every alarm: active first, then acknowledged, then
// cleared; within a state by priority, then newest first.
func (l *List) All() ([]Alarm, error) {
	out, err := l.st.All()
	if err != nil {
		return nil, fmt.Errorf("read the alarms: %w", err)
	}
	rank := map[State]int{Active: 0, Acknowledged: 1, Cleared: 2}
	slices.SortFunc(out, func(a, b Alarm) int {
		return cmp.Or(cmp.Compare(rank[a.State], rank[b.State]), cmp.Compare(a.Priority, b.Priority),
			b.Last.Compare(a.Last), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}
