package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The built-in collectors: they finish deletions the API started. They are
// level-triggered: an etcd watch on /registry/ queues the objects that
// changed, and a periodic sweep re-examines everything, so a restart or a
// missed event only delays the work.
//
//   - finalizers "orphan" and "foregroundDeletion" on a deleting object:
//     dependents lose their ownerReference, or are deleted first;
//   - namespaces being deleted lose all their contents, then go;
//   - dependents whose every owner is gone are deleted (background policy);
//   - pods past their deletion grace period are removed;
//   - any other deleting object with no finalizer left is removed.

type gcTask struct {
	r        *resource
	ns, name string
	uid      types.UID // set for "owner deleted" tasks
}

func keyResource(key string) (r *resource, ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, "/registry/")
	if !ok {
		return nil, "", "", false
	}
	p := strings.Split(rest, "/")
	if len(p) != 5 {
		return nil, "", "", false
	}
	g := p[0]
	if g == "core" {
		g = ""
	}
	r = lookup(g, p[1], p[2])
	if r == nil {
		return nil, "", "", false
	}
	ns = p[3]
	if ns == "-" {
		ns = ""
	}
	return r, ns, p[4], true
}

type metaOnly struct {
	Metadata struct {
		UID               types.UID               `json:"uid"`
		OwnerReferences   []metav1.OwnerReference `json:"ownerReferences"`
		DeletionTimestamp *metav1.Time            `json:"deletionTimestamp"`
		Finalizers        []string                `json:"finalizers"`
	} `json:"metadata"`
}

// Bootstrap creates the standard namespaces if they are missing.
func (s *Server) Bootstrap(ctx context.Context) error {
	nsr := lookup("", "v1", "namespaces")
	for _, n := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		_, err := s.createObject(ctx, &reqInfo{r: nsr}, ns, "berth-server", false)
		if err != nil && toStatus(err).status.Reason != metav1.StatusReasonAlreadyExists {
			return err
		}
	}
	return s.bootstrapKubernetesService(ctx)
}

// bootstrapKubernetesService creates default/kubernetes (the first address
// of the service range, port 443) and adds this server to its endpoints.
func (s *Server) bootstrapKubernetesService(ctx context.Context) error {
	if s.cfg.AdvertiseAddress == "" || s.cfg.AdvertisePort == 0 {
		return nil
	}
	first := s.serviceCIDR.Masked().Addr().Next()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{ClusterIP: first.String(), Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(int32(s.cfg.AdvertisePort))}}}}
	svcr := lookup("", "v1", "services")
	_, err := s.st.get(ctx, svcr, "default", "kubernetes")
	if err != nil && toStatus(err).status.Code == 404 {
		_, err = s.createObject(ctx, &reqInfo{r: svcr, ns: "default"}, svc, "berth-server", false)
		if err != nil && toStatus(err).status.Code == 422 {
			err = nil // another server created it (and holds the address) meanwhile
		}
	}
	if err != nil && toStatus(err).status.Reason != metav1.StatusReasonAlreadyExists {
		return err
	}
	epr := lookup("", "v1", "endpoints")
	addr := corev1.EndpointAddress{IP: s.cfg.AdvertiseAddress}
	port := corev1.EndpointPort{Name: "https", Port: int32(s.cfg.AdvertisePort), Protocol: corev1.ProtocolTCP}
	_, err = s.st.guaranteedUpdate(ctx, epr, "default", "kubernetes", func(cur runtime.Object) (runtime.Object, error) {
		ep := cur.(*corev1.Endpoints)
		for _, ss := range ep.Subsets {
			for _, a := range ss.Addresses {
				if a.IP == addr.IP {
					return nil, nil
				}
			}
		}
		if len(ep.Subsets) == 0 {
			ep.Subsets = []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{port}}}
		}
		ep.Subsets[0].Addresses = append(ep.Subsets[0].Addresses, addr)
		return ep, nil
	})
	if err != nil && toStatus(err).status.Code == 404 {
		ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr}, Ports: []corev1.EndpointPort{port}}}}
		_, err = s.createObject(ctx, &reqInfo{r: epr, ns: "default"}, ep, "berth-server", false)
		if err != nil && toStatus(err).status.Reason == metav1.StatusReasonAlreadyExists {
			return s.bootstrapKubernetesService(ctx) // another server won the race
		}
	}
	return err
}

// Run runs the collectors until ctx ends.
func (s *Server) Run(ctx context.Context) {
	queue := make(chan gcTask, 4096)
	enqueue := func(t gcTask) {
		select {
		case queue <- t:
		default: // the periodic sweep will catch up
		}
	}
	go func() {
		var from int64
		for ctx.Err() == nil {
			if from == 0 {
				rev, err := s.sweep(ctx, enqueue, true)
				if err != nil {
					time.Sleep(time.Second)
					continue
				}
				from = rev + 1
			}
			wch := s.cfg.Client.Watch(clientv3.WithRequireLeader(ctx), "/registry/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(from))
			for resp := range wch {
				if resp.CompactRevision != 0 || resp.Err() != nil {
					from = 0 // rebuild from a fresh scan
					break
				}
				from = resp.Header.Revision + 1
				for _, ev := range resp.Events {
					s.owners.observe(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
					r, ns, name, ok := keyResource(string(ev.Kv.Key))
					if !ok {
						continue
					}
					if ev.Type == clientv3.EventTypeDelete {
						if ev.PrevKv != nil {
							var m metaOnly
							if json.Unmarshal(ev.PrevKv.Value, &m) == nil {
								enqueue(gcTask{r: r, ns: ns, name: name, uid: m.Metadata.UID})
							}
							if r.kind == "Service" && r.group == "" {
								var svc corev1.Service
								if json.Unmarshal(ev.PrevKv.Value, &svc) == nil {
									s.releaseClusterIP(ctx, ns, name, svc.Spec.ClusterIP)
									s.releaseNodePorts(ctx, ns, name, nodePortsOf(&svc))
								}
							}
						}
						continue
					}
					if bytes.Contains(ev.Kv.Value, []byte(`"deletionTimestamp"`)) {
						enqueue(gcTask{r: r, ns: ns, name: name})
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	tick := time.NewTicker(60 * time.Second)
	defer tick.Stop()
	timers := map[string]*time.Timer{}
	for {
		select {
		case <-ctx.Done():
			for _, t := range timers {
				t.Stop()
			}
			return
		case <-tick.C:
			_, _ = s.sweep(ctx, enqueue, false)
		case t := <-queue:
			if t.uid != "" {
				s.ownerGone(ctx, t)
				continue
			}
			if wait := s.finishDeletion(ctx, t); wait > 0 {
				k := t.r.key(t.ns, t.name)
				if old := timers[k]; old != nil {
					old.Stop()
				}
				timers[k] = time.AfterFunc(wait, func() { enqueue(t) })
			}
		}
	}
}

// sweep re-examines every object: deleting ones and orphaned dependents
// (owners are looked up in the same snapshot first, then confirmed with a
// GET). With rebuild it also rebuilds the owner index. It returns the
// snapshot's revision.
func (s *Server) sweep(ctx context.Context, enqueue func(gcTask), rebuild bool) (int64, error) {
	resp, err := s.cfg.Client.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	uids := make(map[types.UID]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if u := ownUID(kv.Value); u != "" {
			uids[u] = true
		}
	}
	idx := newOwnerIndex()
	for _, kv := range resp.Kvs {
		idx.observe(string(kv.Key), kv.Value, false)
		r, ns, name, ok := keyResource(string(kv.Key))
		if !ok {
			continue
		}
		if bytes.Contains(kv.Value, []byte(`"deletionTimestamp"`)) {
			enqueue(gcTask{r: r, ns: ns, name: name})
		}
		if bytes.Contains(kv.Value, []byte(`"ownerReferences"`)) {
			var m metaOnly
			if json.Unmarshal(kv.Value, &m) == nil && len(m.Metadata.OwnerReferences) > 0 && m.Metadata.DeletionTimestamp == nil {
				missing := false
				for _, ref := range m.Metadata.OwnerReferences {
					missing = missing || !uids[ref.UID]
				}
				if missing {
					s.collectIfOrphaned(ctx, r, ns, name, m.Metadata.OwnerReferences)
				}
			}
		}
	}
	if rebuild {
		// Only the watcher's own sweep rebuilds: it resumes watching right
		// after this snapshot, so no event falls between.
		s.owners.replace(idx)
	}
	return resp.Header.Revision, nil
}

// ownUID extracts metadata.uid from stored JSON without decoding it: the
// first "uid" key is the object's own (metadata precedes everything that
// could nest another uid, and in ObjectMeta uid precedes ownerReferences).
func ownUID(data []byte) types.UID {
	i := bytes.Index(data, []byte(`"uid":"`))
	if i < 0 {
		return ""
	}
	rest := data[i+len(`"uid":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return types.UID(rest[:j])
}

// ownerIndex maps owner UIDs to the keys of their dependents, maintained
// from the collector's watch so finding dependents costs no scan.
type ownerIndex struct {
	mu    sync.Mutex
	ready bool
	byUID map[types.UID]map[string]bool
	byKey map[string][]types.UID
	// namespaces caches namespace existence (value: terminating) for the
	// create path; a miss falls back to etcd.
	namespaces map[string]bool
}

func newOwnerIndex() *ownerIndex {
	return &ownerIndex{ready: true, byUID: map[types.UID]map[string]bool{}, byKey: map[string][]types.UID{}, namespaces: map[string]bool{}}
}

func (x *ownerIndex) replace(o *ownerIndex) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ready, x.byUID, x.byKey, x.namespaces = true, o.byUID, o.byKey, o.namespaces
}

func (x *ownerIndex) observe(key string, value []byte, deleted bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byUID == nil {
		x.byUID, x.byKey, x.namespaces = map[types.UID]map[string]bool{}, map[string][]types.UID{}, map[string]bool{}
	}
	if name, ok := strings.CutPrefix(key, nsKeyPrefix); ok {
		if deleted {
			delete(x.namespaces, name)
		} else {
			x.namespaces[name] = bytes.Contains(value, []byte(`"deletionTimestamp"`))
		}
	}
	for _, u := range x.byKey[key] {
		delete(x.byUID[u], key)
		if len(x.byUID[u]) == 0 {
			delete(x.byUID, u)
		}
	}
	delete(x.byKey, key)
	if deleted || !bytes.Contains(value, []byte(`"ownerReferences"`)) {
		return
	}
	var m metaOnly
	if json.Unmarshal(value, &m) != nil {
		return
	}
	for _, ref := range m.Metadata.OwnerReferences {
		if x.byUID[ref.UID] == nil {
			x.byUID[ref.UID] = map[string]bool{}
		}
		x.byUID[ref.UID][key] = true
		x.byKey[key] = append(x.byKey[key], ref.UID)
	}
}

func (x *ownerIndex) dependents(uid types.UID) ([]string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready {
		return nil, false
	}
	var keys []string
	for k := range x.byUID[uid] {
		keys = append(keys, k)
	}
	return keys, true
}

// ownerAlive reports whether the owner named by ref exists in ns with ref's UID.
func (s *Server) ownerAlive(ctx context.Context, ns string, ref metav1.OwnerReference) bool {
	or := byKind(ref.APIVersion, ref.Kind)
	if or == nil {
		return true // unknown kind: never collect on its account
	}
	if !or.namespaced {
		ns = ""
	}
	obj, err := s.st.get(ctx, or, ns, ref.Name)
	if err != nil {
		return toStatus(err).status.Code != 404
	}
	return accessor(obj).GetUID() == ref.UID
}

func (s *Server) collectIfOrphaned(ctx context.Context, r *resource, ns, name string, refs []metav1.OwnerReference) {
	for _, ref := range refs {
		if s.ownerAlive(ctx, ns, ref) {
			return
		}
	}
	_, _ = s.deleteObject(ctx, r, ns, name, &metav1.DeleteOptions{})
}

// dependents lists objects in ns (and cluster-scoped ones) owned by uid.
func (s *Server) dependents(ctx context.Context, ns string, uid types.UID) []gcTask {
	var out []gcTask
	if keys, ok := s.owners.dependents(uid); ok {
		for _, k := range keys {
			if r, dns, name, ok := keyResource(k); ok && (ns == "" || dns == ns || dns == "") {
				out = append(out, gcTask{r: r, ns: dns, name: name})
			}
		}
		return out
	}
	resp, err := s.cfg.Client.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		return nil
	}
	needle := []byte(string(uid))
	for _, kv := range resp.Kvs {
		if !bytes.Contains(kv.Value, needle) {
			continue
		}
		r, dns, name, ok := keyResource(string(kv.Key))
		if !ok || (ns != "" && dns != ns && dns != "") {
			continue
		}
		var m metaOnly
		if json.Unmarshal(kv.Value, &m) != nil {
			continue
		}
		for _, ref := range m.Metadata.OwnerReferences {
			if ref.UID == uid {
				out = append(out, gcTask{r: r, ns: dns, name: name})
				break
			}
		}
	}
	return out
}

// ownerGone handles the deletion of an owner: dependents without another
// live owner are deleted; the others just lose the reference.
func (s *Server) ownerGone(ctx context.Context, t gcTask) {
	for _, d := range s.dependents(ctx, t.ns, t.uid) {
		obj, err := s.st.get(ctx, d.r, d.ns, d.name)
		if err != nil {
			continue
		}
		var others []metav1.OwnerReference
		for _, ref := range accessor(obj).GetOwnerReferences() {
			if ref.UID != t.uid {
				others = append(others, ref)
			}
		}
		alive := false
		for _, ref := range others {
			if s.ownerAlive(ctx, d.ns, ref) {
				alive = true
			}
		}
		if alive {
			_, _ = s.st.guaranteedUpdate(ctx, d.r, d.ns, d.name, func(cur runtime.Object) (runtime.Object, error) {
				a := accessor(cur)
				refs := slices.DeleteFunc(a.GetOwnerReferences(), func(o metav1.OwnerReference) bool { return o.UID == t.uid })
				a.SetOwnerReferences(refs)
				return cur, nil
			})
			continue
		}
		_, _ = s.deleteObject(ctx, d.r, d.ns, d.name, &metav1.DeleteOptions{})
	}
}

func removeFinalizer(cur runtime.Object, f string) runtime.Object {
	a := accessor(cur)
	if !slices.Contains(a.GetFinalizers(), f) {
		return nil
	}
	a.SetFinalizers(slices.DeleteFunc(a.GetFinalizers(), func(x string) bool { return x == f }))
	return cur
}

// finishDeletion advances one deleting object. It returns how long to wait
// before looking again (pods in their grace period), or 0.
func (s *Server) finishDeletion(ctx context.Context, t gcTask) time.Duration {
	obj, err := s.st.get(ctx, t.r, t.ns, t.name)
	if err != nil {
		return 0
	}
	a := accessor(obj)
	if a.GetDeletionTimestamp() == nil {
		return 0
	}
	fins := a.GetFinalizers()
	switch {
	case slices.Contains(fins, metav1.FinalizerOrphanDependents):
		for _, d := range s.dependents(ctx, t.ns, a.GetUID()) {
			_, _ = s.st.guaranteedUpdate(ctx, d.r, d.ns, d.name, func(cur runtime.Object) (runtime.Object, error) {
				ca := accessor(cur)
				ca.SetOwnerReferences(slices.DeleteFunc(ca.GetOwnerReferences(), func(o metav1.OwnerReference) bool { return o.UID == a.GetUID() }))
				return cur, nil
			})
		}
		s.dropFinalizer(ctx, t, metav1.FinalizerOrphanDependents)
		return 0
	case slices.Contains(fins, metav1.FinalizerDeleteDependents):
		deps := s.dependents(ctx, t.ns, a.GetUID())
		if len(deps) == 0 {
			s.dropFinalizer(ctx, t, metav1.FinalizerDeleteDependents)
			return 0
		}
		fg := metav1.DeletePropagationForeground
		for _, d := range deps {
			_, _ = s.deleteObject(ctx, d.r, d.ns, d.name, &metav1.DeleteOptions{PropagationPolicy: &fg})
		}
		return 500 * time.Millisecond
	case len(fins) > 0:
		return 0 // someone else's finalizer
	}
	if nsObj, ok := obj.(*corev1.Namespace); ok {
		if s.emptyNamespace(ctx, nsObj.Name) {
			_ = s.st.remove(ctx, t.r, "", t.name, revOf(obj))
			return 0
		}
		return time.Second
	}
	if pod, ok := obj.(*corev1.Pod); ok && pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds > 0 {
		if wait := time.Until(pod.DeletionTimestamp.Time); wait > 0 {
			return wait + 10*time.Millisecond
		}
	}
	_ = s.st.remove(ctx, t.r, t.ns, t.name, revOf(obj))
	return 0
}

func (s *Server) dropFinalizer(ctx context.Context, t gcTask, f string) {
	out, err := s.st.guaranteedUpdate(ctx, t.r, t.ns, t.name, func(cur runtime.Object) (runtime.Object, error) {
		return removeFinalizer(cur, f), nil
	})
	if err == nil && out != nil && len(accessor(out).GetFinalizers()) == 0 {
		_ = s.st.remove(ctx, t.r, t.ns, t.name, revOf(out))
	}
}

// emptyNamespace deletes everything in ns and reports whether nothing is left.
func (s *Server) emptyNamespace(ctx context.Context, ns string) bool {
	empty := true
	zero := int64(0)
	for _, r := range resources {
		if !r.namespaced || r.metrics || r.virtual {
			continue
		}
		page, err := s.st.list(ctx, r, ns, 0, "", 0, nil)
		if err != nil {
			return false
		}
		for _, it := range page.items {
			empty = false
			a := accessor(it)
			if a.GetDeletionTimestamp() == nil {
				_, _ = s.deleteObject(ctx, r, ns, a.GetName(), &metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
		}
	}
	return empty
}

var nsKeyPrefix = lookup("", "v1", "namespaces").prefix() + "-/"

// namespace reports a cached namespace's state: exists, terminating, known.
func (x *ownerIndex) namespace(name string) (terminating, known bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready {
		return false, false
	}
	t, ok := x.namespaces[name]
	return t, ok
}

// markTerminating records at once that this server put ns into
// Terminating, so its own creates see it without waiting for the watch.
func (x *ownerIndex) markTerminating(ns string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.namespaces != nil {
		x.namespaces[ns] = true
	}
}
