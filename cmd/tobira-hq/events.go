package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/export"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/sync/proto"
)

// openStore opens the HQ store without a broker, for the offline commands.
// A missing file is an error: reading must not create an empty store.
func openStore(db, spool string) (*hq.Service, error) {
	if _, err := os.Stat(db); err != nil {
		return nil, fmt.Errorf("open HQ store: %w", err)
	}
	return hq.Open(hq.Config{Path: db, Spool: spool, Logger: slog.New(slog.DiscardHandler)})
}

// parseTime parses an optional RFC 3339 flag value.
func parseTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, cli.Usagef("--%s %q: want RFC 3339, e.g. 2026-04-01T09:00:00Z", flagName, s)
	}
	return t, nil
}

// newEventWriter returns an export writer for format "json" or "csv"; another
// format is a command-line mistake.
func newEventWriter(w io.Writer, format string) (*export.EventWriter, error) {
	ew, err := export.NewEventWriter(w, format)
	if errors.Is(err, export.ErrFormat) {
		return nil, cli.Usagef("--format %q, want json or csv", format)
	}
	return ew, err
}

// eventsCommand is "tobira-hq events": query and export stored events.
func eventsCommand() *cobra.Command {
	var db, granted, from, to, format string
	var q hq.EventQuery
	c := &cobra.Command{
		Use:   "events [filters] [--format json|csv]",
		Short: "Query and export stored events (times RFC 3339)",
	}
	f := c.Flags()
	f.StringVar(&db, "db", "hq.db", "HQ store (bbolt file)")
	f.StringVar(&q.Site, "site", "", "only this site")
	f.StringVar(&q.Device, "device", "", "only this device")
	f.StringVar(&q.Door, "door", "", "only this door")
	f.StringVar(&q.Credential, "credential", "", "only this credential (hex key): one person")
	f.StringVar(&q.Type, "type", "", "only this type: decision, door, system, ticket")
	f.StringVar(&q.Reason, "reason", "", "only this reason, e.g. revoked")
	f.StringVar(&granted, "granted", "", "decisions only: yes or no")
	f.StringVar(&from, "from", "", "events at or after this time (RFC 3339)")
	f.StringVar(&to, "to", "", "events before this time (RFC 3339)")
	f.IntVar(&q.Limit, "limit", 0, "stop after N events (0: all)")
	f.StringVar(&format, "format", "json", "json (one object per line) or csv")
	c.RunE = func(c *cobra.Command, _ []string) error {
		var err error
		if q.From, err = parseTime("from", from); err != nil {
			return err
		}
		if q.To, err = parseTime("to", to); err != nil {
			return err
		}
		switch granted {
		case "":
		case "yes", "no":
			g := granted == "yes"
			q.Granted = &g
		default:
			return cli.Usagef("--granted %q, want yes or no", granted)
		}
		return events(db, q, format, c.OutOrStdout())
	}
	return c
}

// events writes the events of db that match q in format.
func events(db string, q hq.EventQuery, format string, stdout io.Writer) error {
	w, err := newEventWriter(stdout, format)
	if err != nil {
		return err
	}
	svc, err := openStore(db, "")
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Query(q, w.Write); err != nil {
		return err
	}
	return w.Flush()
}

// tailCommand is "tobira-hq tail": a read-only subscriber that prints the
// events passing the broker.
func tailCommand() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "tail [--format json|csv]",
		Short: "Print events as they pass the broker (resends included)",
	}
	c.Flags().StringVar(&format, "format", "json", "json or csv")
	bf := addBrokerFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		return tail(c.Context(), bf, format, c.OutOrStdout(), logger(c))
	}
	return c
}

// tail prints the events passing the broker until ctx ends.
func tail(ctx context.Context, bf *brokerFlags, format string, stdout io.Writer, log *slog.Logger) error {
	tc, err := bf.tls()
	if err != nil {
		return err
	}
	w, err := newEventWriter(stdout, format)
	if err != nil {
		return err
	}
	lines := make(chan hq.StoredEvent, 1024)
	opts := mqtt.NewClientOptions().AddBroker(bf.url).SetClientID("tobira-hq-tail-" + proto.NewCommandID()[:8]).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(true).SetOrderMatters(true)
	if tc != nil {
		opts.SetTLSConfig(tc)
	}
	onEvents := func(_ mqtt.Client, m mqtt.Message) {
		site, device, err := proto.ParseEventsTopic(m.Topic())
		if err != nil {
			return
		}
		b, err := proto.DecodeBatch(m.Payload())
		if err != nil {
			log.Warn("malformed events message", "topic", m.Topic(), "err", err)
			return
		}
		for _, ev := range b.Events {
			select {
			case lines <- hq.StoredEvent{Site: site, Device: device, Event: ev}:
			case <-ctx.Done():
				return
			}
		}
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe(proto.EventsSubscription, 0, onEvents) })
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(mqttconn.DefaultTokenTimeout) || tok.Error() != nil {
		return fmt.Errorf("connect to %s: %v", bf.url, tok.Error())
	}
	defer c.Disconnect(250)
	for {
		select {
		case <-ctx.Done():
			return w.Flush()
		case ev := <-lines:
			if err := w.Write(ev); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

// fleetCommand is "tobira-hq fleet".
func fleetCommand() *cobra.Command {
	var db, spool, format string
	c := &cobra.Command{
		Use:   "fleet [--format text|json]",
		Short: "Devices: online, versions, snapshot drift, outbox depth",
	}
	c.Flags().StringVar(&db, "db", "hq.db", "HQ store (bbolt file)")
	c.Flags().StringVar(&spool, "spool", "", "snapshot spool, for the expected versions (drift)")
	c.Flags().StringVar(&format, "format", "text", "text or json")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if format != "text" && format != "json" {
			return cli.Usagef("--format %q, want text or json", format)
		}
		return fleet(db, spool, format, c.OutOrStdout())
	}
	return c
}

// fleet writes the devices known to the store db in format.
func fleet(db, spool, format string, stdout io.Writer) error {
	hq, err := openStore(db, spool)
	if err != nil {
		return err
	}
	defer hq.Close()
	devs, err := hq.Fleet()
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		for _, d := range devs {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tDEVICE\tONLINE\tVERSION\tSNAPSHOT\tEXPECTED\tDRIFT\tOUTBOX\tACKED\tCLOCK\tSEEN\tREFUSED")
	for _, d := range devs {
		seen := "-"
		if !d.Seen.IsZero() {
			seen = d.Seen.UTC().Format(time.RFC3339)
		}
		clock := "untrusted"
		if d.Status.ClockTrusted {
			clock = "trusted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%d\t%d\t%t\t%d\t%d\t%s\t%s\t%s\n", d.Site, d.Device, d.Online, cli.OrDash(d.Status.Version),
			d.Status.Snapshot.Version, d.ExpectedVersion, d.Drift, d.Status.OutboxDepth, d.Acked, clock, seen, refusedText(d.Refused))
	}
	return tw.Flush()
}

// refusedText shows refusal counts as "reason=n,..." sorted by reason,
// "-" when none.
func refusedText(counts map[string]uint64) string {
	if len(counts) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(counts))
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", reason, counts[reason]))
	}
	return strings.Join(parts, ",")
}
