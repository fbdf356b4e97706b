package tomlconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// conf is a configuration in the shape of tobira's: scalars, arrays, a
// table and an array of tables with a sub-table.
type conf struct {
	Site string   `toml:"site"`
	Keys []string `toml:"keys"`
	HQ   struct {
		Broker string   `toml:"broker"`
		Keys   []string `toml:"keys"`
	} `toml:"hq"`
	Door []struct {
		Name   string   `toml:"name"`
		Pins   []string `toml:"pins"`
		Keypad struct {
			Rows []string `toml:"rows"`
		} `toml:"keypad"`
	} `toml:"door"`
	Inline []struct {
		Tags []string `toml:"tags"`
	} `toml:"inline"`
	Text string `toml:"text"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr error    // nil: accepted
		wantIn  []string // substrings of the error
	}{
		{"valid", `site = "s1"
keys = ["a", "b"]
[hq]
broker = "tcp://x:1883"
keys = [
  "k1",   # a comment ] with a bracket
  "k2",
]
[[door]]
name = "front"
pins = ["GPIO17"]
[door.keypad]
rows = ["1"]
[[door]]
name = "back"
pins = ["GPIO18"]
[door.keypad]
rows = ["2"]
`, nil, nil},
		{"inline array of tables repeats keys", `inline = [{tags = ["a"]}, {tags = ["b"]}]`, nil, nil},
		{"multi-line string holding a key", "text = \"\"\"\nkeys = [\"x\"]\n\"\"\"\nkeys = [\"y\"]\n", nil, nil},
		{"array twice at the top", "site = \"s\"\nkeys = [\"a\"]\n\nkeys = [\"b\"]\n", ErrDuplicateKey,
			[]string{"f.toml line 4:", "key given twice: keys (first on line 2)"}},
		{"array twice in a table", "[hq]\nkeys = [\"a\"]\nbroker = \"x\"\nkeys = [\"b\"]\n", ErrDuplicateKey,
			[]string{"f.toml line 4:", "hq.keys (first on line 2)"}},
		{"array twice, dotted", "hq.keys = [\"a\"]\n[other]\n", ErrUnknownKey, []string{"f.toml line 2: unknown key other"}},
		{"array twice in one element of an array of tables", "[[door]]\npins = [\"1\"]\n[[door]]\npins = [\"2\"]\nname = \"x\"\npins = [\"3\"]\n",
			ErrDuplicateKey, []string{"f.toml line 6:", "door.pins (first on line 4)"}},
		{"array twice in a sub-table", "[[door]]\n[door.keypad]\nrows = [\"1\"]\nrows = [\"2\"]\n", ErrDuplicateKey,
			[]string{"f.toml line 4:", "door.keypad.rows (first on line 3)"}},
		{"scalar twice", "site = \"a\"\nsite = \"b\"\n", ErrSyntax, []string{"f.toml line 2:", "already been defined"}},
		{"table twice", "[hq]\n[hq]\n", ErrSyntax, []string{"f.toml line 2:"}},
		{"unknown key", "site = \"s\"\n[hq]\nbrokr = \"x\"\n", ErrUnknownKey, []string{"f.toml line 3: unknown key hq.brokr"}},
		{"unknown key in an array of tables", "[[door]]\nname = \"a\"\n[[door]]\nnmae = \"b\"\n", ErrUnknownKey,
			[]string{"f.toml line 4: unknown key door.nmae"}},
		{"wrong type", "site = 3\n", ErrSyntax, []string{"f.toml line 1:"}},
		{"syntax", "site = \n", ErrSyntax, []string{"f.toml line 1:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c conf
			err := Decode("f.toml", []byte(tt.text), &c)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decode = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("[hq]\nkeys = [\"a\"]\nkeys = [\"b\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c conf
	if err := Load(p, &c); !errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), p+" line 3") {
		t.Errorf("Load = %v, want a duplicate naming %s line 3", err, p)
	}
	if err := Load(filepath.Join(t.TempDir(), "missing.toml"), &c); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want ErrNotExist", err)
	}
}

func TestKeyLines(t *testing.T) {
	got := keyLines("a = 1\n[\"t.x\" . y]\n'b c' = [\n  1,\n]\n[[d]]\ne = \"#[\"\n")
	for key, line := range map[string]int{"a": 1, `"t.x".y`: 2, `"t.x".y."b c"`: 3, "d": 6, "d.e": 7} {
		if l := got[key]; len(l) != 1 || l[0] != line {
			t.Errorf("line of %s = %v, want [%d] (all: %v)", key, l, line, got)
		}
	}
}
