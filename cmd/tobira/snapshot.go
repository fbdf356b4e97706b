package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/policy"
)

// snapshotCommand is the "snapshot" group: "snapshot import".
func snapshotCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "The allowlist snapshot of this controller",
	}
	imp := &cobra.Command{
		Use:   "import [--config FILE] SNAPSHOT.json",
		Short: "Load an allowlist snapshot (JSON) into policy.db",
		Args:  cobra.ExactArgs(1),
	}
	cfgPath := configFlag(imp, "configuration file")
	imp.RunE = func(c *cobra.Command, args []string) error {
		return importSnapshot(c.Context(), *cfgPath, args[0], c.OutOrStdout())
	}
	c.AddCommand(imp)
	return c
}

// importSnapshot is "tobira snapshot import": an admin on the device loads
// a JSON allowlist snapshot into policy.db (HQ pushes signed snapshots over
// MQTT).
func importSnapshot(ctx context.Context, cfgPath, file string, stdout io.Writer) error {
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	snap, err := policy.ReadSnapshotJSON(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	store, err := policy.Open(filepath.Join(cfg.DataDir, "policy.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.ApplyFull(ctx, snap); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(stdout, "snapshot version %d applied: %d allowed, %d revoked\n", snap.Version, len(snap.Allow), len(snap.Revoked))
	return nil
}
