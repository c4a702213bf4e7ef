package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const deployYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: IMAGE
        ports:
        - containerPort: 80
`

func deploy(image string) string { return strings.Replace(deployYAML, "IMAGE", image, 1) }

const extraYAML = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: ["true"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: postgres}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      # No node matches: the versions' DaemonSets would otherwise put a
      # pod on every other version's node and churn as those come and go.
      nodeSelector: {e2e.berth.dev/none: "true"}
      containers: [{name: c, image: busybox}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 4
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: l1}
spec: {holderIdentity: me}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc}
addressType: IPv4
endpoints: [{addresses: ["10.0.0.1"]}]
ports: [{port: 80}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota}
spec:
  hard: {pods: "20"}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits: [{type: Container, default: {cpu: 500m}}]
---
apiVersion: v1
kind: Service
metadata: {name: external}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: external}
subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 5432}]}]
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: db-1}
data: {spec: {template: {}}}
revision: 1
`

// pvYAML is a cluster-scoped PersistentVolume; each kubectl version
// creates its own.
func pvYAML(name string) string {
	return `apiVersion: v1
kind: PersistentVolume
metadata: {name: ` + name + `}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/` + name + `}
`
}

// kubectlBinaries lists the kubectl binaries the command list runs
// with: every versioned binary installed beside /usr/bin/kubectl, and
// /usr/bin/kubectl itself (the package's dispatcher, which execs one of
// them) only when there are none, as it repeats one of them.
func kubectlBinaries() map[string]string {
	bins := map[string]string{}
	for _, bin := range kubectlVersions() {
		bins[strings.TrimPrefix(filepath.Base(bin), "kubectl.")] = bin
	}
	if len(bins) == 0 {
		bins["default"] = "/usr/bin/kubectl"
	}
	return bins
}

// TestKubectl drives every installed kubectl version through the
// commands users run day to day. The versions share the package's
// server and run side by side: each works in its own namespace and names
// its cluster-scoped objects after itself.
func TestKubectl(t *testing.T) {
	for ver, bin := range kubectlBinaries() {
		t.Run(ver, func(t *testing.T) {
			t.Parallel()
			kubectlSuite(t, bin, strings.ReplaceAll(ver, ".", "-"))
		})
	}
}

func kubectlSuite(t *testing.T, bin, tag string) {
	k := newKubectl(t, bin, shared)
	ns := "e2e-" + tag
	mustContain(t, k.ok(t, "create", "namespace", ns), "namespace/"+ns+" created")
	n := []string{"-n", ns}
	K := func(args ...string) string { t.Helper(); return k.ok(t, append(n, args...)...) }
	Kin := func(stdin string, args ...string) string { t.Helper(); return k.okIn(t, stdin, append(n, args...)...) }
	pv, node := "pv-"+tag, "e2e-node-"+tag
	t.Cleanup(func() {
		k.run(t, "", "delete", "pv", pv, "--ignore-not-found")
		k.run(t, "", "delete", "node", node, "--ignore-not-found")
	})

	t.Run("version and api-resources", func(t *testing.T) {
		mustContain(t, k.ok(t, "version", "-o", "json"), `"serverVersion"`, `"gitVersion"`)
		out := k.ok(t, "api-resources")
		mustContain(t, out, "deployments", "deploy", "apps/v1", "horizontalpodautoscalers", "leases", "endpointslices", "cronjobs", "persistentvolumes", "controllerrevisions")
	})
	t.Run("apply create unchanged configured server-side", func(t *testing.T) {
		mustContain(t, Kin(deploy("nginx:1.25"), "apply", "-f", "-"), "deployment.apps/web created")
		mustContain(t, Kin(deploy("nginx:1.25"), "apply", "-f", "-"), "deployment.apps/web unchanged")
		mustContain(t, Kin(deploy("nginx:1.26"), "apply", "-f", "-"), "deployment.apps/web configured")
		mustContain(t, Kin(deploy("nginx:1.27"), "apply", "--server-side", "-f", "-"), "deployment.apps/web serverside-applied")
		if got := K("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); got != "nginx:1.27" {
			t.Errorf("image after server-side apply: got %q, want nginx:1.27", got)
		}
		mustContain(t, Kin(extraYAML, "apply", "-f", "-"), "service/web created", "job.batch/once created", "cronjob.batch/tick created", "pod/solo created", "statefulset.apps/db created", "daemonset.apps/agent created", "horizontalpodautoscaler.autoscaling/web created", "lease.coordination.k8s.io/l1 created", "endpointslice.discovery.k8s.io/web-abc created",
			"persistentvolumeclaim/data created", "resourcequota/quota created", "limitrange/limits created", "service/external created", "endpoints/external created", "controllerrevision.apps/db-1 created")
		mustContain(t, k.okIn(t, pvYAML(pv), "apply", "-f", "-"), "persistentvolume/"+pv+" created")
	})
	t.Run("diff", func(t *testing.T) {
		out, err := k.run(t, deploy("nginx:1.28"), append(n, "diff", "-f", "-")...)
		if err == nil || !strings.Contains(out, "-      - image: nginx:1.27") || !strings.Contains(out, "+      - image: nginx:1.28") {
			t.Errorf("diff: want exit 1 and an image change, got err=%v\n%s", err, out)
		}
	})
	t.Run("get output formats", func(t *testing.T) {
		out := K("get", "deploy")
		mustContain(t, out, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "web", "0/2")
		mustContain(t, K("get", "deploy", "-o", "wide"), "CONTAINERS", "IMAGES", "SELECTOR", "nginx:1.27", "app=web")
		mustContain(t, K("get", "deploy", "web", "-o", "yaml"), "kind: Deployment", "resourceVersion:", "uid:")
		mustContain(t, K("get", "deploy", "web", "-o", "json"), `"kind": "Deployment"`)
		if got := K("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].targetPort}"); got != "8080" {
			t.Errorf("jsonpath targetPort: got %q, want 8080", got)
		}
		mustContain(t, K("get", "pods", "-o", "wide"), "solo", "Pending", "NODE")
		mustContain(t, K("get", "all"), "pod/solo", "service/web", "deployment.apps/web", "statefulset.apps/db", "daemonset.apps/agent", "job.batch/once", "cronjob.batch/tick")
		all := "pods,services,endpoints,configmaps,secrets,events,serviceaccounts,persistentvolumeclaims,resourcequotas,limitranges,deployments,replicasets,statefulsets,daemonsets,controllerrevisions,jobs,cronjobs,horizontalpodautoscalers,leases,endpointslices,events.events.k8s.io"
		mustContain(t, K("get", all), "serviceaccount/sa1", "lease.coordination.k8s.io/l1", "persistentvolumeclaim/data", "resourcequota/quota", "limitrange/limits", "endpoints/external", "controllerrevision.apps/db-1")
		for _, o := range []string{"wide", "yaml", "json", "jsonpath={.items[*].metadata.name}"} {
			if out := K("get", all, "-o", o); !strings.Contains(out, "sa1") || !strings.Contains(out, "db-1") {
				t.Errorf("get all kinds -o %s lacks sa1 or db-1:\n%s", o, out)
			}
		}
		mustContain(t, k.ok(t, "get", "nodes,namespaces,persistentvolumes"), "namespace/default", "persistentvolume/"+pv)
		mustContain(t, k.ok(t, "get", "pods", "-A"), ns, "solo")
		// The tables of the kinds no controller writes, as Kubernetes prints them.
		mustContain(t, k.ok(t, "get", "pv", pv), "NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "REASON", "AGE", "2Gi", "RWO", "Retain", "Available")
		mustContain(t, k.ok(t, "get", "pv", pv, "-o", "wide"), "VOLUMEMODE", "Filesystem")
		mustContain(t, K("get", "pvc", "data"), "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE", "Pending")
		mustContain(t, K("get", "quota", "quota"), "NAME", "AGE", "REQUEST", "LIMIT")
		mustContain(t, K("get", "limits", "limits"), "NAME", "CREATED AT")
		mustContain(t, K("get", "ep", "external"), "ENDPOINTS", "192.0.2.10:5432")
		mustContain(t, K("get", "controllerrevisions", "db-1"), "CONTROLLER", "REVISION", "<none>")
		mustContain(t, K("get", "hpa", "web"), "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "Deployment/web")
	})
	t.Run("watch", func(t *testing.T) {
		// kubectl watches one resource type at a time: a ConfigMap and a
		// claim, each seen by its own watcher.
		watch := func(kind string) <-chan string {
			done := make(chan string, 1)
			go func() {
				out, _ := k.run(t, "", append(n, "get", kind, "-w", "--request-timeout=4s")...)
				done <- out
			}()
			return done
		}
		cms, pvcs := watch("cm"), watch("pvc")
		time.Sleep(1500 * time.Millisecond)
		K("create", "configmap", "watched", "--from-literal=x=y")
		Kin(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"claim-watched"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}`, "create", "-f", "-")
		mustContain(t, <-cms, "\nwatched ")
		mustContain(t, <-pvcs, "data", "\nclaim-watched ")
	})
	t.Run("describe", func(t *testing.T) {
		mustContain(t, K("describe", "deployment", "web"), "Name:", "web", "Replicas:", "nginx:1.27")
		mustContain(t, K("describe", "pod", "solo"), "Name:", "solo", "busybox")
		mustContain(t, k.ok(t, "describe", "pv", pv), "Name:", pv, "Reclaim Policy:", "Retain", "Status:", "Available")
		mustContain(t, K("describe", "pvc", "data"), "Name:", "data", "Status:", "Pending")
		mustContain(t, K("describe", "quota", "quota"), "Name:", "quota")
		mustContain(t, K("describe", "limits", "limits"), "Name:", "limits", "cpu")
	})
	t.Run("label annotate patch scale", func(t *testing.T) {
		mustContain(t, K("label", "deploy", "web", "tier=fe"), "labeled")
		// kubectl 1.27 prints "annotate" for "annotated" (a client typo,
		// kubernetes/kubectl#1462, fixed in 1.28).
		annotated := "annotated"
		if tag == "1-27" {
			annotated = "annotate"
		}
		mustContain(t, K("annotate", "deploy", "web", "note=hello"), "deployment.apps/web "+annotated)
		mustContain(t, K("get", "deploy", "-l", "tier=fe", "--show-labels"), "tier=fe")
		K("patch", "deploy", "web", "--type=json", "-p", `[{"op":"replace","path":"/spec/replicas","value":4}]`)
		K("patch", "deploy", "web", "--type=merge", "-p", `{"metadata":{"labels":{"merged":"yes"}}}`)
		K("patch", "deploy", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}`)
		got := K("get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels.merged} {.metadata.annotations.note} {.spec.template.spec.containers[*].name}")
		if got != "4 yes hello side c" && got != "4 yes hello c side" {
			t.Errorf("after patches: got %q", got)
		}
		mustContain(t, K("scale", "deploy", "web", "--replicas=3"), "scaled")
		if got := K("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"); got != "3" {
			t.Errorf("replicas after scale: got %q, want 3", got)
		}
		// Updates of the kinds no controller writes.
		K("patch", "quota", "quota", "--type=merge", "-p", `{"spec":{"hard":{"pods":"30"}}}`)
		K("patch", "ep", "external", "--type=json", "-p", `[{"op":"add","path":"/subsets/0/addresses/-","value":{"ip":"192.0.2.11"}}]`)
		k.ok(t, "patch", "pv", pv, "-p", `{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}`)
		mustContain(t, K("label", "pvc", "data", "tier=db"), "labeled")
		if got := K("get", "quota,ep", "-o", "jsonpath={.items[*].spec.hard.pods} {.items[*].subsets[0].addresses[*].ip}"); !strings.Contains(got, "30") || !strings.Contains(got, "192.0.2.11") {
			t.Errorf("after quota and endpoints patches: got %q", got)
		}
		if got := k.ok(t, "get", "pv", pv, "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}"); got != "Delete" {
			t.Errorf("pv reclaim policy after patch: got %q, want Delete", got)
		}
	})
	t.Run("create typed objects", func(t *testing.T) {
		mustContain(t, K("create", "secret", "generic", "s1", "--from-literal=a=b"), "secret/s1 created")
		mustContain(t, K("create", "configmap", "c1", "--from-literal=a=b"), "configmap/c1 created")
		mustContain(t, K("create", "deployment", "d2", "--image=busybox"), "deployment.apps/d2 created")
		if got := K("get", "cm", "c1", "-o", "jsonpath={.data.a}"); got != "b" {
			t.Errorf("configmap data: got %q, want b", got)
		}
		if got := K("get", "secret", "s1", "-o", "jsonpath={.data.a}"); got != "Yg==" {
			t.Errorf("secret data: got %q, want Yg==", got)
		}
		out, err := k.run(t, "", append(n, "create", "configmap", "c1", "--from-literal=a=b")...)
		if err == nil || !strings.Contains(out, "already exists") {
			t.Errorf("duplicate create: want AlreadyExists, got %v %s", err, out)
		}
	})
	t.Run("wait for condition", func(t *testing.T) {
		// A StatefulSet: no controller of this server rewrites its status
		// (the Deployment controller would overwrite a hand-set condition).
		K("patch", "statefulset", "db", "--subresource=status", "--type=merge", "-p", `{"status":{"replicas":0,"availableReplicas":0,"conditions":[{"type":"Available","status":"True","reason":"Test","message":"ok"}]}}`)
		mustContain(t, K("wait", "--for=condition=Available", "statefulset/db", "--timeout=20s"), "condition met")
	})
	t.Run("delete cascade and wait", func(t *testing.T) {
		// An owner and a dependent: orphan keeps the dependent, background removes it.
		for _, c := range []struct {
			cascade, dep string
			kept         bool
		}{{"orphan", "dep-o", true}, {"background", "dep-b", false}, {"foreground", "dep-f", false}} {
			K("create", "configmap", "owner-"+c.dep, "--from-literal=a=b")
			uid := K("get", "cm", "owner-"+c.dep, "-o", "jsonpath={.metadata.uid}")
			Kin(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"owner-%s","uid":%q}]}}`, c.dep, c.dep, uid), "create", "-f", "-")
			K("delete", "cm", "owner-"+c.dep, "--cascade="+c.cascade, "--timeout=30s")
			if c.kept {
				time.Sleep(500 * time.Millisecond)
				K("get", "cm", c.dep)
				continue
			}
			K("wait", "--for=delete", "cm/"+c.dep, "--timeout=20s")
		}
		K("delete", "deploy", "d2")
		out, err := k.run(t, "", append(n, "get", "deploy", "d2")...)
		if err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("get after delete: want NotFound, got %v %s", err, out)
		}
		mustContain(t, k.ok(t, "delete", "pv", pv), "deleted")
		mustContain(t, K("delete", "pvc,quota,limits,ep,controllerrevision", "--all"), "deleted")
	})
	t.Run("replace cordon events force-delete", func(t *testing.T) {
		cm := K("get", "cm", "c1", "-o", "json")
		mustContain(t, Kin(strings.Replace(cm, `"a": "b"`, `"a": "replaced"`, 1), "replace", "-f", "-"), "configmap/c1 replaced")
		if got := K("get", "cm", "c1", "-o", "jsonpath={.data.a}"); got != "replaced" {
			t.Errorf("after replace: got %q, want replaced", got)
		}
		k.okIn(t, `{"apiVersion":"v1","kind":"Node","metadata":{"name":"`+node+`"}}`, "create", "-f", "-")
		mustContain(t, k.ok(t, "cordon", node), "cordoned")
		mustContain(t, k.ok(t, "get", "nodes"), node, "SchedulingDisabled")
		uid := K("get", "pod", "solo", "-o", "jsonpath={.metadata.uid}")
		Kin(`{"apiVersion":"v1","kind":"Event","metadata":{"name":"ev1"},"involvedObject":{"kind":"Pod","name":"solo","namespace":"`+ns+`","uid":"`+uid+`"},"reason":"Tested","message":"from e2e","type":"Normal"}`, "create", "-f", "-")
		mustContain(t, K("get", "events"), "Tested", "pod/solo", "from e2e")
		mustContain(t, K("describe", "pod", "solo"), "Tested")
		mustContain(t, K("delete", "pod", "solo", "--grace-period=0", "--force"), "deleted")
		// drain evicts through pods/eviction (a protobuf Eviction from
		// 1.32's typed client); with no agent on the node the server
		// finishes the 1 s graceful deletion itself.
		Kin(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"on-node"},"spec":{"nodeName":"`+node+`","terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"busybox"}]}}`, "create", "-f", "-")
		mustContain(t, k.ok(t, "drain", node, "--force", "--ignore-daemonsets", "--timeout=40s"), "evicting pod "+ns+"/on-node", "drained")
		if out, err := k.run(t, "", append(n, "get", "pod", "on-node")...); err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("pod after drain: want NotFound, got %v %s", err, out)
		}
		k.ok(t, "delete", "node", node)
	})
	t.Run("explain", func(t *testing.T) {
		mustContain(t, k.ok(t, "explain", "pods"), "KIND:", "Pod", "FIELDS:", "spec")
		mustContain(t, k.ok(t, "explain", "pods.spec.containers.image"), "image")
		mustContain(t, k.ok(t, "explain", "deployment.spec.replicas"), "replicas")
	})
	t.Run("errors", func(t *testing.T) {
		out, err := k.run(t, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}`, append(n, "create", "-f", "-")...)
		if err == nil || !strings.Contains(out, "is invalid") || !strings.Contains(out, "metadata.name") {
			t.Errorf("invalid name: got %v %s", err, out)
		}
		out, err = k.run(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbogus: 1\n", append(n, "apply", "-f", "-")...)
		if err == nil || !strings.Contains(out, "unknown field") {
			t.Errorf("unknown field with strict validation: got %v %s", err, out)
		}
	})
	t.Run("namespace deletion", func(t *testing.T) {
		mustContain(t, k.ok(t, "delete", "namespace", ns, "--timeout=60s"), "deleted")
		out, err := k.run(t, "", "get", "namespace", ns)
		if err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("namespace still there: %v %s", err, out)
		}
	})
}
