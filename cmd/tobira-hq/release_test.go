package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/sync/proto"
)

// sampleReports are three devices' reports about release 1.2.0: one
// committed it after its offer, one rolled it back, one refused the offer.
func sampleReports(now time.Time) []proto.ReleaseReport {
	return []proto.ReleaseReport{
		{Site: "s1", Device: "door1", Time: now, Firmware: firmware.Status{Running: "1.2.0", Committed: "1.2.0"},
			Offer: &proto.OfferOutcome{ID: "o1", Version: "1.2.0", State: proto.OfferInstalled, Time: now}},
		{Site: "s1", Device: "door2", Time: now, Firmware: firmware.Status{Running: "1.1.0", Committed: "1.1.0",
			Last: &firmware.Result{Version: "1.2.0", Outcome: firmware.OutcomeRolledBack, Reason: firmware.ReasonManual, At: now}}},
		{Site: "s1", Device: "gate1", Time: now, Firmware: firmware.Status{Running: "1.1.0", Committed: "1.1.0"},
			Offer: &proto.OfferOutcome{ID: "o2", Version: "1.2.0", State: proto.OfferRefused, Reason: proto.OfferReasonSignature, Time: now}},
	}
}

// TestReleaseViews checks the tables of release devices and rollout.
func TestReleaseViews(t *testing.T) {
	reps := sampleReports(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	var out bytes.Buffer
	if err := writeReleaseDevices(&out, reps); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"s1/door1  1.2.0    1.2.0      -        -", "1.2.0 installed", "1.2.0 rolled_back manual",
		"1.2.0 refused signature", "2026-04-01T09:00:00Z"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("devices table lacks %q:\n%s", want, &out)
		}
	}
	out.Reset()
	if err := writeRollout(&out, "1.2.0", reps); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"release 1.2.0: 1 committed, 0 on trial, 1 rolled back, 1 not yet",
		"rolled back: s1/door2 (rolled_back manual)", "offer refused: s1/gate1 signature"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rollout lacks %q:\n%s", want, &out)
		}
	}
}

// TestReleaseDevicesOverMQTT runs release devices and rollout against
// retained release reports on the embedded broker, flags after the
// subcommand.
func TestReleaseDevicesOverMQTT(t *testing.T) {
	ctx, brk := startBroker(t)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brk.URL()).SetClientID("device-sim").SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	for _, r := range sampleReports(time.Now().UTC()) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish(proto.ReleaseReportTopic(r.Site, r.Device), 1, true, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish report: %v", tok.Error())
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"release", "devices", "--broker", brk.URL(), "--settle", "300ms"}, []string{"s1/door1", "1.2.0 installed", "s1/gate1"}},
		{[]string{"release", "rollout", "--version", "1.2.0", "--settle", "300ms", "--broker", brk.URL()},
			[]string{"release 1.2.0: 1 committed, 0 on trial, 1 rolled back, 1 not yet"}},
	} {
		var out, errOut bytes.Buffer
		if err := run(ctx, tc.args, &out, &errOut); err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, &errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, &out)
			}
		}
	}
}
