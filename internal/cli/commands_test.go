package cli

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/engine/api"
)

func TestParseCpArg(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ctr, p string
		bad    string
	}{
		{in: "web:/etc/hosts", ctr: "web", p: "/etc/hosts"},
		{in: "web:rel/x", ctr: "web", p: "rel/x"},
		{in: "/tmp/a:b", p: "/tmp/a:b"},
		{in: "./a:b", p: "./a:b"},
		{in: "local", p: "local"},
		{in: "-", p: "-"},
		{in: "web:", bad: `"web:": the path in the container is empty`},
		{in: ":/etc", bad: `":/etc": the container name is empty`},
		{in: "", bad: "cannot be empty"},
	} {
		a, err := parseCpArg(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil || a.container != tc.ctr || a.path != tc.p {
			t.Errorf("%q: got %+v, %v; want %q %q", tc.in, a, err, tc.ctr, tc.p)
		}
	}
}

func TestPlanCopy(t *testing.T) {
	for _, tc := range []struct {
		name             string
		srcName, logical string
		srcDir           bool
		dst              string
		exists, dstDir   bool
		want             copyPlan
		bad              string
	}{
		{name: "file into dir", srcName: "hosts", logical: "hosts", dst: "/out", exists: true, dstDir: true,
			want: copyPlan{dir: "/out", oldName: "hosts", newName: "hosts"}},
		{name: "file to new file", srcName: "hosts", logical: "hosts", dst: "/out/h2",
			want: copyPlan{dir: "/out", oldName: "hosts", newName: "h2"}},
		{name: "file over file", srcName: "hosts", logical: "hosts", dst: "/out/h2", exists: true,
			want: copyPlan{dir: "/out", oldName: "hosts", newName: "h2"}},
		{name: "file to missing dir", srcName: "hosts", logical: "hosts", dst: "/out/new/", bad: "does not exist"},
		{name: "dir over file", srcName: "etc", logical: "etc", srcDir: true, dst: "/out/f", exists: true, bad: "cannot copy a directory to a file"},
		{name: "dir into dir", srcName: "etc", logical: "etc", srcDir: true, dst: "/out", exists: true, dstDir: true,
			want: copyPlan{dir: "/out", oldName: "etc", newName: "etc"}},
		{name: "dir to new dir", srcName: "etc", logical: "etc", srcDir: true, dst: "/out/new/",
			want: copyPlan{dir: "/out", oldName: "etc", newName: "new"}},
		{name: "contents to new dir", srcName: ".", logical: ".", srcDir: true, dst: "/out/new",
			want: copyPlan{dir: "/out", oldName: ".", newName: "new"}},
		{name: "contents into dir", srcName: ".", logical: ".", srcDir: true, dst: "/out", exists: true, dstDir: true,
			want: copyPlan{dir: "/out", oldName: ".", newName: "."}},
		{name: "followed link keeps its name", srcName: "target", logical: "link", dst: "/out", exists: true, dstDir: true,
			want: copyPlan{dir: "/out", oldName: "target", newName: "link"}},
	} {
		got, err := planCopy(tc.srcName, tc.logical, tc.srcDir, tc.dst, tc.exists, tc.dstDir, splitLocal)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.bad)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestRebaseTar(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
		{Name: "./l", Typeflag: tar.TypeLink, Linkname: "./a"},
	} {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	tr := tar.NewReader(rebaseTar(bytes.NewReader(b.Bytes()), ".", "new"))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name+"|"+h.Linkname)
	}
	if want := []string{"new/|", "new/a|", "new/l|new/a"}; !reflect.DeepEqual(names, want) {
		t.Errorf("rebased %v, want %v", names, want)
	}
	for _, tc := range [][4]string{
		{"etc", "etc", "conf", "conf"}, {"etc/hosts", "etc", "conf", "conf/hosts"},
		{"etcetera/x", "etc", "conf", "etcetera/x"}, {"hosts", "hosts", "h2", "h2"},
	} {
		if got := rebaseName(tc[0], tc[1], tc[2]); got != tc[3] {
			t.Errorf("rebaseName(%q, %q, %q) = %q, want %q", tc[0], tc[1], tc[2], got, tc[3])
		}
	}
}

func TestPortLines(t *testing.T) {
	ports := map[string][]api.PortBinding{
		"443/tcp": {{HostIP: "0.0.0.0", HostPort: "8443"}},
		"80/tcp":  {{HostIP: "0.0.0.0", HostPort: "8080"}, {HostIP: "::", HostPort: "8080"}},
		"53/udp":  {{HostIP: "127.0.0.1", HostPort: "5353"}},
		"9/tcp":   nil, // exposed, not published
	}
	got, ok := portLines(ports, "")
	want := []string{"53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080", "443/tcp -> 0.0.0.0:8443"}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("all ports: %q, want %q", got, want)
	}
	if got, ok := portLines(ports, "80/tcp"); !ok || !reflect.DeepEqual(got, []string{"0.0.0.0:8080", "[::]:8080"}) {
		t.Errorf("80/tcp: %q", got)
	}
	if _, ok := portLines(ports, "9/tcp"); ok {
		t.Error("an unpublished port was found")
	}
	for in, want := range map[string]string{"80": "80/tcp", "53/UDP": "53/udp", "80/tcp": "80/tcp"} {
		if got, err := normalizePort(in); err != nil || got != want {
			t.Errorf("normalizePort(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"http", "0", "70000", "80/icmp", "-1"} {
		if _, err := normalizePort(in); err == nil {
			t.Errorf("normalizePort(%q) accepted", in)
		}
	}
}

func TestEventLine(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.Local)
	e := api.Event{Type: "container", Action: "start", Actor: api.EventActor{ID: "abc",
		Attributes: map[string]string{"name": "web", "image": "busybox"}}, Time: ts.Unix(), TimeNano: ts.UnixNano()}
	want := ts.Format("2006-01-02T15:04:05.000000000Z07:00") + " container start abc (image=busybox, name=web)"
	if got := eventLine(e); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	e.Actor.Attributes, e.TimeNano = nil, 0
	if got := eventLine(e); !strings.HasSuffix(got, ".000000000"+ts.Format("Z07:00")+" container start abc") {
		t.Errorf("no attributes: %q", got)
	}
	now := time.Unix(1000, 500)
	for in, want := range map[string]string{"10s": "990.000000500", "1700000000": "1700000000", "1.5": "1.5"} {
		if got, err := eventTime(in, now); err != nil || got != want {
			t.Errorf("eventTime(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := eventTime("yesterday", now); err == nil {
		t.Error("eventTime accepted yesterday")
	}
}

func TestDetachKeys(t *testing.T) {
	k, err := parseDetachKeys("ctrl-p,ctrl-q")
	if err != nil || !bytes.Equal(k, []byte{16, 17}) {
		t.Fatalf("ctrl-p,ctrl-q: %v %v", k, err)
	}
	if k, _ := parseDetachKeys("a,ctrl-@,ctrl-["); !bytes.Equal(k, []byte{'a', 0, 27}) {
		t.Errorf("a,ctrl-@,ctrl-[: %v", k)
	}
	for _, bad := range []string{"ctrl-1", "ab", "ctrl-", ""} {
		if _, err := parseDetachKeys(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	read := func(in string) (string, error) {
		var out bytes.Buffer
		// One byte per read, to cross the sequence over reads.
		_, err := io.Copy(&out, &escapeReader{r: &oneByte{strings.NewReader(in)}, keys: []byte{16, 17}})
		return out.String(), err
	}
	if out, err := read("hi\x10x\x10\x10\x11rest"); !errors.Is(err, errDetached) || out != "hi\x10x\x10" {
		t.Errorf("detach: %q, %v", out, err)
	}
	if out, err := read("plain\x10"); err != nil || out != "plain\x10" {
		t.Errorf("partial sequence at EOF: %q, %v", out, err)
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, &escapeReader{r: strings.NewReader("ab\x10\x11cd"), keys: []byte{16, 17}})
	if !errors.Is(err, errDetached) || out.String() != "ab" {
		t.Errorf("one read: %q, %v", out.String(), err)
	}
}

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func TestParseRestart(t *testing.T) {
	if rp, err := parseRestart("on-failure:3"); err != nil || rp.Name != "on-failure" || rp.MaximumRetryCount != 3 {
		t.Errorf("on-failure:3: %+v %v", rp, err)
	}
	for _, bad := range []string{"sometimes", "always:3", "on-failure:x", ""} {
		if _, err := parseRestart(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
