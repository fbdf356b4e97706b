// Command tobira-release is the release tool of tobira: an admin signs and
// publishes releases with it, and on a device it is the stable guard that
// systemd runs before every start of tobira (it is not replaced by
// updates, so it still runs when a bad release cannot even start).
//
//	tobira-release release keygen|sign|verify|publish|devices|rollout ...
//	tobira-release firmware status|install|guard|rollback ...
//
// Every command answers --help. See docs/FIRMWARE.md.
package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/fwcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { cli.Main(run) }

// run runs one command line; errors are *cli.Error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, newRoot(), args, stdout, stderr)
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:     "tobira-release",
		Short:   "Sign and publish tobira releases; guard and switch them on a device",
		Long:    "tobira-release signs and publishes releases (admin, offline release key) and, on a device,\nis the stable guard systemd runs before every start of tobira. See docs/FIRMWARE.md.",
		Version: version,
	}
	root.AddCommand(fwcmd.Release(), fwcmd.Device())
	return root
}
