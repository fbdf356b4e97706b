package firmware

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Report is one device's release status as HQ stores it (one JSON file
// per device in a reports directory until the HQ store takes them).
type Report struct {
	// Device is the device's name.
	Device string `json:"device"`
	// Status is what the device reported.
	Status Status `json:"status"`
	// Reported is when HQ received it.
	Reported time.Time `json:"reported"`
}

// ReadReports reads every *.json report in dir, sorted by device.
func ReadReports(dir string) ([]Report, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list reports in %s: %w", dir, err)
	}
	var reps []Report
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read report: %w", err)
		}
		var r Report
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%w: report %s: %w", ErrMalformed, f, err)
		}
		reps = append(reps, r)
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].Device < reps[j].Device })
	return reps, nil
}

// Rollout counts the devices of a release by where they stand.
type Rollout struct {
	// Version is the release counted.
	Version string
	// Committed, Trial, RolledBack and Other count devices that committed
	// it, run it on trial, rolled it back, or have not taken it yet.
	Committed, Trial, RolledBack, Other int
	// Failed names the devices that rolled it back, with the reason.
	Failed []string
}

// Done reports whether no device is on trial of the release any more.
func (r Rollout) Done() bool { return r.Trial == 0 }

// CountRollout summarises reports for one release version.
func CountRollout(reps []Report, version string) Rollout {
	r := Rollout{Version: version}
	for _, rep := range reps {
		s := rep.Status
		switch {
		case s.Pending == version:
			r.Trial++
		case s.Committed == version:
			r.Committed++
		case s.Last != nil && s.Last.Version == version && s.Last.Outcome != OutcomeCommitted:
			r.RolledBack++
			r.Failed = append(r.Failed, rep.Device+" ("+string(s.Last.Outcome)+" "+s.Last.Reason+")")
		default:
			r.Other++
		}
	}
	return r
}
