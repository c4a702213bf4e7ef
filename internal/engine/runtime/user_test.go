package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func rootfsWith(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const passwd = "root:x:0:0:root:/root:/bin/sh\n# comment\nwww:x:33:33::/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\nbad:x:notanumber:1::/:/bin/sh\n"
const group = "root:x:0:\nwww:x:33:\nbob:x:1000:\nwheel:x:10:bob,alice\naudio:x:29:bob\nstaff:x:50:\n"

func TestResolveUser(t *testing.T) {
	root := rootfsWith(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	tests := []struct {
		in      string
		uid     uint32
		gid     uint32
		groups  []uint32
		wantErr bool
	}{
		{"", 0, 0, nil, false},
		{"root", 0, 0, nil, false},
		{"bob", 1000, 1000, []uint32{10, 29}, false},
		{"1000", 1000, 1000, []uint32{10, 29}, false},
		{"4242", 4242, 0, nil, false},
		{"4242:4343", 4242, 4343, nil, false},
		{"bob:staff", 1000, 50, nil, false},
		{"www:0", 33, 0, nil, false},
		{"33:wheel", 33, 10, nil, false},
		{"nobody", 0, 0, nil, true},
		{"bob:nogroup", 0, 0, nil, true},
		{"bad", 0, 0, nil, true},
		{":1", 0, 0, nil, true},
		{"bob:", 0, 0, nil, true},
	}
	for _, tt := range tests {
		uid, gid, groups, err := ResolveUser(root, tt.in)
		if tt.wantErr {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("ResolveUser(%q): got %v, want ErrInvalidArgument", tt.in, err)
			}
			continue
		}
		if err != nil || uid != tt.uid || gid != tt.gid || !slices.Equal(groups, tt.groups) {
			t.Errorf("ResolveUser(%q) = %d, %d, %v, %v; want %d, %d, %v", tt.in, uid, gid, groups, err, tt.uid, tt.gid, tt.groups)
		}
	}
	// The error names the user.
	if _, _, _, err := ResolveUser(root, "nobody"); err == nil || !strings.Contains(err.Error(), `"nobody"`) {
		t.Errorf("error %v does not name the user", err)
	}
}

func TestResolveUserDoesNotEscape(t *testing.T) {
	// The host's /etc/passwd has "root"; a rootfs whose /etc/passwd is a
	// symlink to an absolute or ../ path must still be read inside it.
	outside := rootfsWith(t, map[string]string{"passwd": "evil:x:0:0::/:/bin/sh\n"})
	for _, target := range []string{"/etc/real-passwd", "../../../../../../../" + outside + "/passwd", filepath.Join(outside, "passwd")} {
		root := rootfsWith(t, map[string]string{"etc/real-passwd": "inside:x:7:7::/:/bin/sh\n"})
		if err := os.Symlink(target, filepath.Join(root, "etc/passwd")); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := ResolveUser(root, "evil"); err == nil {
			t.Errorf("symlink to %q: resolved a user from outside the rootfs", target)
		}
		if target == "/etc/real-passwd" {
			if uid, _, _, err := ResolveUser(root, "inside"); err != nil || uid != 7 {
				t.Errorf("absolute in-root symlink: got %d, %v; want uid 7", uid, err)
			}
		}
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add(passwd, group, "bob")
	f.Add("a:b:c", "::::", "a:b")
	f.Add("x:x:1:1\n", "g:x:1:x,x,x", "1:g")
	f.Fuzz(func(t *testing.T, pw, gr, user string) {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(pw), 0o644)
		os.WriteFile(filepath.Join(root, "etc/group"), []byte(gr), 0o644)
		_, _, _, err := ResolveUser(root, user)
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("ResolveUser(%q): unclassified error %v", user, err)
		}
	})
}

func TestLookPath(t *testing.T) {
	root := t.TempDir()
	mk := func(p string, mode os.FileMode) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("bin/tool", 0o755)
	mk("bin/data", 0o644)
	mk("app/run.sh", 0o755)
	os.MkdirAll(filepath.Join(root, "bin/dir"), 0o755)
	os.Symlink("/bin/tool", filepath.Join(root, "usr-tool"))       // absolute, resolves in root
	os.Symlink("/usr/bin/env", filepath.Join(root, "bin/hostenv")) // exists on host, not in root
	os.Symlink("../../../../../../usr/bin/env", filepath.Join(root, "bin/dotdot"))
	tests := []struct {
		cwd, path, argv0 string
		want             error
	}{
		{"/", "/bin", "tool", nil},
		{"/", "/bin", "/bin/tool", nil},
		{"/app", "/bin", "./run.sh", nil},
		{"/", "/bin", "usr-tool", errdefs.ErrCommandNotFound},
		{"/", "/bin", "/usr-tool", nil},
		{"/", "/bin", "missing", errdefs.ErrCommandNotFound},
		{"/", "/bin", "/nope/x", errdefs.ErrCommandNotFound},
		{"/", "/bin", "data", errdefs.ErrCommandNotExecutable},
		{"/", "/bin", "/bin/dir", errdefs.ErrCommandNotExecutable},
		{"/", "/bin", "hostenv", errdefs.ErrCommandNotFound},
		{"/", "/bin", "dotdot", errdefs.ErrCommandNotFound},
		{"/", "", "tool", nil}, // empty PATH means DefaultPath, which has /bin
	}
	for _, tt := range tests {
		err := LookPath(root, tt.cwd, tt.path, tt.argv0)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("LookPath(cwd=%s PATH=%s %s) = %v, want %v", tt.cwd, tt.path, tt.argv0, err, tt.want)
		}
	}
}
