package daemon

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/errdefs"
)

// filterArgs is Docker's filters parameter: a key to a set of values.
type filterArgs map[string][]string

// parseFilters accepts both encodings clients send: {"k":{"v":true}} and
// the older {"k":["v"]}.
func parseFilters(s string) (filterArgs, error) {
	f := filterArgs{}
	if s == "" {
		return f, nil
	}
	var modern map[string]map[string]bool
	if err := json.Unmarshal([]byte(s), &modern); err == nil {
		for k, vs := range modern {
			for v, on := range vs {
				if on {
					f[k] = append(f[k], v)
				}
			}
		}
		return f, nil
	}
	var legacy map[string][]string
	if err := json.Unmarshal([]byte(s), &legacy); err != nil {
		return nil, fmt.Errorf("invalid filters %q: want JSON such as {\"label\":{\"a=b\":true}}: %w", s, errdefs.ErrInvalidArgument)
	}
	for k, vs := range legacy {
		f[k] = append(f[k], vs...)
	}
	return f, nil
}

func (f filterArgs) validate(allowed ...string) error {
	for k := range f {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("invalid filter '%s' (supported: %s): %w", k, strings.Join(allowed, ", "), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// matchLabels reports whether labels satisfy every "label" filter
// ("key" or "key=value").
func (f filterArgs) matchLabels(key string, labels map[string]string) bool {
	for _, want := range f[key] {
		k, v, hasV := strings.Cut(want, "=")
		got, ok := labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

// matchesAnyLabel reports whether labels have one of the "key" or
// "key=value" entries (for label! filters).
func matchesAnyLabel(entries []string, labels map[string]string) bool {
	for _, e := range entries {
		k, v, hasV := strings.Cut(e, "=")
		if got, ok := labels[k]; ok && (!hasV || got == v) {
			return true
		}
	}
	return false
}

// matchAny reports whether one of the values of key matches pred; true
// when the key is absent.
func (f filterArgs) matchAny(key string, pred func(string) bool) bool {
	vs, ok := f[key]
	if !ok {
		return true
	}
	for _, v := range vs {
		if pred(v) {
			return true
		}
	}
	return false
}

var containerFilters = []string{"id", "name", "label", "status", "exited", "ancestor", "before", "since", "network", "volume", "health", "is-task", "publish", "expose"}

// matchContainer applies the container list filters. The caller holds c.Mu.
func (d *Daemon) matchContainer(f filterArgs, c *container.Container) bool {
	if !f.matchAny("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) {
		return false
	}
	if !f.matchAny("name", func(v string) bool {
		// Docker matches names (with their leading "/") as regular expressions.
		if re, err := regexp.Compile(v); err == nil {
			return re.MatchString("/" + c.Name)
		}
		v = strings.TrimPrefix(v, "/")
		if ok, _ := path.Match(v, c.Name); ok {
			return true
		}
		return strings.Contains(c.Name, v)
	}) {
		return false
	}
	if !f.matchLabels("label", c.Config.Labels) {
		return false
	}
	if !f.matchAny("status", func(v string) bool { return v == c.State.Status }) {
		return false
	}
	if !f.matchAny("exited", func(v string) bool {
		n, err := strconv.Atoi(v)
		return err == nil && !c.State.Running && c.State.Status == "exited" && c.State.ExitCode == n
	}) {
		return false
	}
	if !f.matchAny("ancestor", func(v string) bool {
		if v == c.ImageRef || strings.HasPrefix(strings.TrimPrefix(c.ImageID, "sha256:"), strings.TrimPrefix(v, "sha256:")) {
			return true
		}
		img, err := d.images.Get(v)
		return err == nil && img.ID == c.ImageID
	}) {
		return false
	}
	if !f.matchAny("network", func(v string) bool {
		if v == c.HostConfig.NetworkMode {
			return true
		}
		for _, a := range c.Networks {
			if a.Name == v {
				return true
			}
		}
		return false
	}) {
		return false
	}
	for key, after := range map[string]bool{"before": false, "since": true} {
		for _, v := range f[key] {
			ref, err := d.ctrs.Get(v)
			if err != nil || ref == c {
				return false
			}
			// ref.Created never changes; reading it unlocked is safe.
			if after != c.Created.After(ref.Created) {
				return false
			}
		}
	}
	if !f.matchAny("publish", func(v string) bool { return matchPort(v, c.Ports) }) {
		return false
	}
	if !f.matchAny("expose", func(v string) bool {
		for p := range c.Config.ExposedPorts {
			if p == v || p == v+"/tcp" {
				return true
			}
		}
		return false
	}) {
		return false
	}
	// berth has no health checks: every container's health is "none".
	if !f.matchAny("health", func(v string) bool { return v == "none" }) {
		return false
	}
	if !f.matchAny("is-task", func(v string) bool { return v == "false" || v == "0" }) {
		return false
	}
	if !f.matchAny("volume", func(v string) bool {
		for _, m := range c.Mounts {
			if m.Source == v || m.Target == v {
				return true
			}
		}
		for _, mp := range c.MountPoints {
			if mp.Name == v || mp.Destination == v {
				return true
			}
		}
		return false
	}) {
		return false
	}
	return true
}

// matchPort matches a publish filter ("8080", "8080/tcp", "8080-8090")
// against the ports a container publishes (their host side, as Docker).
func matchPort(v string, ports []network.PortMapping) bool {
	spec, proto, _ := strings.Cut(v, "/")
	lo, hi, isRange := strings.Cut(spec, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil {
		return false
	}
	for _, p := range ports {
		if (proto == "" || proto == p.Proto) && uint64(p.HostPort) >= a && uint64(p.HostPort) <= b {
			return true
		}
	}
	return false
}

// eventFilters are the keys /events accepts.
var eventFilters = []string{"type", "event", "container", "image", "label", "network", "volume", "scope", "daemon"}

func (f filterArgs) matchEvent(e Event) bool {
	if !f.matchAny("type", func(v string) bool { return v == e.Type }) {
		return false
	}
	if !f.matchAny("event", func(v string) bool { return v == e.Action || strings.HasPrefix(e.Action, v+":") }) {
		return false
	}
	if !f.matchAny("container", func(v string) bool {
		return e.Type == "container" && (strings.HasPrefix(e.Actor.ID, v) || e.Actor.Attributes["name"] == v)
	}) {
		return false
	}
	if !f.matchAny("image", func(v string) bool {
		img := e.Actor.Attributes["image"]
		if e.Type == "image" {
			img = e.Actor.Attributes["name"]
		}
		return sameImageRef(img, v) || e.Actor.ID == v || (e.Type == "image" && strings.HasPrefix(strings.TrimPrefix(e.Actor.ID, "sha256:"), strings.TrimPrefix(v, "sha256:")))
	}) {
		return false
	}
	if !f.matchAny("network", func(v string) bool {
		return e.Type == "network" && (strings.HasPrefix(e.Actor.ID, v) || e.Actor.Attributes["name"] == v)
	}) {
		return false
	}
	if !f.matchAny("volume", func(v string) bool { return e.Type == "volume" && e.Actor.ID == v }) {
		return false
	}
	if !f.matchAny("scope", func(v string) bool { return v == "local" }) {
		return false
	}
	return f.matchLabels("label", e.Actor.Attributes)
}

// parseTimeParam reads Docker's since/until values: Unix seconds with an
// optional fraction, an RFC 3339 time, or a duration ago such as "10m".
func parseTimeParam(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if dur, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-dur), nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want Unix seconds, RFC 3339 or a duration such as 10m: %w", s, errdefs.ErrInvalidArgument)
}

func pathMatch(pattern, s string) (bool, error) { return path.Match(pattern, s) }

// sameImageRef compares two image names, "busybox" being "busybox:latest".
func sameImageRef(a, b string) bool {
	norm := func(s string) string {
		if s == "" || strings.Contains(s, "@") {
			return s
		}
		if i := strings.LastIndex(s, ":"); i <= strings.LastIndex(s, "/") {
			s += ":latest"
		}
		return strings.TrimPrefix(strings.TrimPrefix(s, "docker.io/"), "library/")
	}
	return a != "" && norm(a) == norm(b)
}
