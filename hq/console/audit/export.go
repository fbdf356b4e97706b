package audit

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/tobira-ac/tobira/hq/export"
)

// csvHeader is the first line of a CSV export.
var csvHeader = []string{"seq", "time", "actor", "role", "addr", "action", "target", "before", "after", "prev", "hash"}

// WriteCSV writes the whole log to w as CSV, every text cell made safe
// for spreadsheets (export.Cell).
func (l *Log) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	c := export.Cell
	err := l.Each(func(e Entry) error {
		return cw.Write([]string{strconv.FormatUint(e.Seq, 10), e.Time.Format(time.RFC3339Nano), c(e.Actor), c(e.Role), c(e.Addr),
			c(e.Action), c(e.Target), c(e.Before), c(e.After), e.Prev, e.Hash})
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole log to w as JSON lines, one entry each: the
// form Verify's chain can be checked from outside (each hash is over the
// entry's JSON with "hash" empty).
func (l *Log) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	return l.Each(func(e Entry) error { return enc.Encode(e) })
}
