package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/internal/tomlconf"
)

// TestExampleSettings loads the shipped example, which sets every key (an
// opt-in one, off by default, as a commented-out line "# key = ..."), and
// checks that docs/HQ.md documents every key.
func TestExampleSettings(t *testing.T) {
	const example = "../../deploy/tobira-hq.example.toml"
	f, err := loadSettings(example)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/HQ.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if s.commented && (s.file(f) != nil || !bytes.Contains(text, []byte("\n# "+s.key+" "))) {
			t.Errorf("the example does not show %s commented out", s.key)
		} else if !s.commented && s.file(f) == nil {
			t.Errorf("the example does not show %s", s.key)
		}
		if !bytes.Contains(doc, []byte("| `"+s.key+"` |")) {
			t.Errorf("docs/HQ.md has no row for %s", s.key)
		}
	}
}

// TestSettings checks where a setting comes from: the flag, else
// $TOBIRA_HQ_<KEY>, else the file (--config, $TOBIRA_HQ_CONFIG, or the
// default file when it exists); and that the file is read strictly. The
// events command shows which store path won: it names it in its error.
func TestSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("hq.toml", "# HQ\ndb = \"/from/file.db\"\nbroker = \"tcp://127.0.0.1:1883\"\n")
	other := write("other.toml", "db = \"/from/other.db\"\n")
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		defFile  string // the default file ("" none)
		wantErr  error
		wantText string
	}{
		{"flag --config", []string{"events", "--config", good}, nil, "", nil, "/from/file.db"},
		{"config after the subcommand's flags", []string{"events", "--format", "csv", "--config", good}, nil, "", nil, "/from/file.db"},
		{"config before the subcommand", []string{"--config", good, "events"}, nil, "", nil, "/from/file.db"},
		{"$TOBIRA_HQ_CONFIG", []string{"events"}, map[string]string{"TOBIRA_HQ_CONFIG": good}, "", nil, "/from/file.db"},
		{"--config wins over $TOBIRA_HQ_CONFIG", []string{"events", "--config", other}, map[string]string{"TOBIRA_HQ_CONFIG": good}, "", nil, "/from/other.db"},
		{"default file", []string{"events"}, nil, good, nil, "/from/file.db"},
		{"missing default file is no error", []string{"events"}, nil, filepath.Join(dir, "none.toml"), nil, "stat hq.db"},
		{"--config '' reads no file", []string{"events", "--config", ""}, nil, good, nil, "stat hq.db"},
		{"environment wins over the file", []string{"events", "--config", good}, map[string]string{"TOBIRA_HQ_DB": "/from/env.db"}, "", nil, "/from/env.db"},
		{"flag wins over both", []string{"events", "--config", good, "--db", "/from/flag.db"}, map[string]string{"TOBIRA_HQ_DB": "/from/env.db"}, "", nil, "/from/flag.db"},
		{"empty variable is unset", []string{"events", "--config", good}, map[string]string{"TOBIRA_HQ_DB": ""}, "", nil, "/from/file.db"},
		{"named file missing", []string{"events", "--config", filepath.Join(dir, "none.toml")}, nil, "", os.ErrNotExist, "none.toml"},
		{"$TOBIRA_HQ_CONFIG missing", []string{"events"}, map[string]string{"TOBIRA_HQ_CONFIG": filepath.Join(dir, "gone.toml")}, "", os.ErrNotExist, "gone.toml"},
		{"unknown key", []string{"events", "--config", write("typo.toml", "db = \"/x.db\"\nbrokr = \"tcp://x:1883\"\n")}, nil, "", tomlconf.ErrUnknownKey,
			"typo.toml line 2: unknown key brokr"},
		{"key given twice", []string{"events", "--config", write("twice.toml", "db = \"/a.db\"\n\ndb = \"/b.db\"\n")}, nil, "", tomlconf.ErrSyntax,
			"twice.toml line 3:"},
		{"empty value", []string{"events", "--config", write("empty.toml", "db = \"\"\n")}, nil, "", nil, "empty.toml: db is empty"},
		{"wrong type", []string{"events", "--config", write("type.toml", "db = 7\n")}, nil, "", tomlconf.ErrSyntax, "type.toml line 1:"},
		{"a broken default file does not stop help", []string{"help", "events"}, nil, filepath.Join(dir, "typo.toml"), nil, ""},
		{"nor keygen", []string{"keygen", "--out", filepath.Join(dir, "k")}, nil, filepath.Join(dir, "typo.toml"), nil, ""},
		{"bad log level from the environment", []string{"events", "--config", good}, map[string]string{"TOBIRA_HQ_LOG_LEVEL": "loud"}, "", nil,
			`$TOBIRA_HQ_LOG_LEVEL: log level "loud"`},
		{"bad log level in the file", []string{"events", "--config", write("level.toml", "log_level = \"chatty\"\n")}, nil, "", nil,
			`level.toml: log_level: log level "chatty"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := settingsSource{defaultConfig: tt.defFile, lookupEnv: func(k string) (string, bool) {
				v, ok := tt.env[k]
				return v, ok
			}}
			var out bytes.Buffer
			err := cli.Execute(t.Context(), newRoot(src), tt.args, &out, &out)
			if tt.args[0] == "help" || tt.args[0] == "keygen" {
				if err != nil {
					t.Fatalf("%v: %v", tt.args, err)
				}
				return
			}
			// events always fails here: the store named does not exist.
			if err == nil || !strings.Contains(err.Error(), tt.wantText) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want one naming %q (%v)", err, tt.wantText, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "tobira-hq events: ") {
				t.Errorf("error %q does not name the command", err)
			}
		})
	}
}

// TestLevelFlag checks the names --log-level takes.
func TestLevelFlag(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
		ok   bool
	}{
		{"debug", slog.LevelDebug, true},
		{"INFO", slog.LevelInfo, true},
		{"Warn", slog.LevelWarn, true},
		{"error", slog.LevelError, true},
		{"loud", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		var l levelFlag
		err := l.Set(tt.in)
		if (err == nil) != tt.ok || tt.ok && slog.Level(l) != tt.want {
			t.Errorf("Set(%q) = %v, level %v; want ok=%v, level %v", tt.in, err, slog.Level(l), tt.ok, tt.want)
		}
	}
}
