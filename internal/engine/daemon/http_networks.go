package daemon

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/container"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/errdefs"
)

func (d *Daemon) networkJSON(n network.Network) api.Network {
	out := api.Network{Name: n.Name, ID: n.ID, Created: n.Created, Scope: "local", Driver: "bridge", Internal: n.Internal,
		Attachable: true, IPAM: api.IPAM{Driver: "default", Config: []api.IPAMConfig{{Subnet: n.Subnet, Gateway: n.Gateway}}, Options: map[string]string{}},
		Containers: map[string]api.NetworkEndpoint{}, Options: map[string]string{}, Labels: n.Labels}
	if n.Name == network.DefaultNetwork {
		// As dockerd's docker0. User networks show only the options they
		// were created with: compose recreates a network whose options
		// differ from its file's.
		out.Options["com.docker.network.bridge.default_bridge"] = "true"
		out.Options["com.docker.network.bridge.name"] = n.Bridge
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for id, ep := range n.Endpoints {
		name := ep.Name
		if c, err := d.ctrs.Get(id); err == nil {
			name = c.Name
		}
		out.Containers[id] = api.NetworkEndpoint{Name: name, EndpointID: id[:12] + "-" + n.ID[:12], MacAddress: ep.MAC,
			IPv4Address: fmt.Sprintf("%s/%d", ep.IP, ep.PrefixLen), IPv6Address: ""}
	}
	return out
}

// builtinNetworks are the modes every daemon has besides its bridges.
var builtinNetworks = []api.Network{
	{Name: "host", ID: "f1d2b3a4c5e6" + strings.Repeat("0", 52), Scope: "local", Driver: "host", Containers: map[string]api.NetworkEndpoint{}, Options: map[string]string{}, Labels: map[string]string{}},
	{Name: "none", ID: "a9e8d7c6b5f4" + strings.Repeat("0", 52), Scope: "local", Driver: "null", Containers: map[string]api.NetworkEndpoint{}, Options: map[string]string{}, Labels: map[string]string{}},
}

func (d *Daemon) getNetworks(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate("name", "id", "label", "driver", "type", "scope", "dangling")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	inUse := map[string]bool{}
	if _, ok := f["dangling"]; ok {
		for _, c := range d.ctrs.List() {
			c.Mu.Lock()
			for _, a := range c.Networks {
				inUse[a.Name] = true
			}
			c.Mu.Unlock()
		}
	}
	all := append([]api.Network{}, builtinNetworks...)
	for _, n := range d.net.List() {
		all = append(all, d.networkJSON(n))
	}
	out := []api.Network{}
	for _, n := range all {
		if !f.matchAny("name", func(v string) bool { return strings.Contains(n.Name, v) }) ||
			!f.matchAny("id", func(v string) bool { return strings.HasPrefix(n.ID, v) }) ||
			!f.matchAny("driver", func(v string) bool { return n.Driver == v }) ||
			!f.matchLabels("label", n.Labels) ||
			!f.matchAny("type", func(v string) bool {
				builtin := n.Driver != "bridge" || n.Name == network.DefaultNetwork
				return (v == "builtin") == builtin
			}) ||
			!f.matchAny("scope", func(v string) bool { return v == "local" }) ||
			!f.matchAny("dangling", func(v string) bool {
				builtin := n.Driver != "bridge" || n.Name == network.DefaultNetwork
				unused := !builtin && !inUse[n.Name]
				return (v == "true" || v == "1") == unused
			}) {
			continue
		}
		out = append(out, n)
	}
	writeJSONResponse(w, 200, out)
}

func (d *Daemon) getNetwork(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("id")
	for _, b := range builtinNetworks {
		if b.Name == name || b.ID == name {
			writeJSONResponse(w, 200, b)
			return
		}
	}
	n, err := d.net.Get(name)
	if err != nil {
		writeError(w, fmt.Errorf("network %s not found: %w", name, errdefs.ErrNotFound))
		return
	}
	writeJSONResponse(w, 200, d.networkJSON(n))
}

func (d *Daemon) postNetworksCreate(w http.ResponseWriter, r *http.Request) {
	var req api.NetworkCreateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Name == "" {
		writeError(w, fmt.Errorf("network name is required: %w", errdefs.ErrInvalidArgument))
		return
	}
	if req.Driver != "" && req.Driver != "bridge" {
		writeError(w, fmt.Errorf("network driver %q is not supported (berth has the bridge driver): %w", req.Driver, errdefs.ErrNotImplemented))
		return
	}
	if req.Name == "host" || req.Name == "none" {
		writeError(w, fmt.Errorf("network name %s is reserved: %w", req.Name, errdefs.ErrConflict))
		return
	}
	subnet, gateway := "", ""
	if req.IPAM != nil && len(req.IPAM.Config) > 0 {
		if len(req.IPAM.Config) > 1 {
			writeError(w, fmt.Errorf("only one subnet per network is supported: %w", errdefs.ErrNotImplemented))
			return
		}
		subnet, gateway = req.IPAM.Config[0].Subnet, req.IPAM.Config[0].Gateway
	}
	n, err := d.net.Create(req.Name, subnet, gateway, req.Internal, req.Labels)
	if err != nil {
		writeError(w, err)
		return
	}
	d.events.publish("network", "create", n.ID, map[string]string{"name": n.Name, "type": "bridge"})
	writeJSONResponse(w, http.StatusCreated, api.NetworkCreateResponse{ID: n.ID})
}

func (d *Daemon) deleteNetwork(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("id")
	n, err := d.net.Get(name)
	if err != nil {
		for _, b := range builtinNetworks {
			if b.Name == name {
				writeError(w, fmt.Errorf("%s is a pre-defined network and cannot be removed: %w", name, errdefs.ErrForbidden))
				return
			}
		}
		writeError(w, fmt.Errorf("network %s not found: %w", name, errdefs.ErrNotFound))
		return
	}
	if n.Name == network.DefaultNetwork {
		writeError(w, fmt.Errorf("bridge is a pre-defined network and cannot be removed: %w", errdefs.ErrForbidden))
		return
	}
	// Stopped containers keep their attachment in their record.
	for _, c := range d.ctrs.List() {
		for _, a := range c.Networks {
			if a.Name == n.Name {
				writeError(w, fmt.Errorf("error while removing network: network %s has active endpoints (container %s); remove or disconnect it first: %w", n.Name, c.ShortID(), errdefs.ErrConflict))
				return
			}
		}
	}
	if err := d.net.Remove(n.Name); err != nil {
		writeError(w, err)
		return
	}
	d.events.publish("network", "destroy", n.ID, map[string]string{"name": n.Name, "type": "bridge"})
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) postNetworksPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.validate("label", "label!", "until")
	}
	var until time.Time
	if err == nil && len(f["until"]) > 0 {
		until, err = parseTimeParam(f["until"][0])
	}
	if err != nil {
		writeError(w, err)
		return
	}
	inUse := map[string]bool{}
	for _, c := range d.ctrs.List() {
		for _, a := range c.Networks {
			inUse[a.Name] = true
		}
	}
	out := api.NetworkPruneReport{NetworksDeleted: []string{}}
	for _, n := range d.net.List() {
		if n.Name == network.DefaultNetwork || inUse[n.Name] || len(n.Endpoints) > 0 ||
			!f.matchLabels("label", n.Labels) || matchesAnyLabel(f["label!"], n.Labels) ||
			(!until.IsZero() && !n.Created.Before(until)) {
			continue
		}
		if err := d.net.Remove(n.Name); err == nil {
			out.NetworksDeleted = append(out.NetworksDeleted, n.Name)
			d.events.publish("network", "destroy", n.ID, map[string]string{"name": n.Name})
		}
	}
	writeJSONResponse(w, 200, out)
}

func (d *Daemon) postNetworkConnect(w http.ResponseWriter, r *http.Request) {
	var req api.NetworkConnectRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	n, err := d.net.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, fmt.Errorf("network %s not found: %w", r.PathValue("id"), errdefs.ErrNotFound))
		return
	}
	c, err := d.ctrs.Get(req.Container)
	if err != nil {
		writeError(w, err)
		return
	}
	a := container.NetworkAttachment{Name: n.Name}
	if ec := req.EndpointConfig; ec != nil {
		a.Aliases = ec.Aliases
		if ec.IPAMConfig != nil {
			a.IP = ec.IPAMConfig.IPv4Address
		}
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.HostConfig.NetworkMode == "host" || c.HostConfig.NetworkMode == "none" {
		writeError(w, fmt.Errorf("container %s uses --network %s and cannot join other networks: %w", c.ShortID(), c.HostConfig.NetworkMode, errdefs.ErrConflict))
		return
	}
	for _, x := range c.Networks {
		if x.Name == n.Name {
			// Already connected: compose connects containers it just created.
			w.WriteHeader(200)
			return
		}
	}
	if c.State.Running {
		if _, err := d.net.Connect(c.ID, d.net.NetNSPath(c.ID), n.Name, network.EndpointOpts{IP: a.IP, Aliases: a.Aliases, Name: c.Name, Hostname: c.Config.Hostname}); err != nil {
			writeError(w, err)
			return
		}
	}
	c.Networks = append(c.Networks, a)
	c.Save()
	d.events.publish("network", "connect", n.ID, map[string]string{"name": n.Name, "container": c.ID})
	w.WriteHeader(200)
}

func (d *Daemon) postNetworkDisconnect(w http.ResponseWriter, r *http.Request) {
	var req api.NetworkDisconnectRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	n, err := d.net.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, fmt.Errorf("network %s not found: %w", r.PathValue("id"), errdefs.ErrNotFound))
		return
	}
	c, err := d.ctrs.Get(req.Container)
	if err != nil {
		writeError(w, err)
		return
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	kept := c.Networks[:0]
	found := false
	for _, x := range c.Networks {
		if x.Name == n.Name {
			found = true
			continue
		}
		kept = append(kept, x)
	}
	if !found {
		writeError(w, fmt.Errorf("container %s is not connected to network %s: %w", c.ShortID(), n.Name, errdefs.ErrConflict))
		return
	}
	if c.State.Running {
		if err := d.net.Disconnect(c.ID, n.Name); err != nil && !errdefs.Is(err, errdefs.ErrNotFound) {
			writeError(w, err)
			return
		}
	}
	c.Networks = kept
	c.Save()
	d.events.publish("network", "disconnect", n.ID, map[string]string{"name": n.Name, "container": c.ID})
	w.WriteHeader(200)
}
