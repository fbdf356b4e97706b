package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// peopleCSV streams a people table of n lines; bad lines carry an
// unparsable valid_until.
type peopleCSV struct {
	n, next int
	bad     bool
	buf     []byte
}

// Read implements io.Reader.
func (p *peopleCSV) Read(b []byte) (int, error) {
	for len(p.buf) < len(b) && p.next <= p.n {
		switch {
		case p.next == 0:
			p.buf = append(p.buf, "person,groups,valid_until\n"...)
		case p.bad:
			p.buf = fmt.Appendf(p.buf, "person-%07d,staff,yesterday\n", p.next)
		default:
			p.buf = fmt.Appendf(p.buf, "person-%07d,staff;visitors,2030-01-01T00:00:00Z\n", p.next)
		}
		p.next++
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

// heapSys returns the bytes of heap the runtime holds from the OS: it
// grows to the import's peak (live data plus garbage) and does not shrink.
func heapSys() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapSys
}

// TestImportStreams imports 200,000 people lines and bounds the heap the
// import takes, and checks that a file of only bad lines reports the real
// count and applies nothing.
func TestImportStreams(t *testing.T) { eachBackend(t, testImportStreams) }

func testImportStreams(t *testing.T, open opener) {
	if testing.Short() {
		t.Skip("imports 200,000 lines")
	}
	const n = 200_000
	r := open(t)
	// With GC at 10% the heap the runtime holds tracks the live peak.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	before := heapSys()
	a, err := r.ImportCSV(context.Background(), "s1", "people", "people.csv", &peopleCSV{n: n})
	if err != nil {
		t.Fatal(err)
	}
	grew := heapSys() - before
	if a.Put != n {
		t.Fatalf("imported %d people, want %d", a.Put, n)
	}
	t.Logf("%d lines: heap grew by %d MB", n, grew>>20)
	// Parsed whole and then applied, 200,000 lines grew it by 151 MB
	// here (and 1M lines took 1.14 GB of RSS); streamed into the one
	// write transaction, by about 120 MB, most of it bbolt's pages of
	// that transaction, which hold every record until it commits.
	if limit := uint64(n * 700); grew > limit {
		t.Errorf("heap grew by %d MB importing %d lines, want below %d MB", grew>>20, n, limit>>20)
	}

	_, err = r.ImportCSV(context.Background(), "s2", "people", "bad.csv", &peopleCSV{n: n, bad: true})
	if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("bad.csv: %d bad lines (first 50 shown), nothing applied", n)) {
		t.Fatalf("import of %d bad lines = %.200v, want the real count", n, err)
	}
	if got := strings.Count(err.Error(), "\nbad.csv:"); got != 50 {
		t.Errorf("%d line errors listed, want 50", got)
	}
	if cnt, _ := r.Count("s2", policy.KindPerson); cnt != 0 {
		t.Errorf("%d people stored from a refused import, want 0", cnt)
	}
}
