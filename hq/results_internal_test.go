package hq

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
)

// A result HQ missed (published while no HQ was subscribed) is stored
// from the next status that carries it; one HQ holds is not written again,
// and the fleet's status does not keep the results.
func TestStatusCatchesUpResults(t *testing.T) {
	h, err := Open(Config{Path: filepath.Join(t.TempDir(), "hq.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	held := proto.Result{ID: "c1", Kind: proto.KindCommand, Site: "s1", Device: "d1", Status: proto.ResultDone}
	missed := proto.Result{ID: "c2", Kind: proto.KindCommand, Site: "s1", Device: "d1", Status: proto.ResultFailed, Error: "relay stuck"}
	h.handleResult(t.Context(), nil, proto.ResultTopic("s1", "d1"), mustJSON(t, held))
	changed := held
	changed.Status = proto.ResultRefused // must not overwrite what HQ holds
	h.handleStatus(t.Context(), nil, proto.StatusTopic("s1", "d1"),
		mustJSON(t, proto.Status{Online: true, Site: "s1", Device: "d1", Results: []proto.Result{changed, missed}}))
	for _, want := range []proto.Result{held, missed} {
		got, ok, err := h.Result(want.ID)
		if err != nil || !ok || got.Status != want.Status || got.Error != want.Error {
			t.Errorf("Result(%s) = %+v, %v, %v; want %+v", want.ID, got, ok, err, want)
		}
	}
	devs, err := h.Fleet()
	if err != nil || len(devs) != 1 || !devs[0].Online || len(devs[0].Status.Results) != 0 {
		t.Fatalf("Fleet = %+v, %v: want s1/d1 online, without results in its status", devs, err)
	}
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
