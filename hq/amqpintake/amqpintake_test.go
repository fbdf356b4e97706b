package amqpintake_test

import (
	"testing"

	"github.com/tobira-ac/tobira/hq/amqpintake"
	"github.com/tobira-ac/tobira/sync/proto"
)

func TestTopic(t *testing.T) {
	tests := []struct{ key, topic string }{
		{"tobira.v1.s1.d1.events", "tobira/v1/s1/d1/events"},
		{"tobira.v1.site/a.door/1.events", "tobira/v1/site.a/door.1/events"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := amqpintake.Topic(tt.key); got != tt.topic {
			t.Errorf("Topic(%q) = %q, want %q", tt.key, got, tt.topic)
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		leaf proto.Leaf
		key  string
	}{
		{proto.LeafEvents, "tobira.v1.*.*.events"},
		{proto.LeafMarksGet, "tobira.v1.*.*.marks-get"},
		{proto.LeafStatus, "tobira.v1.*.*.status"},
	}
	for _, tt := range tests {
		if got := amqpintake.Key(tt.leaf); got != tt.key {
			t.Errorf("Key(%q) = %q, want %q", tt.leaf, got, tt.key)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  amqpintake.Config
		ok   bool
	}{
		{"one node", amqpintake.Config{URLs: []string{"amqp://guest:guest@127.0.0.1:5672/"}}, true},
		{"three nodes, TLS", amqpintake.Config{URLs: []string{"amqps://hq1:5671/", "amqps://hq2:5671/", "amqps://hq3:5671/"}}, true},
		{"no URL", amqpintake.Config{}, false},
		{"MQTT URL", amqpintake.Config{URLs: []string{"tcp://127.0.0.1:1883"}}, false},
		{"no host", amqpintake.Config{URLs: []string{"amqp:///"}}, false},
		{"negative workers", amqpintake.Config{URLs: []string{"amqp://127.0.0.1/"}, Workers: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := amqpintake.New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
