package firmware

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
)

// rangeServer serves blob with Range support over TLS on loopback. When
// drop(i) is true for the i-th request, it sends half of the range and
// then kills the connection.
type rangeServer struct {
	blob []byte
	drop func(i int) bool

	mu     sync.Mutex
	starts []int64 // first byte asked for, per request
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	a, b, ok2 := strings.Cut(spec, "-")
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || !ok2 || err1 != nil || err2 != nil || start > end {
		http.Error(w, "range required", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	i := len(s.starts)
	s.starts = append(s.starts, start)
	s.mu.Unlock()
	if start >= int64(len(s.blob)) {
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	end = min(end, int64(len(s.blob))-1)
	body := s.blob[start : end+1]
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(s.blob)))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusPartialContent)
	if s.drop != nil && s.drop(i) {
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the server closes the connection mid-body
	}
	w.Write(body)
}

func (s *rangeServer) requests() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.starts...)
}

func randomBlob(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHTTPSDownloadResumes: connections dropped mid-body are resumed at the
// byte where they broke, and a partial download left by an earlier process
// is resumed, not restarted.
func TestHTTPSDownloadResumes(t *testing.T) {
	const chunk = 16 << 10
	blob := randomBlob(t, 5*chunk+1234)
	for _, tc := range []struct {
		name      string
		drop      func(i int) bool
		partial   int     // bytes already downloaded by an earlier process
		wantFirst []int64 // first request offsets
	}{
		{"every other request drops", func(i int) bool { return i%2 == 0 }, 0,
			[]int64{0, chunk / 2, chunk/2 + chunk, 2 * chunk, 3 * chunk}},
		{"earlier process left a partial file", nil, 3*chunk + 100,
			[]int64{3*chunk + 100, 4*chunk + 100, 5*chunk + 100}},
		{"partial file and drops", func(i int) bool { return i == 0 }, 1000,
			[]int64{1000, 1000 + chunk/2, 1000 + chunk/2 + chunk}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &rangeServer{blob: blob, drop: tc.drop}
			srv := httptest.NewTLSServer(rs)
			srv.Config.ErrorLog = nil
			t.Cleanup(srv.Close)
			root := t.TempDir()
			u := newUpdater(t, root)
			m := manifestForBytes("2.0.0", blob)
			if tc.partial > 0 {
				l := layout{root}
				if err := os.MkdirAll(l.path(downloadsDir), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(l.partial(m.SHA256), blob[:tc.partial], 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := u.Stage(context.Background(), m, HTTPFetcher{URL: srv.URL + "/tobira", Client: srv.Client()}); err != nil {
				t.Fatalf("Stage: %v", err)
			}
			got, err := os.ReadFile(layout{root}.binary("2.0.0"))
			if err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("staged binary: %d bytes, %v; want the %d served bytes", len(got), err, len(blob))
			}
			reqs := rs.requests()
			if len(reqs) < len(tc.wantFirst) || !slices.Equal(reqs[:len(tc.wantFirst)], tc.wantFirst) {
				t.Errorf("request offsets %v, want them to start with %v", reqs, tc.wantFirst)
			}
		})
	}
}

// TestDownloadGivesUpAndResumesLater: a source that stays down makes Stage
// fail after MaxStalls tries, keeping the bytes it got; the next Stage
// continues from there.
func TestDownloadGivesUpAndResumesLater(t *testing.T) {
	const chunk = 16 << 10
	blob := randomBlob(t, 4*chunk)
	var down atomic.Bool // while down, the server fails from the third chunk on
	down.Store(true)
	rs := &rangeServer{blob: blob}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && !strings.HasPrefix(r.Header.Get("Range"), "bytes=0-") && !strings.HasPrefix(r.Header.Get("Range"), fmt.Sprintf("bytes=%d-", chunk)) {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		rs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	root := t.TempDir()
	u := newUpdater(t, root)
	u.MaxStalls = 3
	m := manifestForBytes("2.0.0", blob)
	f := HTTPFetcher{URL: srv.URL, Client: srv.Client()}
	err := u.Stage(context.Background(), m, f)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Stage against a dead server: %v, want a 503 error", err)
	}
	fi, err := os.Stat(layout{root}.partial(m.SHA256))
	if err != nil || fi.Size() != 2*chunk {
		t.Fatalf("partial download: %v, %v; want %d bytes kept", fi, err, 2*chunk)
	}
	before := len(rs.requests())
	down.Store(false)
	if err := u.Stage(context.Background(), m, f); err != nil {
		t.Fatalf("second Stage: %v", err)
	}
	if reqs := rs.requests()[before:]; len(reqs) == 0 || reqs[0] != 2*chunk {
		t.Errorf("second Stage requested %v, want it to resume at %d", reqs, 2*chunk)
	}
}

// TestRateLimiter: the bucket lets a burst through and then makes callers
// wait for the debt at the configured rate (fake clock).
func TestRateLimiter(t *testing.T) {
	clk := clocktest.New(testNow)
	r := NewRateLimiter(clk, 1000, 1000)
	ctx := context.Background()
	if err := r.Wait(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n       int
		waitFor time.Duration
	}{{500, 500 * time.Millisecond}, {1000, time.Second}, {10, 10 * time.Millisecond}} {
		done := make(chan error, 1)
		go func() { done <- r.Wait(ctx, tc.n) }()
		for clk.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
		clk.Advance(tc.waitFor - time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Wait(%d) returned %v before %v", tc.n, err, tc.waitFor)
		default:
		}
		clk.Advance(time.Millisecond)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Idle time refills the bucket, but not beyond the burst.
	clk.Advance(time.Hour)
	if err := r.Wait(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if clk.Pending() != 0 {
		t.Fatal("a full bucket made the caller wait")
	}
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context: %v", err)
	}
}
