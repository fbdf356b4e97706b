package registry_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// TestParseRecordNamesTheField: a form's bad field is named, with the
// CSV import's message.
func TestParseRecordNamesTheField(t *testing.T) {
	kid := "00112233445566778899aabbccddeeff00112233"
	tests := []struct {
		table  string
		fields map[string]string
		want   string // the field named; "" = valid
	}{
		{"people", map[string]string{"person": "p-1", "groups": "staff; night"}, ""},
		{"people", map[string]string{"person": ""}, "person"},
		{"people", map[string]string{"person": "p-1", "valid_from": "yesterday"}, "valid_from"},
		{"people", map[string]string{"person": "p-1", "valid_from": "2026-05-01T00:00:00Z", "valid_until": "2026-04-01T00:00:00Z"}, "valid_until"},
		{"people", map[string]string{"person": "p\x1b1"}, "person"},
		{"credentials", map[string]string{"type": "cert", "issuer_key_id": kid, "serial": "0a", "person": "p-1"}, ""},
		{"credentials", map[string]string{"type": "cert", "issuer_key_id": "zz", "serial": "0a", "person": "p-1"}, "issuer_key_id"},
		{"credentials", map[string]string{"type": "cert", "issuer_key_id": kid, "serial": "", "person": "p-1"}, "serial"},
		{"credentials", map[string]string{"type": "cert", "issuer_key_id": kid, "serial": "0a"}, "person"},
		{"credentials", map[string]string{"type": "card", "person": "p-1"}, "type"},
		{"credentials", map[string]string{"type": "freearea", "person": "p-1"}, "free_area_id"},
		{"credentials", map[string]string{"type": "freearea", "free_area_id": "F1", "person": "p-1", "valid_until": "soon"}, "valid_until"},
		{"doors", map[string]string{"door": "main", "default_mode": "card_pin", "modes": "office=unlocked"}, ""},
		{"doors", map[string]string{"door": "main", "default_mode": "wide_open"}, "default_mode"},
		{"doors", map[string]string{"door": "main", "modes": "office"}, "modes"},
		{"doors", map[string]string{"door": "main", "modes": "office=ajar"}, "modes"},
		{"areas", map[string]string{"area": "hall", "passback": "timed", "reentry": "10m"}, ""},
		{"areas", map[string]string{"area": "hall", "passback": "timed"}, "reentry"},
		{"areas", map[string]string{"area": "hall", "passback": "strict"}, "passback"},
		{"levels", map[string]string{"level": "l1", "group": "staff", "door_group": "front"}, ""},
		{"levels", map[string]string{"level": "l1", "group": "staff"}, "door_group"},
		{"levels", map[string]string{"level": "l1", "door_group": "front"}, "group"},
		{"schedules", map[string]string{"schedule": "office", "windows": "mon;tue 09:00 18:00\nsat 10:00 12:00", "special": "2026-12-31\n2026-12-30 09:00 12:00"}, ""},
		{"schedules", map[string]string{"schedule": "office", "windows": "mon 09:00"}, "windows"},
		{"schedules", map[string]string{"schedule": "office", "windows": "someday 09:00 18:00"}, "windows"},
		{"schedules", map[string]string{"schedule": "office", "windows": "mon 09:00 25:00"}, "windows"},
		{"schedules", map[string]string{"schedule": "office", "special": "2026-13-01"}, "special"},
		{"schedules", map[string]string{"schedule": "", "windows": "mon 09:00 18:00"}, "schedule"},
		{"holidays", map[string]string{"date": "2026-01-01", "name": "New Year"}, ""},
		{"holidays", map[string]string{"date": "new year"}, "date"},
		{"events", map[string]string{"event": "live", "start": "2026-04-01T18:00:00+09:00", "end": "2026-04-01T21:00:00+09:00", "door_group": "gates", "reentry": "true"}, ""},
		{"events", map[string]string{"event": "live", "start": "2026-04-01T18:00:00+09:00", "end": "2026-04-01T17:00:00+09:00", "door_group": "gates"}, "end"},
		{"events", map[string]string{"event": "live", "start": "2026-04-01T18:00:00+09:00", "end": "2026-04-01T21:00:00+09:00", "door_group": "gates", "reentry": "maybe"}, "reentry"},
		{"site", map[string]string{"time_zone": "Asia/Tokyo", "max_revocation_age": "168h"}, ""},
		{"site", map[string]string{"time_zone": "Mars/Olympus"}, "time_zone"},
		{"site", map[string]string{"max_revocation_age": "a week"}, "max_revocation_age"},
		{"revocations", map[string]string{"issuer_key_id": kid, "serial": "0x0a"}, ""},
		{"links", map[string]string{"issuer_key_id": kid, "serial": "0b", "previous_issuer_key_id": kid, "previous_serial": "0b"}, "previous_serial"},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d %s %s", i, tt.table, tt.want), func(t *testing.T) {
			it, err := registry.ParseRecord(tt.table, tt.fields)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ParseRecord: %v", err)
				}
				// Round trip: the form of the record reads back as the record.
				table, fields := registry.RecordFields(it)
				back, err := registry.ParseRecord(table, fields)
				if err != nil || table != tt.table || !reflect.DeepEqual(back, it) {
					t.Errorf("round trip: %s %v: %#v, %v; want %#v", table, fields, back, err, it)
				}
				return
			}
			var le *registry.LineError
			if !errors.Is(err, registry.ErrInvalid) || !errors.As(err, &le) {
				t.Fatalf("ParseRecord = %v, want ErrInvalid with a LineError", err)
			}
			if le.Column != tt.want {
				t.Errorf("field %q (%v), want %q", le.Column, le.Err, tt.want)
			}
		})
	}
}

// TestListPagesAndKeys: List pages through one kind in key order, and
// ItemOfKey rebuilds the identity of every listed record from RecordKey.
func TestListPagesAndKeys(t *testing.T) {
	r := openRegistry(t)
	ctx := context.Background()
	var ch registry.Change
	for i := range 25 {
		ch.Put = append(ch.Put, policy.Entry{Credential: cert(uint64(i + 1)), Person: fmt.Sprintf("p-%02d", i)},
			policy.Person{ID: fmt.Sprintf("p-%02d", i)})
	}
	ch.Put = append(ch.Put, policy.Door{ID: "main"})
	if _, err := r.Apply(ctx, "tokyo", ch); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for after, pages := "", 0; ; pages++ {
		items, next, err := r.List(ctx, "tokyo", policy.KindCredential, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			e, ok := it.(policy.Entry)
			if !ok {
				t.Fatalf("listed %T", it)
			}
			key, err := registry.RecordKey(e)
			if err != nil {
				t.Fatal(err)
			}
			id, err := registry.ItemOfKey(key)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := r.Get("tokyo", id)
			if err != nil || !ok || !reflect.DeepEqual(got, it) {
				t.Errorf("Get(ItemOfKey(%s)) = %v, %v, %v", key, got, ok, err)
			}
			seen++
		}
		if next == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		after = next
	}
	if seen != 25 {
		t.Errorf("listed %d credentials, want 25", seen)
	}
	if items, next, err := r.List(ctx, "osaka", policy.KindDoor, "", 10); err != nil || len(items) != 0 || next != "" {
		t.Errorf("unknown site: %v %q %v", items, next, err)
	}
	if _, _, err := r.List(ctx, "tokyo", policy.KindDoor, "zz", 10); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("bad cursor: %v", err)
	}
}

// TestPersonNames reads the names of people by ID: absent ones are
// left out, another site's are not seen.
func TestPersonNames(t *testing.T) {
	r := openRegistry(t)
	if err := r.SetNames("tokyo", map[string]string{"p-1": "Yamada Taro", "p-2": "Sato Hanako"}); err != nil {
		t.Fatal(err)
	}
	got, err := r.PersonNames("tokyo", []string{"p-1", "p-3"})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"p-1": "Yamada Taro"}) {
		t.Errorf("PersonNames = %v, %v", got, err)
	}
	if got, err := r.PersonNames("osaka", []string{"p-1"}); err != nil || len(got) != 0 {
		t.Errorf("another site: %v, %v", got, err)
	}
}
