package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/internal/metricshttp"
)

// hqMetrics is serve's opt-in metrics listener and its registry.
type hqMetrics struct {
	ln  net.Listener
	reg *prometheus.Registry
}

// openMetrics listens on addr (metrics_listen) with a fresh registry
// holding the Go runtime's and process's metrics; nil when addr is empty.
func openMetrics(addr string) (*hqMetrics, error) {
	if addr == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := metricshttp.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen: %w", err)
	}
	return &hqMetrics{ln: ln, reg: reg}, nil
}

// registerer is where hq.Service registers its metrics (nil: none).
func (m *hqMetrics) registerer() prometheus.Registerer {
	if m == nil {
		return nil
	}
	return m.reg
}

// runService runs svc and, when m is set, the metrics listener, until ctx
// ends or one of them fails.
func runService(ctx context.Context, svc *hq.Service, m *hqMetrics, log *slog.Logger) error {
	if m == nil {
		return svc.Run(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return metricshttp.Serve(gctx, m.ln, m.reg, log) })
	g.Go(func() error { return svc.Run(gctx) })
	return g.Wait()
}
