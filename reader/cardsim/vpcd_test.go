package cardsim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/reader"
)

// fakeVPCD plays vpcd's side of the protocol on a free loopback port.
type fakeVPCD struct {
	t  *testing.T
	ln net.Listener
}

func newFakeVPCD(t *testing.T) *fakeVPCD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeVPCD{t: t, ln: ln}
}

func (f *fakeVPCD) addr() string { return f.ln.Addr().String() }

func (f *fakeVPCD) accept() net.Conn {
	f.t.Helper()
	conn, err := f.ln.Accept()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

// send writes one message to the card.
func send(t *testing.T, conn net.Conn, msg []byte) {
	t.Helper()
	if err := writeMessage(conn, msg); err != nil {
		t.Fatalf("send % X: %v", msg, err)
	}
}

// exchange sends msg and returns the card's answer.
func exchange(t *testing.T, conn net.Conn, msg []byte) []byte {
	t.Helper()
	send(t, conn, msg)
	ans, err := readMessage(conn)
	if err != nil {
		t.Fatalf("answer to % X: %v", msg, err)
	}
	return ans
}

// expectClosed checks that the card closed the connection.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	if _, err := readMessage(conn); !errors.Is(err, io.EOF) {
		t.Fatalf("read after removal: %v, want EOF", err)
	}
}

func TestServeVPCD(t *testing.T) {
	v := newFakeVPCD(t)
	c := New(Profile{TokenLabel: LabelMyNumberCard, AuthCert: testCert()})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- ServeVPCD(ctx, v.addr(), c) }()
	conn := v.accept()

	send(t, conn, []byte{vpcdPowerOn})
	if atr := exchange(t, conn, []byte{vpcdGetATR}); !bytes.Equal(atr, DefaultATR) {
		t.Fatalf("ATR = % X, want % X", atr, DefaultATR)
	}
	if ans := exchange(t, conn, selectAP); !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("SELECT AP = % X", ans)
	}
	if ans := exchange(t, conn, selectCert); !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("SELECT EF = % X", ans)
	}
	send(t, conn, []byte{vpcdReset})
	if ans := exchange(t, conn, read(0, 1)); !bytes.Equal(ans, sw(reader.SWNoCurrentEF)) {
		t.Fatalf("READ after reset = % X, want 6986", ans)
	}
	send(t, conn, []byte{0x7F}) // unknown control: ignored
	send(t, conn, nil)          // empty message: ignored
	if ans := exchange(t, conn, selectAP); !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("SELECT AP after ignored messages = % X", ans)
	}

	cancel() // card removed
	expectClosed(t, conn)
	if err := <-served; err != nil {
		t.Fatalf("ServeVPCD() = %v, want nil after ctx ended", err)
	}
}

func TestServeVPCDCardLeaves(t *testing.T) {
	v := newFakeVPCD(t)
	c := New(Profile{TokenLabel: LabelMyNumberCard})
	c.SetFault(FaultRemove, 1)
	served := make(chan error, 1)
	go func() { served <- ServeVPCD(t.Context(), v.addr(), c) }()
	conn := v.accept()
	if ans := exchange(t, conn, selectAP); !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("SELECT AP = % X", ans)
	}
	send(t, conn, selectToken)
	expectClosed(t, conn)
	if err := <-served; err != nil {
		t.Fatalf("ServeVPCD() = %v, want nil after the card left", err)
	}
}

func TestServeVPCDConnectionLost(t *testing.T) {
	v := newFakeVPCD(t)
	served := make(chan error, 1)
	go func() { served <- ServeVPCD(t.Context(), v.addr(), New(Profile{})) }()
	conn := v.accept()
	conn.Write([]byte{0x00, 0x05, 0x00}) // a message cut short
	conn.Close()
	if err := <-served; err == nil {
		t.Fatal("ServeVPCD() = nil, want an error when vpcd drops the connection")
	}
}

// waitPending waits until the fake clock has n timers armed.
func waitPending(clk *clocktest.Fake, n int) {
	for clk.Pending() < n {
		runtime.Gosched()
	}
}

// freeAddr returns a loopback address nobody listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestServeVPCDRetries(t *testing.T) {
	addr := freeAddr(t)
	clk := clocktest.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	v := &VPCD{Clock: clk, Retry: time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- v.Serve(ctx, addr, New(Profile{TokenLabel: LabelMyNumberCard})) }()

	waitPending(clk, 1) // first attempt failed, retry timer armed
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer ln.Close()
	clk.Advance(time.Second)
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ans := exchange(t, conn, selectAP); !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("SELECT AP = % X", ans)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve() = %v", err)
	}
}

func TestServeVPCDGivesUpWhenCancelled(t *testing.T) {
	clk := clocktest.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	v := &VPCD{Clock: clk}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- v.Serve(ctx, freeAddr(t), New(Profile{})) }()
	waitPending(clk, 1)
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve() = %v, want context.Canceled", err)
	}
}

func TestBridge(t *testing.T) {
	v := newFakeVPCD(t)
	b := NewBridge(v.addr(), VPCD{})
	c := New(Profile{TokenLabel: LabelMyNumberCard})

	if err := b.Remove(); !errors.Is(err, ErrNoCard) {
		t.Fatalf("Remove() on an empty bridge = %v, want ErrNoCard", err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := v.ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- conn
	}()
	if err := b.Insert(t.Context(), c); err != nil {
		t.Fatalf("Insert() = %v", err)
	}
	conn := <-accepted
	defer conn.Close()
	if !b.Inserted() {
		t.Fatal("Inserted() = false after Insert")
	}
	if err := b.Insert(t.Context(), c); !errors.Is(err, ErrCardInserted) {
		t.Fatalf("second Insert() = %v, want ErrCardInserted", err)
	}
	if ans := exchange(t, conn, selectAP); !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("SELECT AP = % X", ans)
	}
	if err := b.Remove(); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	expectClosed(t, conn)
	if b.Inserted() {
		t.Fatal("Inserted() = true after Remove")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close() on an empty bridge = %v", err)
	}

	// A card that leaves by itself (FaultRemove) is removed without error.
	go func() {
		conn, err := v.ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- conn
	}()
	c.SetFault(FaultRemove, c.Commands())
	if err := b.Insert(t.Context(), c); err != nil {
		t.Fatalf("Insert() again = %v", err)
	}
	conn2 := <-accepted
	defer conn2.Close()
	send(t, conn2, selectAP)
	expectClosed(t, conn2)
	if err := b.Remove(); err != nil {
		t.Fatalf("Remove() after the card left = %v", err)
	}
}

func TestBridgeInsertUnreachable(t *testing.T) {
	clk := clocktest.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	b := NewBridge(freeAddr(t), VPCD{Clock: clk})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Insert(ctx, New(Profile{})) }()
	waitPending(clk, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Insert() = %v, want context.Canceled", err)
	}
	if b.Inserted() {
		t.Fatal("Inserted() = true after a failed Insert")
	}
}
