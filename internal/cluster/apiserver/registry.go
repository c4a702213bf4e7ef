package apiserver

import (
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berth/berth/internal/cluster/metricsapi"
)

// resource describes one served resource: its wire identity, its Go type and
// which subresources and semantics apply. Everything generic (storage, REST,
// discovery, OpenAPI) is driven from this table.
type resource struct {
	group, version string
	name           string // plural, URL segment
	singular, kind string
	namespaced     bool
	shortNames     []string
	categories     []string
	newObj         func() runtime.Object
	status         bool     // has /status
	scale          bool     // has /scale (autoscaling/v1 Scale)
	extraSubs      []string // other subresources (pods: binding, log, exec, ...)
	// virtual resources are not stored: only create, answered at once
	// (access reviews).
	virtual bool
	// metrics resources (metrics.k8s.io) are not stored either: get and
	// list are answered from the node agents' usage (metrics.go).
	metrics bool
}

func (r *resource) apiVersion() string {
	if r.group == "" {
		return r.version
	}
	return r.group + "/" + r.version
}

// groupResource is "pods" or "deployments.apps", as Kubernetes names it in errors.
func (r *resource) groupResource() string {
	if r.group == "" {
		return r.name
	}
	return r.name + "." + r.group
}

// prefix is the etcd key prefix of the resource's objects.
func (r *resource) prefix() string {
	if c := r.conv(); c != nil {
		return c.storage().prefix()
	}
	g := r.group
	if g == "" {
		g = "core"
	}
	return "/registry/" + g + "/" + r.version + "/" + r.name + "/"
}

func (r *resource) key(ns, name string) string {
	if !r.namespaced {
		return r.prefix() + "-/" + name
	}
	return r.prefix() + ns + "/" + name
}

func (r *resource) nsPrefix(ns string) string {
	if ns == "" {
		return r.prefix()
	}
	if !r.namespaced {
		return r.prefix() + "-/"
	}
	return r.prefix() + ns + "/"
}

var all = []string{"all"}

var resources = []*resource{
	// core/v1
	{group: "", version: "v1", name: "namespaces", singular: "namespace", kind: "Namespace", shortNames: []string{"ns"}, newObj: func() runtime.Object { return &corev1.Namespace{} }, status: true, extraSubs: []string{"finalize"}},
	{group: "", version: "v1", name: "pods", singular: "pod", kind: "Pod", namespaced: true, shortNames: []string{"po"}, categories: all, newObj: func() runtime.Object { return &corev1.Pod{} }, status: true, extraSubs: []string{"binding", "eviction", "log", "exec", "attach", "portforward", "ephemeralcontainers"}},
	{group: "", version: "v1", name: "nodes", singular: "node", kind: "Node", shortNames: []string{"no"}, newObj: func() runtime.Object { return &corev1.Node{} }, status: true},
	{group: "", version: "v1", name: "services", singular: "service", kind: "Service", namespaced: true, shortNames: []string{"svc"}, categories: all, newObj: func() runtime.Object { return &corev1.Service{} }, status: true},
	{group: "", version: "v1", name: "endpoints", singular: "endpoints", kind: "Endpoints", namespaced: true, shortNames: []string{"ep"}, newObj: func() runtime.Object { return &corev1.Endpoints{} }},
	{group: "", version: "v1", name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, shortNames: []string{"cm"}, newObj: func() runtime.Object { return &corev1.ConfigMap{} }},
	{group: "", version: "v1", name: "secrets", singular: "secret", kind: "Secret", namespaced: true, newObj: func() runtime.Object { return &corev1.Secret{} }},
	{group: "", version: "v1", name: "events", singular: "event", kind: "Event", namespaced: true, shortNames: []string{"ev"}, newObj: func() runtime.Object { return &corev1.Event{} }},
	{group: "", version: "v1", name: "serviceaccounts", singular: "serviceaccount", kind: "ServiceAccount", namespaced: true, shortNames: []string{"sa"}, newObj: func() runtime.Object { return &corev1.ServiceAccount{} }},
	{group: "", version: "v1", name: "persistentvolumes", singular: "persistentvolume", kind: "PersistentVolume", shortNames: []string{"pv"}, newObj: func() runtime.Object { return &corev1.PersistentVolume{} }, status: true},
	{group: "", version: "v1", name: "persistentvolumeclaims", singular: "persistentvolumeclaim", kind: "PersistentVolumeClaim", namespaced: true, shortNames: []string{"pvc"}, newObj: func() runtime.Object { return &corev1.PersistentVolumeClaim{} }, status: true},
	{group: "", version: "v1", name: "resourcequotas", singular: "resourcequota", kind: "ResourceQuota", namespaced: true, shortNames: []string{"quota"}, newObj: func() runtime.Object { return &corev1.ResourceQuota{} }, status: true},
	{group: "", version: "v1", name: "limitranges", singular: "limitrange", kind: "LimitRange", namespaced: true, shortNames: []string{"limits"}, newObj: func() runtime.Object { return &corev1.LimitRange{} }},
	// apps/v1
	{group: "apps", version: "v1", name: "deployments", singular: "deployment", kind: "Deployment", namespaced: true, shortNames: []string{"deploy"}, categories: all, newObj: func() runtime.Object { return &appsv1.Deployment{} }, status: true, scale: true},
	{group: "apps", version: "v1", name: "replicasets", singular: "replicaset", kind: "ReplicaSet", namespaced: true, shortNames: []string{"rs"}, categories: all, newObj: func() runtime.Object { return &appsv1.ReplicaSet{} }, status: true, scale: true},
	{group: "apps", version: "v1", name: "statefulsets", singular: "statefulset", kind: "StatefulSet", namespaced: true, shortNames: []string{"sts"}, categories: all, newObj: func() runtime.Object { return &appsv1.StatefulSet{} }, status: true, scale: true},
	{group: "apps", version: "v1", name: "daemonsets", singular: "daemonset", kind: "DaemonSet", namespaced: true, shortNames: []string{"ds"}, categories: all, newObj: func() runtime.Object { return &appsv1.DaemonSet{} }, status: true},
	{group: "apps", version: "v1", name: "controllerrevisions", singular: "controllerrevision", kind: "ControllerRevision", namespaced: true, newObj: func() runtime.Object { return &appsv1.ControllerRevision{} }},
	// batch/v1
	{group: "batch", version: "v1", name: "jobs", singular: "job", kind: "Job", namespaced: true, categories: all, newObj: func() runtime.Object { return &batchv1.Job{} }, status: true},
	{group: "batch", version: "v1", name: "cronjobs", singular: "cronjob", kind: "CronJob", namespaced: true, shortNames: []string{"cj"}, categories: all, newObj: func() runtime.Object { return &batchv1.CronJob{} }, status: true},
	// autoscaling: v2 is the preferred version (listed first).
	{group: "autoscaling", version: "v2", name: "horizontalpodautoscalers", singular: "horizontalpodautoscaler", kind: "HorizontalPodAutoscaler", namespaced: true, shortNames: []string{"hpa"}, categories: all, newObj: func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} }, status: true},
	{group: "autoscaling", version: "v1", name: "horizontalpodautoscalers", singular: "horizontalpodautoscaler", kind: "HorizontalPodAutoscaler", namespaced: true, shortNames: []string{"hpa"}, categories: all, newObj: func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} }, status: true},
	{group: "coordination.k8s.io", version: "v1", name: "leases", singular: "lease", kind: "Lease", namespaced: true, newObj: func() runtime.Object { return &coordinationv1.Lease{} }},
	{group: "discovery.k8s.io", version: "v1", name: "endpointslices", singular: "endpointslice", kind: "EndpointSlice", namespaced: true, newObj: func() runtime.Object { return &discoveryv1.EndpointSlice{} }},
	{group: "storage.k8s.io", version: "v1", name: "storageclasses", singular: "storageclass", kind: "StorageClass", shortNames: []string{"sc"}, newObj: func() runtime.Object { return &storagev1.StorageClass{} }},
	{group: "authorization.k8s.io", version: "v1", name: "selfsubjectaccessreviews", singular: "selfsubjectaccessreview", kind: "SelfSubjectAccessReview", newObj: func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} }, virtual: true},
	{group: "authentication.k8s.io", version: "v1", name: "selfsubjectreviews", singular: "selfsubjectreview", kind: "SelfSubjectReview", newObj: func() runtime.Object { return &authenticationv1.SelfSubjectReview{} }, virtual: true},
	{group: "events.k8s.io", version: "v1", name: "events", singular: "event", kind: "Event", namespaced: true, shortNames: []string{"ev"}, newObj: func() runtime.Object { return &eventsv1.Event{} }},
	// metrics.k8s.io, as metrics-server serves it (no singular name, no
	// Go object: see metrics.go).
	{group: metricsapi.Group, version: metricsapi.Version, name: "nodes", kind: "NodeMetrics", metrics: true},
	{group: metricsapi.Group, version: metricsapi.Version, name: "pods", kind: "PodMetrics", namespaced: true, metrics: true},
}

// groupOrder is the order groups appear in discovery.
var groupOrder = []string{"", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch", "coordination.k8s.io", "discovery.k8s.io", "storage.k8s.io", metricsapi.Group}

// lookup finds a resource by group, version and plural name.
func lookup(group, version, name string) *resource {
	for _, r := range resources {
		if r.group == group && r.version == version && r.name == name {
			return r
		}
	}
	return nil
}

// versionsOf returns the served versions of a group, preferred first.
func versionsOf(group string) []string {
	var vs []string
	for _, r := range resources {
		if r.group == group {
			found := false
			for _, v := range vs {
				if v == r.version {
					found = true
				}
			}
			if !found {
				vs = append(vs, r.version)
			}
		}
	}
	return vs
}

func resourcesOf(group, version string) []*resource {
	var out []*resource
	for _, r := range resources {
		if r.group == group && r.version == version {
			out = append(out, r)
		}
	}
	return out
}

func hasGroupVersion(group, version string) bool { return len(resourcesOf(group, version)) > 0 }

// byKind finds a resource by group, version and kind.
func byKind(apiVersion, kind string) *resource {
	for _, r := range resources {
		if r.apiVersion() == apiVersion && r.kind == kind {
			return r
		}
	}
	return nil
}
