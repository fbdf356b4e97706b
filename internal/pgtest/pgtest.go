// Package pgtest starts a throw-away PostgreSQL server for tests: initdb
// into a temporary directory, the postmaster (postgres) on a free port of
// 127.0.0.1 with its socket in that directory, and a fresh database per
// test. One server is shared by the tests of a test binary (started on
// first use, stopped by Main).
//
// The postmaster runs as a child of the test binary, not daemonized by
// pg_ctl: in a process group of its own, with a parent-death signal
// (SIGKILL) started from an OS thread that lives as long as it, so that a
// test binary killed before its cleanups run (go test's -timeout, a
// SIGKILL, a cancelled CI job) leaves no server behind: the kernel kills
// the postmaster and its backends exit when they see it gone. Its dynamic
// shared memory is kept in the data directory (not /dev/shm). What such a
// death does leave is the cluster's temporary directory and PostgreSQL's
// 56-byte System V shared memory segment: the next Start of a throw-away
// cluster removes both (a test binary holds a lock on a file in each
// cluster directory it runs; a directory whose lock is free and whose
// postmaster is gone is a dead binary's). Stop shuts the server down
// (SIGQUIT, or SIGINT for a kept cluster) and SIGKILLs it after a bound.
//
// The binaries are looked up in $TOBIRA_PG_BIN, else
// /usr/lib/postgresql/15/bin. As root, the server runs as the postgres
// system user (the process's credentials are set at its fork, no runuser),
// since PostgreSQL refuses to run as root, and the directory is given to
// that user. Without PostgreSQL a test is skipped with the reason, or
// fails when $CI is "true" (scripts/install-deps test installs it).
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tobira-ac/tobira/internal/testenv"
)

// DefaultBin is where Debian's postgresql-15 package puts the server
// binaries.
const DefaultBin = "/usr/lib/postgresql/15/bin"

// Options tune a Server.
type Options struct {
	// Durable keeps PostgreSQL's crash safety (fsync, synchronous commit,
	// full page writes): for benchmarks. Off, the server skips them, which
	// is what most tests want (they never crash the machine).
	Durable bool
	// Dir, when set, is where the cluster lives, kept across runs: Start
	// initialises it only when it holds none, and Stop leaves it (for
	// fixtures cached between benchmark runs). Empty: a new temporary
	// directory, removed by Stop.
	Dir string
}

// Server is a running PostgreSQL cluster in a temporary directory.
type Server struct {
	dir  string
	bin  string
	port int
	// cred runs the server's binaries as its owner (nil when that is us).
	cred *syscall.Credential
	// pm is the running server.
	pm *postmaster
	// keep leaves dir in place (Options.Dir).
	keep bool
	// owner is the locked ownerFile of a throw-away cluster.
	owner *os.File
	n     atomic.Int64
}

// Start initialises a cluster in a new temporary directory (or in
// Options.Dir, unless one is there) and starts it on a free port of
// 127.0.0.1; it returns once the server accepts connections. ctx bounds
// the start only, not the server's life: stop it with Stop.
func Start(ctx context.Context, opt Options) (*Server, error) {
	bin := os.Getenv("TOBIRA_PG_BIN")
	if bin == "" {
		bin = DefaultBin
	}
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		return nil, fmt.Errorf("PostgreSQL server binaries in %s: %w (scripts/install-deps test installs them)", bin, err)
	}
	dir, err := opt.Dir, error(nil)
	if dir == "" {
		sweep(os.TempDir())
		dir, err = os.MkdirTemp("", tempPattern)
	} else {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return nil, fmt.Errorf("make PostgreSQL test directory: %w", err)
	}
	s := &Server{dir: dir, bin: bin, keep: opt.Dir != ""}
	if !s.keep {
		if s.owner, err = lockOwner(dir); err != nil {
			s.remove()
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		if err := s.giveTo("postgres"); err != nil {
			s.remove()
			return nil, err
		}
	}
	if s.port, err = testenv.FreePort(); err != nil {
		s.remove()
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(s.data(), "PG_VERSION")); err != nil { // none kept
		if err := s.run(ctx, "initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
			s.remove()
			return nil, err
		}
	}
	if err := s.start(ctx, opt); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs the postmaster on s.port, a child of the test binary (see
// launch), its output appended to the file log, and waits until it
// accepts connections.
func (s *Server) start(ctx context.Context, opt Options) error {
	args := []string{"-D", s.data(), "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		// Dynamic shared memory as files in the data directory, not in
		// /dev/shm, where a SIGKILLed server would leave them for good.
		"-c", "dynamic_shared_memory_type=mmap"}
	if !opt.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logPath := filepath.Join(s.dir, "log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.remove()
		return fmt.Errorf("open PostgreSQL log: %w", err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	pm, err := launch(cmd, s.cred)
	if err != nil {
		s.remove()
		return fmt.Errorf("run postgres %s: %w", strings.Join(args, " "), err)
	}
	s.pm = pm
	if err := pm.waitReady(ctx, s.URL("postgres")); err != nil {
		_ = pm.stop(syscall.SIGQUIT)
		out, _ := os.ReadFile(logPath)
		s.remove()
		return fmt.Errorf("postgres %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// remove removes the cluster's directory unless it is kept, and then
// drops the owner lock.
func (s *Server) remove() error {
	if s.keep {
		return nil
	}
	err := os.RemoveAll(s.dir)
	if s.owner != nil {
		s.owner.Close()
	}
	return err
}

// giveTo makes the directory the named system user's, who will run the
// server.
func (s *Server) giveTo(name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("PostgreSQL cannot run as root and there is no %s user: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return fmt.Errorf("uid of %s: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return fmt.Errorf("gid of %s: %w", name, err)
	}
	if err := os.Chown(s.dir, int(uid), int(gid)); err != nil {
		return fmt.Errorf("give %s to %s: %w", s.dir, name, err)
	}
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

// data is the cluster's data directory.
func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// run runs a server binary (initdb) as the server's owner.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// URL returns the connection URL of database db as the superuser.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// CreateDB creates a new empty database and returns its URL.
func (s *Server) CreateDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to test PostgreSQL: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// Stop stops the server and removes its directory (unless it is
// Options.Dir). A throw-away cluster gets an immediate shutdown (SIGQUIT),
// a kept one a fast shutdown (SIGINT): a checkpoint first, so that the
// next Start needs no recovery. A server that does not stop within 30
// seconds is SIGKILLed.
func (s *Server) Stop() error {
	sig := syscall.SIGQUIT
	if s.keep {
		sig = syscall.SIGINT
	}
	err := s.pm.stop(sig)
	if rerr := s.remove(); err == nil {
		err = rerr
	}
	return err
}

// shared is the server of this test binary.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Main runs the tests of m and then stops the shared server if one was
// started: call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return code
}

// DB returns the URL of a new empty database on the shared server,
// starting it on first use. Without PostgreSQL it skips t, or fails it
// when $CI is "true".
func DB(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = Start(context.Background(), Options{}) })
	if shared.err != nil {
		Unavailable(t, shared.err)
	}
	url, err := shared.srv.CreateDB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// Unavailable skips t because PostgreSQL could not start (err), or fails
// it under CI=true, where a missing server is a broken set-up.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	testenv.Missing(t, "no PostgreSQL for this test: %v", err)
}
