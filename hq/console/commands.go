package console

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/sync/proto"
)

// doorActions are the commands the console sends.
var doorActions = []string{proto.ActionUnlock, proto.ActionSetMode, proto.ActionLockdown, proto.ActionRelease, proto.ActionForgiveAPB}

// doorModes are the modes a door can be set to (package door's Modes;
// hq does not import door).
var doorModes = []string{"normal", "unlocked", "locked_down", "first_person_in"}

// commandForm is the confirmation page's data.
type commandForm struct {
	Site, Device, Door, Action, Mode string
	// Credential is the hex credential key of forgive_apb.
	Credential     string
	Actions, Modes []string
	// Errors maps a field to the message key of its error.
	Errors map[string]string
}

// readCommand reads and checks the command form from values get: the
// action, site and device, a door where the action needs one, a mode
// for set_mode, a credential for forgive_apb.
func readCommand(get func(string) string) commandForm {
	f := commandForm{Site: get("site"), Device: get("device"), Door: get("door"), Action: get("action"), Mode: get("mode"),
		Credential: strings.ToLower(strings.TrimSpace(get("credential"))), Actions: doorActions, Modes: doorModes, Errors: map[string]string{}}
	if proto.CheckName(f.Site) != nil {
		f.Errors["site"] = "command.bad_site"
	}
	if proto.CheckName(f.Device) != nil {
		f.Errors["device"] = "command.bad_device"
	}
	if !slices.Contains(doorActions, f.Action) {
		f.Errors["action"] = "command.bad_action"
	}
	if (f.Action == proto.ActionUnlock || f.Action == proto.ActionSetMode) && f.Door == "" {
		f.Errors["door"] = "command.need_door"
	}
	if len(f.Door) > proto.MaxDoorLen {
		f.Errors["door"] = "command.bad_door"
	}
	if f.Action == proto.ActionSetMode && !slices.Contains(doorModes, f.Mode) {
		f.Errors["mode"] = "command.bad_mode"
	}
	if f.Action != proto.ActionSetMode {
		f.Mode = ""
	}
	checkForgive(&f)
	return f
}

// commandConfirm shows what a command will do and asks to confirm it.
func (s *Server) commandConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	f := readCommand(r.URL.Query().Get)
	if !s.commandAllowed(w, r, rq, f) {
		return
	}
	if f.Errors["credential"] == "command.need_credential" {
		delete(f.Errors, "credential") // the confirmation page asks for it
	}
	status := http.StatusOK
	if len(f.Errors) > 0 {
		status = http.StatusUnprocessableEntity
	}
	s.render(w, r, rq, status, "command", "command.title", f)
}

// commandAllowed reports whether rq's account may send f (the console
// sends commands, and the site is granted), answering the refusal.
func (s *Server) commandAllowed(w http.ResponseWriter, r *http.Request, rq *request, f commandForm) bool {
	if s.cfg.Commands == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "command.disabled")
		return false
	}
	if f.Errors["site"] == "" && !rq.user.CanSite(f.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "command " + f.Site + "/" + f.Device})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return false
	}
	return true
}

// sendCommand sends a confirmed command, records it in the audit log
// with the door's state before, and shows its result page.
func (s *Server) sendCommand(w http.ResponseWriter, r *http.Request, rq *request) {
	f := readCommand(r.PostFormValue)
	if !s.commandAllowed(w, r, rq, f) {
		return
	}
	if len(f.Errors) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "command", "command.title", f)
		return
	}
	c, err := s.cfg.Commands.SendCommand(r.Context(), proto.Command{Site: f.Site, Device: f.Device, Action: f.Action, Door: f.Door, Mode: f.Mode, Credential: f.Credential})
	after, _ := json.Marshal(c)
	e := audit.Entry{Action: "command", Target: f.Site + "/" + f.Device, Before: s.doorState(f.Site, f.Device, f.Door), After: string(after)}
	if err != nil {
		e.After += " error: " + err.Error()
		s.record(rq, e)
		s.log.Error("console: cannot send command", "site", f.Site, "device", f.Device, "action", f.Action, "err", err)
		s.fail(w, r, rq, http.StatusBadGateway, "command.send_failed")
		return
	}
	s.record(rq, e)
	http.Redirect(w, r, "/commands/"+c.ID, http.StatusSeeOther)
}

// doorState returns the fleet's last word on a device's doors (door ""
// all), as JSON for the audit log.
func (s *Server) doorState(site, device, door string) string {
	devs, err := s.cfg.HQ.Fleet()
	if err != nil {
		return ""
	}
	for _, d := range devs {
		if d.Site != site || d.Device != device {
			continue
		}
		var doors []proto.DoorStatus
		for _, ds := range d.Status.Doors {
			if door == "" || ds.Name == door {
				doors = append(doors, ds)
			}
		}
		b, _ := json.Marshal(struct {
			Online bool               `json:"online"`
			Doors  []proto.DoorStatus `json:"doors"`
		}{d.Online, doors})
		return string(b)
	}
	return ""
}

// commandData is the result page's data.
type commandData struct {
	ID     string
	Result proto.Result
	// Done reports that the device answered.
	Done bool
	// Device is the device's fleet entry (for its doors now).
	Device *hq.DeviceInfo
}

// commandResult shows a command's result once the device answered, and
// reloads itself every second until then.
func (s *Server) commandResult(w http.ResponseWriter, r *http.Request, rq *request) {
	id := r.PathValue("id")
	res, ok, err := s.cfg.HQ.Result(id)
	if err != nil {
		s.log.Error("console: command result", "id", id, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	if ok && !rq.user.CanSite(res.Site) {
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return
	}
	d := commandData{ID: id, Result: res, Done: ok}
	if ok {
		if devs, err := s.cfg.HQ.Fleet(); err == nil {
			for i := range devs {
				if devs[i].Site == res.Site && devs[i].Device == res.Device {
					d.Device = &devs[i]
				}
			}
		}
	}
	s.render(w, r, rq, http.StatusOK, "result", "result.title", d)
}
