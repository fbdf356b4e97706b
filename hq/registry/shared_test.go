package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// randomChanges returns n changes of up to size puts and deletes of
// entries and people among keys keys, deleting and creating keys again.
func randomChanges(seed uint64, n, size, keys int) []registry.Change {
	rng := mrand.New(mrand.NewPCG(seed, 7))
	live := map[int]bool{}
	out := make([]registry.Change, n)
	for i := range out {
		var ch registry.Change
		seen := map[int]bool{}
		for range rng.IntN(size) + 1 {
			k := rng.IntN(keys) + 1
			if seen[k] {
				continue
			}
			seen[k] = true
			var it policy.Item = policy.Entry{Credential: cert(uint64(k)), Person: fmt.Sprintf("p-%d-%d", k, i)}
			if k%5 == 0 {
				it = policy.Person{ID: fmt.Sprintf("p-%05d", k), Groups: []string{fmt.Sprintf("g%d", i%3)}}
			}
			if live[k] && rng.IntN(4) == 0 {
				ch.Delete = append(ch.Delete, it)
				delete(live, k)
				continue
			}
			ch.Put = append(ch.Put, it)
			live[k] = true
		}
		out[i] = ch
	}
	return out
}

// fullBytes returns the site's full snapshot stream.
func fullBytes(t *testing.T, r *registry.Registry, site string) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := r.WriteFull(context.Background(), site, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBackendsWriteTheSameStreams applies the same changes (more records
// than a PostgreSQL page) to both backends: every full snapshot and every
// delta is the same, byte for byte.
func TestBackendsWriteTheSameStreams(t *testing.T) {
	ctx := context.Background()
	const keys, size = 9000, 4500 // the live records of a site span several pages
	bolt, pg := openRegistry(t), openPGRegistry(t)
	var revs []uint64
	for i, ch := range randomChanges(3, 8, size, keys) {
		a1, err1 := bolt.Apply(ctx, "s", ch)
		a2, err2 := pg.Apply(ctx, "s", ch)
		if err1 != nil || err2 != nil || a1 != a2 {
			t.Fatalf("change %d: bbolt %+v, %v; postgres %+v, %v", i, a1, err1, a2, err2)
		}
		revs = append(revs, a1.Rev)
		if !bytes.Equal(fullBytes(t, bolt, "s"), fullBytes(t, pg, "s")) {
			t.Fatalf("full snapshots at revision %d differ", a1.Rev)
		}
	}
	for _, from := range revs[:len(revs)-1] {
		var d1, d2 bytes.Buffer
		p1, err1 := bolt.WriteDelta(ctx, "s", from, &d1)
		p2, err2 := pg.WriteDelta(ctx, "s", from, &d2)
		if err1 != nil || err2 != nil || p1 != p2 || !bytes.Equal(d1.Bytes(), d2.Bytes()) {
			t.Errorf("delta from %d: bbolt %+v, %v; postgres %+v, %v; same bytes %v", from, p1, err1, p2, err2, bytes.Equal(d1.Bytes(), d2.Bytes()))
		}
	}
}

// TestReplicasShareASite has two registries (two connection pools, as two
// replicas) on one database apply changes to one site at once: the
// revisions are 1..N with none repeated or skipped, and a delta from each
// revision to the end reproduces the full snapshot.
func TestReplicasShareASite(t *testing.T) {
	ctx := context.Background()
	url := pgDB(t)
	regs := []*registry.Registry{openPGAt(t, url), openPGAt(t, url)}
	const perReplica = 15
	changes := randomChanges(9, 2*perReplica, 50, 400)
	var mu sync.Mutex
	var revs []uint64
	fulls := map[uint64][]byte{}
	var wg sync.WaitGroup
	for i, r := range regs {
		wg.Go(func() {
			for j := range perReplica {
				ch := changes[2*j+i]
				// Every change puts a record of its own: each changes something.
				ch.Put = append(ch.Put, policy.Person{ID: fmt.Sprintf("own-%d-%d", i, j)})
				a, err := r.Apply(ctx, "s", ch)
				if err != nil {
					t.Error(err)
					return
				}
				var b bytes.Buffer
				pub, err := r.WriteFull(ctx, "s", &b)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				revs = append(revs, a.Rev)
				fulls[pub.Version] = b.Bytes()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for i, rev := range revs {
		if rev != uint64(i+1) {
			t.Fatalf("revisions %v: want 1..%d, each once", revs, len(revs))
		}
	}
	final, rev, err := regs[0].ContentHash(ctx, "s")
	if err != nil || rev != uint64(len(revs)) {
		t.Fatalf("ContentHash = revision %d, %v; want %d", rev, err, len(revs))
	}
	for from, full := range fulls {
		if from == rev {
			continue
		}
		s := openStore(t)
		if err := s.ApplyFullStream(ctx, from, bytes.NewReader(full)); err != nil {
			t.Fatal(err)
		}
		var d bytes.Buffer
		pub, err := regs[1].WriteDelta(ctx, "s", from, &d)
		if err != nil {
			t.Fatalf("delta from %d: %v", from, err)
		}
		if err := s.ApplyDeltaStream(ctx, from, pub.Version, &d); err != nil {
			t.Fatalf("apply delta %d->%d: %v", from, pub.Version, err)
		}
		if h, _ := s.ContentHash(); h != final {
			t.Errorf("after delta %d->%d the hash is %x, the full snapshot's %x", from, rev, h, final)
		}
	}
}

// TestReplicasAddPendingOnce has two registries on one database store the
// same enrollments at once: each is stored once, and both get its ID.
func TestReplicasAddPendingOnce(t *testing.T) {
	url := pgDB(t)
	regs := []*registry.Registry{openPGAt(t, url), openPGAt(t, url)}
	const n = 50
	ids := [2][n]string{}
	var wg sync.WaitGroup
	for i, r := range regs {
		wg.Go(func() {
			for seq := range n {
				p := registry.Pending{Site: "v", Device: "d1", Seq: uint64(seq), Received: time.Now().UTC(), Record: []byte(`{}`)}
				id, err := r.AddPending(p)
				if err != nil {
					t.Error(err)
					return
				}
				ids[i][seq] = id
			}
		})
	}
	wg.Wait()
	if ids[0] != ids[1] {
		t.Errorf("the replicas got different IDs for the same enrollments:\n%v\n%v", ids[0], ids[1])
	}
	list, err := regs[0].PendingList()
	if err != nil || len(list) != n {
		t.Errorf("PendingList = %d, %v; want %d", len(list), err, n)
	}
}

func TestList(t *testing.T) { eachBackend(t, testList) }

func testList(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	var ch registry.Change
	for i := range 25 {
		ch.Put = append(ch.Put, policy.Person{ID: fmt.Sprintf("p-%02d", i)}, policy.Entry{Credential: cert(uint64(i + 1)), Person: "x"})
	}
	if _, err := r.Apply(ctx, "s", ch); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, "s", registry.Change{Delete: []policy.Item{policy.Person{ID: "p-04"}}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	after, pages := "", 0
	for {
		items, next, err := r.List(ctx, "s", policy.KindPerson, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range items {
			got = append(got, it.(policy.Person).ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(got) != 24 || got[0] != "p-00" || got[4] != "p-05" || got[23] != "p-24" || pages != 3 {
		t.Errorf("listed %d people in %d pages: %v; want p-00..p-24 but p-04, in 3 pages", len(got), pages, got)
	}
	if items, next, err := r.List(ctx, "nosite", policy.KindDoor, "", 10); err != nil || len(items) != 0 || next != "" {
		t.Errorf("List of an unknown site = %v, %q, %v; want nothing", items, next, err)
	}
	for _, bad := range []string{"zz", "44"} { // not hex; a door's key
		if _, _, err := r.List(ctx, "s", policy.KindPerson, bad, 10); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("List after %q: %v, want ErrInvalid", bad, err)
		}
	}
}

// TestCopyIntoPostgres copies a bbolt registry into PostgreSQL: the full
// snapshot and every delta are the same byte for byte, a second copy
// copies nothing, and both go on to the same next revision.
func TestCopyIntoPostgres(t *testing.T) {
	ctx := context.Background()
	src, dst := openRegistry(t), openPGRegistry(t)
	var revs []uint64
	for _, ch := range randomChanges(5, 6, 300, 500) {
		a, err := src.Apply(ctx, "s", ch)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, a.Rev)
	}
	if _, err := src.Apply(ctx, "t", registry.Change{Put: []policy.Item{policy.Door{ID: "gate"}}}); err != nil {
		t.Fatal(err)
	}
	fullBytes(t, src, "s") // caches the content hash
	if _, err := src.AddPending(registry.Pending{Site: "s", Device: "d", Seq: 1, Received: time.Now().UTC(), Record: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := src.SetNames("s", map[string]string{"p-1": "Hanako"}); err != nil {
		t.Fatal(err)
	}
	n, err := registry.Copy(ctx, dst, src)
	if err != nil || n.Sites != 2 || n.Skipped != 0 || n.Records == 0 || n.Pending != 1 || n.Names != 1 {
		t.Fatalf("Copy = %+v, %v; want 2 sites, 1 pending, 1 name", n, err)
	}
	if !bytes.Equal(fullBytes(t, src, "s"), fullBytes(t, dst, "s")) || !bytes.Equal(fullBytes(t, src, "t"), fullBytes(t, dst, "t")) {
		t.Error("the copied full snapshots differ")
	}
	for _, from := range revs[:len(revs)-1] {
		var d1, d2 bytes.Buffer
		_, err1 := src.WriteDelta(ctx, "s", from, &d1)
		_, err2 := dst.WriteDelta(ctx, "s", from, &d2)
		if err1 != nil || err2 != nil || !bytes.Equal(d1.Bytes(), d2.Bytes()) {
			t.Errorf("delta from %d: %v, %v; same bytes %v", from, err1, err2, bytes.Equal(d1.Bytes(), d2.Bytes()))
		}
	}
	if again, err := registry.Copy(ctx, dst, src); err != nil || again != (registry.Copied{Skipped: 2}) {
		t.Errorf("Copy again = %+v, %v; want 2 sites skipped and nothing copied", again, err)
	}
	if list, err := dst.PendingList(); err != nil || len(list) != 1 || string(list[0].Record) != `{"a":1}` {
		t.Errorf("copied pending = %+v, %v", list, err)
	}
	ch := registry.Change{Put: []policy.Item{policy.Person{ID: "after"}}}
	a1, _ := src.Apply(ctx, "s", ch)
	a2, err := dst.Apply(ctx, "s", ch)
	if err != nil || a1 != a2 || !bytes.Equal(fullBytes(t, src, "s"), fullBytes(t, dst, "s")) {
		t.Errorf("after the copy: bbolt %+v, postgres %+v, %v; want the same revision and snapshot", a1, a2, err)
	}
}
