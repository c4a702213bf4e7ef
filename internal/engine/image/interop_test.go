package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestSaveLoadsInPodman checks Save's output against an independent
// reader: podman (containers/image), in a throwaway storage root.
func TestSaveLoadsInPodman(t *testing.T) {
	needRoot(t)
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("skipping: podman not installed")
	}
	dir := testImages(t)
	s := newStore(t)
	load(t, s, filepath.Join(dir, "busybox-docker.tar"))
	load(t, s, filepath.Join(dir, "layered.tar"))
	out := filepath.Join(t.TempDir(), "saved.tar")
	f, _ := os.Create(out)
	if err := s.Save(f, []string{"busybox", "layered:latest"}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tmp := t.TempDir()
	args := []string{"--root", filepath.Join(tmp, "root"), "--runroot", filepath.Join(tmp, "run"), "--storage-driver", "vfs"}
	if b, err := exec.Command(podman, append(args, "load", "-i", out)...).CombinedOutput(); err != nil {
		t.Fatalf("podman load: %v\n%s", err, b)
	}
	b, err := exec.Command(podman, append(args, "images", "--no-trunc", "--format", "{{.ID}}")...).Output()
	if err != nil {
		t.Fatalf("podman images: %v", err)
	}
	got := strings.Fields(strings.ReplaceAll(string(b), "sha256:", ""))
	sort.Strings(got)
	var want []string
	for _, img := range s.List() {
		want = append(want, strings.TrimPrefix(img.ID, "sha256:"))
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("podman loaded image IDs %v, want %v", got, want)
	}
}
