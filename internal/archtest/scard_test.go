package archtest

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// scardPath is the PC/SC binding. It needs cgo and libpcsclite, so every
// package that imports it makes its binaries cgo-linked and unbuildable
// without the PC/SC headers.
const scardPath = "github.com/ebfe/scard"

// scardOwner is the only package that may import scardPath: reader/pcsc is the
// PC/SC transport, as periph.io keeps its drivers in host and its
// interfaces in conn. Package reader (the JPKI protocol, certificate checks,
// the Card interface) stays pure Go, so HQ can verify enrollments with it
// and build with CGO_ENABLED=0, and every other package reaches a card
// through reader.Card. Test files count too: a test that needs a real
// reader goes through reader/pcsc and reader/pcsc/pcsctest.
const scardOwner = "github.com/tobira-ac/tobira/reader/pcsc"

// readerPkg is the protocol package that must stay pure Go.
const readerPkg = "github.com/tobira-ac/tobira/reader"

// directImports maps every package of the module to the packages it
// imports directly, from its own files and from its tests.
func directImports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f",
		"{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}} {{join .XTestImports \" \"}}",
		"github.com/tobira-ac/tobira/...").Output()
	if err != nil {
		t.Fatalf("go list the module's imports: %v%s", err, stderr(err))
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			imports[f[0]] = f[1:]
		}
	}
	return imports
}

func TestOnlyReaderPCSCImportsScard(t *testing.T) {
	imports := directImports(t)
	if !slices.Contains(imports[scardOwner], scardPath) {
		t.Fatalf("%s does not import %s: the import listing is broken or the owner moved", scardOwner, scardPath)
	}
	for pkg, imps := range imports {
		if pkg != scardOwner && slices.Contains(imps, scardPath) {
			t.Errorf("%s imports %s: only %s may (reach cards through reader.Card)", pkg, scardPath, scardOwner)
		}
	}
}

// TestReaderIsPureGo checks that package reader does not depend on scard
// at all, not even through another package.
func TestReaderIsPureGo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", readerPkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v%s", readerPkg, err, stderr(err))
	}
	if slices.Contains(strings.Fields(string(out)), scardPath) {
		t.Errorf("%s depends on %s: the PC/SC transport belongs in %s", readerPkg, scardPath, scardOwner)
	}
}

// stderr returns what a failed command wrote to its standard error, on a
// line of its own, or nothing.
func stderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return "\n" + string(ee.Stderr)
	}
	return ""
}
