// Package localpath is berth's persistent volume controller: it creates
// the default StorageClass "local-path" (provisioner berth.dev/local-path,
// WaitForFirstConsumer, reclaim Delete), provisions a node-local volume for
// every claim of that class once a node is chosen for it, binds claims to
// volumes (provisioned ones and matching pre-created ones), marks volumes
// whose claim is gone Released and deletes the ones it provisioned when
// their reclaim policy is Delete. It takes the parts of Kubernetes' PV
// controller and an external provisioner that berth needs.
//
// A local-path volume is a directory <volumes dir>/<pv name> on one node
// (spec.local, nodeAffinity to that node's hostname). The controller only
// writes API objects: the node agent creates the directory when a pod
// first mounts it and removes it when the volume object is gone.
package localpath

import (
	"context"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/berth/berth/internal/cluster/kube"
)

// Name is the controller's event source and component name.
const Name = "persistentvolume-controller"

// Annotations Kubernetes' PV controller writes on bound objects.
const (
	annBindCompleted      = "pv.kubernetes.io/bind-completed"
	annBoundByController  = "pv.kubernetes.io/bound-by-controller"
	annStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
	annDefaultClass       = "storageclass.kubernetes.io/is-default-class"
)

// ProtectionFinalizer keeps a claim that a pod uses from going away under
// it (Kubernetes' pvc-protection).
const ProtectionFinalizer = "kubernetes.io/pvc-protection"

// Component runs the controller on the leading server.
func Component() kube.Component {
	return kube.Component{Name: Name, Run: func(ctx context.Context, c *kube.Clients) error {
		ctl := New(c.Client, c.Informers, c.Recorder(Name, ""), c.Logger.With("component", Name))
		c.Informers.Start(ctx.Done())
		return ctl.Run(ctx, 2)
	}}
}

// Controller provisions and binds volumes. Build it with New.
type Controller struct {
	client   kubernetes.Interface
	claims   corelisters.PersistentVolumeClaimLister
	volumes  corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger
}

// Queue keys: "claim/<ns>/<name>" or "volume/<name>".
const (
	claimPrefix  = "claim/"
	volumePrefix = "volume/"
)

// New registers the controller's informers on f (start f afterwards).
func New(client kubernetes.Interface, f informers.SharedInformerFactory, rec record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	claimInf := f.Core().V1().PersistentVolumeClaims()
	pvInf := f.Core().V1().PersistentVolumes()
	classInf := f.Storage().V1().StorageClasses()
	podInf := f.Core().V1().Pods()
	nodeInf := f.Core().V1().Nodes()
	c := &Controller{
		client:  client,
		claims:  claimInf.Lister(),
		volumes: pvInf.Lister(),
		classes: classInf.Lister(),
		pods:    podInf.Lister(),
		nodes:   nodeInf.Lister(),
		synced: []cache.InformerSynced{claimInf.Informer().HasSynced, pvInf.Informer().HasSynced, classInf.Informer().HasSynced,
			podInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "localpath"}),
		recorder: rec,
		log:      log,
	}
	_, _ = claimInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.claimEvent,
		UpdateFunc: func(_, cur any) { c.claimEvent(cur) },
		DeleteFunc: c.claimEvent,
	})
	_, _ = pvInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.volumeEvent,
		UpdateFunc: func(_, cur any) { c.volumeEvent(cur) },
		DeleteFunc: c.volumeEvent,
	})
	// A pod placed on a node (by the scheduler or by spec.nodeName)
	// may be the first consumer an unbound claim waits for; a pod that
	// ends may be the last user of a claim being deleted.
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.podEvent,
		UpdateFunc: func(_, cur any) { c.podEvent(cur) },
		DeleteFunc: func(obj any) { c.podEvent(unwrap(obj)) },
	})
	// A class created late lets its waiting claims go on.
	_, _ = classInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueUnbound() },
	})
	return c
}

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (c *Controller) claimEvent(obj any) {
	pvc, ok := unwrap(obj).(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	c.queue.Add(claimPrefix + pvc.Namespace + "/" + pvc.Name)
	if pvc.Spec.VolumeName != "" {
		c.queue.Add(volumePrefix + pvc.Spec.VolumeName)
	}
}

func (c *Controller) volumeEvent(obj any) {
	pv, ok := unwrap(obj).(*corev1.PersistentVolume)
	if !ok {
		return
	}
	c.queue.Add(volumePrefix + pv.Name)
	if ref := pv.Spec.ClaimRef; ref != nil {
		c.queue.Add(claimPrefix + ref.Namespace + "/" + ref.Name)
	} else {
		c.enqueueUnbound() // a new volume may fit a waiting claim
	}
}

func (c *Controller) podEvent(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			c.queue.Add(claimPrefix + pod.Namespace + "/" + v.PersistentVolumeClaim.ClaimName)
		}
	}
}

func (c *Controller) enqueueUnbound() {
	claims, err := c.claims.List(labels.Everything())
	if err != nil {
		return
	}
	for _, pvc := range claims {
		if pvc.Spec.VolumeName == "" {
			c.queue.Add(claimPrefix + pvc.Namespace + "/" + pvc.Name)
		}
	}
}

// Run creates the default class, then syncs with workers goroutines until
// ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	go func() {
		for ctx.Err() == nil {
			err := c.EnsureClass(ctx)
			if err == nil {
				return
			}
			c.log.Warn("creating the default StorageClass; retrying", "class", kube.LocalPathClass, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}()
	for range workers {
		go func() {
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	return nil
}

// EnsureClass creates the local-path StorageClass, marked as the default
// class, unless a class of that name exists (a user's edits are kept).
func (c *Controller) EnsureClass(ctx context.Context) error {
	_, err := c.client.StorageV1().StorageClasses().Get(ctx, kube.LocalPathClass, metav1.GetOptions{})
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	del, wffc := corev1.PersistentVolumeReclaimDelete, storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: kube.LocalPathClass, Annotations: map[string]string{annDefaultClass: "true"}},
		Provisioner:       kube.LocalPathProvisioner,
		ReclaimPolicy:     &del,
		VolumeBindingMode: &wffc,
	}
	_, err = c.client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		c.log.Info("created the default StorageClass", "class", kube.LocalPathClass, "provisioner", kube.LocalPathProvisioner)
	}
	return err
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	var err error
	switch {
	case len(key) > len(claimPrefix) && key[:len(claimPrefix)] == claimPrefix:
		ns, name, _ := cache.SplitMetaNamespaceKey(key[len(claimPrefix):])
		err = c.syncClaim(ctx, ns, name)
	case len(key) > len(volumePrefix) && key[:len(volumePrefix)] == volumePrefix:
		err = c.syncVolume(ctx, key[len(volumePrefix):])
	}
	if err != nil {
		if ctx.Err() == nil && !apierrors.IsConflict(err) {
			c.log.Info("sync failed; retrying", "key", key, "err", err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// ClassOf is a claim's or volume's class: the beta annotation wins over
// the field, as in Kubernetes.
func ClassOf(ann map[string]string, field *string) string {
	if cl, ok := ann[corev1.BetaStorageClassAnnotation]; ok {
		return cl
	}
	if field != nil {
		return *field
	}
	return ""
}

// syncClaim binds an unbound claim (to a matching volume, else to one it
// provisions) and completes the binding of a bound one.
func (c *Controller) syncClaim(ctx context.Context, ns, name string) error {
	pvc, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // its volume is looked at by syncVolume
	}
	if err != nil {
		return err
	}
	if pvc.DeletionTimestamp != nil {
		return c.releaseProtection(ctx, pvc)
	}
	if !slices.Contains(pvc.Finalizers, ProtectionFinalizer) {
		// Added here rather than at admission, so that the bare API
		// server (without this controller) deletes claims at once.
		pvc = pvc.DeepCopy()
		pvc.Finalizers = append(pvc.Finalizers, ProtectionFinalizer)
		if pvc, err = c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if pvc.Spec.VolumeName != "" {
		pv, err := c.volumes.Get(pvc.Spec.VolumeName)
		if apierrors.IsNotFound(err) {
			if pvc.Status.Phase == corev1.ClaimBound {
				c.recorder.Eventf(pvc, corev1.EventTypeWarning, "ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
				return c.setClaimPhase(ctx, pvc, corev1.ClaimLost)
			}
			return nil // a pre-bound claim waits for its volume
		}
		if err != nil {
			return err
		}
		if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name || (ref.UID != "" && ref.UID != pvc.UID) {
			if ref == nil {
				return c.bind(ctx, pv, pvc) // pre-bound by the user
			}
			return nil // the volume belongs to another claim: the claim waits
		}
		return c.bind(ctx, pv, pvc)
	}

	className := ClassOf(pvc.Annotations, pvc.Spec.StorageClassName)
	var class *storagev1.StorageClass
	if className != "" {
		class, err = c.classes.Get(className)
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	waitForConsumer := class != nil && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
	node := ""
	if waitForConsumer {
		node = c.selectedNode(pvc)
		if node == "" {
			c.recorder.Event(pvc, corev1.EventTypeNormal, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
			return nil
		}
	}
	pv, err := c.findVolume(pvc, className, node)
	if err != nil {
		return err
	}
	if pv != nil {
		return c.bind(ctx, pv, pvc)
	}
	switch {
	case className == "":
		c.recorder.Event(pvc, corev1.EventTypeNormal, "FailedBinding", "no persistent volumes available for this claim and no storage class is set")
		return nil
	case class == nil:
		c.recorder.Eventf(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "storageclass.storage.k8s.io %q not found", className)
		return nil
	case class.Provisioner != kube.LocalPathProvisioner:
		c.recorder.Eventf(pvc, corev1.EventTypeNormal, "ExternalProvisioning", "Waiting for a volume to be created by the external provisioner %q", class.Provisioner)
		return nil
	case !waitForConsumer:
		c.recorder.Eventf(pvc, corev1.EventTypeWarning, "ProvisioningFailed", "%s provisions node-local volumes only for a chosen node: give StorageClass %q volumeBindingMode WaitForFirstConsumer", kube.LocalPathProvisioner, class.Name)
		return nil
	}
	return c.provision(ctx, pvc, class, node)
}

// selectedNode is the node the scheduler chose for the claim; failing
// that, the node of a running pod that uses it (a pod created with
// spec.nodeName never passes the scheduler).
func (c *Controller) selectedNode(pvc *corev1.PersistentVolumeClaim) string {
	if n := pvc.Annotations[kube.AnnSelectedNode]; n != "" {
		return n
	}
	pods, err := c.pods.Pods(pvc.Namespace).List(labels.Everything())
	if err != nil {
		return ""
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
				return p.Spec.NodeName
			}
		}
	}
	return ""
}

// findVolume picks the smallest available volume that satisfies the claim:
// same class and volume mode, enough capacity, every requested access
// mode, the claim's selector, and (with node set) usable on that node. A
// volume pre-bound to this claim (claimRef by name) is taken first.
func (c *Controller) findVolume(pvc *corev1.PersistentVolumeClaim, className, node string) (*corev1.PersistentVolume, error) {
	all, err := c.volumes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var sel labels.Selector
	if pvc.Spec.Selector != nil {
		if sel, err = metav1.LabelSelectorAsSelector(pvc.Spec.Selector); err != nil {
			return nil, nil // an invalid selector matches nothing
		}
	}
	var nodeObj *corev1.Node
	if node != "" {
		if nodeObj, err = c.nodes.Get(node); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	var best *corev1.PersistentVolume
	for _, pv := range all {
		if pv.DeletionTimestamp != nil || ClassOf(pv.Annotations, &pv.Spec.StorageClassName) != className {
			continue
		}
		if ref := pv.Spec.ClaimRef; ref != nil {
			if ref.Namespace != pvc.Namespace || ref.Name != pvc.Name || (ref.UID != "" && ref.UID != pvc.UID) {
				continue
			}
			return pv, nil // pre-bound to this claim
		}
		if pv.Status.Phase != corev1.VolumeAvailable && pv.Status.Phase != corev1.VolumePending && pv.Status.Phase != "" {
			continue
		}
		if volumeMode(pv.Spec.VolumeMode) != volumeMode(pvc.Spec.VolumeMode) || !hasModes(pv.Spec.AccessModes, pvc.Spec.AccessModes) {
			continue
		}
		have := pv.Spec.Capacity[corev1.ResourceStorage]
		if have.Cmp(want) < 0 || (sel != nil && !sel.Matches(labels.Set(pv.Labels))) {
			continue
		}
		if node != "" && pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
			if nodeObj == nil || !matchesNode(pv, nodeObj) {
				continue
			}
		}
		if best == nil {
			best = pv
			continue
		}
		bc := best.Spec.Capacity[corev1.ResourceStorage]
		if have.Cmp(bc) < 0 {
			best = pv
		}
	}
	return best, nil
}

func volumeMode(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}

func hasModes(have, want []corev1.PersistentVolumeAccessMode) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// matchesNode reports whether the volume's required node affinity admits
// node n.
func matchesNode(pv *corev1.PersistentVolume, n *corev1.Node) bool {
	sel, err := nodeaffinity.NewNodeSelector(pv.Spec.NodeAffinity.Required)
	return err == nil && sel.Match(n)
}
