package volumes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth/berth/internal/cluster/agent/envvars"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// file is one file of a content volume.
type file struct {
	data []byte
	mode fs.FileMode
}

// payload maps paths inside the volume to their files.
type payload map[string]file

// add validates p and records the file, refusing a path given twice or a
// file that another path needs as a directory.
func (pl payload) add(p string, data []byte, mode int32) error {
	if err := checkRelPath(p); err != nil {
		return err
	}
	p = filepath.Clean(p)
	if _, dup := pl[p]; dup {
		return fmt.Errorf("path %q is given twice", p)
	}
	for q := range pl {
		if strings.HasPrefix(q, p+"/") || strings.HasPrefix(p, q+"/") {
			return fmt.Errorf("paths %q and %q conflict: one would be a file inside the other", p, q)
		}
	}
	if mode < 0 || mode > 0o777 {
		return fmt.Errorf("path %q: mode %#o is not between 0 and 0777", p, mode)
	}
	pl[p] = file{data: data, mode: fs.FileMode(mode)}
	return nil
}

const defaultMode int32 = 0o644

func modeOr(item, def *int32) int32 {
	switch {
	case item != nil:
		return *item
	case def != nil:
		return *def
	}
	return defaultMode
}

func optional(p *bool) bool { return p != nil && *p }

// keyData adds the keys of an object (all of them, or the listed items)
// to the payload. what names the object in errors.
func keyData(pl payload, what string, data map[string][]byte, items []corev1.KeyToPath, def *int32, opt bool) error {
	if len(items) == 0 {
		for _, k := range sortedKeys(data) {
			if err := pl.add(k, data[k], modeOr(nil, def)); err != nil {
				return fmt.Errorf("%s key %q: %w", what, k, err)
			}
		}
		return nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			if opt {
				continue
			}
			return fmt.Errorf("%s has no key %q (listed in items; mark the volume optional to allow this)", what, it.Key)
		}
		if err := pl.add(it.Path, d, modeOr(it.Mode, def)); err != nil {
			return fmt.Errorf("%s item %q: %w", what, it.Key, err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *Manager) configMapData(ctx context.Context, ns, name string, opt bool) (map[string][]byte, error) {
	if m.Src == nil {
		return nil, errors.New("no ConfigMap source configured")
	}
	cm, err := m.Src.ConfigMap(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && opt {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data, nil
}

func (m *Manager) secretData(ctx context.Context, ns, name string, opt bool) (map[string][]byte, error) {
	if m.Src == nil {
		return nil, errors.New("no Secret source configured")
	}
	s, err := m.Src.Secret(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && opt {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return s.Data, nil
}

// downward adds downwardAPI items to the payload.
func (m *Manager) downward(pl payload, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def *int32, podIP, hostIP string) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			switch it.FieldRef.FieldPath {
			// Whole maps are only for files: one key="value" per line.
			case "metadata.labels":
				val = formatMap(pod.Labels)
			case "metadata.annotations":
				val = formatMap(pod.Annotations)
			default:
				val, err = envvars.FieldValue(pod, it.FieldRef.FieldPath, podIP, hostIP)
			}
		case it.ResourceFieldRef != nil:
			val, err = envvars.ResourceValue(pod, nil, it.ResourceFieldRef, m.Allocatable)
		default:
			err = errors.New("sets neither fieldRef nor resourceFieldRef")
		}
		if err == nil {
			err = pl.add(it.Path, []byte(val), modeOr(it.Mode, def))
		}
		if err != nil {
			return fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
	}
	return nil
}

// formatMap renders labels or annotations as the kubelet does: sorted,
// key="quoted value", one per line.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// contentPayload computes what a content volume must hold now. An
// optional object that is absent contributes no files.
func (m *Manager) contentPayload(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, podIP, hostIP string) (payload, error) {
	pl := payload{}
	ns := pod.Namespace
	switch {
	case v.ConfigMap != nil:
		s := v.ConfigMap
		data, err := m.configMapData(ctx, ns, s.Name, optional(s.Optional))
		if err != nil {
			return nil, err
		}
		return pl, keyData(pl, "configmap "+ns+"/"+s.Name, data, s.Items, s.DefaultMode, optional(s.Optional))
	case v.Secret != nil:
		s := v.Secret
		data, err := m.secretData(ctx, ns, s.SecretName, optional(s.Optional))
		if err != nil {
			return nil, err
		}
		return pl, keyData(pl, "secret "+ns+"/"+s.SecretName, data, s.Items, s.DefaultMode, optional(s.Optional))
	case v.DownwardAPI != nil:
		return pl, m.downward(pl, pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode, podIP, hostIP)
	case v.Projected != nil:
		def := v.Projected.DefaultMode
		for i, src := range v.Projected.Sources {
			var err error
			switch {
			case src.ConfigMap != nil:
				s := src.ConfigMap
				var data map[string][]byte
				if data, err = m.configMapData(ctx, ns, s.Name, optional(s.Optional)); err == nil {
					err = keyData(pl, "configmap "+ns+"/"+s.Name, data, s.Items, def, optional(s.Optional))
				}
			case src.Secret != nil:
				s := src.Secret
				var data map[string][]byte
				if data, err = m.secretData(ctx, ns, s.Name, optional(s.Optional)); err == nil {
					err = keyData(pl, "secret "+ns+"/"+s.Name, data, s.Items, def, optional(s.Optional))
				}
			case src.DownwardAPI != nil:
				err = m.downward(pl, pod, src.DownwardAPI.Items, def, podIP, hostIP)
			case src.ServiceAccountToken != nil:
				err = m.token(ctx, pl, pod, src.ServiceAccountToken, def)
			default:
				err = fmt.Errorf("%w: only configMap, secret, downwardAPI and serviceAccountToken sources are supported", ErrUnsupported)
			}
			if err != nil {
				return nil, fmt.Errorf("projected source %d: %w", i, err)
			}
		}
		return pl, nil
	}
	return nil, fmt.Errorf("%w %s", ErrUnsupported, volumeType(v))
}

func (m *Manager) token(ctx context.Context, pl payload, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection, def *int32) error {
	ts, ok := m.Src.(TokenSource)
	if !ok {
		m.log().Warn("skipping projected serviceAccountToken: this node cannot issue service account tokens",
			"pod", pod.Namespace+"/"+pod.Name, "path", p.Path)
		return nil
	}
	tok, err := ts.ServiceAccountToken(ctx, pod, p)
	if err != nil {
		return fmt.Errorf("serviceAccountToken %q: %w", p.Path, err)
	}
	// The kubelet writes tokens 0600 unless a mode is given.
	mode := int32(0o600)
	if def != nil {
		mode = *def
	}
	return pl.add(p.Path, []byte(tok), mode)
}

// writeContent brings a content volume's directory up to date.
func (m *Manager) writeContent(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, dir, podIP, hostIP string) error {
	pl, err := m.contentPayload(ctx, pod, v, podIP, hostIP)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Secrets (and projected volumes, which often carry tokens) stay
	// in memory, as with the kubelet.
	if v.Secret != nil || v.Projected != nil {
		if err := ensureTmpfs(dir, 0, 0o755); err != nil {
			return err
		}
	}
	return writeAtomic(dir, pl, fsGroupOf(pod))
}

const dataLink = "..data"

// writeAtomic makes dir hold exactly pl, switching from the old content
// to the new with one rename of the "..data" symlink. It does nothing if
// the content is unchanged.
func writeAtomic(dir string, pl payload, fsGroup *int64) error {
	if same, _ := matches(dir, pl, fsGroup); same {
		return nil
	}
	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := writeTree(tsDir, pl, fsGroup); err != nil {
		os.RemoveAll(tsDir)
		return err
	}
	tmp := filepath.Join(dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		os.RemoveAll(tsDir)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		os.Remove(tmp)
		os.RemoveAll(tsDir)
		return err
	}
	// User-visible names: one symlink per top-level entry, through
	// ..data so that they follow each swap.
	top := map[string]bool{}
	for p := range pl {
		first, _, _ := strings.Cut(p, "/")
		top[first] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		target := filepath.Join(dataLink, name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == dataLink || name == filepath.Base(tsDir):
		case strings.HasPrefix(name, ".."):
			// Old timestamped directories, including the one just
			// replaced (old); a reader that opened a file keeps it.
			os.RemoveAll(filepath.Join(dir, name))
		case !top[name] && e.Type()&fs.ModeSymlink != 0:
			os.Remove(filepath.Join(dir, name))
		}
	}
	return nil
}

func writeTree(root string, pl payload, fsGroup *int64) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	for _, p := range sortedKeys(pl) {
		f := pl[p]
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, f.data, 0o600); err != nil {
			return err
		}
		mode := f.mode
		if fsGroup != nil {
			// As the kubelet: the pod's fsGroup owns the files and can
			// read them, whatever mode was asked for.
			if err := os.Chown(full, -1, int(*fsGroup)); err != nil {
				return err
			}
			mode |= 0o440
		}
		if err := os.Chmod(full, mode); err != nil {
			return err
		}
	}
	return nil
}

// matches reports whether dir's current ..data holds exactly pl.
func matches(dir string, pl payload, fsGroup *int64) (bool, error) {
	root := filepath.Join(dir, dataLink)
	if _, err := os.Stat(root); err != nil {
		return false, err
	}
	seen := 0
	same := true
	err := filepath.WalkDir(root+"/", func(path string, d fs.DirEntry, err error) error {
		if err != nil || !same {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, ok := pl[rel]
		if !ok {
			same = false
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := f.mode
		if fsGroup != nil {
			want |= 0o440
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != want || !bytes.Equal(data, f.data) {
			same = false
		}
		seen++
		return nil
	})
	return same && err == nil && seen == len(pl), err
}
