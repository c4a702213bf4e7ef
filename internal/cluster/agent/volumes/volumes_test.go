package volumes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

type fakeSource struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func (f *fakeSource) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if cm, ok := f.configMaps[ns+"/"+name]; ok {
		return cm.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f *fakeSource) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

// tokenSource adds the optional TokenSource ability.
type tokenSource struct{ *fakeSource }

func (tokenSource) ServiceAccountToken(_ context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	return "token-for-" + pod.Spec.ServiceAccountName + "-" + p.Audience, nil
}

func newSource() *fakeSource {
	return &fakeSource{
		configMaps: map[string]*corev1.ConfigMap{
			"ns/cfg": {ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns"},
				Data: map[string]string{"app.conf": "a=1", "other": "o"}, BinaryData: map[string][]byte{"bin": {0, 1, 2}}},
			"ns/hostile": {ObjectMeta: metav1.ObjectMeta{Name: "hostile", Namespace: "ns"},
				Data: map[string]string{"../escape": "x"}},
		},
		secrets: map[string]*corev1.Secret{
			"ns/sec": {ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"}, Data: map[string][]byte{"password": []byte("hunter2")}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
}

func newPod(uid string, vols ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: types.UID(uid),
			Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: map[string]string{"note": `say "hi"`}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "default", Volumes: vols,
			Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}}}}},
	}
}

func newManager(t *testing.T, src any) *Manager {
	t.Helper()
	m := &Manager{Root: t.TempDir(), Allocatable: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
	if src != nil {
		m.Src = src.(interface {
			ConfigMap(context.Context, string, string) (*corev1.ConfigMap, error)
			Secret(context.Context, string, string) (*corev1.Secret, error)
		})
	}
	t.Cleanup(func() {
		if err := m.Teardown("u1"); err != nil {
			t.Errorf("cleanup Teardown: %v", err)
		}
	})
	return m
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func fsType(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Type)
}

const tmpfsMagic = 0x01021994

func TestEmptyDir(t *testing.T) {
	m := newManager(t, nil)
	pod := newPod("u1", corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := pv.Path("scratch")
	if want := filepath.Join(m.Root, "u1", "volumes", "scratch"); dir != want {
		t.Errorf("path %s, want %s", dir, want)
	}
	if got := perm(t, dir); got != 0o777 {
		t.Errorf("mode %o, want 777", got)
	}
	os.WriteFile(filepath.Join(dir, "kept"), []byte("x"), 0o644)
	if _, err := m.Setup(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "kept")); got != "x" {
		t.Errorf("second Setup lost emptyDir data: %q", got)
	}
	if err := m.Teardown("u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.Root, "u1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod dir still there after Teardown: %v", err)
	}
	if err := m.Teardown("u1"); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

func TestEmptyDirMemory(t *testing.T) {
	needRoot(t)
	m := newManager(t, nil)
	pod := newPod("u1", corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("8Mi"))}}})
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := pv.Path("shm")
	if fsType(t, dir) != tmpfsMagic {
		t.Fatalf("%s is not a tmpfs", dir)
	}
	var st syscall.Statfs_t
	syscall.Statfs(dir, &st)
	if size := int64(st.Blocks) * st.Bsize; size != 8<<20 {
		t.Errorf("tmpfs size %d, want %d", size, 8<<20)
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("mem"), 0o644)
	// Setup again must not stack a second tmpfs over the data.
	if _, err := m.Setup(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "f")); got != "mem" {
		t.Errorf("second Setup hid the tmpfs data: %q", got)
	}
	mounts, _ := mountsUnder(dir)
	if len(mounts) != 1 {
		t.Errorf("mounts under %s: %q, want one", dir, mounts)
	}
	if err := m.Teardown("u1"); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := mountsUnder(m.Root); len(mounts) != 0 {
		t.Errorf("mounts left after Teardown: %q", mounts)
	}
}

func TestHostPath(t *testing.T) {
	base := t.TempDir()
	os.Mkdir(filepath.Join(base, "dir"), 0o755)
	os.WriteFile(filepath.Join(base, "file"), nil, 0o644)
	ln, err := net.Listen("unix", filepath.Join(base, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		path    string
		typ     corev1.HostPathType
		wantErr string
		check   func(t *testing.T, path string)
	}{
		{path: "dir", typ: ""},
		{path: "missing-is-fine", typ: ""},
		{path: "new/nested", typ: corev1.HostPathDirectoryOrCreate, check: func(t *testing.T, p string) {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Errorf("DirectoryOrCreate did not make a 0755 directory: %v %v", fi, err)
			}
		}},
		{path: "file", typ: corev1.HostPathDirectoryOrCreate, wantErr: "is not a directory"},
		{path: "dir", typ: corev1.HostPathDirectory},
		{path: "nope", typ: corev1.HostPathDirectory, wantErr: "does not exist"},
		{path: "file", typ: corev1.HostPathDirectory, wantErr: "is not a directory"},
		{path: "newfile", typ: corev1.HostPathFileOrCreate, check: func(t *testing.T, p string) {
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("FileOrCreate did not make a file: %v", err)
			}
		}},
		{path: "noparent/file", typ: corev1.HostPathFileOrCreate, wantErr: "no such file"},
		{path: "dir", typ: corev1.HostPathFileOrCreate, wantErr: "is not a file"},
		{path: "file", typ: corev1.HostPathFile},
		{path: "dir", typ: corev1.HostPathFile, wantErr: "is not a file"},
		{path: "sock", typ: corev1.HostPathSocket},
		{path: "file", typ: corev1.HostPathSocket, wantErr: "is not a socket"},
		{path: "/dev/null", typ: corev1.HostPathCharDev},
		{path: "/dev/null", typ: corev1.HostPathBlockDev, wantErr: "is not a block device"},
		{path: "dir", typ: "Weird", wantErr: `hostPath type "Weird"`},
		{path: "relative/path", typ: "", wantErr: "must be an absolute path"},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ)+"/"+tt.path, func(t *testing.T) {
			p := tt.path
			if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "relative") {
				p = filepath.Join(base, p)
			}
			m := newManager(t, nil)
			pod := newPod("u1", corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p, Type: ptr(tt.typ)}}})
			pv, err := m.Setup(context.Background(), pod, "", "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `volume "h"`) {
					t.Fatalf("got error %v, want one naming volume \"h\" and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := pv.Path("h"); got != p {
				t.Errorf("path %s, want %s", got, p)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
	// Teardown never touches a hostPath.
	if _, err := os.Stat(filepath.Join(base, "file")); err != nil {
		t.Errorf("hostPath file gone: %v", err)
	}
}

func TestConfigMapAndRefresh(t *testing.T) {
	src := newSource()
	m := newManager(t, src)
	pod := newPod("u1",
		corev1.Volume{Name: "all", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, DefaultMode: ptr(int32(0o640))}}},
		corev1.Volume{Name: "items", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			Items:                []corev1.KeyToPath{{Key: "app.conf", Path: "etc/app/app.conf", Mode: ptr(int32(0o400))}}}}},
	)
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := pv.Path("all")
	if got := read(t, filepath.Join(all, "app.conf")); got != "a=1" {
		t.Errorf("app.conf %q", got)
	}
	if got := read(t, filepath.Join(all, "bin")); got != "\x00\x01\x02" {
		t.Errorf("binaryData %q", got)
	}
	if got := perm(t, filepath.Join(all, "other")); got != 0o640 {
		t.Errorf("defaultMode: %o, want 640", got)
	}
	if link, err := os.Readlink(filepath.Join(all, "app.conf")); err != nil || link != "..data/app.conf" {
		t.Errorf("app.conf link %q %v, want ..data/app.conf", link, err)
	}
	items, _ := pv.Path("items")
	if got := read(t, filepath.Join(items, "etc/app/app.conf")); got != "a=1" {
		t.Errorf("item %q", got)
	}
	if got := perm(t, filepath.Join(items, "etc/app/app.conf")); got != 0o400 {
		t.Errorf("item mode %o, want 400", got)
	}
	if _, err := os.Lstat(filepath.Join(items, "other")); err == nil {
		t.Errorf("key not in items was written")
	}

	// Unchanged content: Refresh must not swap ..data.
	before, _ := os.Readlink(filepath.Join(all, dataLink))
	if err := m.Refresh(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Readlink(filepath.Join(all, dataLink)); after != before {
		t.Errorf("unchanged Refresh swapped ..data %s → %s", before, after)
	}

	// Changed content: new value, removed key gone, old directory gone.
	cm := src.configMaps["ns/cfg"]
	cm.Data = map[string]string{"app.conf": "a=2", "new": "n"}
	cm.BinaryData = nil
	if err := m.Refresh(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(all, "app.conf")); got != "a=2" {
		t.Errorf("after Refresh app.conf %q, want a=2", got)
	}
	if got := read(t, filepath.Join(all, "new")); got != "n" {
		t.Errorf("after Refresh new %q", got)
	}
	if _, err := os.Lstat(filepath.Join(all, "other")); err == nil {
		t.Errorf("removed key still visible")
	}
	entries, _ := os.ReadDir(all)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"..data", "app.conf", "new"}; !reflect.DeepEqual(names[1:], want) {
		t.Errorf("volume entries %q, want a timestamped directory then %q", names, want)
	}
	var stamps int
	for _, n := range names {
		if strings.HasPrefix(n, "..20") {
			stamps++
		}
	}
	if stamps != 1 {
		t.Errorf("%d timestamped directories left, want 1: %q", stamps, names)
	}
	if got := read(t, filepath.Join(items, "etc/app/app.conf")); got != "a=2" {
		t.Errorf("items volume after Refresh %q", got)
	}
}

func TestSecretOnTmpfs(t *testing.T) {
	needRoot(t)
	m := newManager(t, newSource())
	pod := newPod("u1", corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr(int32(0o400))}}})
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))}
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := pv.Path("s")
	if fsType(t, dir) != tmpfsMagic {
		t.Errorf("secret volume is not on tmpfs")
	}
	f := filepath.Join(dir, "password")
	if got := read(t, f); got != "hunter2" {
		t.Errorf("password %q", got)
	}
	fi, _ := os.Stat(f)
	if fi.Mode().Perm() != 0o440 || fi.Sys().(*syscall.Stat_t).Gid != 2000 {
		t.Errorf("with fsGroup 2000: mode %o gid %d, want 440 and 2000", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid)
	}
	// Refresh with the same data must see it as unchanged despite fsGroup.
	before, _ := os.Readlink(filepath.Join(dir, dataLink))
	if err := m.Refresh(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Readlink(filepath.Join(dir, dataLink)); after != before {
		t.Errorf("unchanged Refresh swapped ..data")
	}
}

func TestContentErrors(t *testing.T) {
	cmVol := func(name string, opt *bool, items ...corev1.KeyToPath) corev1.Volume {
		return corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: opt, Items: items}}}
	}
	item := func(key, path string) corev1.KeyToPath { return corev1.KeyToPath{Key: key, Path: path} }
	tests := []struct {
		name    string
		vol     corev1.Volume
		wantErr string // empty: must succeed
	}{
		{name: "required configmap missing", vol: cmVol("gone", nil), wantErr: `configmap ns/gone`},
		{name: "optional configmap missing", vol: cmVol("gone", ptr(true))},
		{name: "required secret missing", vol: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone"}}}, wantErr: "secret ns/gone"},
		{name: "item key missing", vol: cmVol("cfg", nil, item("nokey", "x")), wantErr: `configmap ns/cfg has no key "nokey"`},
		{name: "item key missing but optional", vol: cmVol("cfg", ptr(true), item("nokey", "x"))},
		{name: "dotdot escape", vol: cmVol("cfg", nil, item("other", "../../etc/passwd")), wantErr: `must not start with ".."`},
		{name: "inner dotdot", vol: cmVol("cfg", nil, item("other", "a/../../x")), wantErr: `must not contain ".."`},
		{name: "absolute path", vol: cmVol("cfg", nil, item("other", "/etc/passwd")), wantErr: "must be relative"},
		{name: "reserved ..data", vol: cmVol("cfg", nil, item("other", "..data")), wantErr: `must not start with ".."`},
		{name: "empty path", vol: cmVol("cfg", nil, item("other", "")), wantErr: "path is empty"},
		{name: "dot path", vol: cmVol("cfg", nil, item("other", ".")), wantErr: "names the volume itself"},
		{name: "duplicate path", vol: cmVol("cfg", nil, item("other", "x"), item("app.conf", "./x")), wantErr: "given twice"},
		{name: "file vs dir conflict", vol: cmVol("cfg", nil, item("other", "x"), item("app.conf", "x/y")), wantErr: "conflict"},
		{name: "hostile key without items", vol: cmVol("hostile", nil), wantErr: `key "../escape"`},
		{name: "bad mode", vol: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, DefaultMode: ptr(int32(0o4777))}}}, wantErr: "mode"},
		{name: "unsupported type", vol: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}, wantErr: "unsupported volume type persistentVolumeClaim"},
		{name: "no type", vol: corev1.Volume{Name: "v"}, wantErr: "unsupported volume type (none set)"},
		{name: "hostile volume name", vol: corev1.Volume{Name: "../v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, wantErr: `volume name "../v"`},
		{name: "bad emptyDir medium", vol: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: "HugePages"}}}, wantErr: `medium "HugePages"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, newSource())
			outside := filepath.Join(filepath.Dir(m.Root), "passwd")
			_, err := m.Setup(context.Background(), newPod("u1", tt.vol), "", "")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if _, err := os.Stat(outside); err == nil {
				t.Errorf("a file was written outside the volume: %s", outside)
			}
			if strings.HasPrefix(tt.name, "unsupported") && !errors.Is(err, ErrUnsupported) {
				t.Errorf("error is not ErrUnsupported: %v", err)
			}
		})
	}
}

func TestDownwardAPIAndProjected(t *testing.T) {
	needRoot(t)
	src := newSource()
	m := newManager(t, tokenSource{src})
	downward := []corev1.DownwardAPIVolumeFile{
		{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
		{Path: "tier", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}},
		{Path: "cpu/millis", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.cpu", Divisor: resource.MustParse("1m")}},
		{Path: "mem", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
	}
	pod := newPod("u1",
		corev1.Volume{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: downward}}},
		corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "app.conf", Path: "conf/app.conf"}}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: downward[2:3]}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", Audience: "api"}},
		}}}},
	)
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := pv.Path("d")
	want := map[string]string{
		"labels":      "app=\"web\"\ntier=\"front\"",
		"annotations": `note="say \"hi\""`,
		"name":        "web",
		"tier":        "front",
		"cpu/millis":  "1500",
		"mem":         "1024",
	}
	for p, w := range want {
		if got := read(t, filepath.Join(d, p)); got != w {
			t.Errorf("downwardAPI %s = %q, want %q", p, got, w)
		}
	}
	p, _ := pv.Path("p")
	if fsType(t, p) != tmpfsMagic {
		t.Errorf("projected volume is not on tmpfs")
	}
	for f, w := range map[string]string{"conf/app.conf": "a=1", "password": "hunter2", "name": "web", "token": "token-for-default-api"} {
		if got := read(t, filepath.Join(p, f)); got != w {
			t.Errorf("projected %s = %q, want %q", f, got, w)
		}
	}
	if got := perm(t, filepath.Join(p, "token")); got != 0o600 {
		t.Errorf("token mode %o, want 600", got)
	}

	// A label change reaches the file on Refresh.
	pod.Labels["tier"] = "back"
	if err := m.Refresh(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(d, "tier")); got != "back" {
		t.Errorf("after Refresh tier = %q, want back", got)
	}
}

func TestProjectedTokenSkippedWithoutTokenSource(t *testing.T) {
	needRoot(t)
	m := newManager(t, newSource())
	pod := newPod("u1", corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
	}}}})
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pv.Path("p")
	if _, err := os.Lstat(filepath.Join(p, "token")); err == nil {
		t.Errorf("token written with no TokenSource")
	}
	if got := read(t, filepath.Join(p, "ns")); got != "ns" {
		t.Errorf("ns = %q", got)
	}
}

func TestMounts(t *testing.T) {
	m := newManager(t, newSource())
	pod := newPod("u1",
		corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
	)
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := pv.Path("data")
	cfg, _ := pv.Path("cfg")
	// A container planted a symlink to the host's /etc in the emptyDir.
	if err := os.Symlink("/etc", filepath.Join(data, "evil")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("inner", filepath.Join(data, "ok-link"))
	os.Mkdir(filepath.Join(data, "inner"), 0o755)

	mode := func(m corev1.MountPropagationMode) *corev1.MountPropagationMode { return &m }
	tests := []struct {
		name    string
		vm      corev1.VolumeMount
		env     []string
		priv    bool
		want    Mount
		wantErr string
	}{
		{name: "plain", vm: corev1.VolumeMount{Name: "data", MountPath: "/data"}, want: Mount{Source: data, Target: "/data"}},
		{name: "readOnly", vm: corev1.VolumeMount{Name: "data", MountPath: "/data/", ReadOnly: true}, want: Mount{Source: data, Target: "/data", ReadOnly: true}},
		{name: "configMap forced read-only", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/cfg"}, want: Mount{Source: cfg, Target: "/etc/cfg", ReadOnly: true}},
		{name: "subPath created", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "a/b"}, want: Mount{Source: filepath.Join(data, "a/b"), Target: "/x"}},
		{name: "subPath through inner symlink", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "ok-link"}, want: Mount{Source: filepath.Join(data, "inner"), Target: "/x"}},
		{name: "subPathExpr", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPathExpr: "logs/$(POD)"}, env: []string{"POD=web-1"}, want: Mount{Source: filepath.Join(data, "logs/web-1"), Target: "/x"}},
		{name: "configMap subPath is the current file", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"}},
		{name: "propagation HostToContainer", vm: corev1.VolumeMount{Name: "data", MountPath: "/d", MountPropagation: mode(corev1.MountPropagationHostToContainer)}, want: Mount{Source: data, Target: "/d", Propagation: "rslave"}},
		{name: "propagation Bidirectional privileged", priv: true, vm: corev1.VolumeMount{Name: "data", MountPath: "/d", MountPropagation: mode(corev1.MountPropagationBidirectional)}, want: Mount{Source: data, Target: "/d", Propagation: "rshared"}},
		{name: "propagation Bidirectional unprivileged", vm: corev1.VolumeMount{Name: "data", MountPath: "/d", MountPropagation: mode(corev1.MountPropagationBidirectional)}, wantErr: "needs a privileged container"},
		{name: "symlink escape", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "evil"}, wantErr: "leads out of the volume"},
		{name: "symlink escape below", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "evil/ssl"}, wantErr: "leads out of the volume"},
		{name: "dotdot subPath", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "../../.."}, wantErr: `must not start with ".."`},
		{name: "dotdot subPathExpr", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPathExpr: "a/$(P)"}, env: []string{"P=../../x"}, wantErr: `must not contain ".."`},
		{name: "absolute subPath", vm: corev1.VolumeMount{Name: "data", MountPath: "/x", SubPath: "/etc"}, wantErr: "must be relative"},
		{name: "configMap subPath missing", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/x", SubPath: "nope"}, wantErr: "does not exist"},
		{name: "unknown volume", vm: corev1.VolumeMount{Name: "ghost", MountPath: "/x"}, wantErr: `no volume named "ghost"`},
		{name: "relative mountPath", vm: corev1.VolumeMount{Name: "data", MountPath: "x"}, wantErr: "must be absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corev1.Container{Name: "app", VolumeMounts: []corev1.VolumeMount{tt.vm}}
			if tt.priv {
				c.SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
			}
			got, err := pv.MountsWithEnv(c, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "configMap subPath is the current file" {
				dataDir, _ := filepath.EvalSymlinks(filepath.Join(cfg, dataLink))
				if want := filepath.Join(dataDir, "app.conf"); got[0].Source != want || !got[0].ReadOnly {
					t.Errorf("got %+v, want source %s read-only", got[0], want)
				}
				return
			}
			if !reflect.DeepEqual(got, []Mount{tt.want}) {
				t.Errorf("got  %+v\nwant %+v", got, []Mount{tt.want})
			}
		})
	}
}

func TestTeardownBadUID(t *testing.T) {
	m := &Manager{Root: t.TempDir()}
	for _, uid := range []string{"", "..", "a/b", "../x"} {
		if err := m.Teardown(uid); err == nil {
			t.Errorf("Teardown(%q): no error", uid)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/a\040b\011c\134d`); got != "/a b\tc\\d" {
		t.Errorf("got %q", got)
	}
}

func TestConcurrentSetupRefresh(t *testing.T) {
	m := newManager(t, newSource())
	pod := newPod("u1", corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		corev1.Volume{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}})
	if _, err := m.Setup(context.Background(), pod, "", ""); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			p := pod.DeepCopy()
			p.Name = fmt.Sprintf("web-%d", i%3)
			if i%2 == 0 {
				_, err := m.Setup(context.Background(), p, "", "")
				errs <- err
			} else {
				errs <- m.Refresh(context.Background(), p, "", "")
			}
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	d := filepath.Join(m.Root, "u1", "volumes", "d")
	if got := read(t, filepath.Join(d, "name")); !strings.HasPrefix(got, "web-") {
		t.Errorf("name = %q", got)
	}
	entries, _ := os.ReadDir(d)
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("entries %q, want one timestamped directory, ..data and name", names)
	}
}

func TestOverSizeLimit(t *testing.T) {
	m := newManager(t, nil)
	pod := newPod("u1",
		corev1.Volume{Name: "small", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("1Ki"))}}},
		corev1.Volume{Name: "big", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("1Mi"))}}},
		corev1.Volume{Name: "free", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	)
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"small", "big", "free"} {
		p, _ := pv.Path(name)
		os.MkdirAll(filepath.Join(p, "sub"), 0o755)
		os.WriteFile(filepath.Join(p, "sub", "f"), make([]byte, 2048), 0o644)
	}
	got, err := m.OverSizeLimit(pod)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`Usage of EmptyDir volume "small" exceeds the limit "1Ki". `}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A bind mount of host data that something left under the pod directory
// is unmounted before the removal, so the host data survives.
func TestTeardownUnmountsBeforeRemoving(t *testing.T) {
	needRoot(t)
	m := newManager(t, nil)
	pod := newPod("u1", corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	pv, err := m.Setup(context.Background(), pod, "", "")
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	precious := filepath.Join(host, "precious")
	os.WriteFile(precious, []byte("keep"), 0o644)
	dir, _ := pv.Path("data")
	target := filepath.Join(dir, "bound")
	os.Mkdir(target, 0o755)
	if err := syscall.Mount(host, target, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	// A tmpfs on top of a tmpfs: both layers must go.
	shm := filepath.Join(dir, "shm")
	os.Mkdir(shm, 0o755)
	for range 2 {
		if err := syscall.Mount("tmpfs", shm, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Teardown("u1"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, precious); got != "keep" {
		t.Errorf("host data behind a bind mount: %q", got)
	}
	if _, err := os.Stat(filepath.Join(m.Root, "u1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod dir left: %v", err)
	}
	if mounts, _ := mountsUnder(m.Root); len(mounts) != 0 {
		t.Errorf("mounts left: %q", mounts)
	}
}
