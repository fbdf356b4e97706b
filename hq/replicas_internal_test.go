package hq

import (
	"maps"
	"slices"
	"testing"

	"github.com/tobira-ac/tobira/sync/proto"
)

func TestSubscriptions(t *testing.T) {
	l := Leaves{Shared: []proto.Leaf{proto.LeafEvents, proto.LeafMarks}, Every: []proto.Leaf{proto.LeafStatus}}
	tests := []struct {
		group string
		want  []string
	}{
		{"", []string{"tobira/v1/+/+/events", "tobira/v1/+/+/marks", "tobira/v1/+/+/status"}},
		{"tobira-hq", []string{"$share/tobira-hq/tobira/v1/+/+/events", "$share/tobira-hq/tobira/v1/+/+/marks", "tobira/v1/+/+/status"}},
	}
	for _, tt := range tests {
		got := subscriptions(l, tt.group)
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tt.want) {
			t.Errorf("group %q: filters %q, want %q", tt.group, keys, tt.want)
		}
		for f, qos := range got {
			if qos != 1 {
				t.Errorf("group %q: %s at QoS %d, want 1", tt.group, f, qos)
			}
		}
	}
}
