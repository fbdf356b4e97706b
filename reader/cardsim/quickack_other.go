//go:build !linux

package cardsim

import "net"

// quickAck does nothing outside Linux (see quickack_linux.go).
func quickAck(net.Conn) {}
