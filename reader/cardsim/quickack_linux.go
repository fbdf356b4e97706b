package cardsim

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge the next segments on conn at
// once. vpcd writes each message as two segments (length, then bytes) on a
// socket with Nagle's algorithm on, so the second one waits for the ACK of
// the first; with the default delayed ACK that costs about 40 ms per APDU.
// Linux clears the quick-ACK mode by itself, so it is set before every
// read. Errors are ignored: the only cost is speed.
func quickAck(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
