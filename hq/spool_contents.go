package hq

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tobira-ac/tobira/sync/proto"
)

// spoolTarget is a device or a group of a site: what a latest transfer or
// a release offer is for.
type spoolTarget struct {
	site, kind, name string // kind: "device" or "group"
}

// String names t in errors.
func (t spoolTarget) String() string { return t.kind + " " + t.site + "/" + t.name }

// targetOf returns the device or group a transfer is for.
func targetOf(m proto.Manifest) spoolTarget { return targetIn(m.Site, m.Device, m.Group) }

// targetIn returns group of site, or device when group is "".
func targetIn(site, device, group string) spoolTarget {
	if group != "" {
		return spoolTarget{site, "group", group}
	}
	return spoolTarget{site, "device", device}
}

// spoolContents is what a FileSpool holds, read and checked.
type spoolContents struct {
	transfers []proto.Manifest // oldest first
	held      map[string]bool  // the IDs of transfers
	latest    []spoolLatest
	commands  []spoolCommands
	offers    []spoolOffer
}

// spoolLatest is the latest transfer of a device or group.
type spoolLatest struct {
	target   spoolTarget
	transfer string
}

// spoolCommands are the commands in force of a device.
type spoolCommands struct {
	site, device string
	commands     []SpooledEnvelope[proto.Command]
}

// spoolOffer is the release offer of a device or group.
type spoolOffer struct {
	target spoolTarget
	offer  SpooledEnvelope[proto.ReleaseOffer]
}

// contents reads and checks everything s holds (see FileSpool's layout).
func (s *FileSpool) contents() (spoolContents, error) {
	var c spoolContents
	var err error
	if c.transfers, err = s.transfers(); err != nil {
		return c, err
	}
	c.held = make(map[string]bool, len(c.transfers))
	for _, m := range c.transfers {
		c.held[m.Transfer] = true
	}
	if c.latest, err = s.latestFiles(c.held); err != nil {
		return c, err
	}
	if err := checkOrphans(s, c.transfers, c.latest); err != nil {
		return c, err
	}
	if c.commands, err = s.commandFiles(); err != nil {
		return c, err
	}
	c.offers, err = s.offerFiles()
	return c, err
}

// transfers reads every transfer's manifest and checks its payload; they
// come oldest first.
func (s *FileSpool) transfers() ([]proto.Manifest, error) {
	names, err := spoolNames(s.dir, ".manifest.json")
	if err != nil {
		return nil, err
	}
	var out []proto.Manifest
	for _, name := range names {
		path := s.transferPath(name, ".manifest.json")
		m, err := readManifestFile(path)
		if err != nil {
			return nil, fmt.Errorf("spool file %s: %w", path, err)
		}
		if m.Transfer != name {
			return nil, fmt.Errorf("spool file %s: holds the manifest of transfer %s", path, m.Transfer)
		}
		if err := checkPayload(spoolData(s.dir, name), m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b proto.Manifest) int {
		return cmp.Or(a.Issued.Compare(b.Issued), cmp.Compare(a.Transfer, b.Transfer))
	})
	return out, nil
}

// checkPayload checks that the payload file at path has m's length and
// SHA-256.
func checkPayload(path string, m proto.Manifest) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool file %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	switch {
	case err != nil:
		return fmt.Errorf("spool file %s: %w", path, err)
	case n != m.Size:
		return fmt.Errorf("spool file %s: payload has %d bytes, its manifest says %d", path, n, m.Size)
	case hex.EncodeToString(h.Sum(nil)) != m.SHA256:
		return fmt.Errorf("spool file %s: payload's SHA-256 is not its manifest's %s", path, m.SHA256)
	}
	return nil
}

// latestFiles reads which transfer is the latest of each device and group,
// checking that it is one of those held.
func (s *FileSpool) latestFiles(held map[string]bool) ([]spoolLatest, error) {
	var out []spoolLatest
	err := eachTargetFile(filepath.Join(s.dir, "latest"), []string{"device", "group"}, func(site, kind string) string {
		if kind == "group" {
			return filepath.Join(s.dir, "latest", site, "groups")
		}
		return filepath.Join(s.dir, "latest", site)
	}, func(t spoolTarget, path string) error {
		m, err := readManifestFile(path)
		if err != nil {
			return fmt.Errorf("spool file %s: %w", path, err)
		}
		if !held[m.Transfer] || targetOf(m) != t {
			return fmt.Errorf("spool file %s: names transfer %s to %s, which the spool does not hold", path, m.Transfer, targetOf(m))
		}
		out = append(out, spoolLatest{t, m.Transfer})
		return nil
	})
	return out, err
}

// checkOrphans refuses a transfer whose device or group has no latest
// transfer: it was never published (copied, it would become the latest).
func checkOrphans(s *FileSpool, transfers []proto.Manifest, latest []spoolLatest) error {
	has := make(map[spoolTarget]bool, len(latest))
	for _, l := range latest {
		has[l.target] = true
	}
	for _, m := range transfers {
		if !has[targetOf(m)] {
			return fmt.Errorf("spool file %s: transfer to %s, which has no latest transfer (a publication interrupted: remove the transfer's files to copy without it)",
				s.transferPath(m.Transfer, ".manifest.json"), targetOf(m))
		}
	}
	return nil
}

// commandFiles reads the commands in force of every device.
func (s *FileSpool) commandFiles() ([]spoolCommands, error) {
	var out []spoolCommands
	err := eachTargetFile(filepath.Join(s.dir, "modes"), []string{"device"}, func(site, _ string) string {
		return filepath.Join(s.dir, "modes", site)
	}, func(t spoolTarget, path string) error {
		c := spoolCommands{site: t.site, device: t.name}
		if err := readJSONFile(path, &c.commands); err != nil {
			return fmt.Errorf("spool file: %w", err)
		}
		for _, cmd := range c.commands {
			if got := targetIn(cmd.Value.Site, cmd.Value.Device, ""); got != t {
				return fmt.Errorf("spool file %s: holds command %s for %s", path, cmd.Value.ID, got)
			}
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// offerFiles reads the release offer of every device and group.
func (s *FileSpool) offerFiles() ([]spoolOffer, error) {
	var out []spoolOffer
	err := eachTargetFile(filepath.Join(s.dir, "offers"), []string{"device", "group"}, func(site, kind string) string {
		return filepath.Join(s.dir, "offers", site, kind)
	}, func(t spoolTarget, path string) error {
		o := spoolOffer{target: t}
		if err := readJSONFile(path, &o.offer); err != nil {
			return fmt.Errorf("spool file: %w", err)
		}
		if v := o.offer.Value; targetIn(v.Site, v.Device, v.Group) != t {
			return fmt.Errorf("spool file %s: holds release offer %s for %s", path, v.ID, targetIn(v.Site, v.Device, v.Group))
		}
		out = append(out, o)
		return nil
	})
	return out, err
}

// eachTargetFile calls fn with the file <name>.json of each device or
// group (of kinds) of each site in root: dirOf returns the directory
// holding a site's files of a kind. It stops at fn's first error.
func eachTargetFile(root string, kinds []string, dirOf func(site, kind string) string, fn func(t spoolTarget, path string) error) error {
	sites, err := spoolNames(root, "")
	if err != nil {
		return err
	}
	for _, site := range sites {
		for _, kind := range kinds {
			dir := dirOf(site, kind)
			names, err := spoolNames(dir, ".json")
			if err != nil {
				return err
			}
			for _, name := range names {
				if err := fn(spoolTarget{site, kind, name}, filepath.Join(dir, name+".json")); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// spoolNames returns, sorted, the names of the subdirectories of dir
// (suffix "") or of its files ending in suffix, without it; none when dir
// is missing.
func spoolNames(dir, suffix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if suffix == "" && e.IsDir() {
			out = append(out, e.Name())
		} else if name, ok := strings.CutSuffix(e.Name(), suffix); ok && suffix != "" && e.Type().IsRegular() && !strings.HasPrefix(name, ".") {
			out = append(out, name)
		}
	}
	return out, nil
}
