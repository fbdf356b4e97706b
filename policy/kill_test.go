package policy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

// killEnv makes the test binary act as the child of TestKillDuringApply.
const killEnv = "TOBIRA_POLICY_KILL_CHILD"

// killModel is the deterministic content of version v in the kill test:
// every version differs from the previous one in most records.
func killModel(v uint64, n int) model {
	m := model{}
	m.put(Site{RevocationsAt: baseTime.Add(time.Duration(v) * time.Hour)})
	for i := range n {
		serial := []byte{0x10, byte(v), byte(i >> 16), byte(i >> 8), byte(i)}
		c := credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: keyID(0xC0), Serial: serial}
		m.put(Entry{Credential: c, Person: "person-" + strconv.Itoa(i%1000)})
		if i%3 == 0 {
			m.put(Revocation{IssuerKeyID: keyID(0xC1), Serial: serial})
		}
	}
	return m
}

const killRecords = 30_000

// TestKillChild is the child: it applies version current+1 to the store in
// $TOBIRA_POLICY_KILL_CHILD and says "applying" first. It does nothing in a
// normal test run.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killEnv)
	if dir == "" {
		t.Skip("only run as the child of TestKillDuringApply")
	}
	s, err := Open(filepath.Join(dir, "policy.db"), discard)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Version()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := encodeFull(t, killModel(v+1, killRecords), v+1)
	fmt.Println("applying", v+1)
	if err := s.ApplyFullStream(context.Background(), v+1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	fmt.Println("applied", v+1)
	_ = s.Close()
}

// TestKillDuringApply re-executes the test binary as a child that applies
// a full snapshot, kills it with SIGKILL at random moments, and checks that
// the store then holds exactly the old or the new version.
func TestKillDuringApply(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes; skipped in -short")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.db")
	// Version 1 to start.
	s, err := Open(path, discard)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := encodeFull(t, killModel(1, killRecords), 1)
	if err := s.ApplyFullStream(context.Background(), 1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	hashes := map[uint64][32]byte{}
	hashOf := func(v uint64) [32]byte {
		if h, ok := hashes[v]; ok {
			return h
		}
		_, h := encodeFull(t, killModel(v, killRecords), v)
		hashes[v] = h
		return h
	}
	var took time.Duration
	run := func(kill time.Duration) (applied bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), killEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		started := false
		for lines.Scan() {
			if bytes.HasPrefix(lines.Bytes(), []byte("applying")) {
				started = true
				break
			}
		}
		if !started {
			_ = cmd.Wait()
			t.Fatal("child never started applying")
		}
		applyStart := time.Now()
		if kill >= 0 {
			time.Sleep(kill) // the kill moment is what varies, not a synchronisation
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
		rest, _ := io.ReadAll(out)
		err = cmd.Wait()
		took = time.Since(applyStart)
		return err == nil && bytes.Contains(rest, []byte("applied"))
	}
	// One uninterrupted run measures how long an apply takes.
	if !run(-1) {
		t.Fatal("uninterrupted child apply failed")
	}
	applyTook := took
	seed := uint64(time.Now().UnixNano())
	t.Logf("apply of %d credentials takes %s; kill seed %d", killRecords, applyTook, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	outcomes := map[string]int{}
	for i := range 20 {
		before := versionAt(t, path)
		kill := time.Duration(rng.Int64N(int64(applyTook + applyTook/4)))
		run(kill)
		s, err := Open(path, discard)
		if err != nil {
			t.Fatalf("kill %d (after %s): reopen: %v", i, kill, err)
		}
		v, err := s.Version()
		if err != nil {
			t.Fatal(err)
		}
		h := mustHash(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		switch v {
		case before:
			outcomes["old"]++
		case before + 1:
			outcomes["new"]++
		default:
			t.Fatalf("kill %d: version %d, want %d or %d", i, v, before, before+1)
		}
		if h != hashOf(v) {
			t.Fatalf("kill %d after %s: version %d has content hash %x, want %x: a mix", i, kill, v, h, hashOf(v))
		}
		if _, err := os.Stat(path + newSuffix); err == nil {
			t.Errorf("kill %d: %s survived a reopen", i, path+newSuffix)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["old"] == 0 {
		t.Errorf("no kill hit an apply in progress (%v): the test proves nothing", outcomes)
	}
}

func versionAt(t *testing.T, path string) uint64 {
	t.Helper()
	s, err := Open(path, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := s.Version()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
