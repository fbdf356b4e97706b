package fwcmd

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/clock"
)

// Release returns the "release" group of the admin's offline commands:
// keygen, sign, verify, publish into a release store, and the fleet views
// from a directory of device reports.
func Release() *cobra.Command {
	c := &cobra.Command{
		Use:   "release",
		Short: "Release keys, signed manifests and the release store (admin, offline key)",
	}
	c.AddCommand(cli.Keygen("firmware.release_keys"), Sign(), Verify(), publish(), devices(), rollout())
	return c
}

// Sign returns "release sign": sign a manifest of a binary with one or
// more release keys.
func Sign() *cobra.Command {
	var keys []string
	var m firmware.Manifest
	var binary, out string
	var expires time.Duration
	c := &cobra.Command{
		Use:   "sign --key K.key --version V --binary FILE --out RELEASE.json",
		Short: "Sign the manifest of a release binary with the release key(s)",
		RunE: func(c *cobra.Command, _ []string) error {
			privs := make([]ed25519.PrivateKey, 0, len(keys))
			for _, k := range keys {
				p, err := firmware.ReadPrivateKey(k)
				if err != nil {
					return err
				}
				privs = append(privs, p)
			}
			m.Issued = time.Now().UTC().Truncate(time.Second)
			m.Expires = m.Issued.Add(expires)
			signed, err := firmware.SignFile(out, binary, m, privs...)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "signed %s (%s, %d bytes, sha256 %s) -> %s\n",
				signed.Version, signed.Arch, signed.Size, signed.SHA256, out)
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&keys, "key", nil, "release private key file (repeatable)")
	f.StringArrayVar(&m.Targets, "target", nil, "device:ID or group:NAME (repeatable; none = all)")
	f.StringVar(&m.Version, "version", "", "release version MAJOR.MINOR.PATCH")
	f.StringVar(&binary, "binary", "", "the release binary")
	f.StringVar(&m.Arch, "arch", "linux/arm64", "GOOS/GOARCH of the binary")
	f.StringVar(&m.MinFromVersion, "min-from", "", "oldest version it may be installed from")
	f.StringVar(&m.Floor, "floor", "", "anti-rollback floor raised on commit")
	f.DurationVar(&expires, "expires", 30*24*time.Hour, "validity of the manifest")
	f.StringVar(&m.URL, "url", "", "https URL of the binary")
	f.StringVar(&m.Notes, "notes", "", "free text")
	f.StringVar(&out, "out", "", "output file")
	for _, r := range []string{"key", "version", "binary", "out"} {
		_ = c.MarkFlagRequired(r)
	}
	return c
}

// Verify returns "release verify": check a signed manifest (and a binary)
// against pinned release keys.
func Verify() *cobra.Command {
	var pubs []string
	c := &cobra.Command{
		Use:   "verify --pub K.pub [--pub ...] RELEASE.json [BINARY]",
		Short: "Verify a signed manifest, and the binary against it, with the pinned release key(s)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := verifyArgs(pubs, args)
			if err != nil {
				return err
			}
			return writeJSON(c.OutOrStdout(), m)
		},
	}
	c.Flags().StringArrayVar(&pubs, "pub", nil, "pinned release public key file (repeatable)")
	_ = c.MarkFlagRequired("pub")
	return c
}

// verifyArgs verifies RELEASE.json [BINARY] with the public key files.
func verifyArgs(pubs, args []string) (firmware.Manifest, error) {
	v, err := firmware.ReadVerifier(pubs...)
	if err != nil {
		return firmware.Manifest{}, err
	}
	binary := ""
	if len(args) == 2 {
		binary = args[1]
	}
	return firmware.VerifyFile(v, args[0], binary)
}

// publish is "release publish": copy a verified release into the store.
func publish() *cobra.Command {
	var pubs []string
	var store string
	c := &cobra.Command{
		Use:   "publish --store DIR --pub K.pub RELEASE.json BINARY",
		Short: "Verify a release and copy it into the release store (DIR/<version>/)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := verifyArgs(pubs, args)
			if err != nil {
				return err
			}
			dir, err := firmware.Publish(store, m, args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "published %s to %s\n", m.Version, dir)
			return nil
		},
	}
	c.Flags().StringArrayVar(&pubs, "pub", nil, "pinned release public key file (repeatable)")
	c.Flags().StringVar(&store, "store", "", "release store directory")
	_ = c.MarkFlagRequired("pub")
	_ = c.MarkFlagRequired("store")
	return c
}

// devices is "release devices": which device runs what, from a directory
// of reports.
func devices() *cobra.Command {
	var reports string
	c := &cobra.Command{
		Use:   "devices --reports DIR",
		Short: "Which device runs what (DIR/<device>.json reports)",
		RunE: func(c *cobra.Command, _ []string) error {
			reps, err := firmware.ReadReports(reports)
			if err != nil {
				return err
			}
			return writeDevices(c.OutOrStdout(), reps)
		},
	}
	c.Flags().StringVar(&reports, "reports", "", "directory of device status reports")
	_ = c.MarkFlagRequired("reports")
	return c
}

// rollout is "release rollout": the progress of one release.
func rollout() *cobra.Command {
	var reports, version string
	var watch time.Duration
	c := &cobra.Command{
		Use:   "rollout --reports DIR --version V",
		Short: "Progress of one release: committed, on trial, rolled back, not yet",
		RunE: func(c *cobra.Command, _ []string) error {
			return watchRollout(c.Context(), clock.System{}, reports, version, watch, c.OutOrStdout())
		},
	}
	c.Flags().StringVar(&reports, "reports", "", "directory of device status reports")
	c.Flags().StringVar(&version, "version", "", "release version")
	c.Flags().DurationVar(&watch, "watch", 0, "repeat every interval until done")
	_ = c.MarkFlagRequired("reports")
	_ = c.MarkFlagRequired("version")
	return c
}

// writeDevices writes reports as a table: device, running, committed,
// pending, last result, time reported.
func writeDevices(w io.Writer, reps []firmware.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tRUNNING\tCOMMITTED\tPENDING\tLAST RESULT\tREPORTED")
	for _, r := range reps {
		last := "-"
		if l := r.Status.Last; l != nil {
			last = strings.TrimSpace(fmt.Sprintf("%s %s %s", l.Version, l.Outcome, l.Reason))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Device, cli.OrDash(r.Status.Running), cli.OrDash(r.Status.Committed),
			cli.OrDash(r.Status.Pending), last, r.Reported.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// watchRollout prints the rollout of version from the reports in dir,
// again every interval until no device is on trial (once when every <= 0).
func watchRollout(ctx context.Context, clk clock.Clock, dir, version string, every time.Duration, w io.Writer) error {
	for {
		reps, err := firmware.ReadReports(dir)
		if err != nil {
			return err
		}
		r := firmware.CountRollout(reps, version)
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
