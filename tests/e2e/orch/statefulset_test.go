package orch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// webStatefulSet is a headless Service and a 3-replica StatefulSet of
// webname servers (each answers with its host name, the pod's name),
// ready once they answer, with an emptyDir volume only.
const webStatefulSet = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: lab/app:v2
        imagePullPolicy: IfNotPresent
        command: [webname, serve, "8080"]
        env: [{name: VERSION, value: "1"}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      volumes: [{name: scratch, emptyDir: {}}]
`

// podLog records, from a watch, the order in which pods appear, become
// Ready and start terminating ("add web-0", "ready web-0", "delete web-2").
type podLog struct {
	mu     sync.Mutex
	events []string
}

func (l *podLog) watch(t *testing.T, ns, selector string) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("watch pods: %v", err)
	}
	go func() {
		defer w.Stop()
		ready, deleting := map[podID]bool{}, map[podID]bool{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			id := podID{p.Name, string(p.UID)}
			l.mu.Lock()
			if ev.Type == watch.Added {
				l.events = append(l.events, "add "+p.Name)
			}
			if podReady(p) && !ready[id] {
				ready[id] = true
				l.events = append(l.events, "ready "+p.Name)
			}
			if p.DeletionTimestamp != nil && !deleting[id] {
				deleting[id] = true
				l.events = append(l.events, "delete "+p.Name)
			}
			l.mu.Unlock()
		}
	}()
}

// podID tells a pod from its replacement of the same name.
type podID struct{ name, uid string }

func (l *podLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events[n:]...)
}

func (l *podLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// only keeps the events of one kind ("add", "delete").
func only(evs []string, kind string) []string {
	var out []string
	for _, e := range evs {
		if strings.HasPrefix(e, kind+" ") {
			out = append(out, strings.TrimPrefix(e, kind+" "))
		}
	}
	return out
}

// Scenario 12: a StatefulSet behind a headless Service. Pods web-0..2
// start in order, each once the one before is Ready; each pod has a
// stable DNS name web-N.web.<ns>.svc.cluster.local that a client pod
// resolves and reaches; a template change rolls from web-2 down to web-0,
// one pod at a time, and the names follow the new pods.
func TestScenario12StatefulSet(t *testing.T) {
	ns := namespace(t, "s12")
	apply(t, ns, clientPod)
	var log podLog
	log.watch(t, ns, "app=web")
	start := time.Now()
	apply(t, ns, webStatefulSet)
	k(t, "rollout", "status", "-n", ns, "statefulset/web", "--timeout=120s")
	created := time.Since(start)
	evs := log.since(0)
	// Ordered: each pod appears only after the one before is Ready.
	pos := map[string]int{}
	for i, e := range evs {
		if _, ok := pos[e]; !ok {
			pos[e] = i
		}
	}
	for i := 1; i < 3; i++ {
		prev, cur := fmt.Sprintf("ready web-%d", i-1), fmt.Sprintf("add web-%d", i)
		if a, ok := pos[prev]; !ok || pos[cur] < a {
			t.Errorf("%s before %s: events %v", cur, prev, evs)
		}
	}
	if got := fmt.Sprint(only(evs, "add")); got != "[web-0 web-1 web-2]" {
		t.Errorf("pods appeared as %s, want web-0 web-1 web-2", got)
	}
	k(t, "wait", "-n", ns, "--for=condition=Ready", "pod/client", "--timeout=60s")

	// Each pod by its stable name, resolved and reached from the client.
	resolve := func(what string) time.Duration {
		return waitFor(t, 30*time.Second, what, func() (bool, string) {
			var note []string
			for i := range 3 {
				name := fmt.Sprintf("web-%d", i)
				var p corev1.Pod
				kjson(t, &p, "-n", ns, "pod/"+name)
				out, err := kubectl(t, "", "exec", "-n", ns, "client", "--", "webname", "lookup", name+".web."+ns+".svc.cluster.local")
				if err != nil || strings.TrimSpace(out) != p.Status.PodIP {
					return false, fmt.Sprintf("%s: got %q, want %s", name, strings.TrimSpace(out), p.Status.PodIP)
				}
				// And by the short name through the search path.
				got := fetch(t, ns, "http://"+name+".web:8080/", 1)
				if len(got) != 1 || got[0] != name {
					return false, fmt.Sprintf("http://%s.web:8080/ answered %v", name, got)
				}
				note = append(note, name+"="+p.Status.PodIP)
			}
			return true, strings.Join(note, " ")
		})
	}
	dns := resolve("web-0..2.web resolving to their pods")

	// A rolling update: from web-2 down to web-0, each after the one
	// above is Ready again.
	n0 := log.len()
	start = time.Now()
	k(t, "set", "env", "-n", ns, "statefulset/web", "VERSION=2")
	k(t, "rollout", "status", "-n", ns, "statefulset/web", "--timeout=180s")
	rolled := time.Since(start)
	evs = log.since(n0)
	if got := fmt.Sprint(only(evs, "delete")); got != "[web-2 web-1 web-0]" {
		t.Errorf("update replaced %s, want web-2 web-1 web-0 (events %v)", got, evs)
	}
	for _, step := range [][2]string{{"ready web-2", "delete web-1"}, {"ready web-1", "delete web-0"}} {
		a, b := -1, -1
		for i, e := range evs {
			if e == step[0] && a < 0 {
				a = i
			}
			if e == step[1] && b < 0 {
				b = i
			}
		}
		if a < 0 || b < a {
			t.Errorf("%q came before %q: events %v", step[1], step[0], evs)
		}
	}
	var set appsv1.StatefulSet
	kjson(t, &set, "-n", ns, "statefulset/web")
	for i := range 3 {
		var p corev1.Pod
		kjson(t, &p, "-n", ns, fmt.Sprintf("pod/web-%d", i))
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] != set.Status.UpdateRevision || p.Spec.Containers[0].Env[0].Value != "2" {
			t.Errorf("%s: revision %s env %v, want %s and VERSION=2", p.Name, p.Labels[appsv1.ControllerRevisionHashLabelKey], p.Spec.Containers[0].Env, set.Status.UpdateRevision)
		}
	}
	if set.Status.CurrentRevision != set.Status.UpdateRevision || set.Status.ReadyReplicas != 3 {
		t.Errorf("status %+v: want the update complete", set.Status)
	}
	history := k(t, "rollout", "history", "-n", ns, "statefulset/web")
	if !strings.Contains(history, "1 ") || !strings.Contains(history, "2 ") {
		t.Errorf("rollout history:\n%s", history)
	}
	again := resolve("the names following the new pods")
	report(t, "12-statefulset", "ordered_create_3", created, "names_resolved", dns, "rolling_update_3", rolled, "names_follow", again)
}
