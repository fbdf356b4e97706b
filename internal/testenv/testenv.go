// Package testenv holds the one rule for a test that needs something from
// the machine (a pcscd, a mosquitto, a PostgreSQL, a RabbitMQ, a Chromium,
// a C toolchain, debootstrap): without it the test is skipped with the
// reason, except under CI=true, where a missing tool is a broken set-up and
// the test fails. scripts/install-deps test installs all of them.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// CI reports whether the tests run under CI=true.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing ends t because what it needs is missing (why, formatted as by
// fmt.Sprintf): t.Skip outside CI, t.Fatal under CI=true.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true: a missing tool is a failure, not a skip)", why)
		return
	}
	t.Skip(why)
}
