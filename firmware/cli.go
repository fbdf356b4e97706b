package firmware

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/internal/signed"
)

// ErrUsage marks a command-line mistake in RunReleaseCLI or RunDeviceCLI
// (exit status 2).
var ErrUsage = errors.New("usage")

// ReleaseUsage documents RunReleaseCLI's commands.
const ReleaseUsage = `release commands (admin, offline key):
  keygen  -out DIR -name NAME            make NAME.key (secret, 0600) and NAME.pub
  sign    -key K.key [-key K2.key] -version V -binary FILE [-arch linux/arm64]
          [-min-from V] [-floor V] [-expires 720h] [-target device:ID|group:NAME ...]
          [-url https://...] [-notes TEXT] -out RELEASE.json
  verify  -pub K.pub [-pub K2.pub] RELEASE.json [BINARY]
  publish -store DIR -pub K.pub RELEASE.json BINARY   copy into DIR/<version>/
  devices -reports DIR                   which device runs what (DIR/<device>.json)
  rollout -reports DIR -version V [-watch 10s]        progress of one release`

// DeviceUsage documents RunDeviceCLI's commands.
const DeviceUsage = `firmware commands (on the device):
  status   -root DIR                     releases, trial and last result (JSON)
  install  -root DIR -pub K.pub [-pub ...] [-device ID] [-group G ...] RELEASE.json [BINARY]
                                         stage and activate; without BINARY fetch the manifest's URL
  guard    -root DIR [-max-attempts N] [-deadline 5m]
                                         systemd ExecStartPre: count the start, roll back a failed trial
  rollback -root DIR                     switch back to the previous release`

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUsage, fs.Name(), err)
	}
	return nil
}

// RunReleaseCLI runs one admin command (see ReleaseUsage); tobira-hq mounts
// it as "tobira-hq release ...".
func RunReleaseCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", ErrUsage, ReleaseUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "keygen":
		fs := newFlags(cmd, stderr)
		out := fs.String("out", ".", "directory for the key files")
		name := fs.String("name", "", "key name")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *name == "" || strings.ContainsAny(*name, "/\\") {
			return fmt.Errorf("%w: keygen needs -name without slashes", ErrUsage)
		}
		return keygen(*out, *name, stdout)
	case "sign":
		return signCmd(rest, stdout, stderr)
	case "verify":
		fs := newFlags(cmd, stderr)
		var pubs multiFlag
		fs.Var(&pubs, "pub", "pinned public key file (repeatable)")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() < 1 || fs.NArg() > 2 {
			return fmt.Errorf("%w: verify takes RELEASE.json [BINARY]", ErrUsage)
		}
		m, err := verifyFiles(pubs, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		return writeJSON(stdout, m)
	case "publish":
		fs := newFlags(cmd, stderr)
		var pubs multiFlag
		fs.Var(&pubs, "pub", "pinned public key file (repeatable)")
		store := fs.String("store", "", "release store directory")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *store == "" || fs.NArg() != 2 {
			return fmt.Errorf("%w: publish takes -store DIR RELEASE.json BINARY", ErrUsage)
		}
		m, err := verifyFiles(pubs, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		return publish(*store, m, fs.Arg(0), fs.Arg(1), stdout)
	case "devices", "rollout":
		fs := newFlags(cmd, stderr)
		reports := fs.String("reports", "", "directory of device status reports")
		version := fs.String("version", "", "release version (rollout)")
		watch := fs.Duration("watch", 0, "repeat every interval until done (rollout)")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *reports == "" || (cmd == "rollout" && *version == "") {
			return fmt.Errorf("%w: %s needs -reports DIR%s", ErrUsage, cmd, map[bool]string{true: " -version V"}[cmd == "rollout"])
		}
		if cmd == "devices" {
			reps, err := ReadReports(*reports)
			if err != nil {
				return err
			}
			return printDevices(stdout, reps)
		}
		return watchRollout(ctx, clock.System{}, *reports, *version, *watch, stdout)
	default:
		return fmt.Errorf("%w: unknown release command %q\n%s", ErrUsage, cmd, ReleaseUsage)
	}
}

func keygen(dir, name string, stdout io.Writer) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate release key: %w", err)
	}
	keyPath, pubPath := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if _, err := os.Stat(keyPath); err == nil {
		return fmt.Errorf("keygen: %s exists; refusing to overwrite a release key", keyPath)
	}
	if err := writeFileAtomic(keyPath, []byte(EncodePrivateKey(priv)+"\n"), 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(pubPath, []byte(EncodePublicKey(pub)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key %s: secret %s, public %s\n", signed.KeyID(pub), keyPath, pubPath)
	return nil
}

func signCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sign", stderr)
	var keys, targets multiFlag
	fs.Var(&keys, "key", "release private key file (repeatable)")
	fs.Var(&targets, "target", "device:ID or group:NAME (repeatable; none = all)")
	version := fs.String("version", "", "release version MAJOR.MINOR.PATCH")
	binary := fs.String("binary", "", "the release binary")
	arch := fs.String("arch", "linux/arm64", "GOOS/GOARCH of the binary")
	minFrom := fs.String("min-from", "", "oldest version it may be installed from")
	floor := fs.String("floor", "", "anti-rollback floor raised on commit")
	expires := fs.Duration("expires", 30*24*time.Hour, "validity of the manifest")
	url := fs.String("url", "", "https URL of the binary")
	notes := fs.String("notes", "", "free text")
	out := fs.String("out", "", "output file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(keys) == 0 || *version == "" || *binary == "" || *out == "" {
		return fmt.Errorf("%w: sign needs -key, -version, -binary and -out", ErrUsage)
	}
	var privs []ed25519.PrivateKey
	for _, k := range keys {
		data, err := os.ReadFile(k)
		if err != nil {
			return fmt.Errorf("read release key: %w", err)
		}
		p, err := ParsePrivateKey(string(data))
		if err != nil {
			return fmt.Errorf("release key %s: %w", k, err)
		}
		privs = append(privs, p)
	}
	fi, err := os.Stat(*binary)
	if err != nil {
		return fmt.Errorf("release binary: %w", err)
	}
	sum, err := fileSHA256(*binary)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	m := Manifest{Version: *version, Arch: *arch, Size: fi.Size(), SHA256: sum, MinFromVersion: *minFrom,
		Floor: *floor, Issued: now, Expires: now.Add(*expires), Targets: targets, URL: *url, Notes: *notes}
	env, err := Sign(m, privs...)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(*out, env, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s (%s, %d bytes, sha256 %s) -> %s\n", m.Version, m.Arch, m.Size, m.SHA256, *out)
	return nil
}

// readVerifier builds a Verifier from public key files.
func readVerifier(files []string) (*Verifier, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: at least one -pub key file", ErrUsage)
	}
	var keys []ed25519.PublicKey
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read release public key: %w", err)
		}
		k, err := ParsePublicKey(string(data))
		if err != nil {
			return nil, fmt.Errorf("release public key %s: %w", f, err)
		}
		keys = append(keys, k)
	}
	return NewVerifier(keys...)
}

// verifyFiles verifies an envelope file and, if given, a binary against it.
func verifyFiles(pubs []string, envPath, binary string) (Manifest, error) {
	v, err := readVerifier(pubs)
	if err != nil {
		return Manifest{}, err
	}
	data, err := os.ReadFile(envPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("read release manifest: %w", err)
	}
	m, err := v.Verify(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("release manifest %s: %w", envPath, err)
	}
	if binary != "" {
		fi, err := os.Stat(binary)
		if err != nil {
			return Manifest{}, fmt.Errorf("release binary: %w", err)
		}
		sum, err := fileSHA256(binary)
		if err != nil {
			return Manifest{}, err
		}
		if fi.Size() != m.Size || sum != m.SHA256 {
			return Manifest{}, fmt.Errorf("%w: %s: %d bytes sha256 %s, manifest %s says %d bytes sha256 %s",
				ErrHashMismatch, binary, fi.Size(), sum, m.Version, m.Size, m.SHA256)
		}
	}
	return m, nil
}

// publish copies a verified release into store/<version>/{release.json,tobira}.
func publish(store string, m Manifest, envPath, binary string, stdout io.Writer) error {
	dir := filepath.Join(store, m.Version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create release store %s: %w", dir, err)
	}
	for _, f := range []struct{ src, dst string }{{binary, BinaryName}, {envPath, "release.json"}} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.Version, err)
		}
		if err := writeFileAtomic(filepath.Join(dir, f.dst), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "published %s to %s\n", m.Version, dir)
	return nil
}

// Report is one device's release status as HQ stores it (one JSON file
// per device in a reports directory until the HQ store takes them).
type Report struct {
	// Device is the device's name.
	Device string `json:"device"`
	// Status is what the device reported.
	Status Status `json:"status"`
	// Reported is when HQ received it.
	Reported time.Time `json:"reported"`
}

// ReadReports reads every *.json report in dir, sorted by device.
func ReadReports(dir string) ([]Report, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list reports in %s: %w", dir, err)
	}
	var reps []Report
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read report: %w", err)
		}
		var r Report
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%w: report %s: %w", ErrMalformed, f, err)
		}
		reps = append(reps, r)
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].Device < reps[j].Device })
	return reps, nil
}

func printDevices(w io.Writer, reps []Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tRUNNING\tCOMMITTED\tPENDING\tLAST RESULT\tREPORTED")
	for _, r := range reps {
		last := "-"
		if l := r.Status.Last; l != nil {
			last = strings.TrimSpace(fmt.Sprintf("%s %s %s", l.Version, l.Outcome, l.Reason))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Device, dash(r.Status.Running), dash(r.Status.Committed),
			dash(r.Status.Pending), last, r.Reported.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Rollout counts the devices of a release by where they stand.
type Rollout struct {
	// Version is the release counted.
	Version string
	// Committed, Trial, RolledBack and Other count devices that committed
	// it, run it on trial, rolled it back, or have not taken it yet.
	Committed, Trial, RolledBack, Other int
	// Failed names the devices that rolled it back, with the reason.
	Failed []string
}

// Done reports whether no device is on trial of the release any more.
func (r Rollout) Done() bool { return r.Trial == 0 }

// CountRollout summarises reports for one release version.
func CountRollout(reps []Report, version string) Rollout {
	r := Rollout{Version: version}
	for _, rep := range reps {
		s := rep.Status
		switch {
		case s.Pending == version:
			r.Trial++
		case s.Committed == version:
			r.Committed++
		case s.Last != nil && s.Last.Version == version && s.Last.Outcome != OutcomeCommitted:
			r.RolledBack++
			r.Failed = append(r.Failed, rep.Device+" ("+string(s.Last.Outcome)+" "+s.Last.Reason+")")
		default:
			r.Other++
		}
	}
	return r
}

func watchRollout(ctx context.Context, clk clock.Clock, dir, version string, every time.Duration, w io.Writer) error {
	for {
		reps, err := ReadReports(dir)
		if err != nil {
			return err
		}
		r := CountRollout(reps, version)
		fmt.Fprintf(w, "%s release %s: %d committed, %d on trial, %d rolled back, %d not yet\n",
			clk.Now().UTC().Format(time.RFC3339), r.Version, r.Committed, r.Trial, r.RolledBack, r.Other)
		for _, f := range r.Failed {
			fmt.Fprintf(w, "  rolled back: %s\n", f)
		}
		if every <= 0 || (r.Done() && r.Other == 0) {
			return nil
		}
		t := clk.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// RunDeviceCLI runs one device command (see DeviceUsage); tobira mounts it
// as "tobira firmware ...". Logs go to stderr.
func RunDeviceCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", ErrUsage, DeviceUsage)
	}
	cmd, rest := args[0], args[1:]
	log := slog.New(slog.NewTextHandler(stderr, nil))
	fs := newFlags(cmd, stderr)
	root := fs.String("root", "/var/lib/tobira/firmware", "update root")
	switch cmd {
	case "status":
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		st, err := ReadStatus(*root)
		if err != nil {
			return err
		}
		return writeJSON(stdout, st)
	case "install":
		var pubs, groups multiFlag
		fs.Var(&pubs, "pub", "pinned public key file (repeatable)")
		fs.Var(&groups, "group", "group this device belongs to (repeatable)")
		device := fs.String("device", "", "this device's name")
		rate := fs.Int64("rate", 0, "download limit in bytes per second (0: none)")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() < 1 || fs.NArg() > 2 {
			return fmt.Errorf("%w: install takes RELEASE.json [BINARY]", ErrUsage)
		}
		v, err := readVerifier(pubs)
		if err != nil {
			return err
		}
		env, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return fmt.Errorf("read release manifest: %w", err)
		}
		u := &Updater{Root: *root, Verifier: v, Device: Device{ID: *device, Groups: groups}, Logger: log, RateLimit: *rate}
		var f ChunkFetcher
		if fs.NArg() == 2 {
			f = FileFetcher{Path: fs.Arg(1)}
		}
		m, err := u.Install(ctx, env, f)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "activated %s; restart tobira to start its trial\n", m.Version)
		return nil
	case "guard":
		maxAttempts := fs.Int("max-attempts", DefaultMaxAttempts, "starts a release on trial gets")
		deadline := fs.Duration("deadline", DefaultHealthDeadline, "time to report healthy after the switch")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		g, err := Guard(ctx, GateOptions{Root: *root, MaxAttempts: *maxAttempts, HealthDeadline: *deadline,
			InvocationID: os.Getenv("INVOCATION_ID"), Logger: log})
		if err != nil {
			return err
		}
		if g.Ended != nil {
			return writeJSON(stdout, g.Ended)
		}
		return nil
	case "rollback":
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		res, err := Rollback(ctx, GateOptions{Root: *root, Logger: log})
		if err != nil {
			return err
		}
		return writeJSON(stdout, res)
	default:
		return fmt.Errorf("%w: unknown firmware command %q\n%s", ErrUsage, cmd, DeviceUsage)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
