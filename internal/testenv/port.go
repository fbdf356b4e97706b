package testenv

import (
	"fmt"
	"net"
)

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago,
// for a server a test starts (mosquitto, PostgreSQL, RabbitMQ).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
