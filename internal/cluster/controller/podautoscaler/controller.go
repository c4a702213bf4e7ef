// Package podautoscaler is the HorizontalPodAutoscaler controller
// (autoscaling/v2): every sync period it reads each HPA's target through
// the /scale subresource, the target's pods and their resource usage
// (MetricsSource, normally the metrics.k8s.io API), computes the replica
// count Kubernetes' algorithm asks for (cpu/memory Resource metrics,
// Utilization and AverageValue targets, 10 % tolerance), stabilizes it,
// limits its rate by spec.behavior, clamps it to min/maxReplicas and
// writes it back through /scale, with the status, conditions and events
// Kubernetes reports.
package podautoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/berth/berth/internal/cluster/kube"
)

// DefaultSyncPeriod is how often each HPA is evaluated, as Kubernetes'
// --horizontal-pod-autoscaler-sync-period.
const DefaultSyncPeriod = 15 * time.Second

// Options tune the controller.
type Options struct {
	SyncPeriod time.Duration // 0: DefaultSyncPeriod
	Metrics    MetricsSource // nil: the metrics.k8s.io API of the API server
	Clock      clock.Clock   // nil: the real clock
}

// Component returns the HPA controller as a server component.
func Component(o Options) kube.Component {
	return kube.Component{Name: "horizontal-pod-autoscaler", Run: func(ctx context.Context, c *kube.Clients) error {
		if o.Metrics == nil {
			o.Metrics = RESTMetrics{Client: c.Client.CoreV1().RESTClient()}
		}
		ctl := New(c.Client, c.Informers.Autoscaling().V2().HorizontalPodAutoscalers().Informer(), c.Informers.Core().V1().Pods().Informer(),
			c.Recorder("horizontal-pod-autoscaler", ""), c.Logger, o)
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 2)
	}}
}

// Controller reconciles HorizontalPodAutoscalers.
type Controller struct {
	client   kubernetes.Interface
	hpas     autoscalinglisters.HorizontalPodAutoscalerLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	o        Options

	mu      sync.Mutex
	history map[string]*history // by HPA key
}

// New builds a controller on informers the caller starts.
func New(client kubernetes.Interface, hpas, pods cache.SharedIndexInformer, rec record.EventRecorder, log *slog.Logger, o Options) *Controller {
	if log == nil {
		log = slog.Default()
	}
	if o.SyncPeriod <= 0 {
		o.SyncPeriod = DefaultSyncPeriod
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	c := &Controller{
		client:   client,
		hpas:     autoscalinglisters.NewHorizontalPodAutoscalerLister(hpas.GetIndexer()),
		pods:     corelisters.NewPodLister(pods.GetIndexer()),
		synced:   []cache.InformerSynced{hpas.HasSynced, pods.HasSynced},
		recorder: rec, log: log.With("component", "horizontal-pod-autoscaler"),
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, o.SyncPeriod)),
		o:       o,
		history: map[string]*history{},
	}
	// Only new HPAs and spec changes are queued at once; the rest of the
	// time each HPA comes back every sync period (sync's return value).
	_, _ = hpas.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(old, cur any) {
			if old.(*autoscalingv2.HorizontalPodAutoscaler).Generation != cur.(*autoscalingv2.HorizontalPodAutoscaler).Generation {
				c.enqueue(cur)
			}
		},
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// Run works with n workers until ctx ends.
func (c *Controller) Run(ctx context.Context, n int) error {
	return kube.RunQueue(ctx, c.queue, c.synced, n, c.log, "horizontalpodautoscaler", c.sync)
}

// sync evaluates one HPA and asks to come back after the sync period.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	cached, err := c.hpas.HorizontalPodAutoscalers(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.history, key)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	hpa := cached.DeepCopy()
	c.reconcile(ctx, key, hpa)
	if !apiequality.Semantic.DeepEqual(cached.Status, hpa.Status) {
		if _, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(ns).UpdateStatus(ctx, hpa, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	return c.o.SyncPeriod, nil
}

// reconcile does one evaluation, recording the outcome in hpa.Status.
// Failures are reported as conditions and events, not returned: the next
// period retries.
func (c *Controller) reconcile(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) {
	now := c.o.Clock.Now()
	ref := hpa.Spec.ScaleTargetRef
	scale, err := c.getScale(ctx, hpa.Namespace, ref)
	if err != nil {
		c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", err.Error())
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		return
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	current := scale.Spec.Replicas
	hpa.Status.CurrentReplicas = scale.Status.Replicas
	hpa.Status.ObservedGeneration = ptr(hpa.Generation)
	minR := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minR = *hpa.Spec.MinReplicas
	}
	maxR := hpa.Spec.MaxReplicas

	var desired int32
	var reason string
	switch {
	case current == 0 && minR != 0:
		hpa.Status.DesiredReplicas = 0
		hpa.Status.CurrentMetrics = nil
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
		return
	case current > maxR:
		desired, reason = maxR, "Current number of replicas above Spec.MaxReplicas"
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
	case current < minR:
		desired, reason = minR, "Current number of replicas below Spec.MinReplicas"
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
	default:
		proposal, metricName, statuses, err := c.computeReplicas(ctx, hpa, scale, current)
		if err != nil {
			hpa.Status.CurrentMetrics = statuses
			return // conditions and events set by computeReplicas
		}
		hpa.Status.CurrentMetrics = statuses
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metricName)
		desired = c.normalize(key, hpa, now, current, proposal, minR, maxR)
		switch {
		case desired > current:
			reason = metricName + " above target"
		case desired < current:
			reason = "All metrics below target"
		}
	}
	if desired != current {
		scale.Spec.Replicas = desired
		if err := c.updateScale(ctx, hpa.Namespace, ref, scale); err != nil {
			c.recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, reason, err)
			setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			return
		}
		c.recorder.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, reason)
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.log.Info("rescaled", "hpa", key, "from", current, "to", desired, "reason", reason)
		c.mu.Lock()
		c.historyOf(key).record(now, desired-current, maxPeriod(hpa.Spec.Behavior))
		c.mu.Unlock()
		t := metav1.NewTime(now)
		hpa.Status.LastScaleTime = &t
	}
	hpa.Status.DesiredReplicas = desired
}

func (c *Controller) historyOf(key string) *history {
	h := c.history[key]
	if h == nil {
		h = &history{}
		c.history[key] = h
	}
	return h
}

// maxPeriod is the longest policy period: how long scale events matter.
func maxPeriod(b *autoscalingv2.HorizontalPodAutoscalerBehavior) time.Duration {
	var p int32
	for _, up := range []bool{true, false} {
		for _, pol := range rules(b, up).Policies {
			p = max(p, pol.PeriodSeconds)
		}
	}
	return time.Duration(p) * time.Second
}

// normalize stabilizes the proposal, applies the rate policies and clamps
// to min/max, setting AbleToScale and ScalingLimited as Kubernetes does.
func (c *Controller) normalize(key string, hpa *autoscalingv2.HorizontalPodAutoscaler, now time.Time, current, proposal, minR, maxR int32) int32 {
	up, down := rules(hpa.Spec.Behavior, true), rules(hpa.Spec.Behavior, false)
	c.mu.Lock()
	defer c.mu.Unlock()
	h, seen := c.history[key]
	if !seen {
		// A controller that just started (or failed over) has no history:
		// count the current size as a recommendation, as Kubernetes does,
		// so that it does not scale down before a window has passed.
		h = c.historyOf(key)
		h.recs = []recommendation{{at: now, replicas: current}}
	}
	stabilized, why := h.stabilize(now, current, proposal, up, down)
	switch why {
	case "ScaleDownStabilized":
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, why, "recent recommendations were higher than current one, applying the highest recent recommendation")
	case "ScaleUpStabilized":
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, why, "recent recommendations were lower than current one, applying the lowest recent recommendation")
	default:
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
	}
	desired, limited := stabilized, false
	limitReason, limitMsg := "", ""
	switch {
	case stabilized > current:
		desired, limited = h.limit(now, current, stabilized, up)
		limitReason, limitMsg = "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
	case stabilized < current:
		desired, limited = h.limit(now, current, stabilized, down)
		limitReason, limitMsg = "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
	}
	switch {
	case desired > maxR:
		desired = maxR
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
	case desired < minR:
		desired = minR
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
	case limited:
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionTrue, limitReason, "%s", limitMsg)
	default:
		setCondition(hpa, autoscalingv2.ScalingLimited, corev1.ConditionFalse, "DesiredWithinRange", "the desired count is within the acceptable range")
	}
	return desired
}

// computeReplicas evaluates every metric and returns the highest proposal
// and the name of the metric behind it (for events). An error means no
// metric could be evaluated; the conditions and events are set.
func (c *Controller) computeReplicas(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, scale *autoscalingv1.Scale, current int32) (int32, string, []autoscalingv2.MetricStatus, error) {
	sel, err := labels.Parse(scale.Status.Selector)
	if err != nil || scale.Status.Selector == "" {
		msg := "the HPA target's scale is missing a selector"
		if err != nil {
			msg = fmt.Sprintf("couldn't convert selector into a corresponding internal selector object: %v", err)
		}
		c.recorder.Event(hpa, corev1.EventTypeWarning, "InvalidSelector", msg)
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", "%s", msg)
		return 0, "", nil, fmt.Errorf("%s", msg)
	}
	pods, err := c.pods.Pods(hpa.Namespace).List(sel)
	if err != nil {
		return 0, "", nil, err
	}
	var (
		best     int32 = -1
		bestName string
		statuses []autoscalingv2.MetricStatus
		firstErr error
		usage    map[string]PodUsage
	)
	specs := hpa.Spec.Metrics
	if len(specs) == 0 {
		// Kubernetes defaults an HPA without metrics to 80 % cpu.
		specs = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(80))}}}}
	}
	for i, m := range specs {
		if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil {
			err := fmt.Errorf("metric %d: type %q is not supported by berth's HPA (only Resource metrics: cpu, memory)", i, m.Type)
			c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetExternalMetric", err.Error())
			setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidMetricSourceType", "%v", err)
			firstErr = cmpErr(firstErr, err)
			statuses = append(statuses, autoscalingv2.MetricStatus{Type: m.Type}) // keeps statuses aligned with spec.metrics
			continue
		}
		res := m.Resource.Name
		if usage == nil {
			if usage, _, err = c.o.Metrics.PodMetrics(ctx, hpa.Namespace, sel); err != nil {
				err = fmt.Errorf("failed to get %s utilization: %w", res, err)
				c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetResourceMetric", err.Error())
				setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", "the HPA was unable to compute the replica count: %v", err)
				return 0, "", nil, err
			}
		}
		var p replicaProposal
		var name string
		st := autoscalingv2.MetricStatus{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{Name: res}}
		switch {
		case m.Resource.Target.AverageUtilization != nil:
			p, err = proposeReplicas(current, pods, usage, res, *m.Resource.Target.AverageUtilization, 0)
			name = string(res) + " resource utilization (percentage of request)"
			st.Resource.Current.AverageUtilization = ptr(p.utilization)
		case m.Resource.Target.AverageValue != nil:
			p, err = proposeReplicas(current, pods, usage, res, 0, m.Resource.Target.AverageValue.MilliValue())
			name = string(res) + " resource"
		default:
			err = fmt.Errorf("invalid resource metric source: neither a utilization target nor a value target set")
		}
		if err != nil {
			err = fmt.Errorf("failed to get %s utilization: %w", res, err)
			c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetResourceMetric", err.Error())
			setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", "the HPA was unable to compute the replica count: %v", err)
			firstErr = cmpErr(firstErr, err)
			statuses = append(statuses, autoscalingv2.MetricStatus{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{Name: res}})
			continue
		}
		st.Resource.Current.AverageValue = milliQuantity(p.averageMil, res)
		statuses = append(statuses, st)
		if p.replicas > best {
			best, bestName = p.replicas, name
		}
	}
	if best < 0 {
		if firstErr == nil {
			firstErr = fmt.Errorf("no metrics to scale on")
			setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedComputeMetricsReplicas", "%v", firstErr)
		}
		return 0, "", statuses, firstErr
	}
	return best, bestName, statuses, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// milliQuantity renders milli-units as cpu shows them ("250m") or memory
// (bytes, "128Mi").
func milliQuantity(milli int64, res corev1.ResourceName) *resource.Quantity {
	if res == corev1.ResourceCPU {
		return resource.NewMilliQuantity(milli, resource.DecimalSI)
	}
	return resource.NewQuantity(milli/1000, resource.BinarySI)
}

// setCondition sets or updates one condition, keeping its transition time
// while the status does not change.
func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType, s corev1.ConditionStatus, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for i := range hpa.Status.Conditions {
		c := &hpa.Status.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != s {
			c.LastTransitionTime = metav1.Now()
		}
		c.Status, c.Reason, c.Message = s, reason, msg
		return
	}
	hpa.Status.Conditions = append(hpa.Status.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()})
}

// getScale reads the target's autoscaling/v1 Scale.
func (c *Controller) getScale(ctx context.Context, ns string, ref autoscalingv2.CrossVersionObjectReference) (*autoscalingv1.Scale, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	apps := c.client.AppsV1()
	switch ref.Kind {
	case "Deployment":
		return apps.Deployments(ns).GetScale(ctx, ref.Name, metav1.GetOptions{})
	case "ReplicaSet":
		return apps.ReplicaSets(ns).GetScale(ctx, ref.Name, metav1.GetOptions{})
	default:
		return apps.StatefulSets(ns).GetScale(ctx, ref.Name, metav1.GetOptions{})
	}
}

func (c *Controller) updateScale(ctx context.Context, ns string, ref autoscalingv2.CrossVersionObjectReference, sc *autoscalingv1.Scale) error {
	apps := c.client.AppsV1()
	var err error
	switch ref.Kind {
	case "Deployment":
		_, err = apps.Deployments(ns).UpdateScale(ctx, ref.Name, sc, metav1.UpdateOptions{})
	case "ReplicaSet":
		_, err = apps.ReplicaSets(ns).UpdateScale(ctx, ref.Name, sc, metav1.UpdateOptions{})
	default:
		_, err = apps.StatefulSets(ns).UpdateScale(ctx, ref.Name, sc, metav1.UpdateOptions{})
	}
	return err
}

// checkRef accepts the scalable kinds berth serves /scale for.
func checkRef(ref autoscalingv2.CrossVersionObjectReference) error {
	group, _, _ := strings.Cut(ref.APIVersion, "/")
	if !strings.Contains(ref.APIVersion, "/") {
		group = ""
	}
	switch ref.Kind {
	case "Deployment", "ReplicaSet", "StatefulSet":
		if group == "apps" {
			return nil
		}
	}
	return fmt.Errorf("scaleTargetRef %s %s/%s has no scale subresource in berth (use apps/v1 Deployment, ReplicaSet or StatefulSet)", ref.Kind, ref.APIVersion, ref.Name)
}
