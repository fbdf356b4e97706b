package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/gpio"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader/pcsc"
)

// `tobira doctor` is the first command after installation: it checks the
// configuration, the readers, the GPIO lines, the broker, the keys, the
// clock and the data directory, one line per check (docs/DEPLOYMENT.md,
// "First checks: tobira doctor").

// verdict is a check's outcome.
type verdict string

// The verdicts: a warning alone does not fail the doctor.
const (
	verdictOK   verdict = "ok"
	verdictWarn verdict = "warn"
	verdictFail verdict = "fail"
)

// finding is one line of the doctor's report: what was checked, what was
// found and, for a warning or a failure, how to fix it.
type finding struct {
	Verdict verdict
	// Check names the check (config, pcscd, reader, gpio, relay, tls,
	// broker, acl, hq.keys, trust, clock, data_dir, snapshot).
	Check string
	// What says what was checked and found.
	What string
	// Fix is the command to run or the config key to change.
	Fix string
}

// doctorTimeout bounds each check (a hung pcscd, a broker that never
// answers). The broker check does three round trips within it.
const doctorTimeout = 15 * time.Second

// readerLister is what the doctor needs of pcscd.
type readerLister interface {
	Readers() ([]string, error)
	Close() error
}

// doctorEnv is the machine the doctor examines; tests replace parts.
type doctorEnv struct {
	// Clock gives the time certificates, the trusted time and the
	// revocation data are judged at.
	Clock clock.Clock
	// OpenPCSC connects to pcscd.
	OpenPCSC func() (readerLister, error)
	// ClockSynced reports whether the kernel's clock is synchronised (NTP).
	ClockSynced func() (bool, error)
	// Timeout bounds each check.
	Timeout time.Duration
}

// systemEnv is the real machine.
func systemEnv() doctorEnv {
	return doctorEnv{
		Clock:       clock.System{},
		OpenPCSC:    func() (readerLister, error) { return pcsc.Open(nil) },
		ClockSynced: kernelClockSynced,
		Timeout:     doctorTimeout,
	}
}

// kernelClockSynced asks the kernel (adjtimex, read only) whether an NTP
// client has synchronised the clock.
func kernelClockSynced() (bool, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, fmt.Errorf("adjtimex: %w", err)
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0, nil
}

// doctorCommand is "tobira doctor".
func doctorCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor [--config FILE]",
		Short: "Check the configuration, readers, GPIO lines, broker, keys, clock and data directory",
	}
	cfg := configFlag(c, "configuration file")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runDoctor(c.Context(), *cfg, systemEnv(), c.OutOrStdout())
	}
	return c
}

// errDoctorFailed is the error of a doctor run with a failed check.
var errDoctorFailed = errors.New("some checks failed (see the fixes above)")

// runDoctor runs every check in order, prints one line per finding and
// fails when a check failed. When the configuration does not parse, only
// the configuration check runs; a named file missing fails that check and
// the others still run.
func runDoctor(ctx context.Context, path string, env doctorEnv, w io.Writer) error {
	d := &doctor{path: path, env: env, w: w}
	d.run(ctx)
	return d.summary()
}

// doctor holds one run's state.
type doctor struct {
	path string
	env  doctorEnv
	w    io.Writer
	cfg  *Config
	// fresh is the policy store's freshness, read once for the clock and
	// snapshot checks (freshErr when it could not be read).
	fresh     *policy.Freshness
	freshErr  error
	freshRead bool
	counts    map[verdict]int
}

// run runs the checks in the order of docs/DEPLOYMENT.md.
func (d *doctor) run(ctx context.Context) {
	if d.step(ctx, d.checkConfig); d.cfg == nil {
		return
	}
	for _, check := range []func(context.Context) bool{d.checkPCSC, d.checkGPIO, d.checkBroker, d.checkKeys,
		d.checkClock, d.checkDataDir, d.checkSnapshot} {
		d.step(ctx, check)
	}
}

// step runs one check with the doctor's timeout; false means the check
// failed.
func (d *doctor) step(ctx context.Context, check func(context.Context) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, d.env.Timeout)
	defer cancel()
	return check(ctx)
}

// report prints f.
func (d *doctor) report(f finding) {
	if d.counts == nil {
		d.counts = map[verdict]int{}
	}
	d.counts[f.Verdict]++
	fmt.Fprintf(d.w, "%-4s  %-9s %s\n", f.Verdict, f.Check, f.What)
	if f.Fix != "" && f.Verdict != verdictOK {
		fmt.Fprintf(d.w, "      %-9s fix: %s\n", "", f.Fix)
	}
}

// ok, warn and fail report a finding; fail returns false for the
// checks' results.
func (d *doctor) ok(check, format string, args ...any) {
	d.report(finding{Verdict: verdictOK, Check: check, What: fmt.Sprintf(format, args...)})
}

func (d *doctor) warn(check, fix, format string, args ...any) {
	d.report(finding{Verdict: verdictWarn, Check: check, What: fmt.Sprintf(format, args...), Fix: fix})
}

func (d *doctor) fail(check, fix, format string, args ...any) bool {
	d.report(finding{Verdict: verdictFail, Check: check, What: fmt.Sprintf(format, args...), Fix: fix})
	return false
}

// summary prints the counts and returns errDoctorFailed after a failure.
func (d *doctor) summary() error {
	fmt.Fprintf(d.w, "%d ok, %d warn, %d fail\n", d.counts[verdictOK], d.counts[verdictWarn], d.counts[verdictFail])
	if d.counts[verdictFail] > 0 {
		return errDoctorFailed
	}
	return nil
}

// withContext runs f and returns its result, or ctx's error if ctx ends
// first (f then finishes in the background and its result is dropped: a
// hung pcscd or GPIO driver must not hang the doctor).
func withContext[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("no answer: %w", ctx.Err())
	}
}

// checkConfig: the file parses strictly, and every file it names is
// readable.
func (d *doctor) checkConfig(context.Context) bool {
	cfg, err := LoadConfig(d.path)
	if err != nil {
		fix := fmt.Sprintf("correct the key and line named above in %s (docs/CONFIG.md)", d.path)
		if errors.Is(err, os.ErrNotExist) {
			fix = "pass --config FILE, or restore the package's example: sudo apt install --reinstall -o Dpkg::Options::=--force-confmiss tobira"
		}
		return d.fail("config", fix, "%v", err)
	}
	d.cfg = cfg
	files := namedFiles(cfg)
	good := true
	for _, f := range files {
		fh, err := os.Open(f.path)
		if err == nil {
			_ = fh.Close()
			continue
		}
		good = d.fail("config", fmt.Sprintf("install the file, make it readable by the tobira user (chgrp tobira; chmod g+r), or correct %s", f.key),
			"%s = %s: %v", f.key, f.path, err)
	}
	if good {
		d.ok("config", "%s parses: site %s, device %s, %d door(s), %d reader(s); %d named file(s) readable",
			d.path, cfg.Site, cfg.Device, len(cfg.Doors), len(cfg.Readers), len(files))
	}
	return good
}

// namedFile is a file the configuration names, with its key.
type namedFile struct{ key, path string }

// namedFiles lists every file the configuration names.
func namedFiles(c *Config) []namedFile {
	var out []namedFile
	add := func(key, path string) {
		if path != "" {
			out = append(out, namedFile{key, path})
		}
	}
	for i, a := range c.Trust.Anchors {
		add(fmt.Sprintf("trust.anchors[%d]", i), a)
	}
	add("hq.ca_cert", c.HQ.CACert)
	add("hq.client_cert", c.HQ.ClientCert)
	add("hq.client_key", c.HQ.ClientKey)
	add("hq.password_file", c.HQ.PasswordFile)
	for i, k := range c.HQ.Keys {
		add(fmt.Sprintf("hq.keys[%d]", i), k)
	}
	for i, k := range c.Firmware.ReleaseKeys {
		add(fmt.Sprintf("firmware.release_keys[%d]", i), k)
	}
	for i, r := range c.Readers {
		if r.Keypad != nil && r.Keypad.Kind == "evdev" {
			add(fmt.Sprintf("reader[%d].keypad.device", i), r.Keypad.Device)
		}
	}
	return out
}

// checkPCSC: pcscd answers, and every configured reader is present.
func (d *doctor) checkPCSC(ctx context.Context) bool {
	names, err := withContext(ctx, func() ([]string, error) {
		p, err := d.env.OpenPCSC()
		if err != nil {
			return nil, err
		}
		defer p.Close()
		return p.Readers()
	})
	if err != nil {
		return d.fail("pcscd", "start it: sudo systemctl enable --now pcscd.socket (package pcscd); the tobira user needs the polkit rule /etc/polkit-1/rules.d/50-tobira-pcscd.rules",
			"PC/SC service unreachable: %v", err)
	}
	d.ok("pcscd", "pcscd answers; %d reader(s) listed", len(names))
	good := true
	for i, r := range d.cfg.Readers {
		if slices.Contains(names, r.Name) {
			d.ok("reader", "reader[%d] %q present (door %q, %s)", i, r.Name, r.Door, r.Direction)
			continue
		}
		listed := "none"
		if len(names) > 0 {
			listed = fmt.Sprintf("%q", names)
		}
		good = d.fail("reader", fmt.Sprintf("plug the reader in (lsusb shows it; pcscd needs its driver, e.g. libccid), or set reader[%d].name to a name `tobira readers` lists", i),
			"reader[%d] %q not present; pcscd lists: %s", i, r.Name, listed)
	}
	return good
}

// lineHolder is a GPIO line that knows which process has requested it:
// periph's gpioioctl lines report the consumer the kernel recorded
// ("tobira@812") when the chips were scanned.
type lineHolder interface{ Consumer() string }

// gpioLine is one configured GPIO line.
type gpioLine struct {
	key, name string
}

// doorLines lists every GPIO line of the configuration except the relays:
// the doors' other pins and the matrix keypads'.
func doorLines(c *Config) []gpioLine {
	var out []gpioLine
	for i, dc := range c.Doors {
		for _, l := range []struct{ key, name string }{{"green_pin", dc.GreenPin}, {"red_pin", dc.RedPin},
			{"buzzer_pin", dc.BuzzerPin}, {"contact_pin", dc.ContactPin}, {"rex_pin", dc.REXPin},
			{"fire_pin", dc.FirePin}, {"lockdown_pin", dc.LockdownPin}, {"tamper_pin", dc.TamperPin}} {
			if l.name != "" {
				out = append(out, gpioLine{fmt.Sprintf("door[%d].%s", i, l.key), l.name})
			}
		}
	}
	for i, r := range c.Readers {
		if r.Keypad == nil || r.Keypad.Kind != "matrix" {
			continue
		}
		for j, n := range r.Keypad.Rows {
			out = append(out, gpioLine{fmt.Sprintf("reader[%d].keypad.rows[%d]", i, j), n})
		}
		for j, n := range r.Keypad.Cols {
			out = append(out, gpioLine{fmt.Sprintf("reader[%d].keypad.cols[%d]", i, j), n})
		}
	}
	return out
}

// ownConsumer is the consumer name periph's gpioioctl gives this process's
// line requests.
var ownConsumer = fmt.Sprintf("@%d", os.Getpid())

// heldBy returns who else holds p ("" when nobody, or when the driver
// cannot tell).
func heldBy(p gpio.PinIO) string {
	h, ok := p.(lineHolder)
	if !ok {
		return ""
	}
	c := h.Consumer()
	if c == "" || strings.HasSuffix(c, ownConsumer) {
		return ""
	}
	return c
}

// busyFix is the fix for a line another process holds.
const busyFix = "stop the process holding it (sudo systemctl stop tobira; `gpioinfo` names the holder), or give this role a free line"

// isBusy reports whether a pin write failed because another process holds
// the line. periph's gpioioctl returns the kernel's EBUSY as a plain error
// ("line_request ioctl: device or resource busy"), so the text is matched.
func isBusy(err error) bool {
	return errors.Is(err, unix.EBUSY) || strings.Contains(err.Error(), unix.EBUSY.Error())
}

// checkGPIO: every relay is driven to its locked level first (the path
// `tobira run` takes first thing), then every other configured line is
// looked up and checked to be free.
func (d *doctor) checkGPIO(ctx context.Context) bool {
	setups, names, err := doorSetups(d.cfg.Doors)
	if err != nil {
		return d.fail("gpio", "correct the [[door]] table named above", "%v", err)
	}
	good := true
	for _, r := range lockedRelays(setups, names) {
		what := fmt.Sprintf("%s %s of door %q", r.role, r.line, r.door)
		pin, err := door.OpenPin(r.line)
		if err != nil {
			good = d.fail("relay", fmt.Sprintf("wire the relay to a line this machine has, and set its %s key to that line's name", r.role), "%s: %v", what, err)
			continue
		}
		if who := heldBy(pin); who != "" {
			good = d.fail("relay", busyFix, "%s is held by %q", what, who)
			continue
		}
		if _, err := withContext(ctx, func() (struct{}, error) { return struct{}{}, r.lock(pin) }); err != nil {
			fix := "check the GPIO permissions: the tobira user must be in group gpio (/etc/udev/rules.d/60-tobira-gpio.rules)"
			if isBusy(err) {
				fix = busyFix
			}
			good = d.fail("relay", fix, "%s could not be driven locked: %v", what, err)
			continue
		}
		d.ok("relay", "%s driven to its locked level (%s)", what, r.level)
	}
	for _, l := range doorLines(d.cfg) {
		pin, err := door.OpenPin(l.name)
		if err != nil {
			good = d.fail("gpio", fmt.Sprintf("wire it to a line this machine has and set %s to that line's name", l.key), "%s = %s: %v", l.key, l.name, err)
			continue
		}
		if who := heldBy(pin); who != "" {
			good = d.fail("gpio", busyFix, "%s = %s is held by %q", l.key, l.name, who)
			continue
		}
		d.ok("gpio", "%s = %s present and free", l.key, l.name)
	}
	return good
}

// doorSetups turns the [[door]] tables into the door package's
// configurations and pin names.
func doorSetups(cfgs []DoorConfig) ([]door.Config, []door.PinNames, error) {
	interlocks := map[string]*door.Interlock{}
	setups := make([]door.Config, len(cfgs))
	pinNames := make([]door.PinNames, len(cfgs))
	for i, dc := range cfgs {
		var err error
		if setups[i], pinNames[i], err = dc.DoorSetup(interlocks); err != nil {
			return nil, nil, fmt.Errorf("door %q: %w", dc.Name, err)
		}
	}
	return setups, pinNames, nil
}
