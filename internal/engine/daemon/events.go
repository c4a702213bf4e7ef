package daemon

import (
	"sync"
	"time"

	"github.com/berth/berth/internal/engine/container"
)

// Event is one engine event, in the shape of Docker's /events messages.
type Event struct {
	Type     string    `json:"Type"`
	Action   string    `json:"Action"`
	Actor    Actor     `json:"Actor"`
	Scope    string    `json:"scope"`
	Time     int64     `json:"time"`
	TimeNano int64     `json:"timeNano"`
	at       time.Time `json:"-"`
}

// Actor names the object an event is about.
type Actor struct {
	ID         string            `json:"ID"`
	Attributes map[string]string `json:"Attributes"`
}

// eventBus fans events out to subscribers and keeps a short history for
// `since` queries.
type eventBus struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	history []Event
}

func newEventBus() *eventBus { return &eventBus{subs: map[chan Event]struct{}{}} }

func (b *eventBus) publish(typ, action, id string, attrs map[string]string) {
	now := time.Now()
	e := Event{Type: typ, Action: action, Actor: Actor{ID: id, Attributes: attrs}, Scope: "local",
		Time: now.Unix(), TimeNano: now.UnixNano(), at: now}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.history = append(b.history, e)
	if len(b.history) > 1024 {
		b.history = append([]Event(nil), b.history[len(b.history)-512:]...)
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default: // a slow subscriber loses events rather than block the engine
		}
	}
}

// subscribe returns past events since `since` and a channel of new ones.
func (b *eventBus) subscribe(since time.Time) ([]Event, chan Event, func()) {
	ch := make(chan Event, 256)
	b.mu.Lock()
	var past []Event
	if !since.IsZero() {
		for _, e := range b.history {
			if !e.at.Before(since) {
				past = append(past, e)
			}
		}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return past, ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

// containerEvent publishes an event about c. Its attributes are the
// container's labels plus name and image, as Docker's are, so clients
// (docker-compose) can filter events by label. The caller holds c.Mu or
// owns c.
func (d *Daemon) containerEvent(c *container.Container, action string, attrs map[string]string) {
	a := make(map[string]string, len(c.Config.Labels)+len(attrs)+2)
	for k, v := range c.Config.Labels {
		a[k] = v
	}
	a["name"], a["image"] = c.Name, c.ImageRef
	for k, v := range attrs {
		a[k] = v
	}
	d.events.publish("container", action, c.ID, a)
}
