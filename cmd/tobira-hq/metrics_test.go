package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeBadMetricsListen: a metrics_listen that is not host:port fails
// serve before anything else, naming the key.
func TestServeBadMetricsListen(t *testing.T) {
	for _, addr := range []string{"9470", "127.0.0.1:metrics"} {
		var stderr bytes.Buffer
		err := run(context.Background(), []string{"serve", "--config", "", "--broker", "tcp://127.0.0.1:1", "--db", t.TempDir() + "/hq.db",
			"--metrics-listen", addr}, &bytes.Buffer{}, &stderr)
		if err == nil || !strings.Contains(err.Error(), "metrics_listen:") {
			t.Errorf("--metrics-listen %q: err = %v, want one naming metrics_listen", addr, err)
		}
	}
}
