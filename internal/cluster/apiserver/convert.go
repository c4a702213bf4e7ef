package apiserver

import (
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Resources served in several versions share one stored form (as in
// Kubernetes): autoscaling/v1 HPAs are stored as autoscaling/v2, and
// events.k8s.io/v1 events as core/v1 events. The converters below map
// between a served version and its storage version.

type converter struct {
	storage     func() *resource
	toStorage   func(runtime.Object) runtime.Object
	fromStorage func(runtime.Object) runtime.Object
}

var conversions = map[string]*converter{
	"autoscaling/v1/horizontalpodautoscalers": {
		storage:     func() *resource { return lookup("autoscaling", "v2", "horizontalpodautoscalers") },
		toStorage:   func(o runtime.Object) runtime.Object { return hpaV1toV2(o.(*autoscalingv1.HorizontalPodAutoscaler)) },
		fromStorage: func(o runtime.Object) runtime.Object { return hpaV2toV1(o.(*autoscalingv2.HorizontalPodAutoscaler)) },
	},
	"events.k8s.io/v1/events": {
		storage:     func() *resource { return lookup("", "v1", "events") },
		toStorage:   func(o runtime.Object) runtime.Object { return eventToCore(o.(*eventsv1.Event)) },
		fromStorage: func(o runtime.Object) runtime.Object { return eventFromCore(o.(*corev1.Event)) },
	},
}

func (r *resource) conv() *converter { return conversions[r.group+"/"+r.version+"/"+r.name] }

// storageRes is the resource whose keys and Go type hold r's objects.
func (r *resource) storageRes() *resource {
	if c := r.conv(); c != nil {
		return c.storage()
	}
	return r
}

const hpaCPUResource = corev1.ResourceCPU

func hpaV1toV2(in *autoscalingv1.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	out := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: in.ObjectMeta}
	out.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{Kind: in.Spec.ScaleTargetRef.Kind, Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion}
	out.Spec.MinReplicas, out.Spec.MaxReplicas = in.Spec.MinReplicas, in.Spec.MaxReplicas
	if in.Spec.TargetCPUUtilizationPercentage != nil {
		out.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: hpaCPUResource, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: in.Spec.TargetCPUUtilizationPercentage}}}}
	}
	out.Status = autoscalingv2.HorizontalPodAutoscalerStatus{ObservedGeneration: in.Status.ObservedGeneration, LastScaleTime: in.Status.LastScaleTime, CurrentReplicas: in.Status.CurrentReplicas, DesiredReplicas: in.Status.DesiredReplicas}
	if in.Status.CurrentCPUUtilizationPercentage != nil {
		out.Status.CurrentMetrics = []autoscalingv2.MetricStatus{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{
			Name: hpaCPUResource, Current: autoscalingv2.MetricValueStatus{AverageUtilization: in.Status.CurrentCPUUtilizationPercentage}}}}
	}
	out.APIVersion, out.Kind = "autoscaling/v2", "HorizontalPodAutoscaler"
	return out
}

func hpaV2toV1(in *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv1.HorizontalPodAutoscaler {
	out := &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: in.ObjectMeta}
	out.Spec.ScaleTargetRef = autoscalingv1.CrossVersionObjectReference{Kind: in.Spec.ScaleTargetRef.Kind, Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion}
	out.Spec.MinReplicas, out.Spec.MaxReplicas = in.Spec.MinReplicas, in.Spec.MaxReplicas
	for _, m := range in.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == hpaCPUResource && m.Resource.Target.AverageUtilization != nil {
			out.Spec.TargetCPUUtilizationPercentage = m.Resource.Target.AverageUtilization
		}
	}
	out.Status = autoscalingv1.HorizontalPodAutoscalerStatus{ObservedGeneration: in.Status.ObservedGeneration, LastScaleTime: in.Status.LastScaleTime, CurrentReplicas: in.Status.CurrentReplicas, DesiredReplicas: in.Status.DesiredReplicas}
	for _, m := range in.Status.CurrentMetrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == hpaCPUResource {
			out.Status.CurrentCPUUtilizationPercentage = m.Resource.Current.AverageUtilization
		}
	}
	out.APIVersion, out.Kind = "autoscaling/v1", "HorizontalPodAutoscaler"
	return out
}

func eventToCore(in *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{ObjectMeta: in.ObjectMeta}
	out.InvolvedObject, out.Related = in.Regarding, in.Related
	out.Reason, out.Message, out.Type, out.Action = in.Reason, in.Note, in.Type, in.Action
	out.EventTime = in.EventTime
	out.ReportingController, out.ReportingInstance = in.ReportingController, in.ReportingInstance
	out.Source = in.DeprecatedSource
	out.FirstTimestamp, out.LastTimestamp, out.Count = in.DeprecatedFirstTimestamp, in.DeprecatedLastTimestamp, in.DeprecatedCount
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	out.APIVersion, out.Kind = "v1", "Event"
	return out
}

func eventFromCore(in *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{ObjectMeta: in.ObjectMeta}
	out.Regarding, out.Related = in.InvolvedObject, in.Related
	out.Reason, out.Note, out.Type, out.Action = in.Reason, in.Message, in.Type, in.Action
	out.EventTime = in.EventTime
	if out.EventTime.IsZero() && !in.FirstTimestamp.IsZero() {
		out.EventTime = metav1.NewMicroTime(in.FirstTimestamp.Time)
	}
	out.ReportingController, out.ReportingInstance = in.ReportingController, in.ReportingInstance
	out.DeprecatedSource = in.Source
	out.DeprecatedFirstTimestamp, out.DeprecatedLastTimestamp, out.DeprecatedCount = in.FirstTimestamp, in.LastTimestamp, in.Count
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	out.APIVersion, out.Kind = "events.k8s.io/v1", "Event"
	return out
}
