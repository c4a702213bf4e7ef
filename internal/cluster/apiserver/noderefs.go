package apiserver

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Nodes read the secrets, config maps and claims of the pods bound to
// them, and only those, as Kubernetes' node authorizer allows: a node's
// credential leaks no other namespace's secrets. They get them one by one
// (the agent resolves a pod's references when it starts it); listing or
// watching these kinds is refused.

// nodeScopedKinds are the core resources a node reads only through a pod.
var nodeScopedKinds = map[string]bool{"secrets": true, "configmaps": true, "persistentvolumeclaims": true}

// nodeMayRead reports whether a pod bound to node in ns refers to the
// object kind/name.
func (s *Server) nodeMayRead(ctx context.Context, node, kind, ns, name string) (bool, error) {
	r := lookup("", "v1", "pods")
	page, err := s.st.list(ctx, r, ns, 0, "", 0, func(o runtime.Object) bool {
		p, ok := o.(*corev1.Pod)
		return ok && p.Spec.NodeName == node
	})
	if err != nil {
		return false, err
	}
	for _, o := range page.items {
		if podRefers(o.(*corev1.Pod), kind, name) {
			return true, nil
		}
	}
	return false, nil
}

// podRefers reports whether pod p uses the secret, config map or claim
// (kind is the resource name) called name: in volumes (also projected),
// env and envFrom of every container, and image pull secrets.
func podRefers(p *corev1.Pod, kind, name string) bool {
	found := false
	see := func(k, n string) {
		if k == kind && n == name {
			found = true
		}
	}
	for _, ref := range p.Spec.ImagePullSecrets {
		see("secrets", ref.Name)
	}
	for _, v := range p.Spec.Volumes {
		switch {
		case v.Secret != nil:
			see("secrets", v.Secret.SecretName)
		case v.ConfigMap != nil:
			see("configmaps", v.ConfigMap.Name)
		case v.PersistentVolumeClaim != nil:
			see("persistentvolumeclaims", v.PersistentVolumeClaim.ClaimName)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					see("secrets", src.Secret.Name)
				}
				if src.ConfigMap != nil {
					see("configmaps", src.ConfigMap.Name)
				}
			}
		}
	}
	visit := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					see("secrets", e.SecretRef.Name)
				}
				if e.ConfigMapRef != nil {
					see("configmaps", e.ConfigMapRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if e.ValueFrom.SecretKeyRef != nil {
					see("secrets", e.ValueFrom.SecretKeyRef.Name)
				}
				if e.ValueFrom.ConfigMapKeyRef != nil {
					see("configmaps", e.ValueFrom.ConfigMapKeyRef.Name)
				}
			}
		}
	}
	visit(p.Spec.InitContainers)
	visit(p.Spec.Containers)
	for _, ec := range p.Spec.EphemeralContainers {
		visit([]corev1.Container{corev1.Container(ec.EphemeralContainerCommon)})
	}
	return found
}
