package agent

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth/berth/internal/engine/api"
)

// The label and name contract with the engine (see docs/agent.md): every
// container the agent creates carries these labels, so a restarted agent
// finds and adopts what its predecessor started.
const (
	LabelPodName      = "io.kubernetes.pod.name"
	LabelPodNamespace = "io.kubernetes.pod.namespace"
	LabelPodUID       = "io.kubernetes.pod.uid"
	LabelContainer    = "io.kubernetes.container.name"
	LabelKind         = "io.berth.kind" // sandbox, container or init
	LabelRestartCount = "io.berth.restart-count"
	// LabelGrace is the pod's termination grace period in seconds, so
	// containers of a pod that vanished from the API can still be stopped
	// gently.
	LabelGrace = "io.kubernetes.pod.terminationGracePeriod"
	// LabelNode is the node whose agent created the container: an agent
	// collects only its own orphans, so two agents may share an engine.
	LabelNode = "io.berth.node"

	KindSandbox   = "sandbox"
	KindContainer = "container"
	KindInit      = "init"

	// PauseImage is the engine's built-in image for pod sandboxes.
	PauseImage = "berth.local/pause:latest"
	// SandboxName is the container name of a pod's sandbox.
	SandboxName = "POD"
)

// containerName is the engine name of one instance of a pod's container
// (or of its sandbox when c is "POD").
func containerName(pod *corev1.Pod, c string, attempt int) string {
	return fmt.Sprintf("k8s_%s_%s_%s_%s_%d", c, pod.Name, pod.Namespace, pod.UID, attempt)
}

func podLabels(pod *corev1.Pod, container, kind string, attempt int) map[string]string {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	return map[string]string{
		LabelPodName:      pod.Name,
		LabelPodNamespace: pod.Namespace,
		LabelPodUID:       string(pod.UID),
		LabelContainer:    container,
		LabelKind:         kind,
		LabelRestartCount: strconv.Itoa(attempt),
		LabelGrace:        strconv.FormatInt(grace, 10),
		LabelNode:         pod.Spec.NodeName,
	}
}

// podHostname is the hostname containers of the pod see.
func podHostname(pod *corev1.Pod) string {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// sandboxRequest is the create request of a pod's sandbox: the pause
// process holding the network and IPC namespaces, the pod's host ports,
// hostname and resolver configuration (see dnsconfig.go; the pod's
// containers share the sandbox's /etc/resolv.conf with its network).
func sandboxRequest(pod *corev1.Pod, attempt int, d dnsSettings) (api.CreateRequest, error) {
	hc := &api.HostConfig{IpcMode: "shareable"}
	hc.LogConfig = api.LogConfig{Type: "json-file"}
	req := api.CreateRequest{Config: api.Config{Image: PauseImage, Labels: podLabels(pod, SandboxName, KindSandbox, attempt)}, HostConfig: hc}
	cfg, hostDefault, err := d.forPod(pod)
	if err != nil {
		return api.CreateRequest{}, err
	}
	if pod.Spec.HostNetwork {
		hc.NetworkMode = "host"
		if hostDefault {
			return req, nil // the node's own /etc/resolv.conf
		}
	} else {
		if req.Hostname, err = d.podHostnameFQDN(pod); err != nil {
			return api.CreateRequest{}, err
		}
		hc.PortBindings = hostPorts(pod)
	}
	hc.DNS, hc.DNSSearch, hc.DNSOptions = cfg.Nameservers, cfg.Searches, cfg.Options
	return req, nil
}

// hostPorts maps the containers' hostPort declarations to engine port
// bindings.
func hostPorts(pod *corev1.Pod) map[string][]api.PortBinding {
	var pb map[string][]api.PortBinding
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			if pb == nil {
				pb = map[string][]api.PortBinding{}
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			k := fmt.Sprintf("%d/%s", p.ContainerPort, proto)
			pb[k] = append(pb[k], api.PortBinding{HostIP: p.HostIP, HostPort: strconv.Itoa(int(p.HostPort))})
		}
	}
	return pb
}

// containerRequest translates one container of a pod into an engine create
// request. sandboxID is "" when the engine runs pods without sandboxes
// (each container then gets its own network namespace on the bridge).
// env is the resolved environment ("K=V").
func containerRequest(pod *corev1.Pod, c *corev1.Container, kind string, attempt int, sandboxID string, env []string, mounts []api.Mount) (api.CreateRequest, error) {
	cfg := api.Config{
		Image:      c.Image,
		Entrypoint: c.Command,
		Cmd:        c.Args,
		WorkingDir: c.WorkingDir,
		Env:        env,
		Labels:     podLabels(pod, c.Name, kind, attempt),
		Tty:        c.TTY,
		OpenStdin:  c.Stdin,
		StdinOnce:  c.StdinOnce,
	}
	if c.Stdin {
		cfg.AttachStdin = true
	}
	hc := &api.HostConfig{}
	hc.LogConfig, hc.Mounts = api.LogConfig{Type: "json-file"}, mounts
	switch {
	case sandboxID != "":
		hc.NetworkMode = "container:" + sandboxID
		hc.IpcMode = "container:" + sandboxID
		if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
			hc.PidMode = "container:" + sandboxID
		}
	case pod.Spec.HostNetwork:
		hc.NetworkMode = "host"
	default:
		cfg.Hostname = podHostname(pod)
		if kind == KindContainer {
			// Without a sandbox only the container itself can publish its
			// host ports.
			one := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{*c}}}
			hc.PortBindings = hostPorts(one)
		}
	}
	if err := applyResources(hc, c); err != nil {
		return api.CreateRequest{}, err
	}
	if err := applySecurity(&cfg, hc, pod, c); err != nil {
		return api.CreateRequest{}, err
	}
	return api.CreateRequest{Config: cfg, HostConfig: hc}, nil
}

// applyResources turns requests and limits into cgroup settings, as the
// kubelet does: cpu requests become shares (1 cpu = 1024), cpu limits a CFS
// quota per 100 ms period, memory limits the memory limit (no extra swap).
func applyResources(hc *api.HostConfig, c *corev1.Container) error {
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		shares := q.MilliValue() * 1024 / 1000
		if shares < 2 {
			shares = 2
		}
		hc.CPUShares = shares
	} else if _, ok := c.Resources.Limits[corev1.ResourceCPU]; !ok {
		hc.CPUShares = 2 // BestEffort, as the kubelet
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		m := q.MilliValue()
		if m < 10 {
			m = 10 // the kernel's minimum quota is 1 ms per 100 ms
		}
		hc.CPUPeriod = 100000
		hc.CPUQuota = m * 100
		if hc.CPUShares == 2 {
			hc.CPUShares = m * 1024 / 1000
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		if q.Value() < 6<<20 {
			return fmt.Errorf("container %q: resources.limits.memory %s is below the engine's minimum of 6Mi", c.Name, q.String())
		}
		hc.Memory = q.Value()
		hc.MemorySwap = q.Value()
	}
	return nil
}

// applySecurity maps the pod's and the container's securityContext.
func applySecurity(cfg *api.Config, hc *api.HostConfig, pod *corev1.Pod, c *corev1.Container) error {
	var user, group *int64
	var nonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		user, group, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
	}
	sc := c.SecurityContext
	if sc != nil {
		if sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			group = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.Privileged != nil && *sc.Privileged {
			hc.Privileged = true
		}
		if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			hc.ReadonlyRootfs = true
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges")
		}
		if sc.Capabilities != nil {
			for _, a := range sc.Capabilities.Add {
				hc.CapAdd = append(hc.CapAdd, capName(a))
			}
			for _, d := range sc.Capabilities.Drop {
				hc.CapDrop = append(hc.CapDrop, capName(d))
			}
		}
	}
	if user != nil {
		cfg.User = strconv.FormatInt(*user, 10)
		if group != nil {
			cfg.User += ":" + strconv.FormatInt(*group, 10)
		}
	}
	if nonRoot != nil && *nonRoot && user != nil && *user == 0 {
		return fmt.Errorf("container %q: runAsNonRoot is set and runAsUser is 0 (root); give a non-zero runAsUser", c.Name)
	}
	return nil
}

// checkImageUser enforces runAsNonRoot when no runAsUser is given: the
// image's USER must be numeric and non-zero, as the kubelet requires.
func checkImageUser(pod *corev1.Pod, c *corev1.Container, imageUser string) error {
	nonRoot := false
	hasUser := false
	if psc := pod.Spec.SecurityContext; psc != nil {
		nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		hasUser = psc.RunAsUser != nil
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		hasUser = hasUser || sc.RunAsUser != nil
	}
	if !nonRoot || hasUser {
		return nil
	}
	u, _, _ := strings.Cut(imageUser, ":")
	if u == "" || u == "0" || u == "root" {
		return fmt.Errorf("container %q has runAsNonRoot and image will run as root (set securityContext.runAsUser to a non-zero UID)", c.Name)
	}
	if _, err := strconv.Atoi(u); err != nil {
		return fmt.Errorf("container %q has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (set securityContext.runAsUser)", c.Name, u)
	}
	return nil
}

func capName(c corev1.Capability) string {
	s := strings.ToUpper(string(c))
	if s == "ALL" || strings.HasPrefix(s, "CAP_") {
		return s
	}
	return "CAP_" + s
}
