package hq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tobira-ac/tobira/internal/atomicfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// FileSpool is the Spool of one HQ in a directory (Config.Spool):
//
//	<transfer>.manifest.json            the Manifest of a transfer
//	<transfer>.envelope                 its signed envelope
//	<transfer>.bin                      its payload
//	latest/<site>/<device>.json         the Manifest last published to the device
//	latest/<site>/groups/<group>.json   the Manifest last published to the group
//	modes/<site>/<device>.json          the device's commands in force (JSON list)
//	offers/<site>/device/<device>.json  the release offer last sent to the device
//	offers/<site>/group/<group>.json    the release offer last sent to the group
//
// Files are replaced atomically (written aside, synced, renamed). The
// processes that share the directory (tobira-hq serve and its admin
// commands) must run on one machine; replicas share a PostgreSQL spool.
type FileSpool struct {
	dir string
	mu  sync.Mutex // orders the read-modify-write of modes files within the process
}

// NewFileSpool returns the spool in dir, which it creates when missing.
func NewFileSpool(dir string) (*FileSpool, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: spool directory is empty", ErrConfig)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	return &FileSpool{dir: dir}, nil
}

// PutTransfer implements Spool.
func (s *FileSpool) PutTransfer(_ context.Context, m proto.Manifest, envelope []byte, payload io.Reader) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("spool transfer: %w", err)
	}
	out, err := os.OpenFile(spoolData(s.dir, m.Transfer), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool transfer %s: %w", m.Transfer, err)
	}
	n, err := io.Copy(out, io.LimitReader(payload, m.Size))
	if err == nil && n != m.Size {
		err = fmt.Errorf("payload has %d bytes, manifest says %d", n, m.Size)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool transfer %s: %w", m.Transfer, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("spool transfer %s: encode manifest: %w", m.Transfer, err)
	}
	for _, w := range []struct {
		path string
		data []byte
	}{
		{s.transferPath(m.Transfer, ".envelope"), envelope},
		{s.transferPath(m.Transfer, ".manifest.json"), raw},
		{s.latestPath(m), raw},
	} {
		if err := replaceFile(w.path, w.data); err != nil {
			return fmt.Errorf("spool transfer %s: %w", m.Transfer, err)
		}
	}
	return nil
}

// latestPath returns the file naming the latest transfer of m's device or
// group.
func (s *FileSpool) latestPath(m proto.Manifest) string {
	if m.Group != "" {
		return filepath.Join(s.dir, "latest", m.Site, "groups", m.Group+".json")
	}
	return filepath.Join(s.dir, "latest", m.Site, m.Device+".json")
}

// transferPath returns the file of transfer with suffix.
func (s *FileSpool) transferPath(transfer, suffix string) string {
	return filepath.Join(s.dir, filepath.Base(transfer)+suffix)
}

// Transfer implements Spool.
func (s *FileSpool) Transfer(_ context.Context, transfer string) (proto.Manifest, error) {
	return notSpooled(readSpoolManifest(s.dir, transfer))
}

// notSpooled maps a missing file to ErrNotSpooled.
func notSpooled[T any](v T, err error) (T, error) {
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w: %w", ErrNotSpooled, err)
	}
	return v, err
}

// Chunk implements Spool.
func (s *FileSpool) Chunk(_ context.Context, m proto.Manifest, i int) ([]byte, error) {
	f, err := os.Open(spoolData(s.dir, m.Transfer))
	if err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, m.Transfer, err)
	}
	defer f.Close()
	data := make([]byte, m.ChunkLen(i))
	if _, err := f.ReadAt(data, int64(i)*int64(m.ChunkSize)); err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, m.Transfer, err)
	}
	return data, nil
}

// Latest implements Spool.
func (s *FileSpool) Latest(_ context.Context, site, device string) (SpooledEnvelope[proto.Manifest], error) {
	return s.latest(s.latestPath(proto.Manifest{Site: site, Device: device}))
}

// LatestGroup implements Spool.
func (s *FileSpool) LatestGroup(_ context.Context, site, group string) (SpooledEnvelope[proto.Manifest], error) {
	return s.latest(s.latestPath(proto.Manifest{Site: site, Group: group}))
}

// latest reads the latest transfer named by the file at path.
func (s *FileSpool) latest(path string) (SpooledEnvelope[proto.Manifest], error) {
	m, err := notSpooled(readManifestFile(path))
	if err != nil {
		return SpooledEnvelope[proto.Manifest]{}, err
	}
	env, err := os.ReadFile(s.transferPath(m.Transfer, ".envelope"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // none: spooled before envelopes were
		return SpooledEnvelope[proto.Manifest]{}, fmt.Errorf("latest snapshot of %s: %w", path, err)
	}
	return SpooledEnvelope[proto.Manifest]{Value: m, Envelope: env}, nil
}

// modesPath returns the modes file of site/device.
func (s *FileSpool) modesPath(site, device string) string {
	return filepath.Join(s.dir, "modes", site, device+".json")
}

// PutCommand implements Spool.
func (s *FileSpool) PutCommand(ctx context.Context, c SpooledEnvelope[proto.Command]) error {
	if !modeCommand(c.Value) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before, err := s.Commands(ctx, c.Value.Site, c.Value.Device)
	if err != nil {
		return err
	}
	return writeJSONFile(s.modesPath(c.Value.Site, c.Value.Device), ModesInForce(before, c))
}

// Commands implements Spool.
func (s *FileSpool) Commands(_ context.Context, site, device string) ([]SpooledEnvelope[proto.Command], error) {
	var out []SpooledEnvelope[proto.Command]
	if err := readJSONFile(s.modesPath(site, device), &out); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("commands in force for %s/%s: %w", site, device, err)
	}
	return out, nil
}

// offerPath returns the offer file of a device or a group of site.
func (s *FileSpool) offerPath(site, kind, name string) string {
	return filepath.Join(s.dir, "offers", site, kind, name+".json")
}

// PutOffer implements Spool.
func (s *FileSpool) PutOffer(_ context.Context, o SpooledEnvelope[proto.ReleaseOffer]) error {
	p := s.offerPath(o.Value.Site, "device", o.Value.Device)
	if o.Value.Group != "" {
		p = s.offerPath(o.Value.Site, "group", o.Value.Group)
	}
	if err := proto.CheckName(o.Value.Site); err != nil {
		return fmt.Errorf("spool release offer %s: %w", o.Value.ID, err)
	}
	return writeJSONFile(p, o)
}

// Offers implements Spool.
func (s *FileSpool) Offers(_ context.Context, site, device string, groups []string) ([]SpooledEnvelope[proto.ReleaseOffer], error) {
	paths := []string{s.offerPath(site, "device", device)}
	for _, g := range groups {
		paths = append(paths, s.offerPath(site, "group", g))
	}
	var out []SpooledEnvelope[proto.ReleaseOffer]
	for _, p := range paths {
		var o SpooledEnvelope[proto.ReleaseOffer]
		err := readJSONFile(p, &o)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("release offers for %s/%s: %w", site, device, err)
		default:
			out = append(out, o)
		}
	}
	return out, nil
}

// readJSONFile decodes the JSON file at path into v.
func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// writeJSONFile encodes v as JSON and replaces the file at path with it.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return replaceFile(path, b)
}

// replaceFile replaces the file at path durably (atomicfile.Write, mode
// 0600), creating path's directory when missing.
func replaceFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o600)
}

// spoolData returns the payload file of transfer.
func spoolData(spool, transfer string) string { return filepath.Join(spool, transfer+".bin") }

// readSpoolManifest reads the manifest of transfer from the spool.
func readSpoolManifest(spool, transfer string) (proto.Manifest, error) {
	return readManifestFile(filepath.Join(spool, filepath.Base(transfer)+".manifest.json"))
}

// readManifestFile reads and checks a manifest JSON file.
func readManifestFile(path string) (proto.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return proto.Manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	var m proto.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return proto.Manifest{}, fmt.Errorf("decode manifest %s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return proto.Manifest{}, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}
