package volume

import (
	"errors"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestParseVolumeSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want MountSpec
	}{
		{"/data", MountSpec{Type: TypeVolume, Target: "/data"}},
		{"/data/", MountSpec{Type: TypeVolume, Target: "/data"}},
		{"db:/var/lib/db", MountSpec{Type: TypeVolume, Source: "db", Target: "/var/lib/db"}},
		{"db:/var/lib/db:ro", MountSpec{Type: TypeVolume, Source: "db", Target: "/var/lib/db", ReadOnly: true, Mode: "ro"}},
		{"db:/x:rw,nocopy", MountSpec{Type: TypeVolume, Source: "db", Target: "/x", NoCopy: true, Mode: "rw,nocopy"}},
		{"/srv:/srv", MountSpec{Type: TypeBind, Source: "/srv", Target: "/srv", CreateHostPath: true}},
		{"/srv/:/srv:ro", MountSpec{Type: TypeBind, Source: "/srv", Target: "/srv", CreateHostPath: true, ReadOnly: true, Mode: "ro"}},
		{"/srv:/srv:ro,rshared", MountSpec{Type: TypeBind, Source: "/srv", Target: "/srv", CreateHostPath: true, ReadOnly: true, Propagation: "rshared", Mode: "ro,rshared"}},
		{"/srv:/srv:z", MountSpec{Type: TypeBind, Source: "/srv", Target: "/srv", CreateHostPath: true, Mode: "z"}},
		{"my.vol_1-a:/a//b/./c", MountSpec{Type: TypeVolume, Source: "my.vol_1-a", Target: "/a/b/c"}},
	} {
		got, err := ParseVolumeSpec(tc.in)
		if err != nil {
			t.Errorf("ParseVolumeSpec(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseVolumeSpec(%q):\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseVolumeSpecErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"data", "mount path must be absolute"},
		{"db:data", "mount path must be absolute"},
		{"/a::/b", "empty section between colons"},
		{":/b", "empty section between colons"},
		{"db:/x:", "empty section between colons"},
		{"a:/b:ro:extra", "want [SOURCE:]TARGET[:MODE]"},
		{"db:/", "destination can't be '/'"},
		{"/srv:/", "destination can't be '/'"},
		{"db:/x/../etc", "must not contain '..'"},
		{"db:/x:rx", "invalid mode: rx"},
		{"db:/x:ro,rw", "given twice"},
		{"db:/x:rshared", "propagation applies to bind mounts only"},
		{"/srv:/x:nocopy", "nocopy applies to volumes only"},
		{"./data:/x", "includes invalid characters for a local volume name"},
		{"x:/y", "too short"},
		{"bad$name:/y", "includes invalid characters"},
	} {
		_, err := ParseVolumeSpec(tc.in)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseVolumeSpec(%q): got %v, want ErrInvalidArgument", tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseVolumeSpec(%q): got %q, want it to say %q", tc.in, err, tc.want)
		}
		if tc.in != "" && !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseVolumeSpec(%q): error %q does not name the input", tc.in, err)
		}
	}
}

func TestParseMountSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want MountSpec
	}{
		{"type=volume,source=db,target=/data", MountSpec{Type: TypeVolume, Source: "db", Target: "/data"}},
		{"target=/data", MountSpec{Type: TypeVolume, Target: "/data"}},
		{"src=db,dst=/data,ro", MountSpec{Type: TypeVolume, Source: "db", Target: "/data", ReadOnly: true}},
		{"source=db,destination=/data,readonly=false", MountSpec{Type: TypeVolume, Source: "db", Target: "/data"}},
		{"source=db,target=/data,readonly=1,volume-nocopy", MountSpec{Type: TypeVolume, Source: "db", Target: "/data", ReadOnly: true, NoCopy: true}},
		{"source=db,target=/d,volume-label=a=b,volume-label=c=d=e,volume-driver=local",
			MountSpec{Type: TypeVolume, Source: "db", Target: "/d", VolumeLabels: map[string]string{"a": "b", "c": "d=e"}}},
		{"type=bind,source=/srv,target=/srv", MountSpec{Type: TypeBind, Source: "/srv", Target: "/srv"}},
		{"type=bind,src=/srv,dst=/srv,bind-propagation=rslave,bind-nonrecursive,consistency=cached",
			MountSpec{Type: TypeBind, Source: "/srv", Target: "/srv", Propagation: "rslave", NonRecursive: true}},
		{`"type=bind","source=/a,b",target=/c`, MountSpec{Type: TypeBind, Source: "/a,b", Target: "/c"}},
		{"type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770", MountSpec{Type: TypeTmpfs, Target: "/run", TmpfsSize: 64 << 20, TmpfsMode: 0o1770}},
		{"TYPE=TMPFS,dst=/t", MountSpec{Type: TypeTmpfs, Target: "/t"}},
	} {
		got, err := ParseMountSpec(tc.in)
		if err != nil {
			t.Errorf("ParseMountSpec(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseMountSpec(%q):\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseMountSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		class    error
	}{
		{"", "key=value", errdefs.ErrInvalidArgument},
		{"type=volume", "field Target must not be empty", errdefs.ErrInvalidArgument},
		{"type=bind,target=/x", "field Source must not be empty", errdefs.ErrInvalidArgument},
		{"type=bind,source=rel,target=/x", "must be an absolute path", errdefs.ErrInvalidArgument},
		{"type=tmpfs,source=x,target=/x", "field Source must not be specified", errdefs.ErrInvalidArgument},
		{"type=nfs,target=/x", `mount type "nfs"`, errdefs.ErrInvalidArgument},
		{"type=volume,target=/x,color=red", "unexpected key 'color'", errdefs.ErrInvalidArgument},
		{"type=volume,target", "must be a key=value pair", errdefs.ErrInvalidArgument},
		{"target=/x,target=/y", "given twice", errdefs.ErrInvalidArgument},
		{"target=/x,readonly=maybe", "want true or false", errdefs.ErrInvalidArgument},
		{"type=bind,source=/a,target=/x,volume-nocopy", "cannot mix 'volume-*' options", errdefs.ErrInvalidArgument},
		{"type=volume,target=/x,bind-propagation=shared", "cannot mix 'bind-*' options", errdefs.ErrInvalidArgument},
		{"type=volume,target=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options", errdefs.ErrInvalidArgument},
		{"type=tmpfs,target=/x,volume-label=a=b", "cannot mix 'volume-*' options", errdefs.ErrInvalidArgument},
		{"type=bind,source=/a,target=/x,bind-propagation=sideways", "invalid value for bind-propagation", errdefs.ErrInvalidArgument},
		{"type=tmpfs,target=/x,tmpfs-size=lots", "invalid value for tmpfs-size", errdefs.ErrInvalidArgument},
		{"type=tmpfs,target=/x,tmpfs-mode=999", "invalid value for tmpfs-mode", errdefs.ErrInvalidArgument},
		{"target=/x,volume-label=novalue", "want KEY=VALUE", errdefs.ErrInvalidArgument},
		{"target=/x,volume-driver=nfs", "local", errdefs.ErrNotImplemented},
		{"target=/", "destination can't be '/'", errdefs.ErrInvalidArgument},
		{`target="/x`, "key=value", errdefs.ErrInvalidArgument},
	} {
		_, err := ParseMountSpec(tc.in)
		if !errors.Is(err, tc.class) {
			t.Errorf("ParseMountSpec(%q): got %v, want %v", tc.in, err, tc.class)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseMountSpec(%q): got %q, want it to say %q", tc.in, err, tc.want)
		}
	}
}

func TestParseTmpfs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want MountSpec
	}{
		{"/run", MountSpec{Type: TypeTmpfs, Target: "/run"}},
		{"/run:size=64m", MountSpec{Type: TypeTmpfs, Target: "/run", TmpfsSize: 64 << 20}},
		{"/run:rw,size=1g,mode=1770,exec,uid=1000", MountSpec{Type: TypeTmpfs, Target: "/run", TmpfsSize: 1 << 30, TmpfsMode: 0o1770, TmpfsFlags: []string{"exec", "uid=1000"}}},
		{"/ro:ro,noatime", MountSpec{Type: TypeTmpfs, Target: "/ro", ReadOnly: true, TmpfsFlags: []string{"noatime"}}},
	} {
		got, err := ParseTmpfs(tc.in)
		if err != nil {
			t.Errorf("ParseTmpfs(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseTmpfs(%q):\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"run", "must be absolute"},
		{"/", "destination can't be '/'"},
		{"/run:size=big", "invalid size"},
		{"/run:size=0", "invalid size"},
		{"/run:mode=8", "invalid mode"},
		{"/run:uid=-1", "invalid uid"},
		{"/run:bogus", "unknown option"},
		{"/run:foo=bar", "unknown option"},
	} {
		_, err := ParseTmpfs(tc.in)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTmpfs(%q): got %v, want ErrInvalidArgument saying %q", tc.in, err, tc.want)
		}
	}
}

func TestValidateStructured(t *testing.T) {
	// Specs built from API structures go through Validate alone.
	for _, tc := range []struct {
		m    MountSpec
		want string
	}{
		{MountSpec{Type: "volume", Target: "rel"}, "must be absolute"},
		{MountSpec{Type: "bind", Source: "/a", Target: "/b\x00c"}, "NUL"},
		{MountSpec{Type: "tmpfs", Target: "/t", TmpfsFlags: []string{"uid=x"}}, "invalid option"},
		{MountSpec{Type: "tmpfs", Target: "/t", TmpfsMode: 0o17777}, "invalid mode"},
		{MountSpec{Type: "bind", Source: "/a", Target: "/b", Propagation: "up"}, "invalid propagation"},
		{MountSpec{Type: "", Target: "/b"}, "is not one of"},
	} {
		if _, err := tc.m.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v): got %v, want ErrInvalidArgument saying %q", tc.m, err, tc.want)
		}
	}
	ok := MountSpec{Type: "tmpfs", Target: "/t", TmpfsFlags: []string{"uid=1", "noexec"}}
	if _, err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v): %v", ok, err)
	}
}

// checkParsed holds for every spec a parser accepts.
func checkParsed(t *testing.T, in string, m MountSpec, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Fatalf("%q: error %v has no class", in, err)
		}
		return
	}
	if !strings.HasPrefix(m.Target, "/") || m.Target == "/" || path.Clean(m.Target) != m.Target || slices.Contains(strings.Split(m.Target, "/"), "..") {
		t.Fatalf("%q: accepted target %q", in, m.Target)
	}
	if m.Type == TypeBind && (!strings.HasPrefix(m.Source, "/") || path.Clean(m.Source) != m.Source) {
		t.Fatalf("%q: accepted bind source %q", in, m.Source)
	}
	if m.Type == TypeVolume && m.Source != "" && ValidateName(m.Source) != nil {
		t.Fatalf("%q: accepted volume name %q", in, m.Source)
	}
	again, err := m.Validate()
	if err != nil || !reflect.DeepEqual(again, m) {
		t.Fatalf("%q: Validate of the parsed spec: got %+v, %v, want %+v", in, again, err, m)
	}
}

func FuzzParseVolumeSpec(f *testing.F) {
	for _, s := range []string{"/data", "db:/x:ro", "/a:/b:rshared,ro", "a::b", "x:/y", "./d:/e", "db:/x/../y",
		"db:/x:nocopy,z", "/:/:/", "\x00:/a", "db:/a/.", "é:/x", "/..0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseVolumeSpec(s)
		checkParsed(t, s, m, err)
	})
}

func FuzzParseMountSpec(f *testing.F) {
	for _, s := range []string{"type=volume,src=db,dst=/d", "type=bind,source=/a,target=/b,bind-propagation=rshared",
		"type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700", `"source=/a,b",target=/c`, "target=/x,volume-label=a=b",
		"type=bind,target=/x", "ro,target=/x", `"unterminated`, "target=/x,tmpfs-size=1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMountSpec(s)
		checkParsed(t, s, m, err)
	})
}

func FuzzParseTmpfs(f *testing.F) {
	for _, s := range []string{"/run", "/run:size=64m,mode=1777", "/t:uid=0,gid=0,noexec", "/t:size=", "/:x", "r:ro", "/0.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseTmpfs(s)
		checkParsed(t, s, m, err)
	})
}
