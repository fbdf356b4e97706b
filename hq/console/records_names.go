package console

import (
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/tobira-ac/tobira/hq/console/audit"
	"github.com/tobira-ac/tobira/hq/console/auth"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// PeopleNames reads and sets people's names by person ID: personal data
// HQ keeps apart from the policy records (never in a snapshot, no
// revision). registry.Registry has it.
type PeopleNames interface {
	// PersonNames returns the names of people at site; a person without
	// a name is absent.
	PersonNames(site string, people []string) (map[string]string, error)
	// SetNames sets names (person ID -> name, "" forgets it) at site.
	SetNames(site string, names map[string]string) error
}

// personNameField is the people form's field of the person's name,
// offered to the roles that may see names.
const personNameField = "person_name"

// seesNames reports whether rq's account may see people's names.
func seesNames(rq *request) bool { return rq.user.Role.Can(auth.PermNames) }

// listNames adds the people's names to a list page of credentials or
// people, for the roles that may see them, and audits the view.
func (s *Server) listNames(rq *request, d *recordListData) {
	if !seesNames(rq) || len(d.Rows) == 0 {
		return
	}
	var named []string
	switch {
	case d.Table == "credentials" && s.cfg.Names != nil:
		d.Names = true
		for i, row := range d.Rows {
			cred := strings.TrimPrefix(row.Key, hex.EncodeToString([]byte{byte(policy.KindCredential)}))
			if d.Rows[i].Name, _ = s.cfg.Names.Name(d.Site, cred); d.Rows[i].Name != "" {
				named = append(named, cred)
			}
		}
	case d.Table == "people" && s.cfg.PeopleNames != nil:
		d.Names = true
		ids := make([]string, len(d.Rows))
		for i, row := range d.Rows {
			ids[i] = row.Cells[0]
		}
		names, err := s.cfg.PeopleNames.PersonNames(d.Site, ids)
		if err != nil {
			s.log.Warn("console: people's names", "site", d.Site, "err", err)
		}
		for i, id := range ids {
			d.Rows[i].Name = names[id]
		}
		named = slices.Sorted(maps.Keys(names))
	}
	if len(named) > 0 {
		s.record(rq, audit.Entry{Action: "view_names", Target: d.Table + " " + d.Site, After: strings.Join(named, " ")})
	}
}

// nameForm adds the person's name field to a people form, for the
// roles that may see names; with view, it shows the stored name of
// person id (an audited view).
func (s *Server) nameForm(rq *request, f *recordForm, id string, value string, view bool) {
	if f.Table != "people" || s.cfg.PeopleNames == nil || !seesNames(rq) {
		return
	}
	if view && id != "" {
		names, err := s.cfg.PeopleNames.PersonNames(f.Site, []string{id})
		if err != nil {
			s.log.Warn("console: person's name", "site", f.Site, "err", err)
		}
		if value = names[id]; value != "" {
			s.record(rq, audit.Entry{Action: "view_names", Target: "people " + f.Site, After: id})
		}
	}
	f.Fields = append(f.Fields, formField{Name: personNameField, Value: value})
}

// checkName checks a name typed in a people form: what SetNames and the
// CSV rules allow.
func checkName(f *recordForm) bool {
	name, ok := f.value(personNameField)
	if !ok {
		return true
	}
	if err := policy.CheckText("name", name); err != nil {
		f.Errors[personNameField] = err.Error()
	} else if len(name) > registry.MaxNameLen {
		f.Errors[personNameField] = "name over " + strconv.Itoa(registry.MaxNameLen) + " bytes"
	}
	return f.Errors[personNameField] == ""
}

// saveName stores the name of a saved person (forgetting it under the
// old ID of a renamed one) when it changed, audited without the name
// itself (the audit log is read by roles that may not see names).
func (s *Server) saveName(rq *request, f *recordForm, oldID, newID string) {
	name, ok := f.value(personNameField)
	if !ok {
		return
	}
	stored, err := s.cfg.PeopleNames.PersonNames(f.Site, []string{oldID, newID})
	if err != nil {
		s.log.Error("console: person's name", "site", f.Site, "err", err)
		return
	}
	set := map[string]string{}
	if oldID != "" && oldID != newID && stored[oldID] != "" {
		set[oldID] = ""
	}
	if stored[newID] != name {
		set[newID] = name
	}
	if len(set) == 0 {
		return
	}
	if err := s.cfg.PeopleNames.SetNames(f.Site, set); err != nil {
		s.log.Error("console: set person's name", "site", f.Site, "err", err)
		return
	}
	after := "name set"
	if name == "" {
		after = "name removed"
	}
	s.record(rq, audit.Entry{Action: "set_name", Target: "people " + f.Site + " " + newID, After: after})
}

// forgetName forgets the name of a deleted person.
func (s *Server) forgetName(site string, it policy.Item) {
	p, ok := it.(policy.Person)
	if !ok || s.cfg.PeopleNames == nil {
		return
	}
	if err := s.cfg.PeopleNames.SetNames(site, map[string]string{p.ID: ""}); err != nil {
		s.log.Error("console: forget person's name", "site", site, "err", err)
	}
}

// value returns the value of field name of the form, and whether the
// form has the field.
func (f *recordForm) value(name string) (string, bool) {
	for _, fl := range f.Fields {
		if fl.Name == name {
			return strings.TrimSpace(fl.Value), true
		}
	}
	return "", false
}
