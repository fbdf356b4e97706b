package policy

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	_ "time/tzdata" // schedules need zone data even on a system without it
)

// span is a half-open range of minutes of a day.
type span struct{ start, end int }

// holidayDay is the index of holiday windows in compiledSchedule.weekly.
const holidayDay = 7

// compiledSchedule is a Schedule ready to evaluate.
type compiledSchedule struct {
	weekly  [8][]span // time.Weekday 0..6, then holidayDay
	special map[string][]span
}

var dayNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "holiday": holidayDay}

// parseClock parses "HH:MM" (00:00..24:00) into minutes.
func parseClock(s string) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("time %q is not HH:MM", s)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil {
		return 0, fmt.Errorf("time %q is not HH:MM: %w", s, err)
	}
	if h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("time %q is out of range", s)
	}
	return h*60 + m, nil
}

func compileSpan(w Window) (span, error) {
	a, err := parseClock(w.Start)
	if err != nil {
		return span{}, err
	}
	b, err := parseClock(w.End)
	if err != nil {
		return span{}, err
	}
	if b <= a {
		return span{}, fmt.Errorf("window %s-%s is empty (split a window across midnight in two)", w.Start, w.End)
	}
	return span{a, b}, nil
}

func compileSchedule(s Schedule) (*compiledSchedule, error) {
	c := &compiledSchedule{special: map[string][]span{}}
	for i, w := range s.Windows {
		sp, err := compileSpan(w)
		if err != nil {
			return nil, fmt.Errorf("windows[%d]: %w", i, err)
		}
		if len(w.Days) == 0 {
			return nil, fmt.Errorf("windows[%d]: no days", i)
		}
		for _, d := range w.Days {
			idx, ok := dayNames[d]
			if !ok {
				return nil, fmt.Errorf("windows[%d]: unknown day %q (want mon..sun or holiday)", i, d)
			}
			c.weekly[idx] = append(c.weekly[idx], sp)
		}
	}
	for i, sd := range s.Special {
		if _, err := time.Parse(time.DateOnly, sd.Date); err != nil {
			return nil, fmt.Errorf("special[%d]: date %q: %w", i, sd.Date, err)
		}
		if _, dup := c.special[sd.Date]; dup {
			return nil, fmt.Errorf("special[%d]: date %s repeats", i, sd.Date)
		}
		spans := []span{}
		for j, w := range sd.Windows {
			sp, err := compileSpan(w)
			if err != nil {
				return nil, fmt.Errorf("special[%d].windows[%d]: %w", i, j, err)
			}
			spans = append(spans, sp)
		}
		c.special[sd.Date] = spans
	}
	return c, nil
}

// active reports whether the schedule is active at t (already in the site's
// zone), given the site's holidays.
func (c *compiledSchedule) active(t time.Time, holidays map[string]bool) bool {
	date := t.Format(time.DateOnly)
	spans, ok := c.special[date]
	if !ok {
		if holidays[date] {
			spans = c.weekly[holidayDay]
		} else {
			spans = c.weekly[t.Weekday()]
		}
	}
	m := t.Hour()*60 + t.Minute()
	for _, sp := range spans {
		if m >= sp.start && m < sp.end {
			return true
		}
	}
	return false
}

// rules are the small record kinds of one snapshot version, decoded.
type rules struct {
	version   uint64
	appliedAt time.Time // when this process applied (or, at open, found) the version
	site      Site
	loc       *time.Location
	doors     map[string]Door
	areas     map[string]Area
	levels    map[string][]AccessLevel // by person group
	schedules map[string]*compiledSchedule
	holidays  map[string]bool
	events    map[string]Event
}

// loadRules reads and compiles the rule records inside tx.
func loadRules(tx *bolt.Tx, version uint64) (*rules, error) {
	r := &rules{version: version, doors: map[string]Door{}, areas: map[string]Area{}, levels: map[string][]AccessLevel{},
		schedules: map[string]*compiledSchedule{}, holidays: map[string]bool{}, events: map[string]Event{}}
	each := func(kind RecordKind, fn func(k, v []byte) error) error {
		b := tx.Bucket(kind.bucket())
		if b == nil {
			return fmt.Errorf("%w: %s bucket is missing", ErrCorrupt, kind)
		}
		return b.ForEach(func(k, v []byte) error {
			if err := fn(k, v); err != nil {
				return fmt.Errorf("%w: stored %s %q: %w", ErrCorrupt, kind, printableKey(k), err)
			}
			return nil
		})
	}
	err := each(KindSite, func(_, v []byte) error { return json.Unmarshal(v, &r.site) })
	if err != nil {
		return nil, err
	}
	if r.loc, err = r.site.location(); err != nil {
		return nil, fmt.Errorf("%w: site: %w", ErrCorrupt, err)
	}
	err = each(KindDoor, func(k, v []byte) error {
		d := Door{ID: string(k)}
		err := json.Unmarshal(v, &d)
		r.doors[d.ID] = d
		return err
	})
	if err != nil {
		return nil, err
	}
	err = each(KindArea, func(k, v []byte) error {
		a := Area{ID: string(k)}
		err := json.Unmarshal(v, &a)
		r.areas[a.ID] = a
		return err
	})
	if err != nil {
		return nil, err
	}
	err = each(KindLevel, func(k, v []byte) error {
		l := AccessLevel{ID: string(k)}
		err := json.Unmarshal(v, &l)
		r.levels[l.Group] = append(r.levels[l.Group], l)
		return err
	})
	if err != nil {
		return nil, err
	}
	err = each(KindSchedule, func(k, v []byte) error {
		s := Schedule{ID: string(k)}
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		c, err := compileSchedule(s)
		r.schedules[s.ID] = c
		return err
	})
	if err != nil {
		return nil, err
	}
	err = each(KindHoliday, func(k, _ []byte) error { r.holidays[string(k)] = true; return nil })
	if err != nil {
		return nil, err
	}
	err = each(KindEvent, func(k, v []byte) error {
		e := Event{ID: string(k)}
		err := json.Unmarshal(v, &e)
		r.events[e.ID] = e
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// scheduleActive reports whether schedule id is active at t; "" is always
// active and an unknown schedule never is.
func (r *rules) scheduleActive(id string, t time.Time) bool {
	if id == "" {
		return true
	}
	c, ok := r.schedules[id]
	return ok && c.active(t.In(r.loc), r.holidays)
}

// doorMode returns the door's mode at t.
func (r *rules) doorMode(d Door, t time.Time) DoorMode {
	for _, m := range d.Modes {
		if r.scheduleActive(m.Schedule, t) {
			return m.Mode
		}
	}
	if d.DefaultMode == "" {
		return ModeCard
	}
	return d.DefaultMode
}

// inDoorGroup reports whether door d is in door group g.
func inDoorGroup(d Door, g string) bool {
	for _, dg := range d.Groups {
		if dg == g {
			return true
		}
	}
	return false
}

// access says whether a person with groups may pass door d at t: granted,
// or the denial reason (no level for the door, or none active now).
func (r *rules) access(groups []string, d Door, t time.Time) (bool, Reason) {
	covered := false
	for _, g := range groups {
		for _, l := range r.levels[g] {
			if !inDoorGroup(d, l.DoorGroup) {
				continue
			}
			covered = true
			if r.scheduleActive(l.Schedule, t) {
				return true, ""
			}
		}
	}
	if covered {
		return false, ReasonOutsideSchedule
	}
	return false, ReasonNoAccess
}
