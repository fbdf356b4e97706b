package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq/console/alarm"
	"github.com/tobira-ac/tobira/sync/proto"
)

// TestAlarms raises a forced-open alarm from a published event and walks
// the acknowledgement through the roles and the states: auditor and
// clerk are refused by the server, a comment is required, an alarm is
// acknowledged once, the closed door clears it, and both the alarm and
// the acknowledgement with its comment are in the audit log.
func TestAlarms(t *testing.T) {
	e := newEnv(t)
	ev := proto.Event{Seq: 61, Time: time.Now(), Type: proto.TypeDoor, Door: "main", Reason: "forced_open", Detail: "cause=forced"}
	e.con.Publish("osaka", "gate-1", ev)
	id := alarm.ID("osaka", "gate-1", "main", alarm.ForcedOpen)
	ack := "/alarms/" + id + "/ack"

	admin, op := e.login("admin"), e.login("operator")
	if res, body := e.get(admin, "/alarms"); res.StatusCode != http.StatusOK || !strings.Contains(body, "Door forced open") ||
		!strings.Contains(body, "/alarms/"+id) {
		t.Fatalf("alarm list: %d %s", res.StatusCode, body)
	}
	tests := []struct {
		name    string
		client  *http.Client
		path    string
		comment string
		want    int
	}{
		{"auditor cannot acknowledge", e.login("auditor"), ack, "seen", http.StatusForbidden},
		{"clerk cannot acknowledge", e.login("clerk"), ack, "seen", http.StatusForbidden},
		{"site not granted", e.login("tokyo-op"), ack, "seen", http.StatusForbidden},
		{"comment required", op, ack, "  ", http.StatusUnprocessableEntity},
		{"unknown alarm", op, "/alarms/ffff/ack", "seen", http.StatusNotFound},
		{"operator acknowledges", op, ack, "guard sent to the door", http.StatusSeeOther},
		{"only once", admin, ack, "again", http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res, body := e.post(tt.client, tt.path, url.Values{"comment": {tt.comment}}); res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.want, body)
			}
		})
	}
	a, err := e.con.cfg.Alarms.Get(id)
	if err != nil || a.State != alarm.Acknowledged || a.AckBy != "operator" || a.AckComment != "guard sent to the door" {
		t.Fatalf("after ack: %+v %v", a, err)
	}
	ev.Seq, ev.Reason = 62, "forced_cleared"
	e.con.Publish("osaka", "gate-1", ev)
	if _, body := e.get(admin, "/alarms/"+id); !strings.Contains(body, "cleared") || !strings.Contains(body, "guard sent to the door") {
		t.Errorf("cleared alarm page: %s", body)
	}
	acts := strings.Join(e.actions(), " ")
	for _, want := range []string{"hq:alarm", "operator:alarm_ack", "auditor:denied", "clerk:denied", "tokyo-op:denied"} {
		if !strings.Contains(acts, want) {
			t.Errorf("audit log lacks %s: %s", want, acts)
		}
	}
	if _, body := e.get(admin, "/audit"); !strings.Contains(body, "guard sent to the door") ||
		!strings.Contains(body, "alarm raised") || !strings.Contains(body, "alarm acknowledged") || strings.Contains(body, "!audit.") {
		t.Errorf("audit page lacks the alarm, its acknowledgement or its comment: %s", body)
	}
}

// TestOfflineAlarm checks that the alarm page raises an offline alarm
// for a device the fleet reports offline, in both languages.
func TestOfflineAlarm(t *testing.T) {
	e := newEnv(t)
	e.hq.devs[0].Online = false
	admin := e.login("admin")
	if _, body := e.get(admin, "/alarms"); !strings.Contains(body, "Device offline") {
		t.Errorf("no offline alarm: %s", body)
	}
	if _, body := e.get(admin, "/alarms", "Accept-Language", "ja"); !strings.Contains(body, "端末オフライン") {
		t.Errorf("no offline alarm in Japanese: %s", body)
	}
}
