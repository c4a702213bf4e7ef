package volumes

import (
	"fmt"
	"io/fs"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// OverSizeLimit returns, for each disk emptyDir of pod whose content
// exceeds its sizeLimit, a message as the kubelet's eviction manager
// writes it. The agent evicts such a pod (phase Failed, reason Evicted);
// a medium Memory emptyDir needs no check, its tmpfs is that size.
// Usage is the sum of file sizes (du's apparent size).
func (m *Manager) OverSizeLimit(pod *corev1.Pod) ([]string, error) {
	dir, err := m.PodDir(string(pod.UID))
	if err != nil {
		return nil, err
	}
	var over []string
	for _, v := range pod.Spec.Volumes {
		ed := v.EmptyDir
		if ed == nil || ed.SizeLimit == nil || ed.Medium == corev1.StorageMediumMemory || checkName("volume name", v.Name) != nil {
			continue
		}
		used, err := diskUsage(filepath.Join(dir, "volumes", v.Name))
		if err != nil {
			return over, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		if used > ed.SizeLimit.Value() {
			over = append(over, fmt.Sprintf("Usage of EmptyDir volume %q exceeds the limit %q. ", v.Name, ed.SizeLimit.String()))
		}
	}
	return over, nil
}

func diskUsage(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if d == nil {
				return err
			}
			return nil // a file removed while walking
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total, err
}
