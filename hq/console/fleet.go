package console

import (
	"net/http"

	"github.com/tobira-ac/tobira/hq"
)

// fleetPage shows every device of the account's sites: online, version,
// snapshot and drift, outbox depth, and each door's state and mode.
func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request, rq *request) {
	devs, err := s.cfg.HQ.Fleet()
	if err != nil {
		s.log.Error("console: fleet", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	var mine []hq.DeviceInfo
	for _, d := range devs {
		if rq.user.CanSite(d.Site) {
			mine = append(mine, d)
		}
	}
	s.render(w, r, rq, http.StatusOK, "fleet", "fleet.title", fleetData{Devices: mine, Commands: s.cfg.Commands != nil, Actions: doorActions})
}

// fleetData is the fleet page's data.
type fleetData struct {
	Devices []hq.DeviceInfo
	// Commands reports whether the console can send commands.
	Commands bool
	// Actions are the commands offered for each door.
	Actions []string
}
