package apiserver

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	storagev1 "k8s.io/api/storage/v1"

	"github.com/berth/berth/internal/cluster/cron"
)

func ptr[T any](v T) *T { return &v }

// applyDefaults fills the defaults Kubernetes applies to the common types.
func applyDefaults(obj runtime.Object) {
	defaultEndpoints(obj)
	switch o := obj.(type) {
	case *corev1.Pod:
		defaultPodSpec(&o.Spec)
	case *corev1.Service:
		if o.Spec.Type == "" {
			o.Spec.Type = corev1.ServiceTypeClusterIP
		}
		if o.Spec.SessionAffinity == "" {
			o.Spec.SessionAffinity = corev1.ServiceAffinityNone
		}
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			if p.Protocol == "" {
				p.Protocol = corev1.ProtocolTCP
			}
			if p.TargetPort == (intstr.IntOrString{}) {
				p.TargetPort = intstr.FromInt32(p.Port)
			}
		}
		if o.Spec.Type != corev1.ServiceTypeExternalName && o.Spec.InternalTrafficPolicy == nil {
			o.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyCluster)
		}
	case *corev1.Secret:
		if o.Type == "" {
			o.Type = corev1.SecretTypeOpaque
		}
		// As Kubernetes' v1 conversion: stringData is write-only, merged
		// into data (winning over it) and never stored or returned.
		for k, v := range o.StringData {
			if o.Data == nil {
				o.Data = map[string][]byte{}
			}
			o.Data[k] = []byte(v)
		}
		o.StringData = nil
	case *corev1.Namespace:
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels["kubernetes.io/metadata.name"] = o.Name
	case *appsv1.Deployment:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr(int32(1))
		}
		if o.Spec.Strategy.Type == "" {
			o.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
		}
		if o.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType && o.Spec.Strategy.RollingUpdate == nil {
			q := intstr.FromString("25%")
			o.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: &q, MaxSurge: &q}
		}
		if o.Spec.RevisionHistoryLimit == nil {
			o.Spec.RevisionHistoryLimit = ptr(int32(10))
		}
		if o.Spec.ProgressDeadlineSeconds == nil {
			o.Spec.ProgressDeadlineSeconds = ptr(int32(600))
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.ReplicaSet:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr(int32(1))
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.StatefulSet:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr(int32(1))
		}
		if o.Spec.PodManagementPolicy == "" {
			o.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
		}
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		}
		if o.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
			if o.Spec.UpdateStrategy.RollingUpdate == nil {
				o.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
			}
			if o.Spec.UpdateStrategy.RollingUpdate.Partition == nil {
				o.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(0))
			}
		}
		if o.Spec.RevisionHistoryLimit == nil {
			o.Spec.RevisionHistoryLimit = ptr(int32(10))
		}
		if o.Spec.PersistentVolumeClaimRetentionPolicy == nil {
			o.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
		}
		if rp := o.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil {
			if rp.WhenDeleted == "" {
				rp.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
			}
			if rp.WhenScaled == "" {
				rp.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
			}
		}
		for i := range o.Spec.VolumeClaimTemplates {
			if o.Spec.VolumeClaimTemplates[i].Spec.VolumeMode == nil {
				o.Spec.VolumeClaimTemplates[i].Spec.VolumeMode = ptr(corev1.PersistentVolumeFilesystem)
			}
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.DaemonSet:
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
		}
		if o.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && o.Spec.UpdateStrategy.RollingUpdate == nil {
			one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
			o.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one, MaxSurge: &zero}
		}
		if o.Spec.RevisionHistoryLimit == nil {
			o.Spec.RevisionHistoryLimit = ptr(int32(10))
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *batchv1.Job:
		// As upstream: a Job with parallelism but no completions is a
		// work queue and keeps completions unset.
		if o.Spec.Completions == nil && o.Spec.Parallelism == nil {
			o.Spec.Completions = ptr(int32(1))
		}
		if o.Spec.Parallelism == nil {
			o.Spec.Parallelism = ptr(int32(1))
		}
		if o.Spec.BackoffLimit == nil {
			o.Spec.BackoffLimit = ptr(int32(6))
		}
		if o.Spec.CompletionMode == nil {
			o.Spec.CompletionMode = ptr(batchv1.NonIndexedCompletion)
		}
		if o.Spec.Suspend == nil {
			o.Spec.Suspend = ptr(false)
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *autoscalingv2.HorizontalPodAutoscaler:
		if o.Spec.MinReplicas == nil {
			o.Spec.MinReplicas = ptr(int32(1))
		}
	case *autoscalingv1.HorizontalPodAutoscaler:
		if o.Spec.MinReplicas == nil {
			o.Spec.MinReplicas = ptr(int32(1))
		}
	case *corev1.PersistentVolume:
		if o.Spec.PersistentVolumeReclaimPolicy == "" {
			o.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
		}
		if o.Spec.VolumeMode == nil {
			o.Spec.VolumeMode = ptr(corev1.PersistentVolumeFilesystem)
		}
		if o.Status.Phase == "" {
			o.Status.Phase = corev1.VolumePending
		}
	case *corev1.PersistentVolumeClaim:
		if o.Spec.VolumeMode == nil {
			o.Spec.VolumeMode = ptr(corev1.PersistentVolumeFilesystem)
		}
		if o.Status.Phase == "" {
			o.Status.Phase = corev1.ClaimPending
		}
	case *storagev1.StorageClass:
		if o.ReclaimPolicy == nil {
			o.ReclaimPolicy = ptr(corev1.PersistentVolumeReclaimDelete)
		}
		if o.VolumeBindingMode == nil {
			o.VolumeBindingMode = ptr(storagev1.VolumeBindingImmediate)
		}
	case *batchv1.CronJob:
		if o.Spec.ConcurrencyPolicy == "" {
			o.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
		}
		if o.Spec.Suspend == nil {
			o.Spec.Suspend = ptr(false)
		}
		if o.Spec.SuccessfulJobsHistoryLimit == nil {
			o.Spec.SuccessfulJobsHistoryLimit = ptr(int32(3))
		}
		if o.Spec.FailedJobsHistoryLimit == nil {
			o.Spec.FailedJobsHistoryLimit = ptr(int32(1))
		}
		defaultPodSpec(&o.Spec.JobTemplate.Spec.Template.Spec)
	}
}

func defaultPodSpec(s *corev1.PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr(int64(30))
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			c := &cs[i]
			if c.ImagePullPolicy == "" {
				c.ImagePullPolicy = corev1.PullIfNotPresent
				if !strings.Contains(c.Image, "@") && (!strings.Contains(lastSegment(c.Image), ":") || strings.HasSuffix(c.Image, ":latest")) {
					c.ImagePullPolicy = corev1.PullAlways
				}
			}
			if c.TerminationMessagePath == "" {
				c.TerminationMessagePath = corev1.TerminationMessagePathDefault
			}
			if c.TerminationMessagePolicy == "" {
				c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
			}
			for j := range c.Ports {
				if c.Ports[j].Protocol == "" {
					c.Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				defaultProbe(p)
			}
			if c.Lifecycle != nil {
				for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
					if h != nil {
						defaultHTTPGet(h.HTTPGet)
					}
				}
			}
		}
	}
}

// defaultProbe sets Kubernetes' probe defaults, so that `kubectl
// describe` and `get -o yaml` show the timing the agent applies.
func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	defaultHTTPGet(p.HTTPGet)
}

func defaultHTTPGet(h *corev1.HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = corev1.URISchemeHTTP
	}
}

func lastSegment(image string) string {
	if i := strings.LastIndexByte(image, '/'); i >= 0 {
		return image[i+1:]
	}
	return image
}

// validateObject checks names, labels and the required fields of the common types.
func validateObject(r *resource, obj runtime.Object) []fieldErr {
	a := accessor(obj)
	var errs []fieldErr
	name := a.GetName()
	switch r.name {
	case "namespaces", "services":
		for _, m := range validation.IsDNS1123Label(name) {
			errs = append(errs, invalid("metadata.name", name, m))
		}
	case "pods", "configmaps", "secrets", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs", "nodes", "serviceaccounts", "endpoints", "leases", "endpointslices", "persistentvolumes", "persistentvolumeclaims", "storageclasses", "resourcequotas", "limitranges", "controllerrevisions", "horizontalpodautoscalers":
		for _, m := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, invalid("metadata.name", name, m))
		}
	default:
		if name == "" || strings.ContainsAny(name, "/%") || name == "." || name == ".." {
			errs = append(errs, invalid("metadata.name", name, "may not be empty, '.', '..' or contain '/' or '%'"))
		}
	}
	if r.name == "statefulsets" || r.name == "cronjobs" {
		if len(name) > 52 {
			errs = append(errs, invalid("metadata.name", name, "must be no more than 52 characters"))
		}
	}
	for k, v := range a.GetLabels() {
		for _, m := range validation.IsQualifiedName(k) {
			errs = append(errs, invalid("metadata.labels", k, m))
		}
		for _, m := range validation.IsValidLabelValue(v) {
			errs = append(errs, invalid("metadata.labels", v, m))
		}
	}
	var annSize int
	for k, v := range a.GetAnnotations() {
		annSize += len(k) + len(v)
		for _, m := range validation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, invalid("metadata.annotations", k, m))
		}
	}
	if annSize > 256*1024 {
		errs = append(errs, fieldErr{causeTooLong, "metadata.annotations", fmt.Sprintf("Too long: must have at most %d bytes", 256*1024)})
	}
	for i, f := range a.GetFinalizers() {
		if !strings.Contains(f, "/") && f != metav1.FinalizerOrphanDependents && f != metav1.FinalizerDeleteDependents && f != "kubernetes" {
			errs = append(errs, invalid(fmt.Sprintf("metadata.finalizers[%d]", i), f, "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	for i, o := range a.GetOwnerReferences() {
		p := fmt.Sprintf("metadata.ownerReferences[%d]", i)
		if o.APIVersion == "" {
			errs = append(errs, required(p+".apiVersion", ""))
		}
		if o.Kind == "" {
			errs = append(errs, required(p+".kind", ""))
		}
		if o.Name == "" {
			errs = append(errs, required(p+".name", ""))
		}
		if o.UID == "" {
			errs = append(errs, required(p+".uid", ""))
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		errs = append(errs, validatePodSpec("spec", &o.Spec)...)
	case *corev1.ConfigMap:
		size := 0
		for k, v := range o.Data {
			size += len(v)
			for _, m := range validation.IsConfigMapKey(k) {
				errs = append(errs, invalid("data", k, m))
			}
			if _, dup := o.BinaryData[k]; dup {
				errs = append(errs, duplicate("data", k))
			}
		}
		for k, v := range o.BinaryData {
			size += len(v)
			for _, m := range validation.IsConfigMapKey(k) {
				errs = append(errs, invalid("binaryData", k, m))
			}
		}
		if size > 1024*1024 {
			errs = append(errs, fieldErr{causeTooLong, "data", "Too long: must have at most 1048576 bytes"})
		}
	case *corev1.Secret:
		size := 0
		for k, v := range o.Data {
			size += len(v)
			for _, m := range validation.IsConfigMapKey(k) {
				errs = append(errs, invalid("data", k, m))
			}
		}
		if size > 1024*1024 {
			errs = append(errs, fieldErr{causeTooLong, "data", "Too long: must have at most 1048576 bytes"})
		}
	case *corev1.Endpoints:
		errs = append(errs, validateEndpoints(o)...)
	case *discoveryv1.EndpointSlice:
		errs = append(errs, validateEndpointSlice(o)...)
	case *corev1.Service:
		if o.Spec.Type != corev1.ServiceTypeExternalName && len(o.Spec.Ports) == 0 && o.Spec.ClusterIP != corev1.ClusterIPNone {
			errs = append(errs, required("spec.ports", ""))
		}
		names := map[string]bool{}
		for i, p := range o.Spec.Ports {
			fp := fmt.Sprintf("spec.ports[%d]", i)
			if p.Port < 1 || p.Port > 65535 {
				errs = append(errs, invalid(fp+".port", p.Port, "must be between 1 and 65535, inclusive"))
			}
			if len(o.Spec.Ports) > 1 && p.Name == "" {
				errs = append(errs, required(fp+".name", "when more than one port is defined"))
			}
			if p.Name != "" && names[p.Name] {
				errs = append(errs, duplicate(fp+".name", p.Name))
			}
			names[p.Name] = true
			if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP && p.Protocol != corev1.ProtocolSCTP {
				errs = append(errs, fieldErr{causeNotSupported, fp + ".protocol", fmt.Sprintf("Unsupported value: %q: supported values: \"SCTP\", \"TCP\", \"UDP\"", p.Protocol)})
			}
			if p.NodePort != 0 && (o.Spec.Type == corev1.ServiceTypeClusterIP || o.Spec.Type == corev1.ServiceTypeExternalName) {
				errs = append(errs, fieldErr{causeForbidden, fp + ".nodePort", fmt.Sprintf("Forbidden: may not be used when `type` is '%s'", o.Spec.Type)})
			}
		}
		switch o.Spec.Type {
		case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
		default:
			errs = append(errs, fieldErr{causeNotSupported, "spec.type", fmt.Sprintf("Unsupported value: %q: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"", o.Spec.Type)})
		}
	case *appsv1.Deployment:
		errs = append(errs, validateWorkload(o.Spec.Replicas, o.Spec.Selector, &o.Spec.Template)...)
	case *appsv1.ReplicaSet:
		errs = append(errs, validateWorkload(o.Spec.Replicas, o.Spec.Selector, &o.Spec.Template)...)
	case *appsv1.StatefulSet:
		errs = append(errs, validateWorkload(o.Spec.Replicas, o.Spec.Selector, &o.Spec.Template)...)
		errs = append(errs, validateStatefulSet(&o.Spec)...)
	case *appsv1.DaemonSet:
		errs = append(errs, validateWorkload(nil, o.Spec.Selector, &o.Spec.Template)...)
	case *batchv1.Job:
		errs = append(errs, validatePodSpec("spec.template.spec", &o.Spec.Template.Spec)...)
		if rp := o.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
			errs = append(errs, fieldErr{causeNotSupported, "spec.template.spec.restartPolicy", fmt.Sprintf("Unsupported value: %q: supported values: \"OnFailure\", \"Never\"", rp)})
		}
	case *batchv1.CronJob:
		errs = append(errs, validateCronJob(&o.Spec)...)
	case *coordinationv1.Lease:
		if d := o.Spec.LeaseDurationSeconds; d != nil && *d <= 0 {
			errs = append(errs, invalid("spec.leaseDurationSeconds", *d, "must be greater than 0"))
		}
	case *storagev1.StorageClass:
		errs = append(errs, validateStorageClass(o)...)
	case *corev1.PersistentVolumeClaim:
		if len(o.Spec.AccessModes) == 0 {
			errs = append(errs, required("spec.accessModes", "at least 1 access mode is required"))
		}
		if q, ok := o.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Cmp(apiresource.Quantity{}) <= 0 {
			errs = append(errs, required("spec.resources.requests[storage]", "a positive storage request is required"))
		}
	}
	return errs
}

// validateCronJob checks a CronJob spec as Kubernetes does: the schedule
// parses (TZ= and CRON_TZ= are refused in favour of spec.timeZone), the
// time zone is a real IANA zone, counts are not negative, and the Job
// template would make a valid Job.
func validateCronJob(s *batchv1.CronJobSpec) []fieldErr {
	var errs []fieldErr
	switch {
	case strings.TrimSpace(s.Schedule) == "":
		errs = append(errs, required("spec.schedule", ""))
	case strings.Contains(s.Schedule, "TZ"):
		msg := "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
		if s.TimeZone != nil {
			msg = "cannot use both timeZone field and TZ or CRON_TZ in schedule"
		}
		errs = append(errs, invalid("spec.schedule", s.Schedule, msg))
	default:
		if _, err := cron.Parse(s.Schedule, nil); err != nil {
			errs = append(errs, invalid("spec.schedule", s.Schedule, err.Error()))
		}
	}
	if tz := s.TimeZone; tz != nil {
		switch {
		case *tz == "":
			errs = append(errs, invalid("spec.timeZone", *tz, "timeZone must be nil or non-empty string"))
		case strings.EqualFold(*tz, "Local"):
			errs = append(errs, invalid("spec.timeZone", *tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
		default:
			if _, err := time.LoadLocation(*tz); err != nil {
				errs = append(errs, invalid("spec.timeZone", *tz, err.Error()))
			}
		}
	}
	switch s.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	case "":
		errs = append(errs, required("spec.concurrencyPolicy", ""))
	default:
		errs = append(errs, fieldErr{causeNotSupported, "spec.concurrencyPolicy", fmt.Sprintf("Unsupported value: %q: supported values: \"Allow\", \"Forbid\", \"Replace\"", s.ConcurrencyPolicy)})
	}
	if d := s.StartingDeadlineSeconds; d != nil && *d < 0 {
		errs = append(errs, invalid("spec.startingDeadlineSeconds", *d, "must be greater than or equal to 0"))
	}
	for _, l := range []struct {
		path string
		v    *int32
	}{{"spec.successfulJobsHistoryLimit", s.SuccessfulJobsHistoryLimit}, {"spec.failedJobsHistoryLimit", s.FailedJobsHistoryLimit}} {
		if l.v != nil && *l.v < 0 {
			errs = append(errs, invalid(l.path, *l.v, "must be greater than or equal to 0"))
		}
	}
	tmpl := &s.JobTemplate.Spec.Template.Spec
	errs = append(errs, validatePodSpec("spec.jobTemplate.spec.template.spec", tmpl)...)
	if rp := tmpl.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
		errs = append(errs, fieldErr{causeNotSupported, "spec.jobTemplate.spec.template.spec.restartPolicy", fmt.Sprintf("Unsupported value: %q: supported values: \"OnFailure\", \"Never\"", rp)})
	}
	return errs
}

// validateStatefulSet checks what is particular to a StatefulSet, with
// Kubernetes' field paths and messages.
func validateStatefulSet(s *appsv1.StatefulSetSpec) []fieldErr {
	var errs []fieldErr
	if s.ServiceName != "" {
		// It becomes the pods' spec.subdomain.
		for _, m := range validation.IsDNS1123Label(s.ServiceName) {
			errs = append(errs, invalid("spec.serviceName", s.ServiceName, m))
		}
	}
	switch s.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	case "":
		errs = append(errs, required("spec.podManagementPolicy", ""))
	default:
		errs = append(errs, invalid("spec.podManagementPolicy", s.PodManagementPolicy, fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	switch s.UpdateStrategy.Type {
	case appsv1.OnDeleteStatefulSetStrategyType:
		if s.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, invalid("spec.updateStrategy.rollingUpdate", s.UpdateStrategy.RollingUpdate, fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
			if ru.Partition != nil && *ru.Partition < 0 {
				errs = append(errs, invalid("spec.updateStrategy.rollingUpdate.partition", *ru.Partition, "must be greater than or equal to 0"))
			}
			if mu := ru.MaxUnavailable; mu != nil {
				if v, err := intstr.GetScaledValueFromIntOrPercent(mu, 100, true); err != nil || v < 1 {
					errs = append(errs, invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", mu.String(), "must be an integer of at least 1 or a percentage above 0%"))
				}
			}
		}
	case "":
		errs = append(errs, required("spec.updateStrategy", ""))
	default:
		errs = append(errs, invalid("spec.updateStrategy.type", s.UpdateStrategy.Type, fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if s.RevisionHistoryLimit != nil && *s.RevisionHistoryLimit < 0 {
		errs = append(errs, invalid("spec.revisionHistoryLimit", *s.RevisionHistoryLimit, "must be greater than or equal to 0"))
	}
	if s.MinReadySeconds < 0 {
		errs = append(errs, invalid("spec.minReadySeconds", s.MinReadySeconds, "must be greater than or equal to 0"))
	}
	if s.Ordinals != nil && s.Ordinals.Start < 0 {
		errs = append(errs, invalid("spec.ordinals.start", s.Ordinals.Start, "must be greater than or equal to 0"))
	}
	if rp := s.PersistentVolumeClaimRetentionPolicy; rp != nil {
		for _, f := range []struct {
			path string
			v    appsv1.PersistentVolumeClaimRetentionPolicyType
		}{{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted", rp.WhenDeleted}, {"spec.persistentVolumeClaimRetentionPolicy.whenScaled", rp.WhenScaled}} {
			if f.v != appsv1.RetainPersistentVolumeClaimRetentionPolicyType && f.v != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				errs = append(errs, fieldErr{causeNotSupported, f.path, fmt.Sprintf("Unsupported value: %q: supported values: \"Retain\", \"Delete\"", f.v)})
			}
		}
	}
	names := map[string]bool{}
	for i, c := range s.VolumeClaimTemplates {
		p := fmt.Sprintf("spec.volumeClaimTemplates[%d]", i)
		if c.Name == "" {
			errs = append(errs, required(p+".metadata.name", ""))
		} else {
			for _, m := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, invalid(p+".metadata.name", c.Name, m))
			}
			if names[c.Name] {
				errs = append(errs, duplicate(p+".metadata.name", c.Name))
			}
			names[c.Name] = true
		}
		if len(c.Spec.AccessModes) == 0 {
			errs = append(errs, required(p+".spec.accessModes", "at least 1 access mode is required"))
		}
		if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Cmp(apiresource.Quantity{}) <= 0 {
			errs = append(errs, required(p+".spec.resources.requests[storage]", "a positive storage request is required"))
		}
	}
	return errs
}

func validateWorkload(replicas *int32, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) []fieldErr {
	var errs []fieldErr
	if replicas != nil && *replicas < 0 {
		errs = append(errs, invalid("spec.replicas", *replicas, "must be greater than or equal to 0"))
	}
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		errs = append(errs, required("spec.selector", ""))
	} else if s, err := metav1.LabelSelectorAsSelector(sel); err != nil {
		errs = append(errs, invalid("spec.selector", sel, err.Error()))
	} else if !s.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, invalid("spec.template.metadata.labels", tmpl.Labels, "`selector` does not match template `labels`"))
	}
	if tmpl.Spec.RestartPolicy != "" && tmpl.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, fieldErr{causeNotSupported, "spec.template.spec.restartPolicy", fmt.Sprintf("Unsupported value: %q: supported values: \"Always\"", tmpl.Spec.RestartPolicy)})
	}
	return append(errs, validatePodSpec("spec.template.spec", &tmpl.Spec)...)
}

func validatePodSpec(path string, s *corev1.PodSpec) []fieldErr {
	var errs []fieldErr
	if len(s.Containers) == 0 {
		errs = append(errs, required(path+".containers", ""))
	}
	seen := map[string]bool{}
	check := func(kind string, cs []corev1.Container) {
		for i, c := range cs {
			p := fmt.Sprintf("%s.%s[%d]", path, kind, i)
			if c.Name == "" {
				errs = append(errs, required(p+".name", ""))
			} else {
				for _, m := range validation.IsDNS1123Label(c.Name) {
					errs = append(errs, invalid(p+".name", c.Name, m))
				}
				if seen[c.Name] {
					errs = append(errs, duplicate(p+".name", c.Name))
				}
				seen[c.Name] = true
			}
			if strings.TrimSpace(c.Image) == "" {
				errs = append(errs, required(p+".image", ""))
			} else if c.Image != strings.TrimSpace(c.Image) {
				errs = append(errs, invalid(p+".image", c.Image, "must not have leading or trailing whitespace"))
			}
			for j, port := range c.Ports {
				if port.ContainerPort < 1 || port.ContainerPort > 65535 {
					errs = append(errs, invalid(fmt.Sprintf("%s.ports[%d].containerPort", p, j), port.ContainerPort, "must be between 1 and 65535, inclusive"))
				}
			}
			for j, e := range c.Env {
				if e.Name == "" {
					errs = append(errs, required(fmt.Sprintf("%s.env[%d].name", p, j), ""))
				}
			}
		}
	}
	check("initContainers", s.InitContainers)
	check("containers", s.Containers)
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever, "":
	default:
		errs = append(errs, fieldErr{causeNotSupported, path + ".restartPolicy", fmt.Sprintf("Unsupported value: %q: supported values: \"Always\", \"OnFailure\", \"Never\"", s.RestartPolicy)})
	}
	return errs
}

// validateUpdate checks immutable fields.
func validateUpdate(r *resource, old, next runtime.Object) []fieldErr {
	switch o := old.(type) {
	case *appsv1.Deployment:
		n := next.(*appsv1.Deployment)
		if o.Spec.Selector != nil && n.Spec.Selector != nil && !equalSelector(o.Spec.Selector, n.Spec.Selector) {
			return []fieldErr{invalid("spec.selector", n.Spec.Selector, "field is immutable")}
		}
	case *appsv1.StatefulSet:
		// As upstream: everything else in the spec is fixed at creation
		// (serviceName, selector, volumeClaimTemplates, podManagementPolicy).
		n := next.(*appsv1.StatefulSet)
		a, b := o.Spec.DeepCopy(), n.Spec.DeepCopy()
		for _, s := range []*appsv1.StatefulSetSpec{a, b} {
			s.Replicas, s.Ordinals, s.Template, s.UpdateStrategy = nil, nil, corev1.PodTemplateSpec{}, appsv1.StatefulSetUpdateStrategy{}
			s.RevisionHistoryLimit, s.PersistentVolumeClaimRetentionPolicy, s.MinReadySeconds = nil, nil, 0
		}
		if !apiequality.Semantic.DeepEqual(a, b) {
			return []fieldErr{{metav1.CauseTypeForbidden, "spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"}}
		}
	case *corev1.ConfigMap:
		if o.Immutable != nil && *o.Immutable {
			n := next.(*corev1.ConfigMap)
			if fmt.Sprint(o.Data) != fmt.Sprint(n.Data) || fmt.Sprint(o.BinaryData) != fmt.Sprint(n.BinaryData) {
				return []fieldErr{{metav1.CauseTypeForbidden, "data", "Forbidden: field is immutable when `immutable` is set"}}
			}
		}
	case *corev1.Service:
		n := next.(*corev1.Service)
		if o.Spec.ClusterIP != "" && n.Spec.ClusterIP != o.Spec.ClusterIP {
			return []fieldErr{invalid("spec.clusterIP", n.Spec.ClusterIP, "field is immutable")}
		}
	case *storagev1.StorageClass:
		return validateStorageClassUpdate(o, next.(*storagev1.StorageClass))
	case *corev1.Secret:
		n := next.(*corev1.Secret)
		if o.Type != n.Type {
			return []fieldErr{invalid("type", n.Type, "field is immutable")}
		}
	case *corev1.Pod:
		n := next.(*corev1.Pod)
		if o.Spec.NodeName != "" && n.Spec.NodeName != o.Spec.NodeName {
			return []fieldErr{invalid("spec.nodeName", n.Spec.NodeName, "field is immutable once set")}
		}
		// As upstream: only images, activeDeadlineSeconds, tolerations
		// (additions) and terminationGracePeriodSeconds may change.
		a, b := o.Spec.DeepCopy(), n.Spec.DeepCopy()
		for _, s := range []*corev1.PodSpec{a, b} {
			for i := range s.Containers {
				s.Containers[i].Image = ""
			}
			for i := range s.InitContainers {
				s.InitContainers[i].Image = ""
			}
			s.ActiveDeadlineSeconds, s.Tolerations, s.TerminationGracePeriodSeconds, s.NodeName = nil, nil, nil, ""
		}
		if !apiequality.Semantic.DeepEqual(a, b) {
			return []fieldErr{{metav1.CauseTypeForbidden, "spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`"}}
		}
	}
	return nil
}

func equalSelector(a, b *metav1.LabelSelector) bool {
	sa, err1 := metav1.LabelSelectorAsSelector(a)
	sb, err2 := metav1.LabelSelectorAsSelector(b)
	return err1 == nil && err2 == nil && sa.String() == sb.String()
}

const (
	causeTooLong      metav1.CauseType = "FieldValueTooLong"
	causeNotSupported metav1.CauseType = "FieldValueNotSupported"
	causeForbidden    metav1.CauseType = "FieldValueForbidden"
)
