package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth/berth/internal/cluster/kube"
)

type fakeClaims struct {
	claims  map[string]*corev1.PersistentVolumeClaim // ns/name →
	volumes map[string]*corev1.PersistentVolume
}

func (f *fakeClaims) PersistentVolumeClaim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	if c, ok := f.claims[ns+"/"+name]; ok {
		return c.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumeclaims"}, name)
}

func (f *fakeClaims) PersistentVolume(_ context.Context, name string) (*corev1.PersistentVolume, error) {
	if v, ok := f.volumes[name]; ok {
		return v.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumes"}, name)
}

func boundClaim(name, volume string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-c-" + name)},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeName: volume}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
}

func localPV(name, path, claim, node string, provisioned bool) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			ClaimRef:               &corev1.ObjectReference{Namespace: "ns", Name: claim, UID: types.UID("uid-c-" + claim)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}},
		}}
	if provisioned {
		pv.Annotations = map[string]string{kube.AnnProvisionedBy: kube.LocalPathProvisioner}
	}
	return pv
}

func claimVolume(name, claim string, ro bool) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: ro}}}
}

func claimManager(t *testing.T, f *fakeClaims) *Manager {
	m := newManager(t, nil)
	m.Claims, m.VolumesDir, m.RecordDir = f, filepath.Join(t.TempDir(), "volumes"), filepath.Join(t.TempDir(), "records")
	m.NodeName, m.NodeLabels = "n1", map[string]string{corev1.LabelHostname: "n1"}
	return m
}

// TestClaimVolume: a claim resolves to its bound local-path volume, whose
// directory the agent creates under --volumes-dir and mounts read-write
// (read-only with readOnly); data outlives the pod; the directory is
// removed only once no pod uses it, and only under --volumes-dir.
func TestClaimVolume(t *testing.T) {
	f := &fakeClaims{claims: map[string]*corev1.PersistentVolumeClaim{}, volumes: map[string]*corev1.PersistentVolume{}}
	m := claimManager(t, f)
	f.claims["ns/data"] = boundClaim("data", "pvc-1")
	f.volumes["pvc-1"] = localPV("pvc-1", filepath.Join(m.VolumesDir, "pvc-1"), "data", "n1", true)

	pod := newPod("u1", claimVolume("data", "data", false), claimVolume("ro", "data", true))
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "ro", MountPath: "/ro"}, {Name: "data", MountPath: "/sub", SubPath: "a/b"}}
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(m.VolumesDir, "pvc-1")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
		t.Fatalf("volume directory: got %v %v, want a 0777 directory", fi, err)
	}
	ms, err := pv.Mounts(&pod.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{Source: dir, Target: "/data"}, {Source: dir, Target: "/ro", ReadOnly: true}, {Source: filepath.Join(dir, "a/b"), Target: "/sub"}}
	for i := range want {
		if i >= len(ms) || ms[i] != want[i] {
			t.Fatalf("mounts: got %+v, want %+v", ms, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveLocalVolume("pvc-1"); err == nil || !strings.Contains(err.Error(), "still used") {
		t.Errorf("removing a volume in use: got %v, want refused", err)
	}
	if err := m.Teardown("u1"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || string(b) != "kept" {
		t.Errorf("after the pod's teardown: got %q %v, want the data kept", b, err)
	}
	if names, _ := m.LocalVolumes(); len(names) != 1 || names[0] != "pvc-1" {
		t.Errorf("LocalVolumes: got %v, want [pvc-1]", names)
	}
	for _, bad := range []string{"..", "a/b", ""} {
		if err := m.RemoveLocalVolume(bad); err == nil {
			t.Errorf("RemoveLocalVolume(%q): got nil, want refused", bad)
		}
	}
	if err := m.RemoveLocalVolume("pvc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after RemoveLocalVolume: got %v, want the directory gone", err)
	}
	if names, _ := m.LocalVolumes(); len(names) != 0 {
		t.Errorf("LocalVolumes after removal: got %v, want none", names)
	}
	// A directory this agent did not create is never listed.
	if err := os.Mkdir(filepath.Join(m.VolumesDir, "pvc-foreign"), 0o755); err != nil {
		t.Fatal(err)
	}
	if names, _ := m.LocalVolumes(); len(names) != 0 {
		t.Errorf("LocalVolumes with a foreign directory: got %v, want none", names)
	}
}

// TestClaimVolumeErrors: what keeps a pod waiting, and what is refused.
func TestClaimVolumeErrors(t *testing.T) {
	f := &fakeClaims{claims: map[string]*corev1.PersistentVolumeClaim{}, volumes: map[string]*corev1.PersistentVolume{}}
	m := claimManager(t, f)
	outside := t.TempDir()
	pending := boundClaim("pending", "")
	pending.Status.Phase = corev1.ClaimPending
	f.claims["ns/pending"] = pending
	f.claims["ns/elsewhere"] = boundClaim("elsewhere", "pv-elsewhere")
	f.volumes["pv-elsewhere"] = localPV("pv-elsewhere", filepath.Join(m.VolumesDir, "pv-elsewhere"), "elsewhere", "n2", true)
	f.claims["ns/forged"] = boundClaim("forged", "pv-forged")
	f.volumes["pv-forged"] = localPV("pv-forged", outside, "forged", "n1", true)
	f.claims["ns/stolen"] = boundClaim("stolen", "pv-other")
	f.volumes["pv-other"] = localPV("pv-other", filepath.Join(m.VolumesDir, "pv-other"), "someone-else", "n1", true)
	f.claims["ns/static"] = boundClaim("static", "pv-static")
	f.volumes["pv-static"] = localPV("pv-static", filepath.Join(outside, "missing"), "static", "n1", false)

	for _, tc := range []struct {
		claim, want string
		notBound    bool
	}{
		{"absent", `persistentvolumeclaim "absent"`, false},
		{"pending", "not bound", true},
		{"elsewhere", `not usable on node "n1"`, false},
		{"forged", "(--volumes-dir)", false},
		{"stolen", "is not bound to it", true},
		{"static", "missing", false},
	} {
		_, err := m.Setup(context.Background(), newPod("u1", claimVolume("v", tc.claim, false)), "", "")
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrClaimNotBound) != tc.notBound {
			t.Errorf("claim %s: got %v, want an error containing %q (not bound: %v)", tc.claim, err, tc.want, tc.notBound)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the agent created %d entries outside --volumes-dir", len(ents))
	}
}
