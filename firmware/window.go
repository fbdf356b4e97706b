package firmware

import (
	"fmt"
	"time"
)

// Window is a daily maintenance window, e.g. 02:00-04:00 local time. The
// zero Window allows every time.
type Window struct {
	// Start and End are offsets from midnight; End < Start wraps past
	// midnight (22:00-02:00). Start == End means always.
	Start, End time.Duration
	// Location is the window's time zone; nil means the time's own.
	Location *time.Location
}

// ParseWindow parses "HH:MM-HH:MM" in loc; "" is the zero Window. Errors
// wrap ErrMalformed.
func ParseWindow(s string, loc *time.Location) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	var h1, m1, h2, m2 int
	var rest string
	n, _ := fmt.Sscanf(s, "%d:%d-%d:%d%s", &h1, &m1, &h2, &m2, &rest)
	if n != 4 || len(s) != 11 || h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59 || h1 < 0 || h2 < 0 || m1 < 0 || m2 < 0 {
		return Window{}, fmt.Errorf("%w: maintenance window %q: want HH:MM-HH:MM", ErrMalformed, s)
	}
	return Window{
		Start:    time.Duration(h1)*time.Hour + time.Duration(m1)*time.Minute,
		End:      time.Duration(h2)*time.Hour + time.Duration(m2)*time.Minute,
		Location: loc,
	}, nil
}

// Contains reports whether t lies inside the window.
func (w Window) Contains(t time.Time) bool {
	if w.Start == w.End {
		return true
	}
	if w.Location != nil {
		t = t.In(w.Location)
	}
	y, mo, d := t.Date()
	off := t.Sub(time.Date(y, mo, d, 0, 0, 0, 0, t.Location()))
	if w.Start < w.End {
		return off >= w.Start && off < w.End
	}
	return off >= w.Start || off < w.End
}

// String formats the window as HH:MM-HH:MM ("always" for the zero Window).
func (w Window) String() string {
	if w.Start == w.End {
		return "always"
	}
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(w.Start) + "-" + f(w.End)
}
