package pgtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tobira-ac/tobira/internal/childproc"
	"github.com/tobira-ac/tobira/internal/pgtest"
)

// diesChildEnv makes the test binary the child of
// TestServerDiesWithTestBinary.
const diesChildEnv = "TOBIRA_PGTEST_DIES_CHILD"

// dieBound is how long the kernel and PostgreSQL get to end the server's
// processes once the test binary that started it is dead: not a limit on
// the code under test, which does nothing then, but on how long we wait
// for an external process to exit.
const dieBound = 30 * time.Second

// TestServerDiesWithTestBinary: a test binary SIGKILLed (go test's
// -timeout, a cancelled CI job) runs no cleanup; the server it started must
// die with it, its backends too, and its port must close; the next Start
// removes the cluster's directory and shared memory segment. The test runs
// itself as a child that starts a server, prints its address and waits to
// be killed.
func TestServerDiesWithTestBinary(t *testing.T) {
	if os.Getenv(diesChildEnv) == "1" {
		runDiesChild()
	}
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	tmp := tempDir(t) // the child's cluster goes below it, removed with it
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTestBinary$")
	cmd.Env = append(os.Environ(), diesChildEnv+"=1", "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr, why := childServer(bufio.NewScanner(out))
	if addr == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pgtest.Unavailable(t, errors.New(why))
	}
	pidFile, pid, shmID := postmasterPID(t, tmp)
	procs := append([]int{pid}, childrenOf(pid)...)
	t.Cleanup(func() { killLeft(t, procs) }) // when this test fails
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	deadline := time.Now().Add(dieBound)
	for {
		left := alive(procs)
		c, err := net.DialTimeout("tcp", addr, time.Second)
		open := err == nil
		if open {
			c.Close()
		}
		if len(left) == 0 && !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the test binary was SIGKILLed: processes %v of the server (postmaster %d) are alive, port %s accepts connections: %v",
				dieBound, left, pid, addr, open)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkSwept(t, tmp, pidFile, shmID)
}

// tempDir returns a new directory removed when t ends that, as t.TempDir
// is not, the postgres system user may enter (the server runs as that user
// under root).
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgtest-dies-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkSwept starts a server in tmp, which must remove what the dead
// child left: its cluster's directory and its shared memory segment.
func checkSwept(t *testing.T, tmp, pidFile string, shmID int) {
	t.Helper()
	dir := filepath.Dir(filepath.Dir(pidFile))
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the dead child's cluster %s: %v; want it there until the next Start", dir, err)
	}
	t.Setenv("TMPDIR", tmp)
	srv := start(t, pgtest.Options{})
	defer srv.Stop()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start left the dead child's cluster %s: %v", dir, err)
	}
	var desc unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(shmID, unix.IPC_STAT, &desc); err == nil && desc.Nattch == 0 {
		t.Errorf("Start left the dead child's shared memory segment %d", shmID)
	}
}

// runDiesChild is the child: it starts a server, prints "ADDR host:port"
// (or "UNAVAILABLE why") and blocks until it is killed.
func runDiesChild() {
	srv, err := pgtest.Start(context.Background(), pgtest.Options{})
	if err != nil {
		fmt.Println("UNAVAILABLE", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(0)
	}
	u, err := url.Parse(srv.URL("postgres"))
	if err != nil {
		fmt.Println("UNAVAILABLE", err)
		os.Exit(0)
	}
	fmt.Println("ADDR", u.Host)
	select {}
}

// childServer reads the child's output until it says where its server
// listens, or why it has none.
func childServer(sc *bufio.Scanner) (addr, why string) {
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			return a, ""
		}
		if w, ok := strings.CutPrefix(sc.Text(), "UNAVAILABLE "); ok {
			return "", w
		}
	}
	return "", fmt.Sprintf("the child ended without starting a server: %v", sc.Err())
}

// postmasterPID reads the pid and the shared memory segment's id of the
// postmaster the child started from postmaster.pid in the data directory
// of its cluster below tmp.
func postmasterPID(t *testing.T, tmp string) (file string, pid, shmID int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(tmp, "tobira-pgtest-*", "data", "postmaster.pid"))
	if err != nil || len(files) != 1 {
		t.Fatalf("postmaster.pid of the child's cluster below %s: found %v, %v; want one", tmp, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		t.Fatalf("%s: %q, want 7 lines or more", files[0], b)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		t.Fatalf("%s: line 1 %q: %v", files[0], lines[0], err)
	}
	shm := strings.Fields(lines[6])
	if len(shm) != 2 {
		t.Fatalf("%s: line 7 %q, want a shared memory key and id", files[0], lines[6])
	}
	if shmID, err = strconv.Atoi(shm[1]); err != nil {
		t.Fatalf("%s: line 7 %q: %v", files[0], lines[6], err)
	}
	return files[0], pid, shmID
}

// childrenOf returns the pids of the processes whose parent is pid (the
// postmaster's backends and auxiliary processes).
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		if ppid, ok := statField(string(b), 1); ok && ppid == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			kids = append(kids, n)
		}
	}
	return kids
}

// statField returns field i (0 = state, 1 = ppid) after the command name
// of a /proc/PID/stat line.
func statField(stat string, i int) (string, bool) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return "", false
	}
	f := strings.Fields(stat[end+1:])
	if i >= len(f) {
		return "", false
	}
	return f[i], true
}

// alive returns the pids of procs that still run (a zombie, which a PID 1
// that reaps nothing may keep, has exited).
func alive(procs []int) []int {
	var left []int
	for _, pid := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if state, ok := statField(string(b), 0); ok && state != "Z" && state != "X" {
			left = append(left, pid)
		}
	}
	return left
}

// killLeft SIGKILLs what is left of the server when the test failed, so
// that a failing run leaves nothing behind either.
func killLeft(t *testing.T, procs []int) {
	for _, pid := range alive(procs) {
		t.Logf("killing pid %d, left by the child", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestServerOutlivesStartingThread: Linux sends the parent-death signal
// when the thread that forked the child ends, and Go ends a thread whose
// goroutine exits locked to it. A server started from such a goroutine
// must live on until Stop.
func TestServerOutlivesStartingThread(t *testing.T) {
	var (
		srv *pgtest.Server
		err error
	)
	childproc.OnEndingThread(func() { srv, err = pgtest.Start(context.Background(), pgtest.Options{}) })
	if err != nil {
		pgtest.Unavailable(t, err)
	}
	defer srv.Stop()
	if _, err := srv.CreateDB(t.Context()); err != nil {
		t.Fatalf("the server died with the thread that started it: %v", err)
	}
}
