// Package cgroups owns berth's view of the host's control groups: preparing
// a hybrid v1 host so OCI runtimes accept it, detecting v1 or v2, and reading
// a container's resource statistics and OOM-kill record.
//
// It links only the standard library (and x/sys on Linux) so the shim can
// use it.
package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Root is where cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// Usage is a snapshot of a container cgroup's statistics. (The brief's
// "Stats" names the function; Go cannot give a type the same name.)
type Usage struct {
	Memory MemoryStats
	CPU    CPUStats
	Pids   PidsStats
	Blkio  BlkioStats
}

// MemoryStats are in bytes. Limit is 0 when unlimited.
type MemoryStats struct {
	Usage, MaxUsage, Limit, Failcnt uint64
	// Cache is page cache (v1 "cache", v2 "file"), which docker stats
	// subtracts from usage.
	Cache uint64
	// OOMKills counts processes killed by the OOM killer in this cgroup.
	OOMKills uint64
}

// CPUStats are in nanoseconds.
type CPUStats struct {
	Total, User, System                        uint64
	Periods, ThrottledPeriods, ThrottledTimeNs uint64
}

// PidsStats: Limit is 0 when unlimited.
type PidsStats struct {
	Current, Limit uint64
}

// BlkioStats are bytes read and written.
type BlkioStats struct {
	Read, Write uint64
}

// Stats reads the statistics of the cgroup at cgroupsPath (as in the OCI
// spec's linux.cgroupsPath, e.g. "/berth/ID") on this host.
func Stats(cgroupsPath string) (Usage, error) {
	if Detect() {
		return StatsV2(filepath.Join(Root, cgroupsPath))
	}
	return StatsV1(Root, cgroupsPath)
}

// OOMKilled reports whether the OOM killer killed a process in the cgroup.
// Read it before the runtime deletes the cgroup.
func OOMKilled(cgroupsPath string) (bool, error) {
	if Detect() {
		n, err := oomKillsV2(filepath.Join(Root, cgroupsPath))
		return n > 0, err
	}
	n, err := oomKillsV1(filepath.Join(Root, "memory", cgroupsPath))
	return n > 0, err
}

func oomKillsV1(dir string) (uint64, error) {
	kv, err := readKV(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return 0, err
	}
	return kv["oom_kill"], nil
}

func oomKillsV2(dir string) (uint64, error) {
	kv, err := readKV(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0, err
	}
	return kv["oom_kill"], nil
}

// StatsV1 reads a v1 cgroup: root holds one directory per controller
// (memory, cpuacct, cpu, pids, blkio).
func StatsV1(root, cgroupsPath string) (Usage, error) {
	var s Usage
	mem := filepath.Join(root, "memory", cgroupsPath)
	if _, err := os.Stat(mem); err != nil {
		return s, wrapErr("cgroup "+strconv.Quote(cgroupsPath), err)
	}
	var err error
	get := func(path string) uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, err = readUint(path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return v
	}
	s.Memory.Usage = get(filepath.Join(mem, "memory.usage_in_bytes"))
	s.Memory.MaxUsage = get(filepath.Join(mem, "memory.max_usage_in_bytes"))
	s.Memory.Limit = get(filepath.Join(mem, "memory.limit_in_bytes"))
	if s.Memory.Limit >= 1<<62 { // v1 reports "unlimited" as a page-rounded huge number
		s.Memory.Limit = 0
	}
	s.Memory.Failcnt = get(filepath.Join(mem, "memory.failcnt"))
	if kv, e := readKV(filepath.Join(mem, "memory.stat")); e == nil {
		s.Memory.Cache = kv["cache"]
	}
	s.Memory.OOMKills, _ = oomKillsV1(mem)

	acct := filepath.Join(root, "cpuacct", cgroupsPath)
	s.CPU.Total = get(filepath.Join(acct, "cpuacct.usage"))
	if kv, e := readKV(filepath.Join(acct, "cpuacct.stat")); e == nil {
		// USER_HZ ticks; Linux fixes USER_HZ at 100.
		s.CPU.User = kv["user"] * 1e7
		s.CPU.System = kv["system"] * 1e7
	}
	if kv, e := readKV(filepath.Join(root, "cpu", cgroupsPath, "cpu.stat")); e == nil {
		s.CPU.Periods, s.CPU.ThrottledPeriods, s.CPU.ThrottledTimeNs = kv["nr_periods"], kv["nr_throttled"], kv["throttled_time"]
	}
	pids := filepath.Join(root, "pids", cgroupsPath)
	s.Pids.Current = get(filepath.Join(pids, "pids.current"))
	s.Pids.Limit = get(filepath.Join(pids, "pids.max")) // "max" reads as 0

	if b, e := os.ReadFile(filepath.Join(root, "blkio", cgroupsPath, "blkio.throttle.io_service_bytes")); e == nil {
		s.Blkio.Read, s.Blkio.Write = blkioV1(b)
	}
	return s, err
}

// blkioV1 sums "MAJ:MIN Read N" / "MAJ:MIN Write N" lines.
func blkioV1(b []byte) (read, write uint64) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += v
		case "Write":
			write += v
		}
	}
	return read, write
}

// StatsV2 reads the unified cgroup directory dir.
func StatsV2(dir string) (Usage, error) {
	var s Usage
	if _, err := os.Stat(dir); err != nil {
		return s, wrapErr("cgroup "+strconv.Quote(dir), err)
	}
	u := func(name string) uint64 {
		v, _ := readUint(filepath.Join(dir, name))
		return v
	}
	s.Memory.Usage = u("memory.current")
	s.Memory.MaxUsage = u("memory.peak") // kernel >= 5.19
	s.Memory.Limit = u("memory.max")
	if kv, err := readKV(filepath.Join(dir, "memory.events")); err == nil {
		s.Memory.Failcnt = kv["max"]
		s.Memory.OOMKills = kv["oom_kill"]
	}
	if kv, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
		s.Memory.Cache = kv["file"]
	}
	if kv, err := readKV(filepath.Join(dir, "cpu.stat")); err == nil {
		s.CPU.Total = kv["usage_usec"] * 1000
		s.CPU.User = kv["user_usec"] * 1000
		s.CPU.System = kv["system_usec"] * 1000
		s.CPU.Periods = kv["nr_periods"]
		s.CPU.ThrottledPeriods = kv["nr_throttled"]
		s.CPU.ThrottledTimeNs = kv["throttled_usec"] * 1000
	}
	s.Pids.Current = u("pids.current")
	s.Pids.Limit = u("pids.max")
	if b, err := os.ReadFile(filepath.Join(dir, "io.stat")); err == nil {
		// "MAJ:MIN rbytes=N wbytes=N rios=N ..."
		for _, line := range strings.Split(string(b), "\n") {
			for _, f := range strings.Fields(line) {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					continue
				}
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "rbytes":
					s.Blkio.Read += n
				case "wbytes":
					s.Blkio.Write += n
				}
			}
		}
	}
	return s, nil
}

// readUint reads a file holding one number; "max" reads as 0 (unlimited).
func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New(path + ": " + strconv.Quote(s) + " is not a number")
	}
	return v, nil
}

// readKV reads "key value" lines.
func readKV(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err == nil {
			m[k] = n
		}
	}
	return m, sc.Err()
}

// OOMKills returns how many processes the OOM killer has killed in the
// cgroup so far (v1 memory.oom_control "oom_kill", v2 memory.events).
func OOMKills(cgroupsPath string) (uint64, error) {
	if Detect() {
		return oomKillsV2(filepath.Join(Root, cgroupsPath))
	}
	return oomKillsV1(filepath.Join(Root, "memory", cgroupsPath))
}
