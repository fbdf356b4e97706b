package hq

import (
	"context"
	"fmt"
	"strings"

	"github.com/tobira-ac/tobira/sync/proto"
)

// SystemDevice is the device name under which HQ stores its own events,
// in the site of the device they are about (e.g. device_refused). No
// device may use it: HQ refuses events published under it.
const SystemDevice = "tobira-hq"

// ReasonDeviceRefused is the reason of the system event HQ stores when it
// refuses a device's messages (docs/REASONS.md). Its detail starts with
// "device=<name> refused=<reason> count=<n>:".
const ReasonDeviceRefused = "device_refused"

// HQ's bounds of the payloads it reads, by leaf, checked before any
// decoding (sync/proto bounds them too, more loosely). Leaves not listed
// are bounded by sync/proto alone.
const (
	// maxStatusPayload bounds a status: a device with 64 doors needs
	// about 10 KiB.
	maxStatusPayload = 16 << 10
	// maxResultPayload bounds a result.
	maxResultPayload = 16 << 10
	// maxNeedPayload bounds a need: proto.MaxNeedRanges ranges of two
	// 10-digit indexes take about 6 KiB.
	maxNeedPayload = 8 << 10
)

// maxPayload returns HQ's bound of a payload on leaf (0: none of its own).
func maxPayload(leaf proto.Leaf) int {
	switch leaf {
	case proto.LeafEvents:
		return proto.MaxPayload
	case proto.LeafStatus:
		return maxStatusPayload
	case proto.LeafResult:
		return maxResultPayload
	case proto.LeafNeed:
		return maxNeedPayload
	case proto.LeafEnroll:
		return proto.MaxEnrollmentPayload
	case proto.LeafSyncGet:
		return proto.MaxSyncGetPayload
	}
	return 0
}

// refuse counts and logs a refused message of site/device, and stores a
// device_refused event for it unless one for the same reason was stored
// less than Limits.ReportInterval ago.
func (h *Service) refuse(ctx context.Context, site, device, reason, detail string) {
	h.metrics.refused.WithLabelValues(reason).Inc()
	h.log.Warn("refused message of device", "site", site, "device", device, "reason", reason, "detail", detail)
	if proto.CheckName(site) != nil || proto.CheckName(device) != nil {
		return
	}
	if n := h.limits.refuse(site, device, reason, detail); n > 0 {
		h.report(ctx, site, device, reason, n, detail)
	}
}

// report stores a device_refused event under (site, SystemDevice): n
// messages of site/device refused for reason, the last for detail.
func (h *Service) report(_ context.Context, site, device, reason string, n uint64, detail string) {
	h.reportMu.Lock()
	defer h.reportMu.Unlock()
	acked, err := h.st.Acked(context.Background(), site, SystemDevice)
	if err != nil {
		h.log.Error("cannot report refused device", "site", site, "device", device, "err", err)
		return
	}
	ev := proto.Event{
		Seq:    acked + 1,
		Time:   h.clk.Now().UTC(),
		Type:   proto.TypeSystem,
		Reason: ReasonDeviceRefused,
		Detail: fmt.Sprintf("device=%s refused=%s count=%d: %s", device, reason, n, detail),
	}.Normalized()
	if _, _, _, err := h.store(proto.EventsTopic(site, SystemDevice), site, SystemDevice, []proto.Event{ev}); err != nil {
		h.log.Error("cannot report refused device", "site", site, "device", device, "err", err)
	}
}

// parseRefusalEvent returns the device, reason and count of a
// device_refused event; ok is false for any other event.
func parseRefusalEvent(ev proto.Event) (device, reason string, n uint64, ok bool) {
	if ev.Type != proto.TypeSystem || ev.Reason != ReasonDeviceRefused {
		return "", "", 0, false
	}
	head, _, _ := strings.Cut(ev.Detail, ":")
	if _, err := fmt.Sscanf(head, "device=%s refused=%s count=%d", &device, &reason, &n); err != nil {
		return "", "", 0, false
	}
	return device, reason, n, true
}
