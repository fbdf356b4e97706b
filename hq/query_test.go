package hq_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/sync/proto"
	"github.com/tobira-ac/tobira/sync/proto/prototest"
)

func TestHQQuery(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := openHQ(t, b, b.newStore(t), nil)
		for _, dev := range []string{"d1", "d2"} {
			evs := make([]proto.Event, 0, 6)
			for i := 1; i <= 6; i++ {
				ev := prototest.Event(i)
				ev.Seq = uint64(i)
				if i%2 == 0 {
					ev.Door = "back-door"
				}
				evs = append(evs, ev)
			}
			b, _ := json.Marshal(proto.Batch{Site: "s1", Device: dev, Events: evs})
			if _, err := h.Ingest(proto.EventsTopic("s1", dev), b); err != nil {
				t.Fatal(err)
			}
		}
		yes, no := true, false
		tests := []struct {
			name string
			q    hq.EventQuery
			want string
		}{
			{"everything", hq.EventQuery{}, "d1/1 d1/2 d1/3 d1/4 d1/5 d1/6 d2/1 d2/2 d2/3 d2/4 d2/5 d2/6"},
			{"one device", hq.EventQuery{Site: "s1", Device: "d2"}, "d2/1 d2/2 d2/3 d2/4 d2/5 d2/6"},
			{"other site", hq.EventQuery{Site: "s9"}, ""},
			{"time range", hq.EventQuery{Device: "d1", From: prototest.Base.Add(2e9), To: prototest.Base.Add(4e9)}, "d1/2 d1/3"},
			{"door", hq.EventQuery{Device: "d1", Door: "back-door"}, "d1/2 d1/4 d1/6"},
			{"person", hq.EventQuery{Credential: strings.ToUpper(prototest.Event(5).Credential)}, "d1/5 d2/5"},
			{"a person's credentials", hq.EventQuery{Credentials: []string{prototest.Event(2).Credential, strings.ToUpper(prototest.Event(5).Credential)}}, "d1/2 d1/5 d2/2 d2/5"},
			{"no credentials", hq.EventQuery{Credentials: []string{}}, ""},
			{"denied", hq.EventQuery{Device: "d1", Granted: &no}, "d1/3 d1/6"},
			{"granted, limited", hq.EventQuery{Granted: &yes, Limit: 3}, "d1/1 d1/2 d1/4"},
			{"reason", hq.EventQuery{Reason: "revoked"}, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var got []string
				err := h.Query(tt.q, func(ev hq.StoredEvent) error {
					got = append(got, fmt.Sprintf("%s/%d", ev.Device, ev.Seq))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if s := strings.Join(got, " "); s != tt.want {
					t.Fatalf("Query = %q, want %q", s, tt.want)
				}
			})
		}
	})
}
