package main

import (
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/pgtest"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestServeRegistryParts: serve's ticket rules and enrollment sink answer
// from the registry on both backends; PostgreSQL's is opened once and kept,
// a bbolt file is opened per use (admin commands can use it in between).
func TestServeRegistryParts(t *testing.T) {
	for _, tt := range []struct {
		name string
		at   func(t *testing.T) registryAt
	}{
		{"bbolt", func(t *testing.T) registryAt { return registryAt{path: filepath.Join(t.TempDir(), "registry.db")} }},
		{"postgres", func(t *testing.T) registryAt {
			url := pgtest.DB(t)
			if out, err := runHQ(t, "migrate", "--store-url", url); err != nil {
				t.Fatalf("migrate: %v\n%s", err, out)
			}
			return registryAt{url: url}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.at(t)
			for _, table := range []string{"doors", "events"} {
				csv := filepath.Join("..", "..", "hq", "registry", "testdata", table+".csv")
				args := []string{"import", table, "--site", "s1", "--csv", csv, "--registry", at.path, "--store-url", at.url}
				if out, err := runHQ(t, args...); err != nil {
					t.Fatalf("import %s: %v\n%s", table, err, out)
				}
			}
			shared, err := openSharedRegistry(t.Context(), at, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer shared.Close()
			if kept := shared.kept != nil; kept != (at.url != "") {
				t.Errorf("registry kept open: %v; want it only for PostgreSQL", kept)
			}
			rules := registryRules{shared}
			if groups, ok, err := rules.DoorGroups(t.Context(), "s1", "gate-2"); err != nil || !ok || !slices.Equal(groups, []string{"gates"}) {
				t.Errorf("DoorGroups(gate-2) = %v, %v, %v; want [gates]", groups, ok, err)
			}
			if ev, ok, err := rules.TicketEvent(t.Context(), "s1", "concert"); err != nil || !ok || ev.DoorGroup != "gates" {
				t.Errorf("TicketEvent(concert) = %+v, %v, %v; want door group gates", ev, ok, err)
			}
			if _, ok, err := rules.TicketEvent(t.Context(), "s1", "none"); err != nil || ok {
				t.Errorf("TicketEvent(none) = %v, %v; want not found", ok, err)
			}
			sink := registrySink{shared}
			for range 2 { // a device re-sending is stored once
				if err := sink.StoreEnrollment(t.Context(), proto.Enrollment{Site: "s1", Device: "d1", Seq: 4, Record: []byte(`{}`)}); err != nil {
					t.Fatal(err)
				}
			}
			var list []registry.Pending
			err = shared.with(t.Context(), func(r *registry.Registry) error {
				list, err = r.PendingList()
				return err
			})
			if err != nil || len(list) != 1 {
				t.Errorf("pending after storing one enrollment twice: %d, %v; want 1", len(list), err)
			}
		})
	}
}
