// Command tobira-hq is the headquarters end of tobira: it stores the events
// of every device and acknowledges them end to end.
//
//	tobira-hq serve --broker tcp://127.0.0.1:1883 --db /var/lib/tobira-hq/hq.db
//	tobira-hq events --db FILE --site S --device D    print stored events as JSON lines
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	tsync "github.com/tobira-ac/tobira/sync"
)

var version = "dev"

var errUsage = errors.New("usage")

const usage = `usage:
  tobira-hq serve --broker URL --db FILE   store and acknowledge device events
  tobira-hq events --db FILE --site S --device D
                                           print a device's stored events as JSON lines
  tobira-hq version`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tobira-hq:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", errUsage, usage)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "hq.db", "HQ event store (bbolt file)")
	switch args[0] {
	case "serve":
		brokerURL := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
		clientID := fs.String("client-id", "tobira-hq", "MQTT client ID")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		log := slog.New(slog.NewTextHandler(stderr, nil))
		hq, err := tsync.OpenHQ(tsync.HQConfig{Broker: *brokerURL, ClientID: *clientID, Path: *db, Logger: log})
		if err != nil {
			return err
		}
		defer hq.Close()
		log.Info("tobira-hq serving", "version", version, "broker", *brokerURL, "db", *db)
		return hq.Run(ctx)
	case "events":
		site := fs.String("site", "", "site name")
		device := fs.String("device", "", "device name")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if *site == "" || *device == "" {
			return fmt.Errorf("%w: events needs --site and --device", errUsage)
		}
		hq, err := tsync.OpenHQ(tsync.HQConfig{Path: *db})
		if err != nil {
			return err
		}
		defer hq.Close()
		evs, err := hq.Events(*site, *device)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return nil
	case "version":
		fmt.Fprintln(stdout, "tobira-hq", version)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", errUsage, args[0], usage)
	}
}
