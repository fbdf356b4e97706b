package policy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/credential"
)

// Benchmark scale: TOBIRA_BENCH_SCALE=10m (or 1m, 100k, any count) sets how
// many credentials and revoked serials the store holds. The default keeps
// `go test -bench` quick; the 10m store is built once and cached under
// os.TempDir(), keyed by store format and scale.
const benchScaleEnv = "TOBIRA_BENCH_SCALE"

func benchScale(tb testing.TB) int {
	v := strings.ToLower(os.Getenv(benchScaleEnv))
	if v == "" {
		return 100_000
	}
	mult := 1
	switch {
	case strings.HasSuffix(v, "m"):
		mult, v = 1_000_000, strings.TrimSuffix(v, "m")
	case strings.HasSuffix(v, "k"):
		mult, v = 1_000, strings.TrimSuffix(v, "k")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a count like 100k or 10m", benchScaleEnv, os.Getenv(benchScaleEnv))
	}
	return n * mult
}

// benchCred returns the i-th certificate credential of the bench store:
// one issuer, 4-byte serials in key order (as HQ sends them).
func benchCred(i uint32) credential.Credential {
	return credential.Credential{
		Kind:        credential.KindCertSerial,
		IssuerKeyID: keyID(0xB0),
		Serial:      binary.BigEndian.AppendUint32(nil, i|0x1000_0000),
	}
}

// benchRevoked returns the i-th revoked serial (another serial range).
func benchRevoked(i uint32) Revocation {
	return Revocation{IssuerKeyID: keyID(0xB0), Serial: binary.BigEndian.AppendUint32(nil, i|0x8000_0000)}
}

// writeBenchSnapshot streams the bench snapshot: n credentials, n revoked
// serials, 1000 people in group "staff", one door "gate" open to staff on
// a schedule that is always active.
func writeBenchSnapshot(w io.Writer, n int, version uint64) error {
	enc, err := NewSnapshotEncoder(w, version)
	if err != nil {
		return err
	}
	items := []Item{
		Site{},
		Schedule{ID: "always", Windows: []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun", "holiday"}, Start: "00:00", End: "24:00"}}},
		Door{ID: "gate", Groups: []string{"gates"}},
		AccessLevel{ID: "staff-gates", Group: "staff", DoorGroup: "gates", Schedule: "always"},
	}
	for _, it := range items {
		if err := enc.Put(it); err != nil {
			return err
		}
	}
	for i := range 1000 {
		if err := enc.Put(Person{ID: "p" + strconv.Itoa(i), Groups: []string{"staff"}}); err != nil {
			return err
		}
	}
	for i := range uint32(n) {
		if err := enc.Put(Entry{Credential: benchCred(i), Person: "p" + strconv.Itoa(int(i%1000))}); err != nil {
			return err
		}
	}
	for i := range uint32(n) {
		if err := enc.Put(benchRevoked(i)); err != nil {
			return err
		}
	}
	_, err = enc.Close()
	return err
}

// applyChildEnv makes the test binary build a bench store (see
// TestBenchApplyChild).
const applyChildEnv = "TOBIRA_POLICY_BENCH_APPLY"

// TestBenchApplyChild is the child process of the apply benchmark: it
// applies the bench snapshot to a new store at $TOBIRA_POLICY_BENCH_APPLY,
// streaming it from a generator, and prints the time, peak RSS and file
// size. It does nothing in a normal test run.
func TestBenchApplyChild(t *testing.T) {
	path := os.Getenv(applyChildEnv)
	if path == "" {
		t.Skip("only run as the child of the apply benchmark")
	}
	n := benchScale(t)
	s, err := Open(path, discard)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBenchSnapshot(pw, n, 1)) }()
	start := time.Now()
	if err := s.ApplyFullStream(context.Background(), 1, pr); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT seconds=%f hwm_kb=%d bytes=%d\n", took.Seconds(), vmHWM(t), fi.Size())
}

// vmHWM reads this process's peak RSS in KiB.
func vmHWM(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// applyInChild builds a bench store at path in a child process and returns
// its figures.
func applyInChild(tb testing.TB, path string) (seconds float64, hwmKB, size int) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchApplyChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), applyChildEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("apply child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "RESULT ") {
			if _, err := fmt.Sscanf(line, "RESULT seconds=%f hwm_kb=%d bytes=%d", &seconds, &hwmKB, &size); err != nil {
				tb.Fatalf("apply child result %q: %v", line, err)
			}
			return
		}
	}
	tb.Fatalf("apply child printed no result:\n%s", out)
	return
}

// benchStorePath returns the cached bench store, building it when missing.
func benchStorePath(tb testing.TB) string {
	n := benchScale(tb)
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-policy-bench-f%d-n%d.db", formatVersion, n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".building"
	_ = os.Remove(tmp)
	secs, hwm, size := applyInChild(tb, tmp)
	tb.Logf("built bench store %s: %d credentials + %d revoked in %.1fs, peak RSS %d MiB, %d MiB", path, n, n, secs, hwm/1024, size>>20)
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	_ = os.Remove(strings.TrimSuffix(tmp, ".db") + localSuffix)
	_ = os.Remove(tmp + localSuffix)
	return path
}

// copyFile copies the cached store so a benchmark may change it.
func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	src, err := os.Open(from)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkApplyFull applies the whole bench snapshot (TOBIRA_BENCH_SCALE
// credentials + revoked serials) in a child process and reports its time,
// peak RSS and file size. Run it with -benchtime=1x at large scales.
func BenchmarkApplyFull(b *testing.B) {
	dir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, fmt.Sprintf("apply-%d.db", i))
		secs, hwm, size := applyInChild(b, path)
		b.ReportMetric(secs, "apply-s")
		b.ReportMetric(float64(hwm)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(size)/(1<<20), "file-MiB")
		_ = os.Remove(path)
		_ = os.Remove(strings.TrimSuffix(path, ".db") + localSuffix)
	}
}

// BenchmarkDecide decides against the cached bench store, cycling through
// grants, revocations and misses. Every op also times a bare bbolt Get of
// the same key on the same file, in the same run, so the ratio holds on a
// busy machine; ns/op covers both. Metrics: decide p50/p99 and get p50/p99
// in ns, and their ratios.
func BenchmarkDecide(b *testing.B) {
	n := uint32(benchScale(b))
	src := benchStorePath(b)
	s, err := OpenWithOptions(src, Options{Log: discard, LocalPath: filepath.Join(b.TempDir(), "local.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	creds := make([]credential.Credential, 0, 3*4096)
	for i := range uint32(4096) {
		r := benchRevoked(i * 2654435761 % n)
		creds = append(creds, benchCred(i*2246822519%n), credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: r.IssuerKeyID, Serial: r.Serial},
			benchCred(n+i))
	}
	keys := make([][]byte, len(creds))
	for i, c := range creds {
		keys[i], _ = c.Key()
	}
	cases := []struct {
		name   string
		decide func(c credential.Credential) Decision
		want   []Reason
	}{
		{"Decide", s.Decide, []Reason{ReasonEnrolled, ReasonRevoked, ReasonNotEnrolled}},
		{"DecideAt-door", func(c credential.Credential) Decision {
			return s.DecideAt(Request{Credential: c, Door: "gate", Now: now})
		}, []Reason{ReasonEnrolled, ReasonRevoked, ReasonNotEnrolled}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			decide := make([]time.Duration, 0, b.N)
			get := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				c := creds[i%len(creds)]
				t0 := time.Now()
				d := tc.decide(c)
				t1 := time.Now()
				_ = s.db.View(func(tx *bolt.Tx) error {
					tx.Bucket(bucketAllow).Get(keys[i%len(keys)])
					return nil
				})
				t2 := time.Now()
				decide = append(decide, t1.Sub(t0))
				get = append(get, t2.Sub(t1))
				if d.Reason != tc.want[i%3] {
					b.Fatalf("%s(%s) = %+v, want %s", tc.name, c, d, tc.want[i%3])
				}
				i++
			}
			dp50, dp99 := percentiles(decide)
			gp50, gp99 := percentiles(get)
			b.ReportMetric(float64(dp50.Nanoseconds()), "decide-p50-ns")
			b.ReportMetric(float64(dp99.Nanoseconds()), "decide-p99-ns")
			b.ReportMetric(float64(gp50.Nanoseconds()), "get-p50-ns")
			b.ReportMetric(float64(gp99.Nanoseconds()), "get-p99-ns")
			b.ReportMetric(float64(dp50)/float64(max(gp50, 1)), "ratio-p50")
			b.ReportMetric(float64(dp99)/float64(max(gp99, 1)), "ratio-p99")
		})
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)*50/100], d[min(len(d)*99/100, len(d)-1)]
}

// BenchmarkDelta applies deltas of 10,000 changes (5,000 replaced entries,
// 2,500 new credentials, 2,500 deleted revocations) to a copy of the bench
// store.
func BenchmarkDelta(b *testing.B) {
	n := uint32(benchScale(b))
	path := filepath.Join(b.TempDir(), "policy.db")
	copyFile(b, benchStorePath(b), path)
	s, err := Open(path, discard)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	v := uint64(1)
	for b.Loop() {
		b.StopTimer()
		var buf bytes.Buffer
		enc, err := NewDeltaEncoder(&buf, v, v+1)
		if err != nil {
			b.Fatal(err)
		}
		base := uint32(v-1) * 10_000
		for i := range uint32(5_000) {
			if err := enc.Put(Entry{Credential: benchCred((base + i*7919) % n), Person: "renamed-" + strconv.Itoa(int(v))}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range uint32(2_500) {
			if err := enc.Put(Entry{Credential: benchCred(n + base + i), Person: "new"}); err != nil {
				b.Fatal(err)
			}
			if err := enc.Delete(benchDeletion(n, v, i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := enc.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.ApplyDeltaStream(context.Background(), v, v+1, &buf); err != nil {
			b.Fatal(err)
		}
		v++
	}
}

// benchDeletion is the i-th record deleted by BenchmarkDelta's delta from
// version v: first the store's revocations, one after the other; once they
// are all gone (a long run at a small scale), the credentials that earlier
// deltas added. Every deletion names a record that is there.
func benchDeletion(n uint32, v uint64, i uint32) Item {
	k := uint32(v-1)*2_500 + i
	if k < n {
		return benchRevoked(k)
	}
	k -= n
	w, j := k/2_500, k%2_500 // added by the delta from version w+1, as its j-th new credential
	return Entry{Credential: benchCred(n + w*10_000 + j), Person: "new"}
}

// BenchmarkImportCRL imports a CRL of TOBIRA_BENCH_SCALE serials (capped at
// 1M), signed by a test CA; the CRL is generated once and cached under
// os.TempDir().
func BenchmarkImportCRL(b *testing.B) {
	count := min(benchScale(b), 1_000_000)
	crlPath := filepath.Join(os.TempDir(), fmt.Sprintf("tobira-policy-bench-crl-%d.der", count))
	caPath := crlPath + ".ca.der"
	der, err1 := os.ReadFile(crlPath)
	caDER, err2 := os.ReadFile(caPath)
	if err1 != nil || err2 != nil {
		ca := newTestCA(b, 0xB0)
		entries := make([]x509.RevocationListEntry, count)
		for i := range entries {
			entries[i] = x509.RevocationListEntry{SerialNumber: big.NewInt(int64(i) | 0x4000_0000), RevocationTime: baseTime}
		}
		var err error
		der, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: baseTime,
			NextUpdate: baseTime.AddDate(1, 0, 0), RevokedCertificateEntries: entries}, ca.cert, ca.key)
		if err != nil {
			b.Fatal(err)
		}
		caDER = ca.cert.Raw
		if err := os.WriteFile(crlPath, der, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(caPath, caDER, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		s, _ := openStore(b)
		b.StartTimer()
		info, err := s.ImportCRL(context.Background(), der, ca, baseTime.Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if info.Serials != uint64(count) {
			b.Fatalf("imported %d serials, want %d", info.Serials, count)
		}
	}
	b.ReportMetric(float64(count), "serials")
}
