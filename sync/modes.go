package sync

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Outbox file layout, continued:
//
//	modes/<door> = JSON SavedMode: the mode HQ last set for the door
var bucketModes = []byte("modes")

// SavedMode is the mode HQ last set for a door, kept across crashes and
// restarts until HQ sets another.
type SavedMode struct {
	// Mode is the door mode's name (door.Mode).
	Mode string `json:"mode"`
	// Command is the ID of the command that set it.
	Command string `json:"command,omitempty"`
}

// SaveMode records, durably (committed and fsynced before it returns),
// that HQ set door's mode by the command commandID. The controller
// calls it before it reports the command done, and applies the saved modes
// when it starts (controller.RestoreModes).
func (o *Outbox) SaveMode(door, mode, commandID string) error {
	if door == "" || mode == "" {
		return fmt.Errorf("save mode %q of door %q in %s: door and mode must not be empty", mode, door, o.path)
	}
	v, err := json.Marshal(SavedMode{Mode: mode, Command: commandID})
	if err != nil {
		return fmt.Errorf("save mode of door %q: %w", door, err)
	}
	err = o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketModes).Put([]byte(door), v) })
	if err != nil {
		return fmt.Errorf("save mode %s of door %q in %s: %w", mode, door, o.path, err)
	}
	return nil
}

// SavedModes returns the modes HQ set, by door name.
func (o *Outbox) SavedModes() (map[string]SavedMode, error) {
	out := map[string]SavedMode{}
	err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketModes).ForEach(func(k, v []byte) error {
			var m SavedMode
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("door %q: %w", k, err)
			}
			out[string(k)] = m
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read saved door modes from %s: %w", o.path, err)
	}
	return out, nil
}
