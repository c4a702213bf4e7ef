package deployment

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Annotations and labels Kubernetes defines for Deployments; kubectl's
// rollout commands read them.
const (
	HashLabel                   = appsv1.DefaultDeploymentUniqueLabelKey // "pod-template-hash"
	RevisionAnnotation          = "deployment.kubernetes.io/revision"
	RevisionHistoryAnnotation   = "deployment.kubernetes.io/revision-history"
	DesiredReplicasAnnotation   = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation       = "deployment.kubernetes.io/max-replicas"
	lastAppliedConfigAnnotation = corev1.LastAppliedConfigAnnotation
)

// Progressing condition reasons, as Kubernetes names them (kubectl rollout
// status matches ProgressDeadlineExceeded).
const (
	ReasonNewRSCreated   = "NewReplicaSetCreated"
	ReasonFoundNewRS     = "FoundNewReplicaSet"
	ReasonRSUpdated      = "ReplicaSetUpdated"
	ReasonNewRSAvailable = "NewReplicaSetAvailable"
	ReasonTimedOut       = "ProgressDeadlineExceeded"
	ReasonPaused         = "DeploymentPaused"
	ReasonResumed        = "DeploymentResumed"
	ReasonMinAvailable   = "MinimumReplicasAvailable"
	ReasonMinUnavailable = "MinimumReplicasUnavailable"
	ReasonFailedCreate   = "ReplicaSetCreateError"
)

// safeAlphabet is the alphabet Kubernetes uses for generated suffixes: no
// vowels (no words) and no look-alike characters.
const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// TemplateHash is the pod-template-hash of a template: FNV-32a over its
// JSON (encoding/json sorts map keys, so it is stable) and the collision
// count, written in the safe alphabet. Kubernetes hashes a different
// serialization, so the values differ from upstream's; only stability
// matters.
func TemplateHash(t *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	b, _ := json.Marshal(t)
	h.Write(b)
	if collisionCount != nil {
		fmt.Fprintf(h, "/%d", *collisionCount)
	}
	// Like Kubernetes: the decimal digits of the sum, each mapped into
	// the safe alphabet (so at most ten characters).
	digits := strconv.FormatUint(uint64(h.Sum32()), 10)
	out := make([]byte, len(digits))
	for i := range digits {
		out[i] = safeAlphabet[int(digits[i])%len(safeAlphabet)]
	}
	return string(out)
}

// equalIgnoreHash compares two templates ignoring the pod-template-hash
// label (the Deployment's template has none; its ReplicaSets' do).
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, HashLabel)
	delete(b.Labels, HashLabel)
	if len(a.Labels) == 0 {
		a.Labels = nil
	}
	if len(b.Labels) == 0 {
		b.Labels = nil
	}
	return apiequality.Semantic.DeepEqual(a, b)
}

// Revision parses an object's revision annotation (0 when absent).
func Revision(o metav1.Object) int64 {
	v, err := strconv.ParseInt(o.GetAnnotations()[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func maxRevision(sets []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range sets {
		m = max(m, Revision(rs))
	}
	return m
}

// skipCopy are the Deployment annotations that do not describe a template
// and so are not copied to (or, by kubectl rollout undo, from) its
// ReplicaSets.
var skipCopy = map[string]bool{
	lastAppliedConfigAnnotation: true,
	RevisionAnnotation:          true,
	RevisionHistoryAnnotation:   true,
	DesiredReplicasAnnotation:   true,
	MaxReplicasAnnotation:       true,
}

// copyAnnotations copies d's annotations (but skipCopy) to rs; it reports
// whether anything changed.
func copyAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	changed := false
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	for k, v := range d.Annotations {
		if skipCopy[k] {
			continue
		}
		if cur, ok := rs.Annotations[k]; !ok || cur != v {
			rs.Annotations[k] = v
			changed = true
		}
	}
	return changed
}

// setNewRSAnnotations copies d's annotations to the new rs, raises its
// revision to newRevision if it is lower (recording the old revision in
// revision-history when a rollback brings an old template back) and sets
// the replica annotations. It reports whether rs changed.
func setNewRSAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, newRevision int64, exists bool) bool {
	changed := copyAnnotations(d, rs)
	old := Revision(rs)
	if old < newRevision {
		if prev, ok := rs.Annotations[RevisionAnnotation]; ok && prev != "" {
			if h := rs.Annotations[RevisionHistoryAnnotation]; h == "" {
				rs.Annotations[RevisionHistoryAnnotation] = prev
			} else {
				rs.Annotations[RevisionHistoryAnnotation] = h + "," + prev
			}
		}
		rs.Annotations[RevisionAnnotation] = strconv.FormatInt(newRevision, 10)
		changed = true
	}
	if !exists || !replicasAnnotationsOK(rs, d) {
		if setReplicasAnnotations(rs, replicas(d), replicas(d)+MaxSurge(d)) {
			changed = true
		}
	}
	return changed
}

func replicasAnnotationsOK(rs *appsv1.ReplicaSet, d *appsv1.Deployment) bool {
	return rs.Annotations[DesiredReplicasAnnotation] != "" && rs.Annotations[MaxReplicasAnnotation] != ""
}

// setReplicasAnnotations records the deployment size an RS was last scaled
// for (desired) and that size plus surge (max): proportional scaling
// reads them back.
func setReplicasAnnotations(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	d, m := strconv.Itoa(int(desired)), strconv.Itoa(int(maxReplicas))
	if rs.Annotations[DesiredReplicasAnnotation] == d && rs.Annotations[MaxReplicasAnnotation] == m {
		return false
	}
	rs.Annotations[DesiredReplicasAnnotation] = d
	rs.Annotations[MaxReplicasAnnotation] = m
	return true
}

func annotatedInt(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	v, ok := rs.Annotations[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func rsReplicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil || rs.Spec.Replicas == nil {
		return 0
	}
	return *rs.Spec.Replicas
}

// ScaledValue resolves an int-or-percent against total: percents are
// rounded up (roundUp, maxSurge) or down (maxUnavailable), as Kubernetes
// does.
func ScaledValue(v *intstr.IntOrString, total int32, roundUp bool) (int32, error) {
	if v == nil {
		return 0, nil
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, int(total), roundUp)
	if err != nil {
		return 0, fmt.Errorf("invalid value %q: want an integer or a percentage such as 25%%", v.String())
	}
	return int32(n), nil
}

// Fenceposts resolves maxSurge and maxUnavailable for desired replicas.
// Both zero would deadlock a rollout, so maxUnavailable becomes 1 then
// (Kubernetes' rule; validation forbids writing both as 0).
func Fenceposts(surge, unavailable *intstr.IntOrString, desired int32) (int32, int32, error) {
	s, err := ScaledValue(surge, desired, true)
	if err != nil {
		return 0, 0, fmt.Errorf("spec.strategy.rollingUpdate.maxSurge: %w", err)
	}
	u, err := ScaledValue(unavailable, desired, false)
	if err != nil {
		return 0, 0, fmt.Errorf("spec.strategy.rollingUpdate.maxUnavailable: %w", err)
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return s, u, nil
}

func rolling(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.Type == ""
}

func rollingParams(d *appsv1.Deployment) (*intstr.IntOrString, *intstr.IntOrString) {
	def := intstr.FromString("25%")
	s, u := &def, &def
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			s = ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			u = ru.MaxUnavailable
		}
	}
	return s, u
}

// MaxSurge is how many pods above spec.replicas a rolling update may run.
func MaxSurge(d *appsv1.Deployment) int32 {
	if !rolling(d) {
		return 0
	}
	s, u := rollingParams(d)
	surge, _, _ := Fenceposts(s, u, replicas(d))
	return surge
}

// MaxUnavailable is how many of spec.replicas may be unavailable during a
// rolling update (0 for Recreate and for 0 replicas).
func MaxUnavailable(d *appsv1.Deployment) int32 {
	if !rolling(d) || replicas(d) == 0 {
		return 0
	}
	s, u := rollingParams(d)
	_, un, _ := Fenceposts(s, u, replicas(d))
	return min(un, replicas(d))
}

// NewRSReplicas is the size the new ReplicaSet may grow to now: for a
// rolling update, up to spec.replicas but keeping all pods within
// spec.replicas+maxSurge; for Recreate, spec.replicas.
func NewRSReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (int32, error) {
	if !rolling(d) {
		return replicas(d), nil
	}
	s, u := rollingParams(d)
	surge, _, err := Fenceposts(s, u, replicas(d))
	if err != nil {
		return 0, err
	}
	current := totalSpecReplicas(all)
	maxTotal := replicas(d) + surge
	if current >= maxTotal {
		return rsReplicas(newRS), nil
	}
	up := min(maxTotal-current, replicas(d)-rsReplicas(newRS))
	return rsReplicas(newRS) + max(up, 0), nil
}

func totalSpecReplicas(sets []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range sets {
		n += rsReplicas(rs)
	}
	return n
}

func totalStatusReplicas(sets []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range sets {
		if rs != nil {
			n += rs.Status.Replicas
		}
	}
	return n
}

func totalAvailable(sets []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range sets {
		if rs != nil {
			n += rs.Status.AvailableReplicas
		}
	}
	return n
}

func totalReady(sets []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range sets {
		if rs != nil {
			n += rs.Status.ReadyReplicas
		}
	}
	return n
}

// byCreation sorts ReplicaSets oldest first (name breaks ties).
func byCreation(sets []*appsv1.ReplicaSet) {
	sort.SliceStable(sets, func(i, j int) bool {
		a, b := sets[i], sets[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// byRevision sorts ReplicaSets by revision, oldest first.
func byRevision(sets []*appsv1.ReplicaSet) {
	sort.SliceStable(sets, func(i, j int) bool {
		ri, rj := Revision(sets[i]), Revision(sets[j])
		if ri != rj {
			return ri < rj
		}
		return sets[i].CreationTimestamp.Before(&sets[j].CreationTimestamp)
	})
}

func activeSets(sets []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range sets {
		if rs != nil && rsReplicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// condition helpers

func getCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func newCondition(t appsv1.DeploymentConditionType, s corev1.ConditionStatus, reason, msg string, now time.Time) appsv1.DeploymentCondition {
	ts := metav1.NewTime(now)
	return appsv1.DeploymentCondition{Type: t, Status: s, Reason: reason, Message: msg, LastUpdateTime: ts, LastTransitionTime: ts}
}

// setCondition sets c, keeping the old lastTransitionTime when the status
// did not change, and leaving the condition alone when nothing differs
// (so that lastUpdateTime only moves on a real update).
func setCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := getCondition(st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason && cur.Message == c.Message {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

func removeCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	var out []appsv1.DeploymentCondition
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

// complete reports a finished rollout: every replica updated and
// available, and no old pods left.
func complete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	return st.UpdatedReplicas == replicas(d) && st.Replicas == replicas(d) &&
		st.AvailableReplicas == replicas(d) && st.ObservedGeneration >= d.Generation
}

// progressing reports whether st moved the rollout forward since d's
// recorded status.
func progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.Status
	oldOld := old.Replicas - old.UpdatedReplicas
	newOld := st.Replicas - st.UpdatedReplicas
	return st.UpdatedReplicas > old.UpdatedReplicas || newOld < oldOld ||
		st.ReadyReplicas > old.ReadyReplicas || st.AvailableReplicas > old.AvailableReplicas
}

// hasDeadline: progressDeadlineSeconds unset or MaxInt32 means none.
func hasDeadline(d *appsv1.Deployment) bool {
	return d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds != math.MaxInt32
}

// timedOut reports whether the rollout made no progress for
// progressDeadlineSeconds since the Progressing condition last moved.
func timedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	if !hasDeadline(d) {
		return false
	}
	c := getCondition(st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason == ReasonNewRSAvailable {
		return false
	}
	if c.Reason == ReasonTimedOut {
		return true
	}
	return c.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Before(now)
}

// newRSTemplate is d's template with the hash label.
func newRSTemplate(d *appsv1.Deployment, hash string) corev1.PodTemplateSpec {
	t := *d.Spec.Template.DeepCopy()
	t.Labels = maps.Clone(t.Labels)
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[HashLabel] = hash
	return t
}
