// Package export writes HQ's stored events for people and spreadsheets:
// JSON lines or CSV whose cells are safe to open in a spreadsheet. The
// CLI (tobira-hq events, tail) and the console share it.
package export

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/hq"
)

// ErrFormat means an export format other than "json" or "csv".
var ErrFormat = errors.New("unknown export format")

// CSVHeader is the first line of a CSV export of events.
var CSVHeader = []string{"site", "device", "seq", "time", "type", "door", "granted", "reason", "credential", "token", "decision_us", "detail"}

// EventWriter writes events as JSON lines or CSV.
type EventWriter struct {
	json *json.Encoder
	csv  *csv.Writer
}

// NewEventWriter returns a writer for format "json" or "csv" (which
// writes CSVHeader at once); another format is ErrFormat.
func NewEventWriter(w io.Writer, format string) (*EventWriter, error) {
	switch format {
	case "json":
		return &EventWriter{json: json.NewEncoder(w)}, nil
	case "csv":
		c := csv.NewWriter(w)
		if err := c.Write(CSVHeader); err != nil {
			return nil, err
		}
		return &EventWriter{csv: c}, nil
	default:
		return nil, fmt.Errorf("%w %q, want json or csv", ErrFormat, format)
	}
}

// Write writes one event.
func (w *EventWriter) Write(ev hq.StoredEvent) error {
	if w.json != nil {
		return w.json.Encode(ev)
	}
	c := Cell
	return w.csv.Write([]string{c(ev.Site), c(ev.Device), strconv.FormatUint(ev.Seq, 10), ev.Time.UTC().Format(time.RFC3339Nano),
		c(ev.Type), c(ev.Door), strconv.FormatBool(ev.Granted), c(ev.Reason), c(ev.Credential), c(ev.Token),
		strconv.FormatInt(ev.DecisionUS, 10), c(ev.Detail)})
}

// Flush ends the output (CSV is buffered).
func (w *EventWriter) Flush() error {
	if w.csv != nil {
		w.csv.Flush()
		return w.csv.Error()
	}
	return nil
}

// Cell returns a text cell of a CSV export safe to open in a
// spreadsheet: a cell starting with = + - @, a tab or a carriage return
// is prefixed with a single quote, so the spreadsheet shows it as text
// instead of evaluating it as a formula (OWASP "CSV injection"). The
// text comes from devices: a compromised one chooses it.
func Cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
