package door

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// The gpio-sim test runs the real GPIO character device path: a simulated
// chip made through configfs, its lines found by name by periph's
// gpioioctl driver, a door driving the relay line and reading the contact
// line. periph discovers chips once per process, so the parent test makes
// the chip and runs the door in a child process (this test binary again).

const (
	simConfigfs   = "/sys/kernel/config"
	simDir        = simConfigfs + "/gpio-sim"
	simChildEnv   = "TOBIRA_GPIOSIM_LINES" // set in the child: the sysfs dir of the chip's lines
	simRelayLine  = "TOBIRA_SIM_RELAY"
	simContact    = "TOBIRA_SIM_CONTACT"
	simRelayOff   = 0
	simContactOff = 1
)

// gpioSimUnavailable says why gpio-sim cannot be used here, or "".
func gpioSimUnavailable() string {
	if os.Geteuid() != 0 {
		return "not root: creating a gpio-sim chip needs root"
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fs), "configfs") {
		return "the kernel has no configfs (not in /proc/filesystems)"
	}
	if _, err := os.Stat(simDir); err == nil {
		return ""
	}
	if _, err := os.Stat(simConfigfs); err != nil {
		return "configfs not mounted: " + simConfigfs + " does not exist (mount -t configfs none " + simConfigfs + ")"
	}
	if entries, _ := os.ReadDir(simConfigfs); len(entries) == 0 {
		if out, err := exec.Command("mount", "-t", "configfs", "none", simConfigfs).CombinedOutput(); err != nil {
			return fmt.Sprintf("configfs not mounted at %s and mounting it failed: %v: %s", simConfigfs, err, out)
		}
	}
	if _, err := os.Stat(simDir); err == nil {
		return ""
	}
	if _, err := exec.LookPath("modprobe"); err != nil {
		return "module gpio-sim missing: " + simDir + " does not exist and there is no modprobe to load it"
	}
	if out, err := exec.Command("modprobe", "gpio-sim").CombinedOutput(); err != nil {
		return fmt.Sprintf("module gpio-sim missing: modprobe gpio-sim: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if _, err := os.Stat(simDir); err != nil {
		return "module gpio-sim loaded but " + simDir + " does not exist"
	}
	return ""
}

// makeSimChip creates a gpio-sim chip with the relay and contact lines and
// returns the sysfs directory holding its sim_gpio<N> attributes.
func makeSimChip(t *testing.T) string {
	t.Helper()
	dev := filepath.Join(simDir, fmt.Sprintf("tobira-%d", os.Getpid()))
	bank := filepath.Join(dev, "bank0")
	write := func(path, v string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			t.Fatalf("gpio-sim: write %q to %s: %v", v, path, err)
		}
	}
	mkdir := func(path string) {
		t.Helper()
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatalf("gpio-sim: %v", err)
		}
	}
	mkdir(dev)
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dev, "live"), []byte("0"), 0o644)
		for _, l := range []int{simRelayOff, simContactOff} {
			_ = os.Remove(filepath.Join(bank, fmt.Sprintf("line%d", l)))
		}
		_ = os.Remove(bank)
		_ = os.Remove(dev)
	})
	mkdir(bank)
	write(filepath.Join(bank, "num_lines"), "4")
	for off, name := range map[int]string{simRelayOff: simRelayLine, simContactOff: simContact} {
		line := filepath.Join(bank, fmt.Sprintf("line%d", off))
		mkdir(line)
		write(filepath.Join(line, "name"), name)
	}
	write(filepath.Join(dev, "live"), "1")
	devName, err1 := os.ReadFile(filepath.Join(dev, "dev_name"))
	chipName, err2 := os.ReadFile(filepath.Join(bank, "chip_name"))
	if err1 != nil || err2 != nil {
		t.Fatalf("gpio-sim: read dev_name/chip_name: %v %v", err1, err2)
	}
	return filepath.Join("/sys/devices/platform", strings.TrimSpace(string(devName)), strings.TrimSpace(string(chipName)))
}

func TestGPIOSim(t *testing.T) {
	if os.Getenv(simChildEnv) != "" {
		t.Skip("in the gpio-sim child")
	}
	if why := gpioSimUnavailable(); why != "" {
		// Skipped even under CI=true: the kernel, not the test setup, lacks it.
		t.Skipf("gpio-sim not available: %s", why)
	}
	lines := makeSimChip(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestGPIOSimChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), simChildEnv+"="+lines)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestGPIOSimChild") {
		t.Fatalf("gpio-sim child: %v\n%s", err, out)
	}
}

// TestGPIOSimChild runs only inside TestGPIOSim's child process.
func TestGPIOSimChild(t *testing.T) {
	lines := os.Getenv(simChildEnv)
	if lines == "" {
		t.Skip("runs only as the child of TestGPIOSim")
	}
	attr := func(off int, name string) string { return filepath.Join(lines, fmt.Sprintf("sim_gpio%d", off), name) }
	read := func(off int) string {
		b, err := os.ReadFile(attr(off, "value"))
		if err != nil {
			t.Fatalf("read line %d: %v", off, err)
		}
		return strings.TrimSpace(string(b))
	}
	setContact := func(pull string) { // the outside world: the reed switch
		if err := os.WriteFile(attr(simContactOff, "pull"), []byte(pull), 0o644); err != nil {
			t.Fatalf("set contact %s: %v", pull, err)
		}
	}
	// eventually polls real hardware state with a deadline: an
	// integration test waiting on the kernel.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("gpio-sim: %s: not within 5s", what)
			}
		}
	}
	setContact("pull-down") // closed

	pins, err := OpenPins(PinNames{Relay: simRelayLine, Contact: simContact})
	if err != nil {
		t.Fatalf("OpenPins on the simulated chip: %v", err)
	}
	cfg := Config{Name: "sim", PulseLength: 10 * time.Second, Debounce: 20 * time.Millisecond, SampleInterval: 5 * time.Millisecond}
	d, err := NewDoor(cfg, pins, clock.System{}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	changes := make(chan Change, 32)
	d.Observe(func(c Change) { changes <- c })
	next := func(k Kind, cause string) {
		t.Helper()
		select {
		case c := <-changes:
			if c.Kind != k || c.Cause != cause {
				t.Fatalf("change %s/%s, want %s/%s", c.Kind, c.Cause, k, cause)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s/%s within 5s", k, cause)
		}
	}
	next(KindLocked, CauseStart)
	if v := read(simRelayOff); v != "0" {
		t.Fatalf("relay line after start = %s, want 0 (fail-secure, locked)", v)
	}
	if err := d.Grant(context.Background()); err != nil {
		t.Fatal(err)
	}
	next(KindUnlocked, CauseGrant)
	eventually("relay line driven 1", func() bool { return read(simRelayOff) == "1" })
	setContact("pull-up") // the door opens
	next(KindOpened, CauseGrant)
	setContact("pull-down") // and closes: relock at once
	next(KindClosed, CauseContact)
	next(KindLocked, CauseDoorClosed)
	eventually("relay line driven 0", func() bool { return read(simRelayOff) == "0" })
}
