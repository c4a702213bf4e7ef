package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

const dg = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func TestParse(t *testing.T) {
	tests := []struct {
		in, full, familiar, tag string
	}{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest", "latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "1.36"},
		{"library/busybox", "docker.io/library/busybox:latest", "busybox:latest", "latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest", "latest"},
		{"index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1", "v1"},
		{"user/app", "docker.io/user/app:latest", "user/app:latest", "latest"},
		{"localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t", "t"},
		{"localhost/a", "localhost/a:latest", "localhost/a:latest", "latest"},
		{"quay.io/x/y_z.w-1", "quay.io/x/y_z.w-1:latest", "quay.io/x/y_z.w-1:latest", "latest"},
		{"busybox@" + dg, "docker.io/library/busybox@" + dg, "busybox@" + dg, ""},
		{"busybox:t@" + dg, "docker.io/library/busybox:t@" + dg, "busybox:t@" + dg, "t"},
		{"[::1]:5000/a:b", "[::1]:5000/a:b", "[::1]:5000/a:b", "b"},
		{"a__b/c--d", "docker.io/a__b/c--d:latest", "a__b/c--d:latest", "latest"},
	}
	for _, tt := range tests {
		n, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := n.String(); got != tt.full {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.full)
		}
		if got := n.FamiliarString(); got != tt.familiar {
			t.Errorf("Parse(%q).FamiliarString() = %q, want %q", tt.in, got, tt.familiar)
		}
		if got := n.Tag(); got != tt.tag {
			t.Errorf("Parse(%q).Tag() = %q, want %q", tt.in, got, tt.tag)
		}
		// The full form parses back to itself.
		m, err := Parse(n.String())
		if err != nil || m != n {
			t.Errorf("Parse(%q) = %v, %v; want %v", n.String(), m, err, n)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "at least one component"},
		{"Foo", "must be lowercase"},
		{"user/Foo:t", "must be lowercase"},
		{"a:b:c", "invalid"},
		{"a/", "invalid repository name"},
		{"-a", "invalid repository name"},
		{"a..b", "invalid repository name"},
		{"a:", "invalid tag"},
		{"a:-x", "invalid tag"},
		{"a@sha256:zz", "invalid digest"},
		{"a@sha256:1234", "invalid digest"},
		{"@" + dg, "at least one component"},
		{strings.Repeat("a", 64+0)[:0] + "1111111111111111111111111111111111111111111111111111111111111111", "64-byte"},
		{strings.Repeat("a", 256), "more than 255"},
		{"a b", "invalid"},
		{"http://x/y", "invalid"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q): got no error, want one containing %q", tt.in, tt.want)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Parse(%q): got %v, want errdefs.ErrInvalidArgument", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "invalid reference format") {
			t.Errorf("Parse(%q): got %q, want it to contain %q", tt.in, err, tt.want)
		}
	}
	_, err := Parse("Foo")
	if want := `invalid reference format: repository name must be lowercase: "Foo": invalid argument`; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestParseNamedNoDefaultTag(t *testing.T) {
	n, err := ParseNamed("busybox")
	if err != nil {
		t.Fatal(err)
	}
	if n.Tag() != "" || n.String() != "docker.io/library/busybox" || n.FamiliarName() != "busybox" {
		t.Errorf("got %q tag %q, want docker.io/library/busybox with no tag", n.String(), n.Tag())
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a/b:t", "busybox@" + dg, "Foo", "a:b:c", "[::1]:5/x", "", "docker.io/library/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Parse(%q): error %v is not ErrInvalidArgument", s, err)
			}
			return
		}
		m, err := Parse(n.String())
		if err != nil || m != n {
			t.Fatalf("Parse(%q) round trip: got %v, %v; want %v", n.String(), m, err, n)
		}
		m, err = Parse(n.FamiliarString())
		if err != nil || m != n {
			t.Fatalf("Parse(%q) familiar round trip: got %v, %v; want %v", n.FamiliarString(), m, err, n)
		}
	})
}
