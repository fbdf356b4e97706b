package sync_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/broker"
	"github.com/tobira-ac/tobira/sync"
)

// TestHQReady: Ready stays open until Run has subscribed, then closes.
func TestHQReady(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	brk, err := broker.Start(context.WithoutCancel(ctx), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	hq, err := sync.OpenHQ(sync.HQConfig{Broker: brk.URL(), ClientID: "hq-ready", Path: filepath.Join(t.TempDir(), "hq.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer hq.Close()
	select {
	case <-hq.Ready():
		t.Fatal("Ready closed before Run")
	default:
	}
	done := make(chan error, 1)
	go func() { done <- hq.Run(ctx) }()
	select {
	case <-hq.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("Ready not closed 30s after Run started against a live broker")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
