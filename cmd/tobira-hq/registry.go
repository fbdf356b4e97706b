package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/sync/proto"
)

// registryFlag registers --registry, the registry file of the admin
// commands, on fs.
func registryFlag(fs *flag.FlagSet) *string {
	return fs.String("registry", "registry.db", "HQ registry (bbolt file)")
}

// openRegistry opens the registry file for one command.
func openRegistry(path string, log *slog.Logger) (*registry.Registry, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: --registry is required", errUsage)
	}
	return registry.Open(path, registry.Options{Logger: log})
}

// importCSV implements `tobira-hq import TABLE`.
func importCSV(ctx context.Context, table string, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	reg := registryFlag(fs)
	site := fs.String("site", "", "site the records belong to")
	file := fs.String("csv", "", "CSV file with a header line (docs/HQ.md)")
	if err := parse(); err != nil {
		return err
	}
	if *site == "" || *file == "" {
		return fmt.Errorf("%w: import %s needs --site and --csv", errUsage, table)
	}
	f, err := os.Open(*file)
	if err != nil {
		return fmt.Errorf("import %s: %w", table, err)
	}
	defer f.Close()
	// Parse and validate before taking the registry's lock.
	ch, err := registry.ParseCSV(table, *file, f)
	if err != nil {
		return err
	}
	r, err := openRegistry(*reg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	a, err := r.Apply(ctx, *site, ch)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s from %s into site %s: %d put, %d deleted, revision %d\n", table, *file, *site, a.Put, a.Deleted, a.Rev)
	return nil
}

// loadVerifier reads trust anchors for enrollment checks.
func loadVerifier(anchors string) (*reader.Verifier, error) {
	if anchors == "" {
		return nil, fmt.Errorf("%w: --anchors is required: the JPKI CA certificates (PEM or DER) enrollments must chain to", errUsage)
	}
	certs, err := reader.LoadTrustAnchors(anchors)
	if err != nil {
		return nil, err
	}
	return reader.NewVerifier(certs)
}

// verifiedEnrollment decodes an enrollment record (the JSON of
// reader.EnrollmentRecord) and verifies it at now.
func verifiedEnrollment(raw []byte, v *reader.Verifier, now time.Time) (*reader.EnrollmentRecord, error) {
	var rec reader.EnrollmentRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("decode enrollment record: %w", err)
	}
	if err := reader.VerifyEnrollment(&rec, v, now); err != nil {
		return nil, err
	}
	if !rec.PINVerified {
		return nil, errors.New("enrollment record says the PIN was not verified")
	}
	return &rec, nil
}

// enrollEntry adds the enrolled certificate to the site's allowlist.
func enrollEntry(ctx context.Context, r *registry.Registry, site, person string, until time.Time, rec *reader.EnrollmentRecord) (registry.Applied, error) {
	e := policy.Entry{Credential: rec.Credential, Person: person, ValidUntil: until}
	return r.Apply(ctx, site, registry.Change{Put: []policy.Item{e}})
}

// enroll implements `tobira-hq enroll [list|approve|reject]` and
// `tobira-hq enroll --record FILE`.
func enroll(ctx context.Context, sub string, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	reg := registryFlag(fs)
	switch sub {
	case "list":
		if err := parse(); err != nil {
			return err
		}
		r, err := openRegistry(*reg, log)
		if err != nil {
			return err
		}
		defer r.Close()
		list, err := r.PendingList()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSITE\tDEVICE\tSEQ\tRECEIVED\tCREDENTIAL")
		for _, p := range list {
			cred := "(undecodable record)"
			var rec reader.EnrollmentRecord
			if json.Unmarshal(p.Record, &rec) == nil {
				cred = rec.Credential.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.Site, p.Device, p.Seq, p.Received.Format(time.RFC3339), cred)
		}
		return tw.Flush()
	case "approve", "reject", "":
	default:
		return fmt.Errorf("%w: enroll %s: want list, approve, reject or --record", errUsage, sub)
	}
	id := fs.String("id", "", "pending enrollment ID (enroll list)")
	record := fs.String("record", "", "enrollment record file (JSON of reader.EnrollmentRecord)")
	site := fs.String("site", "", "site to enroll at (with --record)")
	person := fs.String("person", "", "person ID the credential belongs to")
	anchors := fs.String("anchors", "", "JPKI CA certificates (PEM or DER) the certificate must chain to")
	untilS := fs.String("valid-until", "", "end of the credential's validity (RFC 3339; default none)")
	if err := parse(); err != nil {
		return err
	}
	if sub == "reject" {
		if *id == "" {
			return fmt.Errorf("%w: enroll reject needs --id", errUsage)
		}
		r, err := openRegistry(*reg, log)
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.DeletePending(*id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rejected enrollment %s\n", *id)
		return nil
	}
	until, err := parseTime("valid-until", *untilS)
	if err != nil {
		return err
	}
	if *person == "" {
		return fmt.Errorf("%w: enroll needs --person", errUsage)
	}
	v, err := loadVerifier(*anchors)
	if err != nil {
		return err
	}
	var raw []byte
	switch {
	case sub == "approve" && *id != "":
	case sub == "" && *record != "" && *site != "":
		if raw, err = os.ReadFile(*record); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
	default:
		return fmt.Errorf("%w: enroll needs either approve --id ID, or --record FILE --site S", errUsage)
	}
	r, err := openRegistry(*reg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	if sub == "approve" {
		p, err := r.PendingByID(*id)
		if err != nil {
			return err
		}
		raw, *site = p.Record, p.Site
	}
	rec, err := verifiedEnrollment(raw, v, time.Now())
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	a, err := enrollEntry(ctx, r, *site, *person, until, rec)
	if err != nil {
		return err
	}
	if sub == "approve" {
		if err := r.DeletePending(*id); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "enrolled %s for person %s at site %s, revision %d\n", rec.Credential, *person, *site, a.Rev)
	return nil
}

// registrySink stores enrollments from devices in the registry, opening
// the file for each one so that admin commands can use it in between.
type registrySink struct {
	path string
	log  *slog.Logger
}

// StoreEnrollment implements hq.EnrollmentSink.
func (s registrySink) StoreEnrollment(_ context.Context, e proto.Enrollment) error {
	r, err := registry.Open(s.path, registry.Options{Logger: s.log})
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = r.AddPending(registry.Pending{Site: e.Site, Device: e.Device, Seq: e.Seq, Received: time.Now().UTC(), Record: e.Record})
	return err
}

// parseCertFlags reads a certificate reference from --credential (a hex
// credential key) or --issuer-key-id and --serial.
func parseCertFlags(credHex, kidHex, serialHex string) (policy.CertRef, error) {
	if credHex != "" {
		b, err := hex.DecodeString(credHex)
		if err != nil {
			return policy.CertRef{}, fmt.Errorf("%w: --credential %q is not hex", errUsage, credHex)
		}
		c, err := credential.Parse(b)
		if err != nil || c.Kind != credential.KindCertSerial {
			return policy.CertRef{}, fmt.Errorf("%w: --credential %q is not a certificate credential key", errUsage, credHex)
		}
		return policy.CertRef{IssuerKeyID: c.IssuerKeyID, Serial: c.Serial}, nil
	}
	kid, err := hex.DecodeString(kidHex)
	if err != nil || len(kid) != credential.KeyIDLen {
		return policy.CertRef{}, fmt.Errorf("%w: --issuer-key-id %q: want %d hex digits", errUsage, kidHex, 2*credential.KeyIDLen)
	}
	serial, err := registry.ParseSerial(serialHex)
	if err != nil {
		return policy.CertRef{}, fmt.Errorf("%w: --serial: %w", errUsage, err)
	}
	return policy.CertRef{IssuerKeyID: kid, Serial: serial}, nil
}

// revoke implements `tobira-hq revoke`.
func revoke(ctx context.Context, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	reg := registryFlag(fs)
	site := fs.String("site", "", "site")
	cred := fs.String("credential", "", "certificate credential key (hex, as in events)")
	kid := fs.String("issuer-key-id", "", "issuer key ID (40 hex digits), with --serial")
	serial := fs.String("serial", "", "certificate serial (hex), with --issuer-key-id")
	if err := parse(); err != nil {
		return err
	}
	if *site == "" {
		return fmt.Errorf("%w: revoke needs --site", errUsage)
	}
	c, err := parseCertFlags(*cred, *kid, *serial)
	if err != nil {
		return err
	}
	r, err := openRegistry(*reg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	a, err := r.Revoke(ctx, *site, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %x/%x at site %s (allowlist entries removed: %d), revision %d\n", c.IssuerKeyID, c.Serial, *site, a.Deleted, a.Rev)
	return nil
}

// readCert reads one certificate, PEM or DER.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %s: %w", path, err)
	}
	return c, nil
}

// crlImport implements `tobira-hq crl import`.
func crlImport(ctx context.Context, fs *flag.FlagSet, parse func() error, stdout io.Writer, log *slog.Logger) error {
	reg := registryFlag(fs)
	site := fs.String("site", "", "site")
	crlFile := fs.String("crl", "", "CRL file (DER or PEM)")
	caFile := fs.String("ca", "", "certificate of the CA that signs the CRL (PEM or DER)")
	if err := parse(); err != nil {
		return err
	}
	if *site == "" || *crlFile == "" || *caFile == "" {
		return fmt.Errorf("%w: crl import needs --site, --crl and --ca", errUsage)
	}
	der, err := os.ReadFile(*crlFile)
	if err != nil {
		return fmt.Errorf("crl import: %w", err)
	}
	if blk, _ := pem.Decode(der); blk != nil {
		der = blk.Bytes
	}
	ca, err := readCert(*caFile)
	if err != nil {
		return fmt.Errorf("crl import: %w", err)
	}
	r, err := openRegistry(*reg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	info, err := r.ImportCRL(ctx, *site, der, ca, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported CRL of %s into site %s: %d serials (%d new), thisUpdate %s, revision %d\n",
		ca.Subject, *site, info.Serials, info.Applied.Put-1, info.ThisUpdate.Format(time.RFC3339), info.Applied.Rev)
	return nil
}

// publishFromRegistry builds each device's snapshot from the registry (a
// delta from the version its retained status reports when asked and
// possible, else full) and publishes it.
func publishFromRegistry(ctx context.Context, s *hq.Sender, r *registry.Registry, site string, devices []string, delta bool,
	chunk int, statusWait time.Duration, stdout io.Writer) ([]string, error) {
	statuses, err := s.DeviceStatuses(ctx, site, statusWait)
	if err != nil {
		return nil, err
	}
	if len(devices) == 0 {
		for d := range statuses {
			devices = append(devices, d)
		}
		if len(devices) == 0 {
			return nil, fmt.Errorf("no device of site %s has a status on the broker; name them with --device", site)
		}
	}
	dir, err := os.MkdirTemp("", "tobira-hq-publish-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	full := ""
	var fullPub registry.Published
	type built struct {
		path string
		pub  registry.Published
	}
	deltas := map[uint64]built{} // by the devices' version
	var ids []string
	for _, d := range devices {
		st, known := statuses[d]
		cur := st.Snapshot.Version
		rev, err := r.Revision(site)
		if err != nil {
			return nil, err
		}
		if known && cur == rev && cur != 0 {
			fmt.Fprintf(stdout, "%s/%s is at version %d already; nothing to send\n", site, d, cur)
			continue
		}
		var pub registry.Published
		path := ""
		if delta && known && cur != 0 {
			b, ok := deltas[cur]
			if !ok {
				b.path = filepath.Join(dir, fmt.Sprintf("delta-%d", cur))
				b.pub, err = writeSnapshotFile(b.path, func(w io.Writer) (registry.Published, error) {
					return r.WriteDelta(ctx, site, cur, w)
				})
				if errors.Is(err, registry.ErrNoDelta) {
					fmt.Fprintf(stdout, "%s/%s: %v; sending a full snapshot\n", site, d, err)
					b.path = ""
				} else if err != nil {
					return nil, err
				}
				deltas[cur] = b
			}
			path, pub = b.path, b.pub
		}
		if path == "" {
			if full == "" {
				full = filepath.Join(dir, "full")
				fullPub, err = writeSnapshotFile(full, func(w io.Writer) (registry.Published, error) {
					return r.WriteFull(ctx, site, w)
				})
				if err != nil {
					return nil, err
				}
			}
			path, pub = full, fullPub
		}
		m, err := s.PublishSnapshot(ctx, hq.SnapshotOffer{Site: site, Device: d, Version: pub.Version, From: pub.From,
			Path: path, ChunkSize: chunk, ContentHash: pub.Hash})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "published %s snapshot version %d (from %d) to %s/%s: transfer %s, %d records, %d bytes in %d chunks\n",
			m.Type, m.Version, m.From, m.Site, m.Device, m.Transfer, pub.Records, m.Size, m.Chunks)
		ids = append(ids, m.Transfer)
	}
	return ids, nil
}

// writeSnapshotFile creates the file path and writes a snapshot into it
// with write.
func writeSnapshotFile(path string, write func(io.Writer) (registry.Published, error)) (registry.Published, error) {
	f, err := os.Create(path)
	if err != nil {
		return registry.Published{}, err
	}
	pub, err := write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return pub, err
}
