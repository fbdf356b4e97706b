package main

import (
	"fmt"
	"strings"
)

// defaultClientID is serve's MQTT client ID by default.
const defaultClientID = "tobira-hq"

// replicaClientID returns the MQTT client ID of serve: id, but for a
// replica (one of several HQs sharing the devices' messages) the default
// ID becomes "tobira-hq-{host name}", so that one configuration file serves
// every replica machine and no replica disconnects another by taking its
// ID. The shipped client-ID plugin accepts it (no "/"); a host name's
// other characters outside A-Z a-z 0-9 . _ - become "-".
func replicaClientID(id string, replica bool, hostname func() (string, error)) (string, error) {
	if !replica || id != defaultClientID {
		return id, nil
	}
	host, err := hostname()
	if err != nil {
		return "", fmt.Errorf("name this replica's MQTT client ID (--client-id): host name: %w", err)
	}
	host = strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, host)
	if host == "" {
		return "", fmt.Errorf("name this replica's MQTT client ID (--client-id): the host name is empty")
	}
	return defaultClientID + "-" + host, nil
}
