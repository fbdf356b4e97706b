// Command tobira is the edge binary of the tobira access-control controller.
//
//	tobira run --config /etc/tobira/tobira.toml   run the doors of a real controller
//	tobira check-config FILE                      validate a configuration file
//	tobira readers                                list PC/SC readers
//	tobira card inspect                           print what a tapped card is
//	tobira snapshot import --config FILE SNAP.json  load an allowlist snapshot locally
//	tobira firmware ...                           release slots and the health gate
//	tobira version                                print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tobira-ac/tobira/firmware"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

// defaultConfigPath is where the subcommands look for the configuration
// file when --config is not given.
const defaultConfigPath = "/etc/tobira/tobira.toml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "tobira:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tobira:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  tobira run --config FILE                 run the doors configured in FILE
  tobira check-config FILE                 validate FILE and the files it names
  tobira readers                           list the PC/SC readers pcscd sees
  tobira card inspect [--config FILE] [--reader NAME]
                                           print what a tapped card is; stores nothing
  tobira snapshot import --config FILE SNAPSHOT.json
                                           load an allowlist snapshot into policy.db
  tobira firmware status|install|guard|rollback ...
                                           release slots and the health gate (docs/FIRMWARE.md)
  tobira version                           print the version`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", errUsage, usage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		fs := newFlagSet("run", stderr)
		cfg := fs.String("config", defaultConfigPath, "configuration file")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		return runEdge(ctx, *cfg, stderr)
	case "check-config":
		if len(rest) != 1 {
			return fmt.Errorf("%w: check-config takes one FILE", errUsage)
		}
		return checkConfig(rest[0], stdout)
	case "readers":
		return listReaders(stdout)
	case "snapshot":
		return snapshotCmd(ctx, rest, stdout, stderr)
	case "card":
		return cardCmd(ctx, rest, stdout, stderr)
	case "firmware":
		if err := firmware.RunDeviceCLI(ctx, rest, stdout, stderr); err != nil {
			if errors.Is(err, firmware.ErrUsage) {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			return err
		}
		return nil
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "tobira", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", errUsage, cmd, usage)
	}
}

// newFlagSet returns the flag set of subcommand name; its errors and help
// go to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args into fs; a mistake is wrapped in errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}
