package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Rule: no file imports the standard library's sync under another name.
//
// Why: tobira has a package of its own named sync (the edge's link). A file
// that renames the standard library's package (gosync "sync") to make room
// for it makes every reader stop and translate; inside package sync a plain
// import "sync" works (a package's own name is not in scope), and a file
// that needs both renames tobira's (tsync) instead.
func TestStandardSyncKeepsItsName(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "sync" && imp.Name != nil && imp.Name.Name != "sync" {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s imports the standard library's sync as %s: import it as sync (rename tobira's package instead)", rel, imp.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("walked %d Go files under %s: the walk is broken", files, root)
	}
}

// moduleRoot is the directory holding go.mod, two levels above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
