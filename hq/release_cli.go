package hq

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/sync/proto"
)

// ReleaseUsage documents RunReleaseCLI's commands over MQTT.
const ReleaseUsage = `release commands over MQTT (HQ):
  publish -key HQ.key -store DIR -site S [-device D ...] [-group G ...]
          [-chunk 65536] [-lifetime 168h] [-wait 0] RELEASE.json [BINARY]
                        offer a release (retained), then serve chunks for -wait
  serve   -store DIR    answer the devices' chunk requests until interrupted
  devices [-settle 2s]  which device runs what, and its last offer
  rollout -version V [-settle 2s]   committed, on trial, rolled back (and why), not yet
keygen, sign and verify are firmware.RunReleaseCLI's (offline release key).`

// RunReleaseCLI runs one "tobira-hq release ..." command: publish, serve,
// devices and rollout talk to the broker of cfg; keygen, sign and verify
// are handed to firmware.RunReleaseCLI. Usage mistakes wrap
// firmware.ErrUsage.
func RunReleaseCLI(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no release command\n%s", firmware.ErrUsage, ReleaseUsage)
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	parse := func() error {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("%w: %s: %w", firmware.ErrUsage, cmd, err)
		}
		return nil
	}
	switch cmd {
	case "publish":
		return releasePublish(ctx, cfg, fs, parse, stdout)
	case "serve":
		store := fs.String("store", "", "release store directory")
		if err := parse(); err != nil {
			return err
		}
		if *store == "" {
			return fmt.Errorf("%w: serve needs -store DIR", firmware.ErrUsage)
		}
		s, err := DialReleaseServer(ctx, cfg, ed25519Dummy(), *store)
		if err != nil {
			return err
		}
		defer s.Close()
		fmt.Fprintf(stdout, "serving releases from %s on %s\n", *store, cfg.Broker)
		<-ctx.Done()
		fmt.Fprintf(stdout, "served %d bytes\n", s.Served())
		return nil
	case "devices", "rollout":
		settle := fs.Duration("settle", 2*time.Second, "wait this long after the last report arrived")
		version := fs.String("version", "", "release version (rollout)")
		if err := parse(); err != nil {
			return err
		}
		if cmd == "rollout" && *version == "" {
			return fmt.Errorf("%w: rollout needs -version V", firmware.ErrUsage)
		}
		s, err := DialReleaseServer(ctx, cfg, ed25519Dummy(), "")
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.WaitQuiet(ctx, *settle); err != nil {
			return fmt.Errorf("collect release reports: %w", err)
		}
		if cmd == "devices" {
			return WriteReleaseDevices(stdout, s.Reports())
		}
		return WriteRollout(stdout, *version, s.Reports())
	case "keygen", "sign", "verify":
		return firmware.RunReleaseCLI(ctx, args, stdout, stderr)
	default:
		return fmt.Errorf("%w: unknown release command %q\n%s", firmware.ErrUsage, cmd, ReleaseUsage)
	}
}

// ed25519Dummy returns a throw-away signing key for servers that only
// serve and read (they never publish an offer).
func ed25519Dummy() ed25519.PrivateKey {
	_, priv, _ := signed.GenerateKey() // crypto/rand never fails
	return priv
}

// listFlag collects a repeated string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// releasePublish is "release publish".
func releasePublish(ctx context.Context, cfg Config, fs *flag.FlagSet, parse func() error, stdout io.Writer) error {
	var devices, groups listFlag
	key := fs.String("key", "", "HQ signing key (PEM, as for commands and snapshots)")
	store := fs.String("store", "", "release store directory")
	site := fs.String("site", "", "site of the devices and groups")
	fs.Var(&devices, "device", "device to offer the release to (repeatable)")
	fs.Var(&groups, "group", "group to offer the release to (repeatable)")
	chunk := fs.Int("chunk", proto.DefaultReleaseChunkSize, "largest chunk a device may ask for")
	lifetime := fs.Duration("lifetime", proto.DefaultReleaseOfferLifetime, "validity of the offer")
	wait := fs.Duration("wait", 0, "serve chunks and wait this long for the devices' results")
	if err := parse(); err != nil {
		return err
	}
	if *key == "" || *site == "" || len(devices)+len(groups) == 0 || fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("%w: publish needs -key, -site, a -device or -group, and RELEASE.json [BINARY]", firmware.ErrUsage)
	}
	priv, err := signed.ReadPrivateKey(*key)
	if err != nil {
		return err
	}
	env, err := readRelease(fs.Arg(0))
	if err != nil {
		return err
	}
	s, err := DialReleaseServer(ctx, cfg, priv, *store)
	if err != nil {
		return err
	}
	defer s.Close()
	if bin := fs.Arg(1); bin != "" {
		if _, err := s.AddRelease(env, bin); err != nil {
			return err
		}
	}
	offers, err := s.Publish(ctx, ReleasePublication{Site: *site, Devices: devices, Groups: groups, Envelope: env,
		ChunkSize: *chunk, Lifetime: *lifetime})
	for _, o := range offers {
		fmt.Fprintf(stdout, "offer %s to %s%s%s\n", o.ID, o.Site, "/"+o.Device, map[bool]string{true: " (group " + o.Group + ")"}[o.Group != ""])
	}
	if err != nil || *wait <= 0 {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	for _, o := range offers {
		if o.Device == "" {
			continue // group members are not known here: watch with rollout
		}
		r, err := s.WaitResult(wctx, o.ID, o.Site, o.Device)
		if err != nil {
			fmt.Fprintf(stdout, "%s/%s: no result yet\n", o.Site, o.Device)
			continue
		}
		fmt.Fprintf(stdout, "%s/%s: %s %s\n", o.Site, o.Device, r.Status, r.Error)
	}
	<-wctx.Done() // keep serving group members until -wait ends
	fmt.Fprintf(stdout, "served %d bytes\n", s.Served())
	return nil
}

// WriteReleaseDevices writes one line per device: running, committed,
// pending, last trial and last offer.
func WriteReleaseDevices(w io.Writer, reps []proto.ReleaseReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tRUNNING\tCOMMITTED\tPENDING\tLAST TRIAL\tLAST OFFER\tREPORTED")
	for _, r := range reps {
		trial, offer := "-", "-"
		if l := r.Firmware.Last; l != nil {
			trial = strings.TrimSpace(fmt.Sprintf("%s %s %s", l.Version, l.Outcome, l.Reason))
		}
		if o := r.Offer; o != nil {
			offer = strings.TrimSpace(fmt.Sprintf("%s %s %s", o.Version, o.State, o.Reason))
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Site, r.Device, orDashRel(r.Firmware.Running),
			orDashRel(r.Firmware.Committed), orDashRel(r.Firmware.Pending), trial, offer, r.Time.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// WriteRollout writes the rollout of version: counts, the devices that
// rolled it back (with the reason) and those that refused its offer.
func WriteRollout(w io.Writer, version string, reps []proto.ReleaseReport) error {
	r := firmware.CountRollout(FirmwareReports(reps), version)
	fmt.Fprintf(w, "release %s: %d committed, %d on trial, %d rolled back, %d not yet\n",
		version, r.Committed, r.Trial, r.RolledBack, r.Other)
	for _, f := range r.Failed {
		fmt.Fprintf(w, "  rolled back: %s\n", f)
	}
	for _, rep := range reps {
		if o := rep.Offer; o != nil && o.Version == version && o.State != proto.OfferInstalled {
			fmt.Fprintf(w, "  offer %s: %s/%s %s %s\n", o.State, rep.Site, rep.Device, o.Reason, o.Error)
		}
	}
	return nil
}

func orDashRel(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
