package testenv_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/tobira-ac/tobira/internal/testenv"
)

// recorder is a testing.TB that records how Missing ended it.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatalf(f string, a ...any) { r.failed, r.msg = true, f }
func (r *recorder) Skip(a ...any)             { r.skipped = true }
func (r *recorder) Skipf(f string, a ...any)  { r.skipped = true }

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		ci         string
		fail, skip bool
	}{
		{"true", true, false},
		{"", false, true},
		{"false", false, true},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		testenv.Missing(r, "no %s", "tool")
		if r.failed != tc.fail || r.skipped != tc.skip {
			t.Errorf("CI=%q: failed %v skipped %v, want %v %v", tc.ci, r.failed, r.skipped, tc.fail, tc.skip)
		}
	}
}

func TestFreePort(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	l.Close()
}
