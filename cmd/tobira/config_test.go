package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/tobira-ac/tobira/door"
)

// goodConfig is a valid configuration: baseConfig with the packaged paths.
var goodConfig = baseConfig("/var/lib/tobira", "/etc/tobira/ca.pem")

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("good.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Doors[0].Pulse.Duration; got != DefaultPulse {
		t.Errorf("default pulse = %s, want %s", got, DefaultPulse)
	}
	if c.Firmware.Root != "" || c.Firmware.MaxAttempts != 3 || c.Firmware.HealthDeadline.Duration != 5*time.Minute {
		t.Errorf("firmware defaults = %+v", c.Firmware)
	}
	if c.LogLevel != "info" {
		t.Errorf("default log level = %q", c.LogLevel)
	}
	if c.Metrics.Listen != "" {
		t.Errorf("metrics on by default: listen = %q", c.Metrics.Listen)
	}
	c, err = ParseConfig("metrics.toml", []byte(goodConfig+"[metrics]\nlisten = \"127.0.0.1:9469\"\n"))
	if err != nil || c.Metrics.Listen != "127.0.0.1:9469" {
		t.Errorf("[metrics] listen: %v, %+v", err, c.Metrics)
	}
}

// [hq] brokers lists several brokers; broker is its one-element shorthand.
func TestConfigBrokers(t *testing.T) {
	urls := []string{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1884", "tcp://127.0.0.1:1885"}
	text := strings.Replace(goodConfig, `broker = "tcp://127.0.0.1:1883"`, `brokers = ["`+strings.Join(urls, `", "`)+`"]`, 1)
	c, err := ParseConfig("brokers.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.HQ.BrokerURLs(); !slices.Equal(got, urls) || c.HQ.Broker != "" {
		t.Fatalf("BrokerURLs = %q, broker %q; want %q", got, c.HQ.Broker, urls)
	}
	c, err = ParseConfig("broker.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.HQ.BrokerURLs(); !slices.Equal(got, urls[:1]) {
		t.Fatalf("BrokerURLs of broker alone = %q", got)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := LoadConfig("../../deploy/tobira.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Doors) != 1 || c.Doors[0].Pulse.Duration != 5*time.Second || !c.Doors[0].RelayActiveLow || len(c.Readers) != 2 || c.Readers[1].Keypad == nil {
		t.Errorf("example config decoded wrongly: %+v", c.Doors)
	}
}

// doorKey adds a key to the [[door]] table of goodConfig.
func doorKey(line string) func(string) string {
	return func(s string) string {
		return strings.Replace(s, `relay_pin = "GPIO17"`, `relay_pin = "GPIO17"`+"\n"+line, 1)
	}
}

// readerKey adds a key (or a sub-table) at the end of the [[reader]] table.
func readerKey(line string) func(string) string {
	return func(s string) string { return s + line + "\n" }
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(string) string
		wantIn []string
	}{
		{"syntax", func(s string) string { return s + "\n[[door]\n" }, []string{"bad.toml line"}},
		{"unknown key", func(s string) string { return strings.Replace(s, "relay_pin", "relay_pn", 1) }, []string{"bad.toml line 10: unknown key door.relay_pn"}},
		{"array key given twice", func(s string) string {
			return strings.Replace(s, "[hq]\n", "anchors = [\"/etc/tobira/other.pem\"]\n[hq]\n", 1)
		}, []string{"bad.toml line 6:", "key given twice: trust.anchors (first on line 5)"}},
		{"hq.keys given twice (issue 12)", func(s string) string {
			return strings.Replace(s, "[hq]\n", "[hq]\nkeys = [\"/etc/tobira/hq-a.pem\"]\nkeys = [\"/etc/tobira/hq-b.pem\"]\n", 1)
		}, []string{"bad.toml line 8:", "key given twice: hq.keys (first on line 7)"}},
		{"scalar key given twice", doorKey(`relay_pin = "GPIO18"`), []string{"bad.toml line 11:", "already been defined"}},
		{"bad site", func(s string) string { return strings.Replace(s, `"s1"`, `"a/b"`, 1) }, []string{"site:", `"a/b"`}},
		{"relative data dir", func(s string) string { return strings.Replace(s, `"/var/lib/tobira"`, `"data"`, 1) }, []string{"data_dir:"}},
		{"no anchors", func(s string) string { return strings.Replace(s, `anchors = ["/etc/tobira/ca.pem"]`, ``, 1) }, []string{"trust.anchors:"}},
		{"bad pulse", doorKey(`pulse = "fast"`), []string{"fast", "duration"}},
		{"zero pulse", doorKey(`pulse = "0s"`), []string{"door[0].pulse: 0s must be between"}},
		{"pulse too long", doorKey(`pulse = "1h"`), []string{"door[0].pulse:", "1h0m0s"}},
		{"broker scheme", func(s string) string { return strings.Replace(s, "tcp://", "http://", 1) }, []string{"hq.broker:", `"http"`}},
		{"broker and brokers", func(s string) string {
			return strings.Replace(s, "[hq]\n", "[hq]\nbrokers = [\"tcp://127.0.0.1:1884\"]\n", 1)
		}, []string{"hq.brokers: set hq.broker (one broker) or hq.brokers (several), not both"}},
		{"bad second broker", func(s string) string {
			return strings.Replace(s, `broker = "tcp://127.0.0.1:1883"`, `brokers = ["tcp://127.0.0.1:1883", "http://127.0.0.1:1884"]`, 1)
		}, []string{"hq.brokers[1]:", `"http"`}},
		{"tls without ca", func(s string) string { return strings.Replace(s, "tcp://", "ssl://", 1) }, []string{"hq.ca_cert:"}},
		{"firmware relative root", func(s string) string { return s + "[firmware]\nroot = \"fw\"\n" }, []string{"firmware.root:"}},
		{"firmware deadline too short", func(s string) string { return s + "[firmware]\nhealth_deadline = \"1s\"\n" }, []string{"firmware.health_deadline: 1s"}},
		{"firmware attempts", func(s string) string { return s + "[firmware]\nmax_attempts = 1000\n" }, []string{"firmware.max_attempts: 1000"}},
		{"metrics listen without port", func(s string) string { return s + "[metrics]\nlisten = \"127.0.0.1\"\n" }, []string{"metrics.listen:", `"127.0.0.1" is not host:port`}},
		{"metrics listen bad port", func(s string) string { return s + "[metrics]\nlisten = \"127.0.0.1:prom\"\n" }, []string{"metrics.listen:", `port "prom"`}},
		{"metrics unknown key", func(s string) string { return s + "[metrics]\nport = 9469\n" }, []string{"unknown key metrics.port"}},
		{"no doors", func(s string) string { return s[:strings.Index(s, "[[door]]")] }, []string{"door: at least one"}},
		{"duplicate door", func(s string) string { return s + s[strings.Index(s, "[[door]]"):] }, []string{`door[1].name: "front" is also used by door[0]`, "door[1].relay_pin:", `reader[1].name: "Virtual PCD 00 00" is also reader[0]`}},
		{"no readers", func(s string) string { return s[:strings.Index(s, "[[reader]]")] }, []string{"reader: at least one [[reader]]"}},
		{"reader at unknown door", func(s string) string { return strings.Replace(s, `door = "front"`, `door = "back"`, 1) }, []string{`reader[0].door: "back" is not the name of a [[door]]`}},
		{"bad direction", readerKey(`direction = "up"`), []string{`reader[0].direction: "up" must be in or out`}},
		{"bad mode", readerKey(`mode = "face"`), []string{`reader[0].mode: "face"`}},
		{"pin mode without keypad", readerKey(`mode = "pin"`), []string{`reader[0].keypad: required: mode "pin" asks for the PIN`}},
		{"freearea without profile", readerKey(`mode = "freearea"`), []string{`reader[0].free_area: required`}},
		{"keypad kind", readerKey("mode = \"pin\"\n[reader.keypad]\nkind = \"usb\""), []string{`reader[0].keypad.kind: "usb"`}},
		{"keypad on the relay line", readerKey("mode = \"pin\"\n[reader.keypad]\nkind = \"matrix\"\nrows = [\"GPIO17\",\"GPIO5\",\"GPIO6\",\"GPIO13\"]\ncols = [\"GPIO12\",\"GPIO16\",\"GPIO20\"]"),
			[]string{`reader[0].keypad: line "GPIO17" is also door[0].relay_pin`}},
		{"contact on the relay line", doorKey(`contact_pin = "GPIO17"`), []string{`door[0].contact_pin: line "GPIO17" is also door[0].relay_pin`}},
		{"bad pull", doorKey(`rex_pull = "sideways"`), []string{`door[0].rex_pull: "sideways"`}},
		{"tamper on the contact's line", doorKey("contact_pin = \"GPIO22\"\ntamper_pin = \"GPIO22\""),
			[]string{`door[0].tamper_pin: line "GPIO22" is also door[0].contact_pin`}},
		{"tamper on the relay line", doorKey(`tamper_pin = "GPIO17"`), []string{`door[0].tamper_pin: line "GPIO17" is also door[0].relay_pin`}},
		{"bad tamper pull", doorKey(`tamper_pull = "sideways"`), []string{`door[0].tamper_pull: "sideways" must be up, down, none or keep`}},
		{"tamper level not a boolean", doorKey(`tamper_active_low = "yes"`), []string{"tamper_active_low"}},
		{"bad door mode", doorKey(`mode = "open"`), []string{`door[0].mode: "open"`}},
		{"bad fallback", doorKey(`on_stale_revocations = "shrug"`), []string{`door[0].on_stale_revocations: "shrug"`}},
		{"held alarms out of order", doorKey("held_prealarm = \"40s\"\nheld_alarm = \"30s\""), []string{"door[0].held_prealarm: 40s must be shorter than held_alarm (30s)"}},
		{"break-glass without label", func(s string) string {
			return s + "[[break_glass]]\nissuer_key_id = \"0101010101010101010101010101010101010101\"\nserial = \"0a\"\n"
		}, []string{"break_glass[0].label: required"}},
		{"break-glass bad serial", func(s string) string {
			return s + "[[break_glass]]\nlabel = \"fire\"\nissuer_key_id = \"0101\"\nserial = \"zz\"\n"
		}, []string{"break_glass[0]:", "not hex"}},
		{"evdev relative path", readerKey("mode = \"enroll\"\n[reader.keypad]\nkind = \"evdev\"\ndevice = \"event0\""), []string{`reader[0].keypad.device: "event0"`}},
		{"two in readers", func(s string) string {
			return s + "[[reader]]\nname = \"Virtual PCD 00 01\"\ndoor = \"front\"\n"
		}, []string{`reader[1].direction: door "front" already has an "in" reader`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("bad.toml", []byte(tt.edit(goodConfig)))
			if err == nil {
				t.Fatal("accepted a bad config")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("site = 1\n[[door]]\npulse = \"-1s\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig("fuzz.toml", b)
		if err == nil {
			if c == nil || len(c.Doors) == 0 || c.Validate() != nil {
				t.Fatalf("accepted config that does not validate: %+v", c)
			}
		} else if !errors.Is(err, ErrConfig) {
			t.Fatalf("error is not ErrConfig: %v", err)
		}
	})
}

// TestDoorSetupTamper checks that tamper_pin, tamper_active_low and
// tamper_pull reach the door package's configuration and pin names.
func TestDoorSetupTamper(t *testing.T) {
	tests := []struct {
		name  string
		keys  string
		pin   string
		input door.InputConfig
	}{
		{"no tamper input", "", "", door.InputConfig{Pull: gpio.PullUp}},
		{"tamper, defaults", `tamper_pin = "GPIO26"`, "GPIO26", door.InputConfig{Pull: gpio.PullUp}},
		{"tamper active-low, pulled down", "tamper_pin = \"GPIO26\"\ntamper_active_low = true\ntamper_pull = \"down\"", "GPIO26",
			door.InputConfig{ActiveLow: true, Pull: gpio.PullDown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig("tamper.toml", []byte(doorKey(tt.keys)(goodConfig)))
			if err != nil {
				t.Fatal(err)
			}
			cfg, names, err := c.Doors[0].DoorSetup(map[string]*door.Interlock{})
			if err != nil {
				t.Fatal(err)
			}
			if names.Tamper != tt.pin || cfg.Tamper != tt.input {
				t.Errorf("tamper pin %q, input %+v; want %q, %+v", names.Tamper, cfg.Tamper, tt.pin, tt.input)
			}
		})
	}
}
