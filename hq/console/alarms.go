package console

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/sync/proto"
)

// alarmActor is the audit log's actor of the alarms HQ raises itself.
const alarmActor = "hq"

// observeAlarms derives the alarms from ev and records each one raised
// anew in the audit log.
func (s *Server) observeAlarms(site, device string, ev proto.Event) {
	raised, err := s.cfg.Alarms.Observe(site, device, ev, s.clk.Now())
	if err != nil {
		s.log.Error("console: cannot record alarm", "site", site, "device", device, "reason", ev.Reason, "err", err)
	}
	for _, a := range raised {
		s.recordAlarm(a)
	}
}

// recordAlarm writes a newly raised alarm to the audit log.
func (s *Server) recordAlarm(a alarm.Alarm) {
	after, _ := json.Marshal(a)
	if _, err := s.cfg.Audit.Append(audit.Entry{Actor: alarmActor, Action: "alarm", Target: a.Where(), After: string(after)}); err != nil {
		s.log.Error("cannot write the audit log", "action", "alarm", "alarm", a.ID, "err", err)
	}
}

// refreshOffline raises or clears the offline alarms of the fleet's
// devices.
func (s *Server) refreshOffline() {
	devs, err := s.cfg.HQ.Fleet()
	if err != nil {
		s.log.Warn("console: fleet for the alarms", "err", err)
		return
	}
	for _, d := range devs {
		a, err := s.cfg.Alarms.SetOnline(d.Site, d.Device, d.Online, s.clk.Now())
		if err != nil {
			s.log.Error("console: cannot record alarm", "site", d.Site, "device", d.Device, "err", err)
		}
		if a != nil {
			s.recordAlarm(*a)
		}
	}
}

// alarmsData is the alarm list page's data.
type alarmsData struct {
	Alarms []alarm.Alarm
}

// alarmsPage lists the alarms of the account's sites, the most pressing
// first; the page reloads itself every 2 seconds.
func (s *Server) alarmsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.refreshOffline()
	all, err := s.cfg.Alarms.All()
	if err != nil {
		s.log.Error("console: cannot read the alarms", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	var d alarmsData
	for _, a := range all {
		if rq.user.CanSite(a.Site) {
			d.Alarms = append(d.Alarms, a)
		}
	}
	s.render(w, r, rq, http.StatusOK, "alarms", "alarms.title", d)
}

// alarmForm is one alarm's page: the alarm and its acknowledgement form.
type alarmForm struct {
	Alarm   alarm.Alarm
	Comment string
	// Error is the message key of the form's error.
	Error string
}

// alarm returns the alarm of the request's {id} when rq's account may
// see it, answering the refusal otherwise.
func (s *Server) alarm(w http.ResponseWriter, r *http.Request, rq *request) (alarm.Alarm, bool) {
	a, err := s.cfg.Alarms.Get(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
		return a, false
	}
	if !rq.user.CanSite(a.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "alarm " + a.Where()})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return a, false
	}
	return a, true
}

// alarmPage shows one alarm and, while active, the form to acknowledge
// it.
func (s *Server) alarmPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if a, ok := s.alarm(w, r, rq); ok {
		s.render(w, r, rq, http.StatusOK, "alarm", "alarm.title", alarmForm{Alarm: a})
	}
}

// ackAlarm acknowledges an active alarm with the form's comment and
// records it, with the comment, in the audit log.
func (s *Server) ackAlarm(w http.ResponseWriter, r *http.Request, rq *request) {
	a, ok := s.alarm(w, r, rq)
	if !ok {
		return
	}
	f := alarmForm{Alarm: a, Comment: r.PostFormValue("comment")}
	before, after, err := s.cfg.Alarms.Ack(a.ID, rq.user.Name, f.Comment, s.clk.Now())
	switch {
	case errors.Is(err, alarm.ErrComment):
		f.Error = "alarm.need_comment"
	case errors.Is(err, alarm.ErrState):
		f.Error = "alarm.not_active"
	case err != nil:
		s.log.Error("console: acknowledge alarm", "alarm", a.ID, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	if f.Error != "" {
		s.render(w, r, rq, http.StatusUnprocessableEntity, "alarm", "alarm.title", f)
		return
	}
	b, _ := json.Marshal(before)
	c, _ := json.Marshal(after)
	s.record(rq, audit.Entry{Action: "alarm_ack", Target: a.Where(), Before: string(b), After: string(c)})
	http.Redirect(w, r, "/alarms", http.StatusSeeOther)
}
