package cgroups

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatsV2Fixture(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"memory.current": "1048576\n",
		"memory.peak":    "2097152\n",
		"memory.max":     "67108864\n",
		"memory.events":  "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n",
		"memory.stat":    "anon 100\nfile 4096\n",
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 250\n",
		"pids.current":   "4\n",
		"pids.max":       "max\n",
		"io.stat":        "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n",
	})
	got, err := StatsV2(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{
		Memory: MemoryStats{Usage: 1048576, MaxUsage: 2097152, Limit: 67108864, Failcnt: 7, Cache: 4096, OOMKills: 1},
		CPU:    CPUStats{Total: 1500000, User: 1000000, System: 500000, Periods: 10, ThrottledPeriods: 3, ThrottledTimeNs: 250000},
		Pids:   PidsStats{Current: 4, Limit: 0},
		Blkio:  BlkioStats{Read: 4097, Write: 8194},
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	n, err := oomKillsV2(dir)
	if err != nil || n != 1 {
		t.Fatalf("oomKillsV2 = %d, %v, want 1", n, err)
	}
}

func TestStatsV1Fixture(t *testing.T) {
	root := t.TempDir()
	p := "/berth/c1"
	writeFiles(t, root, map[string]string{
		"memory/berth/c1/memory.usage_in_bytes":          "4096\n",
		"memory/berth/c1/memory.max_usage_in_bytes":      "8192\n",
		"memory/berth/c1/memory.limit_in_bytes":          "9223372036854771712\n",
		"memory/berth/c1/memory.failcnt":                 "5\n",
		"memory/berth/c1/memory.stat":                    "cache 1024\nrss 2048\n",
		"memory/berth/c1/memory.oom_control":             "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"cpuacct/berth/c1/cpuacct.usage":                 "123456789\n",
		"cpuacct/berth/c1/cpuacct.stat":                  "user 3\nsystem 2\n",
		"cpu/berth/c1/cpu.stat":                          "nr_periods 4\nnr_throttled 1\nthrottled_time 999\n",
		"pids/berth/c1/pids.current":                     "2\n",
		"pids/berth/c1/pids.max":                         "64\n",
		"blkio/berth/c1/blkio.throttle.io_service_bytes": "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\nTotal 300\n",
	})
	got, err := StatsV1(root, p)
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{
		Memory: MemoryStats{Usage: 4096, MaxUsage: 8192, Limit: 0, Failcnt: 5, Cache: 1024, OOMKills: 2},
		CPU:    CPUStats{Total: 123456789, User: 30000000, System: 20000000, Periods: 4, ThrottledPeriods: 1, ThrottledTimeNs: 999},
		Pids:   PidsStats{Current: 2, Limit: 64},
		Blkio:  BlkioStats{Read: 100, Write: 200},
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := StatsV1(root, "/berth/missing"); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing cgroup: got %v, want not-exist", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestReadUintRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"x": "12ab\n"})
	if _, err := readUint(filepath.Join(dir, "x")); err == nil {
		t.Fatal("readUint(\"12ab\") succeeded, want error")
	}
}
