package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeBadEventsIntake: events_intake takes AMQP URLs only; anything
// else fails serve before it connects, naming the flag.
func TestServeBadEventsIntake(t *testing.T) {
	for _, urls := range []string{"tcp://127.0.0.1:1883", "amqp://127.0.0.1:5672/,mqtts://127.0.0.1:8883", "amqp:///"} {
		err := run(context.Background(), []string{"serve", "--config", "", "--broker", "tcp://127.0.0.1:1", "--db", t.TempDir() + "/hq.db",
			"--events-intake", urls}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "--events-intake") {
			t.Errorf("--events-intake %q: err = %v, want one naming --events-intake", urls, err)
		}
	}
}
