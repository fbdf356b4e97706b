package sync_test

import (
	"path/filepath"
	"testing"

	tsync "github.com/tobira-ac/tobira/sync"
)

func TestOutboxSavedModesSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	ob := openOutbox(t, path)
	for _, m := range []struct{ door, mode, id string }{{"front", "locked_down", "c1"}, {"back", "unlocked", "c2"}, {"front", "normal", "c3"}} {
		if err := ob.SaveMode(m.door, m.mode, m.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.SaveMode("", "normal", "c4"); err == nil {
		t.Error("SaveMode of an unnamed door succeeded")
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := openOutbox(t, path).SavedModes()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tsync.SavedMode{"front": {Mode: "normal", Command: "c3"}, "back": {Mode: "unlocked", Command: "c2"}}
	if len(got) != len(want) || got["front"] != want["front"] || got["back"] != want["back"] {
		t.Errorf("saved modes after reopening = %+v, want %+v", got, want)
	}
}
