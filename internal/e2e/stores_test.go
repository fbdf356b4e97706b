package e2e_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	tsync "github.com/tobira-ac/tobira/sync"
)

// The edge's outbox and HQ's store are both bbolt files with a format
// marker: each refuses the other's file, unchanged, with ErrBadFile (the
// outbox's own refusals are tested in package sync).

func TestOpenHQRefusesOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	ob, err := tsync.OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	ob.Close()
	if h, err := hq.Open(hq.Config{Path: path}); !errors.Is(err, hq.ErrBadFile) {
		if err == nil {
			h.Close()
		}
		t.Fatalf("hq.Open on an outbox file = %v, want ErrBadFile", err)
	}
}

func TestOpenOutboxRefusesHQStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	h, err := hq.Open(hq.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := tsync.OpenOutbox(path)
	if err == nil {
		ob.Close()
		t.Fatal("OpenOutbox accepted an HQ store")
	}
	if !errors.Is(err, tsync.ErrBadFile) || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenOutbox on an HQ store = %v, want ErrBadFile naming the file", err)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Errorf("OpenOutbox changed the HQ store it refused (%v)", err)
	}
}
