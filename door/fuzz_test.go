package door

import (
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// FuzzDoorSequence drives a fully wired door with an arbitrary sequence of
// grants, mode changes, input levels and time, and checks after every step
// that the door never panics and keeps its safety invariants:
//   - Relay2 always follows the lock relay, and the pins match Status;
//   - a door neither released by fire nor in ModeUnlocked is locked once
//     every grant and REX is older than its unlock time (plus the input lag);
//   - a forced-open alarm stands only while the door is open, and a
//     held-open alarm only after its pre-alarm.
func FuzzDoorSequence(f *testing.F) {
	f.Add([]byte{0, 5, 3, 1, 5, 9, 3, 0, 5})
	f.Add([]byte{6, 2, 5, 8, 7, 5, 3, 1, 5, 5, 5})
	f.Add([]byte{4, 1, 5, 5, 2, 1, 5, 6, 0, 5, 3, 0, 5})
	f.Add([]byte{7, 3, 0, 3, 1, 5, 3, 0, 5, 5, 5, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		cfg := rigConfig("fuzz")
		cfg.PulseLength, cfg.REXPulse = 200*time.Millisecond, 100*time.Millisecond
		cfg.HeldPreAlarm, cfg.HeldAlarm = 300*time.Millisecond, 500*time.Millisecond
		r := newRig(t, cfg, nil, nil)
		lastAccess := t0
		inputs := []string{"contact", "rex", "fire", "lockdown", "tamper"}
		for i := 0; i < len(ops); i++ {
			op := ops[i] % 10
			arg := byte(0)
			if i+1 < len(ops) {
				arg = ops[i+1]
			}
			switch op {
			case 0:
				_ = r.d.Grant(ctx)
				lastAccess = r.now()
			case 1:
				_ = r.d.AdminGrant(ctx)
				lastAccess = r.now()
			case 2:
				_ = r.d.SetMode(ctx, Modes[int(arg)%len(Modes)], "fuzz")
				i++
			case 3, 4:
				in := inputs[int(arg)%len(inputs)]
				r.set(in, op == 3)
				if in == "rex" {
					lastAccess = r.now()
				}
				i++
			case 5, 6, 7:
				r.run(time.Duration(int(op-4)*int(arg%8+1)) * tick)
				i++
			case 8:
				_ = r.d.Indicate(ctx, []Signal{SignalIdle, SignalDenied, SignalPINWanted, SignalGranted}[int(arg)%4])
				i++
			case 9:
				r.run(time.Second)
			}
			s := r.d.Status()
			relay, relay2 := r.level("relay"), r.level("relay2")
			if relay != relay2 {
				t.Fatalf("step %d: relay %s, relay2 %s", i, relay, relay2)
			}
			if (relay == gpio.High) != s.Unlocked {
				t.Fatalf("step %d: relay pin %s but Status.Unlocked=%v", i, relay, s.Unlocked)
			}
			if !s.Fire && s.Mode != ModeUnlocked && s.Unlocked && r.now().Sub(lastAccess) > cfg.PulseLength+lag {
				t.Fatalf("step %d: unlocked at +%s with no fire, mode %s and the last access at +%s", i,
					r.now().Sub(t0), s.Mode, lastAccess.Sub(t0))
			}
			if s.ForcedOpen && !s.Open {
				t.Fatalf("step %d: forced-open alarm on a closed door", i)
			}
			if s.HeldOpen && !s.HeldPreAlarm {
				t.Fatalf("step %d: held-open alarm without its pre-alarm", i)
			}
		}
	})
}

// BenchmarkSampleTick measures one input sample of a fully wired door (five
// inputs, gpiotest pins), including the timer hand-off: the door's steady
// CPU cost is this times 1/sample_interval.
func BenchmarkSampleTick(b *testing.B) {
	r := newRig(b, rigConfig("bench"), nil, nil)
	b.ResetTimer()
	for range b.N {
		n := r.clk.count()
		r.clk.Advance(tick)
		r.clk.waitAbove(n)
	}
}
