package volumes

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCheckRelPath: whatever path is accepted stays inside the volume
// and never lands on the atomic writer's reserved names.
func FuzzCheckRelPath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../x", "/etc", "a/../../b", "..data", "a/./b", "a//b", ".", "./..", "a/..", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkRelPath(p) != nil {
			return
		}
		root := "/vol"
		full := filepath.Join(root, p)
		if !strings.HasPrefix(full, root+"/") {
			t.Fatalf("accepted %q resolves to %q, outside %s", p, full, root)
		}
		if first, _, _ := strings.Cut(strings.TrimPrefix(full, root+"/"), "/"); strings.HasPrefix(first, "..") {
			t.Fatalf("accepted %q lands on a reserved name %q", p, first)
		}
	})
}
