package streaming

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

// Labels of the agent/engine contract: every pod container and sandbox
// carries them.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
	LabelKind          = "io.berth.kind" // sandbox | container | init
	LabelRestartCount  = "io.berth.restart-count"
)

// podRef names a pod (and optionally its UID) in a request path.
type podRef struct{ ns, name, uid string }

func refOf(r *http.Request) podRef {
	return podRef{ns: r.PathValue("ns"), name: r.PathValue("pod"), uid: r.PathValue("uid")}
}

func (p podRef) String() string { return p.ns + "/" + p.name }

// instance is one engine container of a pod container.
type instance struct {
	ID      string
	State   string // running, exited, created…
	Restart int
}

// instances lists the engine containers of a pod's container, newest
// (highest restart count) first. The agent keeps the current instance and
// the previous one.
func (s *Server) instances(ctx context.Context, p podRef, container string) ([]instance, error) {
	labels := []string{LabelPodNamespace + "=" + p.ns, LabelPodName + "=" + p.name, LabelContainerName + "=" + container}
	if p.uid != "" {
		labels = append(labels, LabelPodUID+"="+p.uid)
	}
	list, err := s.list(ctx, labels)
	if err != nil {
		return nil, err
	}
	var out []instance
	for _, c := range list {
		if c.Labels[LabelKind] == "sandbox" {
			continue
		}
		n, _ := strconv.Atoi(c.Labels[LabelRestartCount])
		out = append(out, instance{ID: c.ID, State: c.State, Restart: n})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Restart > out[j].Restart })
	return out, nil
}

// current returns the newest instance of a container.
func (s *Server) current(ctx context.Context, p podRef, container string) (instance, error) {
	ins, err := s.instances(ctx, p, container)
	if err != nil {
		return instance{}, err
	}
	if len(ins) == 0 {
		return instance{}, fmt.Errorf("container %q in pod %q is not running on this node (no engine container carries its labels): %w", container, p, errdefs.ErrNotFound)
	}
	return ins[0], nil
}

func (s *Server) list(ctx context.Context, labels []string) ([]api.ContainerSummary, error) {
	f, _ := json.Marshal(map[string][]string{"label": labels})
	var list []api.ContainerSummary
	if err := s.eng.JSON(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &list); err != nil {
		return nil, fmt.Errorf("listing the engine's containers: %w", err)
	}
	return list, nil
}

// podIP returns the address port-forward dials for a pod: the sandbox's
// bridge IP, or 127.0.0.1 for a pod on the host network.
func (s *Server) podIP(ctx context.Context, p podRef) (string, error) {
	labels := []string{LabelPodNamespace + "=" + p.ns, LabelPodName + "=" + p.name}
	if p.uid != "" {
		labels = append(labels, LabelPodUID+"="+p.uid)
	}
	list, err := s.list(ctx, labels)
	if err != nil {
		return "", err
	}
	// The sandbox holds the network namespace; fall back to any running
	// container of the pod (its network may be its own, the host's, or
	// another container's).
	sort.SliceStable(list, func(i, j int) bool {
		return rank(list[i]) < rank(list[j])
	})
	for _, c := range list {
		if c.State != "running" {
			continue
		}
		ip, err := s.containerIP(ctx, c.ID, 0)
		if err == nil {
			return ip, nil
		}
	}
	return "", fmt.Errorf("pod %q has no running sandbox on this node to forward ports to: %w", p, errdefs.ErrNotFound)
}

func rank(c api.ContainerSummary) int {
	if c.Labels[LabelKind] == "sandbox" {
		return 0
	}
	return 1
}

// containerIP follows a container's network mode to an address.
func (s *Server) containerIP(ctx context.Context, id string, depth int) (string, error) {
	var c api.ContainerJSON
	if err := s.eng.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &c); err != nil {
		return "", err
	}
	mode := ""
	if c.HostConfig != nil {
		mode = c.HostConfig.NetworkMode
	}
	switch {
	case mode == "host":
		return "127.0.0.1", nil
	case strings.HasPrefix(mode, "container:") && depth < 3:
		return s.containerIP(ctx, strings.TrimPrefix(mode, "container:"), depth+1)
	}
	if ns := c.NetworkSettings; ns != nil {
		if net.ParseIP(ns.IPAddress) != nil {
			return ns.IPAddress, nil
		}
		names := make([]string, 0, len(ns.Networks))
		for n := range ns.Networks {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if e := ns.Networks[n]; e != nil && net.ParseIP(e.IPAddress) != nil {
				return e.IPAddress, nil
			}
		}
	}
	return "", fmt.Errorf("container %s has no IP address (network mode %q): %w", id, mode, errdefs.ErrNotFound)
}
