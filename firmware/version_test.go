package firmware

import (
	"errors"
	"testing"
	"time"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"1.2.3", Version{1, 2, 3}, true},
		{"0.0.0", Version{}, true},
		{"10.20.4294967295", Version{10, 20, 4294967295}, true},
		{"1.2", Version{}, false},
		{"1.2.3.4", Version{}, false},
		{"v1.2.3", Version{}, false},
		{"1.02.3", Version{}, false},
		{"1.2.3-rc1", Version{}, false},
		{"1..3", Version{}, false},
		{"../../etc", Version{}, false},
		{"1.2.4294967296", Version{}, false},
		{"+1.2.3", Version{}, false},
	} {
		got, err := ParseVersion(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseVersion(%q) error %v does not wrap ErrMalformed", tc.in, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0}, {"1.0.0", "1.0.1", -1}, {"1.10.0", "1.9.9", 1}, {"2.0.0", "10.0.0", -1},
	} {
		a, _ := ParseVersion(tc.a)
		b, _ := ParseVersion(tc.b)
		if got := a.Compare(b); got != tc.want {
			t.Errorf("%s vs %s = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestWindow(t *testing.T) {
	jst := time.FixedZone("JST", 9*3600)
	at := func(h, m int) time.Time { return time.Date(2026, 5, 1, h, m, 0, 0, jst) }
	for _, tc := range []struct {
		window string
		t      time.Time
		want   bool
	}{
		{"", at(12, 0), true},
		{"02:00-04:00", at(2, 0), true},
		{"02:00-04:00", at(3, 59), true},
		{"02:00-04:00", at(4, 0), false},
		{"02:00-04:00", at(1, 59), false},
		{"22:00-02:00", at(23, 0), true},
		{"22:00-02:00", at(1, 0), true},
		{"22:00-02:00", at(12, 0), false},
		{"02:00-04:00", time.Date(2026, 4, 30, 18, 0, 0, 0, time.UTC), true}, // 03:00 JST
	} {
		w, err := ParseWindow(tc.window, jst)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Contains(tc.t); got != tc.want {
			t.Errorf("%s contains %s = %v, want %v", tc.window, tc.t, got, tc.want)
		}
	}
	for _, bad := range []string{"2-4", "02:00-24:00", "02:00-04:60", "02:00-04:00x", "aa:bb-cc:dd"} {
		if _, err := ParseWindow(bad, nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseWindow(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}
