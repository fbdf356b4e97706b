package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tobira-ac/tobira/controller"
	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/metricshttp"
	tsync "github.com/tobira-ac/tobira/sync"
)

// edgeMetrics is the opt-in metrics listener and its registry.
type edgeMetrics struct {
	ln  net.Listener
	reg *prometheus.Registry
	log *slog.Logger
}

// serve serves the registry until ctx ends.
func (m *edgeMetrics) serve(ctx context.Context) error {
	return metricshttp.Serve(ctx, m.ln, m.reg, m.log)
}

// buildMetrics opens the metrics listener when [metrics] listen is set:
// taps counted by every reader loop, the link and outbox read from sync,
// snapshot, clock and doors read from the store and the doors at scrape
// time. Without the key nothing is registered and nothing listens.
func (p *edgeParts) buildMetrics(st *stores, clk clock.Clock) error {
	addr := p.cfg.Metrics.Listen
	if addr == "" {
		return nil
	}
	reg, taps, err := newEdgeRegistry(st, p.edge, p.doors, clk)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	for _, l := range p.loops {
		l.Metrics = taps
	}
	ln, err := metricshttp.Listen(addr)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	p.metrics = &edgeMetrics{ln: ln, reg: reg, log: p.log}
	return nil
}

// newEdgeRegistry builds the edge's registry: the controller's tap and
// state metrics, the link's, and the Go runtime's and process's.
func newEdgeRegistry(st *stores, edge *tsync.Edge, doors []*door.Door, clk clock.Clock) (*prometheus.Registry, *controller.Metrics, error) {
	reg := prometheus.NewRegistry()
	taps, err := controller.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	statusDoors := make([]controller.StatusDoor, len(doors))
	for i, d := range doors {
		statusDoors[i] = d
	}
	if err := controller.RegisterStateMetrics(reg, st.policy, statusDoors, clk); err != nil {
		return nil, nil, err
	}
	if err := tsync.RegisterMetrics(reg, st.outbox, edge, clk); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	return reg, taps, nil
}
