package volumes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/berth/berth/internal/cluster/kube"
)

// Claims reads what a persistentVolumeClaim volume resolves through: the
// claim (in the pod's namespace) and the volume bound to it.
type Claims interface {
	PersistentVolumeClaim(ctx context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error)
	PersistentVolume(ctx context.Context, name string) (*corev1.PersistentVolume, error)
}

// ErrClaimNotBound marks a claim that has no volume yet: the pod waits,
// as with the kubelet, until the provisioner or binder gives it one.
var ErrClaimNotBound = errors.New("claim is not bound to a volume yet")

// setupClaim resolves a persistentVolumeClaim volume to the host path of
// its volume on this node: claim → bound volume → spec.local or
// spec.hostPath. The directory of a local-path volume (provisioned by
// berth) is created under VolumesDir; other local volumes must exist, as
// Kubernetes requires.
func (m *Manager) setupClaim(ctx context.Context, pod *corev1.Pod, src *corev1.PersistentVolumeClaimVolumeSource) (string, error) {
	if m.Claims == nil {
		return "", fmt.Errorf("%w persistentVolumeClaim (the agent has no claim source)", ErrUnsupported)
	}
	pvc, err := m.Claims.PersistentVolumeClaim(ctx, pod.Namespace, src.ClaimName)
	if err != nil {
		return "", fmt.Errorf("persistentvolumeclaim %q: %w", src.ClaimName, err)
	}
	if pvc.DeletionTimestamp != nil {
		return "", fmt.Errorf("persistentvolumeclaim %q is being deleted", src.ClaimName)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
		return "", fmt.Errorf("persistentvolumeclaim %q (phase %s): %w", src.ClaimName, pvc.Status.Phase, ErrClaimNotBound)
	}
	pv, err := m.Claims.PersistentVolume(ctx, pvc.Spec.VolumeName)
	if err != nil {
		return "", fmt.Errorf("persistentvolumeclaim %q: volume %q: %w", src.ClaimName, pvc.Spec.VolumeName, err)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name || (ref.UID != "" && ref.UID != pvc.UID) {
		return "", fmt.Errorf("persistentvolumeclaim %q: volume %q is not bound to it: %w", src.ClaimName, pv.Name, ErrClaimNotBound)
	}
	if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
		sel, err := nodeaffinity.NewNodeSelector(na.Required)
		node := &corev1.Node{}
		node.Name, node.Labels = m.NodeName, m.NodeLabels
		if err != nil || !sel.Match(node) {
			return "", fmt.Errorf("persistentvolumeclaim %q: volume %q is not usable on node %q (its nodeAffinity says otherwise)", src.ClaimName, pv.Name, m.NodeName)
		}
	}
	switch {
	case pv.Spec.Local != nil:
		p := pv.Spec.Local.Path
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("volume %q: local path %q must be absolute", pv.Name, p)
		}
		p = filepath.Clean(p)
		if pv.Annotations[kube.AnnProvisionedBy] == kube.LocalPathProvisioner {
			return m.ensureLocalPath(pv.Name, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("volume %q: local path %s: %w", pv.Name, p, err)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("volume %q: local path %s is not a directory", pv.Name, p)
		}
		return p, nil
	case pv.Spec.HostPath != nil:
		return checkHostPath(pv.Spec.HostPath)
	}
	return "", fmt.Errorf("%w: volume %q is neither local nor hostPath", ErrUnsupported, pv.Name)
}

// ensureLocalPath creates the directory of a local-path volume: it must
// be VolumesDir/<volume name>, nothing else, so that a forged volume
// object cannot make the agent create (or later remove) other paths.
func (m *Manager) ensureLocalPath(name, p string) (string, error) {
	want, err := m.localPath(name)
	if err != nil {
		return "", err
	}
	if p != want {
		return "", fmt.Errorf("volume %q: local-path volumes of this node live in %s (--volumes-dir), not at %s", name, want, p)
	}
	if err := m.record(name); err != nil {
		return "", err
	}
	if err := os.MkdirAll(m.VolumesDir, 0o711); err != nil {
		return "", err
	}
	if err := os.Mkdir(p, 0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("volume %q: %s is not a directory", name, p)
	}
	// World-writable like the kubelet's emptyDir (and Rancher's
	// local-path volumes): a container running as any user can write.
	return p, os.Chmod(p, 0o777)
}

func (m *Manager) localPath(name string) (string, error) {
	if err := checkName("volume name", name); err != nil {
		return "", err
	}
	if m.VolumesDir == "" || !filepath.IsAbs(m.VolumesDir) || filepath.Clean(m.VolumesDir) == "/" {
		return "", fmt.Errorf("--volumes-dir %q: want an absolute directory other than /", m.VolumesDir)
	}
	return filepath.Join(filepath.Clean(m.VolumesDir), name), nil
}

// record notes in RecordDir that this agent made the volume's directory:
// only recorded directories are ever removed, so another cluster's agent
// sharing the host (and --volumes-dir) never loses its volumes to this one.
func (m *Manager) record(name string) error {
	if m.RecordDir == "" {
		return nil
	}
	if err := os.MkdirAll(m.RecordDir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(m.RecordDir, name), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// LocalVolumes lists the local-path volumes this agent created (see
// RecordDir) and has not removed.
func (m *Manager) LocalVolumes() ([]string, error) {
	if m.RecordDir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(m.RecordDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && checkName("volume name", e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// RemoveLocalVolume deletes the directory of a local-path volume whose
// object is gone. It refuses while a pod set up by this manager uses it,
// while anything is mounted at or below it, and for anything but a real
// directory directly under VolumesDir.
func (m *Manager) RemoveLocalVolume(name string) error {
	p, err := m.localPath(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	users := len(m.inUse[p])
	m.mu.Unlock()
	if users > 0 {
		return fmt.Errorf("volume %s: still used by %d pod(s) on this node", name, users)
	}
	fi, err := os.Lstat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("volume %s: %s is not a directory; left alone", name, p)
		}
		if left, err := mountedBelow(p); err != nil {
			return err
		} else if len(left) > 0 {
			return fmt.Errorf("volume %s: mounted at %v; left alone", name, left)
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	if m.RecordDir != "" {
		if err := os.Remove(filepath.Join(m.RecordDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// track records which pods use which claim paths (for RemoveLocalVolume).
func (m *Manager) track(uid string, paths []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.untrackLocked(uid)
	for _, p := range paths {
		if m.inUse == nil {
			m.inUse = map[string]map[string]bool{}
		}
		if m.inUse[p] == nil {
			m.inUse[p] = map[string]bool{}
		}
		m.inUse[p][uid] = true
	}
}

func (m *Manager) untrackLocked(uid string) {
	for p, users := range m.inUse {
		delete(users, uid)
		if len(users) == 0 {
			delete(m.inUse, p)
		}
	}
}
