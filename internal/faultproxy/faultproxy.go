// Package faultproxy is a TCP proxy on loopback for fault tests: it forwards
// connections to a target address and cuts each one after a random number of
// bytes, as a flaky network, a NAT timeout or a crashed middlebox would.
//
// A cut closes both sides at once, in the middle of whatever was being
// forwarded (an MQTT packet, a TLS record), so that the peers see a torn
// stream and not a clean end. After Config.MaxCuts cuts the proxy forwards
// faithfully, so that a test that waits for progress always ends.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
)

// Config configures a Proxy.
type Config struct {
	// Target is the address connections are forwarded to, e.g.
	// "127.0.0.1:1883". Required.
	Target string
	// MinBytes and MaxBytes bound the bytes (both directions together) a
	// connection may carry before it is cut: a number is drawn uniformly
	// from [MinBytes, MaxBytes] for each connection. MaxBytes 0 never cuts.
	MinBytes, MaxBytes int
	// MaxCuts is how many connections are cut at most; after that the
	// proxy forwards faithfully. 0 means no limit.
	MaxCuts int
	// Seed seeds the random choice of cut points, so that a failing run can
	// be repeated.
	Seed uint64
	// Logger receives a line per cut; nil discards.
	Logger *slog.Logger
}

// Proxy is a running fault-injecting TCP proxy.
type Proxy struct {
	cfg  Config
	ln   net.Listener
	log  *slog.Logger
	cuts atomic.Int64
	conn atomic.Int64
	down atomic.Bool

	mu     sync.Mutex
	rnd    *rand.Rand
	active map[net.Conn]net.Conn // client -> server
	closed bool
	wg     sync.WaitGroup
}

// Start listens on a free 127.0.0.1 port and forwards every connection to
// cfg.Target until Close is called or ctx ends.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("faultproxy: no target address")
	}
	if cfg.MinBytes < 0 || cfg.MaxBytes < cfg.MinBytes && cfg.MaxBytes != 0 {
		return nil, fmt.Errorf("faultproxy: byte range [%d, %d] is empty", cfg.MinBytes, cfg.MaxBytes)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen for target %s: %w", cfg.Target, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		cfg:    cfg,
		ln:     ln,
		log:    log.With("proxy", ln.Addr().String(), "target", cfg.Target),
		rnd:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		active: make(map[net.Conn]net.Conn),
	}
	p.wg.Add(1)
	go p.accept()
	go func() {
		<-ctx.Done()
		p.Close()
	}()
	return p, nil
}

// Addr returns the proxy's address, e.g. "127.0.0.1:40123".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns the proxy's address as a paho broker URL with scheme.
func (p *Proxy) URL(scheme string) string { return scheme + "://" + p.Addr() }

// Cuts returns how many connections the proxy has cut so far.
func (p *Proxy) Cuts() int { return int(p.cuts.Load()) }

// Connections returns how many connections the proxy has accepted so far.
func (p *Proxy) Connections() int { return int(p.conn.Load()) }

// CutAll closes every open connection now (a network outage), counting
// each as a cut.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, s := range p.active {
		c.Close()
		s.Close()
		p.cuts.Add(1)
	}
}

// SetDown takes the network down (true: every open connection is cut and
// new ones are closed at once) or brings it back up (false).
func (p *Proxy) SetDown(down bool) {
	p.down.Store(down)
	if down {
		p.CutAll()
	}
}

// Close stops listening, closes every open connection and waits for the
// forwarding goroutines to end. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c, s := range p.active {
		c.Close()
		s.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy: close listener %s: %w", p.Addr(), err)
	}
	return nil
}

// accept serves connections until the listener closes.
func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conn.Add(1)
		if p.down.Load() {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// budget draws the number of bytes the next connection may carry; -1 means
// no limit.
func (p *Proxy) budget() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.MaxBytes == 0 || p.cfg.MaxCuts > 0 && int(p.cuts.Load()) >= p.cfg.MaxCuts {
		return -1
	}
	return int64(p.cfg.MinBytes + p.rnd.IntN(p.cfg.MaxBytes-p.cfg.MinBytes+1))
}

// track registers a forwarded pair as open; false means the proxy is
// closing.
func (p *Proxy) track(client, server net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.active[client] = server
	return true
}

// untrack forgets the pair of client.
func (p *Proxy) untrack(client net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.active, client)
}

// serve forwards one client connection to the target until either side
// ends or the byte budget runs out.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	d := net.Dialer{}
	server, err := d.Dial("tcp", p.cfg.Target)
	if err != nil {
		p.log.Warn("cannot reach target", "err", err)
		return
	}
	defer server.Close()
	if !p.track(client, server) {
		return
	}
	defer p.untrack(client)

	budget := p.budget()
	var left atomic.Int64
	left.Store(budget)
	limited := budget >= 0
	var once sync.Once
	cut := func(dir string) {
		once.Do(func() {
			p.cuts.Add(1)
			p.log.Info("cutting connection", "direction", dir, "client", client.RemoteAddr().String())
			client.Close()
			server.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, limited, &left, func() { cut("client->target") }) }()
	go func() { defer wg.Done(); p.pipe(client, server, limited, &left, func() { cut("target->client") }) }()
	wg.Wait()
}

// pipe copies src to dst; when limited, it spends left (shared by both
// directions) and, when left runs out, forwards the bytes that fit and
// calls cut.
func (p *Proxy) pipe(dst, src net.Conn, limited bool, left *atomic.Int64, cut func()) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			cutNow := false
			if limited {
				rest := left.Add(-int64(n))
				if rest < 0 {
					keep := max(int64(n)+rest, 0)
					chunk = chunk[:keep]
					cutNow = true
				}
			}
			if len(chunk) > 0 {
				if _, werr := dst.Write(chunk); werr != nil {
					return
				}
			}
			if cutNow {
				cut()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.log.Debug("connection ended", "err", err)
			}
			return
		}
	}
}
