package keypad_test

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/keypad"
)

// uinput ioctl requests (linux/uinput.h).
const (
	uiDevCreate  = 0x5501                                   // _IO('U', 1)
	uiDevDestroy = 0x5502                                   // _IO('U', 2)
	uiDevSetup   = 1<<30 | uinputSetupSize<<16 | 'U'<<8 | 3 // _IOW('U', 3, struct uinput_setup)
	uiSetEvBit   = 1<<30 | 4<<16 | 'U'<<8 | 100             // _IOW('U', 100, int)
	uiSetKeyBit  = 1<<30 | 4<<16 | 'U'<<8 | 101             // _IOW('U', 101, int)
	sysnameLen   = 64
	uiGetSysname = 2<<30 | sysnameLen<<16 | 'U'<<8 | 44 // _IOC(_IOC_READ, 'U', 44, 64)

	uinputSetupSize = 92 // struct input_id (4 x u16), char name[80], u32 ff_effects_max
	busUSB          = 0x03
)

// uinputSetup is struct uinput_setup.
type uinputSetup struct {
	bustype, vendor, product, version uint16
	name                              [80]byte
	ffEffectsMax                      uint32
}

// virtualKeypad is a USB numeric keypad made by the kernel's uinput
// module: what it types arrives on a real /dev/input/event* node.
type virtualKeypad struct {
	t    *testing.T
	fd   int
	node string // the event device node to open
	gone bool
}

// newVirtualKeypad creates the device, or skips the test when the kernel
// has no uinput.
func newVirtualKeypad(t *testing.T) *virtualKeypad {
	t.Helper()
	if keypad.EventSize != 24 {
		t.Skipf("the test writes 64-bit input events; this machine's are %d bytes", keypad.EventSize)
	}
	fd, err := unix.Open("/dev/uinput", unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		// A kernel feature, not a tool: skipped even with CI=true.
		t.Skipf("uinput unavailable: open /dev/uinput: %v; %s (the test needs CONFIG_INPUT_UINPUT=y, or =m and `modprobe uinput`, and write access to /dev/uinput)", err, kernelConfig("CONFIG_INPUT_UINPUT"))
	}
	v := &virtualKeypad{t: t, fd: fd}
	t.Cleanup(v.close)
	ioctl := func(what string, req, arg uintptr) {
		t.Helper()
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg); e != 0 {
			t.Fatalf("uinput %s: %v", what, e)
		}
	}
	ioctl("UI_SET_EVBIT EV_KEY", uiSetEvBit, 1)
	for _, code := range []uintptr{kKP1, kKP2, kKP3, kKP4, kKP5, kKP6, kKP7, kKP8, kKP9, kKPDot, kKPEnter, kEsc} {
		ioctl(fmt.Sprintf("UI_SET_KEYBIT %d", code), uiSetKeyBit, code)
	}
	setup := uinputSetup{bustype: busUSB, vendor: 0x1234, product: 0x5678, version: 1}
	copy(setup.name[:], "tobira test keypad")
	if unsafe.Sizeof(setup) != uinputSetupSize {
		t.Fatalf("struct uinput_setup is %d bytes, want %d", unsafe.Sizeof(setup), uinputSetupSize)
	}
	ioctl("UI_DEV_SETUP", uiDevSetup, uintptr(unsafe.Pointer(&setup)))
	ioctl("UI_DEV_CREATE", uiDevCreate, 0)
	var sysname [sysnameLen]byte
	ioctl("UI_GET_SYSNAME", uiGetSysname, uintptr(unsafe.Pointer(&sysname[0])))
	input := strings.TrimRight(string(sysname[:]), "\x00")
	v.node = eventNode(t, input)
	return v
}

// eventNode returns a device node for the event handler of input device
// input (e.g. "input7"): /dev/input/eventN when devtmpfs or udev made it,
// else a node made with mknod in a temporary directory.
func eventNode(t *testing.T, input string) string {
	t.Helper()
	events, err := filepath.Glob(filepath.Join("/sys/devices/virtual/input", input, "event*"))
	if err != nil {
		t.Fatal(err)
	}
	switch len(events) {
	case 0:
		t.Skipf("uinput made %s but no event device is attached: %s", input, kernelConfig("CONFIG_INPUT_EVDEV"))
	case 1:
	default:
		t.Fatalf("event handlers of %s: %q, want one", input, events)
	}
	name := filepath.Base(events[0])
	if _, err := os.Stat(filepath.Join("/dev/input", name)); err == nil {
		return filepath.Join("/dev/input", name)
	}
	dev, err := os.ReadFile(filepath.Join(events[0], "dev"))
	if err != nil {
		t.Fatal(err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(string(dev), "%d:%d", &major, &minor); err != nil {
		t.Fatalf("parse %s/dev %q: %v", events[0], dev, err)
	}
	node := filepath.Join(t.TempDir(), name)
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil {
		t.Skipf("no /dev/input/%s and cannot make the node: %v", name, err)
	}
	return node
}

// kernelConfig reports how the running kernel sets option, from
// /proc/config.gz, for skip messages.
func kernelConfig(option string) string {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return fmt.Sprintf("%s unknown (%v)", option, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Sprintf("%s unknown (%v)", option, err)
	}
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, option+"=") || line == "# "+option+" is not set" {
			return "kernel config: " + line
		}
	}
	return fmt.Sprintf("%s not in /proc/config.gz", option)
}

// tap presses and releases keys, each followed by a SYN_REPORT, as a
// keyboard does.
func (v *virtualKeypad) tap(codes ...uint16) {
	v.t.Helper()
	var b []byte
	for _, c := range codes {
		b = append(b, event(0, 1, c, 1)...)
		b = append(b, event(0, 0, 0, 0)...)
		b = append(b, event(0, 1, c, 0)...)
		b = append(b, event(0, 0, 0, 0)...)
	}
	if _, err := unix.Write(v.fd, b); err != nil {
		v.t.Fatalf("uinput write: %v", err)
	}
}

// unplug destroys the device, as when the keypad's cable is pulled.
func (v *virtualKeypad) unplug() {
	v.t.Helper()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.fd), uiDevDestroy, 0); e != 0 {
		v.t.Fatalf("uinput UI_DEV_DESTROY: %v", e)
	}
	v.gone = true
}

func (v *virtualKeypad) close() {
	if !v.gone {
		unix.Syscall(unix.SYS_IOCTL, uintptr(v.fd), uiDevDestroy, 0)
	}
	unix.Close(v.fd)
}

// TestEvdevUinput types on a virtual USB keypad made through the kernel's
// uinput and reads the PIN through OpenEvdev (a real event device, grabbed).
func TestEvdevUinput(t *testing.T) {
	vk := newVirtualKeypad(t)
	clk := clocktest.New(time.Unix(0, 0))
	kp, err := keypad.OpenEvdev(vk.node, keypad.Config{Clock: clk, Timeout: time.Minute}, nil)
	if err != nil {
		t.Fatalf("OpenEvdev(%s) = %v", vk.node, err)
	}
	defer kp.Close()

	// A PIN with a correction: 9 9 Clear 1 2 3 4.
	got, done := readPIN(t, kp)
	if !waitTimer(clk, done) {
		t.Fatalf("ReadPIN() returned before any key: %v", (<-got).err)
	}
	vk.tap(kKP9, kKP9, kKPDot, kKP1, kKP2, kKP3, kKP4)
	r := <-got
	if r.err != nil {
		t.Fatalf("ReadPIN() = %v", r.err)
	}
	if digits := reveal(r.pin); digits != "1234" {
		t.Errorf("PIN %s, want 1234", digits)
	}

	// Esc cancels.
	got, done = readPIN(t, kp)
	waitTimer(clk, done)
	vk.tap(kKP5, kEsc)
	if r := <-got; !errors.Is(r.err, reader.ErrPINCancelled) {
		t.Errorf("ReadPIN() after Esc = %v, want ErrPINCancelled", r.err)
	}

	// Unplugged while the holder types: the entry is cancelled.
	got, done = readPIN(t, kp)
	waitTimer(clk, done)
	vk.tap(kKP1)
	vk.unplug()
	if r := <-got; !errors.Is(r.err, reader.ErrPINCancelled) {
		t.Errorf("ReadPIN() on an unplugged keypad = %v, want ErrPINCancelled", r.err)
	}
}
