package hq

import (
	"fmt"
	"testing"
)

func TestMergeRanges(t *testing.T) {
	tests := []struct {
		name    string
		missing [][2]int
		chunks  int
		want    string
	}{
		{"one", [][2]int{{0, 0}}, 1, "[[0 0]]"},
		{"clamped", [][2]int{{0, 1 << 20}}, 4, "[[0 3]]"},
		{"beyond the manifest", [][2]int{{4, 9}, {1, 1}}, 4, "[[1 1]]"},
		{"overlapping", [][2]int{{0, 5}, {2, 3}, {4, 8}}, 10, "[[0 8]]"},
		{"adjacent", [][2]int{{3, 4}, {0, 2}}, 10, "[[0 4]]"},
		{"disjoint, unsorted", [][2]int{{7, 7}, {0, 1}, {4, 5}}, 10, "[[0 1] [4 5] [7 7]]"},
		{"the same 256 times", repeat([2]int{0, 0}, 256), 1, "[[0 0]]"},
		{"nothing left", [][2]int{{5, 6}}, 3, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(mergeRanges(tt.missing, tt.chunks)); got != tt.want {
				t.Fatalf("mergeRanges(%v, %d) = %s, want %s", tt.missing, tt.chunks, got, tt.want)
			}
		})
	}
}

// repeat returns n copies of r.
func repeat(r [2]int, n int) [][2]int {
	out := make([][2]int, n)
	for i := range out {
		out[i] = r
	}
	return out
}
