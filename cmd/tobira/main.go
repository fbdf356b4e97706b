// Command tobira is the edge binary of the tobira access-control controller.
//
//	tobira run [--config /etc/tobira/tobira.toml]  run the doors of a real controller
//	tobira check-config FILE                      validate a configuration file
//	tobira readers                                list PC/SC readers
//	tobira card inspect                           print what a tapped card is
//	tobira snapshot import [--config FILE] SNAP.json  load an allowlist snapshot locally
//	tobira firmware status|install|guard|rollback release slots and the health gate
//	tobira doctor [--config FILE]                 check readers, GPIO, broker, keys, clock, data
//	tobira version                                print the version
//
// Every command answers --help.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/fwcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultConfigPath is where the subcommands look for the configuration
// file when --config is not given.
const defaultConfigPath = "/etc/tobira/tobira.toml"

func main() { cli.Main(run) }

// run runs one command line; errors are *cli.Error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, newRoot(), args, stdout, stderr)
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:     "tobira",
		Short:   "The edge controller of tobira: My Number Card readers, door relays, the HQ link",
		Version: version,
	}
	root.AddCommand(runCommand(), checkConfigCommand(), readersCommand(), cardCommand(),
		snapshotCommand(), doctorCommand(), fwcmd.Device(), versionCommand())
	return root
}

// configFlag registers --config, the configuration file, on c.
func configFlag(c *cobra.Command, usage string) *string {
	return c.Flags().String("config", defaultConfigPath, usage)
}

// runCommand is "tobira run".
func runCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "Run the doors configured in FILE (docs/CONFIG.md)",
	}
	cfg := configFlag(c, "configuration file")
	c.RunE = func(c *cobra.Command, _ []string) error { return runEdge(c.Context(), *cfg, c.ErrOrStderr()) }
	return c
}

// checkConfigCommand is "tobira check-config".
func checkConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "Validate FILE and the files it names",
		Args:  cobra.ExactArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return checkConfig(args[0], c.OutOrStdout()) },
	}
}

// readersCommand is "tobira readers".
func readersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "readers",
		Short: "List the PC/SC readers pcscd sees",
		RunE:  func(c *cobra.Command, _ []string) error { return listReaders(c.OutOrStdout()) },
	}
}

// versionCommand is "tobira version".
func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(c.OutOrStdout(), "tobira", version)
			return err
		},
	}
}
