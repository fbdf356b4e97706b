package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/oplog"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Releases offers firmware releases to devices and reports their
// answers (ReleaseStore over an hq.ReleaseServer has it).
type Releases interface {
	// List returns the releases HQ holds, newest first.
	List() ([]firmware.Manifest, error)
	// Rollout offers release version to group of site and returns the
	// offers as sent.
	Rollout(ctx context.Context, site, group, version string) ([]proto.ReleaseOffer, error)
	// Reports returns the devices' latest release reports.
	Reports() []proto.ReleaseReport
}

// ReleaseStore is Releases over an hq.ReleaseServer that serves the
// release store directory Dir (Dir/<version>/release.json and its
// binary, as `tobira-release release publish` lays them out and as
// hq.DialReleaseServer loads them).
type ReleaseStore struct {
	// Server offers the releases and collects the reports.
	Server *hq.ReleaseServer
	// Dir is the release store.
	Dir string
}

// errNoRelease means the release store holds no such version.
var errNoRelease = errors.New("no such release")

// envelopes returns the signed manifests of the store by version.
func (rs ReleaseStore) envelopes() (map[string][]byte, []firmware.Manifest, error) {
	paths, err := filepath.Glob(filepath.Join(rs.Dir, "*", "release.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("list release store %s: %w", rs.Dir, err)
	}
	envs := map[string][]byte{}
	var ms []firmware.Manifest
	for _, p := range paths {
		env, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("read release store: %w", err)
		}
		m, err := firmware.PeekManifest(env)
		if err != nil {
			return nil, nil, fmt.Errorf("release store entry %s: %w", p, err)
		}
		envs[m.Version], ms = env, append(ms, m)
	}
	slices.SortFunc(ms, func(a, b firmware.Manifest) int {
		return cmp.Or(b.Issued.Compare(a.Issued), cmp.Compare(b.Version, a.Version))
	})
	return envs, ms, nil
}

// List implements Releases.
func (rs ReleaseStore) List() ([]firmware.Manifest, error) {
	_, ms, err := rs.envelopes()
	return ms, err
}

// Rollout implements Releases: one retained offer on the group's topic.
func (rs ReleaseStore) Rollout(ctx context.Context, site, group, version string) ([]proto.ReleaseOffer, error) {
	envs, _, err := rs.envelopes()
	if err != nil {
		return nil, err
	}
	env, ok := envs[version]
	if !ok {
		return nil, fmt.Errorf("roll out %s: %w in %s", version, errNoRelease, rs.Dir)
	}
	return rs.Server.Publish(ctx, hq.ReleasePublication{Site: site, Groups: []string{group}, Envelope: env})
}

// Reports implements Releases.
func (rs ReleaseStore) Reports() []proto.ReleaseReport { return rs.Server.Reports() }

// rolloutForm is the rollout confirmation page's data.
type rolloutForm struct {
	Site, Group, Version string
	// Release is the chosen release.
	Release firmware.Manifest
	// Errors maps a field to the message key of its error.
	Errors map[string]string
}

// releasesData is the releases page's data.
type releasesData struct {
	Releases []firmware.Manifest
	// Sites are the sites the account may roll out to.
	Sites []string
	// Rollouts counts each release's devices (firmware.CountRollout).
	Rollouts map[string]firmware.Rollout
	// Recent are the newest rollouts to the account's sites.
	Recent recentOps
}

// rolloutEnabled answers 503 when the console rolls out no releases.
func (s *Server) rolloutEnabled(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if s.cfg.Releases == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "rollout.disabled")
		return false
	}
	return true
}

// releasesPage lists the releases HQ holds, with how many devices run
// each, and a form to roll one out.
func (s *Server) releasesPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.rolloutEnabled(w, r, rq) {
		return
	}
	rels, err := s.cfg.Releases.List()
	sites, _, ferr := s.mySites(rq)
	recent, oerr := s.recent(r.Context(), rq, oplog.Rollout)
	if err = cmp.Or(err, ferr, oerr); err != nil {
		s.log.Error("console: releases", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	reps := s.myReports(rq, "")
	d := releasesData{Releases: rels, Sites: sites, Rollouts: map[string]firmware.Rollout{}, Recent: recent}
	for _, m := range rels {
		d.Rollouts[m.Version] = firmware.CountRollout(hq.FirmwareReports(reps), m.Version)
	}
	s.render(w, r, rq, http.StatusOK, "releases", "releases.title", d)
}

// myReports returns the release reports of the account's sites (of
// site only, when not "").
func (s *Server) myReports(rq *request, site string) []proto.ReleaseReport {
	var out []proto.ReleaseReport
	for _, rep := range s.cfg.Releases.Reports() {
		if rq.user.CanSite(rep.Site) && (site == "" || rep.Site == site) {
			out = append(out, rep)
		}
	}
	return out
}

// readRollout reads and checks the rollout form from get. It answers
// and returns false when the request cannot go on: no releases, a site
// not granted, a store failure, or field errors (the confirmation page
// naming them, 422).
func (s *Server) readRollout(w http.ResponseWriter, r *http.Request, rq *request, get func(string) string) (rolloutForm, bool) {
	if !s.rolloutEnabled(w, r, rq) {
		return rolloutForm{}, false
	}
	f, ok := s.checkRollout(w, r, rq, get)
	return f, s.validForm(w, r, rq, ok, f.Errors, "rollout_confirm", "rollout.confirm_title", f)
}

// checkRollout reads the rollout form from get and checks its fields.
// It answers and returns false when the request cannot go on (a site
// not granted, a store failure); field errors are in the form.
func (s *Server) checkRollout(w http.ResponseWriter, r *http.Request, rq *request, get func(string) string) (rolloutForm, bool) {
	f := rolloutForm{Site: get("site"), Group: get("group"), Version: get("version"), Errors: map[string]string{}}
	if proto.CheckName(f.Site) != nil {
		f.Errors["site"] = "rollout.bad_site"
	} else if !rq.user.CanSite(f.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "rollout " + f.Site})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return f, false
	}
	if proto.CheckName(f.Group) != nil {
		f.Errors["group"] = "rollout.bad_group"
	}
	rels, err := s.cfg.Releases.List()
	if err != nil {
		s.log.Error("console: releases", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return f, false
	}
	i := slices.IndexFunc(rels, func(m firmware.Manifest) bool { return m.Version == f.Version })
	if i < 0 {
		f.Errors["version"] = "rollout.bad_version"
	} else {
		f.Release = rels[i]
	}
	return f, true
}

// rolloutConfirm shows what a rollout will do and asks to confirm it.
func (s *Server) rolloutConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	if f, ok := s.readRollout(w, r, rq, r.URL.Query().Get); ok {
		s.render(w, r, rq, http.StatusOK, "rollout_confirm", "rollout.confirm_title", f)
	}
}

// startRollout offers a confirmed release to a group, records it in the
// audit log and sends the browser to its watch page.
func (s *Server) startRollout(w http.ResponseWriter, r *http.Request, rq *request) {
	f, ok := s.readRollout(w, r, rq, r.PostFormValue)
	if !ok {
		return
	}
	offers, err := s.cfg.Releases.Rollout(r.Context(), f.Site, f.Group, f.Version)
	ro := oplog.Op{ID: proto.NewCommandID(), Kind: oplog.Rollout, Site: f.Site, Group: f.Group, Version: f.Version, By: rq.user.Name, At: s.clk.Now()}
	for _, o := range offers {
		ro.Offers = append(ro.Offers, o.ID)
	}
	after, _ := json.Marshal(struct {
		Version string   `json:"version"`
		Offers  []string `json:"offers"`
		Error   string   `json:"error,omitempty"`
	}{f.Version, ro.Offers, errText(err)})
	s.record(rq, audit.Entry{Action: "rollout", Target: where(f.Site, f.Group), After: string(after)})
	if err != nil {
		s.log.Error("console: cannot roll out release", "site", f.Site, "group", f.Group, "version", f.Version, "err", err)
		s.fail(w, r, rq, http.StatusBadGateway, "rollout.failed")
		return
	}
	s.started(w, r, rq, ro, "/rollouts/")
}

// rolloutDevice is one device on a rollout's watch page.
type rolloutDevice struct {
	Site, Device string
	// Running is the version the device runs.
	Running string
	// State is offered, installed (on trial), healthy, rolled_back or
	// refused; Detail the device's reason.
	State, Detail string
	// Reported is when the device made its last report.
	Reported time.Time
}

// rolloutData is a rollout's watch page.
type rolloutData struct {
	oplog.Op
	Devices []rolloutDevice
	// Count sums the devices' states (firmware.CountRollout).
	Count firmware.Rollout
	// Done reports that no device is offered or on trial any more.
	Done bool
}

// rolloutState says where a device's report rep stands in rollout ro:
// "" when the device has not answered ro (another group, or not yet).
func rolloutState(ro oplog.Op, rep proto.ReleaseReport) (state, detail string) {
	st := rep.Firmware
	answered := rep.Offer != nil && slices.Contains(ro.Offers, rep.Offer.ID)
	switch {
	case st.Last != nil && st.Last.Version == ro.Version && st.Last.Outcome != firmware.OutcomeCommitted && st.Pending != ro.Version:
		return stateRolledBack, string(st.Last.Outcome) + " " + st.Last.Reason
	case st.Pending == ro.Version:
		return stateInstalled, ""
	case st.Committed == ro.Version && (answered || st.Running == ro.Version):
		return stateHealthy, ""
	case answered && (rep.Offer.State == proto.OfferRefused || rep.Offer.State == proto.OfferFailed):
		return stateRefused, rep.Offer.Reason + " " + rep.Offer.Error
	case answered:
		return stateOffered, rep.Offer.State
	}
	return "", ""
}

// watchRollout returns each device's progress in ro from the release
// reports.
func (s *Server) watchRollout(rq *request, ro oplog.Op) rolloutData {
	d := rolloutData{Op: ro}
	waiting := false
	var reps []proto.ReleaseReport
	for _, rep := range s.myReports(rq, ro.Site) {
		state, detail := rolloutState(ro, rep)
		if state == "" {
			continue
		}
		reps = append(reps, rep)
		d.Devices = append(d.Devices, rolloutDevice{Site: rep.Site, Device: rep.Device, Running: rep.Firmware.Running,
			State: state, Detail: detail, Reported: rep.Time})
		waiting = waiting || state == stateOffered || state == stateInstalled
	}
	d.Done = len(d.Devices) > 0 && !waiting
	d.Count = firmware.CountRollout(hq.FirmwareReports(reps), ro.Version)
	return d
}

// rolloutPage shows each device of a rollout, and reloads itself until
// none is offered or on trial.
func (s *Server) rolloutPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.rolloutEnabled(w, r, rq) {
		return
	}
	ro, ok := s.watched(w, r, rq, oplog.Rollout)
	if !ok {
		return
	}
	s.render(w, r, rq, http.StatusOK, "rollout", "rollout.title", s.watchRollout(rq, ro))
}
