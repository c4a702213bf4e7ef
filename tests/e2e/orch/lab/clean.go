package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Clean removes every trace of a lab with cfg's prefix — from a Down
// that never ran, a crashed test or ^C — found by name, not from a state
// file: processes in its network namespaces or running with its state
// directory on their command line, the namespaces, its links (and their
// routes), mounts under its directories, its cgroups, and the state
// directory itself.
func Clean(cfg Config) error {
	return clean(cfg.Defaults(), true)
}

func clean(cfg Config, removeDir bool) error {
	var errs []error
	nss := labNetns(cfg)
	// Everything of a node lives in its netns (nsenter and unshare join
	// it before forking), so its processes are found without a state
	// file; the server is found by its data directory.
	var pids []int
	for _, ns := range nss {
		out, _ := run("ip", "netns", "pids", ns)
		for _, f := range strings.Fields(out) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	pids = append(pids, procsMentioning(cfg.Dir+"/")...)
	for _, p := range pids {
		if p != os.Getpid() {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	for _, cg := range labCgroups(cfg) {
		thawCgroupTree(cg)
	}
	if err := waitGone(15*time.Second, pids...); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := ip("netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, link := range labLinks(cfg) {
		// A veth goes away with its peer's netns: it may be gone already.
		if err := ip("link", "del", link); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	for _, m := range labMounts(cfg) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, cg := range labCgroups(cfg) {
		if err := removeCgroupTree(cg); err != nil {
			errs = append(errs, err)
		}
	}
	if removeDir {
		for _, d := range []string{cfg.Dir, filepath.Join("/run", cfg.Prefix)} {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Check reports what a lab with cfg's prefix left behind, if anything.
func Check(cfg Config) error {
	cfg = cfg.Defaults()
	var left []string
	for _, ns := range labNetns(cfg) {
		left = append(left, "netns "+ns)
	}
	for _, l := range labLinks(cfg) {
		left = append(left, "link "+l)
	}
	for _, m := range labMounts(cfg) {
		left = append(left, "mount "+m)
	}
	for _, cg := range labCgroups(cfg) {
		left = append(left, "cgroup "+cg)
	}
	for _, p := range procsMentioning(cfg.Dir + "/") {
		left = append(left, fmt.Sprintf("process %d", p))
	}
	if out, err := run("ip", "route", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, " via "+cfg.Subnet+".") || strings.HasPrefix(line, cfg.Subnet+".") {
				left = append(left, "route "+line)
			}
		}
	}
	if out, err := run("nft", "list", "ruleset"); err == nil && strings.Contains(out, cfg.PodNet+".") {
		left = append(left, "nftables rules mentioning "+cfg.PodNet+".")
	}
	if len(left) > 0 {
		return fmt.Errorf("lab %s left behind: %s", cfg.Prefix, strings.Join(left, "; "))
	}
	return nil
}

func labNetns(cfg Config) []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cfg.Prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func labLinks(cfg Config) []string {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(cfg.Prefix) + `(0|v[0-9]+)$`)
	ents, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range ents {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	// veths first: deleting the bridge first would only detach them.
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out
}

// labMounts lists host mount points under the lab's directories, deepest
// first.
func labMounts(cfg Config) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		mp := fs[4]
		for _, d := range []string{cfg.Dir, filepath.Join("/run", cfg.Prefix)} {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				out = append(out, mp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// labPrograms are the programs the lab runs; procsMentioning looks only at
// those, never at, say, a person's `tail -f` of a lab log.
var labPrograms = map[string]bool{"berth": true, "berth-server": true, "berth-shim": true, "nsenter": true, "unshare": true}

// procsMentioning lists live lab programs whose command line contains s.
func procsMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(b), "\x00")
		if labPrograms[filepath.Base(argv[0])] && strings.Contains(strings.Join(argv, " "), s) && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// labCgroups lists the lab's cgroup directories (one per node and
// hierarchy: engines create their containers under <prefix>-<node>).
func labCgroups(cfg Config) []string {
	m, _ := filepath.Glob("/sys/fs/cgroup/" + cfg.Prefix + "-*")
	m2, _ := filepath.Glob("/sys/fs/cgroup/*/" + cfg.Prefix + "-*")
	return append(m, m2...)
}

// removeCgroups removes a node's cgroup parent in every hierarchy; its
// processes must be gone (the kernel frees a killed namespace's tasks
// asynchronously, so it retries briefly).
func removeCgroups(parent string) error {
	var errs []error
	for _, cg := range nodeCgroups(parent) {
		errs = append(errs, removeCgroupTree(cg))
	}
	return errors.Join(errs...)
}

func nodeCgroups(parent string) []string {
	m, _ := filepath.Glob("/sys/fs/cgroup/" + parent)
	m2, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	return append(m, m2...)
}

func removeCgroupTree(root string) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var last error
	for _, d := range dirs {
		for i := 0; i < 50; i++ {
			last = syscall.Rmdir(d)
			if last == nil || errors.Is(last, syscall.ENOENT) {
				last = nil
				break
			}
			thawCgroupTree(d)
			time.Sleep(20 * time.Millisecond)
		}
		if last != nil {
			return fmt.Errorf("remove cgroup %s: %w", d, last)
		}
	}
	return nil
}

// thawCgroupTree thaws every frozen cgroup under root. crun freezes a
// container's cgroup while it signals every process in it; a node killed
// at that moment leaves the cgroup frozen, and a frozen task does not die
// of SIGKILL until thawed (a real power loss has no such leftover).
func thawCgroupTree(root string) {
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(filepath.Join(p, "freezer.state")); err == nil && strings.TrimSpace(string(b)) != "THAWED" {
			_ = os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0o644)
		}
		if b, err := os.ReadFile(filepath.Join(p, "cgroup.freeze")); err == nil && strings.TrimSpace(string(b)) != "0" {
			_ = os.WriteFile(filepath.Join(p, "cgroup.freeze"), []byte("0"), 0o644)
		}
		return nil
	})
}
