package hq_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

// ingestPageEvents stores events first..last of each of the devices
// (site/device): event i at prototest.Base + i s, so devices tie on time;
// every fourth at the back door, every fifth denied as revoked.
func ingestPageEvents(t *testing.T, h *hq.Service, devices []string, first, last int) {
	t.Helper()
	for _, sd := range devices {
		site, dev, _ := strings.Cut(sd, "/")
		var evs []proto.Event
		for i := first; i <= last; i++ {
			ev := prototest.Event(i)
			ev.Seq = uint64(i)
			if i%4 == 0 {
				ev.Door = "back-door"
			}
			if i%5 == 0 {
				ev.Granted, ev.Reason = false, "revoked"
			}
			evs = append(evs, ev)
		}
		b, err := json.Marshal(proto.Batch{Site: site, Device: dev, Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Ingest(proto.EventsTopic(site, dev), b); err != nil {
			t.Fatal(err)
		}
	}
}

// label names a stored event in test output.
func label(ev hq.StoredEvent) string { return fmt.Sprintf("%s/%s/%d", ev.Site, ev.Device, ev.Seq) }

// newestFirst returns what q selects, by Query, in QueryPage's order.
func newestFirst(t *testing.T, h *hq.Service, q hq.EventQuery) []string {
	t.Helper()
	var evs []hq.StoredEvent
	if err := h.Query(q, func(ev hq.StoredEvent) error { evs = append(evs, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(evs, func(a, b hq.StoredEvent) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		if c := strings.Compare(b.Site, a.Site); c != 0 {
			return c
		}
		if c := strings.Compare(b.Device, a.Device); c != 0 {
			return c
		}
		return int(b.Seq) - int(a.Seq)
	})
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = label(ev)
	}
	return out
}

// allPages pages through q, limit at a time, calling between (when not
// nil) after each page.
func allPages(t *testing.T, h *hq.Service, q hq.EventQuery, limit int, between func()) []string {
	t.Helper()
	var got []string
	var after hq.Cursor
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("paging does not end")
		}
		p, err := h.QueryPage(t.Context(), q, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) > limit || p.More && len(p.Events) != limit {
			t.Fatalf("page %d: %d events, more %v (limit %d)", n, len(p.Events), p.More, limit)
		}
		for _, ev := range p.Events {
			got = append(got, label(ev))
		}
		if !p.More {
			return got
		}
		// The cursor survives a URL.
		if after, err = hq.ParseCursor(p.Next.String()); err != nil || after.String() != p.Next.String() {
			t.Fatalf("cursor %v: parsed back as %v, %v", p.Next, after, err)
		}
		if between != nil {
			between()
		}
	}
}

func TestQueryPage(t *testing.T) {
	devices := []string{"s1/d1", "s1/d2", "s1/d10", "s2/d1", "s2/x"}
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		ingestPageEvents(t, h, devices, 1, 12)
		yes, no := true, false
		cred := prototest.Event(7).Credential
		tests := []struct {
			name string
			q    hq.EventQuery
			n    int // events selected
		}{
			{"everything", hq.EventQuery{}, 60},
			{"site", hq.EventQuery{Site: "s1"}, 36},
			{"device", hq.EventQuery{Device: "d1"}, 24},
			{"site and device", hq.EventQuery{Site: "s2", Device: "d1"}, 12},
			{"granted sites", hq.EventQuery{Sites: []string{"s2"}}, 24},
			{"no granted site", hq.EventQuery{Sites: []string{}}, 0},
			{"door", hq.EventQuery{Door: "back-door"}, 15},
			{"door at a site", hq.EventQuery{Site: "s1", Door: "back-door"}, 9},
			{"credential", hq.EventQuery{Credential: strings.ToUpper(cred)}, 5},
			{"credentials", hq.EventQuery{Credentials: []string{strings.ToUpper(cred), prototest.Event(3).Credential, cred}}, 10},
			{"credentials at a site", hq.EventQuery{Site: "s1", Credentials: []string{cred, prototest.Event(12).Credential}}, 6},
			{"credentials and a time range", hq.EventQuery{Credentials: []string{prototest.Event(2).Credential, cred, prototest.Event(11).Credential},
				From: prototest.Base.Add(3 * time.Second), To: prototest.Base.Add(9 * time.Second)}, 5},
			{"no credentials", hq.EventQuery{Credentials: []string{}}, 0},
			{"unknown credential", hq.EventQuery{Credentials: []string{"00"}}, 0},
			{"reason", hq.EventQuery{Reason: "revoked"}, 10},
			{"denied", hq.EventQuery{Granted: &no}, 30},
			{"granted", hq.EventQuery{Site: "s1", Granted: &yes}, 18},
			{"type", hq.EventQuery{Type: proto.TypeDoor}, 0},
			{"time range", hq.EventQuery{From: prototest.Base.Add(3 * time.Second), To: prototest.Base.Add(9 * time.Second)}, 30},
			{"time range and door", hq.EventQuery{Door: "back-door", From: prototest.Base.Add(4 * time.Second), To: prototest.Base.Add(8 * time.Second)}, 5},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				want := newestFirst(t, h, tt.q)
				if len(want) != tt.n {
					t.Fatalf("Query selects %d events, the test expects %d", len(want), tt.n)
				}
				for _, limit := range []int{1, 4, 7, 100} {
					if got := allPages(t, h, tt.q, limit, nil); !slices.Equal(got, want) {
						t.Fatalf("limit %d: pages\n%v\nwant\n%v", limit, got, want)
					}
				}
			})
		}
	})
}

func TestQueryPageFirstPage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		ingestPageEvents(t, h, []string{"s1/d1", "s1/d2"}, 1, 3)
		p, err := h.QueryPage(t.Context(), hq.EventQuery{}, hq.Cursor{}, 4)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range p.Events {
			got = append(got, label(ev))
		}
		want := "s1/d2/3 s1/d1/3 s1/d2/2 s1/d1/2"
		if s := strings.Join(got, " "); s != want || !p.More || p.Next != hq.CursorOf(p.Events[3]) {
			t.Fatalf("first page %q more %v next %v, want %q, more, next at the last", s, p.More, p.Next, want)
		}
	})
}

// TestQueryPageConcurrentIngest stores events between pages: newer ones
// do not appear in later pages, older ones do, and no event is shown
// twice or skipped.
func TestQueryPageConcurrentIngest(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		ingestPageEvents(t, h, []string{"s1/d1", "s1/d2"}, 20, 40)
		before := newestFirst(t, h, hq.EventQuery{})
		round := 0
		got := allPages(t, h, hq.EventQuery{}, 6, func() {
			round++
			switch round {
			case 1: // newer than every page: not shown
				ingestPageEvents(t, h, []string{"s1/d3"}, 41, 45)
			case 2: // older than the cursor: shown at its place
				ingestPageEvents(t, h, []string{"s1/d4"}, 1, 3)
			}
		})
		want := append(before, "s1/d4/3", "s1/d4/2", "s1/d4/1")
		if !slices.Equal(got, want) {
			t.Fatalf("pages\n%v\nwant\n%v", got, want)
		}
	})
}

// TestBoltIndexBuiltOnOpen opens a store file made before the event
// indexes: the indexes are built, and pages find every event.
func TestBoltIndexBuiltOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hq.db")
	b := backends[0]
	h := openHQ(t, b, path, nil)
	ingestPageEvents(t, h, []string{"s1/d1", "s2/d1"}, 1, 10)
	want := newestFirst(t, h, hq.EventQuery{Door: "back-door"})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("evindex")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("evindex"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	h = openHQ(t, b, path, nil)
	if got := allPages(t, h, hq.EventQuery{Door: "back-door"}, 2, nil); len(want) != 4 || !slices.Equal(got, want) {
		t.Fatalf("pages after the index build\n%v\nwant\n%v", got, want)
	}
}

func TestParseCursor(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 0, 0, 123, time.UTC)
	tests := []struct {
		in      string
		want    hq.Cursor
		wantErr bool
	}{
		{"", hq.Cursor{}, false},
		{fmt.Sprint(at.UnixNano()) + "/s1/d-1.a/42", hq.Cursor{Time: at, Site: "s1", Device: "d-1.a", Seq: 42}, false},
		{"-5/s/d/1", hq.Cursor{Time: time.Unix(0, -5).UTC(), Site: "s", Device: "d", Seq: 1}, false},
		{"1/s/d", hq.Cursor{}, true},
		{"x/s/d/1", hq.Cursor{}, true},
		{"1/s/d/-1", hq.Cursor{}, true},
		{"1//d/1", hq.Cursor{}, true},
		{"1/s/d/1/2", hq.Cursor{}, true},
	}
	for _, tt := range tests {
		got, err := hq.ParseCursor(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseCursor(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseCursor(%q).String() = %q", tt.in, got.String())
		}
	}
}
