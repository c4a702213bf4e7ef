package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat is the part of /proc/PID/stat the benchmark needs.
type procStat struct {
	Comm string
	PPID int
}

// parseStat parses the text of /proc/PID/stat. The command name sits in
// parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStat(s string) (procStat, error) {
	open := strings.IndexByte(s, '(')
	closing := strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("proc stat %q: want \"PID (COMM) STATE PPID ...\"", trunc(s))
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 2 {
		return procStat{}, fmt.Errorf("proc stat %q: want state and ppid after the command name", trunc(s))
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil || ppid < 0 {
		return procStat{}, fmt.Errorf("proc stat %q: ppid %q is not a non-negative number", trunc(s), fields[1])
	}
	return procStat{Comm: s[open+1 : closing], PPID: ppid}, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// parseKiB returns the value in kB of the line "key:   N kB" in a
// /proc/PID/status or smaps_rollup text.
func parseKiB(text, key string) (int64, error) {
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s line %q: want \"%s: N kB\"", key, line, key)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s line %q: %q is not a size in kB", key, line, f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// rssKiB returns the VmRSS of a process in KiB.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	n, err := parseKiB(string(b), "VmRSS")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return n, nil
}

// pssKiB returns the proportional set size of a process in KiB (shared
// pages divided among the processes that map them).
func pssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	n, err := parseKiB(string(b), "Pss")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return n, nil
}

// processes lists every process as pid → stat. Processes that exit while
// /proc is read are skipped.
func processes() map[int]procStat {
	out := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out[pid] = st
		}
	}
	return out
}

// childrenNamed returns the pids of the direct children of parent whose
// command name is comm.
func childrenNamed(parent int, comm string) []int {
	var pids []int
	for pid, st := range processes() {
		if st.PPID == parent && st.Comm == comm {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsMentioning returns the pids of processes whose command line holds s.
func pidsMentioning(s string) []int {
	var pids []int
	for pid := range processes() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(b, []byte(s)) && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// Deepest first, so that nested mounts go before their parents.
	for i := 0; i < len(out); i++ {
		for j := i + 1; j < len(out); j++ {
			if strings.Count(out[j], "/") > strings.Count(out[i], "/") {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for space …) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
