// Command tobira-hq is the headquarters end of tobira: it stores the events
// of every device and acknowledges them end to end, keeps the devices'
// status, and signs and sends snapshots and commands.
//
//	tobira-hq serve                                   the HQ service
//	tobira-hq migrate --store-url postgres://...      apply the PostgreSQL schema
//	tobira-hq migrate-store --db F --store-url URL    copy a bbolt store into PostgreSQL
//	tobira-hq import TABLE --site S --csv FILE        people, credentials, doors, ... (docs/HQ.md)
//	tobira-hq enroll list|approve|reject ... / enroll --record FILE ...
//	tobira-hq revoke --site S --credential HEX
//	tobira-hq crl import --site S --crl FILE --ca FILE
//	tobira-hq events [filters] [--format json|csv]    query and export stored events
//	tobira-hq tail [--format json|csv]                follow events live
//	tobira-hq fleet [--format text|json]
//	tobira-hq keygen --out PREFIX                     Ed25519 signing key pair
//	tobira-hq snapshot publish (--full|--delta) --site S [--device D...]
//	tobira-hq snapshot publish --file F --version N [--delta-from M] --site S --device D...
//	tobira-hq command send --site S --device D --action A [--door --mode --credential]
//	tobira-hq release publish|serve|devices|rollout|sign|verify ...
//	tobira-hq console add-user|reset-password --user NAME ...  web console accounts
//
// The broker, TLS files, store, spool, registry and signing key come from
// the settings file (--config, $TOBIRA_HQ_CONFIG, or
// /etc/tobira/tobira-hq.toml when it exists), from $TOBIRA_HQ_<KEY>, or
// from the flags, which win (docs/HQ.md). Every command answers --help.
//
// The bbolt store allows one process at a time: run events and fleet
// against a stopped service or a copy of its file.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/amqpintake"
	"github.com/tobira-ac/tobira/hq/console"
	"github.com/tobira-ac/tobira/internal/signed"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { cli.Main(run) }

// run runs one command line with the settings of this machine (the
// process environment and /etc/tobira/tobira-hq.toml); errors are
// *cli.Error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	src := settingsSource{lookupEnv: os.LookupEnv, defaultConfig: defaultConfigPath}
	return cli.Execute(ctx, newRoot(src), args, stdout, stderr)
}

// newRoot builds the command tree; src gives the settings that the
// command line leaves unset.
func newRoot(src settingsSource) *cobra.Command {
	root := &cobra.Command{
		Use:     "tobira-hq",
		Short:   "The headquarters of tobira: events, fleet, registry, snapshots, commands, releases",
		Version: version,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			return src.apply(c)
		},
	}
	configFlag(root)
	root.AddCommand(serveCommand(), importCommand(), enrollCommand(), revokeCommand(), crlCommand(),
		eventsCommand(), tailCommand(), fleetCommand(), cli.Keygen("hq.keys"), snapshotCommand(), commandCommand(),
		releaseCommand(), migrateCommand(), migrateStoreCommand(), consoleCommand(), versionCommand())
	noteSettings(root)
	return root
}

// noteSettings adds to the help of every flag fed by a setting where else
// it may come from.
func noteSettings(c *cobra.Command) {
	for _, s := range settings {
		if f := c.Flags().Lookup(s.flag); f != nil {
			f.Usage += fmt.Sprintf(" (setting %s, $%s)", s.key, envName(s.key))
		}
	}
	for _, sub := range c.Commands() {
		noteSettings(sub)
	}
}

// brokerFlags are the broker URL and TLS options shared by the connecting
// commands.
type brokerFlags struct{ url, ca, cert, key string }

// addBrokerFlags registers the broker flags on c.
func addBrokerFlags(c *cobra.Command) *brokerFlags {
	var b brokerFlags
	c.Flags().StringVar(&b.url, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL; several, comma-separated, for the nodes of a broker cluster")
	c.Flags().StringVar(&b.ca, "tls-ca", "", "PEM CA file that signs the broker's certificate")
	c.Flags().StringVar(&b.cert, "tls-cert", "", "PEM client certificate (CN tobira-hq)")
	c.Flags().StringVar(&b.key, "tls-key", "", "PEM client key")
	return &b
}

// hqConfig returns an HQ configuration holding the broker URL, the TLS
// configuration and log.
func (f *brokerFlags) hqConfig(log *slog.Logger) (hq.Config, error) {
	tc, err := f.tls()
	if err != nil {
		return hq.Config{}, err
	}
	urls := strings.Split(f.url, ",")
	return hq.Config{Broker: urls[0], Fallbacks: urls[1:], TLS: tc, Logger: log}, nil
}

// tls returns the TLS configuration, nil when no TLS setting is given.
func (f *brokerFlags) tls() (*tls.Config, error) {
	if f.ca == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		b, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("read --tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", f.ca)
		}
	}
	if f.cert != "" || f.key != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", f.cert, f.key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// logger is the log of a command, on stderr, at its --log-level.
func logger(c *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel(c)}))
}

// serveCommand is "tobira-hq serve".
func serveCommand() *cobra.Command {
	var db, clientID, spool, reg, anchors, keyFile, metricsListen, consoleListen, consoleDB, intake, group, releaseStore string
	var maxRevocationAge time.Duration
	c := &cobra.Command{
		Use:   "serve",
		Short: "Store and acknowledge events, keep device status, re-send snapshot chunks, take enrollments, relay ticket marks",
	}
	c.Flags().StringVar(&db, "db", "hq.db", "HQ store (bbolt file), unless --store-url names PostgreSQL")
	c.Flags().StringVar(&clientID, "client-id", defaultClientID, "MQTT client ID (replicas: "+defaultClientID+" becomes "+defaultClientID+"-{host name})")
	c.Flags().StringVar(&spool, "spool", "", "directory of published snapshots (see snapshot publish)")
	c.Flags().StringVar(&reg, "registry", "", "HQ registry: enrollments from devices wait there for approval, and ticket marks are checked against its events and doors (empty: enrollments not taken, marks checked for time and transitions only)")
	c.Flags().StringVar(&anchors, "anchors", "", "JPKI CA certificates (PEM or DER) the console checks enrollments against before approving them (empty: the console approves none)")
	c.Flags().StringVar(&keyFile, "key", "", "HQ signing key: signs the ticket marks served to the gates (empty: not served)")
	c.Flags().StringVar(&metricsListen, "metrics-listen", "", "host:port serving Prometheus metrics on /metrics (empty: off)")
	c.Flags().StringVar(&consoleListen, "console-listen", "", "host:port serving the web console (empty: off; docs/CONSOLE.md)")
	c.Flags().StringVar(&consoleDB, "console-db", defaultConsoleDB, "the console's accounts, sessions and audit log (bbolt file)")
	c.Flags().StringVar(&releaseStore, "store", "", "release store (as release publish --store) the console rolls releases out of (empty: no rollouts)")
	c.Flags().DurationVar(&maxRevocationAge, "console-max-revocation-age", console.DefaultMaxRevocationAge,
		"the console's stale-revocation alarm: a device that has not applied the snapshot HQ published to it for this long")
	c.Flags().StringVar(&intake, "events-intake", "", "AMQP URLs of RabbitMQ nodes, comma-separated: take events from the quorum queue "+
		"shared by every replica instead of the MQTT subscriptions (empty: MQTT)")
	c.Flags().StringVar(&group, "shared-group", "", "MQTT shared-subscription group of this HQ's replicas on one mosquitto: each takes a share of the devices' messages (empty: one HQ)")
	bf := addBrokerFlags(c)
	sf := addStoreFlags(c)
	limits := addLimitFlags(c)
	logins := addConsoleLoginFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		log := logger(c)
		metrics, err := openMetrics(metricsListen)
		if err != nil {
			return err
		}
		cfg, err := bf.hqConfig(log)
		if err != nil {
			return err
		}
		cfg.Path, cfg.Spool, cfg.Metrics, cfg.Limits, cfg.SharedGroup = db, spool, metrics.registerer(), *limits, group
		if cfg.ClientID, err = replicaClientID(clientID, group != "" || intake != "", os.Hostname); err != nil {
			return err
		}
		if cfg.Store, err = sf.open(c.Context(), log); err != nil {
			return err
		}
		if cfg.Store != nil {
			defer cfg.Store.Close() // also when Open fails; a second Close is harmless
			db = "postgres"
			cfg.Marks = marksOf(cfg.Store)
			storeSpool(&cfg)
		}
		if intake != "" {
			if cfg.Intake, err = amqpintake.New(amqpintake.Config{URLs: strings.Split(intake, ","), TLS: cfg.TLS, Logger: log}); err != nil {
				return fmt.Errorf("--events-intake: %w", err)
			}
		}
		shared, err := openSharedRegistry(c.Context(), registryAt{path: reg, url: sf.url}, log)
		if err != nil {
			return err
		}
		defer shared.Close()
		if shared != nil {
			cfg.Enrollments, cfg.TicketRules = registrySink{shared}, registryRules{shared}
		}
		if keyFile != "" {
			if cfg.Key, err = signed.ReadPrivateKey(keyFile); err != nil {
				return err
			}
		}
		svc, err := hq.Open(cfg)
		if err != nil {
			return err
		}
		defer svc.Close()
		log.Info("tobira-hq serving", "version", version, "broker", cfg.Broker, "client_id", cfg.ClientID, "db", db, "spool", spool)
		lead, err := newLeader(sf.url, leaderJobs(cfg.Store), consoleListen != "", metrics.registerer(), log)
		if err != nil {
			return err
		}
		run := withLeader(lead, func(ctx context.Context) error { return runService(ctx, svc, metrics, log) })
		if consoleListen == "" {
			return run(c.Context())
		}
		cs, err := openConsole(c.Context(), consoleListen, consoleDB, sf.url, logins, cfg, log)
		if err != nil {
			return err
		}
		defer cs.close()
		if cs.enroll, err = newRegistryEnrollments(shared, anchors, log); err != nil {
			return err
		}
		cs.useRegistry(shared, log)
		cs.maxRevocationAge = maxRevocationAge
		cs.openConsoleOps(c.Context(), cfg, shared, releaseStore, log)
		if lead != nil {
			cs.isLeader = func(context.Context) bool { return lead.Leading() }
		}
		return cs.run(c.Context(), svc, run, log)
	}
	return c
}

// versionCommand is "tobira-hq version".
func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(c.OutOrStdout(), "tobira-hq", version)
			return err
		},
	}
}
