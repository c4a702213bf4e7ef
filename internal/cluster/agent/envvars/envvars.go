// Package envvars computes a pod container's environment the way the
// kubelet does: envFrom, then env in order (a later definition wins),
// $(VAR) expansion, the downward API (fieldRef, resourceFieldRef) and
// references into ConfigMaps and Secrets. It also expands $(VAR) in a
// container's command and args.
//
// The field and resource look-ups are exported because downwardAPI
// volumes (package volumes) present the same values as files.
package envvars

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Source reads the ConfigMaps and Secrets a pod refers to. A missing
// object must be reported with an error for which
// apierrors.IsNotFound is true, so that optional references can be
// skipped.
type Source interface {
	ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, ns, name string) (*corev1.Secret, error)
}

// ClientSource reads through the API server with a client-go clientset.
func ClientSource(cs kubernetes.Interface) Source { return clientSource{cs} }

type clientSource struct{ cs kubernetes.Interface }

func (s clientSource) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return s.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s clientSource) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return s.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

var _ Source = clientSource{}

// ErrConfig marks an error in the pod's configuration that the user must
// fix (a missing required key or object, a bad field path). The agent
// reports these as CreateContainerConfigError.
var ErrConfig = errors.New("invalid container configuration")

func configErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// objects caches the ConfigMaps and Secrets read during one Resolve, as
// the kubelet does, so that ten keys of one ConfigMap cost one read.
type objects struct {
	src        Source
	ns         string
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

// configMap returns the named ConfigMap, or nil with no error when it
// does not exist and optional is set.
func (o *objects) configMap(ctx context.Context, name string, optional bool) (*corev1.ConfigMap, error) {
	if cm, ok := o.configMaps[name]; ok {
		return cm, nil
	}
	if o.src == nil {
		return nil, fmt.Errorf("configmap %s/%s: no source to read it from", o.ns, name)
	}
	cm, err := o.src.ConfigMap(ctx, o.ns, name)
	if err != nil {
		if isNotFound(err) {
			if optional {
				return nil, nil
			}
			return nil, configErrorf("configmap %q not found in namespace %q", name, o.ns)
		}
		return nil, fmt.Errorf("configmap %s/%s: %w", o.ns, name, err)
	}
	o.configMaps[name] = cm
	return cm, nil
}

func (o *objects) secret(ctx context.Context, name string, optional bool) (*corev1.Secret, error) {
	if s, ok := o.secrets[name]; ok {
		return s, nil
	}
	if o.src == nil {
		return nil, fmt.Errorf("secret %s/%s: no source to read it from", o.ns, name)
	}
	s, err := o.src.Secret(ctx, o.ns, name)
	if err != nil {
		if isNotFound(err) {
			if optional {
				return nil, nil
			}
			return nil, configErrorf("secret %q not found in namespace %q", name, o.ns)
		}
		return nil, fmt.Errorf("secret %s/%s: %w", o.ns, name, err)
	}
	o.secrets[name] = s
	return s, nil
}

// env is an ordered map: the first definition fixes a variable's
// position, a later one replaces its value.
type env struct {
	order  []string
	values map[string]string
}

func (e *env) set(k, v string) {
	if _, ok := e.values[k]; !ok {
		e.order = append(e.order, k)
	}
	e.values[k] = v
}

func (e *env) list() []string {
	out := make([]string, 0, len(e.order))
	for _, k := range e.order {
		out = append(out, k+"="+e.values[k])
	}
	return out
}

// validEnvName reports whether name can be set in a process environment.
// Kubernetes (since 1.34) accepts any printable ASCII except '='; the
// kubelet drops envFrom keys that are not valid names instead of failing.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < ' ' || name[i] > '~' || name[i] == '=' {
			return false
		}
	}
	return true
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func optional(p *bool) bool { return p != nil && *p }

// Resolve returns the container's environment as KEY=VALUE strings in
// definition order: envFrom sources first, then env, a later definition
// of a name replacing an earlier one's value. podIP and hostIP are the
// addresses the pod has now (the pod's status may not carry them yet);
// nodeAllocatable stands in for a resource limit the container does not
// set. An error wrapping ErrConfig means the pod spec refers to
// something missing or invalid; its message names the key and object.
func Resolve(ctx context.Context, src Source, pod *corev1.Pod, c *corev1.Container, podIP, hostIP string, nodeAllocatable corev1.ResourceList) ([]string, error) {
	return ResolveWithServices(ctx, src, pod, c, podIP, hostIP, nodeAllocatable, nil)
}

// ResolveWithServices is Resolve with service-link variables (from
// ServiceEnv), as the kubelet does it: $(VAR) in env values can refer to
// them, a variable the container defines wins, and the rest follow the
// container's own in sorted order.
func ResolveWithServices(ctx context.Context, src Source, pod *corev1.Pod, c *corev1.Container, podIP, hostIP string, nodeAllocatable corev1.ResourceList, serviceEnv map[string]string) ([]string, error) {
	objs := &objects{src: src, ns: pod.Namespace, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	e := &env{values: map[string]string{}}

	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			ref := from.ConfigMapRef
			cm, err := objs.configMap(ctx, ref.Name, optional(ref.Optional))
			if err != nil {
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			if cm == nil {
				continue
			}
			for _, k := range sortedKeys(cm.Data) {
				if name := from.Prefix + k; validEnvName(name) {
					e.set(name, cm.Data[k])
				}
			}
		case from.SecretRef != nil:
			ref := from.SecretRef
			s, err := objs.secret(ctx, ref.Name, optional(ref.Optional))
			if err != nil {
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			if s == nil {
				continue
			}
			for _, k := range sortedKeys(s.Data) {
				if name := from.Prefix + k; validEnvName(name) {
					e.set(name, string(s.Data[k]))
				}
			}
		}
	}

	for _, v := range c.Env {
		switch {
		case v.ValueFrom == nil:
			// $(VAR) refers to variables defined before this one
			// (including envFrom); unknown references stay literal.
			e.set(v.Name, Expand(v.Value, func(name string) (string, bool) {
				if val, ok := e.values[name]; ok {
					return val, true
				}
				val, ok := serviceEnv[name]
				return val, ok
			}))
		case v.ValueFrom.FieldRef != nil:
			val, err := FieldValue(pod, v.ValueFrom.FieldRef.FieldPath, podIP, hostIP)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", v.Name, err)
			}
			e.set(v.Name, val)
		case v.ValueFrom.ResourceFieldRef != nil:
			val, err := ResourceValue(pod, c, v.ValueFrom.ResourceFieldRef, nodeAllocatable)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", v.Name, err)
			}
			e.set(v.Name, val)
		case v.ValueFrom.ConfigMapKeyRef != nil:
			ref := v.ValueFrom.ConfigMapKeyRef
			cm, err := objs.configMap(ctx, ref.Name, optional(ref.Optional))
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", v.Name, err)
			}
			if cm == nil {
				continue
			}
			val, ok := cm.Data[ref.Key]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: %w", v.Name, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name))
			}
			e.set(v.Name, val)
		case v.ValueFrom.SecretKeyRef != nil:
			ref := v.ValueFrom.SecretKeyRef
			s, err := objs.secret(ctx, ref.Name, optional(ref.Optional))
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", v.Name, err)
			}
			if s == nil {
				continue
			}
			val, ok := s.Data[ref.Key]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: %w", v.Name, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name))
			}
			e.set(v.Name, string(val))
		default:
			return nil, fmt.Errorf("env %s: %w", v.Name, configErrorf("valueFrom sets no supported source (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef)"))
		}
	}
	return WithServiceEnv(e.list(), serviceEnv), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ExpandCommand expands $(VAR) references in command and args with the
// container's resolved environment (KEY=VALUE strings), as the kubelet
// does; $$ stands for a literal $ and unknown references stay as typed.
func ExpandCommand(command, args []string, env []string) ([]string, []string) {
	vals := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	mapping := func(name string) (string, bool) { v, ok := vals[name]; return v, ok }
	expand := func(in []string) []string {
		if in == nil {
			return nil
		}
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = Expand(s, mapping)
		}
		return out
	}
	return expand(command), expand(args)
}

// Expand replaces $(NAME) in s with the value lookup returns; a name it
// does not know stays as "$(NAME)". "$$" is an escaped "$", so "$$(X)"
// yields the literal "$(X)". A "$" before anything else, or an
// unterminated "$(", is kept as written. These are the Kubernetes rules.
func Expand(s string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String()
}

// FieldValue returns the downward-API value of a pod field for an
// environment variable: the paths Kubernetes allows in env fieldRef.
// podIP and hostIP override the pod's status when not empty.
func FieldValue(pod *corev1.Pod, path, podIP, hostIP string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return firstIP(hostIP, pod.Status.HostIP, hostIPs(pod)), nil
	case "status.hostIPs":
		return strings.Join(withFirst(firstIP(hostIP, pod.Status.HostIP, nil), hostIPs(pod)), ","), nil
	case "status.podIP":
		return firstIP(podIP, pod.Status.PodIP, podIPs(pod)), nil
	case "status.podIPs":
		return strings.Join(withFirst(firstIP(podIP, pod.Status.PodIP, nil), podIPs(pod)), ","), nil
	}
	return "", configErrorf("unsupported fieldRef fieldPath %q (want metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP or status.podIPs)", path)
}

// firstIP picks the address the agent knows now, else the status's.
func firstIP(given, status string, list []string) string {
	switch {
	case given != "":
		return given
	case status != "":
		return status
	case len(list) > 0:
		return list[0]
	}
	return ""
}

func podIPs(pod *corev1.Pod) []string {
	ips := make([]string, 0, len(pod.Status.PodIPs))
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	return ips
}

func hostIPs(pod *corev1.Pod) []string {
	ips := make([]string, 0, len(pod.Status.HostIPs))
	for _, ip := range pod.Status.HostIPs {
		ips = append(ips, ip.IP)
	}
	return ips
}

// withFirst puts primary first in ips (the primary address of a dual
// stack pod leads the list) unless it is empty or already there.
func withFirst(primary string, ips []string) []string {
	if primary == "" {
		return ips
	}
	out := []string{primary}
	for _, ip := range ips {
		if ip != primary {
			out = append(out, ip)
		}
	}
	return out
}

// subscript parses `prefix['key']` (or with double quotes).
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", false
	}
	rest = rest[:len(rest)-1]
	if len(rest) >= 2 && (rest[0] == '\'' || rest[0] == '"') && rest[len(rest)-1] == rest[0] {
		return rest[1 : len(rest)-1], true
	}
	return "", false
}

// ResourceValue returns the value of a resourceFieldRef for container c
// (or the container the reference names), divided by the divisor and
// rounded up as the kubelet does. A limit the container does not set is
// the node's allocatable amount; a request it does not set is its limit
// (the API server's defaulting), else zero.
func ResourceValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector, nodeAllocatable corev1.ResourceList) (string, error) {
	if ref.ContainerName != "" && (c == nil || c.Name != ref.ContainerName) {
		c = findContainer(pod, ref.ContainerName)
		if c == nil {
			return "", configErrorf("resourceFieldRef: no container %q in pod %s/%s", ref.ContainerName, pod.Namespace, pod.Name)
		}
	}
	if c == nil {
		return "", configErrorf("resourceFieldRef %q: containerName is required here", ref.Resource)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") || name == "" {
		return "", configErrorf("unsupported resourceFieldRef resource %q (want limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory or requests.ephemeral-storage)", ref.Resource)
	}
	rn := corev1.ResourceName(name)
	if rn != corev1.ResourceCPU && rn != corev1.ResourceMemory && rn != corev1.ResourceEphemeralStorage && !strings.HasPrefix(name, corev1.ResourceHugePagesPrefix) {
		return "", configErrorf("unsupported resourceFieldRef resource %q (want limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory or requests.ephemeral-storage)", ref.Resource)
	}
	var q resource.Quantity
	limit, hasLimit := c.Resources.Limits[rn]
	if kind == "limits" {
		switch {
		case hasLimit:
			q = limit
		case rn == corev1.ResourceCPU || rn == corev1.ResourceMemory || rn == corev1.ResourceEphemeralStorage:
			q = nodeAllocatable[rn]
		}
	} else {
		if req, ok := c.Resources.Requests[rn]; ok {
			q = req
		} else if hasLimit {
			q = limit
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if rn == corev1.ResourceCPU {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	if divisor.Value() == 0 {
		return "", configErrorf("resourceFieldRef %q: divisor %s is too small for this resource", ref.Resource, divisor.String())
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}
