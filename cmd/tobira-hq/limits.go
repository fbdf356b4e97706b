package main

import (
	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/hq"
)

// addLimitFlags registers serve's per-device limit flags (docs/HQ.md,
// "Per-device limits") on c, with hq's defaults, and returns where they
// land.
func addLimitFlags(c *cobra.Command) *hq.Limits {
	var l hq.Limits
	c.Flags().Uint64Var(&l.SeqWindow, "limit-seq-window", hq.DefaultSeqWindow,
		"refuse events more than this far beyond a device's acknowledged sequence number")
	c.Flags().Float64Var(&l.EventRate, "limit-event-rate", hq.DefaultEventRate, "new events stored per device per second, sustained")
	c.Flags().Int64Var(&l.EventBurst, "limit-event-burst", hq.DefaultEventBurst, "new events a device may have stored at once")
	c.Flags().Float64Var(&l.ByteRate, "limit-byte-rate", hq.DefaultByteRate, "event bytes stored per device per second, sustained")
	c.Flags().Int64Var(&l.ByteBurst, "limit-byte-burst", hq.DefaultByteBurst, "event bytes a device may have stored at once")
	c.Flags().DurationVar(&l.NeedInterval, "limit-need-interval", hq.DefaultNeedInterval,
		"re-send the same snapshot chunk to a device at most once per this interval")
	c.Flags().Float64Var(&l.RequestRate, "limit-request-rate", hq.DefaultRequestRate,
		"ticket-mark messages, mark requests and ticket checks per device per second, sustained")
	c.Flags().Int64Var(&l.RequestBurst, "limit-request-burst", hq.DefaultRequestBurst,
		"ticket-mark messages, mark requests and ticket checks a device may send at once")
	return &l
}
