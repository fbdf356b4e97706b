// Package fwcmd holds the firmware and release commands that several of
// tobira's binaries mount (package firmware does the work):
//
//	firmware status|install|guard|rollback   on a device: `tobira firmware ...`
//	                                         and `tobira-release firmware ...`
//	release keygen|sign|verify|publish|devices|rollout
//	                                         the admin's offline release key:
//	                                         `tobira-release release ...`;
//	                                         sign and verify also under
//	                                         `tobira-hq release ...`
//
// See docs/FIRMWARE.md.
package fwcmd

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/firmware"
)

// DefaultRoot is the update root of a device.
const DefaultRoot = "/var/lib/tobira/firmware"

// Device returns the "firmware" group: the commands run on a device.
func Device() *cobra.Command {
	var root string
	c := &cobra.Command{
		Use:   "firmware",
		Short: "Release slots and the health gate of this device (docs/FIRMWARE.md)",
	}
	c.PersistentFlags().StringVar(&root, "root", DefaultRoot, "update root of this device")
	c.AddCommand(status(&root), install(&root), guard(&root), rollback(&root))
	return c
}

// logger is the device commands' log, on stderr.
func logger(c *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
}

// status is "firmware status".
func status(root *string) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the releases, the trial and the last result (JSON)",
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := firmware.ReadStatus(*root)
			if err != nil {
				return err
			}
			return writeJSON(c.OutOrStdout(), st)
		},
	}
}

// install is "firmware install".
func install(root *string) *cobra.Command {
	var pubs, groups []string
	var device string
	var rate int64
	c := &cobra.Command{
		Use:   "install --pub K.pub [--pub ...] RELEASE.json [BINARY]",
		Short: "Stage and activate a release; without BINARY fetch the manifest's URL",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := firmware.ReadVerifier(pubs...)
			if err != nil {
				return err
			}
			env, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read release manifest: %w", err)
			}
			u := &firmware.Updater{Root: *root, Verifier: v, Device: firmware.Device{ID: device, Groups: groups},
				Logger: logger(c), RateLimit: rate}
			var f firmware.ChunkFetcher
			if len(args) == 2 {
				f = firmware.FileFetcher{Path: args[1]}
			}
			m, err := u.Install(c.Context(), env, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "activated %s; restart tobira to start its trial\n", m.Version)
			return nil
		},
	}
	c.Flags().StringArrayVar(&pubs, "pub", nil, "pinned release public key file (repeatable)")
	c.Flags().StringArrayVar(&groups, "group", nil, "group this device belongs to (repeatable)")
	c.Flags().StringVar(&device, "device", "", "this device's name")
	c.Flags().Int64Var(&rate, "rate", 0, "download limit in bytes per second (0: none)")
	_ = c.MarkFlagRequired("pub")
	return c
}

// guard is "firmware guard", systemd's ExecStartPre.
func guard(root *string) *cobra.Command {
	var maxAttempts int
	var deadline time.Duration
	c := &cobra.Command{
		Use:   "guard",
		Short: "Count a start and roll back a failed trial (systemd ExecStartPre)",
		RunE: func(c *cobra.Command, _ []string) error {
			g, err := firmware.Guard(c.Context(), firmware.GateOptions{Root: *root, MaxAttempts: maxAttempts,
				HealthDeadline: deadline, InvocationID: os.Getenv("INVOCATION_ID"), Logger: logger(c)})
			if err != nil {
				return err
			}
			if g.Ended != nil {
				return writeJSON(c.OutOrStdout(), g.Ended)
			}
			return nil
		},
	}
	c.Flags().IntVar(&maxAttempts, "max-attempts", firmware.DefaultMaxAttempts, "starts a release on trial gets")
	c.Flags().DurationVar(&deadline, "deadline", firmware.DefaultHealthDeadline, "time to report healthy after the switch")
	return c
}

// rollback is "firmware rollback".
func rollback(root *string) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback",
		Short: "Switch back to the previous release",
		RunE: func(c *cobra.Command, _ []string) error {
			res, err := firmware.Rollback(c.Context(), firmware.GateOptions{Root: *root, Logger: logger(c)})
			if err != nil {
				return err
			}
			return writeJSON(c.OutOrStdout(), res)
		},
	}
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
