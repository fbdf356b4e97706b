package hq

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// Defaults of Limits (docs/HQ.md, "Per-device limits").
const (
	// DefaultSeqWindow: an events message whose last sequence number is
	// more than this beyond the device's acknowledgement point is
	// refused. It also bounds the events HQ holds beyond a gap per device.
	DefaultSeqWindow = 100_000
	// DefaultEventRate is the sustained rate of new events stored per
	// device, per second.
	DefaultEventRate = 100
	// DefaultEventBurst is how many new events a device may have stored
	// at once (a backlog of this many drains at full speed).
	DefaultEventBurst = 1_000_000
	// DefaultByteRate is the sustained rate of stored event bytes per
	// device, per second (64 KiB/s, 5.4 GB a day).
	DefaultByteRate = 64 << 10
	// DefaultByteBurst is how many event bytes a device may have stored
	// at once (512 MiB: a million typical events).
	DefaultByteBurst = 512 << 20
	// DefaultNeedInterval: HQ re-sends a snapshot chunk to a device at most
	// once per interval, however often it is asked (the edge asks again
	// every 10 s without a new chunk).
	DefaultNeedInterval = 5 * time.Second
	// DefaultRequestRate is the sustained rate of messages per device
	// that read or write HQ's mark store (marks, marks-get, ticket-check),
	// per second.
	DefaultRequestRate = 10
	// DefaultRequestBurst is how many such requests a device may make at
	// once: a gate catching up on 50,000 marks asks 100 pages.
	DefaultRequestBurst = 200
	// DefaultReportInterval: HQ stores at most one device_refused event
	// per device and refusal reason per interval.
	DefaultReportInterval = time.Minute
)

// Limits bound what one device can make HQ store or send. Zero fields
// take their defaults.
type Limits struct {
	// SeqWindow refuses an events message whose last sequence number is
	// beyond the device's acknowledgement point plus SeqWindow; at most
	// SeqWindow events of a device are held beyond a gap. Default
	// DefaultSeqWindow.
	SeqWindow uint64
	// EventRate and EventBurst are a token bucket per device of the new
	// events (beyond the acknowledgement point) HQ stores; a message that
	// does not fit is refused, not acknowledged, and sent again by the
	// edge after its ack timeout. Defaults DefaultEventRate (per second)
	// and DefaultEventBurst.
	EventRate float64
	// EventBurst is the bucket's size; at least proto.MaxBatch.
	EventBurst int64
	// ByteRate and ByteBurst are a token bucket per device of the bytes
	// of new events stored. Defaults DefaultByteRate (per second) and
	// DefaultByteBurst.
	ByteRate float64
	// ByteBurst is the bucket's size; at least proto.MaxPayload.
	ByteBurst int64
	// NeedInterval is how long HQ waits before it re-sends the same
	// chunk to the same device again; default DefaultNeedInterval.
	NeedInterval time.Duration
	// RequestRate and RequestBurst are a token bucket per device of the
	// messages that read or write HQ's mark store (marks, marks-get,
	// ticket-check; their bytes count in the byte bucket too); one beyond
	// it is refused unanswered (the gate sends its marks again after its
	// ack timeout, asks again, or decides a ticket locally). Defaults DefaultRequestRate (per second)
	// and DefaultRequestBurst.
	RequestRate float64
	// RequestBurst is the request bucket's size.
	RequestBurst int64
	// ReportInterval spaces the device_refused events of one device and
	// reason; default DefaultReportInterval.
	ReportInterval time.Duration
}

// withDefaults returns l with defaults in its zero fields, or an error
// naming the field that is out of range.
func (l Limits) withDefaults() (Limits, error) {
	l.SeqWindow = cmp.Or(l.SeqWindow, DefaultSeqWindow)
	l.EventRate = cmp.Or(l.EventRate, DefaultEventRate)
	l.EventBurst = cmp.Or(l.EventBurst, DefaultEventBurst)
	l.ByteRate = cmp.Or(l.ByteRate, DefaultByteRate)
	l.ByteBurst = cmp.Or(l.ByteBurst, DefaultByteBurst)
	l.NeedInterval = cmp.Or(l.NeedInterval, DefaultNeedInterval)
	l.RequestRate = cmp.Or(l.RequestRate, DefaultRequestRate)
	l.RequestBurst = cmp.Or(l.RequestBurst, DefaultRequestBurst)
	l.ReportInterval = cmp.Or(l.ReportInterval, DefaultReportInterval)
	switch {
	case l.SeqWindow < proto.MaxBatch:
		return l, fmt.Errorf("%w: limits: seq window %d is below one batch (%d)", ErrConfig, l.SeqWindow, proto.MaxBatch)
	case l.EventRate < 0 || l.ByteRate < 0 || l.RequestRate < 0:
		return l, fmt.Errorf("%w: limits: negative rate (events %v/s, bytes %v/s, requests %v/s)", ErrConfig, l.EventRate, l.ByteRate, l.RequestRate)
	case l.RequestBurst < 1:
		return l, fmt.Errorf("%w: limits: request burst %d is below 1", ErrConfig, l.RequestBurst)
	case l.EventBurst < proto.MaxBatch:
		return l, fmt.Errorf("%w: limits: event burst %d is below one batch (%d)", ErrConfig, l.EventBurst, proto.MaxBatch)
	case l.ByteBurst < proto.MaxPayload:
		return l, fmt.Errorf("%w: limits: byte burst %d is below one payload (%d)", ErrConfig, l.ByteBurst, proto.MaxPayload)
	case l.NeedInterval < 0 || l.ReportInterval < 0:
		return l, fmt.Errorf("%w: limits: negative interval (need %v, report %v)", ErrConfig, l.NeedInterval, l.ReportInterval)
	}
	return l, nil
}

// bucket is a token bucket: it holds up to size tokens and gains rate
// tokens per second.
type bucket struct {
	tokens float64
	at     time.Time
}

// take refills b at rate up to size since b.at, then takes n tokens if it
// holds them, reporting whether it did.
func (b *bucket) take(now time.Time, rate float64, size, n int64) bool {
	if b.at.IsZero() {
		b.tokens = float64(size)
	} else if d := now.Sub(b.at); d > 0 {
		b.tokens = min(float64(size), b.tokens+d.Seconds()*rate)
	}
	b.at = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// Refusal is the last thing HQ refused from a device.
type Refusal struct {
	// Reason is a refusal reason of docs/HQ.md (e.g. seq_ahead).
	Reason string `json:"reason"`
	// At is when HQ refused it.
	At time.Time `json:"at"`
	// Detail says what was refused.
	Detail string `json:"detail"`
}

// deviceKey names a device.
type deviceKey struct{ site, device string }

// deviceLimits is what the limiter knows of one device.
type deviceLimits struct {
	acked         uint64
	ackedKnown    bool
	events, bytes bucket
	requests      bucket

	unsaid   map[string]uint64    // refused since the last report, by reason
	reported map[string]time.Time // last report, by reason
	last     Refusal

	needTransfer string
	needSent     map[int]time.Time // chunk index -> last re-sent
}

// limiter applies Limits per device. Its state lives in memory: a
// restarted HQ starts with full buckets and no refusals.
type limiter struct {
	lim   Limits
	clk   clock.Clock
	acked func(site, device string) (uint64, error) // the store's ack point

	mu   sync.Mutex
	devs map[deviceKey]*deviceLimits
}

func newLimiter(lim Limits, clk clock.Clock, acked func(site, device string) (uint64, error)) *limiter {
	return &limiter{lim: lim, clk: clk, acked: acked, devs: map[deviceKey]*deviceLimits{}}
}

// device returns the state of site/device, created on first use; call
// with mu held.
func (l *limiter) device(site, device string) *deviceLimits {
	k := deviceKey{site, device}
	d := l.devs[k]
	if d == nil {
		d = &deviceLimits{unsaid: map[string]uint64{}, reported: map[string]time.Time{}}
		l.devs[k] = d
	}
	return d
}

// admit decides whether an events message of size bytes holding first..last
// of site/device may be stored. It returns "" to store it, or the refusal
// reason and what was wrong.
func (l *limiter) admit(site, device string, first, last uint64, size int) (reason, detail string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.device(site, device)
	if !d.ackedKnown {
		a, err := l.acked(site, device)
		if err != nil {
			return "", "", err
		}
		d.acked, d.ackedKnown = max(d.acked, a), true
	}
	if last > d.acked && last-d.acked > l.lim.SeqWindow {
		return refusedSeqAhead, fmt.Sprintf("seq %d..%d is more than %d beyond the acknowledged %d", first, last, l.lim.SeqWindow, d.acked), nil
	}
	if last <= d.acked {
		return "", "", nil // all held already: acknowledge again
	}
	fresh := last - max(first-1, d.acked) // events beyond the ack point
	n := int64(last - first + 1)
	freshBytes := int64(size) * int64(fresh) / n
	now := l.clk.Now()
	// Check both buckets before taking from either.
	ev, by := d.events, d.bytes
	switch {
	case !ev.take(now, l.lim.EventRate, l.lim.EventBurst, int64(fresh)):
		return refusedRateLimited, fmt.Sprintf("%d new events (seq %d..%d) exceed %v events/s, burst %d", fresh, first, last, l.lim.EventRate, l.lim.EventBurst), nil
	case !by.take(now, l.lim.ByteRate, l.lim.ByteBurst, freshBytes):
		return refusedByteLimited, fmt.Sprintf("%d new bytes (seq %d..%d) exceed %v bytes/s, burst %d", freshBytes, first, last, l.lim.ByteRate, l.lim.ByteBurst), nil
	}
	d.events, d.bytes = ev, by
	return "", "", nil
}

// request takes one token of site/device's request bucket and size
// bytes of its byte bucket for a marks, marks-get, ticket-check or sync-get message
// (every mark HQ stores comes in one). It returns "" to handle the
// message, or the refusal reason and what was refused.
func (l *limiter) request(site, device string, leaf proto.Leaf, size int) (reason, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.device(site, device)
	now := l.clk.Now()
	// Check both buckets before taking from either.
	rq, by := d.requests, d.bytes
	switch {
	case !rq.take(now, l.lim.RequestRate, l.lim.RequestBurst, 1):
		return refusedRequestLimited, fmt.Sprintf("%s beyond %v requests/s, burst %d", leaf, l.lim.RequestRate, l.lim.RequestBurst)
	case !by.take(now, l.lim.ByteRate, l.lim.ByteBurst, int64(size)):
		return refusedByteLimited, fmt.Sprintf("%s of %d bytes beyond %v bytes/s, burst %d", leaf, size, l.lim.ByteRate, l.lim.ByteBurst)
	}
	d.requests, d.bytes = rq, by
	return "", ""
}

// stored records the acknowledgement point of site/device after a commit.
func (l *limiter) stored(site, device string, ack uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.device(site, device)
	d.acked = max(d.acked, ack)
}

// refuse counts a refusal of site/device. It returns how many refusals
// of that reason to report now in a device_refused event (0: not yet,
// one was reported less than ReportInterval ago).
func (l *limiter) refuse(site, device, reason, detail string) (report uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.device(site, device)
	now := l.clk.Now()
	d.unsaid[reason]++
	d.last = Refusal{Reason: reason, At: now.UTC(), Detail: detail}
	if at, ok := d.reported[reason]; ok && now.Sub(at) < l.lim.ReportInterval {
		return 0
	}
	report = d.unsaid[reason]
	d.reported[reason] = now
	delete(d.unsaid, reason)
	return report
}

// unreported returns, for every device with refusals, those not yet
// reported in a device_refused event and the last refusal.
func (l *limiter) unreported() map[deviceKey]DeviceRefusals {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[deviceKey]DeviceRefusals{}
	for k, d := range l.devs {
		if d.last.Reason == "" {
			continue
		}
		out[k] = DeviceRefusals{Counts: maps.Clone(d.unsaid), Last: d.last}
	}
	return out
}

// DeviceRefusals is what HQ refused from one device.
type DeviceRefusals struct {
	// Counts are the refused messages by reason.
	Counts map[string]uint64
	// Last is the last refusal.
	Last Refusal
}

// needChunks returns the chunks of ranges (merged, see mergeRanges) of
// transfer that site/device may be sent now: those not re-sent to it in
// the last NeedInterval. It records them as sent, and returns how many it
// held back.
func (l *limiter) needChunks(site, device, transfer string, ranges [][2]int) (send []int, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.device(site, device)
	now := l.clk.Now()
	if d.needTransfer != transfer {
		d.needTransfer, d.needSent = transfer, map[int]time.Time{}
	}
	for _, r := range ranges {
		for i := r[0]; i <= r[1]; i++ {
			if at, ok := d.needSent[i]; ok && now.Sub(at) < l.lim.NeedInterval {
				held++
				continue
			}
			d.needSent[i] = now
			send = append(send, i)
		}
	}
	return send, held
}

// mergeRanges returns the inclusive ranges of missing clamped to chunk
// indexes 0..chunks-1, sorted, with overlapping and adjacent ranges
// merged: each chunk appears at most once.
func mergeRanges(missing [][2]int, chunks int) [][2]int {
	var rs [][2]int
	for _, r := range missing {
		if r[0] < 0 || r[0] >= chunks || r[1] < r[0] {
			continue
		}
		rs = append(rs, [2]int{r[0], min(r[1], chunks-1)})
	}
	slices.SortFunc(rs, func(a, b [2]int) int { return cmp.Compare(a[0], b[0]) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
