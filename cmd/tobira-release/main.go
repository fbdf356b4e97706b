// Command tobira-release is the release tool of tobira: an admin signs and
// publishes releases with it, and on a device it is the stable guard that
// systemd runs before every start of tobira (it is not replaced by
// updates, so it still runs when a bad release cannot even start).
//
//	tobira-release release keygen|sign|verify|publish|devices|rollout ...
//	tobira-release firmware status|install|guard|rollback ...
//
// See docs/FIRMWARE.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tobira-ac/tobira/firmware"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tobira-release:", err)
		if errors.Is(err, firmware.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = "usage: tobira-release release|firmware COMMAND ...\n\n" + firmware.ReleaseUsage + "\n\n" + firmware.DeviceUsage

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", firmware.ErrUsage, usage)
	}
	switch args[0] {
	case "release":
		return firmware.RunReleaseCLI(ctx, args[1:], stdout, stderr)
	case "firmware":
		return firmware.RunDeviceCLI(ctx, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", firmware.ErrUsage, args[0], usage)
	}
}
