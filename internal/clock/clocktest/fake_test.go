package clocktest

import (
	"testing"
	"time"
)

func fired(t *testing.T, c <-chan time.Time) bool {
	t.Helper()
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestFakeTimers(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := New(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(5 * time.Second)
	stopped := f.NewTimer(time.Second)
	if f.Pending() != 3 {
		t.Fatalf("Pending = %d, want 3", f.Pending())
	}
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop should report true once, then false")
	}
	f.Advance(2*time.Second - time.Nanosecond)
	if fired(t, a.C()) {
		t.Error("timer fired before its deadline")
	}
	f.Advance(time.Nanosecond)
	if !fired(t, a.C()) {
		t.Error("timer did not fire at its deadline")
	}
	if fired(t, b.C()) || fired(t, stopped.C()) {
		t.Error("later or stopped timer fired")
	}
	f.Advance(time.Hour)
	if !fired(t, b.C()) {
		t.Error("second timer did not fire")
	}
	if got := f.Now(); !got.Equal(start.Add(time.Hour + 2*time.Second)) {
		t.Errorf("Now = %v", got)
	}
	if f.Pending() != 0 {
		t.Errorf("Pending = %d after all fired", f.Pending())
	}
	if !fired(t, f.NewTimer(0).C()) {
		t.Error("a zero-length timer must fire at once")
	}
}
