package statefulset_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/berth/berth/internal/cluster/apiserver/apiservertest"
	"github.com/berth/berth/internal/cluster/controller/statefulset"
)

// agent stands in for a node agent: it binds new pods to node n1, reports
// them Running and Ready through the status subresource a moment later,
// and finishes the deletion of terminating pods after a short grace. It
// records the order in which pods first appear.
type agent struct {
	cs      kubernetes.Interface
	mu      sync.Mutex
	created []string
	deleted []string // pods as they start terminating
}

func (a *agent) run(ctx context.Context, t *testing.T, ns string) {
	w, err := a.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("watch pods: %v", err)
		return
	}
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				a.mu.Lock()
				a.created = append(a.created, p.Name)
				a.mu.Unlock()
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Modified && p.DeletionTimestamp != nil {
				a.mu.Lock()
				if n := len(a.deleted); n == 0 || a.deleted[n-1] != p.Name {
					a.deleted = append(a.deleted, p.Name)
				}
				a.mu.Unlock()
			}
		}
	}()
	go func() {
		defer w.Stop()
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			list, err := a.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range list.Items {
				p := &list.Items[i]
				switch {
				case p.DeletionTimestamp != nil:
					if time.Since(p.DeletionTimestamp.Add(-time.Duration(*p.DeletionGracePeriodSeconds)*time.Second)) > 150*time.Millisecond {
						_ = a.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
					}
				case p.Spec.NodeName == "":
					_ = a.cs.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name},
						Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}, metav1.CreateOptions{})
				case p.Status.Phase == "" || p.Status.Phase == corev1.PodPending:
					now := metav1.Now()
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Ready: true, Image: p.Spec.Containers[0].Image,
						State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
					_, _ = a.cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
		}
	}()
}

func (a *agent) order() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.created...)
}

// TestAgainstAPIServer runs a 3-replica StatefulSet with a claim template
// on the real API server: pods and claims appear in order with their
// identity, a rolling update goes web-2, web-1, web-0, `kubectl rollout
// status|history|undo` work on it, and scaling down with whenScaled:
// Delete takes web-2 then web-1 and the garbage collector removes their
// claims while web-0's stays.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg, c := apiservertest.StartClients(t, ctx)
	cs := c.Client
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ag := &agent{cs: cs}
	ag.run(ctx, t, "default")
	go func() { _ = statefulset.Component().Run(ctx, c) }()

	three := int32(3)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &three,
			ServiceName: "web",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "lab/app:v1"}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenScaled: appsv1.DeletePersistentVolumeClaimRetentionPolicyType},
		},
	}
	if _, err := cs.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	get := func() *appsv1.StatefulSet {
		s, err := cs.AppsV1().StatefulSets("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	images := func() map[string]string {
		l, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		out := map[string]string{}
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				out[p.Name] = p.Spec.Containers[0].Image
			}
		}
		return out
	}
	settled := func(image string) func() bool {
		return func() bool {
			s := get()
			im := images()
			for i := range int(*s.Spec.Replicas) {
				if im[fmt.Sprintf("web-%d", i)] != image {
					return false
				}
			}
			return len(im) == int(*s.Spec.Replicas) && s.Status.ObservedGeneration == s.Generation && s.Status.ReadyReplicas == *s.Spec.Replicas &&
				s.Status.UpdatedReplicas == *s.Spec.Replicas && s.Status.CurrentRevision == s.Status.UpdateRevision
		}
	}
	t0 := time.Now()
	waitFor("3 ready pods", settled("lab/app:v1"))
	t.Logf("3 pods created in order and ready in %v", time.Since(t0).Round(time.Millisecond))
	if got := fmt.Sprint(ag.order()); got != "[web-0 web-1 web-2]" {
		t.Errorf("pods appeared as %s, want web-0, web-1, web-2", got)
	}
	for i := range 3 {
		p, err := cs.CoreV1().Pods("default").Get(ctx, fmt.Sprintf("web-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.Hostname != p.Name || p.Spec.Subdomain != "web" || p.Labels["apps.kubernetes.io/pod-index"] != fmt.Sprint(i) {
			t.Errorf("%s: hostname %q subdomain %q labels %v", p.Name, p.Spec.Hostname, p.Spec.Subdomain, p.Labels)
		}
		claim, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, fmt.Sprintf("data-web-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Errorf("claim of web-%d: %v", i, err)
		} else if claim.Labels["app"] != "web" || claim.Status.Phase != corev1.ClaimPending {
			t.Errorf("claim %s: labels %v phase %q", claim.Name, claim.Labels, claim.Status.Phase)
		}
	}

	// A rolling update, highest ordinal first.
	n0 := len(ag.order())
	s := get()
	s.Spec.Template.Spec.Containers[0].Image = "lab/app:v2"
	if _, err := cs.AppsV1().StatefulSets("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	waitFor("all pods at v2", settled("lab/app:v2"))
	t.Logf("rolling update of 3 pods in %v", time.Since(t0).Round(time.Millisecond))
	if got := fmt.Sprint(ag.order()[n0:]); got != "[web-2 web-1 web-0]" {
		t.Errorf("update recreated %s, want web-2, web-1, web-0", got)
	}

	// kubectl's rollout commands read and apply the ControllerRevisions.
	if kubectl, err := exec.LookPath("kubectl"); err != nil {
		t.Log("kubectl not found: rollout commands not checked")
	} else {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kc, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kc, "--server", cfg.Host, "--token", apiservertest.AdminToken, "--insecure-skip-tls-verify", "-n", "default"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		if out := run("rollout", "status", "statefulset/web", "--timeout=20s"); !strings.Contains(out, "roll out complete") {
			t.Errorf("rollout status: %s", out)
		}
		if out := run("rollout", "history", "statefulset/web"); !strings.Contains(out, "1 ") || !strings.Contains(out, "2 ") {
			t.Errorf("rollout history lists no revisions 1 and 2:\n%s", out)
		}
		if out := run("rollout", "history", "statefulset/web", "--revision=1"); !strings.Contains(out, "lab/app:v1") {
			t.Errorf("rollout history --revision=1 does not show image v1:\n%s", out)
		}
		if out := run("get", "statefulset", "web"); !strings.Contains(out, "3/3") {
			t.Errorf("kubectl get sts: %s", out)
		}
		run("rollout", "undo", "statefulset/web")
		waitFor("undo back to v1", settled("lab/app:v1"))
		run("rollout", "status", "statefulset/web", "--timeout=20s")
		revs, _ := cs.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{})
		nums := map[int64]bool{}
		for _, r := range revs.Items {
			nums[r.Revision] = true
		}
		if len(revs.Items) != 2 || !nums[3] || !nums[2] {
			t.Errorf("after undo: %d revisions %v, want 2 (v1 renumbered 3, v2 kept as 2)", len(revs.Items), nums)
		}
	}

	// Scale down through the scale subresource: web-2, then web-1; their
	// claims go with them (whenScaled: Delete), web-0's stays.
	n0 = len(ag.order())
	ag.mu.Lock()
	d0 := len(ag.deleted)
	ag.mu.Unlock()
	sc, err := cs.AppsV1().StatefulSets("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = 1
	if _, err := cs.AppsV1().StatefulSets("default").UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("one pod left and its siblings' claims gone", func() bool {
		l, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		cl, _ := cs.CoreV1().PersistentVolumeClaims("default").List(ctx, metav1.ListOptions{})
		return len(l.Items) == 1 && l.Items[0].Name == "web-0" && len(cl.Items) == 1 && cl.Items[0].Name == "data-web-0"
	})
	ag.mu.Lock()
	if got := fmt.Sprint(ag.deleted[d0:]); got != "[web-2 web-1]" {
		t.Errorf("scale down deleted %s, want web-2 then web-1", got)
	}
	ag.mu.Unlock()
	if len(ag.order()) != n0 {
		t.Errorf("pods created while scaling down: %v", ag.order()[n0:])
	}
	waitFor("status 1 replica", func() bool { s := get(); return s.Status.Replicas == 1 && s.Status.ReadyReplicas == 1 })

	// whenDeleted: Delete set later applies to the existing claim; deleting
	// the set then takes its pod and claim with it.
	if _, err := cs.AppsV1().StatefulSets("default").Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("data-web-0 owned by the set", func() bool {
		c, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data-web-0", metav1.GetOptions{})
		return err == nil && len(c.OwnerReferences) == 1 && c.OwnerReferences[0].Kind == "StatefulSet"
	})
	if err := cs.AppsV1().StatefulSets("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("pod and claim gone with the set", func() bool {
		l, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		cl, _ := cs.CoreV1().PersistentVolumeClaims("default").List(ctx, metav1.ListOptions{})
		return len(l.Items) == 0 && len(cl.Items) == 0
	})
}
