package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tobira-ac/tobira/policy"
)

// snapshotCmd handles `tobira snapshot import`: an admin on the device loads
// a JSON allowlist snapshot into policy.db (HQ pushes signed snapshots over
// MQTT once that link carries them).
func snapshotCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		return fmt.Errorf("%w: snapshot import --config FILE SNAPSHOT.json", errUsage)
	}
	fs := newFlagSet("snapshot import", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: snapshot import takes one SNAPSHOT.json", errUsage)
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	snap, err := policy.ReadSnapshotJSON(f)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
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
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(stdout, "snapshot version %d applied: %d allowed, %d revoked\n", snap.Version, len(snap.Allow), len(snap.Revoked))
	return nil
}
