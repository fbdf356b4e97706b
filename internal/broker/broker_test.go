package broker_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/internal/broker"
)

// connect returns a connected paho client; it is disconnected in Cleanup.
func connect(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func TestRoundTrip(t *testing.T) {
	b, err := broker.Start(t.Context(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if strings.HasSuffix(b.Addr(), ":0") || b.URL() != "tcp://"+b.Addr() {
		t.Fatalf("Addr() = %q, URL() = %q; want the bound port", b.Addr(), b.URL())
	}

	got := make(chan string, 1)
	sub := connect(t, b.URL(), "sub")
	tok := sub.Subscribe("tobira/v1/s/d/ack", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := connect(t, b.URL(), "pub")
	if tok := pub.Publish("tobira/v1/s/d/ack", 1, false, `{"seq":1}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if p := <-got; p != `{"seq":1}` {
		t.Fatalf("subscriber got %q, want %q", p, `{"seq":1}`)
	}
}

func TestCloseAndContextStop(t *testing.T) {
	tests := []struct {
		name string
		stop func(b *broker.Broker, cancel context.CancelFunc)
	}{
		{"Close", func(b *broker.Broker, _ context.CancelFunc) { b.Close() }},
		{"context", func(b *broker.Broker, cancel context.CancelFunc) {
			cancel()
			<-b.Done()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			b, err := broker.Start(ctx, "127.0.0.1:0", nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.stop(b, cancel)
			select {
			case <-b.Done():
			default:
				t.Fatal("Done not closed after stop")
			}
			if err := b.Close(); err != nil {
				t.Fatalf("Close after stop: %v", err)
			}
			if c, err := net.Dial("tcp", b.Addr()); err == nil {
				c.Close()
				t.Fatalf("%s still accepts connections after stop", b.Addr())
			}
		})
	}
}

func TestStartOnTakenAddress(t *testing.T) {
	b, err := broker.Start(t.Context(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := broker.Start(t.Context(), b.Addr(), nil); err == nil || !strings.Contains(err.Error(), b.Addr()) {
		t.Fatalf("second Start on %s: err = %v, want an error naming the address", b.Addr(), err)
	}
}
