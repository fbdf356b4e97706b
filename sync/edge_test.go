package sync_test

import (
	"errors"
	"testing"
	"time"

	tsync "github.com/tobira-ac/tobira/sync"
	"github.com/tobira-ac/tobira/sync/proto"
)

func TestNewEdgeChecksConfig(t *testing.T) {
	ob := newOutbox(t)
	good := tsync.EdgeConfig{Broker: "tcp://127.0.0.1:1883", Site: "s1", Device: "d1"}
	tests := []struct {
		name string
		edit func(c *tsync.EdgeConfig)
	}{
		{"no broker", func(c *tsync.EdgeConfig) { c.Broker = "" }},
		{"broker scheme", func(c *tsync.EdgeConfig) { c.Broker = "http://127.0.0.1:1883" }},
		{"broker without host", func(c *tsync.EdgeConfig) { c.Broker = "tcp://" }},
		{"broker and brokers", func(c *tsync.EdgeConfig) { c.Brokers = []string{"tcp://127.0.0.1:1884"} }},
		{"bad second broker", func(c *tsync.EdgeConfig) {
			c.Broker, c.Brokers = "", []string{"tcp://127.0.0.1:1883", "http://127.0.0.1:1884"}
		}},
		{"no site", func(c *tsync.EdgeConfig) { c.Site = "" }},
		{"device with wildcard", func(c *tsync.EdgeConfig) { c.Device = "d#" }},
		{"batch too big", func(c *tsync.EdgeConfig) { c.Batch = proto.MaxBatch + 1 }},
		{"negative window", func(c *tsync.EdgeConfig) { c.Window = -1 }},
		{"negative ack timeout", func(c *tsync.EdgeConfig) { c.AckTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if _, err := tsync.NewEdge(cfg, ob); !errors.Is(err, tsync.ErrConfig) {
				t.Fatalf("NewEdge = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := tsync.NewEdge(good, nil); !errors.Is(err, tsync.ErrConfig) {
		t.Fatalf("NewEdge without outbox = %v, want ErrConfig", err)
	}
	e, err := tsync.NewEdge(good, ob)
	if err != nil {
		t.Fatalf("NewEdge with a good config: %v", err)
	}
	if e.Acked() != 0 {
		t.Fatalf("Acked of a fresh outbox = %d", e.Acked())
	}
	several := good
	several.Broker, several.Brokers = "", []string{"tcp://127.0.0.1:1883", "ssl://127.0.0.1:8883"}
	if _, err := tsync.NewEdge(several, newOutbox(t)); err != nil {
		t.Fatalf("NewEdge with several brokers: %v", err)
	}
}
