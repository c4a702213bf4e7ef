// Package volumes materializes a pod's volumes on the node and turns a
// container's volumeMounts into host-path bind mounts for the engine.
//
// Every volume lives in <Root>/<pod uid>/volumes/<volume name> (hostPath
// volumes excepted: they are the host path itself). Content volumes
// (configMap, secret, downwardAPI, projected) are written the way the
// kubelet writes them, so that updates are atomic for a reader in the
// container: the files sit in a timestamped directory "..<time>", the
// symlink "..data" points at it, and each top-level name is a symlink
// through "..data". An update writes a new directory and swaps "..data"
// with one rename. Secret and projected volumes, and emptyDir volumes
// with medium Memory, are tmpfs mounts so their contents never touch
// the disk.
//
// Every call is safe to repeat with the same pod: an agent that restarts
// calls Setup again for the pods it adopts and finds their data intact.
package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berth/berth/internal/cluster/agent/envvars"
	corev1 "k8s.io/api/core/v1"
)

// Mount is one bind mount of a host path into a container, in the
// engine's (Docker API) vocabulary: Propagation is "", "rprivate",
// "rslave" or "rshared".
type Mount struct {
	Source, Target string
	ReadOnly       bool
	Propagation    string
}

// Manager owns the per-pod volume directories under Root.
type Manager struct {
	// Root holds one directory per pod uid, e.g. <agent data dir>/pods.
	Root string
	// Src reads the ConfigMaps and Secrets that volumes project. If it
	// also implements TokenSource, projected serviceAccountToken sources
	// are written; otherwise they are skipped with a logged note.
	Src envvars.Source
	// Allocatable stands in for a container's missing limits in
	// downwardAPI resourceFieldRef items.
	Allocatable corev1.ResourceList
	// Log receives notes about skipped volume sources; nil means slog.Default.
	Log *slog.Logger
	// Claims resolves persistentVolumeClaim volumes; nil refuses them.
	Claims Claims
	// VolumesDir holds the node's local-path volumes, one directory per
	// volume (--volumes-dir); nothing outside it is created or removed
	// for them.
	VolumesDir string
	// RecordDir (in the agent's data dir) records the local-path volumes
	// this agent created; LocalVolumes lists them. "" records none.
	RecordDir string
	// NodeName and NodeLabels are this node's, to check a volume's
	// nodeAffinity.
	NodeName   string
	NodeLabels map[string]string

	mu    sync.Mutex
	locks map[string]*podLock        // per pod uid: Setup, Refresh and Teardown of one pod never overlap
	inUse map[string]map[string]bool // claim volume path → pod uids using it
}

type podLock struct {
	sync.Mutex
	users int
}

// lock serializes work on one pod; pods do not wait for each other.
func (m *Manager) lock(uid string) func() {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*podLock{}
	}
	l := m.locks[uid]
	if l == nil {
		l = &podLock{}
		m.locks[uid] = l
	}
	l.users++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		if l.users--; l.users == 0 {
			delete(m.locks, uid)
		}
		m.mu.Unlock()
	}
}

// TokenSource is the optional ability of a Source to issue service
// account tokens (the TokenRequest API) for projected volumes.
type TokenSource interface {
	ServiceAccountToken(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error)
}

// PodVolumes is the result of Setup: where each of a pod's volumes is on
// the host.
type PodVolumes struct {
	UID   string
	pod   *corev1.Pod
	paths map[string]string // volume name → host path
}

// ErrUnsupported marks a volume type berth does not implement.
var ErrUnsupported = errors.New("unsupported volume type")

func (m *Manager) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.Default()
}

// PodDir returns the directory that holds the pod's volumes and state.
func (m *Manager) PodDir(uid string) (string, error) {
	if err := checkName("pod uid", uid); err != nil {
		return "", err
	}
	if m.Root == "" {
		return "", errors.New("volumes: Manager.Root is not set")
	}
	return filepath.Join(m.Root, uid), nil
}

// checkName rejects names that would not stay one path element.
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%s %q is not a valid directory name", what, name)
	}
	return nil
}

// Setup materializes every volume of pod. podIP and hostIP feed
// downwardAPI items. Calling it again for the same pod keeps emptyDir
// contents and existing tmpfs mounts and refreshes content volumes.
func (m *Manager) Setup(ctx context.Context, pod *corev1.Pod, podIP, hostIP string) (*PodVolumes, error) {
	uid := string(pod.UID)
	defer m.lock(uid)()
	dir, err := m.PodDir(uid)
	if err != nil {
		return nil, err
	}
	pv := &PodVolumes{UID: uid, pod: pod.DeepCopy(), paths: map[string]string{}}
	seen := map[string]bool{}
	var claimPaths []string
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if err := checkName("volume name", v.Name); err != nil {
			return nil, err
		}
		if seen[v.Name] {
			return nil, fmt.Errorf("volume %q is defined twice", v.Name)
		}
		seen[v.Name] = true
		path, err := m.setupVolume(ctx, pod, v, filepath.Join(dir, "volumes", v.Name), podIP, hostIP)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		pv.paths[v.Name] = path
		if v.PersistentVolumeClaim != nil {
			claimPaths = append(claimPaths, path)
		}
	}
	m.track(uid, claimPaths)
	return pv, nil
}

func (m *Manager) setupVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, dir, podIP, hostIP string) (string, error) {
	fsGroup := fsGroupOf(pod)
	switch {
	case v.EmptyDir != nil:
		return dir, setupEmptyDir(v.EmptyDir, dir, fsGroup)
	case v.HostPath != nil:
		return checkHostPath(v.HostPath)
	case v.ConfigMap != nil, v.Secret != nil, v.DownwardAPI != nil, v.Projected != nil:
		return dir, m.writeContent(ctx, pod, v, dir, podIP, hostIP)
	case v.PersistentVolumeClaim != nil:
		return m.setupClaim(ctx, pod, v.PersistentVolumeClaim)
	}
	return "", fmt.Errorf("%w %s (berth supports emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim)", ErrUnsupported, volumeType(v))
}

// volumeType names the volume source that is set, as in the pod's YAML.
func volumeType(v *corev1.Volume) string {
	b, err := json.Marshal(v.VolumeSource)
	if err != nil {
		return "(unknown)"
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || len(m) == 0 {
		return "(none set)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func fsGroupOf(pod *corev1.Pod) *int64 {
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.FSGroup
	}
	return nil
}

func setupEmptyDir(ed *corev1.EmptyDirVolumeSource, dir string, fsGroup *int64) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	switch ed.Medium {
	case corev1.StorageMediumDefault:
	case corev1.StorageMediumMemory:
		var size int64
		if ed.SizeLimit != nil {
			size = ed.SizeLimit.Value()
		}
		if err := ensureTmpfs(dir, size, 0o777); err != nil {
			return fmt.Errorf("emptyDir medium Memory: %w", err)
		}
	default:
		return fmt.Errorf("%w: emptyDir medium %q (want \"\" or \"Memory\")", ErrUnsupported, ed.Medium)
	}
	// World-writable like the kubelet's, so a container running as any
	// user can write; with fsGroup the group owns it and new files
	// inherit the group (setgid).
	mode := os.FileMode(0o777)
	if fsGroup != nil {
		if err := os.Lchown(dir, -1, int(*fsGroup)); err != nil {
			return err
		}
		mode |= os.ModeSetgid
	}
	return os.Chmod(dir, mode)
}

// Mounts returns the bind mounts for c's volumeMounts. A subPathExpr is
// expanded with no variables; use MountsWithEnv to give the container's
// environment.
func (v *PodVolumes) Mounts(c *corev1.Container) ([]Mount, error) {
	return v.MountsWithEnv(c, nil)
}

// MountsWithEnv is Mounts with the container's resolved environment
// (KEY=VALUE, from envvars.Resolve) for $(VAR) in subPathExpr.
func (v *PodVolumes) MountsWithEnv(c *corev1.Container, env []string) ([]Mount, error) {
	privileged := c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
	var out []Mount
	for _, vm := range c.VolumeMounts {
		src, ok := v.paths[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q at %s: the pod has no volume named %q", vm.Name, vm.MountPath, vm.Name)
		}
		if !filepath.IsAbs(vm.MountPath) {
			return nil, fmt.Errorf("volumeMount %q: mountPath %q must be absolute", vm.Name, vm.MountPath)
		}
		vol := v.volume(vm.Name)
		content := vol.ConfigMap != nil || vol.Secret != nil || vol.DownwardAPI != nil || vol.Projected != nil
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			_, args := envvars.ExpandCommand(nil, []string{vm.SubPathExpr}, env)
			sub = args[0]
		}
		if sub != "" {
			// Only emptyDir and hostPath volumes get missing subPath
			// directories created, as a container writes there.
			resolved, err := resolveSubPath(src, sub, !content)
			if err != nil {
				return nil, fmt.Errorf("volumeMount %q subPath %q: %w", vm.Name, sub, err)
			}
			src = resolved
		}
		prop, err := propagation(vm.MountPropagation, privileged)
		if err != nil {
			return nil, fmt.Errorf("volumeMount %q: %w", vm.Name, err)
		}
		// The kubelet mounts content volumes read-only whatever the
		// volumeMount says: the data belongs to the API object. A claim
		// volume with readOnly is read-only in every container.
		ro := vm.ReadOnly || content || (vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ReadOnly)
		out = append(out, Mount{Source: src, Target: filepath.Clean(vm.MountPath), ReadOnly: ro, Propagation: prop})
	}
	return out, nil
}

// Path returns the host path of the named volume.
func (v *PodVolumes) Path(name string) (string, bool) {
	p, ok := v.paths[name]
	return p, ok
}

func (v *PodVolumes) volume(name string) *corev1.Volume {
	for i := range v.pod.Spec.Volumes {
		if v.pod.Spec.Volumes[i].Name == name {
			return &v.pod.Spec.Volumes[i]
		}
	}
	return &corev1.Volume{}
}

func propagation(mode *corev1.MountPropagationMode, privileged bool) (string, error) {
	if mode == nil {
		return "", nil
	}
	switch *mode {
	case corev1.MountPropagationNone:
		return "rprivate", nil
	case corev1.MountPropagationHostToContainer:
		return "rslave", nil
	case corev1.MountPropagationBidirectional:
		if !privileged {
			return "", errors.New("mountPropagation Bidirectional needs a privileged container")
		}
		return "rshared", nil
	}
	return "", fmt.Errorf("mountPropagation %q is not None, HostToContainer or Bidirectional", *mode)
}

// Refresh rewrites the content volumes (configMap, secret, downwardAPI,
// projected) of a pod set up before, swapping each one atomically when
// its content changed. A missing required object leaves the old content
// in place and returns an error.
func (m *Manager) Refresh(ctx context.Context, pod *corev1.Pod, podIP, hostIP string) error {
	defer m.lock(string(pod.UID))()
	dir, err := m.PodDir(string(pod.UID))
	if err != nil {
		return err
	}
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.ConfigMap == nil && v.Secret == nil && v.DownwardAPI == nil && v.Projected == nil {
			continue
		}
		if err := checkName("volume name", v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		vdir := filepath.Join(dir, "volumes", v.Name)
		if _, err := os.Stat(vdir); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: not set up: %w", v.Name, err))
			continue
		}
		if err := m.writeContent(ctx, pod, v, vdir, podIP, hostIP); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Teardown unmounts every mount under the pod's directory and removes
// it. It is safe to call for a pod that has no directory. It refuses to
// remove anything while a mount remains, so it can never delete through
// a bind mount into host data.
func (m *Manager) Teardown(uid string) error {
	defer m.lock(uid)()
	m.mu.Lock()
	m.untrackLocked(uid)
	m.mu.Unlock()
	dir, err := m.PodDir(uid)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("pod %s: %w", uid, err)
	}
	return os.RemoveAll(dir)
}
