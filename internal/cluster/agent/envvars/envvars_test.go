package envvars

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeSource serves objects from maps keyed by "ns/name" and counts reads.
type fakeSource struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	reads      int
}

func (f *fakeSource) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	f.reads++
	if cm, ok := f.configMaps[ns+"/"+name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f *fakeSource) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	f.reads++
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func newSource() *fakeSource {
	return &fakeSource{
		configMaps: map[string]*corev1.ConfigMap{
			"ns1/cfg": {ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns1"}, Data: map[string]string{"B": "b", "A": "a", "bad=name": "x"}},
		},
		secrets: map[string]*corev1.Secret{
			"ns1/sec": {ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns1"}, Data: map[string][]byte{"password": []byte("hunter2"), "A": []byte("from-secret")}},
		},
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "ns1", UID: "uid-1",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"note": "hi"},
		},
		Spec: corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "sa"},
		Status: corev1.PodStatus{
			HostIP: "10.0.0.1", HostIPs: []corev1.HostIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}},
			PodIPs: []corev1.PodIP{{IP: "10.1.0.5"}, {IP: "fd01::5"}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func resEnv(name, res, divisor string) corev1.EnvVar {
	ref := &corev1.ResourceFieldSelector{Resource: res}
	if divisor != "" {
		ref.Divisor = resource.MustParse(divisor)
	}
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: ref}}
}

func TestResolve(t *testing.T) {
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("2"),
		corev1.ResourceMemory:           resource.MustParse("4Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("10Gi"),
	}
	limited := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
	}
	tests := []struct {
		name string
		c    corev1.Container
		want []string
	}{
		{
			name: "plain values and later wins in first position",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "X", Value: "1"}, {Name: "Y", Value: "2"}, {Name: "X", Value: "3"},
			}},
			want: []string{"X=3", "Y=2"},
		},
		{
			name: "expansion of earlier vars, escapes and unknowns",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "HOST", Value: "db"},
				{Name: "URL", Value: "http://$(HOST):$(PORT)/"},
				{Name: "PORT", Value: "5432"},
				{Name: "ESC", Value: "$$(HOST) $$ $x $( $"},
				{Name: "SELF", Value: "$(SELF)-x"},
			}},
			want: []string{"HOST=db", "URL=http://db:$(PORT)/", "PORT=5432", "ESC=$(HOST) $ $x $( $", "SELF=$(SELF)-x"},
		},
		{
			name: "envFrom with prefix, sorted keys, invalid names skipped, env overrides",
			c: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
					{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
					{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}},
				},
				Env: []corev1.EnvVar{{Name: "B", Value: "env-$(A)"}},
			},
			want: []string{"A=from-secret", "B=env-from-secret", "S_A=from-secret", "S_password=hunter2", "password=hunter2"},
		},
		{
			name: "fieldRef",
			c: corev1.Container{Env: []corev1.EnvVar{
				fieldEnv("NAME", "metadata.name"), fieldEnv("NS", "metadata.namespace"), fieldEnv("UID", "metadata.uid"),
				fieldEnv("APP", "metadata.labels['app']"), fieldEnv("NOTE", `metadata.annotations["note"]`),
				fieldEnv("MISSING", "metadata.labels['nope']"),
				fieldEnv("NODE", "spec.nodeName"), fieldEnv("SA", "spec.serviceAccountName"),
				fieldEnv("HOSTIP", "status.hostIP"), fieldEnv("HOSTIPS", "status.hostIPs"),
				fieldEnv("PODIP", "status.podIP"), fieldEnv("PODIPS", "status.podIPs"),
			}},
			want: []string{"NAME=web", "NS=ns1", "UID=uid-1", "APP=web", "NOTE=hi", "MISSING=", "NODE=node-a", "SA=sa",
				"HOSTIP=10.0.0.9", "HOSTIPS=10.0.0.9,10.0.0.1,fd00::1", "PODIP=10.1.0.5", "PODIPS=10.1.0.5,fd01::5"},
		},
		{
			name: "resourceFieldRef with limits, divisors and allocatable defaults",
			c: corev1.Container{Resources: limited, Env: []corev1.EnvVar{
				resEnv("CPU", "limits.cpu", ""), resEnv("CPU_M", "limits.cpu", "1m"), resEnv("CPU_REQ_M", "requests.cpu", "1m"),
				resEnv("MEM", "limits.memory", ""), resEnv("MEM_MI", "limits.memory", "1Mi"), resEnv("MEM_REQ", "requests.memory", "1Mi"),
				resEnv("EPH_GI", "limits.ephemeral-storage", "1Gi"), resEnv("EPH_REQ", "requests.ephemeral-storage", ""),
			}},
			want: []string{"CPU=1", "CPU_M=500", "CPU_REQ_M=250", "MEM=134217728", "MEM_MI=128", "MEM_REQ=128", "EPH_GI=10", "EPH_REQ=0"},
		},
		{
			name: "no limits falls back to node allocatable",
			c: corev1.Container{Env: []corev1.EnvVar{
				resEnv("CPU", "limits.cpu", ""), resEnv("MEM", "limits.memory", "1Mi"), resEnv("REQ", "requests.cpu", ""),
			}},
			want: []string{"CPU=2", "MEM=4096", "REQ=0"},
		},
		{
			name: "key refs, optional misses skipped",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "A"}}},
				{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
				{Name: "OPTKEY", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "nope", Optional: ptr(true)}}},
				{Name: "OPTOBJ", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: ptr(true)}}},
			}},
			want: []string{"CM=a", "PW=hunter2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Name = "app"
			pod := testPod()
			pod.Spec.Containers = []corev1.Container{tt.c}
			got, err := Resolve(context.Background(), newSource(), pod, &pod.Spec.Containers[0], "", "10.0.0.9", alloc)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     []corev1.EnvVar
		from    []corev1.EnvFromSource
		want    []string // substrings of the error
		wantCfg bool
	}{
		{
			name:    "missing required configmap key",
			env:     []corev1.EnvVar{{Name: "V", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "nope"}}}},
			want:    []string{"env V", "couldn't find key nope in ConfigMap ns1/cfg"},
			wantCfg: true,
		},
		{
			name:    "missing required secret key",
			env:     []corev1.EnvVar{{Name: "V", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "token"}}}},
			want:    []string{"couldn't find key token in Secret ns1/sec"},
			wantCfg: true,
		},
		{
			name:    "missing required secret",
			env:     []corev1.EnvVar{{Name: "V", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Key: "k"}}}},
			want:    []string{`secret "gone" not found`},
			wantCfg: true,
		},
		{
			name:    "missing required envFrom configmap",
			from:    []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}},
			want:    []string{"envFrom", `configmap "gone" not found in namespace "ns1"`},
			wantCfg: true,
		},
		{
			name:    "bad field path",
			env:     []corev1.EnvVar{fieldEnv("V", "spec.containers")},
			want:    []string{`"spec.containers"`},
			wantCfg: true,
		},
		{
			name:    "bad resource",
			env:     []corev1.EnvVar{resEnv("V", "limits.gpu", "")},
			want:    []string{`"limits.gpu"`},
			wantCfg: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod()
			pod.Spec.Containers = []corev1.Container{{Name: "app", Env: tt.env, EnvFrom: tt.from}}
			_, err := Resolve(context.Background(), newSource(), pod, &pod.Spec.Containers[0], "", "", nil)
			if err == nil {
				t.Fatal("got no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if errors.Is(err, ErrConfig) != tt.wantCfg {
				t.Errorf("errors.Is(err, ErrConfig) = %v, want %v", !tt.wantCfg, tt.wantCfg)
			}
		})
	}
}

func TestResolveReadsEachObjectOnce(t *testing.T) {
	src := newSource()
	pod := testPod()
	ref := func(k string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: k}}
	}
	pod.Spec.Containers = []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "A", ValueFrom: ref("A")}, {Name: "B", ValueFrom: ref("B")}}}}
	if _, err := Resolve(context.Background(), src, pod, &pod.Spec.Containers[0], "", "", nil); err != nil {
		t.Fatal(err)
	}
	if src.reads != 1 {
		t.Errorf("got %d reads, want 1", src.reads)
	}
}

func TestClientSource(t *testing.T) {
	cs := fake.NewSimpleClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns1"}, Data: map[string]string{"k": "v"}},
	)
	pod := testPod()
	pod.Spec.Containers = []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
		{Name: "V", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}},
		{Name: "O", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: ptr(true)}}},
	}}}
	got, err := Resolve(context.Background(), ClientSource(cs), pod, &pod.Spec.Containers[0], "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"V=v"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExpandCommand(t *testing.T) {
	env := []string{"GREETING=hello", "EQ=a=b"}
	cmd, args := ExpandCommand([]string{"/bin/echo", "$(GREETING)"}, []string{"$(EQ)", "$$(GREETING)", "$(NOPE)", "x$(GREETING)y"}, env)
	if want := []string{"/bin/echo", "hello"}; !reflect.DeepEqual(cmd, want) {
		t.Errorf("command: got %q, want %q", cmd, want)
	}
	if want := []string{"a=b", "$(GREETING)", "$(NOPE)", "xhelloy"}; !reflect.DeepEqual(args, want) {
		t.Errorf("args: got %q, want %q", args, want)
	}
	if c, a := ExpandCommand(nil, nil, env); c != nil || a != nil {
		t.Errorf("nil in: got %q %q, want nil nil", c, a)
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"$(A)", "$$", "$(", "$", "a$(B)c$$(A)", "$(A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// With no known names, expansion only rewrites "$$" to "$".
		got := Expand(s, func(string) (string, bool) { return "", false })
		if len(got) > len(s) {
			t.Errorf("Expand(%q) = %q grew with no substitutions", s, got)
		}
	})
}
