package apiserver

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

type col struct {
	name, typ string
	priority  int32
}

var nameCol = col{"Name", "string", 0}
var ageCol = col{"Age", "string", 0}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// firstOfMany joins the first max items and counts the rest, as kubectl's
// columns do ("a,b,c + 4 more...").
func firstOfMany(items []string, max int) string {
	if len(items) <= max {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s + %d more...", strings.Join(items[:max], ","), len(items)-max)
}

func orUnset(s string) string {
	if s == "" {
		return "<unset>"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func podTemplateCells(t *corev1.PodTemplateSpec) (string, string) {
	var names, images []string
	for _, c := range t.Spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

func selectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<error>"
	}
	return orNone(sel.String())
}

func i32(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func orUnsetPtr(p *string) string {
	if p == nil {
		return "<unset>"
	}
	return *p
}

func volumeMode(m *corev1.PersistentVolumeMode) string {
	if m == nil {
		return "<unset>"
	}
	return string(*m)
}

// accessModes abbreviates access modes in kubectl's fixed order.
func accessModes(ms []corev1.PersistentVolumeAccessMode) string {
	var out []string
	for _, m := range []struct {
		mode  corev1.PersistentVolumeAccessMode
		short string
	}{{corev1.ReadWriteOnce, "RWO"}, {corev1.ReadOnlyMany, "ROX"}, {corev1.ReadWriteMany, "RWX"}, {corev1.ReadWriteOncePod, "RWOP"}} {
		for _, have := range ms {
			if have == m.mode {
				out = append(out, m.short)
				break
			}
		}
	}
	return strings.Join(out, ",")
}

// storageClass is the class of a volume or claim: the beta annotation
// wins over the field, as in Kubernetes.
func storageClass(ann map[string]string, field *string) string {
	if c, ok := ann[corev1.BetaStorageClassAnnotation]; ok {
		return c
	}
	if field != nil {
		return *field
	}
	return ""
}

// hpaTargets renders an HPA's metrics as "current/target" the way
// kubectl does, at most two then "+ N more...".
func hpaTargets(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	var list []string
	for i, m := range specs {
		var st *autoscalingv2.MetricStatus
		if i < len(statuses) {
			st = &statuses[i]
		}
		cur := "<unknown>"
		switch m.Type {
		case autoscalingv2.ResourceMetricSourceType, autoscalingv2.ContainerResourceMetricSourceType:
			name, target := "", autoscalingv2.MetricTarget{}
			var current *autoscalingv2.MetricValueStatus
			if m.Resource != nil {
				name, target = string(m.Resource.Name), m.Resource.Target
				if st != nil && st.Resource != nil {
					current = &st.Resource.Current
				}
			} else if m.ContainerResource != nil {
				name, target = string(m.ContainerResource.Name), m.ContainerResource.Target
				if st != nil && st.ContainerResource != nil {
					current = &st.ContainerResource.Current
				}
			}
			if target.AverageValue != nil {
				if current != nil && current.AverageValue != nil {
					cur = current.AverageValue.String()
				}
				list = append(list, fmt.Sprintf("%s: %s/%s", name, cur, target.AverageValue.String()))
				continue
			}
			if current != nil && current.AverageUtilization != nil {
				cur = fmt.Sprintf("%d%%", *current.AverageUtilization)
			}
			t := "<auto>"
			if target.AverageUtilization != nil {
				t = fmt.Sprintf("%d%%", *target.AverageUtilization)
			}
			list = append(list, fmt.Sprintf("%s: %s/%s", name, cur, t))
		case autoscalingv2.PodsMetricSourceType:
			if st != nil && st.Pods != nil && st.Pods.Current.AverageValue != nil {
				cur = st.Pods.Current.AverageValue.String()
			}
			t := ""
			if m.Pods != nil && m.Pods.Target.AverageValue != nil {
				t = m.Pods.Target.AverageValue.String()
			}
			list = append(list, cur+"/"+t)
		default:
			list = append(list, "<unknown type>")
		}
	}
	if len(list) > 2 {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:2], ", "), len(list)-2)
	}
	return strings.Join(list, ", ")
}

// columnsFor returns the column definitions and the row cells function of a kind.
func columnsFor(r *resource) ([]col, func(runtime.Object) []any) {
	switch r.kind {
	case "Pod":
		return []col{nameCol, {"Ready", "string", 0}, {"Status", "string", 0}, {"Restarts", "string", 0}, ageCol, {"IP", "string", 1}, {"Node", "string", 1}, {"Nominated Node", "string", 1}, {"Readiness Gates", "string", 1}},
			func(o runtime.Object) []any {
				p := o.(*corev1.Pod)
				ready, restarts := 0, int32(0)
				for _, cs := range p.Status.ContainerStatuses {
					if cs.Ready {
						ready++
					}
					restarts += cs.RestartCount
				}
				status := string(p.Status.Phase)
				if p.Status.Reason != "" {
					status = p.Status.Reason
				}
				for _, cs := range p.Status.ContainerStatuses {
					if cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
						status = cs.State.Waiting.Reason
					}
				}
				if p.DeletionTimestamp != nil {
					status = "Terminating"
				}
				return []any{p.Name, fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), status, fmt.Sprint(restarts), age(p.CreationTimestamp), orNone(p.Status.PodIP), orNone(p.Spec.NodeName), orNone(p.Status.NominatedNodeName), "<none>"}
			}
	case "Deployment":
		return []col{nameCol, {"Ready", "string", 0}, {"Up-to-date", "integer", 0}, {"Available", "integer", 0}, ageCol, {"Containers", "string", 1}, {"Images", "string", 1}, {"Selector", "string", 1}},
			func(o runtime.Object) []any {
				d := o.(*appsv1.Deployment)
				c, im := podTemplateCells(&d.Spec.Template)
				return []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, i32(d.Spec.Replicas)), d.Status.UpdatedReplicas, d.Status.AvailableReplicas, age(d.CreationTimestamp), c, im, selectorString(d.Spec.Selector)}
			}
	case "ReplicaSet":
		return []col{nameCol, {"Desired", "integer", 0}, {"Current", "integer", 0}, {"Ready", "integer", 0}, ageCol, {"Containers", "string", 1}, {"Images", "string", 1}, {"Selector", "string", 1}},
			func(o runtime.Object) []any {
				d := o.(*appsv1.ReplicaSet)
				c, im := podTemplateCells(&d.Spec.Template)
				return []any{d.Name, i32(d.Spec.Replicas), d.Status.Replicas, d.Status.ReadyReplicas, age(d.CreationTimestamp), c, im, selectorString(d.Spec.Selector)}
			}
	case "StatefulSet":
		return []col{nameCol, {"Ready", "string", 0}, ageCol, {"Containers", "string", 1}, {"Images", "string", 1}},
			func(o runtime.Object) []any {
				d := o.(*appsv1.StatefulSet)
				c, im := podTemplateCells(&d.Spec.Template)
				return []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, i32(d.Spec.Replicas)), age(d.CreationTimestamp), c, im}
			}
	case "DaemonSet":
		return []col{nameCol, {"Desired", "integer", 0}, {"Current", "integer", 0}, {"Ready", "integer", 0}, {"Up-to-date", "integer", 0}, {"Available", "integer", 0}, {"Node Selector", "string", 0}, ageCol, {"Containers", "string", 1}, {"Images", "string", 1}, {"Selector", "string", 1}},
			func(o runtime.Object) []any {
				d := o.(*appsv1.DaemonSet)
				c, im := podTemplateCells(&d.Spec.Template)
				var ns []string
				for k, v := range d.Spec.Template.Spec.NodeSelector {
					ns = append(ns, k+"="+v)
				}
				sort.Strings(ns)
				return []any{d.Name, d.Status.DesiredNumberScheduled, d.Status.CurrentNumberScheduled, d.Status.NumberReady, d.Status.UpdatedNumberScheduled, d.Status.NumberAvailable, orNone(strings.Join(ns, ",")), age(d.CreationTimestamp), c, im, selectorString(d.Spec.Selector)}
			}
	case "Service":
		return []col{nameCol, {"Type", "string", 0}, {"Cluster-IP", "string", 0}, {"External-IP", "string", 0}, {"Port(s)", "string", 0}, ageCol, {"Selector", "string", 1}},
			func(o runtime.Object) []any {
				s := o.(*corev1.Service)
				var ports []string
				for _, p := range s.Spec.Ports {
					if p.NodePort != 0 {
						ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
					} else {
						ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
					}
				}
				var sel []string
				for k, v := range s.Spec.Selector {
					sel = append(sel, k+"="+v)
				}
				sort.Strings(sel)
				ext := strings.Join(s.Spec.ExternalIPs, ",")
				if s.Spec.Type == corev1.ServiceTypeExternalName {
					ext = s.Spec.ExternalName
				}
				return []any{s.Name, string(s.Spec.Type), orNone(s.Spec.ClusterIP), orNone(ext), orNone(strings.Join(ports, ",")), age(s.CreationTimestamp), orNone(strings.Join(sel, ","))}
			}
	case "Namespace":
		return []col{nameCol, {"Status", "string", 0}, ageCol}, func(o runtime.Object) []any {
			n := o.(*corev1.Namespace)
			return []any{n.Name, string(n.Status.Phase), age(n.CreationTimestamp)}
		}
	case "Node":
		return []col{nameCol, {"Status", "string", 0}, {"Roles", "string", 0}, ageCol, {"Version", "string", 0}, {"Internal-IP", "string", 1}, {"OS-Image", "string", 1}, {"Kernel-Version", "string", 1}, {"Container-Runtime", "string", 1}},
			func(o runtime.Object) []any {
				n := o.(*corev1.Node)
				status := "Unknown"
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady {
						status = map[bool]string{true: "Ready", false: "NotReady"}[c.Status == corev1.ConditionTrue]
					}
				}
				if n.Spec.Unschedulable {
					status += ",SchedulingDisabled"
				}
				var roles []string
				for k := range n.Labels {
					if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
						roles = append(roles, r)
					}
				}
				sort.Strings(roles)
				ip := ""
				for _, a := range n.Status.Addresses {
					if a.Type == corev1.NodeInternalIP {
						ip = a.Address
					}
				}
				ni := n.Status.NodeInfo
				return []any{n.Name, status, orNone(strings.Join(roles, ",")), age(n.CreationTimestamp), ni.KubeletVersion, orNone(ip), orNone(ni.OSImage), orNone(ni.KernelVersion), orNone(ni.ContainerRuntimeVersion)}
			}
	case "ConfigMap":
		return []col{nameCol, {"Data", "integer", 0}, ageCol}, func(o runtime.Object) []any {
			c := o.(*corev1.ConfigMap)
			return []any{c.Name, len(c.Data) + len(c.BinaryData), age(c.CreationTimestamp)}
		}
	case "Secret":
		return []col{nameCol, {"Type", "string", 0}, {"Data", "integer", 0}, ageCol}, func(o runtime.Object) []any {
			c := o.(*corev1.Secret)
			return []any{c.Name, string(c.Type), len(c.Data), age(c.CreationTimestamp)}
		}
	case "Job":
		return []col{nameCol, {"Status", "string", 0}, {"Completions", "string", 0}, {"Duration", "string", 0}, ageCol, {"Containers", "string", 1}, {"Images", "string", 1}},
			func(o runtime.Object) []any {
				j := o.(*batchv1.Job)
				c, im := podTemplateCells(&j.Spec.Template)
				// kubectl's order: terminal conditions, then deletion, then
				// the interim ones.
				status := "Running"
				has := map[batchv1.JobConditionType]bool{}
				for _, cond := range j.Status.Conditions {
					has[cond.Type] = cond.Status == corev1.ConditionTrue
				}
				switch {
				case has[batchv1.JobComplete]:
					status = "Complete"
				case has[batchv1.JobFailed]:
					status = "Failed"
				case j.DeletionTimestamp != nil:
					status = "Terminating"
				case has[batchv1.JobFailureTarget]:
					status = "FailureTarget"
				case has[batchv1.JobSuccessCriteriaMet]:
					status = "SuccessCriteriaMet"
				case has[batchv1.JobSuspended]:
					status = "Suspended"
				}
				completions := fmt.Sprintf("%d/1", j.Status.Succeeded)
				switch {
				case j.Spec.Completions != nil:
					completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
				case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
					completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
				}
				dur := ""
				if j.Status.StartTime != nil {
					end := time.Now()
					if j.Status.CompletionTime != nil {
						end = j.Status.CompletionTime.Time
					}
					dur = duration.HumanDuration(end.Sub(j.Status.StartTime.Time))
				}
				return []any{j.Name, status, completions, dur, age(j.CreationTimestamp), c, im}
			}
	case "CronJob":
		return []col{nameCol, {"Schedule", "string", 0}, {"Timezone", "string", 0}, {"Suspend", "boolean", 0}, {"Active", "integer", 0}, {"Last Schedule", "string", 0}, ageCol,
				{"Containers", "string", 1}, {"Images", "string", 1}, {"Selector", "string", 1}},
			func(o runtime.Object) []any {
				c := o.(*batchv1.CronJob)
				last := "<none>"
				if c.Status.LastScheduleTime != nil {
					last = age(*c.Status.LastScheduleTime)
				}
				tz := "<none>"
				if c.Spec.TimeZone != nil {
					tz = *c.Spec.TimeZone
				}
				cs, im := podTemplateCells(&c.Spec.JobTemplate.Spec.Template)
				return []any{c.Name, c.Spec.Schedule, tz, c.Spec.Suspend != nil && *c.Spec.Suspend, len(c.Status.Active), last, age(c.CreationTimestamp), cs, im, selectorString(c.Spec.JobTemplate.Spec.Selector)}
			}
	case "Event":
		if r.group == "" {
			return []col{{"Last Seen", "string", 0}, {"Type", "string", 0}, {"Reason", "string", 0}, {"Object", "string", 0}, {"Message", "string", 0}},
				func(o runtime.Object) []any {
					e := o.(*corev1.Event)
					t := e.LastTimestamp
					if t.IsZero() {
						t = metav1.NewTime(e.EventTime.Time)
					}
					if t.IsZero() {
						t = e.CreationTimestamp
					}
					return []any{age(t), e.Type, e.Reason, strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name, e.Message}
				}
		}
		return []col{{"Last Seen", "string", 0}, {"Type", "string", 0}, {"Reason", "string", 0}, {"Object", "string", 0}, {"Message", "string", 0}},
			func(o runtime.Object) []any {
				e := o.(*eventsv1.Event)
				return []any{age(e.CreationTimestamp), e.Type, e.Reason, strings.ToLower(e.Regarding.Kind) + "/" + e.Regarding.Name, e.Note}
			}
	case "Lease":
		return []col{nameCol, {"Holder", "string", 0}, ageCol}, func(o runtime.Object) []any {
			l := o.(*coordinationv1.Lease)
			h := ""
			if l.Spec.HolderIdentity != nil {
				h = *l.Spec.HolderIdentity
			}
			return []any{l.Name, h, age(l.CreationTimestamp)}
		}
	case "Endpoints":
		return []col{nameCol, {"Endpoints", "string", 0}, ageCol}, func(o runtime.Object) []any {
			e := o.(*corev1.Endpoints)
			// Ready addresses, port-major as kubectl prints them; a
			// headless Service without ports lists bare addresses.
			var eps []string
			for _, s := range e.Subsets {
				if len(s.Ports) == 0 {
					for _, a := range s.Addresses {
						eps = append(eps, a.IP)
					}
					continue
				}
				for _, p := range s.Ports {
					for _, a := range s.Addresses {
						eps = append(eps, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
					}
				}
			}
			return []any{e.Name, orNone(firstOfMany(eps, 3)), age(e.CreationTimestamp)}
		}
	case "EndpointSlice":
		return []col{nameCol, {"AddressType", "string", 0}, {"Ports", "string", 0}, {"Endpoints", "string", 0}, ageCol}, func(o runtime.Object) []any {
			e := o.(*discoveryv1.EndpointSlice)
			var ports, eps []string
			for _, p := range e.Ports {
				switch {
				case p.Port != nil:
					ports = append(ports, strconv.Itoa(int(*p.Port)))
				case p.Name != nil:
					ports = append(ports, *p.Name)
				default:
					ports = append(ports, "*") // every port
				}
			}
			for _, ep := range e.Endpoints {
				eps = append(eps, ep.Addresses...)
			}
			return []any{e.Name, string(e.AddressType), orUnset(firstOfMany(ports, 3)), orUnset(firstOfMany(eps, 3)), age(e.CreationTimestamp)}
		}
	case "ServiceAccount":
		return []col{nameCol, {"Secrets", "integer", 0}, ageCol}, func(o runtime.Object) []any {
			s := o.(*corev1.ServiceAccount)
			return []any{s.Name, len(s.Secrets), age(s.CreationTimestamp)}
		}
	case "PersistentVolume":
		return []col{nameCol, {"Capacity", "string", 0}, {"Access Modes", "string", 0}, {"Reclaim Policy", "string", 0}, {"Status", "string", 0}, {"Claim", "string", 0}, {"StorageClass", "string", 0}, {"VolumeAttributesClass", "string", 0}, {"Reason", "string", 0}, ageCol, {"VolumeMode", "string", 1}},
			func(o runtime.Object) []any {
				p := o.(*corev1.PersistentVolume)
				claim := ""
				if p.Spec.ClaimRef != nil {
					claim = p.Spec.ClaimRef.Namespace + "/" + p.Spec.ClaimRef.Name
				}
				q := p.Spec.Capacity[corev1.ResourceStorage]
				phase := string(p.Status.Phase)
				if p.DeletionTimestamp != nil {
					phase = "Terminating"
				}
				return []any{p.Name, q.String(), accessModes(p.Spec.AccessModes), string(p.Spec.PersistentVolumeReclaimPolicy), phase, claim,
					storageClass(p.Annotations, &p.Spec.StorageClassName), orUnsetPtr(p.Spec.VolumeAttributesClassName), p.Status.Reason, age(p.CreationTimestamp), volumeMode(p.Spec.VolumeMode)}
			}
	case "PersistentVolumeClaim":
		return []col{nameCol, {"Status", "string", 0}, {"Volume", "string", 0}, {"Capacity", "string", 0}, {"Access Modes", "string", 0}, {"StorageClass", "string", 0}, {"VolumeAttributesClass", "string", 0}, ageCol, {"VolumeMode", "string", 1}},
			func(o runtime.Object) []any {
				p := o.(*corev1.PersistentVolumeClaim)
				phase := string(p.Status.Phase)
				if p.DeletionTimestamp != nil {
					phase = "Terminating"
				}
				// As kubectl: capacity and modes are the bound volume's.
				capacity, modes := "", ""
				if p.Spec.VolumeName != "" {
					q := p.Status.Capacity[corev1.ResourceStorage]
					capacity, modes = q.String(), accessModes(p.Status.AccessModes)
				}
				return []any{p.Name, phase, p.Spec.VolumeName, capacity, modes, storageClass(p.Annotations, p.Spec.StorageClassName), orUnsetPtr(p.Spec.VolumeAttributesClassName), age(p.CreationTimestamp), volumeMode(p.Spec.VolumeMode)}
			}
	case "StorageClass":
		return []col{nameCol, {"Provisioner", "string", 0}, {"ReclaimPolicy", "string", 0}, {"VolumeBindingMode", "string", 0}, {"AllowVolumeExpansion", "string", 0}, ageCol},
			func(o runtime.Object) []any {
				sc := o.(*storagev1.StorageClass)
				name := sc.Name
				if isDefaultClass(sc) {
					name += " (default)" // as kubectl prints the default class
				}
				reclaim, mode, expand := "Delete", "Immediate", false
				if sc.ReclaimPolicy != nil {
					reclaim = string(*sc.ReclaimPolicy)
				}
				if sc.VolumeBindingMode != nil {
					mode = string(*sc.VolumeBindingMode)
				}
				if sc.AllowVolumeExpansion != nil {
					expand = *sc.AllowVolumeExpansion
				}
				return []any{name, sc.Provisioner, reclaim, mode, strconv.FormatBool(expand), age(sc.CreationTimestamp)}
			}
	case "ResourceQuota":
		// As kubectl: "resource: used/hard" from status (the quota
		// controller's view), limits.* in their own column.
		return []col{nameCol, ageCol, {"Request", "string", 0}, {"Limit", "string", 0}}, func(o runtime.Object) []any {
			q := o.(*corev1.ResourceQuota)
			names := make([]string, 0, len(q.Status.Hard))
			for n := range q.Status.Hard {
				names = append(names, string(n))
			}
			sort.Strings(names)
			var req, lim []string
			for _, n := range names {
				used, hard := q.Status.Used[corev1.ResourceName(n)], q.Status.Hard[corev1.ResourceName(n)]
				cell := fmt.Sprintf("%s: %s/%s", n, used.String(), hard.String())
				if strings.HasPrefix(n, "limits.") {
					lim = append(lim, cell)
				} else {
					req = append(req, cell)
				}
			}
			return []any{q.Name, age(q.CreationTimestamp), strings.Join(req, ", "), strings.Join(lim, ", ")}
		}
	case "ControllerRevision":
		return []col{nameCol, {"Controller", "string", 0}, {"Revision", "integer", 0}, ageCol}, func(o runtime.Object) []any {
			c := o.(*appsv1.ControllerRevision)
			ctrl := "<none>"
			if ref := metav1.GetControllerOf(c); ref != nil {
				gk := ref.Kind
				if g := strings.SplitN(ref.APIVersion, "/", 2); len(g) == 2 {
					gk += "." + g[0]
				}
				ctrl = strings.ToLower(gk) + "/" + ref.Name
			}
			return []any{c.Name, ctrl, c.Revision, age(c.CreationTimestamp)}
		}
	case "HorizontalPodAutoscaler":
		return []col{nameCol, {"Reference", "string", 0}, {"Targets", "string", 0}, {"MinPods", "string", 0}, {"MaxPods", "integer", 0}, {"Replicas", "integer", 0}, ageCol}, func(o runtime.Object) []any {
			minPods := func(p *int32) string {
				if p == nil {
					return "<unset>"
				}
				return fmt.Sprint(*p)
			}
			switch h := o.(type) {
			case *autoscalingv2.HorizontalPodAutoscaler:
				return []any{h.Name, h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name, hpaTargets(h.Spec.Metrics, h.Status.CurrentMetrics), minPods(h.Spec.MinReplicas), h.Spec.MaxReplicas, h.Status.CurrentReplicas, age(h.CreationTimestamp)}
			case *autoscalingv1.HorizontalPodAutoscaler:
				targets := "<none>"
				if t := h.Spec.TargetCPUUtilizationPercentage; t != nil {
					cur := "<unknown>"
					if c := h.Status.CurrentCPUUtilizationPercentage; c != nil {
						cur = fmt.Sprintf("%d%%", *c)
					}
					targets = fmt.Sprintf("cpu: %s/%d%%", cur, *t)
				}
				return []any{h.Name, h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name, targets, minPods(h.Spec.MinReplicas), h.Spec.MaxReplicas, h.Status.CurrentReplicas, age(h.CreationTimestamp)}
			}
			return nil
		}
	}
	return []col{nameCol, {"Created At", "date", 0}}, func(o runtime.Object) []any {
		a := accessor(o)
		return []any{a.GetName(), a.GetCreationTimestamp().UTC().Format(time.RFC3339)}
	}
}

// table renders objects as a meta.k8s.io Table.
func (s *Server) table(r *resource, objs []runtime.Object, rv, cont, version, includeObject string) *metav1.Table {
	cols, cells := columnsFor(r)
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/" + version}}
	t.ResourceVersion, t.Continue = rv, cont
	for _, c := range cols {
		cd := metav1.TableColumnDefinition{Name: c.name, Type: c.typ, Priority: c.priority}
		if c.name == "Name" {
			cd.Format = "name"
			cd.Description = "Name must be unique within a namespace."
		}
		t.ColumnDefinitions = append(t.ColumnDefinitions, cd)
	}
	t.Rows = []metav1.TableRow{}
	for _, o := range objs {
		row := metav1.TableRow{Cells: cells(o)}
		switch includeObject {
		case "None":
		case "Object":
			setTypeMeta(r, o)
			b, _ := json.Marshal(o)
			row.Object.Raw = b
		default:
			a := accessor(o)
			pm := metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}}
			pm.ObjectMeta = metav1.ObjectMeta{Name: a.GetName(), Namespace: a.GetNamespace(), UID: a.GetUID(), ResourceVersion: a.GetResourceVersion(), Generation: a.GetGeneration(),
				CreationTimestamp: a.GetCreationTimestamp(), DeletionTimestamp: a.GetDeletionTimestamp(), Labels: a.GetLabels(), Annotations: a.GetAnnotations(), OwnerReferences: a.GetOwnerReferences(), Finalizers: a.GetFinalizers()}
			b, _ := json.Marshal(pm)
			row.Object.Raw = b
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}
