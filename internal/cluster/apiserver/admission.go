package apiserver

import (
	"context"
	"log/slog"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// admitCreate applies what Kubernetes' admission plugins and create
// strategies add to a new object (after its UID is set, before
// validation); updates never run it.
func (s *Server) admitCreate(ctx context.Context, obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		s.defaultStorageClass(ctx, o)
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

// Annotations that mark the default StorageClass (the beta one is still
// honoured by Kubernetes).
const (
	AnnDefaultStorageClass     = "storageclass.kubernetes.io/is-default-class"
	annBetaDefaultStorageClass = "storageclass.beta.kubernetes.io/is-default-class"
)

// isDefaultClass reports whether sc is marked as the default class.
func isDefaultClass(sc *storagev1.StorageClass) bool {
	return sc.Annotations[AnnDefaultStorageClass] == "true" || sc.Annotations[annBetaDefaultStorageClass] == "true"
}

// defaultStorageClass is the DefaultStorageClass admission plugin: a claim
// that names no class (neither spec.storageClassName nor the beta
// annotation) gets the default class; with several defaults, the newest
// wins, as in Kubernetes since 1.26. A claim that sets "" asks for no class
// and is left alone. Without a default class nothing changes.
func (s *Server) defaultStorageClass(ctx context.Context, pvc *corev1.PersistentVolumeClaim) {
	if pvc.Spec.StorageClassName != nil {
		return
	}
	if _, ok := pvc.Annotations[corev1.BetaStorageClassAnnotation]; ok {
		return
	}
	r := lookup("storage.k8s.io", "v1", "storageclasses")
	page, err := s.st.list(ctx, r, "", 0, "", 0, func(o runtime.Object) bool {
		sc, ok := o.(*storagev1.StorageClass)
		return ok && isDefaultClass(sc)
	})
	if err != nil {
		slog.Warn("default storage class: listing classes", "err", err)
		return
	}
	var best *storagev1.StorageClass
	for _, o := range page.items {
		sc := o.(*storagev1.StorageClass)
		if best == nil || sc.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			sc.CreationTimestamp.Equal(&best.CreationTimestamp) && sc.Name < best.Name {
			best = sc
		}
	}
	if best != nil {
		name := best.Name
		pvc.Spec.StorageClassName = &name
	}
}
