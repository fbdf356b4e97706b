// Command tobira-demo runs the whole tobira loop in one process on
// embedded defaults: an embedded MQTT broker, an in-process HQ, one door
// on a simulated GPIO relay, and simulated My Number Cards tapped one
// after another (make demo). It exits 0 only if every card got the reason
// it should and every event was acknowledged by HQ.
//
// The demo links HQ and the embedded broker; the edge binary, tobira, links
// neither.
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
)

// usage is what -h, --help and help print.
const usage = `usage: tobira-demo [--verbose] [--console]

Runs the whole loop on embedded defaults: an embedded MQTT broker on
127.0.0.1, an in-process HQ, one door on a simulated GPIO relay and six
simulated My Number Cards. Exits 0 only if every card got the reason it
should and every event was acknowledged by HQ.

  --verbose   log every step to stderr
  --console   then keep running (Ctrl-C stops): serve HQ's web console on
              127.0.0.1, print its URL and a one-time admin login, and keep
              tapping simulated cards every few seconds (make demo-console)`

// version is the demo's release, set at build time (-X main.version);
// the demo device reports it in its status.
var version = "dev"

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "tobira-demo:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tobira-demo:", err)
		os.Exit(1)
	}
}

// run parses args and runs the demo; help goes to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tobira-demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // usage mistakes are returned, help printed below
	verbose := fs.Bool("verbose", false, "log every step to stderr")
	withConsole := fs.Bool("console", false, "keep running with HQ's web console served")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp), err == nil && fs.NArg() == 1 && fs.Arg(0) == "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case err != nil:
		return fmt.Errorf("%w: %w\n%s", errUsage, err, usage)
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q\n%s", errUsage, fs.Arg(0), usage)
	}
	return runDemo(ctx, stdout, stderr, demoOptions{verbose: *verbose, console: *withConsole})
}
