package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	tests := []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"new file", "one", 0o600},
		{"replaced, other mode", "two, longer", 0o644},
		{"replaced by less", "3", 0o600},
	}
	for _, tt := range tests {
		if err := Write(path, []byte(tt.data), tt.perm); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tt.data {
			t.Fatalf("%s: read %q, %v; want %q", tt.name, got, err, tt.data)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != tt.perm {
			t.Fatalf("%s: mode %v, %v; want %v", tt.name, fi.Mode().Perm(), err, tt.perm)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d entries in the directory, want only the file (no temporary left)", len(ents))
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state.json")
	if err := Write(path, []byte("x"), 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}
