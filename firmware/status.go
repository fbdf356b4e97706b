package firmware

// Status is what a device reports about its releases (to HQ, to an admin).
// It names versions only.
type Status struct {
	// Running is the version current points at ("" if none installed).
	Running string `json:"running,omitempty"`
	// Committed is the last version that reported healthy.
	Committed string `json:"committed,omitempty"`
	// Pending is the version on trial ("" if none).
	Pending string `json:"pending,omitempty"`
	// Previous is the version kept for rollback.
	Previous string `json:"previous,omitempty"`
	// Attempts is the pending release's start count.
	Attempts int `json:"attempts,omitempty"`
	// Floor is the anti-rollback floor.
	Floor string `json:"floor,omitempty"`
	// Bad lists versions rolled back on this device.
	Bad []string `json:"bad,omitempty"`
	// Last is the result of the last trial.
	Last *Result `json:"last_result,omitempty"`
}

// ReadStatus reads the status of an update root without locking it.
func ReadStatus(root string) (Status, error) {
	l := layout{root}
	st, cur, err := l.load()
	if err != nil {
		return Status{}, err
	}
	prev, err := l.linkVersion(previousLink)
	if err != nil {
		return Status{}, err
	}
	return Status{Running: cur, Committed: st.Committed, Pending: st.Pending, Previous: prev,
		Attempts: st.BootAttempts, Floor: st.Floor, Bad: st.Bad, Last: st.Last}, nil
}
