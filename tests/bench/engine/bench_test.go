package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want summary
		ok   bool
	}{
		{"empty", nil, summary{}, false},
		{"one", []float64{5}, summary{N: 1, Median: 5, Min: 5, Max: 5}, true},
		{"odd unsorted", []float64{9, 1, 5}, summary{N: 3, Median: 5, Min: 1, Max: 9}, true},
		{"even takes mean of middle two", []float64{4, 1, 3, 10}, summary{N: 4, Median: 3.5, Min: 1, Max: 10}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got, ok := summarize(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("summarize(%v) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("summarize changed its input: got %v, want %v", tt.in, in)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b float64
		want string
	}{
		{30, 20, "1.50×"},
		{600, 20, "30×"},
		{1, 0, "–"},
	}
	for _, tt := range tests {
		if got := ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		in      string
		want    procStat
		wantErr bool
	}{
		{"1234 (berth-shim) S 1 1234 1234 0 -1", procStat{Comm: "berth-shim", PPID: 1}, false},
		{"77 (a) b (c)) R 42 77", procStat{Comm: "a) b (c)", PPID: 42}, false},
		{"77 (x y) S 0", procStat{Comm: "x y", PPID: 0}, false},
		{"77 no parens S 1", procStat{}, true},
		{"77 (x) S", procStat{}, true},
		{"77 (x) S -3", procStat{}, true},
		{"77 (x) S pp", procStat{}, true},
		{")(", procStat{}, true},
	}
	for _, tt := range tests {
		got, err := parseStat(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{"1 (init) S 0 1 1", "77 (a) b (c)) R 42 77", ")(", "", "1 ()"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseStat(s)
		if err != nil {
			return
		}
		if st.PPID < 0 {
			t.Errorf("parseStat(%q) = ppid %d, want ≥ 0", s, st.PPID)
		}
		if !strings.Contains(s, "("+st.Comm+")") {
			t.Errorf("parseStat(%q) = comm %q, not found in parentheses", s, st.Comm)
		}
	})
}

func TestParseKiB(t *testing.T) {
	status := "Name:\tberth-shim\nVmPeak:\t  1000 kB\nVmRSS:\t    3712 kB\nThreads:\t5\n"
	tests := []struct {
		text, key string
		want      int64
		wantErr   bool
	}{
		{status, "VmRSS", 3712, false},
		{status, "VmPeak", 1000, false},
		{status, "VmSwap", 0, true},
		{"VmRSS:\t12 MB\n", "VmRSS", 0, true},
		{"VmRSS:\t-1 kB\n", "VmRSS", 0, true},
		{"Pss:   88 kB\n", "Pss", 88, false},
	}
	for _, tt := range tests {
		got, err := parseKiB(tt.text, tt.key)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseKiB(%q, %q) = %d, %v; want %d, error %v", tt.text, tt.key, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRSSOfSelf(t *testing.T) {
	got, err := rssKiB(os.Getpid())
	if err != nil {
		t.Fatalf("rssKiB(self): %v", err)
	}
	if got <= 0 {
		t.Errorf("rssKiB(self) = %d, want > 0", got)
	}
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatalf("readStat(self): %v", err)
	}
	if st.PPID != os.Getppid() {
		t.Errorf("readStat(self).PPID = %d, want %d", st.PPID, os.Getppid())
	}
}

func TestUnescapeMount(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/var/tmp/x", "/var/tmp/x"},
		{`/a\040b`, "/a b"},
		{`/a\134b`, `/a\b`},
		{`/trail\04`, `/trail\04`},
	}
	for _, tt := range tests {
		if got := unescapeMount(tt.in); got != tt.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// tarEntry is one member of a test tar.
type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o755, Linkname: e.link, Size: int64(len(e.body))}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// writeSaveArchive writes a docker-save archive with the given layers.
func writeSaveArchive(t *testing.T, layers ...[]byte) string {
	t.Helper()
	var names []string
	entries := []tarEntry{{name: "cfg.json", body: "{}"}}
	for i, l := range layers {
		n := filepath.Join("l"+string(rune('0'+i)), "layer.tar")
		names = append(names, n)
		entries = append(entries, tarEntry{name: n, body: string(l)})
	}
	man, _ := json.Marshal([]saveManifest{{Config: "cfg.json", RepoTags: []string{"busybox:latest"}, Layers: names}})
	entries = append(entries, tarEntry{name: "manifest.json", body: string(man)})
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := os.WriteFile(p, makeTar(t, entries), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExtractSaveArchive(t *testing.T) {
	base := makeTar(t, []tarEntry{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/busybox", body: "BB"},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/true", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "etc/gone", body: "x"},
		{name: "var/cache/a", body: "a"},
	})
	top := gz(t, makeTar(t, []tarEntry{
		{name: "etc/.wh.gone"},
		{name: "var/cache/.wh..wh..opq"},
		{name: "var/cache/b", body: "b"},
	}))
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := extractSaveArchive(writeSaveArchive(t, base, top), dir); err != nil {
		t.Fatalf("extractSaveArchive: %v", err)
	}
	checks := []struct {
		path string
		want string // "" means must not exist
	}{
		{"bin/busybox", "BB"},
		{"bin/sh", "BB"},
		{"bin/true", "BB"},
		{"etc/gone", ""},
		{"var/cache/a", ""},
		{"var/cache/b", "b"},
	}
	for _, c := range checks {
		b, err := os.ReadFile(filepath.Join(dir, c.path))
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%s exists, want it removed by a whiteout", c.path)
		case c.want != "" && err != nil:
			t.Errorf("%s: %v, want content %q", c.path, err, c.want)
		case c.want != "" && string(b) != c.want:
			t.Errorf("%s = %q, want %q", c.path, b, c.want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh link = %q, %v; want \"busybox\"", l, err)
	}
}

func TestExtractSaveArchiveRefusesEscapes(t *testing.T) {
	// The symlink points at a directory beside the rootfs (absolute), so a
	// regression writes into the test's temp dir, never the host's root.
	tests := []struct {
		name  string
		layer func(parent string) []tarEntry
	}{
		{"dot-dot", func(string) []tarEntry { return []tarEntry{{name: "../evil", body: "x"}} }},
		{"dot-dot inside", func(string) []tarEntry { return []tarEntry{{name: "a/../../evil", body: "x"}} }},
		{"through symlink", func(parent string) []tarEntry {
			return []tarEntry{{name: "out", typ: tar.TypeSymlink, link: parent}, {name: "out/evil", body: "x"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "rootfs")
			err := extractSaveArchive(writeSaveArchive(t, makeTar(t, tt.layer(parent))), dir)
			if err == nil {
				t.Errorf("extractSaveArchive accepted a layer escaping its root")
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Errorf("file written outside the rootfs")
			}
		})
	}
}

func TestParseSaveManifest(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  bool
	}{
		{"ok", `[{"Config":"c.json","RepoTags":["busybox:latest"],"Layers":["a/layer.tar"]}]`, false},
		{"not json", `{`, true},
		{"two images", `[{"Layers":["a"]},{"Layers":["b"]}]`, true},
		{"no layers", `[{"Config":"c.json"}]`, true},
		{"absolute layer", `[{"Layers":["/etc/passwd"]}]`, true},
		{"escaping layer", `[{"Layers":["../x"]}]`, true},
	}
	for _, tt := range tests {
		_, err := parseSaveManifest([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: parseSaveManifest(%s) error = %v, want error %v", tt.name, tt.in, err, tt.wantErr)
		}
	}
}

func FuzzParseSaveManifest(f *testing.F) {
	for _, s := range []string{`[{"Layers":["a/layer.tar"]}]`, `[]`, `{`, `[{"Layers":["../x"]}]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSaveManifest(b)
		if err != nil {
			return
		}
		for _, l := range m.Layers {
			if filepath.IsAbs(l) || strings.HasPrefix(filepath.Clean(l), "..") {
				t.Errorf("parseSaveManifest accepted layer path %q", l)
			}
		}
	})
}

func TestPatchSpec(t *testing.T) {
	spec := []byte(`{"ociVersion":"1.0.0","process":{"terminal":true,"args":["sh"],"cwd":"/"},"root":{"path":"rootfs","readonly":true},"hostname":"crun","linux":{"namespaces":[{"type":"pid"}]}}`)
	out, err := patchSpec(spec, "/r", []string{"sleep", "600"}, "h1")
	if err != nil {
		t.Fatalf("patchSpec: %v", err)
	}
	var got struct {
		Process struct {
			Terminal bool
			Args     []string
			Cwd      string
		}
		Root struct {
			Path     string
			Readonly bool
		}
		Hostname string
		Linux    struct{ Namespaces []map[string]string }
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Process.Terminal || !slices.Equal(got.Process.Args, []string{"sleep", "600"}) || got.Process.Cwd != "/" {
		t.Errorf("process = %+v, want terminal false, args [sleep 600], cwd /", got.Process)
	}
	if got.Root.Path != "/r" || !got.Root.Readonly {
		t.Errorf("root = %+v, want /r read-only", got.Root)
	}
	if got.Hostname != "h1" || len(got.Linux.Namespaces) != 1 {
		t.Errorf("hostname %q, namespaces %v; want h1 and the template's one namespace", got.Hostname, got.Linux.Namespaces)
	}
	for _, bad := range [][]byte{[]byte(`{`), []byte(`{"root":{}}`)} {
		if _, err := patchSpec(bad, "/r", []string{"true"}, ""); err == nil {
			t.Errorf("patchSpec(%s) accepted a spec without a process", bad)
		}
	}
	if _, err := patchSpec(spec, "/r", nil, ""); err == nil {
		t.Errorf("patchSpec with no args: got no error, want one")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		engines []string
		wantErr bool
	}{
		{nil, allEngines, false},
		{[]string{"-engines", "berth, crun,berth"}, []string{"berth", "crun"}, false},
		{[]string{"-engines", "lxc"}, nil, true},
		{[]string{"-rounds", "0"}, nil, true},
		{[]string{"-tcp-rounds", "0"}, nil, true},
		{[]string{"-tcp-mib", "-1"}, nil, true},
		{[]string{"extra"}, nil, true},
		{[]string{"-steps", "lunch"}, nil, true},
	}
	for _, tt := range tests {
		c, err := parseFlags(tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			continue
		}
		if err == nil && !slices.Equal(c.engines, tt.engines) {
			t.Errorf("parseFlags(%q) engines = %v, want %v", tt.args, c.engines, tt.engines)
		}
	}
}

func TestParseSteps(t *testing.T) {
	c, err := parseFlags([]string{"-engines", "berth,docker", "-steps", "docker-cli, docker-cli"})
	if err != nil || !slices.Equal(c.steps, []string{"docker-cli"}) {
		t.Errorf("-steps docker-cli: got %v, %v", c.steps, err)
	}
	if c, _ := parseFlags(nil); !slices.Equal(c.steps, allSteps) {
		t.Errorf("default steps %v, want all", c.steps)
	}
}

func TestDockerCLIReport(t *testing.T) {
	r := &results{Config: config{rounds: 3, steps: []string{"docker-cli"}}, Errors: map[string]error{},
		DockerCLI: map[string]*dockerCLIResult{"berth": {RunRm: []float64{40, 50, 60}, Ps: []float64{20}}, "docker": {RunRm: []float64{300}, Ps: []float64{25}}}}
	ts := r.dockerCLITargets()
	if len(ts) != 2 || !ts[0].Pass || !ts[1].Pass {
		t.Errorf("targets %+v: want both passed (300/50 = 6×, 20 ≤ 25)", ts)
	}
	r.DockerCLI["docker"].RunRm = []float64{200}
	if ts := r.dockerCLITargets(); ts[0].Pass {
		t.Errorf("4× counted as ≥ 5×")
	}
	md := r.markdown()
	if !strings.Contains(md, "## Through the docker CLI") || strings.Contains(md, "## Targets (issue 2)") {
		t.Errorf("report with -steps docker-cli:\n%s", md)
	}
}

// resultsWith builds results whose medians are the given figures.
func resultsWith(runRm map[string]float64, rate float64, idleKiB, shimKiB float64, logs map[string]float64) *results {
	r := &results{Config: config{detached: 4, logLines: 100000}, RunRm: map[string][]float64{}, Logs: map[string][]float64{},
		Detached: map[string]*detachedResult{}, Monitors: map[string]*monitorResult{}, Errors: map[string]error{}}
	for k, v := range runRm {
		r.RunRm[k] = []float64{v * 0.9, v, v * 1.5}
	}
	for k, v := range logs {
		r.Logs[k] = []float64{v}
	}
	if rate > 0 {
		per := time.Duration(float64(time.Second) / rate)
		r.Detached["berth"] = &detachedResult{Starts: []float64{1, 1, 1, 1}, Total: 4 * per}
	}
	if idleKiB > 0 {
		r.Idle = []idleResult{{Daemon: "berth daemon", When: "after load", KiB: idleKiB / 2}, {Daemon: "berth daemon", When: "after workload", KiB: idleKiB}}
	}
	if shimKiB > 0 {
		r.Monitors["berth"] = &monitorResult{RSS: []float64{shimKiB}}
	}
	return r
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name string
		r    *results
		want []string
	}{
		{"all pass", resultsWith(map[string]float64{"berth": 24, "crun": 22, "docker": 600}, 25, 20*1024, 1.5*1024,
			map[string]float64{"berth": 300, "docker": 700}),
			[]string{"PASS", "PASS", "PASS", "PASS", "PASS", "PASS"}},
		{"all miss", resultsWith(map[string]float64{"berth": 100, "crun": 22, "docker": 600}, 5, 40*1024, 3*1024,
			map[string]float64{"berth": 400, "docker": 700}),
			[]string{"MISS", "MISS", "MISS", "MISS", "MISS", "MISS"}},
		{"nothing measured", resultsWith(nil, 0, 0, 0, nil),
			[]string{"n/a", "n/a", "n/a", "n/a", "n/a", "n/a"}},
		{"at the limits", resultsWith(map[string]float64{"berth": 30, "crun": 25, "docker": 600}, 20, 30*1024, 2*1024,
			map[string]float64{"berth": 350, "docker": 700}),
			[]string{"PASS", "PASS", "PASS", "PASS", "PASS", "PASS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, x := range tt.r.targets() {
				got = append(got, x.verdict())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("verdicts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMarkdownShowsFiguresAndFailures(t *testing.T) {
	r := resultsWith(map[string]float64{"berth": 24, "crun": 22}, 25, 20*1024, 1.5*1024, nil)
	r.Engines = []*engine{{Name: "berth", Kind: cliEngine, runArgs: []string{"--network", "none"}}, {Name: "crun", Kind: ociEngine},
		{Name: "docker", Kind: cliEngine, Err: os.ErrNotExist}}
	r.Errors["run --rm/berth"] = os.ErrPermission
	r.RunRmFail = map[string]int{"berth": 2}
	md := r.markdown()
	for _, want := range []string{
		"| berth | `berth run --rm --network none busybox true` | 24.0 ms | 21.6 ms | 36.0 ms | 1.00× | 2 (see below) |",
		"| crun | `crun run --bundle B ID` | 22.0 ms |",
		"| docker | – | **not run**: file does not exist |",
		"- run --rm/berth: permission denied",
		"| `berth run --rm` ≤ 1.2× bare crun | 24.0 ms vs 22.0 ms = 1.09× | PASS |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q; got:\n%s", want, md)
		}
	}
}

func TestBusy(t *testing.T) {
	tests := []struct {
		load string
		want bool
	}{
		{"0.12 0.50 1.20", false},
		{"1.00 0.10 0.10", true},
		{"6.77 5.27 3.60", true},
		{"?", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := busy(tt.load); got != tt.want {
			t.Errorf("busy(%q) = %v, want %v", tt.load, got, tt.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		out     string
		want    float64
		wantErr bool
	}{
		{"MiB/s 1234.5\n", 1234.5, false},
		{"listening\nMiB/s 12\n", 12, false},
		{"MiB/s fast\n", 0, true},
		{"MiB/s 0\n", 0, true},
		{"", 0, true},
		{"rate 12\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseRate(tt.out)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v, error %v", tt.out, got, err, tt.want, tt.wantErr)
		}
	}
}

// netWith builds results whose networking medians are the given figures.
func netWith(lat map[string]float64, tcp map[string]float64) *results {
	nr := newNetResult()
	for k, v := range lat {
		nr.Latency[k] = []float64{v * 0.9, v, v * 1.2}
	}
	for k, v := range tcp {
		nr.TCP[k] = []float64{v}
	}
	return &results{Config: config{rounds: 3, tcpRounds: 1, tcpMiB: 1024}, Net: nr, Errors: map[string]error{}}
}

func TestNetTargets(t *testing.T) {
	tests := []struct {
		name string
		r    *results
		want []string
	}{
		{"all pass", netWith(map[string]float64{rowBerthBridge: 30, rowBerthNone: 25, rowDocker: 400}, map[string]float64{"berth": 950, "veth": 1000}), []string{"PASS", "PASS", "PASS"}},
		{"at the limits", netWith(map[string]float64{rowBerthBridge: 35, rowBerthNone: 25, rowDocker: 350}, map[string]float64{"berth": 900, "veth": 1000}), []string{"PASS", "PASS", "PASS"}},
		{"all miss", netWith(map[string]float64{rowBerthBridge: 36, rowBerthNone: 25, rowDocker: 300}, map[string]float64{"berth": 899, "veth": 1000}), []string{"MISS", "MISS", "MISS"}},
		{"berth much faster than veth is a miss too", netWith(nil, map[string]float64{"berth": 1200, "veth": 1000}), []string{"n/a", "n/a", "MISS"}},
		{"nothing measured", netWith(nil, nil), []string{"n/a", "n/a", "n/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, x := range tt.r.netTargets() {
				got = append(got, x.verdict())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("verdicts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNetMarkdownShowsFiguresAndFailures(t *testing.T) {
	r := netWith(map[string]float64{rowBerthBridge: 30, rowBerthNone: 25}, map[string]float64{"veth": 1000})
	r.Net.Commands[rowDocker] = "`docker run --rm busybox true`"
	r.Net.RowErr[rowDocker] = os.ErrNotExist
	r.Net.TCPErr["berth"] = os.ErrPermission
	var w strings.Builder
	r.netMarkdown(func(f string, a ...any) { fmt.Fprintf(&w, f, a...) })
	md := w.String()
	for _, want := range []string{
		"## Networking (issue 3)",
		"| bridge adds ≤ 10 ms to `berth run --rm` (bridge − none median) | 30.0 ms − 25.0 ms = +5.0 ms | PASS |",
		"| berth, none |  | 25.0 ms | 22.5 ms | 30.0 ms | 0.83× | 0 |",
		"| docker, bridge | `docker run --rm busybox true` | – | – | – | – | **failed**: file does not exist |",
		"| berth | 0 | – | – | – | – | permission denied |",
		"| veth | 1 | 1000 MiB/s | 1000 MiB/s | 1000 MiB/s | 1.00× | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q; got:\n%s", want, md)
		}
	}
}

// TestBerthSpecRow: the crun-on-berth's-spec row is in the run --rm table
// and the split of the time below the targets, and in no other table.
func TestBerthSpecRow(t *testing.T) {
	r := resultsWith(map[string]float64{"berth": 24, "crun": 10, "crun-berth-spec": 12}, 25, 20*1024, 1.5*1024, nil)
	r.Engines = []*engine{{Name: "berth", Kind: cliEngine, runArgs: []string{"--network", "none"}}, {Name: "crun", Kind: ociEngine},
		{Name: "crun-berth-spec", Kind: ociEngine, runRmOnly: true}}
	md := r.markdown()
	for _, want := range []string{
		"| crun-berth-spec | `crun run --bundle B ID`, B's config.json the one berth wrote",
		"crun on berth's own spec takes 12.0 ms, 2.00 ms more than on `crun spec`'s",
		"berth adds 12.0 ms to that",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q; got:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "| crun-berth-spec |"); n != 2 { // the engines table and run --rm
		t.Errorf("crun-berth-spec is in %d tables, want 2 (engines, run --rm):\n%s", n, md)
	}
	if got := len(r.usable()); got != 2 {
		t.Errorf("usable() has %d engines, want 2 (no run --rm-only row)", got)
	}
}
