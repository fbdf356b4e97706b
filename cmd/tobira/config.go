package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/internal/metricshttp"
	"github.com/tobira-ac/tobira/internal/tomlconf"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/keypad"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Config is the edge binary's configuration, read from a TOML file. The
// reference with every key is docs/CONFIG.md.
type Config struct {
	// Site names the site in MQTT topics (tobira/v1/{site}/{device}/...).
	Site string `toml:"site"`
	// Device names this controller in MQTT topics; unique within the site.
	Device string `toml:"device"`
	// DataDir holds policy.db and events.db.
	DataDir string `toml:"data_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// Trust lists the JPKI trust anchors.
	Trust TrustConfig `toml:"trust"`
	// HQ is the link to headquarters.
	HQ HQConfig `toml:"hq"`
	// Doors are the doors (or gate lanes) this controller drives.
	Doors []DoorConfig `toml:"door"`
	// Readers are the card readers, each at one door in one direction.
	Readers []ReaderConfig `toml:"reader"`
	// BreakGlass are the emergency credentials.
	BreakGlass []BreakGlassConfig `toml:"break_glass"`
	// Firmware is the self-update health gate (docs/FIRMWARE.md).
	Firmware FirmwareConfig `toml:"firmware"`
	// Metrics is the opt-in Prometheus listener (docs/DEPLOYMENT.md).
	Metrics MetricsConfig `toml:"metrics"`
	// Tickets are the settings of single-entry tickets.
	Tickets TicketsConfig `toml:"tickets"`
}

// MetricsConfig is the opt-in Prometheus metrics listener.
type MetricsConfig struct {
	// Listen is the host:port serving /metrics, e.g. "127.0.0.1:9469";
	// empty (the default) serves no metrics.
	Listen string `toml:"listen"`
}

// TicketsConfig is the [tickets] table.
type TicketsConfig struct {
	// OnlineCheck is the budget of the online check of single-entry
	// tickets: with a link, the gate asks HQ before admitting an entry and
	// waits at most this long, then decides locally; 0 (the default) is
	// off. Needs hq.keys.
	OnlineCheck Duration `toml:"online_check"`
}

// FirmwareConfig is the health gate of signed releases (docs/FIRMWARE.md).
type FirmwareConfig struct {
	// Root is the update root (releases/, current, state). Empty disables
	// the health gate, for development machines.
	Root string `toml:"root"`
	// MaxAttempts is how many starts a release on trial gets before it is
	// rolled back (default 3).
	MaxAttempts int `toml:"max_attempts"`
	// HealthDeadline is how long a release on trial may take to report
	// healthy before it is rolled back (default 5m).
	HealthDeadline Duration `toml:"health_deadline"`
	// ReleaseKeys are the pinned release public key files (tobira-release
	// keygen's NAME.pub). Without them the device accepts no release.
	ReleaseKeys []string `toml:"release_keys"`
	// Groups are the release groups this device belongs to ("group:NAME"
	// targets in a manifest).
	Groups []string `toml:"groups"`
	// Window is the daily maintenance window for installs, "02:00-04:00"
	// in TimeZone; empty means any time (still never while a door is busy).
	Window string `toml:"window"`
	// TimeZone is the window's zone (default Asia/Tokyo).
	TimeZone string `toml:"time_zone"`
	// RateLimit bounds the release download, bytes per second (default
	// 262144), so a gate lane's events are not starved.
	RateLimit int64 `toml:"rate_limit"`
}

// TrustConfig lists the CA certificates that user-authentication
// certificates must chain to.
type TrustConfig struct {
	// Anchors are PEM or DER files, one or more CA certificates each. Several
	// JPKI CA generations are normally configured at once.
	Anchors []string `toml:"anchors"`
}

// HQConfig is the MQTT link to headquarters.
type HQConfig struct {
	// Broker is the broker URL: tcp://host:1883 or ssl://host:8883.
	// Shorthand for Brokers with one URL; set one of the two.
	Broker string `toml:"broker"`
	// Brokers are several broker URLs, e.g. the nodes of a RabbitMQ
	// cluster: the device connects to the first that answers and moves to
	// another when its broker fails.
	Brokers []string `toml:"brokers"`
	// Username and PasswordFile authenticate to the broker (optional).
	Username string `toml:"username"`
	// PasswordFile holds the broker password (kept out of the config file).
	PasswordFile string `toml:"password_file"`
	// CACert is the PEM file of the CA that signed the broker's certificate (ssl:// only).
	CACert string `toml:"ca_cert"`
	// ClientCert and ClientKey are this device's PEM certificate and key (ssl:// only).
	ClientCert string `toml:"client_cert"`
	// ClientKey is the PEM private key for ClientCert.
	ClientKey string `toml:"client_key"`
	// Keys are the pinned HQ public keys (PEM files) that must sign every
	// snapshot and command; several for rotation. Without keys the device
	// refuses every snapshot and command from HQ.
	Keys []string `toml:"keys"`
	// Batch is the most events per MQTT message (default 1000) and Window
	// the most unacknowledged messages in flight (default 32): together
	// they bound how fast a backlog drains after days offline.
	Batch int `toml:"batch"`
	// Window is the most unacknowledged event messages in flight.
	Window int `toml:"window"`
	// SnapshotGroups are the groups of the site whose snapshot transfers
	// the device takes besides its own and its site's (docs/PROTOCOL.md,
	// "Group transfers").
	SnapshotGroups []string `toml:"snapshot_groups"`
}

// DoorConfig is one door (or gate lane) and the relay that unlocks it. The
// readers at the door are [[reader]] tables naming it.
type DoorConfig struct {
	// Name names the door in events and logs.
	Name string `toml:"name"`
	// RelayPin is the GPIO line driving the lock relay (e.g. "GPIO17").
	RelayPin string `toml:"relay_pin"`
	// RelayActiveLow is true when the relay board energises on a low output.
	RelayActiveLow bool `toml:"relay_active_low"`
	// FailSafe is true for locks that are locked while energised (maglocks).
	FailSafe bool `toml:"fail_safe"`
	// Pulse is how long a grant unlocks the door.
	Pulse Duration `toml:"pulse"`

	// The optional pins and timings of docs/DOOR.md.
	Relay2Pin         string   `toml:"relay2_pin"`
	Relay2ActiveLow   bool     `toml:"relay2_active_low"`
	Relay2FailSafe    bool     `toml:"relay2_fail_safe"`
	ContactPin        string   `toml:"contact_pin"`
	ContactActiveLow  bool     `toml:"contact_active_low"`
	ContactPull       string   `toml:"contact_pull"`
	REXPin            string   `toml:"rex_pin"`
	REXActiveLow      bool     `toml:"rex_active_low"`
	REXPull           string   `toml:"rex_pull"`
	REXPulse          Duration `toml:"rex_pulse"`
	FirePin           string   `toml:"fire_pin"`
	FireActiveLow     bool     `toml:"fire_active_low"`
	FirePull          string   `toml:"fire_pull"`
	LockdownPin       string   `toml:"lockdown_pin"`
	LockdownActiveLow bool     `toml:"lockdown_active_low"`
	LockdownPull      string   `toml:"lockdown_pull"`
	TamperPin         string   `toml:"tamper_pin"`
	TamperActiveLow   bool     `toml:"tamper_active_low"`
	TamperPull        string   `toml:"tamper_pull"`
	GreenPin          string   `toml:"green_pin"`
	GreenActiveLow    bool     `toml:"green_active_low"`
	RedPin            string   `toml:"red_pin"`
	RedActiveLow      bool     `toml:"red_active_low"`
	BuzzerPin         string   `toml:"buzzer_pin"`
	BuzzerActiveLow   bool     `toml:"buzzer_active_low"`
	Debounce          Duration `toml:"debounce"`
	SampleInterval    Duration `toml:"sample_interval"`
	HeldPreAlarm      Duration `toml:"held_prealarm"`
	HeldAlarm         Duration `toml:"held_alarm"`
	// Mode is the door's mode at start: normal, unlocked, locked_down or
	// first_person_in.
	Mode string `toml:"mode"`
	// Interlock names a mantrap: doors with the same name interlock.
	Interlock string `toml:"interlock"`
	// OnStaleRevocations is what the door does with a certificate when the
	// revocation data is stale: "deny" (default) or "grant_flag".
	OnStaleRevocations string `toml:"on_stale_revocations"`
	// OnUntrustedClock is what the door does with a certificate when the
	// clock is behind the last trusted time: "deny" (default) or "grant_flag".
	OnUntrustedClock string `toml:"on_untrusted_clock"`
}

// BreakGlassConfig is an emergency credential from the local configuration:
// it opens every door in every mode, lockdown included, even with an empty
// or corrupt snapshot. Give either a certificate (issuer key ID + serial) or
// a free-area ID.
type BreakGlassConfig struct {
	// Label names the holder in events ("fire-brigade-1").
	Label string `toml:"label"`
	// IssuerKeyID is the issuing CA's key ID, 40 hex digits.
	IssuerKeyID string `toml:"issuer_key_id"`
	// Serial is the certificate serial, hex.
	Serial string `toml:"serial"`
	// FreeAreaID is a free-area ID.
	FreeAreaID string `toml:"free_area_id"`
}

// Credential returns the break-glass credential.
func (b BreakGlassConfig) Credential() (credential.Credential, error) {
	if b.FreeAreaID != "" {
		if b.IssuerKeyID != "" || b.Serial != "" {
			return credential.Credential{}, errors.New("give free_area_id or issuer_key_id + serial, not both")
		}
		c := credential.Credential{Kind: credential.KindFreeArea, ID: b.FreeAreaID}
		_, err := c.Key()
		return c, err
	}
	kid, err := hex.DecodeString(b.IssuerKeyID)
	if err != nil {
		return credential.Credential{}, fmt.Errorf("issuer_key_id %q is not hex", b.IssuerKeyID)
	}
	serial, err := hex.DecodeString(b.Serial)
	if err != nil {
		return credential.Credential{}, fmt.Errorf("serial %q is not hex", b.Serial)
	}
	serial = bytes.TrimLeft(serial, "\x00")
	c := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: kid, Serial: serial}
	if _, err := c.Key(); err != nil {
		return credential.Credential{}, err
	}
	return c, nil
}

// ReaderConfig is one PC/SC reader: the door it serves, the direction it
// faces and how it identifies people (docs/READER.md).
type ReaderConfig struct {
	// Name is the PC/SC reader name, exactly as `tobira readers` lists it.
	Name string `toml:"name"`
	// Door is the name of the [[door]] this reader opens.
	Door string `toml:"door"`
	// Direction is "in" (entering) or "out" (leaving); default "in".
	Direction string `toml:"direction"`
	// Mode is serial, pin, freearea or enroll; default serial.
	Mode string `toml:"mode"`
	// AllowLastTry lets this reader VERIFY a PIN with one try left (default:
	// refuse, so that a door never blocks a national ID card).
	AllowLastTry bool `toml:"allow_last_try"`
	// CommandTimeout bounds each card command (default 3s).
	CommandTimeout Duration `toml:"command_timeout"`
	// SignTimeout bounds the card's signature (default 10s).
	SignTimeout Duration `toml:"sign_timeout"`
	// Keypad is where the PIN is typed (modes pin and enroll, and freearea
	// with auth = "verify_pin").
	Keypad *KeypadConfig `toml:"keypad"`
	// FreeArea is the free-area profile (mode freearea).
	FreeArea *reader.FreeAreaProfile `toml:"free_area"`
}

// KeypadConfig is a PIN keypad: a USB keypad (Linux input events) or a 3x4
// matrix keypad on GPIO lines.
type KeypadConfig struct {
	// Kind is "evdev" or "matrix".
	Kind string `toml:"kind"`
	// Device is the input device for evdev, e.g. /dev/input/by-id/...-event-kbd.
	Device string `toml:"device"`
	// Rows (4, top to bottom) and Cols (3, left to right) are GPIO line
	// names for matrix.
	Rows []string `toml:"rows"`
	// Cols are the column lines of a matrix keypad.
	Cols []string `toml:"cols"`
	// Timeout is how long PIN entry waits for a key (default 20s).
	Timeout Duration `toml:"timeout"`
}

// Duration is a time.Duration written in TOML as a string such as "5s".
type Duration struct {
	time.Duration
	set bool // written in the file (so "0s" is not taken for "absent")
}

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like \"5s\" or \"750ms\": %q", b)
	}
	d.Duration, d.set = v, true
	return nil
}

// orDefault sets d to def when the file did not set it.
func (d *Duration) orDefault(def time.Duration) {
	if !d.set {
		*d = Duration{Duration: def, set: true}
	}
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults applied by LoadConfig where a key is absent.
const (
	DefaultDataDir  = "/var/lib/tobira"
	DefaultPulse    = 5 * time.Second
	DefaultLogLevel = "info"
	// DefaultFirmwareAttempts and DefaultHealthDeadline bound a release on trial.
	DefaultFirmwareAttempts = 3
	DefaultHealthDeadline   = 5 * time.Minute
	// DefaultBatch and DefaultWindow size the event stream to HQ (measured
	// in docs/PERFORMANCE.md: a 1M backlog drains ~3x faster than with 100 x 4).
	DefaultBatch  = 1000
	DefaultWindow = 32
	// DefaultReleaseRate is the release download rate, bytes per second.
	DefaultReleaseRate = 256 << 10
	minPulse           = 100 * time.Millisecond
	maxPulse           = 5 * time.Minute
)

// ErrConfig marks every configuration error; the message names the file,
// the key and the problem.
var ErrConfig = errors.New("bad configuration")

// topicSegment is what a site or device name may look like: it becomes an
// MQTT topic level, so no '/', '+' or '#'.
var topicSegment = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoadConfig reads, defaults and validates a configuration file. Unknown and
// duplicated keys are errors (a typo must not silently leave a default in
// force, nor a second value silently win).
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrConfig, path, err)
	}
	return ParseConfig(path, b)
}

// ParseConfig is LoadConfig on bytes already read; name is used in errors.
// The file is decoded strictly (internal/tomlconf): a syntax error, an
// unknown key and a key given twice are errors naming the line.
func ParseConfig(name string, b []byte) (*Config, error) {
	var c Config
	if err := tomlconf.Decode(name, b, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.HQ.Batch == 0 {
		c.HQ.Batch = DefaultBatch
	}
	if c.HQ.Window == 0 {
		c.HQ.Window = DefaultWindow
	}
	if c.Firmware.TimeZone == "" {
		c.Firmware.TimeZone = "Asia/Tokyo"
	}
	if c.Firmware.RateLimit == 0 {
		c.Firmware.RateLimit = DefaultReleaseRate
	}
	if c.Firmware.MaxAttempts == 0 {
		c.Firmware.MaxAttempts = DefaultFirmwareAttempts
	}
	if !c.Firmware.HealthDeadline.set {
		c.Firmware.HealthDeadline = Duration{Duration: DefaultHealthDeadline, set: true}
	}
	for i := range c.Readers {
		r := &c.Readers[i]
		if r.Direction == "" {
			r.Direction = "in"
		}
		if r.Mode == "" {
			r.Mode = string(reader.ModeSerial)
		}
		r.CommandTimeout.orDefault(reader.DefaultCommandTimeout)
		r.SignTimeout.orDefault(reader.DefaultSignTimeout)
		if r.Keypad != nil {
			r.Keypad.Timeout.orDefault(keypad.DefaultTimeout)
		}
	}
	for i := range c.Doors {
		if c.Doors[i].Mode == "" {
			c.Doors[i].Mode = string(door.ModeNormal)
		}
		if !c.Doors[i].Pulse.set {
			c.Doors[i].Pulse = Duration{Duration: DefaultPulse, set: true}
		}
	}
}

// Validate checks the structure of a configuration (it does not open files
// or hardware). Each error names the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !topicSegment.MatchString(c.Site) {
		bad("site", "%q must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit", c.Site)
	}
	if !topicSegment.MatchString(c.Device) {
		bad("device", "%q must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit", c.Device)
	}
	if !filepath.IsAbs(c.DataDir) {
		bad("data_dir", "%q must be an absolute path", c.DataDir)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("log_level", "%q must be one of debug, info, warn, error", c.LogLevel)
	}
	if len(c.Trust.Anchors) == 0 {
		bad("trust.anchors", "at least one trust-anchor CA certificate file is required")
	}
	for i, a := range c.Trust.Anchors {
		if a == "" {
			bad(fmt.Sprintf("trust.anchors[%d]", i), "empty path")
		}
	}
	c.HQ.validate(bad)
	if c.Metrics.Listen != "" {
		if err := metricshttp.CheckAddr(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%v", err)
		}
	}
	if c.Firmware.Root != "" && !filepath.IsAbs(c.Firmware.Root) {
		bad("firmware.root", "%q must be an absolute path", c.Firmware.Root)
	}
	if loc, err := time.LoadLocation(c.Firmware.TimeZone); err != nil {
		bad("firmware.time_zone", "%q is not a time zone name like Asia/Tokyo", c.Firmware.TimeZone)
	} else if _, err := firmware.ParseWindow(c.Firmware.Window, loc); err != nil {
		bad("firmware.window", "%q must look like \"02:00-04:00\"", c.Firmware.Window)
	}
	if c.Firmware.RateLimit < 1024 {
		bad("firmware.rate_limit", "%d bytes/s is below 1024", c.Firmware.RateLimit)
	}
	if len(c.Firmware.ReleaseKeys) > 0 && c.Firmware.Root == "" {
		bad("firmware.release_keys", "set, but firmware.root is empty: releases need an update root")
	}
	if c.Firmware.MaxAttempts < 1 || c.Firmware.MaxAttempts > 100 {
		bad("firmware.max_attempts", "%d must be between 1 and 100", c.Firmware.MaxAttempts)
	}
	if d := c.Firmware.HealthDeadline.Duration; d < 10*time.Second || d > 24*time.Hour {
		bad("firmware.health_deadline", "%s must be between 10s and 24h", d)
	}
	if d := c.Tickets.OnlineCheck.Duration; d < 0 || d > 5*time.Second {
		bad("tickets.online_check", "%s must be between 0 (off) and 5s", d)
	}
	if len(c.Doors) == 0 {
		bad("door", "at least one [[door]] is required")
	}
	// unique checks a required per-door value that no other door may share.
	unique := func(key, value, hint string, seen map[string]int, i int) {
		if value == "" {
			bad(key, "required%s", hint)
		} else if j, dup := seen[value]; dup {
			bad(key, "%q is also used by door[%d]", value, j)
		} else {
			seen[value] = i
		}
	}
	names := map[string]int{}
	lines := map[string]string{} // GPIO line -> the key that uses it
	useLine := func(key, line string) {
		if line == "" {
			return
		}
		if other, dup := lines[line]; dup {
			bad(key, "line %q is also %s", line, other)
			return
		}
		lines[line] = key
	}
	for i, d := range c.Doors {
		key := fmt.Sprintf("door[%d]", i)
		unique(key+".name", d.Name, "", names, i)
		if d.RelayPin == "" {
			bad(key+".relay_pin", `required (a GPIO line name such as "GPIO17")`)
		}
		for _, l := range []struct{ key, line string }{{"relay_pin", d.RelayPin}, {"relay2_pin", d.Relay2Pin},
			{"contact_pin", d.ContactPin}, {"rex_pin", d.REXPin}, {"fire_pin", d.FirePin}, {"lockdown_pin", d.LockdownPin},
			{"tamper_pin", d.TamperPin}, {"green_pin", d.GreenPin}, {"red_pin", d.RedPin}, {"buzzer_pin", d.BuzzerPin}} {
			useLine(key+"."+l.key, l.line)
		}
		for _, p := range []struct{ key, value string }{{"contact_pull", d.ContactPull}, {"rex_pull", d.REXPull},
			{"fire_pull", d.FirePull}, {"lockdown_pull", d.LockdownPull}, {"tamper_pull", d.TamperPull}} {
			if _, err := door.ParsePull(p.value); err != nil {
				bad(key+"."+p.key, "%q must be up, down, none or keep", p.value)
			}
		}
		if _, err := door.ParseMode(d.Mode); err != nil {
			bad(key+".mode", "%q must be normal, unlocked, locked_down or first_person_in", d.Mode)
		}
		for _, f := range []struct{ key, value string }{{"on_stale_revocations", d.OnStaleRevocations}, {"on_untrusted_clock", d.OnUntrustedClock}} {
			if _, err := ParseFallback(f.value); err != nil {
				bad(key+"."+f.key, "%q must be deny or grant_flag", f.value)
			}
		}
		for _, t := range []struct {
			key      string
			d        Duration
			min, max time.Duration
		}{{"debounce", d.Debounce, time.Millisecond, time.Second}, {"sample_interval", d.SampleInterval, time.Millisecond, time.Second},
			{"rex_pulse", d.REXPulse, minPulse, maxPulse}, {"held_prealarm", d.HeldPreAlarm, time.Second, time.Hour},
			{"held_alarm", d.HeldAlarm, time.Second, time.Hour}} {
			if t.d.set && (t.d.Duration < t.min || t.d.Duration > t.max) {
				bad(key+"."+t.key, "%s must be between %s and %s", t.d.Duration, t.min, t.max)
			}
		}
		if d.HeldPreAlarm.set && d.HeldAlarm.set && d.HeldPreAlarm.Duration >= d.HeldAlarm.Duration {
			bad(key+".held_prealarm", "%s must be shorter than held_alarm (%s)", d.HeldPreAlarm.Duration, d.HeldAlarm.Duration)
		}
		if p := d.Pulse.Duration; p < minPulse || p > maxPulse {
			bad(key+".pulse", "%s must be between %s and %s", p, minPulse, maxPulse)
		}
	}
	for i, b := range c.BreakGlass {
		key := fmt.Sprintf("break_glass[%d]", i)
		if b.Label == "" {
			bad(key+".label", "required (names the holder in events)")
		}
		if _, err := b.Credential(); err != nil {
			bad(key, "%v", err)
		}
	}
	c.validateReaders(bad, names, lines)
	return errors.Join(errs...)
}

// validateReaders checks the [[reader]] tables against the doors.
// lines holds the GPIO lines the doors use: a keypad line must not be one
// (a keypad scan would drive a relay).
func (c *Config) validateReaders(bad func(key, format string, args ...any), doors map[string]int, lines map[string]string) {
	if len(c.Readers) == 0 {
		bad("reader", "at least one [[reader]] is required")
	}
	names := map[string]int{}
	lanes := map[string]int{} // door + direction
	for i, r := range c.Readers {
		key := fmt.Sprintf("reader[%d]", i)
		if r.Name == "" {
			bad(key+".name", "required (a PC/SC reader name; `tobira readers` lists them)")
		} else if j, dup := names[r.Name]; dup {
			bad(key+".name", "%q is also reader[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
		if _, ok := doors[r.Door]; !ok {
			bad(key+".door", "%q is not the name of a [[door]]", r.Door)
		}
		if r.Direction != "in" && r.Direction != "out" {
			bad(key+".direction", "%q must be in or out", r.Direction)
		} else if j, dup := lanes[r.Door+"\x00"+r.Direction]; dup && r.Door != "" {
			bad(key+".direction", "door %q already has an %q reader: reader[%d]", r.Door, r.Direction, j)
		} else {
			lanes[r.Door+"\x00"+r.Direction] = i
		}
		mode, err := reader.ParseMode(r.Mode)
		if err != nil {
			bad(key+".mode", "%q must be serial, pin, freearea or enroll", r.Mode)
		}
		if d := r.CommandTimeout.Duration; d < 100*time.Millisecond || d > time.Minute {
			bad(key+".command_timeout", "%s must be between 100ms and 1m", d)
		}
		if d := r.SignTimeout.Duration; d < time.Second || d > 2*time.Minute {
			bad(key+".sign_timeout", "%s must be between 1s and 2m", d)
		}
		needKeypad := mode == reader.ModePIN || mode == reader.ModeEnroll
		if mode == reader.ModeFreeArea {
			if r.FreeArea == nil {
				bad(key+".free_area", "required with mode = \"freearea\"")
			} else if err := r.FreeArea.Validate(); err != nil {
				bad(key+".free_area", "%v", err)
			} else {
				needKeypad = r.FreeArea.Auth == "verify_pin"
			}
		} else if r.FreeArea != nil {
			bad(key+".free_area", "set, but mode is %q, not freearea", mode)
		}
		if needKeypad && r.Keypad == nil {
			bad(key+".keypad", "required: mode %q asks for the PIN", mode)
		}
		if r.Keypad != nil {
			r.Keypad.validate(key+".keypad", bad)
			for _, p := range append(append([]string(nil), r.Keypad.Rows...), r.Keypad.Cols...) {
				if other, taken := lines[p]; taken {
					bad(key+".keypad", "line %q is also %s", p, other)
				} else if p != "" {
					lines[p] = key + ".keypad"
				}
			}
		}
	}
}

func (k *KeypadConfig) validate(key string, bad func(key, format string, args ...any)) {
	switch k.Kind {
	case "evdev":
		if !filepath.IsAbs(k.Device) {
			bad(key+".device", "%q must be an absolute path such as /dev/input/by-id/...-event-kbd", k.Device)
		}
	case "matrix":
		if len(k.Rows) != 4 || len(k.Cols) != 3 {
			bad(key, "a matrix keypad needs 4 rows and 3 cols (GPIO line names), got %d and %d", len(k.Rows), len(k.Cols))
		}
	default:
		bad(key+".kind", "%q must be evdev or matrix", k.Kind)
	}
	if d := k.Timeout.Duration; d < time.Second || d > 5*time.Minute {
		bad(key+".timeout", "%s must be between 1s and 5m", d)
	}
}

func (h *HQConfig) validate(bad func(key, format string, args ...any)) {
	if h.Batch < 1 || h.Batch > proto.MaxBatch {
		bad("hq.batch", "%d must be between 1 and %d", h.Batch, proto.MaxBatch)
	}
	if h.Window < 1 || h.Window > 256 {
		bad("hq.window", "%d must be between 1 and 256", h.Window)
	}
	if h.Broker != "" && len(h.Brokers) > 0 {
		bad("hq.brokers", "set hq.broker (one broker) or hq.brokers (several), not both")
		return
	}
	if h.Broker == "" && len(h.Brokers) == 0 {
		bad("hq.broker", "required (tcp://host:1883 or ssl://host:8883; hq.brokers for several)")
		return
	}
	for i, b := range h.BrokerURLs() {
		key := "hq.broker"
		if len(h.Brokers) > 0 {
			key = fmt.Sprintf("hq.brokers[%d]", i)
		}
		h.validateBroker(key, b, bad)
	}
}

// BrokerURLs returns the broker URLs: Brokers, or Broker alone.
func (h HQConfig) BrokerURLs() []string {
	if len(h.Brokers) > 0 {
		return h.Brokers
	}
	return []string{h.Broker}
}

// validateBroker checks one broker URL (config key key) and the TLS files
// its scheme asks for.
func (h *HQConfig) validateBroker(key, broker string, bad func(key, format string, args ...any)) {
	u, err := url.Parse(broker)
	if err != nil || u.Host == "" {
		bad(key, "%q is not a URL like tcp://host:1883", broker)
		return
	}
	switch u.Scheme {
	case "tcp", "mqtt":
		if h.ClientCert != "" || h.ClientKey != "" || h.CACert != "" {
			bad(key, "%q is not TLS (ssl://) but ca_cert/client_cert/client_key are set", broker)
		}
	case "ssl", "tls", "mqtts":
		if h.CACert == "" {
			bad("hq.ca_cert", "required with a TLS broker URL")
		}
		if (h.ClientCert == "") != (h.ClientKey == "") {
			bad("hq.client_cert", "client_cert and client_key go together")
		}
	default:
		bad(key, "scheme %q must be tcp or ssl", u.Scheme)
	}
}

// ParseFallback turns "deny" (or "") and "grant_flag" into a policy.Fallback.
func ParseFallback(s string) (policy.Fallback, error) {
	switch s {
	case "", "deny":
		return policy.FallbackDeny, nil
	case "grant_flag":
		return policy.FallbackGrantFlag, nil
	}
	return 0, fmt.Errorf("unknown fallback %q", s)
}

// DoorSetup turns a [[door]] table into the door package's configuration
// and pin names; doors naming the same interlock share one.
func (d DoorConfig) DoorSetup(interlocks map[string]*door.Interlock) (door.Config, door.PinNames, error) {
	pull := func(s string) gpio.Pull { p, _ := door.ParsePull(s); return p }
	mode, err := door.ParseMode(d.Mode)
	if err != nil {
		return door.Config{}, door.PinNames{}, err
	}
	cfg := door.Config{
		Name: d.Name, ActiveLow: d.RelayActiveLow, FailSafe: d.FailSafe, PulseLength: d.Pulse.Duration,
		Relay2:         door.RelayConfig{ActiveLow: d.Relay2ActiveLow, FailSafe: d.Relay2FailSafe},
		Green:          door.OutputConfig{ActiveLow: d.GreenActiveLow},
		Red:            door.OutputConfig{ActiveLow: d.RedActiveLow},
		Buzzer:         door.OutputConfig{ActiveLow: d.BuzzerActiveLow},
		Contact:        door.InputConfig{ActiveLow: d.ContactActiveLow, Pull: pull(d.ContactPull)},
		REX:            door.InputConfig{ActiveLow: d.REXActiveLow, Pull: pull(d.REXPull)},
		Fire:           door.InputConfig{ActiveLow: d.FireActiveLow, Pull: pull(d.FirePull)},
		Lockdown:       door.InputConfig{ActiveLow: d.LockdownActiveLow, Pull: pull(d.LockdownPull)},
		Tamper:         door.InputConfig{ActiveLow: d.TamperActiveLow, Pull: pull(d.TamperPull)},
		Debounce:       d.Debounce.Duration,
		SampleInterval: d.SampleInterval.Duration,
		REXPulse:       d.REXPulse.Duration,
		HeldPreAlarm:   d.HeldPreAlarm.Duration,
		HeldAlarm:      d.HeldAlarm.Duration,
		Mode:           mode,
	}
	if d.Interlock != "" {
		il, ok := interlocks[d.Interlock]
		if !ok {
			il = door.NewInterlock(d.Interlock)
			interlocks[d.Interlock] = il
		}
		cfg.Interlock = il
	}
	names := door.PinNames{Relay: d.RelayPin, Relay2: d.Relay2Pin, Green: d.GreenPin, Red: d.RedPin, Buzzer: d.BuzzerPin,
		Contact: d.ContactPin, REX: d.REXPin, Fire: d.FirePin, Lockdown: d.LockdownPin,
		Tamper: d.TamperPin}
	return cfg, names, nil
}
