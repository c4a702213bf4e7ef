package statefulset

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
)

// revisions are the set's ControllerRevisions: current (the revision of
// the pods the rollout started from, status.currentRevision) and update
// (the template's revision, status.updateRevision); owned lists all.
type revisions struct {
	current, update *appsv1.ControllerRevision
	owned           []*appsv1.ControllerRevision
	collisionCount  int32
}

// revisionData is what Kubernetes stores in a StatefulSet's
// ControllerRevision: a strategic merge patch that replaces the
// template, which `kubectl rollout history|undo` read and apply.
func revisionData(set *appsv1.StatefulSet) ([]byte, error) {
	b, err := json.Marshal(set.Spec.Template)
	if err != nil {
		return nil, err
	}
	var tmpl map[string]any
	if err := json.Unmarshal(b, &tmpl); err != nil {
		return nil, err
	}
	tmpl["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
}

// templateOf reads the pod template back out of a revision.
func templateOf(r *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var d struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	raw := r.Data.Raw
	if raw == nil && r.Data.Object != nil {
		var err error
		if raw, err = json.Marshal(r.Data.Object); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("controllerrevision %s: %w", r.Name, err)
	}
	return &d.Spec.Template, nil
}

// revisionName is <set>-<hash of the revision data and collisionCount>,
// the value of the pods' controller-revision-hash label.
func revisionName(set *appsv1.StatefulSet, data []byte, collisions int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisions > 0 {
		fmt.Fprint(h, collisions)
	}
	return set.Name + "-" + rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// sameTemplate compares two revisions by the templates they hold (the
// stored bytes may be re-encoded by the API server).
func sameTemplate(a, b *appsv1.ControllerRevision) bool {
	ta, err1 := templateOf(a)
	tb, err2 := templateOf(b)
	return err1 == nil && err2 == nil && apiequality.Semantic.DeepEqual(ta, tb)
}

// revisions makes sure the template has a ControllerRevision with the
// highest revision number (a rollback to an earlier template renumbers
// that one, as in Kubernetes), bumping status.collisionCount when a
// different template already holds the name.
func (c *Controller) revisions(ctx context.Context, set *appsv1.StatefulSet) (*revisions, error) {
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s/%s: spec.selector: %w", set.Namespace, set.Name, err)
	}
	api := c.client.AppsV1().ControllerRevisions(set.Namespace)
	list, err := api.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	out := &revisions{}
	if set.Status.CollisionCount != nil {
		out.collisionCount = *set.Status.CollisionCount
	}
	var top int64
	for i := range list.Items {
		r := &list.Items[i]
		if ref := metav1.GetControllerOf(r); ref == nil || ref.UID != set.UID {
			continue
		}
		out.owned = append(out.owned, r)
		top = max(top, r.Revision)
	}
	data, err := revisionData(set)
	if err != nil {
		return nil, err
	}
	want := &appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: data}}
	for {
		name := revisionName(set, data, out.collisionCount)
		var have *appsv1.ControllerRevision
		for _, r := range out.owned {
			if r.Name == name {
				have = r
			}
		}
		if have == nil {
			lbls := map[string]string{}
			for k, v := range set.Spec.Template.Labels {
				lbls[k] = v
			}
			lbls[appsv1.ControllerRevisionHashLabelKey] = name
			r := &appsv1.ControllerRevision{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: set.Namespace, Labels: lbls,
					OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, kindSet)}},
				Data:     runtime.RawExtension{Raw: data},
				Revision: top + 1,
			}
			created, err := api.Create(ctx, r, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Held by something we do not own (or not yet listed):
				// count a collision and hash again.
				out.collisionCount++
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("controllerrevision %s: %w", name, err)
			}
			out.update = created
			out.owned = append(out.owned, created)
			break
		}
		if !sameTemplate(have, want) {
			out.collisionCount++
			continue
		}
		if have.Revision < top {
			next := have.DeepCopy()
			next.Revision = top + 1
			updated, err := api.Update(ctx, next, metav1.UpdateOptions{})
			if err != nil {
				return nil, err
			}
			*have = *updated
		}
		out.update = have
		break
	}
	out.current = out.update
	for _, r := range out.owned {
		if r.Name == set.Status.CurrentRevision {
			out.current = r
		}
	}
	return out, nil
}

// pruneRevisions deletes the oldest revisions beyond revisionHistoryLimit
// that neither the status nor any pod refers to.
func (c *Controller) pruneRevisions(ctx context.Context, set *appsv1.StatefulSet, revs *revisions, pods []*corev1.Pod) error {
	limit := 10
	if set.Spec.RevisionHistoryLimit != nil {
		limit = int(*set.Spec.RevisionHistoryLimit)
	}
	live := map[string]bool{revs.current.Name: true, revs.update.Name: true}
	for _, p := range pods {
		live[revisionOf(p)] = true
	}
	var old []*appsv1.ControllerRevision
	for _, r := range revs.owned {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	if len(old) <= limit {
		return nil
	}
	sort.Slice(old, func(i, j int) bool { return old[i].Revision < old[j].Revision })
	for _, r := range old[:len(old)-limit] {
		err := c.client.AppsV1().ControllerRevisions(set.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
