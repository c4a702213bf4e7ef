package apiserver

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"
)

// validateStorageClass checks a StorageClass as Kubernetes does: a
// provisioner name that is a qualified name, a reclaim policy of Delete or
// Retain and a binding mode of Immediate or WaitForFirstConsumer.
func validateStorageClass(sc *storagev1.StorageClass) []fieldErr {
	var errs []fieldErr
	if sc.Provisioner == "" {
		errs = append(errs, required("provisioner", ""))
	} else {
		for _, m := range validation.IsQualifiedName(sc.Provisioner) {
			errs = append(errs, invalid("provisioner", sc.Provisioner, m))
		}
	}
	if p := sc.ReclaimPolicy; p != nil && *p != corev1.PersistentVolumeReclaimDelete && *p != corev1.PersistentVolumeReclaimRetain {
		errs = append(errs, fieldErr{causeNotSupported, "reclaimPolicy", fmt.Sprintf("Unsupported value: %q: supported values: \"Delete\", \"Retain\"", *p)})
	}
	if m := sc.VolumeBindingMode; m != nil && *m != storagev1.VolumeBindingImmediate && *m != storagev1.VolumeBindingWaitForFirstConsumer {
		errs = append(errs, fieldErr{causeNotSupported, "volumeBindingMode", fmt.Sprintf("Unsupported value: %q: supported values: \"Immediate\", \"WaitForFirstConsumer\"", *m)})
	}
	return errs
}

// validateStorageClassUpdate keeps what volumes were made with: the
// provisioner, parameters, reclaim policy and binding mode are immutable.
func validateStorageClassUpdate(old, next *storagev1.StorageClass) []fieldErr {
	var errs []fieldErr
	if old.Provisioner != next.Provisioner {
		errs = append(errs, invalid("provisioner", next.Provisioner, "field is immutable"))
	}
	if !apiequality.Semantic.DeepEqual(old.Parameters, next.Parameters) {
		errs = append(errs, invalid("parameters", next.Parameters, "field is immutable"))
	}
	if !apiequality.Semantic.DeepEqual(old.ReclaimPolicy, next.ReclaimPolicy) {
		errs = append(errs, invalid("reclaimPolicy", next.ReclaimPolicy, "field is immutable"))
	}
	if !apiequality.Semantic.DeepEqual(old.VolumeBindingMode, next.VolumeBindingMode) {
		errs = append(errs, invalid("volumeBindingMode", next.VolumeBindingMode, "field is immutable"))
	}
	return errs
}
