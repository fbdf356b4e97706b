package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/internal/tomlconf"
)

// defaultConfigPath is the configuration file read when it exists and
// neither --config nor $TOBIRA_HQ_CONFIG names another.
const defaultConfigPath = "/etc/tobira/tobira-hq.toml"

// envPrefix starts the environment variable of every setting:
// TOBIRA_HQ_<KEY> with the key in upper case (TOBIRA_HQ_TLS_CA).
const envPrefix = "TOBIRA_HQ_"

// configEnv names the configuration file (overridden by --config).
const configEnv = envPrefix + "CONFIG"

// fileSettings are the keys of tobira-hq.toml (docs/HQ.md). Each is also
// the environment variable TOBIRA_HQ_<KEY> and the flag --<key> (with '-'
// for '_'; release_store is --store, store is --store-url) of every command
// that takes it.
type fileSettings struct {
	Broker        *string `toml:"broker"`
	TLSCA         *string `toml:"tls_ca"`
	TLSCert       *string `toml:"tls_cert"`
	TLSKey        *string `toml:"tls_key"`
	ClientID      *string `toml:"client_id"`
	DB            *string `toml:"db"`
	Store         *string `toml:"store"`
	Retention     *string `toml:"retention_days"`
	Spool         *string `toml:"spool"`
	Registry      *string `toml:"registry"`
	Key           *string `toml:"key"`
	Anchors       *string `toml:"anchors"`
	ReleaseStore  *string `toml:"release_store"`
	MetricsListen *string `toml:"metrics_listen"`
	EventsIntake  *string `toml:"events_intake"`
	SharedGroup   *string `toml:"shared_group"`

	LimitSeqWindow    *string `toml:"limit_seq_window"`
	LimitEventRate    *string `toml:"limit_event_rate"`
	LimitEventBurst   *string `toml:"limit_event_burst"`
	LimitByteRate     *string `toml:"limit_byte_rate"`
	LimitByteBurst    *string `toml:"limit_byte_burst"`
	LimitNeedInterval *string `toml:"limit_need_interval"`
	LimitRequestRate  *string `toml:"limit_request_rate"`
	LimitRequestBurst *string `toml:"limit_request_burst"`
	ConsoleListen     *string `toml:"console_listen"`

	ConsoleURL           *string `toml:"console_url"`
	OIDCIssuer           *string `toml:"oidc_issuer"`
	OIDCClientID         *string `toml:"oidc_client_id"`
	OIDCClientSecretFile *string `toml:"oidc_client_secret_file"`
	OIDCRedirectURL      *string `toml:"oidc_redirect_url"`
	OIDCClaim            *string `toml:"oidc_claim"`
	OIDCCreateRole       *string `toml:"oidc_create_role"`
	OIDCCreateSites      *string `toml:"oidc_create_sites"`

	ConsoleMaxRevocationAge *string `toml:"console_max_revocation_age"`
	LogLevel                *string `toml:"log_level"`
}

// setting is one key of tobira-hq.toml and the flag it feeds.
type setting struct {
	key, flag string
	// commented: the shipped example shows the key commented out, since
	// setting it changes what a fresh install does (store: PostgreSQL).
	commented bool
	// file returns the key's value in a file (nil when absent).
	file func(*fileSettings) *string
}

// settings lists every key, in the order of docs/HQ.md.
var settings = []setting{
	{"broker", "broker", false, func(f *fileSettings) *string { return f.Broker }},
	{"tls_ca", "tls-ca", false, func(f *fileSettings) *string { return f.TLSCA }},
	{"tls_cert", "tls-cert", false, func(f *fileSettings) *string { return f.TLSCert }},
	{"tls_key", "tls-key", false, func(f *fileSettings) *string { return f.TLSKey }},
	{"client_id", "client-id", false, func(f *fileSettings) *string { return f.ClientID }},
	{"db", "db", false, func(f *fileSettings) *string { return f.DB }},
	{"store", "store-url", true, func(f *fileSettings) *string { return f.Store }},
	{"retention_days", "retention-days", false, func(f *fileSettings) *string { return f.Retention }},
	{"spool", "spool", false, func(f *fileSettings) *string { return f.Spool }},
	{"registry", "registry", false, func(f *fileSettings) *string { return f.Registry }},
	{"key", "key", false, func(f *fileSettings) *string { return f.Key }},
	{"anchors", "anchors", false, func(f *fileSettings) *string { return f.Anchors }},
	{"release_store", "store", false, func(f *fileSettings) *string { return f.ReleaseStore }},
	{"metrics_listen", "metrics-listen", true, func(f *fileSettings) *string { return f.MetricsListen }},
	{"events_intake", "events-intake", true, func(f *fileSettings) *string { return f.EventsIntake }},
	{"shared_group", "shared-group", true, func(f *fileSettings) *string { return f.SharedGroup }},
	{"limit_seq_window", "limit-seq-window", false, func(f *fileSettings) *string { return f.LimitSeqWindow }},
	{"limit_event_rate", "limit-event-rate", false, func(f *fileSettings) *string { return f.LimitEventRate }},
	{"limit_event_burst", "limit-event-burst", false, func(f *fileSettings) *string { return f.LimitEventBurst }},
	{"limit_byte_rate", "limit-byte-rate", false, func(f *fileSettings) *string { return f.LimitByteRate }},
	{"limit_byte_burst", "limit-byte-burst", false, func(f *fileSettings) *string { return f.LimitByteBurst }},
	{"limit_need_interval", "limit-need-interval", false, func(f *fileSettings) *string { return f.LimitNeedInterval }},
	{"limit_request_rate", "limit-request-rate", false, func(f *fileSettings) *string { return f.LimitRequestRate }},
	{"limit_request_burst", "limit-request-burst", false, func(f *fileSettings) *string { return f.LimitRequestBurst }},
	{"console_listen", "console-listen", true, func(f *fileSettings) *string { return f.ConsoleListen }},
	{"console_url", "console-url", true, func(f *fileSettings) *string { return f.ConsoleURL }},
	{"oidc_issuer", "oidc-issuer", true, func(f *fileSettings) *string { return f.OIDCIssuer }},
	{"oidc_client_id", "oidc-client-id", true, func(f *fileSettings) *string { return f.OIDCClientID }},
	{"oidc_client_secret_file", "oidc-client-secret-file", true, func(f *fileSettings) *string { return f.OIDCClientSecretFile }},
	{"oidc_redirect_url", "oidc-redirect-url", true, func(f *fileSettings) *string { return f.OIDCRedirectURL }},
	{"oidc_claim", "oidc-claim", true, func(f *fileSettings) *string { return f.OIDCClaim }},
	{"oidc_create_role", "oidc-create-role", true, func(f *fileSettings) *string { return f.OIDCCreateRole }},
	{"oidc_create_sites", "oidc-create-sites", true, func(f *fileSettings) *string { return f.OIDCCreateSites }},
	{"console_max_revocation_age", "console-max-revocation-age", false, func(f *fileSettings) *string { return f.ConsoleMaxRevocationAge }},
	{"log_level", "log-level", false, func(f *fileSettings) *string { return f.LogLevel }},
}

// envName is the environment variable of a setting.
func envName(key string) string { return envPrefix + strings.ToUpper(key) }

// loadSettings reads a tobira-hq.toml strictly (internal/tomlconf: unknown
// and duplicated keys are errors naming the line); a key set to "" is an
// error too (leave it out for the default).
func loadSettings(path string) (*fileSettings, error) {
	var f fileSettings
	if err := tomlconf.Load(path, &f); err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range settings {
		if v := s.file(&f); v != nil && *v == "" {
			errs = append(errs, fmt.Errorf("%s: %s is empty (leave the key out for the default)", path, s.key))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &f, nil
}

// settingsSource is where tobira-hq finds its settings besides its flags:
// the environment and the default configuration file.
type settingsSource struct {
	lookupEnv     func(string) (string, bool)
	defaultConfig string
}

// env returns a non-empty environment variable.
func (s settingsSource) env(name string) (string, bool) {
	v, ok := s.lookupEnv(name)
	return v, ok && v != ""
}

// apply fills the setting flags of c that the command line left unset:
// from $TOBIRA_HQ_<KEY>, else from the configuration file. Flags override
// the environment, which overrides the file. The file is read only when c
// takes a setting at all (help, version and keygen never read it).
func (s settingsSource) apply(c *cobra.Command) error {
	var todo []setting
	for _, st := range settings {
		if f := c.Flags().Lookup(st.flag); f != nil && !f.Changed {
			todo = append(todo, st)
		}
	}
	if len(todo) == 0 || len(todo) == 1 && todo[0].key == "log_level" {
		return nil // every command has --log-level: alone it reads no file
	}
	file, path, err := s.file(c)
	if err != nil {
		return err
	}
	for _, st := range todo {
		f := c.Flags().Lookup(st.flag)
		if v, ok := s.env(envName(st.key)); ok {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("$%s: %w", envName(st.key), err)
			}
		} else if v := st.file(file); v != nil {
			if err := f.Value.Set(*v); err != nil {
				return fmt.Errorf("%s: %s: %w", path, st.key, err)
			}
		}
	}
	return nil
}

// file reads the configuration file: --config, else $TOBIRA_HQ_CONFIG,
// else the default file when it exists. A file named by the flag or the
// environment must exist; --config "" reads none.
func (s settingsSource) file(c *cobra.Command) (*fileSettings, string, error) {
	path, named := s.defaultConfig, false
	if f := c.Flags().Lookup("config"); f != nil && f.Changed {
		path, named = f.Value.String(), true
	} else if v, ok := s.env(configEnv); ok {
		path, named = v, true
	}
	if path == "" {
		return &fileSettings{}, "", nil
	}
	if _, err := os.Stat(path); !named && errors.Is(err, fs.ErrNotExist) {
		return &fileSettings{}, "", nil
	}
	f, err := loadSettings(path)
	if err != nil {
		return nil, "", err
	}
	return f, path, nil
}

// configFlag registers the persistent --config and --log-level flags on
// root.
func configFlag(root *cobra.Command) {
	root.PersistentFlags().String("config", "", "settings file (default "+defaultConfigPath+" when it exists; $"+configEnv+")")
	root.PersistentFlags().Var(new(levelFlag), "log-level", "least severe log messages written: debug, info, warn or error")
}

// levelFlag is the --log-level flag: a slog level, info by default.
type levelFlag slog.Level

// String implements pflag.Value.
func (l *levelFlag) String() string { return strings.ToLower(slog.Level(*l).String()) }

// Set implements pflag.Value; it takes the names slog.Level parses
// (debug, info, warn, error), in any case.
func (l *levelFlag) Set(s string) error {
	var v slog.Level
	if err := v.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	*l = levelFlag(v)
	return nil
}

// Type implements pflag.Value.
func (l *levelFlag) Type() string { return "level" }

// logLevel returns c's --log-level (info when c has none).
func logLevel(c *cobra.Command) slog.Level {
	if f := c.Flags().Lookup("log-level"); f != nil {
		if l, ok := f.Value.(*levelFlag); ok {
			return slog.Level(*l)
		}
	}
	return slog.LevelInfo
}
