package proto_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
)

// A status carries the device's latest results: at most
// MaxStatusResults, each of the status's device, with a known status.
func TestDecodeStatusResults(t *testing.T) {
	done := proto.Result{ID: "c1", Kind: proto.KindCommand, Site: "s1", Device: "d1", Status: proto.ResultDone}
	many := make([]proto.Result, proto.MaxStatusResults+1)
	for i := range many {
		many[i] = done
	}
	other, unknown := done, done
	other.Device, unknown.Status = "d2", "maybe"
	tests := []struct {
		name    string
		results []proto.Result
		ok      bool
	}{
		{"none", nil, true},
		{"one", []proto.Result{done}, true},
		{"at the bound", many[1:], true},
		{"beyond the bound", many, false},
		{"another device's", []proto.Result{done, other}, false},
		{"unknown status", []proto.Result{unknown}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(proto.Status{Online: true, Site: "s1", Device: "d1", Results: tt.results})
			if err != nil {
				t.Fatal(err)
			}
			_, _, st, err := proto.DecodeStatus(proto.StatusTopic("s1", "d1"), b)
			if (err == nil) != tt.ok {
				t.Fatalf("DecodeStatus = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, proto.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if err == nil && len(st.Results) != len(tt.results) {
				t.Fatalf("decoded %d results, want %d", len(st.Results), len(tt.results))
			}
		})
	}
}
