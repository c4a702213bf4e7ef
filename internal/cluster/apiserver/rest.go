package apiserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/cluster/pki"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// reqInfo is a parsed resource request.
type reqInfo struct {
	r             *resource
	ns, name, sub string
	verb          string
	user          *User
	watchPath     bool
}

const maxBodyBytes = 3 << 20

func (s *Server) serveResource(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	var group, version string
	var rest []string
	if parts[0] == "api" {
		if len(parts) < 2 {
			s.discoveryAPI(w, req)
			return
		}
		version, rest = parts[1], parts[2:]
	} else {
		if len(parts) == 2 {
			s.discoveryGroup(w, req, parts[1])
			return
		}
		group, version, rest = parts[1], parts[2], parts[3:]
	}
	if !hasGroupVersion(group, version) {
		writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, fmt.Sprintf("the server could not find the requested resource (group %q, version %q)", group, version)))
		return
	}
	if len(rest) == 0 {
		s.discoveryResources(w, req, group, version)
		return
	}
	ri := &reqInfo{user: UserFrom(req.Context())}
	if rest[0] == "watch" {
		ri.watchPath, rest = true, rest[1:]
		if len(rest) == 0 {
			writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, "the server could not find the requested resource"))
			return
		}
	}
	if rest[0] == "namespaces" && len(rest) >= 3 && !(len(rest) == 3 && (rest[2] == "status" || rest[2] == "finalize")) {
		ri.ns, rest = rest[1], rest[2:]
	}
	ri.r = lookup(group, version, rest[0])
	if ri.r == nil || len(rest) > 3 {
		writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, fmt.Sprintf("the server could not find the requested resource %q in %s", strings.Join(rest, "/"), apiVersionOf(group, version))))
		return
	}
	if len(rest) >= 2 {
		ri.name = rest[1]
	}
	if len(rest) == 3 {
		ri.sub = rest[2]
		if !(ri.sub == "status" && ri.r.status) && !(ri.sub == "scale" && ri.r.scale) && !slices.Contains(ri.r.extraSubs, ri.sub) {
			writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, fmt.Sprintf("%s has no subresource %q", ri.r.groupResource(), ri.sub)))
			return
		}
	}
	if (ri.r.namespaced && ri.ns == "" && ri.name != "") || (!ri.r.namespaced && ri.ns != "") {
		writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, fmt.Sprintf("the server could not find the requested resource: %s is %s", ri.r.groupResource(), map[bool]string{true: "namespaced", false: "cluster-scoped"}[ri.r.namespaced])))
		return
	}
	q := req.URL.Query()
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case ri.watchPath || (ri.name == "" && isTrue(q.Get("watch"))):
			ri.verb = "watch"
		case ri.name == "":
			ri.verb = "list"
		default:
			ri.verb = "get"
		}
	case http.MethodPost:
		ri.verb = "create"
	case http.MethodPut:
		ri.verb = "update"
	case http.MethodPatch:
		ri.verb = "patch"
	case http.MethodDelete:
		ri.verb = "delete"
		if ri.name == "" {
			ri.verb = "deletecollection"
		}
	default:
		writeError(w, errMethodNotAllowed("method %s is not allowed on %s", req.Method, req.URL.Path))
		return
	}
	if ri.r.virtual {
		if ri.verb != "create" || ri.name != "" {
			writeError(w, errMethodNotAllowed("%s only supports create", ri.r.groupResource()))
			return
		}
		if err := s.review(w, req, ri); err != nil {
			writeError(w, err)
		}
		return
	}
	if err := s.authorize(req.Context(), ri.user, ri); err != nil {
		writeError(w, err)
		return
	}
	if ri.r.metrics {
		if err := s.serveMetrics(w, req, ri); err != nil {
			writeError(w, err)
		}
		return
	}
	var err error
	switch ri.verb {
	case "watch":
		err = s.watch(w, req, ri)
	case "list":
		err = s.list(w, req, ri)
	case "get":
		err = s.getItem(w, req, ri)
	case "create":
		err = s.create(w, req, ri)
	case "update":
		err = s.update(w, req, ri)
	case "patch":
		err = s.patch(w, req, ri)
	case "delete":
		err = s.deleteItem(w, req, ri)
	case "deletecollection":
		err = s.deleteCollection(w, req, ri)
	}
	if err != nil {
		writeError(w, err)
	}
}

func apiVersionOf(group, version string) string {
	if group == "" {
		return version
	}
	return group + "/" + version
}

func isTrue(v string) bool { return v == "true" || v == "1" }

// readBody reads a request body up to the limit.
func readBody(req *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(req.Body, maxBodyBytes+1))
	if err != nil {
		return nil, errBadRequest("reading request body: %v", err)
	}
	if len(b) > maxBodyBytes {
		return nil, errTooLarge("request body is larger than %d bytes", maxBodyBytes)
	}
	if len(b) == 0 {
		return nil, errBadRequest("the request body is empty: want a %s object", "JSON, YAML or protobuf")
	}
	return b, nil
}

func mediaType(req *http.Request) string {
	ct := req.Header.Get("Content-Type")
	if ct == "" {
		return "application/json"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

// decodeObject decodes body (JSON, YAML or Kubernetes protobuf) as an
// object of resource r. Unknown or duplicate fields are errors when
// validation is "Strict" and warnings when "Warn".
func (s *Server) decodeObject(r *resource, mt string, body []byte, validation string) (runtime.Object, []string, error) {
	switch mt {
	case "application/vnd.kubernetes.protobuf":
		obj := r.newObj()
		out, gvk, err := s.proto.Decode(body, nil, obj)
		if err != nil {
			return nil, nil, errBadRequest("decoding protobuf body as %s: %v", r.kind, err)
		}
		if gvk == nil || gvk.Kind != r.kind || gvk.GroupVersion().String() != r.apiVersion() {
			return nil, nil, errBadRequest("the protobuf body is a %v: want %s %s", gvk, r.apiVersion(), r.kind)
		}
		setTypeMeta(r, out)
		return out, nil, nil
	case "application/yaml", "application/apply-patch+yaml", "text/yaml", "application/x-yaml":
		j, err := yaml.YAMLToJSON(body)
		if err != nil {
			return nil, nil, errBadRequest("decoding YAML body: %v", err)
		}
		body = j
	case "application/json", "":
	default:
		return nil, nil, errUnsupportedMedia(mt)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(body, &tm); err != nil {
		return nil, nil, errBadRequest("decoding JSON body: %v: want a JSON object of kind %s", err, r.kind)
	}
	if tm.Kind != "" && tm.Kind != r.kind {
		return nil, nil, errBadRequest("the body is of kind %q: want %q (%s)", tm.Kind, r.kind, r.apiVersion())
	}
	if tm.APIVersion != "" && tm.APIVersion != r.apiVersion() {
		return nil, nil, errBadRequest("the body has apiVersion %q: want %q for %s", tm.APIVersion, r.apiVersion(), r.kind)
	}
	obj := r.newObj()
	var warnings []string
	if validation == "Strict" || validation == "Warn" || validation == "" {
		strictErrs, err := sigsjson.UnmarshalStrict(body, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			return nil, nil, errBadRequest("decoding body as %s: %v", r.kind, err)
		}
		for _, e := range strictErrs {
			if validation == "Strict" {
				msgs := make([]string, len(strictErrs))
				for i, e := range strictErrs {
					msgs[i] = e.Error()
				}
				return nil, nil, errBadRequest("strict decoding error: %s", strings.Join(msgs, ", "))
			}
			warnings = append(warnings, e.Error())
		}
	} else if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, obj); err != nil {
		return nil, nil, errBadRequest("decoding body as %s: %v", r.kind, err)
	}
	setTypeMeta(r, obj)
	return obj, warnings, nil
}

func addWarnings(w http.ResponseWriter, ws []string) {
	for _, m := range ws {
		w.Header().Add("Warning", `299 - "`+strings.ReplaceAll(m, `"`, `'`)+`"`)
	}
}

func randSuffix() string {
	const alpha = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alpha[int(b[i])%len(alpha)]
	}
	return string(b)
}

func isDryRun(req *http.Request) bool { return slices.Contains(req.URL.Query()["dryRun"], "All") }

// checkNamespace verifies that ns exists and is not terminating.
func (s *Server) checkNamespace(ctx context.Context, ns string) error {
	if terminating, known := s.owners.namespace(ns); known {
		if terminating {
			return errForbidden("unable to create new content in namespace %s because it is being terminated", ns)
		}
		return nil
	}
	nsr := lookup("", "v1", "namespaces")
	obj, err := s.st.getSerializable(ctx, nsr, "", ns)
	if err != nil && toStatus(err).status.Code == 404 {
		obj, err = s.st.get(ctx, nsr, "", ns) // just created elsewhere?
	}
	if err != nil {
		return err
	}
	if accessor(obj).GetDeletionTimestamp() != nil {
		return errForbidden("unable to create new content in namespace %s because it is being terminated", ns)
	}
	return nil
}

func (s *Server) create(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	ctx := req.Context()
	if ri.name != "" {
		switch {
		case ri.r.name == "pods" && ri.sub == "binding":
			return s.bindPod(w, req, ri)
		case ri.r.name == "pods" && ri.sub == "eviction":
			return s.evictPod(w, req, ri)
		case ri.sub == "":
			return errMethodNotAllowed("POST is not allowed on a named %s: POST to the collection", ri.r.kind)
		default:
			return s.podStream(w, req, ri)
		}
	}
	if ri.r.namespaced && ri.ns == "" {
		return errMethodNotAllowed("%s are namespaced: POST to /…/namespaces/NAMESPACE/%s", ri.r.name, ri.r.name)
	}
	body, err := readBody(req)
	if err != nil {
		return err
	}
	q := req.URL.Query()
	obj, warnings, err := s.decodeObject(ri.r, mediaType(req), body, q.Get("fieldValidation"))
	if err != nil {
		return err
	}
	out, err := s.createObject(ctx, ri, obj, fieldManager(req, "unknown"), isDryRun(req))
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	return s.respondObject(w, req, ri.r, 201, out)
}

func fieldManager(req *http.Request, def string) string {
	if m := req.URL.Query().Get("fieldManager"); m != "" {
		return m
	}
	if ua := req.Header.Get("User-Agent"); ua != "" {
		if i := strings.IndexByte(ua, '/'); i > 0 {
			return ua[:i]
		}
	}
	return def
}

// createObject runs defaulting, validation and metadata preparation, then stores obj.
// applied, when set, is the server-side apply managedFields entry to record.
func (s *Server) createObject(ctx context.Context, ri *reqInfo, obj runtime.Object, manager string, dryRun bool, appliedEntry ...*metav1.ManagedFieldsEntry) (runtime.Object, error) {
	r := ri.r
	a := accessor(obj)
	var applied *metav1.ManagedFieldsEntry
	if len(appliedEntry) > 0 {
		applied = appliedEntry[0]
	}
	if r.namespaced {
		if a.GetNamespace() != "" && a.GetNamespace() != ri.ns {
			return nil, errBadRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", a.GetNamespace(), ri.ns)
		}
		a.SetNamespace(ri.ns)
	} else {
		a.SetNamespace("")
	}
	if ri.user != nil && ri.user.Role == pki.RoleNode && (r.name == "nodes" || r.name == "leases") && a.GetName() != ri.user.Node {
		return nil, errForbidden("node %q may only create its own %s, not %q", ri.user.Node, r.kind, a.GetName())
	}
	if a.GetResourceVersion() != "" {
		return nil, errInvalid(r, a.GetName(), []fieldErr{invalid("metadata.resourceVersion", a.GetResourceVersion(), "must be empty on create")})
	}
	genName := a.GetName() == "" && a.GetGenerateName() != ""
	if a.GetName() == "" && !genName {
		return nil, errInvalid(r, "", []fieldErr{required("metadata.name", "name or generateName is required")})
	}
	if r.namespaced {
		if err := s.checkNamespace(ctx, ri.ns); err != nil {
			return nil, err
		}
	}
	a.SetUID(types.UID(uuid.NewUUID()))
	a.SetCreationTimestamp(metav1.Now())
	a.SetDeletionTimestamp(nil)
	a.SetDeletionGracePeriodSeconds(nil)
	if r.status {
		a.SetGeneration(1)
		resetStatus(r, obj)
	} else {
		a.SetGeneration(0)
	}
	applyDefaults(obj)
	s.admitCreate(ctx, obj)
	for attempt := 0; ; attempt++ {
		if genName {
			a.SetName(a.GetGenerateName() + randSuffix())
		}
		if errs := validateObject(r, obj); len(errs) > 0 {
			return nil, errInvalid(r, a.GetName(), errs)
		}
		if applied == nil {
			setManagedFields(obj, manager, metav1.ManagedFieldsOperationUpdate, nil)
		} else {
			a.SetManagedFields([]metav1.ManagedFieldsEntry{*applied})
		}
		if dryRun {
			setTypeMeta(r, obj)
			return obj, nil
		}
		svc, isSvc := obj.(*corev1.Service)
		var nodePorts []int32
		if isSvc {
			if err := s.allocateClusterIP(ctx, svc); err != nil {
				return nil, err
			}
			var err error
			if nodePorts, err = s.allocateNodePorts(ctx, svc, nil); err != nil {
				s.releaseClusterIP(ctx, svc.Namespace, svc.Name, svc.Spec.ClusterIP)
				svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
				return nil, err
			}
		}
		out, err := s.st.create(ctx, r, obj)
		if err != nil && isSvc {
			s.releaseClusterIP(ctx, svc.Namespace, svc.Name, svc.Spec.ClusterIP)
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
			s.releaseNodePorts(ctx, svc.Namespace, svc.Name, nodePorts)
			for i := range svc.Spec.Ports {
				for _, p := range nodePorts {
					if svc.Spec.Ports[i].NodePort == p {
						svc.Spec.Ports[i].NodePort = 0 // a retry (generateName) allocates again
					}
				}
			}
		}
		if err != nil && genName && attempt < 5 && toStatus(err).status.Reason == metav1.StatusReasonAlreadyExists {
			continue
		}
		return out, err
	}
}

// resetStatus clears status on create the way Kubernetes strategies do.
func resetStatus(r *resource, obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Status = corev1.PodStatus{Phase: corev1.PodPending}
	case *corev1.Namespace:
		o.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	case *corev1.PersistentVolume:
		// As kube-apiserver: a new volume is Pending since now. Its PV
		// controller then makes a volume without a claimRef Available at
		// once; berth runs no volume binder, so it does that step here.
		now := metav1.Now()
		o.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending, LastPhaseTransitionTime: &now}
		if o.Spec.ClaimRef == nil {
			o.Status.Phase = corev1.VolumeAvailable
		}
	case *corev1.PersistentVolumeClaim:
		o.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
	case *corev1.Node, *corev1.Service:
		// Kept: nodes register with status; a Service's is harmless.
	default:
		setField(obj, "status", nil)
	}
}

// toMap converts a typed object to its JSON map form.
func toMap(obj runtime.Object) map[string]any {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return map[string]any{}
	}
	return m
}

func fromMap(r *resource, m map[string]any) (runtime.Object, error) {
	obj := r.newObj()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, obj); err != nil {
		return nil, errBadRequest("%s: %v", r.kind, err)
	}
	setTypeMeta(r, obj)
	return obj, nil
}

// setField sets (or with nil deletes) a top-level field of a typed object.
func setField(obj runtime.Object, field string, v any) {
	m := toMap(obj)
	if v == nil {
		delete(m, field)
	} else {
		m[field] = v
	}
	fresh := reflect.New(reflect.TypeOf(obj).Elem()).Interface()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, fresh); err == nil {
		reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(fresh).Elem())
	}
}

func specOf(obj runtime.Object) map[string]any {
	m := toMap(obj)
	delete(m, "metadata")
	delete(m, "status")
	delete(m, "kind")
	delete(m, "apiVersion")
	return m
}

func (s *Server) update(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	ctx := req.Context()
	body, err := readBody(req)
	if err != nil {
		return err
	}
	if ri.sub == "scale" {
		return s.updateScale(w, req, ri, body, mediaType(req))
	}
	if ri.sub != "" && ri.sub != "status" && ri.sub != "finalize" {
		return errMethodNotAllowed("PUT is not allowed on %s/%s", ri.r.name, ri.sub)
	}
	obj, warnings, err := s.decodeObject(ri.r, mediaType(req), body, req.URL.Query().Get("fieldValidation"))
	if err != nil {
		return err
	}
	a := accessor(obj)
	if a.GetName() != ri.name {
		return errBadRequest("the name of the object (%s) does not match the name on the URL (%s)", a.GetName(), ri.name)
	}
	if ri.r.namespaced && a.GetNamespace() != "" && a.GetNamespace() != ri.ns {
		return errBadRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", a.GetNamespace(), ri.ns)
	}
	cur, err := s.st.get(ctx, ri.r, ri.ns, ri.name)
	if err != nil {
		return err
	}
	out, err := s.updateObject(ctx, ri, cur, obj, fieldManager(req, "unknown"), metav1.ManagedFieldsOperationUpdate, isDryRun(req))
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	return s.respondObject(w, req, ri.r, 200, out)
}

// updateObject merges next over cur according to the subresource, runs
// defaulting and validation and stores it if cur is still current.
func (s *Server) updateObject(ctx context.Context, ri *reqInfo, cur, next runtime.Object, manager string, op metav1.ManagedFieldsOperationType, dryRun bool) (runtime.Object, error) {
	r := ri.r
	ca, na := accessor(cur), accessor(next)
	if rv := na.GetResourceVersion(); rv != "" && rv != ca.GetResourceVersion() {
		return nil, errConflict(r, ri.name, "the object has been modified; please apply your changes to the latest version and try again")
	}
	var result runtime.Object
	switch {
	case ri.sub == "status":
		m := toMap(cur)
		if st, ok := toMap(next)["status"]; ok {
			m["status"] = st
		} else {
			delete(m, "status")
		}
		res, err := fromMap(r, m)
		if err != nil {
			return nil, err
		}
		result = res
	case ri.sub == "finalize" && r.name == "namespaces":
		res := cur.DeepCopyObject().(*corev1.Namespace)
		res.Spec.Finalizers = next.(*corev1.Namespace).Spec.Finalizers
		result = res
	default:
		result = next
		ra := accessor(result)
		if r.status {
			setField(result, "status", toMap(cur)["status"])
			ra = accessor(result)
			g := ca.GetGeneration()
			if !reflect.DeepEqual(specOf(cur), specOf(result)) {
				g++
			}
			ra.SetGeneration(g)
		} else {
			ra.SetGeneration(ca.GetGeneration())
		}
		if r.name == "namespaces" {
			result.(*corev1.Namespace).Spec = cur.(*corev1.Namespace).Spec
		}
		if svc, ok := result.(*corev1.Service); ok && svc.Spec.ClusterIP == "" {
			// An update that omits the allocated address keeps it.
			old := cur.(*corev1.Service)
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = old.Spec.ClusterIP, old.Spec.ClusterIPs
			if svc.Spec.IPFamilyPolicy == nil {
				svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies = old.Spec.IPFamilyPolicy, old.Spec.IPFamilies
			}
		}
		applyDefaults(result)
		if svc, ok := result.(*corev1.Service); ok {
			// An update that omits an allocated node port keeps it.
			carryNodePorts(cur.(*corev1.Service), svc)
		}
	}
	ra := accessor(result)
	ra.SetUID(ca.GetUID())
	ra.SetName(ca.GetName())
	ra.SetNamespace(ca.GetNamespace())
	ra.SetCreationTimestamp(ca.GetCreationTimestamp())
	ra.SetDeletionTimestamp(ca.GetDeletionTimestamp())
	ra.SetDeletionGracePeriodSeconds(ca.GetDeletionGracePeriodSeconds())
	ra.SetResourceVersion(ca.GetResourceVersion())
	if ri.sub == "" {
		if errs := validateObject(r, result); len(errs) > 0 {
			return nil, errInvalid(r, ri.name, errs)
		}
		if errs := validateUpdate(r, cur, result); len(errs) > 0 {
			return nil, errInvalid(r, ri.name, errs)
		}
	}
	// A request that sets managedFields itself (kubectl's client-side to
	// server-side apply migration does) gets them as sent.
	userFields := next != nil && accessor(next).GetManagedFields() != nil && !reflect.DeepEqual(accessor(next).GetManagedFields(), ca.GetManagedFields())
	if op != "" && !userFields {
		ra.SetManagedFields(ca.GetManagedFields())
		if op == metav1.ManagedFieldsOperationUpdate {
			setManagedFields(result, manager, op, cur)
		}
	}
	if reflect.DeepEqual(toMap(cur), toMap(result)) {
		return cur, nil // no-op update: no new revision, as in Kubernetes
	}
	if dryRun {
		return result, nil
	}
	if ra.GetDeletionTimestamp() != nil && len(ra.GetFinalizers()) == 0 && !(r.name == "namespaces" && len(result.(*corev1.Namespace).Spec.Finalizers) > 0) {
		if err := s.st.remove(ctx, r, ri.ns, ri.name, revOf(cur)); err != nil {
			return nil, err
		}
		return result, nil
	}
	if svc, ok := result.(*corev1.Service); ok && ri.sub == "" {
		return s.updateService(ctx, r, cur.(*corev1.Service), svc)
	}
	return s.st.update(ctx, r, result, revOf(cur))
}

// updateService writes an updated Service, reserving the node ports it
// gains first and releasing those it dropped after.
func (s *Server) updateService(ctx context.Context, r *resource, old, svc *corev1.Service) (runtime.Object, error) {
	owned := map[int32]bool{}
	for _, p := range nodePortsOf(old) {
		owned[p] = true
	}
	reserved, err := s.allocateNodePorts(ctx, svc, owned)
	if err != nil {
		return nil, err
	}
	out, err := s.st.update(ctx, r, svc, revOf(old))
	if err != nil {
		s.releaseNodePorts(ctx, svc.Namespace, svc.Name, reserved)
		return nil, err
	}
	kept := map[int32]bool{}
	for _, p := range nodePortsOf(svc) {
		kept[p] = true
	}
	var dropped []int32
	for p := range owned {
		if !kept[p] {
			dropped = append(dropped, p)
		}
	}
	s.releaseNodePorts(ctx, svc.Namespace, svc.Name, dropped)
	return out, nil
}

func (s *Server) getItem(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	switch ri.sub {
	case "", "status":
	case "scale":
		obj, err := s.st.get(req.Context(), ri.r, ri.ns, ri.name)
		if err != nil {
			return err
		}
		sc, err := toScale(ri.r, obj)
		if err != nil {
			return err
		}
		writeJSON(w, 200, sc)
		return nil
	default:
		return s.podStream(w, req, ri)
	}
	obj, err := s.st.get(req.Context(), ri.r, ri.ns, ri.name)
	if err != nil {
		return err
	}
	return s.respondObject(w, req, ri.r, 200, obj)
}

// respondObject writes one object, as a Table when the client asks.
func (s *Server) respondObject(w http.ResponseWriter, req *http.Request, r *resource, code int, obj runtime.Object) error {
	if v := wantsTable(req); v != "" {
		writeJSON(w, code, s.table(r, []runtime.Object{obj}, "", "", v, req.URL.Query().Get("includeObject")))
		return nil
	}
	setTypeMeta(r, obj)
	writeJSON(w, code, obj)
	return nil
}

// wantsTable returns the Table version ("v1" or "v1beta1") the Accept header asks for first.
func wantsTable(req *http.Request) string {
	for _, part := range strings.Split(req.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json" && params["as"] == "Table" && params["g"] == "meta.k8s.io" && (params["v"] == "v1" || params["v"] == "v1beta1") {
			return params["v"]
		}
		if mt == "application/json" && params["as"] == "" {
			return ""
		}
	}
	return ""
}

// selectors parses labelSelector and fieldSelector into a match function.
func selectors(req *http.Request) (func(runtime.Object) bool, error) {
	q := req.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, errBadRequest("labelSelector %q: %v", q.Get("labelSelector"), err)
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil, errBadRequest("fieldSelector %q: %v", q.Get("fieldSelector"), err)
	}
	if ls.Empty() && fs.Empty() {
		return nil, nil
	}
	reqs := fs.Requirements()
	return func(obj runtime.Object) bool {
		if !ls.Empty() && !ls.Matches(labels.Set(accessor(obj).GetLabels())) {
			return false
		}
		if len(reqs) == 0 {
			return true
		}
		m := toMap(obj)
		for _, rq := range reqs {
			v := fieldValue(m, rq.Field)
			switch rq.Operator {
			case "=", "==":
				if v != rq.Value {
					return false
				}
			case "!=":
				if v == rq.Value {
					return false
				}
			}
		}
		return true
	}, nil
}

// fieldValue reads a dotted path ("spec.nodeName") as a string.
func fieldValue(m map[string]any, path string) string {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[p]
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func (s *Server) list(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	q := req.URL.Query()
	match, err := selectors(req)
	if err != nil {
		return err
	}
	var limit int64
	if l := q.Get("limit"); l != "" {
		limit, err = strconv.ParseInt(l, 10, 64)
		if err != nil || limit < 0 {
			return errBadRequest("limit %q: want a non-negative integer", l)
		}
	}
	var atRev int64
	if rv := q.Get("resourceVersion"); rv != "" && rv != "0" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			return errBadRequest("resourceVersion %q: want a non-negative integer", rv)
		}
		if q.Get("resourceVersionMatch") == "Exact" {
			atRev = n
		}
	}
	table := wantsTable(req)
	page, err := s.st.listMode(req.Context(), ri.r, ri.ns, limit, q.Get("continue"), atRev, match, table == "")
	if err != nil {
		return err
	}
	if v := table; v != "" {
		writeJSON(w, 200, s.table(ri.r, page.items, strconv.FormatInt(page.rev, 10), page.continue_, v, q.Get("includeObject")))
		return nil
	}
	writeList(w, ri.r, page)
	return nil
}

func writeList(w http.ResponseWriter, r *resource, page *listPage) {
	// Assembled by hand: the items are already JSON, and json.Marshal
	// would re-validate every RawMessage.
	var buf bytes.Buffer
	buf.Grow(256 + 1024*(len(page.items)+len(page.raw)))
	buf.WriteString(`{"kind":`)
	buf.WriteString(strconv.Quote(r.kind + "List"))
	buf.WriteString(`,"apiVersion":`)
	buf.WriteString(strconv.Quote(r.apiVersion()))
	buf.WriteString(`,"metadata":{"resourceVersion":"`)
	buf.WriteString(strconv.FormatInt(page.rev, 10))
	buf.WriteByte('"')
	if page.continue_ != "" {
		buf.WriteString(`,"continue":`)
		buf.WriteString(strconv.Quote(page.continue_))
	}
	buf.WriteString(`},"items":[`)
	n := 0
	for _, b := range page.raw {
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
		n++
	}
	for _, it := range page.items {
		b, err := json.Marshal(it)
		if err != nil {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
		n++
	}
	buf.WriteString("]}\n")
	writeRaw(w, 200, "application/json", buf.Bytes())
}

// protoMagic starts every Kubernetes protobuf body.
var protoMagic = []byte("k8s\x00")

// deleteOptions reads DeleteOptions from the body and query.
func deleteOptions(req *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxBodyBytes))
	if err != nil {
		return nil, errBadRequest("reading request body: %v", err)
	}
	switch {
	case bytes.HasPrefix(b, protoMagic):
		// client-go sends DeleteOptions as protobuf when it speaks
		// protobuf: the magic, then a runtime.Unknown envelope.
		var u runtime.Unknown
		if err := u.Unmarshal(b[len(protoMagic):]); err != nil {
			return nil, errBadRequest("decoding protobuf DeleteOptions: %v", err)
		}
		if err := opts.Unmarshal(u.Raw); err != nil {
			return nil, errBadRequest("decoding protobuf DeleteOptions: %v", err)
		}
	case len(strings.TrimSpace(string(b))) > 0:
		if err := json.Unmarshal(b, opts); err != nil {
			return nil, errBadRequest("decoding DeleteOptions: %v", err)
		}
	}
	q := req.URL.Query()
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return nil, errBadRequest("gracePeriodSeconds %q: want an integer", g)
		}
		opts.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if o := q.Get("orphanDependents"); o != "" {
		b := isTrue(o)
		opts.OrphanDependents = &b
	}
	if opts.PropagationPolicy == nil && opts.OrphanDependents != nil {
		pp := metav1.DeletePropagationBackground
		if *opts.OrphanDependents {
			pp = metav1.DeletePropagationOrphan
		}
		opts.PropagationPolicy = &pp
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, errBadRequest("propagationPolicy %q: want Background, Foreground or Orphan", *opts.PropagationPolicy)
		}
	}
	if slices.Contains(q["dryRun"], "All") {
		opts.DryRun = []string{"All"}
	}
	return opts, nil
}

func (s *Server) deleteItem(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	if ri.sub != "" {
		return errMethodNotAllowed("DELETE is not allowed on %s/%s", ri.r.name, ri.sub)
	}
	opts, err := deleteOptions(req)
	if err != nil {
		return err
	}
	out, err := s.deleteObject(req.Context(), ri.r, ri.ns, ri.name, opts)
	if err != nil {
		return err
	}
	return s.respondObject(w, req, ri.r, 200, out)
}

// deleteObject implements Kubernetes deletion: preconditions, finalizers
// (with orphan and foreground propagation), graceful pod termination and
// namespace finalization.
func (s *Server) deleteObject(ctx context.Context, r *resource, ns, name string, opts *metav1.DeleteOptions) (runtime.Object, error) {
	for attempt := 0; attempt < 10; attempt++ {
		cur, err := s.st.get(ctx, r, ns, name)
		if err != nil {
			return nil, err
		}
		a := accessor(cur)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != a.GetUID() {
				return nil, errConflict(r, name, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", *p.UID, a.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != a.GetResourceVersion() {
				return nil, errConflict(r, name, fmt.Sprintf("Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s", *p.ResourceVersion, a.GetResourceVersion()))
			}
		}
		next := cur.DeepCopyObject()
		na := accessor(next)
		changed := false
		policy := metav1.DeletePropagationBackground
		if opts.PropagationPolicy != nil {
			policy = *opts.PropagationPolicy
		}
		addFin := func(f string) {
			if !slices.Contains(na.GetFinalizers(), f) {
				na.SetFinalizers(append(na.GetFinalizers(), f))
				changed = true
			}
		}
		if a.GetDeletionTimestamp() == nil {
			switch policy {
			case metav1.DeletePropagationOrphan:
				addFin(metav1.FinalizerOrphanDependents)
			case metav1.DeletePropagationForeground:
				addFin(metav1.FinalizerDeleteDependents)
			}
		}
		graceful := false
		if pod, ok := next.(*corev1.Pod); ok && pod.Spec.NodeName != "" {
			grace := int64(30)
			if pod.Spec.TerminationGracePeriodSeconds != nil {
				grace = *pod.Spec.TerminationGracePeriodSeconds
			}
			if opts.GracePeriodSeconds != nil {
				grace = *opts.GracePeriodSeconds
			}
			if grace > 0 && (pod.DeletionGracePeriodSeconds == nil || *pod.DeletionGracePeriodSeconds > grace) {
				graceful = true
				pod.DeletionGracePeriodSeconds = &grace
				changed = true
			}
		}
		if nsObj, ok := next.(*corev1.Namespace); ok {
			if len(nsObj.Spec.Finalizers) == 0 && a.GetDeletionTimestamp() == nil {
				nsObj.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
			}
			if nsObj.Status.Phase != corev1.NamespaceTerminating {
				nsObj.Status.Phase = corev1.NamespaceTerminating
				changed = true
			}
			graceful = true
		}
		if len(na.GetFinalizers()) > 0 || graceful {
			if na.GetDeletionTimestamp() == nil {
				now := metav1.Now()
				if p, ok := next.(*corev1.Pod); ok && p.DeletionGracePeriodSeconds != nil {
					now = metav1.NewTime(now.Add(time.Duration(*p.DeletionGracePeriodSeconds) * time.Second))
				}
				na.SetDeletionTimestamp(&now)
				if na.GetDeletionGracePeriodSeconds() == nil {
					zero := int64(0)
					na.SetDeletionGracePeriodSeconds(&zero)
				}
				changed = true
			}
			if !changed {
				return cur, nil
			}
			if len(opts.DryRun) > 0 {
				return next, nil
			}
			out, err := s.st.update(ctx, r, next, revOf(cur))
			if err != nil && toStatus(err).status.Reason == metav1.StatusReasonConflict {
				continue
			}
			if err == nil && r.name == "namespaces" && r.group == "" {
				s.owners.markTerminating(name)
			}
			return out, err
		}
		if len(opts.DryRun) > 0 {
			return cur, nil
		}
		if err := s.st.remove(ctx, r, ns, name, revOf(cur)); err != nil {
			if toStatus(err).status.Reason == metav1.StatusReasonConflict {
				continue
			}
			return nil, err
		}
		return cur, nil
	}
	return nil, errConflict(r, name, "too many concurrent changes during delete")
}

func (s *Server) deleteCollection(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	opts, err := deleteOptions(req)
	if err != nil {
		return err
	}
	match, err := selectors(req)
	if err != nil {
		return err
	}
	page, err := s.st.list(req.Context(), ri.r, ri.ns, 0, "", 0, match)
	if err != nil {
		return err
	}
	var deleted []runtime.Object
	for _, it := range page.items {
		a := accessor(it)
		out, err := s.deleteObject(req.Context(), ri.r, a.GetNamespace(), a.GetName(), opts)
		if err != nil && !errors.Is(err, errNotFound(ri.r, "").class) {
			return err
		}
		if out != nil {
			deleted = append(deleted, out)
		}
	}
	writeList(w, ri.r, &listPage{items: deleted, rev: page.rev})
	return nil
}

// toScale builds the autoscaling/v1 Scale of a scalable object.
func toScale(r *resource, obj runtime.Object) (*autoscalingv1.Scale, error) {
	m := toMap(obj)
	a := accessor(obj)
	sc := &autoscalingv1.Scale{TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"}}
	sc.Name, sc.Namespace, sc.UID, sc.ResourceVersion, sc.CreationTimestamp = a.GetName(), a.GetNamespace(), a.GetUID(), a.GetResourceVersion(), a.GetCreationTimestamp()
	spec, _ := m["spec"].(map[string]any)
	status, _ := m["status"].(map[string]any)
	if v, ok := spec["replicas"].(int64); ok {
		sc.Spec.Replicas = int32(v)
	}
	if v, ok := status["replicas"].(int64); ok {
		sc.Status.Replicas = int32(v)
	}
	if sel, ok := spec["selector"].(map[string]any); ok {
		ls := &metav1.LabelSelector{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, ls); err == nil {
			if s, err := metav1.LabelSelectorAsSelector(ls); err == nil {
				sc.Status.Selector = s.String()
			}
		}
	}
	return sc, nil
}

// updateScale applies a Scale (from PUT, or the patched Scale from PATCH).
// mt is the body's media type: client-go's typed clients send protobuf.
func (s *Server) updateScale(w http.ResponseWriter, req *http.Request, ri *reqInfo, body []byte, mt string) error {
	var sc autoscalingv1.Scale
	if mt == "application/vnd.kubernetes.protobuf" {
		if _, _, err := s.proto.Decode(body, nil, &sc); err != nil {
			return errBadRequest("decoding protobuf body as Scale: %v", err)
		}
	} else if err := json.Unmarshal(body, &sc); err != nil {
		return errBadRequest("decoding Scale: %v", err)
	}
	if sc.Kind != "" && sc.Kind != "Scale" {
		return errBadRequest("the body is of kind %q: want Scale", sc.Kind)
	}
	if sc.Spec.Replicas < 0 {
		return errInvalid(ri.r, ri.name, []fieldErr{invalid("spec.replicas", sc.Spec.Replicas, "must be greater than or equal to 0")})
	}
	out, err := s.st.guaranteedUpdate(req.Context(), ri.r, ri.ns, ri.name, func(cur runtime.Object) (runtime.Object, error) {
		if sc.ResourceVersion != "" && sc.ResourceVersion != accessor(cur).GetResourceVersion() {
			return nil, errConflict(ri.r, ri.name, "the object has been modified; please apply your changes to the latest version and try again")
		}
		m := toMap(cur)
		spec, _ := m["spec"].(map[string]any)
		if spec == nil {
			spec = map[string]any{}
		}
		if old, ok := spec["replicas"].(int64); ok && old == int64(sc.Spec.Replicas) {
			return nil, nil
		}
		spec["replicas"] = int64(sc.Spec.Replicas)
		m["spec"] = spec
		next, err := fromMap(ri.r, m)
		if err != nil {
			return nil, err
		}
		a := accessor(next)
		a.SetGeneration(a.GetGeneration() + 1)
		setManagedFields(next, fieldManager(req, "unknown"), metav1.ManagedFieldsOperationUpdate, cur)
		return next, nil
	})
	if err != nil {
		return err
	}
	res, _ := toScale(ri.r, out)
	writeJSON(w, 200, res)
	return nil
}

func nodeNameOf(obj runtime.Object) string {
	if p, ok := obj.(*corev1.Pod); ok {
		return p.Spec.NodeName
	}
	return ""
}

func (s *Server) bindPod(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	body, err := readBody(req)
	if err != nil {
		return err
	}
	var b corev1.Binding
	if err := json.Unmarshal(body, &b); err != nil {
		return errBadRequest("decoding Binding: %v", err)
	}
	if b.Target.Name == "" {
		return errInvalid(ri.r, ri.name, []fieldErr{required("target.name", "")})
	}
	_, err = s.st.guaranteedUpdate(req.Context(), ri.r, ri.ns, ri.name, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod)
		if p.Spec.NodeName != "" {
			return nil, errConflict(ri.r, ri.name, fmt.Sprintf("pod %s is already assigned to node %q", ri.name, p.Spec.NodeName))
		}
		if p.DeletionTimestamp != nil {
			return nil, errConflict(ri.r, ri.name, fmt.Sprintf("pod %s is being deleted, cannot be assigned to a host", ri.name))
		}
		if b.UID != "" && b.UID != p.UID {
			return nil, errConflict(ri.r, ri.name, fmt.Sprintf("binding is for pod UID %s, the pod's is %s", b.UID, p.UID))
		}
		p.Spec.NodeName = b.Target.Name
		// As kube-apiserver does: a bound pod is scheduled.
		setPodScheduled(p, metav1.Now())
		return p, nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, 201, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: 201})
	return nil
}

// setPodScheduled sets the PodScheduled condition True.
func setPodScheduled(p *corev1.Pod, now metav1.Time) {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == corev1.PodScheduled {
			if c.Status != corev1.ConditionTrue {
				c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionTrue, "", "", now
			}
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

// evictPod implements pods/eviction: the pod is deleted with the
// Eviction's DeleteOptions. berth serves no PodDisruptionBudgets, so no
// eviction is refused with 429.
func (s *Server) evictPod(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	ev, err := decodeEviction(req)
	if err != nil {
		return err
	}
	if ev.Name != "" && ev.Name != ri.name {
		return errBadRequest("name in URL does not match name in Eviction object: %q vs %q", ri.name, ev.Name)
	}
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if _, err := s.deleteObject(req.Context(), ri.r, ri.ns, ri.name, opts); err != nil {
		return err
	}
	writeJSON(w, 201, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: 201})
	return nil
}

// decodeEviction reads a policy/v1 Eviction as JSON or, as client-go's
// typed clients send it when they speak protobuf (kubectl drain from
// 1.32), Kubernetes protobuf. An empty body evicts with default options.
func decodeEviction(req *http.Request) (*policyv1.Eviction, error) {
	ev := &policyv1.Eviction{}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxBodyBytes+1))
	if err != nil {
		return nil, errBadRequest("reading request body: %v", err)
	}
	if len(b) > maxBodyBytes {
		return nil, errTooLarge("request body is larger than %d bytes", maxBodyBytes)
	}
	switch {
	case len(bytes.TrimSpace(b)) == 0:
	case bytes.HasPrefix(b, protoMagic):
		var u runtime.Unknown
		if err := u.Unmarshal(b[len(protoMagic):]); err != nil {
			return nil, errBadRequest("decoding protobuf Eviction: %v", err)
		}
		if u.Kind != "" && u.Kind != "Eviction" {
			return nil, errBadRequest("the protobuf body is a %s: want a policy/v1 Eviction", u.Kind)
		}
		if err := ev.Unmarshal(u.Raw); err != nil {
			return nil, errBadRequest("decoding protobuf Eviction: %v", err)
		}
	default:
		if mediaType(req) == "application/vnd.kubernetes.protobuf" {
			return nil, errBadRequest("the protobuf Eviction body lacks the k8s protobuf magic")
		}
		if err := json.Unmarshal(b, ev); err != nil {
			return nil, errBadRequest("decoding Eviction: %v: want a JSON policy/v1 Eviction", err)
		}
		if ev.Kind != "" && ev.Kind != "Eviction" {
			return nil, errBadRequest("the body is of kind %q: want a policy/v1 Eviction", ev.Kind)
		}
	}
	return ev, nil
}
