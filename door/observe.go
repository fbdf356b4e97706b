package door

import (
	"sync"
	"time"
)

// Observe registers fn to be called with every later Change, in order; the
// first calls report the start (the locked drive NewDoor made, and an open
// door, fire, lockdown or tamper found then). Calls come from one goroutine per
// observer, without the door's lock held, so fn may call the Door's
// methods (but not Close); a slow fn delays only its own later calls, never
// the door. Close returns once every change, its own included, has been
// delivered.
func (d *Door) Observe(fn func(Change)) {
	o := newObserver(fn)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.initial {
		o.push(c)
	}
	if d.closed {
		o.finish()
		return
	}
	d.observers = append(d.observers, o)
}

// emit reports a change to every observer (to initial while starting).
// d.mu must be held, which orders the changes as they happened.
func (d *Door) emit(at time.Time, k Kind, cause string) {
	d.push(Change{Door: d.cfg.Name, Time: at, Kind: k, Unlocked: d.unlocked, Cause: cause})
}

// emitMode reports KindModeChanged with the mode in force. d.mu must be
// held.
func (d *Door) emitMode(at time.Time, cause string) {
	d.push(Change{Door: d.cfg.Name, Time: at, Kind: KindModeChanged, Unlocked: d.unlocked, Cause: cause, Mode: d.effectiveMode()})
}

// push hands c to every observer, or keeps it for the observers to come
// while NewDoor runs. d.mu must be held.
func (d *Door) push(c Change) {
	if d.starting {
		d.initial = append(d.initial, c)
		return
	}
	for _, o := range d.observers {
		o.push(c)
	}
}

// observer delivers changes to one callback from its own goroutine, in
// order, so the door never waits for a callback.
type observer struct {
	mu    sync.Mutex
	queue []Change
	done  bool
	wake  chan struct{} // capacity 1: "queue or done changed"
	fn    func(Change)
	// exited is closed once the queue is delivered after finish.
	exited chan struct{}
}

func newObserver(fn func(Change)) *observer {
	o := &observer{fn: fn, wake: make(chan struct{}, 1), exited: make(chan struct{})}
	go o.run()
	return o
}

func (o *observer) push(c Change) {
	o.mu.Lock()
	o.queue = append(o.queue, c)
	o.mu.Unlock()
	o.signal()
}

// finish lets the goroutine end once the queue is delivered.
func (o *observer) finish() {
	o.mu.Lock()
	o.done = true
	o.mu.Unlock()
	o.signal()
}

func (o *observer) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *observer) run() {
	defer close(o.exited)
	for range o.wake {
		for {
			o.mu.Lock()
			if len(o.queue) == 0 {
				done := o.done
				o.mu.Unlock()
				if done {
					return
				}
				break
			}
			c := o.queue[0]
			o.queue = o.queue[1:]
			o.mu.Unlock()
			o.fn(c)
		}
	}
}
