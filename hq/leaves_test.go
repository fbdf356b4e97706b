package hq_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Leaves lists every leaf HQ handles, each once, status for every
// replica, the rest shared; enrollments only with a sink for them.
func TestLeaves(t *testing.T) {
	shared := []proto.Leaf{proto.LeafEvents, proto.LeafMarks, proto.LeafMarksGet, proto.LeafNeed, proto.LeafResult, proto.LeafTicketCheck}
	tests := []struct {
		name       string
		sink       hq.EnrollmentSink
		wantShared []proto.Leaf
	}{
		{"no enrollments", nil, shared},
		{"enrollments", hq.EnrollmentSinkFunc(func(context.Context, proto.Enrollment) error { return nil }), append(slices.Clone(shared), proto.LeafEnroll)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := hq.Open(hq.Config{Path: filepath.Join(t.TempDir(), "hq.db"), Enrollments: tt.sink})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			l := h.Leaves()
			want := slices.Sorted(slices.Values(tt.wantShared))
			if !slices.Equal(l.Shared, want) {
				t.Errorf("Shared = %q, want %q", l.Shared, want)
			}
			if !slices.Equal(l.Every, []proto.Leaf{proto.LeafStatus}) {
				t.Errorf("Every = %q, want [status]", l.Every)
			}
		})
	}
}

// A shared group must be one topic level.
func TestOpenChecksSharedGroup(t *testing.T) {
	tests := []struct {
		group string
		ok    bool
	}{
		{"", true},
		{"tobira-hq", true},
		{"a/b", false},
		{"+", false},
		{"#", false},
	}
	for _, tt := range tests {
		h, err := hq.Open(hq.Config{Path: filepath.Join(t.TempDir(), "hq.db"), SharedGroup: tt.group})
		if (err == nil) != tt.ok {
			t.Errorf("Open with shared group %q: %v, want ok %v", tt.group, err, tt.ok)
		}
		if err == nil {
			h.Close()
		}
	}
}
