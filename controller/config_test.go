package controller

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
site = "s1"
device = "d1"
data_dir = "/var/lib/tobira"
[trust]
anchors = ["/etc/tobira/ca.pem"]
[hq]
broker = "tcp://127.0.0.1:1883"
[[door]]
name = "front"
reader = "Virtual PCD 00 00"
relay_pin = "GPIO17"
`

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
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := LoadConfig("../deploy/tobira.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Doors) != 1 || c.Doors[0].Pulse.Duration != 5*time.Second || !c.Doors[0].RelayActiveLow {
		t.Errorf("example config decoded wrongly: %+v", c.Doors)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(string) string
		wantIn []string
	}{
		{"syntax", func(s string) string { return s + "\n[[door]\n" }, []string{"bad.toml line"}},
		{"unknown key", func(s string) string { return strings.Replace(s, "relay_pin", "relay_pn", 1) }, []string{"unknown key door.relay_pn"}},
		{"bad site", func(s string) string { return strings.Replace(s, `"s1"`, `"a/b"`, 1) }, []string{"site:", `"a/b"`}},
		{"relative data dir", func(s string) string { return strings.Replace(s, `"/var/lib/tobira"`, `"data"`, 1) }, []string{"data_dir:"}},
		{"no anchors", func(s string) string { return strings.Replace(s, `anchors = ["/etc/tobira/ca.pem"]`, ``, 1) }, []string{"trust.anchors:"}},
		{"bad pulse", func(s string) string { return s + `pulse = "fast"` + "\n" }, []string{"fast", "duration"}},
		{"zero pulse", func(s string) string { return s + `pulse = "0s"` + "\n" }, []string{"door[0].pulse: 0s must be between"}},
		{"pulse too long", func(s string) string { return s + `pulse = "1h"` + "\n" }, []string{"door[0].pulse:", "1h0m0s"}},
		{"broker scheme", func(s string) string { return strings.Replace(s, "tcp://", "http://", 1) }, []string{"hq.broker:", `"http"`}},
		{"tls without ca", func(s string) string { return strings.Replace(s, "tcp://", "ssl://", 1) }, []string{"hq.ca_cert:"}},
		{"firmware relative root", func(s string) string { return s + "[firmware]\nroot = \"fw\"\n" }, []string{"firmware.root:"}},
		{"firmware deadline too short", func(s string) string { return s + "[firmware]\nhealth_deadline = \"1s\"\n" }, []string{"firmware.health_deadline: 1s"}},
		{"firmware attempts", func(s string) string { return s + "[firmware]\nmax_attempts = 1000\n" }, []string{"firmware.max_attempts: 1000"}},
		{"no doors", func(s string) string { return s[:strings.Index(s, "[[door]]")] }, []string{"door: at least one"}},
		{"duplicate door", func(s string) string { return s + s[strings.Index(s, "[[door]]"):] }, []string{`door[1].name: "front" is also used by door[0]`, "door[1].reader:", "door[1].relay_pin:"}},
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
