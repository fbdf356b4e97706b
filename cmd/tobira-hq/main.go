// Command tobira-hq is the headquarters end of tobira: it stores the events
// of every device and acknowledges them end to end, keeps the devices'
// status, and signs and sends snapshots and commands.
//
//	tobira-hq serve --broker URL --db FILE [--spool DIR] [--registry FILE] [--key FILE]   the HQ service
//	tobira-hq import TABLE --registry FILE --site S --csv FILE  people, credentials, doors, ... (docs/HQ.md)
//	tobira-hq enroll list|approve|reject ... / enroll --record FILE ...
//	tobira-hq revoke --registry FILE --site S --credential HEX
//	tobira-hq crl import --registry FILE --site S --crl FILE --ca FILE
//	tobira-hq events --db FILE [filters] [--format json|csv]   query and export stored events
//	tobira-hq tail --broker URL [--format json|csv]            follow events live
//	tobira-hq fleet --db FILE [--spool DIR] [--format text|json]
//	tobira-hq keygen --out PREFIX                              Ed25519 signing key pair
//	tobira-hq snapshot publish --broker URL --key FILE --registry FILE --full|--delta --site S [--device D...]
//	tobira-hq snapshot publish --broker URL --key FILE --file F --version N [--delta-from M] --site S --device D...
//	tobira-hq command send --broker URL --key FILE --site S --device D --action A [--door --mode --credential]
//
// The bbolt store allows one process at a time: run events and fleet
// against a stopped service or a copy of its file.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

var version = "dev"

var errUsage = errors.New("usage")

const usage = `usage:
  tobira-hq serve --broker URL --db FILE [--spool DIR] [--registry FILE] [--key FILE] [TLS]
                                           store and acknowledge events, keep device status,
                                           re-send snapshot chunks from the spool, take
                                           enrollments into the registry, relay ticket marks
  tobira-hq import TABLE --registry FILE --site S --csv FILE
                                           tables: site, people, credentials, links, revocations,
                                           doors, areas, levels, schedules, holidays, events
  tobira-hq enroll list --registry FILE
  tobira-hq enroll approve --registry FILE --id ID --person P --anchors FILE [--valid-until T]
  tobira-hq enroll reject --registry FILE --id ID
  tobira-hq enroll --registry FILE --record FILE --site S --person P --anchors FILE [--valid-until T]
  tobira-hq revoke --registry FILE --site S (--credential HEX | --issuer-key-id HEX --serial HEX)
  tobira-hq crl import --registry FILE --site S --crl FILE --ca FILE
  tobira-hq events --db FILE [--site S] [--device D] [--door D] [--credential HEX]
                   [--type T] [--reason R] [--granted yes|no] [--from T] [--to T]
                   [--limit N] [--format json|csv]
                                           query and export stored events (times RFC 3339)
  tobira-hq release [--broker URL] [TLS] publish|serve|devices|rollout|keygen|sign|verify ...
                                           firmware releases over MQTT (docs/FIRMWARE.md)
  tobira-hq tail --broker URL [--format json|csv] [TLS]
                                           print events as they pass the broker (resends included)
  tobira-hq fleet --db FILE [--spool DIR] [--format text|json]
                                           devices: online, versions, snapshot drift, outbox depth
  tobira-hq keygen --out PREFIX            write PREFIX.key (0600) and PREFIX.pub
  tobira-hq snapshot publish --broker URL --key FILE --registry FILE (--full | --delta) --site S
                   [--device D ...] [--spool DIR] [--wait DUR] [TLS]
                                           build from the registry: a delta from each device's
                                           reported version (full when none fits)
  tobira-hq snapshot publish --broker URL --key FILE --file F --version N [--delta-from M]
                   --site S --device D [--device D2 ...] [--spool DIR] [--wait DUR] [TLS]
  tobira-hq command send --broker URL --key FILE --site S --device D --action A
                   [--door D] [--mode M] [--credential HEX] [--ttl DUR] [--wait DUR] [TLS]
                   actions: unlock, set_mode, lockdown, release, resync, forgive_apb
  tobira-hq version
TLS: --tls-ca FILE --tls-cert FILE --tls-key FILE (for ssl:// brokers)`

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

// brokerFlags are the broker URL and TLS options shared by the connecting
// commands.
type brokerFlags struct{ url, ca, cert, key *string }

// addBroker registers the broker flags on fs.
func addBroker(fs *flag.FlagSet) brokerFlags {
	return brokerFlags{
		url:  fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL"),
		ca:   fs.String("tls-ca", "", "PEM CA file that signs the broker's certificate"),
		cert: fs.String("tls-cert", "", "PEM client certificate (CN tobira-hq)"),
		key:  fs.String("tls-key", "", "PEM client key"),
	}
}

// hqConfig returns an HQ configuration holding the broker URL, the TLS
// configuration and log.
func (f brokerFlags) hqConfig(log *slog.Logger) (hq.Config, error) {
	tc, err := f.tls()
	if err != nil {
		return hq.Config{}, err
	}
	return hq.Config{Broker: *f.url, TLS: tc, Logger: log}, nil
}

// tls returns the TLS configuration, nil when no TLS flag is set.
func (f brokerFlags) tls() (*tls.Config, error) {
	if *f.ca == "" && *f.cert == "" && *f.key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *f.ca != "" {
		b, err := os.ReadFile(*f.ca)
		if err != nil {
			return nil, fmt.Errorf("read --tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", *f.ca)
		}
	}
	if *f.cert != "" || *f.key != "" {
		pair, err := tls.LoadX509KeyPair(*f.cert, *f.key)
		if err != nil {
			return nil, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", *f.cert, *f.key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", errUsage, usage)
	}
	name := args[0]
	sub := ""
	switch {
	case (name == "snapshot" || name == "command" || name == "crl") && len(args) > 1:
		name += " " + args[1]
		args = args[1:]
	case (name == "import" || name == "enroll") && len(args) > 1 && !strings.HasPrefix(args[1], "-"):
		sub = args[1]
		args = args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	parse := func() error {
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, name, fs.Arg(0))
		}
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch name {
	case "serve":
		db := fs.String("db", "hq.db", "HQ store (bbolt file)")
		clientID := fs.String("client-id", "tobira-hq", "MQTT client ID")
		spool := fs.String("spool", "", "directory of published snapshots (see snapshot publish)")
		reg := fs.String("registry", "", "HQ registry: enrollments from devices wait there for approval (empty: not taken)")
		keyFile := fs.String("key", "", "HQ signing key: signs the ticket marks relayed between gates (empty: not relayed)")
		bf := addBroker(fs)
		if err := parse(); err != nil {
			return err
		}
		cfg, err := bf.hqConfig(log)
		if err != nil {
			return err
		}
		cfg.ClientID, cfg.Path, cfg.Spool = *clientID, *db, *spool
		if *reg != "" {
			cfg.Enrollments = registrySink{path: *reg, log: log}
		}
		if *keyFile != "" {
			if cfg.Key, err = signed.ReadPrivateKey(*keyFile); err != nil {
				return err
			}
		}
		hq, err := hq.Open(cfg)
		if err != nil {
			return err
		}
		defer hq.Close()
		log.Info("tobira-hq serving", "version", version, "broker", cfg.Broker, "db", *db, "spool", *spool)
		return hq.Run(ctx)
	case "events":
		return events(fs, parse, stdout)
	case "tail":
		return tail(ctx, fs, parse, stdout, log)
	case "fleet":
		return fleet(fs, parse, stdout)
	case "keygen":
		out := fs.String("out", "", "file name prefix: writes PREFIX.key and PREFIX.pub")
		if err := parse(); err != nil {
			return err
		}
		if *out == "" {
			return fmt.Errorf("%w: keygen needs --out", errUsage)
		}
		pub, priv, err := signed.GenerateKey()
		if err != nil {
			return err
		}
		if err := signed.WriteKeyPair(*out+".key", *out+".pub", priv); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s.key (keep secret) and %s.pub (pin on devices); key id %s\n", *out, *out, signed.KeyID(pub))
		return nil
	case "import":
		if sub == "" {
			return fmt.Errorf("%w: import needs a table: %s", errUsage, strings.Join(registry.Tables, ", "))
		}
		return importCSV(ctx, sub, fs, parse, stdout, log)
	case "enroll":
		return enroll(ctx, sub, fs, parse, stdout, log)
	case "revoke":
		return revoke(ctx, fs, parse, stdout, log)
	case "crl import":
		return crlImport(ctx, fs, parse, stdout, log)
	case "snapshot publish":
		return publishSnapshot(ctx, fs, parse, stdout, log)
	case "command send":
		return sendCommand(ctx, fs, parse, stdout, log)
	case "release":
		bf := addBroker(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		cfg, err := bf.hqConfig(log)
		if err != nil {
			return err
		}
		err = hq.RunReleaseCLI(ctx, cfg, fs.Args(), stdout, stderr)
		if errors.Is(err, firmware.ErrUsage) {
			return fmt.Errorf("%w: %s", errUsage, strings.TrimPrefix(err.Error(), "usage: "))
		}
		return err
	case "version":
		fmt.Fprintln(stdout, "tobira-hq", version)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", errUsage, name, usage)
	}
}

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
		return time.Time{}, fmt.Errorf("%w: --%s %q: want RFC 3339, e.g. 2026-04-01T09:00:00Z", errUsage, flagName, s)
	}
	return t, nil
}

// eventWriter writes events as JSON lines or CSV.
type eventWriter struct {
	json *json.Encoder
	csv  *csv.Writer
}

// csvHeader is the first line of a CSV export.
var csvHeader = []string{"site", "device", "seq", "time", "type", "door", "granted", "reason", "credential", "token", "decision_us", "detail"}

// newEventWriter returns a writer for format "json" or "csv".
func newEventWriter(w io.Writer, format string) (*eventWriter, error) {
	switch format {
	case "json":
		return &eventWriter{json: json.NewEncoder(w)}, nil
	case "csv":
		c := csv.NewWriter(w)
		if err := c.Write(csvHeader); err != nil {
			return nil, err
		}
		return &eventWriter{csv: c}, nil
	default:
		return nil, fmt.Errorf("%w: --format %q, want json or csv", errUsage, format)
	}
}

// write writes one event.
func (w *eventWriter) write(ev hq.StoredEvent) error {
	if w.json != nil {
		return w.json.Encode(ev)
	}
	return w.csv.Write([]string{ev.Site, ev.Device, strconv.FormatUint(ev.Seq, 10), ev.Time.UTC().Format(time.RFC3339Nano),
		ev.Type, ev.Door, strconv.FormatBool(ev.Granted), ev.Reason, ev.Credential, ev.Token,
		strconv.FormatInt(ev.DecisionUS, 10), ev.Detail})
}

// flush ends the output.
func (w *eventWriter) flush() error {
	if w.csv != nil {
		w.csv.Flush()
		return w.csv.Error()
	}
	return nil
}

// events implements `tobira-hq events`.
func events(fs *flag.FlagSet, parse func() error, stdout io.Writer) error {
	db := fs.String("db", "hq.db", "HQ store (bbolt file)")
	var q hq.EventQuery
	fs.StringVar(&q.Site, "site", "", "only this site")
	fs.StringVar(&q.Device, "device", "", "only this device")
	fs.StringVar(&q.Door, "door", "", "only this door")
	fs.StringVar(&q.Credential, "credential", "", "only this credential (hex key): one person")
	fs.StringVar(&q.Type, "type", "", "only this type: decision, door, system")
	fs.StringVar(&q.Reason, "reason", "", "only this reason, e.g. revoked")
	granted := fs.String("granted", "", "decisions only: yes or no")
	from := fs.String("from", "", "events at or after this time (RFC 3339)")
	to := fs.String("to", "", "events before this time (RFC 3339)")
	fs.IntVar(&q.Limit, "limit", 0, "stop after N events (0: all)")
	format := fs.String("format", "json", "json (one object per line) or csv")
	if err := parse(); err != nil {
		return err
	}
	var err error
	if q.From, err = parseTime("from", *from); err != nil {
		return err
	}
	if q.To, err = parseTime("to", *to); err != nil {
		return err
	}
	switch *granted {
	case "":
	case "yes", "no":
		g := *granted == "yes"
		q.Granted = &g
	default:
		return fmt.Errorf("%w: --granted %q, want yes or no", errUsage, *granted)
	}
	w, err := newEventWriter(stdout, *format)
	if err != nil {
		return err
	}
	hq, err := openStore(*db, "")
	if err != nil {
		return err
	}
	defer hq.Close()
	if err := hq.Query(q, w.write); err != nil {
		return err
	}
	return w.flush()
}

// tail implements `tobira-hq tail`: a read-only subscriber that prints the
// events passing the broker.
func tail(ctx context.Context, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	format := fs.String("format", "json", "json or csv")
	bf := addBroker(fs)
	if err := parse(); err != nil {
		return err
	}
	tc, err := bf.tls()
	if err != nil {
		return err
	}
	w, err := newEventWriter(stdout, *format)
	if err != nil {
		return err
	}
	lines := make(chan hq.StoredEvent, 1024)
	opts := mqtt.NewClientOptions().AddBroker(*bf.url).SetClientID("tobira-hq-tail-" + proto.NewCommandID()[:8]).
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
		return fmt.Errorf("connect to %s: %v", *bf.url, tok.Error())
	}
	defer c.Disconnect(250)
	for {
		select {
		case <-ctx.Done():
			return w.flush()
		case ev := <-lines:
			if err := w.write(ev); err != nil {
				return err
			}
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
}

// fleet implements `tobira-hq fleet`.
func fleet(fs *flag.FlagSet, parse func() error, stdout io.Writer) error {
	db := fs.String("db", "hq.db", "HQ store (bbolt file)")
	spool := fs.String("spool", "", "snapshot spool, for the expected versions (drift)")
	format := fs.String("format", "text", "text or json")
	if err := parse(); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: --format %q, want text or json", errUsage, *format)
	}
	hq, err := openStore(*db, *spool)
	if err != nil {
		return err
	}
	defer hq.Close()
	devs, err := hq.Fleet()
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		for _, d := range devs {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tDEVICE\tONLINE\tVERSION\tSNAPSHOT\tEXPECTED\tDRIFT\tOUTBOX\tACKED\tCLOCK\tSEEN")
	for _, d := range devs {
		seen := "-"
		if !d.Seen.IsZero() {
			seen = d.Seen.UTC().Format(time.RFC3339)
		}
		clock := "untrusted"
		if d.Status.ClockTrusted {
			clock = "trusted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%d\t%d\t%t\t%d\t%d\t%s\t%s\n", d.Site, d.Device, d.Online, orDash(d.Status.Version),
			d.Status.Snapshot.Version, d.ExpectedVersion, d.Drift, d.Status.OutboxDepth, d.Acked, clock, seen)
	}
	return tw.Flush()
}

// orDash returns s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dial reads the signing key and connects a Sender.
func dial(ctx context.Context, bf brokerFlags, keyFile, spool string, log *slog.Logger) (*hq.Sender, error) {
	if keyFile == "" {
		return nil, fmt.Errorf("%w: --key is required (see tobira-hq keygen)", errUsage)
	}
	priv, err := signed.ReadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	cfg, err := bf.hqConfig(log)
	if err != nil {
		return nil, err
	}
	cfg.Spool = spool
	return hq.DialSender(ctx, cfg, priv)
}

// waitResults waits up to d for the results of ids and prints them; an id
// without a result, or a result other than done, is an error.
func waitResults(ctx context.Context, s *hq.Sender, d time.Duration, ids []string, stdout io.Writer) error {
	if d <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var bad []string
	for _, id := range ids {
		r, err := s.WaitResult(ctx, id)
		if err != nil {
			bad = append(bad, id+": no result")
			continue
		}
		b, _ := json.Marshal(r)
		fmt.Fprintln(stdout, string(b))
		if r.Status != proto.ResultDone {
			bad = append(bad, fmt.Sprintf("%s/%s %s: %s: %s", r.Site, r.Device, id, r.Status, r.Error))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d not done: %s", len(bad), len(ids), strings.Join(bad, "; "))
	}
	return nil
}

// listFlag collects a repeated string flag.
type listFlag []string

// String implements flag.Value.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// publishSnapshot implements `tobira-hq snapshot publish`.
func publishSnapshot(ctx context.Context, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	key := fs.String("key", "", "HQ signing key (PREFIX.key from keygen)")
	file := fs.String("file", "", "snapshot payload file (instead of --registry)")
	reg := fs.String("registry", "", "HQ registry to build the snapshot from (instead of --file)")
	full := fs.Bool("full", false, "with --registry: send full snapshots")
	delta := fs.Bool("delta", false, "with --registry: send each device a delta from its reported version (full when none fits)")
	statusWait := fs.Duration("status-wait", time.Second, "with --registry: how long to collect the devices' retained status")
	ver := fs.Uint64("version", 0, "snapshot version the devices have after applying it")
	from := fs.Uint64("delta-from", 0, "publish a delta from this version")
	site := fs.String("site", "", "site of the devices")
	var devices listFlag
	fs.Var(&devices, "device", "device name (repeat for several)")
	spool := fs.String("spool", "", "the HQ service's spool directory, so it can re-send missing chunks")
	chunk := fs.Int("chunk-size", proto.DefaultChunkSize, "chunk size in bytes")
	wait := fs.Duration("wait", 0, "wait this long for every device's result (0: do not wait)")
	bf := addBroker(fs)
	if err := parse(); err != nil {
		return err
	}
	if *reg != "" {
		if *file != "" || *ver != 0 || *from != 0 || *full == *delta || *site == "" {
			return fmt.Errorf("%w: snapshot publish --registry needs --site and one of --full and --delta (not --file, --version, --delta-from)", errUsage)
		}
		r, err := openRegistry(*reg, log)
		if err != nil {
			return err
		}
		defer r.Close()
		s, err := dial(ctx, bf, *key, *spool, log)
		if err != nil {
			return err
		}
		defer s.Close()
		ids, err := publishFromRegistry(ctx, s, r, *site, devices, *delta, *chunk, *statusWait, stdout)
		if err != nil {
			return err
		}
		return waitResults(ctx, s, *wait, ids, stdout)
	}
	if *file == "" || *ver == 0 || *site == "" || len(devices) == 0 {
		return fmt.Errorf("%w: snapshot publish needs --registry (with --full or --delta), or --file, --version, --site and --device", errUsage)
	}
	s, err := dial(ctx, bf, *key, *spool, log)
	if err != nil {
		return err
	}
	defer s.Close()
	var ids []string
	for _, d := range devices {
		m, err := s.PublishSnapshot(ctx, hq.SnapshotOffer{Site: *site, Device: d, Version: *ver, From: *from, Path: *file, ChunkSize: *chunk})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s snapshot version %d to %s/%s: transfer %s, %d bytes in %d chunks\n",
			m.Type, m.Version, m.Site, m.Device, m.Transfer, m.Size, m.Chunks)
		ids = append(ids, m.Transfer)
	}
	return waitResults(ctx, s, *wait, ids, stdout)
}

// sendCommand implements `tobira-hq command send`.
func sendCommand(ctx context.Context, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	key := fs.String("key", "", "HQ signing key (PREFIX.key from keygen)")
	var c proto.Command
	fs.StringVar(&c.Site, "site", "", "site of the device")
	fs.StringVar(&c.Device, "device", "", "device")
	fs.StringVar(&c.Action, "action", "", "unlock, set_mode, lockdown, release, resync or forgive_apb")
	fs.StringVar(&c.Door, "door", "", "door name")
	fs.StringVar(&c.Mode, "mode", "", "door mode (set_mode)")
	fs.StringVar(&c.Credential, "credential", "", "credential hex key (forgive_apb)")
	ttl := fs.Duration("ttl", 5*time.Minute, "how long the command stays valid (max 24h)")
	wait := fs.Duration("wait", 30*time.Second, "wait this long for the device's result (0: do not wait)")
	bf := addBroker(fs)
	if err := parse(); err != nil {
		return err
	}
	if c.Site == "" || c.Device == "" || c.Action == "" {
		return fmt.Errorf("%w: command send needs --site, --device and --action", errUsage)
	}
	s, err := dial(ctx, bf, *key, "", log)
	if err != nil {
		return err
	}
	defer s.Close()
	c.Issued = time.Now().UTC().Truncate(time.Second)
	c.Expires = c.Issued.Add(*ttl)
	c, err = s.SendCommand(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %s to %s/%s: id %s, expires %s\n", c.Action, c.Site, c.Device, c.ID, c.Expires.Format(time.RFC3339))
	return waitResults(ctx, s, *wait, []string{c.ID}, stdout)
}
