package hq_test

import (
	"context"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/broker"
)

// TestHQReady: Ready stays open until Run has subscribed, then closes.
func TestHQReady(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		brk, err := broker.Start(context.WithoutCancel(ctx), "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer brk.Close()
		h, err := hq.Open(b.config(t, hq.Config{Broker: brk.URL(), ClientID: "hq-ready"}, b.newStore(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		select {
		case <-h.Ready():
			t.Fatal("Ready closed before Run")
		default:
		}
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()
		select {
		case <-h.Ready():
		case err := <-done:
			t.Fatalf("Run returned before Ready: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("Ready not closed 30s after Run started against a live broker")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
