package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// findNewRS returns the oldest ReplicaSet whose template equals d's
// (ignoring the hash label): the one the rollout converges on. After
// kubectl rollout undo that is an old set, which then gets a new revision.
func findNewRS(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	sorted := append([]*appsv1.ReplicaSet(nil), sets...)
	byCreation(sorted)
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range sorted {
		if newRS == nil && equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	return newRS, old
}

// getAllReplicaSets returns the new ReplicaSet (creating it when create is
// set and there is none) and the old ones, after bringing the new set's
// revision to the highest and copying it to the Deployment.
func (c *Controller) getAllReplicaSets(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	existing, old := findNewRS(d, sets)
	newRevision := maxRevision(old) + 1

	if existing != nil {
		rs := existing.DeepCopy()
		changed := setNewRSAnnotations(d, rs, newRevision, true)
		if changed || rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			out, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, rs, metav1.UpdateOptions{})
			if err != nil {
				return nil, nil, err
			}
			rs = out
		}
		if err := c.setRevision(ctx, d, rs.Annotations[RevisionAnnotation]); err != nil {
			return nil, nil, err
		}
		if hasDeadline(d) && getCondition(&d.Status, appsv1.DeploymentProgressing) == nil {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", rs.Name), c.now()))
			if err := c.writeStatus(ctx, d); err != nil {
				return nil, nil, err
			}
		}
		return rs, old, nil
	}
	if !create {
		return nil, old, nil
	}

	// The cache may still show a Deployment that was just deleted; a set
	// created for it now would only wait for the garbage collector.
	fresh, err := c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && (fresh.UID != d.UID || fresh.DeletionTimestamp != nil) {
		return nil, old, nil
	}
	if err != nil {
		return nil, nil, err
	}

	hash := TemplateHash(&d.Spec.Template, d.Status.CollisionCount)
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[HashLabel] = hash
	tmpl := newRSTemplate(d, hash)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			Labels:          maps.Clone(tmpl.Labels),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, kindDeployment)},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: new(int32), MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: tmpl},
	}
	n, err := NewRSReplicas(d, append(append([]*appsv1.ReplicaSet(nil), old...), rs), rs)
	if err != nil {
		return nil, nil, err
	}
	*rs.Spec.Replicas = n
	setNewRSAnnotations(d, rs, newRevision, false)

	created, err := c.client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Ours, created by an earlier sync the cache has not shown yet?
		got, gerr := c.client.AppsV1().ReplicaSets(d.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, nil, gerr
		}
		if ref := metav1.GetControllerOf(got); ref != nil && ref.UID == d.UID && equalIgnoreHash(&got.Spec.Template, &d.Spec.Template) {
			return got, old, nil
		}
		// A hash collision with someone else's set: bump collisionCount so
		// that the next sync computes another name.
		var cc int32
		if d.Status.CollisionCount != nil {
			cc = *d.Status.CollisionCount
		}
		cc++
		d.Status.CollisionCount = &cc
		if werr := c.writeStatus(ctx, d); werr != nil {
			return nil, nil, werr
		}
		return nil, nil, fmt.Errorf("replicaset %s exists and is not this deployment's: collisionCount is now %d", rs.Name, cc)
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		c.recorder.Event(d, corev1.EventTypeWarning, ReasonFailedCreate, msg)
		if hasDeadline(d) {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonFailedCreate, msg, c.now()))
			_ = c.writeStatus(ctx, d)
		}
		return nil, nil, err
	}
	if n > 0 {
		c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s to %d", created.Name, n)
	}
	if err := c.setRevision(ctx, d, created.Annotations[RevisionAnnotation]); err != nil {
		return nil, nil, err
	}
	if hasDeadline(d) {
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSCreated,
			fmt.Sprintf("Created new replica set %q", created.Name), c.now()))
		if err := c.writeStatus(ctx, d); err != nil {
			return nil, nil, err
		}
	}
	return created, old, nil
}

// setRevision writes the Deployment's revision annotation. It is metadata,
// so it goes through the main resource (the /status subresource keeps
// only status), as a merge patch that leaves the spec alone.
func (c *Controller) setRevision(ctx context.Context, d *appsv1.Deployment, rev string) error {
	if rev == "" || d.Annotations[RevisionAnnotation] == rev {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{RevisionAnnotation: rev}}})
	out, err := c.client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		return err
	}
	d.Annotations = out.Annotations
	d.ResourceVersion = out.ResourceVersion
	return nil
}

func (c *Controller) writeStatus(ctx context.Context, d *appsv1.Deployment) error {
	out, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	d.ResourceVersion = out.ResourceVersion
	return nil
}

// scaleReplicaSet sets rs's replicas (and its desired/max annotations)
// and records Kubernetes' ScalingReplicaSet event.
func (c *Controller) scaleReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet, to int32, d *appsv1.Deployment) (bool, *appsv1.ReplicaSet, error) {
	from := rsReplicas(rs)
	cp := rs.DeepCopy()
	annotated := setReplicasAnnotations(cp, replicas(d), replicas(d)+MaxSurge(d))
	if from == to && !annotated {
		return false, rs, nil
	}
	cp.Spec.Replicas = &to
	out, err := c.client.AppsV1().ReplicaSets(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return false, rs, err
	}
	if from != to {
		op := "up"
		if to < from {
			op = "down"
		}
		c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s to %d from %d", op, out.Name, to, from)
	}
	return from != to, out, nil
}

// isScalingEvent: spec.replicas changed since the active sets were last
// sized (their desired-replicas annotation differs).
func (c *Controller) isScalingEvent(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) bool {
	for _, rs := range activeSets(sets) {
		if v, ok := annotatedInt(rs, DesiredReplicasAnnotation); ok && v != replicas(d) {
			return true
		}
	}
	return false
}

// syncScale is the reconcile of a paused Deployment or of a scaling event:
// resize, never roll.
func (c *Controller) syncScale(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSets(ctx, d, sets, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, d, newRS, old); err != nil {
		return err
	}
	if d.Spec.Paused {
		c.cleanup(ctx, d, old)
	}
	return c.syncStatus(ctx, d, append(old, newRS), newRS)
}

// activeOrLatest returns the only active set, or the newest one when none
// is active; nil when several are active (a rollout is under way).
func activeOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(sorted)
	active := activeSets(append(append([]*appsv1.ReplicaSet(nil), sorted...), newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[len(sorted)-1]
	case 1:
		return active[0]
	}
	return nil
}

// scale sizes the sets after spec.replicas changed. Mid-rollout the change
// is shared among the active sets in proportion to their size (a set's
// share of the deployment size it was last scaled for), the rest going to
// the largest, so that a rollout neither stalls nor bursts.
func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	if rs := activeOrLatest(newRS, old); rs != nil {
		if rsReplicas(rs) == replicas(d) {
			return nil
		}
		_, _, err := c.scaleReplicaSet(ctx, rs, replicas(d), d)
		return err
	}
	if saturated(d, newRS) {
		for _, rs := range activeSets(old) {
			if _, _, err := c.scaleReplicaSet(ctx, rs, 0, d); err != nil {
				return err
			}
		}
		return nil
	}
	if !rolling(d) {
		return nil
	}
	active := activeSets(append(append([]*appsv1.ReplicaSet(nil), old...), newRS))
	sizes := ProportionalSizes(d, active)
	for _, rs := range active {
		if _, _, err := c.scaleReplicaSet(ctx, rs, sizes[rs.Name], d); err != nil {
			return err
		}
	}
	return nil
}

func saturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	want, ok := annotatedInt(rs, DesiredReplicasAnnotation)
	return ok && rsReplicas(rs) == replicas(d) && want == replicas(d) && rs.Status.AvailableReplicas == replicas(d)
}

// ProportionalSizes returns the new size of each active set when a
// rolling Deployment is resized mid-rollout.
func ProportionalSizes(d *appsv1.Deployment, active []*appsv1.ReplicaSet) map[string]int32 {
	sets := append([]*appsv1.ReplicaSet(nil), active...)
	var allowed int32
	if replicas(d) > 0 {
		allowed = replicas(d) + MaxSurge(d)
	}
	toAdd := allowed - totalSpecReplicas(sets)
	// Grow the biggest (newest on ties) first; shrink the biggest (oldest
	// on ties) first.
	sort.SliceStable(sets, func(i, j int) bool {
		a, b := sets[i], sets[j]
		if rsReplicas(a) != rsReplicas(b) {
			return rsReplicas(a) > rsReplicas(b)
		}
		if toAdd > 0 {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
	sizes := map[string]int32{}
	var added int32
	for _, rs := range sets {
		sizes[rs.Name] = rsReplicas(rs)
		if toAdd == 0 || toAdd == added {
			continue
		}
		share := fraction(rs, d)
		left := toAdd - added
		if toAdd > 0 {
			share = min(share, left)
		} else {
			share = max(share, left)
		}
		sizes[rs.Name] += share
		added += share
	}
	if len(sets) > 0 && toAdd != added {
		first := sets[0].Name
		sizes[first] = max(sizes[first]+toAdd-added, 0)
	}
	return sizes
}

// fraction is how much rs grows (or shrinks) when the deployment goes from
// the max-replicas it last annotated on rs to its current size plus surge.
func fraction(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if rsReplicas(rs) == 0 {
		return 0
	}
	if replicas(d) == 0 {
		return -rsReplicas(rs)
	}
	target := replicas(d) + MaxSurge(d)
	annotated, ok := annotatedInt(rs, MaxReplicasAnnotation)
	if !ok || annotated == 0 {
		annotated = d.Status.Replicas
	}
	if annotated == 0 {
		return 0
	}
	size := float64(rsReplicas(rs)*target) / float64(annotated)
	return int32(math.Round(size)) - rsReplicas(rs)
}

// cleanup deletes the oldest fully scaled-down old sets beyond
// revisionHistoryLimit.
func (c *Controller) cleanup(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet) {
	if d.Spec.RevisionHistoryLimit == nil {
		return
	}
	var cand []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs != nil && rs.DeletionTimestamp == nil {
			cand = append(cand, rs)
		}
	}
	extra := len(cand) - int(*d.Spec.RevisionHistoryLimit)
	if extra <= 0 {
		return
	}
	byRevision(cand)
	for _, rs := range cand[:extra] {
		if rs.Status.Replicas != 0 || rsReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		err := c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			c.log.Warn("history cleanup", "replicaset", rs.Namespace+"/"+rs.Name, "err", err)
			continue
		}
		c.log.Info("deleted old replicaset beyond revisionHistoryLimit", "replicaset", rs.Namespace+"/"+rs.Name, "revision", Revision(rs))
	}
}

// calculateStatus derives a Deployment's status from its sets' status.
func calculateStatus(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, now time.Time) appsv1.DeploymentStatus {
	all = nonNil(all)
	avail := totalAvailable(all)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            totalStatusReplicas(all),
		UpdatedReplicas:     totalStatusReplicas(nonNil([]*appsv1.ReplicaSet{newRS})),
		ReadyReplicas:       totalReady(all),
		AvailableReplicas:   avail,
		UnavailableReplicas: max(totalSpecReplicas(all)-avail, 0),
		CollisionCount:      d.Status.CollisionCount,
	}
	st.Conditions = append([]appsv1.DeploymentCondition(nil), d.Status.Conditions...)
	if avail >= replicas(d)-MaxUnavailable(d) {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, ReasonMinAvailable, "Deployment has minimum availability.", now))
	} else {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, ReasonMinUnavailable, "Deployment does not have minimum availability.", now))
	}
	return st
}

func nonNil(sets []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range sets {
		if rs != nil {
			out = append(out, rs)
		}
	}
	return out
}

// syncStatus writes the status without judging progress (paused,
// scaling, being deleted).
func (c *Controller) syncStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := calculateStatus(d, all, newRS, c.now())
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		return nil
	}
	d.Status = st
	return c.writeStatus(ctx, d)
}

// syncRolloutStatus writes the status of a rollout: Progressing moves on
// progress, becomes NewReplicaSetAvailable when complete and
// ProgressDeadlineExceeded when nothing moved for progressDeadlineSeconds;
// the new set's ReplicaFailure condition is copied.
func (c *Controller) syncRolloutStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	now := c.now()
	st := calculateStatus(d, all, newRS, now)
	if !hasDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(&d.Status, appsv1.DeploymentProgressing)
	done := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewRSAvailable
	name := "Deployment " + strconv.Quote(d.Name)
	if newRS != nil {
		name = "ReplicaSet " + strconv.Quote(newRS.Name)
	}
	if hasDeadline(d) && !done {
		switch {
		case complete(d, &st):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSAvailable, name+" has successfully progressed.", now))
		case progressing(d, &st):
			// Progress moves lastUpdateTime even when the reason stays.
			cond := newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated, name+" is progressing.", now)
			if cur != nil && cur.Status == corev1.ConditionTrue {
				cond.LastTransitionTime = cur.LastTransitionTime
			}
			removeCondition(&st, appsv1.DeploymentProgressing)
			st.Conditions = append(st.Conditions, cond)
		case timedOut(d, &st, now):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonTimedOut, name+" has timed out progressing.", now))
		}
	}
	if f := replicaFailure(all, newRS); f != nil {
		setCondition(&st, *f)
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	c.requeueStuck(d, &st, now)
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		return nil
	}
	d.Status = st
	return c.writeStatus(ctx, d)
}

// requeueStuck looks at a rollout again when its progress deadline passes,
// since no event may come from a rollout that is stuck.
func (c *Controller) requeueStuck(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) {
	cond := getCondition(st, appsv1.DeploymentProgressing)
	if !hasDeadline(d) || cond == nil || cond.Reason == ReasonNewRSAvailable || cond.Reason == ReasonTimedOut || complete(d, st) {
		return
	}
	at := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second)
	c.queue.AddAfter(d.Namespace+"/"+d.Name, max(at.Sub(now), 0)+time.Second)
}

// replicaFailure returns the ReplicaFailure condition of the new set (or
// else of any set) as a Deployment condition.
func replicaFailure(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) *appsv1.DeploymentCondition {
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, all...) {
		if rs == nil {
			continue
		}
		for _, rc := range rs.Status.Conditions {
			if rc.Type == appsv1.ReplicaSetReplicaFailure {
				return &appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: rc.Status, Reason: rc.Reason,
					Message: rc.Message, LastUpdateTime: rc.LastTransitionTime, LastTransitionTime: rc.LastTransitionTime}
			}
		}
	}
	return nil
}
