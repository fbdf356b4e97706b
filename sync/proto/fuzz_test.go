package proto

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzDecodeChunk(f *testing.F) {
	c, _ := EncodeChunk(strings.Repeat("ab", 16), 3, []byte("data"))
	f.Add(c)
	f.Add([]byte("TBC1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, i, data, err := DecodeChunk(b)
		if err != nil {
			return
		}
		again, err := EncodeChunk(id, i, data)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("DecodeChunk/EncodeChunk do not round-trip: %v", err)
		}
	})
}

func FuzzDecodeNeedAndStatus(f *testing.F) {
	f.Add([]byte(`{"transfer":"00","missing":[[0,3]]}`))
	f.Add([]byte(`{"online":true,"site":"s1","device":"d1","outbox_depth":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, n, err := DecodeNeed(NeedTopic("s1", "d1"), b); err == nil {
			for _, r := range n.Missing {
				if r[0] < 0 || r[1] < r[0] {
					t.Fatalf("DecodeNeed accepted range %v", r)
				}
			}
		}
		if site, device, st, err := DecodeStatus(StatusTopic("s1", "d1"), b); err == nil &&
			(site != "s1" || device != "d1" || st.Site != "s1" || st.Device != "d1") {
			t.Fatalf("DecodeStatus returned %s/%s %+v for s1/d1", site, device, st)
		}
		if r, err := DecodeResult(ResultTopic("s1", "d1"), b); err == nil && (r.Site != "s1" || r.Device != "d1") {
			t.Fatalf("DecodeResult accepted a result of %s/%s", r.Site, r.Device)
		}
	})
}
