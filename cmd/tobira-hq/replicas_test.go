package main

import (
	"errors"
	"testing"
)

func TestReplicaClientID(t *testing.T) {
	host := func(name string, err error) func() (string, error) {
		return func() (string, error) { return name, err }
	}
	tests := []struct {
		name     string
		id       string
		replica  bool
		hostname func() (string, error)
		want     string
		ok       bool
	}{
		{"one HQ keeps the default", "tobira-hq", false, host("hq1", nil), "tobira-hq", true},
		{"replica: host name added", "tobira-hq", true, host("hq1.example", nil), "tobira-hq-hq1.example", true},
		{"replica: odd characters replaced", "tobira-hq", true, host("hq 1/a", nil), "tobira-hq-hq-1-a", true},
		{"replica: own ID kept", "tobira-hq-b", true, host("hq1", nil), "tobira-hq-b", true},
		{"replica: no host name", "tobira-hq", true, host("", errors.New("no name")), "", false},
		{"replica: empty host name", "tobira-hq", true, host("", nil), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replicaClientID(tt.id, tt.replica, tt.hostname)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("replicaClientID = %q, %v; want %q, ok %v", got, err, tt.want, tt.ok)
			}
		})
	}
}
