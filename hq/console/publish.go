package console

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/oplog"
	"github.com/tobira-ac/tobira/sync/proto"
)

// SnapshotPublisher publishes a site's policy snapshot to its devices
// (cmd/tobira-hq wires one from the registry and hq.Sender).
type SnapshotPublisher interface {
	// SnapshotGroups returns the device groups of site that a snapshot
	// can be published to; none when the site's devices all get one.
	SnapshotGroups(ctx context.Context, site string) ([]string, error)
	// PublishSnapshot builds site's snapshot (for group's devices when
	// group is not ""): a delta from each device's version when delta
	// and possible, else full. It publishes it and returns the
	// manifests as sent (one per device, or one per site or group
	// with Device "").
	PublishSnapshot(ctx context.Context, site, group string, delta bool) ([]proto.Manifest, error)
}

// Snapshot kinds of the publish form.
const (
	publishFull  = "full"
	publishDelta = "delta"
)

// shownRecent is how many of the newest publications (and rollouts) the
// publish (releases) page lists, of the account's sites.
const shownRecent = 20

// recentOps are the newest operations of a kind listed on a page.
type recentOps struct {
	// Ops are the operations, newest first; Max how many at most.
	Ops []oplog.Op
	Max int
}

// recent returns the newest shownRecent operations of kind on rq's
// account's sites (looked for among the oplog.Keep kept).
func (s *Server) recent(ctx context.Context, rq *request, kind oplog.Kind) (recentOps, error) {
	ops, err := s.cfg.Ops.Recent(ctx, kind, oplog.Keep)
	if err != nil {
		return recentOps{}, err
	}
	ops = slices.DeleteFunc(ops, func(op oplog.Op) bool { return !rq.user.CanSite(op.Site) })
	return recentOps{Ops: ops[:min(shownRecent, len(ops))], Max: shownRecent}, nil
}

// watched returns the operation of kind that r's path names for its watch
// page; it answers and returns false when there is none (404), its site
// is not the account's (403) or the store fails.
func (s *Server) watched(w http.ResponseWriter, r *http.Request, rq *request, kind oplog.Kind) (oplog.Op, bool) {
	op, ok, err := s.cfg.Ops.Get(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		s.log.Error("console: read the operation", "id", r.PathValue("id"), "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
	case !ok || op.Kind != kind:
		s.fail(w, r, rq, http.StatusNotFound, "error.not_found")
	case !rq.user.CanSite(op.Site):
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
	default:
		return op, true
	}
	return oplog.Op{}, false
}

// started keeps op, started from the console, and sends the browser to
// its watch page at path/ID; a store failure is logged and answered (the
// operation is in the audit log).
func (s *Server) started(w http.ResponseWriter, r *http.Request, rq *request, op oplog.Op, path string) {
	if err := s.cfg.Ops.Add(r.Context(), op); err != nil {
		s.log.Error("console: cannot keep the operation", "kind", op.Kind, "id", op.ID, "site", op.Site, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	http.Redirect(w, r, path+op.ID, http.StatusSeeOther)
}

// publishForm is the publish form's and confirmation page's data.
type publishForm struct {
	Site, Group, Kind string
	// Sites and Groups are the choices; Groups only once a site is
	// chosen and when it has groups.
	Sites, Groups []string
	// Devices are the site's devices (on the confirmation page).
	Devices []hq.DeviceInfo
	// Errors maps a field to the message key of its error.
	Errors map[string]string
	// Recent are the newest publications of the account's sites (on
	// the form; not on a form sent back with errors).
	Recent recentOps
}

// publishEnabled answers 503 when the console publishes no snapshots.
func (s *Server) publishEnabled(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if s.cfg.Snapshots == nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "publish.disabled")
		return false
	}
	return true
}

// mySites returns the sites of the fleet that rq's account may see, and
// the fleet.
func (s *Server) mySites(rq *request) ([]string, []hq.DeviceInfo, error) {
	devs, err := s.cfg.HQ.Fleet()
	if err != nil {
		return nil, nil, err
	}
	var sites []string
	var mine []hq.DeviceInfo
	for _, d := range devs {
		if !rq.user.CanSite(d.Site) {
			continue
		}
		mine = append(mine, d)
		if !slices.Contains(sites, d.Site) {
			sites = append(sites, d.Site)
		}
	}
	slices.Sort(sites)
	return sites, mine, nil
}

// readPublish reads and checks the publish form from get. It answers
// and returns false when the request cannot go on: no publisher, a site
// not granted, a store failure, or field errors (the form again, 422).
func (s *Server) readPublish(w http.ResponseWriter, r *http.Request, rq *request, get func(string) string) (publishForm, bool) {
	if !s.publishEnabled(w, r, rq) {
		return publishForm{}, false
	}
	f, ok := s.checkPublish(w, r, rq, get)
	return f, s.validForm(w, r, rq, ok, f.Errors, "publish", "publish.title", f)
}

// validForm reports whether a form whose checks went ok has no field
// errors; with some, it answers with the page naming them (422).
func (s *Server) validForm(w http.ResponseWriter, r *http.Request, rq *request, ok bool, errs map[string]string, page, title string, f any) bool {
	if ok && len(errs) > 0 {
		s.render(w, r, rq, http.StatusUnprocessableEntity, page, title, f)
		return false
	}
	return ok
}

// checkPublish reads the publish form from get and checks its fields.
// It answers and returns false when the request cannot go on (a site not
// granted, a store failure); field errors are in the form.
func (s *Server) checkPublish(w http.ResponseWriter, r *http.Request, rq *request, get func(string) string) (publishForm, bool) {
	f := publishForm{Site: get("site"), Group: get("group"), Kind: get("kind"), Errors: map[string]string{}}
	sites, devs, err := s.mySites(rq)
	if err != nil {
		s.log.Error("console: fleet", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return f, false
	}
	f.Sites = sites
	if proto.CheckName(f.Site) != nil {
		f.Errors["site"] = "publish.bad_site"
		return f, true
	}
	if !rq.user.CanSite(f.Site) {
		s.record(rq, audit.Entry{Action: "denied", Target: "publish " + f.Site})
		s.fail(w, r, rq, http.StatusForbidden, "error.forbidden_site")
		return f, false
	}
	if f.Groups, err = s.cfg.Snapshots.SnapshotGroups(r.Context(), f.Site); err != nil {
		s.log.Error("console: snapshot groups", "site", f.Site, "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return f, false
	}
	if f.Group != "" && !slices.Contains(f.Groups, f.Group) {
		f.Errors["group"] = "publish.bad_group"
	}
	if f.Kind != publishFull && f.Kind != publishDelta {
		f.Errors["kind"] = "publish.bad_kind"
	}
	for _, d := range devs {
		if d.Site == f.Site {
			f.Devices = append(f.Devices, d)
		}
	}
	return f, true
}

// publishPage shows the publish form: a site, a group when the site has
// some, full or delta.
func (s *Server) publishPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.publishEnabled(w, r, rq) {
		return
	}
	sites, _, err := s.mySites(rq)
	if err != nil {
		s.log.Error("console: fleet", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	f := publishForm{Kind: publishDelta, Sites: sites, Site: r.URL.Query().Get("site")}
	if f.Recent, err = s.recent(r.Context(), rq, oplog.Publication); err != nil {
		s.log.Error("console: publications", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	if f.Site != "" && rq.user.CanSite(f.Site) && proto.CheckName(f.Site) == nil {
		f.Groups, _ = s.cfg.Snapshots.SnapshotGroups(r.Context(), f.Site)
	}
	s.render(w, r, rq, http.StatusOK, "publish", "publish.title", f)
}

// publishConfirm shows what a publication will do and asks to confirm.
func (s *Server) publishConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	if f, ok := s.readPublish(w, r, rq, r.URL.Query().Get); ok {
		s.render(w, r, rq, http.StatusOK, "publish_confirm", "publish.confirm_title", f)
	}
}

// publishSnapshot publishes a confirmed snapshot, records it in the
// audit log and sends the browser to its watch page.
func (s *Server) publishSnapshot(w http.ResponseWriter, r *http.Request, rq *request) {
	f, ok := s.readPublish(w, r, rq, r.PostFormValue)
	if !ok {
		return
	}
	ms, err := s.cfg.Snapshots.PublishSnapshot(r.Context(), f.Site, f.Group, f.Kind == publishDelta)
	p := oplog.Op{ID: proto.NewCommandID(), Kind: oplog.Publication, Site: f.Site, Group: f.Group, Snapshot: f.Kind, By: rq.user.Name,
		At: s.clk.Now(), Manifests: ms}
	after, _ := json.Marshal(struct {
		Kind      string           `json:"kind"`
		Manifests []proto.Manifest `json:"manifests"`
		Error     string           `json:"error,omitempty"`
	}{f.Kind, ms, errText(err)})
	s.record(rq, audit.Entry{Action: "publish", Target: where(f.Site, f.Group), After: string(after)})
	if err != nil {
		s.log.Error("console: cannot publish snapshot", "site", f.Site, "group", f.Group, "err", err)
		s.fail(w, r, rq, http.StatusBadGateway, "publish.failed")
		return
	}
	s.started(w, r, rq, p, "/publish/")
}

// errText is err's text, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// where names a site or a site's group: site or site/group.
func where(site, group string) string {
	if group == "" {
		return site
	}
	return site + "/" + group
}

// Device states on the publication and rollout pages.
const (
	stateWaiting    = "waiting"
	stateApplied    = "applied"
	stateFailed     = "failed"
	stateOffered    = "offered"
	stateInstalled  = "installed"
	stateHealthy    = "healthy"
	stateRolledBack = "rolled_back"
	stateRefused    = "refused"
)

// publishDevice is one device on a publication's watch page.
type publishDevice struct {
	Site, Device string
	Online       bool
	// Want is the published version and WantHash its content hash;
	// Have and HaveHash what the device reports.
	Want, Have         uint64
	WantHash, HaveHash string
	// Transfer is the transfer sent to the device ("" for a site's or
	// group's).
	Transfer string
	// State is waiting, applied or failed; Error the device's reason.
	State, Error string
}

// publicationData is a publication's watch page.
type publicationData struct {
	oplog.Op
	Devices []publishDevice
	// Done reports that no device is waiting any more.
	Done bool
}

// watch returns each device's progress in applying p, from the fleet
// (the version and content hash it reports: the fleet view's drift)
// and the devices' results.
func (s *Server) watch(p oplog.Op) (publicationData, error) {
	devs, err := s.cfg.HQ.Fleet()
	if err != nil {
		return publicationData{}, err
	}
	d := publicationData{Op: p, Done: true}
	for _, m := range p.Manifests {
		// A manifest with no device (a site's or group's) is watched
		// on every device of the site.
		for _, dev := range devs {
			if dev.Site != m.Site || (m.Device != "" && dev.Device != m.Device) {
				continue
			}
			pd := publishDevice{Site: dev.Site, Device: dev.Device, Online: dev.Online, Want: m.Version, WantHash: m.ContentHash,
				Have: dev.Status.Snapshot.Version, HaveHash: dev.Status.Snapshot.Hash, Transfer: m.Transfer}
			pd.State, pd.Error = s.applyState(pd, dev)
			d.Done = d.Done && pd.State != stateWaiting
			d.Devices = append(d.Devices, pd)
		}
	}
	return d, nil
}

// applyState says whether the device dev has applied pd's snapshot:
// applied once it reports the version (and content hash) or a newer
// one, failed when it answered the transfer with an error, else
// waiting.
func (s *Server) applyState(pd publishDevice, dev hq.DeviceInfo) (string, string) {
	if pd.Have > pd.Want || pd.Have == pd.Want && (pd.WantHash == "" || pd.HaveHash == pd.WantHash) {
		return stateApplied, ""
	}
	if res, ok, err := s.cfg.HQ.Result(pd.Transfer); err == nil && ok && res.Device == dev.Device && res.Status != proto.ResultDone {
		return stateFailed, res.Status + ": " + res.Error
	}
	return stateWaiting, ""
}

// publicationPage shows each device applying a publication, and reloads
// itself until none waits.
func (s *Server) publicationPage(w http.ResponseWriter, r *http.Request, rq *request) {
	p, ok := s.watched(w, r, rq, oplog.Publication)
	if !ok {
		return
	}
	d, err := s.watch(p)
	if err != nil {
		s.log.Error("console: fleet", "err", err)
		s.fail(w, r, rq, http.StatusInternalServerError, "error.internal")
		return
	}
	s.render(w, r, rq, http.StatusOK, "publication", "publication.title", d)
}
