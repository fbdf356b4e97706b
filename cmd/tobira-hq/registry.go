package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/pgstore"
	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/sync/proto"
)

// registryAt is where the registry is: in PostgreSQL when url is set
// (the store setting), else in the bbolt file path.
type registryAt struct {
	path, url string
}

// name names the registry in messages (never with a password).
func (at registryAt) name() string {
	if at.url != "" {
		return "in PostgreSQL"
	}
	return at.path
}

// registryFlag registers --registry and --store-url, where the registry
// of an admin command is, on c.
func registryFlag(c *cobra.Command) *registryAt {
	var at registryAt
	registryFlagVar(c, &at)
	return &at
}

// registryFlagVar registers --registry and --store-url on c, into at.
func registryFlagVar(c *cobra.Command, at *registryAt) {
	c.Flags().StringVar(&at.path, "registry", "registry.db", "HQ registry (bbolt file), unless --store-url names PostgreSQL")
	c.Flags().StringVar(&at.url, "store-url", "", "PostgreSQL holding the registry, postgres://user@host/db (empty: the bbolt file of --registry)")
}

// open opens the registry for one command.
func (at registryAt) open(ctx context.Context, log *slog.Logger) (*registry.Registry, error) {
	if at.url != "" {
		return pgstore.OpenRegistry(ctx, at.url, registry.Options{Logger: log})
	}
	if at.path == "" {
		return nil, cli.Usagef("--registry is required")
	}
	return registry.Open(at.path, registry.Options{Logger: log})
}

// sharedRegistry is the registry of serve's parts (the enrollment sink,
// the ticket rules, the console). In PostgreSQL it is opened once and
// kept open: replicas and admin commands share the database. A bbolt
// file is opened for each use instead, since bbolt lets one process hold
// it at a time and admin commands must be able to use it in between.
type sharedRegistry struct {
	at   registryAt
	log  *slog.Logger
	kept *registry.Registry // PostgreSQL's, open while serve runs
}

// openSharedRegistry returns the shared registry at at: nil when at names
// none.
func openSharedRegistry(ctx context.Context, at registryAt, log *slog.Logger) (*sharedRegistry, error) {
	if at.url == "" && at.path == "" {
		return nil, nil
	}
	s := &sharedRegistry{at: at, log: log}
	if at.url != "" {
		var err error
		if s.kept, err = at.open(ctx, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// with calls fn with the open registry.
func (s *sharedRegistry) with(ctx context.Context, fn func(*registry.Registry) error) error {
	if s.kept != nil {
		return fn(s.kept)
	}
	r, err := s.at.open(ctx, s.log)
	if err != nil {
		return err
	}
	err = fn(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close closes the registry kept open.
func (s *sharedRegistry) Close() error {
	if s == nil || s.kept == nil {
		return nil
	}
	return s.kept.Close()
}

// importCommand is "tobira-hq import TABLE".
func importCommand() *cobra.Command {
	var site, file string
	c := &cobra.Command{
		Use:   "import TABLE --site S --csv FILE",
		Short: "Import a CSV table into the registry: " + strings.Join(registry.Tables, ", "),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("import needs one TABLE: %s", strings.Join(registry.Tables, ", "))
			}
			return nil
		},
	}
	reg := registryFlag(c)
	c.Flags().StringVar(&site, "site", "", "site the records belong to")
	c.Flags().StringVar(&file, "csv", "", "CSV file with a header line (docs/HQ.md)")
	c.RunE = func(c *cobra.Command, args []string) error {
		if site == "" || file == "" {
			return cli.Usagef("import %s needs --site and --csv", args[0])
		}
		return importCSV(c.Context(), *reg, args[0], site, file, c.OutOrStdout(), logger(c))
	}
	return c
}

// importCSV imports table from file into the registry reg, for site.
func importCSV(ctx context.Context, reg registryAt, table, site, file string, stdout io.Writer, log *slog.Logger) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("import %s: %w", table, err)
	}
	defer f.Close()
	r, err := reg.open(ctx, log)
	if err != nil {
		return err
	}
	defer r.Close()
	// Streamed into one transaction: all lines or none.
	a, err := r.ImportCSV(ctx, site, table, file, bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s from %s into site %s: %d put, %d deleted, revision %d\n", table, file, site, a.Put, a.Deleted, a.Rev)
	return nil
}

// loadVerifier reads trust anchors for enrollment checks.
func loadVerifier(anchors string) (*reader.Verifier, error) {
	if anchors == "" {
		return nil, cli.Usagef("--anchors is required: the JPKI CA certificates (PEM or DER) enrollments must chain to")
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

// enrollment is what an enroll command was asked for.
type enrollment struct {
	reg                                      registryAt
	id, record, site, person, anchors, until string
}

// enrollFlags registers the flags of an approval (--person, --anchors,
// --valid-until) on c.
func (e *enrollment) enrollFlags(c *cobra.Command) {
	c.Flags().StringVar(&e.person, "person", "", "person ID the credential belongs to")
	c.Flags().StringVar(&e.anchors, "anchors", "", "JPKI CA certificates (PEM or DER) the certificate must chain to")
	c.Flags().StringVar(&e.until, "valid-until", "", "end of the credential's validity (RFC 3339; default none)")
}

// enrollCommand is "tobira-hq enroll": with --record it enrolls from a
// record file; its subcommands handle the enrollments devices sent.
func enrollCommand() *cobra.Command {
	var e enrollment
	c := &cobra.Command{
		Use:   "enroll --record FILE --site S --person P --anchors FILE",
		Short: "Enroll a card from a verified enrollment record; list, approve or reject those devices sent",
	}
	registryFlagVar(c, &e.reg)
	c.Flags().StringVar(&e.record, "record", "", "enrollment record file (JSON of reader.EnrollmentRecord)")
	c.Flags().StringVar(&e.site, "site", "", "site to enroll at")
	e.enrollFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if e.record == "" || e.site == "" {
			return cli.Usagef("enroll needs --record FILE and --site S (or a command: list, approve, reject)")
		}
		raw, err := os.ReadFile(e.record)
		if err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		return e.enroll(c.Context(), raw, c.OutOrStdout(), logger(c))
	}
	c.AddCommand(enrollListCommand(), enrollApproveCommand(), enrollRejectCommand())
	return c
}

// enrollListCommand is "tobira-hq enroll list".
func enrollListCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List the enrollments devices sent, waiting for approval",
	}
	reg := registryFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		return listPending(c.Context(), *reg, c.OutOrStdout(), logger(c))
	}
	return c
}

// listPending prints the pending enrollments of the registry reg.
func listPending(ctx context.Context, reg registryAt, stdout io.Writer, log *slog.Logger) error {
	r, err := reg.open(ctx, log)
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
		if c, ok := pendingCredential(p); ok {
			cred = c.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.Site, p.Device, p.Seq, p.Received.Format(time.RFC3339), cred)
	}
	return tw.Flush()
}

// enrollApproveCommand is "tobira-hq enroll approve".
func enrollApproveCommand() *cobra.Command {
	var e enrollment
	c := &cobra.Command{
		Use:   "approve --id ID --person P --anchors FILE [--valid-until T]",
		Short: "Verify a pending enrollment and add its card to the allowlist",
	}
	registryFlagVar(c, &e.reg)
	c.Flags().StringVar(&e.id, "id", "", "pending enrollment ID (enroll list)")
	e.enrollFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if e.id == "" {
			return cli.Usagef("enroll approve needs --id")
		}
		return e.enroll(c.Context(), nil, c.OutOrStdout(), logger(c))
	}
	return c
}

// enrollRejectCommand is "tobira-hq enroll reject".
func enrollRejectCommand() *cobra.Command {
	var id string
	c := &cobra.Command{
		Use:   "reject --id ID",
		Short: "Drop a pending enrollment",
	}
	reg := registryFlag(c)
	c.Flags().StringVar(&id, "id", "", "pending enrollment ID (enroll list)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if id == "" {
			return cli.Usagef("enroll reject needs --id")
		}
		r, err := reg.open(c.Context(), logger(c))
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.DeletePending(id); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "rejected enrollment %s\n", id)
		return nil
	}
	return c
}

// enroll verifies an enrollment record and adds its credential to the
// allowlist: raw (with e.site), or, when e.id is set, the pending
// enrollment e.id (which is then deleted).
func (e *enrollment) enroll(ctx context.Context, raw []byte, stdout io.Writer, log *slog.Logger) error {
	until, err := parseTime("valid-until", e.until)
	if err != nil {
		return err
	}
	if e.person == "" {
		return cli.Usagef("enroll needs --person")
	}
	v, err := loadVerifier(e.anchors)
	if err != nil {
		return err
	}
	r, err := e.reg.open(ctx, log)
	if err != nil {
		return err
	}
	defer r.Close()
	var rec *reader.EnrollmentRecord
	var site string
	var a registry.Applied
	if e.id != "" {
		rec, site, a, err = approvePending(ctx, r, v, e.id, e.person, until, time.Now())
	} else {
		site = e.site
		if rec, err = verifiedEnrollment(raw, v, time.Now()); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		a, err = enrollEntry(ctx, r, site, e.person, until, rec)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled %s for person %s at site %s, revision %d\n", rec.Credential, e.person, site, a.Rev)
	return nil
}

// approvePending verifies the pending enrollment id of r with v at now,
// adds its credential for person (until until) to the allowlist of its
// site, and deletes it from the pending list. It returns the record and
// the site.
func approvePending(ctx context.Context, r *registry.Registry, v *reader.Verifier, id, person string, until, now time.Time) (*reader.EnrollmentRecord, string, registry.Applied, error) {
	p, err := r.PendingByID(id)
	if err != nil {
		return nil, "", registry.Applied{}, err
	}
	rec, err := verifiedEnrollment(p.Record, v, now)
	if err != nil {
		return nil, "", registry.Applied{}, fmt.Errorf("enroll: %w", err)
	}
	a, err := enrollEntry(ctx, r, p.Site, person, until, rec)
	if err != nil {
		return nil, "", registry.Applied{}, err
	}
	return rec, p.Site, a, r.DeletePending(id)
}

// pendingCredential returns the credential of a pending enrollment, and
// false when its record cannot be decoded.
func pendingCredential(p registry.Pending) (credential.Credential, bool) {
	var rec reader.EnrollmentRecord
	if json.Unmarshal(p.Record, &rec) != nil {
		return credential.Credential{}, false
	}
	return rec.Credential, true
}

// registrySink stores enrollments from devices in the registry.
type registrySink struct{ reg *sharedRegistry }

// StoreEnrollment implements hq.EnrollmentSink.
func (s registrySink) StoreEnrollment(ctx context.Context, e proto.Enrollment) error {
	return s.reg.with(ctx, func(r *registry.Registry) error {
		_, err := r.AddPending(registry.Pending{Site: e.Site, Device: e.Device, Seq: e.Seq, Received: time.Now().UTC(), Record: e.Record})
		return err
	})
}

// parseCertFlags reads a certificate reference from --credential (a hex
// credential key) or --issuer-key-id and --serial.
func parseCertFlags(credHex, kidHex, serialHex string) (policy.CertRef, error) {
	if credHex != "" {
		b, err := hex.DecodeString(credHex)
		if err != nil {
			return policy.CertRef{}, cli.Usagef("--credential %q is not hex", credHex)
		}
		c, err := credential.Parse(b)
		if err != nil || c.Kind != credential.KindCertSerial {
			return policy.CertRef{}, cli.Usagef("--credential %q is not a certificate credential key", credHex)
		}
		return policy.CertRef{IssuerKeyID: c.IssuerKeyID, Serial: c.Serial}, nil
	}
	kid, err := hex.DecodeString(kidHex)
	if err != nil || len(kid) != credential.KeyIDLen {
		return policy.CertRef{}, cli.Usagef("--issuer-key-id %q: want %d hex digits", kidHex, 2*credential.KeyIDLen)
	}
	serial, err := registry.ParseSerial(serialHex)
	if err != nil {
		return policy.CertRef{}, cli.Usagef("--serial: %w", err)
	}
	return policy.CertRef{IssuerKeyID: kid, Serial: serial}, nil
}

// revokeCommand is "tobira-hq revoke".
func revokeCommand() *cobra.Command {
	var site, cred, kid, serial string
	c := &cobra.Command{
		Use:   "revoke --site S (--credential HEX | --issuer-key-id HEX --serial HEX)",
		Short: "Revoke a certificate at a site (and drop its allowlist entries)",
	}
	reg := registryFlag(c)
	c.Flags().StringVar(&site, "site", "", "site")
	c.Flags().StringVar(&cred, "credential", "", "certificate credential key (hex, as in events)")
	c.Flags().StringVar(&kid, "issuer-key-id", "", "issuer key ID (40 hex digits), with --serial")
	c.Flags().StringVar(&serial, "serial", "", "certificate serial (hex), with --issuer-key-id")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if site == "" {
			return cli.Usagef("revoke needs --site")
		}
		ref, err := parseCertFlags(cred, kid, serial)
		if err != nil {
			return err
		}
		return revoke(c.Context(), *reg, site, ref, c.OutOrStdout(), logger(c))
	}
	return c
}

// revoke revokes the certificate c at site in the registry reg.
func revoke(ctx context.Context, reg registryAt, site string, c policy.CertRef, stdout io.Writer, log *slog.Logger) error {
	r, err := reg.open(ctx, log)
	if err != nil {
		return err
	}
	defer r.Close()
	a, err := r.Revoke(ctx, site, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %x/%x at site %s (allowlist entries removed: %d), revision %d\n", c.IssuerKeyID, c.Serial, site, a.Deleted, a.Rev)
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

// crlCommand is the "crl" group: "crl import".
func crlCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "crl",
		Short: "Certificate revocation lists",
	}
	var site, crlFile, caFile string
	imp := &cobra.Command{
		Use:   "import --site S --crl FILE --ca FILE",
		Short: "Import a CA's CRL into a site's revocations",
	}
	reg := registryFlag(imp)
	imp.Flags().StringVar(&site, "site", "", "site")
	imp.Flags().StringVar(&crlFile, "crl", "", "CRL file (DER or PEM)")
	imp.Flags().StringVar(&caFile, "ca", "", "certificate of the CA that signs the CRL (PEM or DER)")
	imp.RunE = func(c *cobra.Command, _ []string) error {
		if site == "" || crlFile == "" || caFile == "" {
			return cli.Usagef("crl import needs --site, --crl and --ca")
		}
		return crlImport(c.Context(), *reg, site, crlFile, caFile, c.OutOrStdout(), logger(c))
	}
	c.AddCommand(imp)
	return c
}

// crlImport imports the CRL in crlFile, signed by the CA in caFile, into
// site's revocations in the registry reg.
func crlImport(ctx context.Context, reg registryAt, site, crlFile, caFile string, stdout io.Writer, log *slog.Logger) error {
	der, err := os.ReadFile(crlFile)
	if err != nil {
		return fmt.Errorf("crl import: %w", err)
	}
	if blk, _ := pem.Decode(der); blk != nil {
		der = blk.Bytes
	}
	ca, err := readCert(caFile)
	if err != nil {
		return fmt.Errorf("crl import: %w", err)
	}
	r, err := reg.open(ctx, log)
	if err != nil {
		return err
	}
	defer r.Close()
	info, err := r.ImportCRL(ctx, site, der, ca, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported CRL of %s into site %s: %d serials (%d new), thisUpdate %s, revision %d\n",
		ca.Subject, site, info.Serials, info.New, info.ThisUpdate.Format(time.RFC3339), info.Applied.Rev)
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
