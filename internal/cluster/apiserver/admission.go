package apiserver

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// admitCreate applies what Kubernetes' admission plugins and create
// strategies add to a new object (after its UID is set, before
// validation); updates never run it.
func (s *Server) admitCreate(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		defaultTolerationSeconds(&o.Spec, s.cfg.DefaultNotReadyTolerationSeconds, s.cfg.DefaultUnreachableTolerationSeconds)
	case *batchv1.Job:
		generateJobSelector(o)
	}
}

// defaultTolerationSeconds is the DefaultTolerationSeconds admission
// plugin: a pod that does not tolerate the not-ready or unreachable
// NoExecute taint gets a toleration of it bounded by the configured
// seconds, so a lost node's pods are evicted after that long. nil seconds
// add nothing.
func defaultTolerationSeconds(s *corev1.PodSpec, notReady, unreachable *int64) {
	for _, d := range []struct {
		key  string
		secs *int64
	}{{corev1.TaintNodeNotReady, notReady}, {corev1.TaintNodeUnreachable, unreachable}} {
		if d.secs == nil {
			continue
		}
		covered := false
		for _, t := range s.Tolerations {
			if (t.Key == d.key || t.Key == "") && (t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
				covered = true
				break
			}
		}
		if !covered {
			secs := *d.secs
			s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: d.key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
		}
	}
}

// generateJobSelector gives a Job without spec.manualSelector the selector
// and pod labels Kubernetes generates from its UID.
func generateJobSelector(j *batchv1.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	uid := string(j.UID)
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}}
	}
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	l := j.Spec.Template.Labels
	l[batchv1.ControllerUidLabel], l[batchv1.JobNameLabel] = uid, j.Name
	l["controller-uid"], l["job-name"] = uid, j.Name // the pre-1.27 names, still set upstream
}
