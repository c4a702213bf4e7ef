package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/cgroups"
	"github.com/berth/berth/internal/errdefs"
)

// systemCPUNanos is the host's total CPU time, as Docker's system_cpu_usage.
func systemCPUNanos() uint64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) > 0 && fs[0] == "cpu" {
			var ticks uint64
			for _, v := range fs[1:] {
				n, _ := strconv.ParseUint(v, 10, 64)
				ticks += n
			}
			return ticks * (1e9 / 100) // USER_HZ is 100 on Linux
		}
	}
	return 0
}

func (d *Daemon) sample(id, name, cgroupsPath string) (api.Stats, error) {
	u, err := cgroups.Stats(cgroupsPath)
	if err != nil {
		return api.Stats{}, err
	}
	s := api.Stats{Read: time.Now().UTC(), ID: id, Name: "/" + name}
	s.CPUStats.CPUUsage.TotalUsage = u.CPU.Total
	s.CPUStats.CPUUsage.UsageInKernelmode = u.CPU.System
	s.CPUStats.CPUUsage.UsageInUsermode = u.CPU.User
	s.CPUStats.SystemUsage = systemCPUNanos()
	s.CPUStats.OnlineCPUs = uint32(numCPU())
	s.CPUStats.ThrottlingData.Periods = u.CPU.Periods
	s.CPUStats.ThrottlingData.ThrottledPeriods = u.CPU.ThrottledPeriods
	s.CPUStats.ThrottlingData.ThrottledTime = u.CPU.ThrottledTimeNs
	s.MemoryStats = api.MemoryStats{Usage: u.Memory.Usage, MaxUsage: u.Memory.MaxUsage, Failcnt: u.Memory.Failcnt,
		Limit: u.Memory.Limit, Stats: map[string]uint64{"cache": u.Memory.Cache, "inactive_file": u.Memory.Cache}}
	if s.MemoryStats.Limit == 0 {
		s.MemoryStats.Limit = uint64(memTotal())
	}
	s.PidsStats = api.PidsStats{Current: u.Pids.Current, Limit: u.Pids.Limit}
	s.BlkioStats.IoServiceBytesRecursive = []api.BlkioEntry{{Op: "read", Value: u.Blkio.Read}, {Op: "write", Value: u.Blkio.Write}}
	return s, nil
}

func (d *Daemon) getContainerStats(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	stream := r.URL.Query().Get("stream") == "" || boolParam(r, "stream")
	oneShot := boolParam(r, "one-shot")
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	var prev api.Stats
	for i := 0; ; i++ {
		c.Mu.Lock()
		running := c.State.Running
		c.Mu.Unlock()
		var s api.Stats
		if running {
			s, err = d.sample(c.ID, c.Name, c.CgroupsPath)
			if err != nil {
				s = api.Stats{Read: time.Now().UTC(), ID: c.ID, Name: "/" + c.Name}
			}
		} else {
			s = api.Stats{Read: time.Now().UTC(), ID: c.ID, Name: "/" + c.Name}
		}
		s.PreCPUStats, s.PreRead = prev.CPUStats, prev.Read
		// Docker's one-shot-less, non-stream answer carries a precpu sample
		// one second older so the CLI can compute a CPU percentage.
		if i == 0 && !oneShot && running {
			prev = s
			select {
			case <-time.After(time.Second):
				continue
			case <-r.Context().Done():
				return
			}
		}
		if err := enc.Encode(s); err != nil {
			return
		}
		if !stream {
			return
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		prev = s
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
			return
		}
	}
}

func (d *Daemon) getContainerTop(w http.ResponseWriter, r *http.Request) {
	c, err := d.ctrs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	c.Mu.Lock()
	running := c.State.Running
	c.Mu.Unlock()
	if !running {
		writeError(w, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrConflict))
		return
	}
	rt, err := d.runtimeFor(c.Runtime)
	if err != nil {
		writeError(w, err)
		return
	}
	pids, err := rt.Ps(r.Context(), c.ID)
	if err != nil {
		writeError(w, err)
		return
	}
	if psArgs := r.URL.Query().Get("ps_args"); psArgs != "" {
		out, err := psTop(r.Context(), psArgs, pids)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSONResponse(w, 200, out)
		return
	}
	out := api.TopResponse{Titles: []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}, Processes: [][]string{}}
	for _, pid := range pids {
		out.Processes = append(out.Processes, procRow(pid))
	}
	writeJSONResponse(w, 200, out)
}

// psTop is `docker top C ARGS`: the host's ps(1) with those arguments, its
// rows kept for the container's processes, as dockerd does.
func psTop(ctx context.Context, psArgs string, pids []int) (api.TopResponse, error) {
	args := strings.Fields(psArgs)
	for _, a := range args {
		for _, ch := range a {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.ContainsRune("-,=_%:", ch)) {
				return api.TopResponse{}, fmt.Errorf("invalid ps arguments %q: only letters, digits and -,=_%%: are allowed: %w", psArgs, errdefs.ErrInvalidArgument)
			}
		}
	}
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	out, err := exec.CommandContext(ctx, "ps", append(args, "-q", strings.Join(list, ","))...).Output()
	if err != nil {
		// Some options cannot be combined with -q: list everything.
		var stderr []byte
		out, err = exec.CommandContext(ctx, "ps", args...).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		if err != nil {
			return api.TopResponse{}, fmt.Errorf("ps %s: %v: %s: %w", psArgs, err, strings.TrimSpace(string(stderr)), errdefs.ErrInvalidArgument)
		}
	}
	return parsePS(string(out), pids)
}

// parsePS keeps the rows of ps output whose PID column is one of pids.
func parsePS(out string, pids []int) (api.TopResponse, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	titles := strings.Fields(lines[0])
	col := -1
	for i, t := range titles {
		if t == "PID" {
			col = i
		}
	}
	if col < 0 {
		return api.TopResponse{}, fmt.Errorf("couldn't find PID field in ps output (give ps arguments that show it): %w", errdefs.ErrInvalidArgument)
	}
	want := map[string]bool{}
	for _, p := range pids {
		want[strconv.Itoa(p)] = true
	}
	res := api.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= col || !want[f[col]] {
			continue
		}
		// The last column (the command) keeps its spaces.
		if len(f) > len(titles) {
			f = append(f[:len(titles)-1], strings.Join(f[len(titles)-1:], " "))
		}
		res.Processes = append(res.Processes, f)
	}
	return res, nil
}

// procRow describes one host process the way `ps -ef` does.
func procRow(pid int) []string {
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	uid, ppid, tm := "?", "?", "00:00:00"
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				uid = f[0]
			}
		}
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			ppid = strings.TrimSpace(v)
		}
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
		f := strings.Fields(string(stat)[i+1:])
		if len(f) > 13 {
			ut, _ := strconv.ParseUint(f[11], 10, 64)
			st, _ := strconv.ParseUint(f[12], 10, 64)
			secs := (ut + st) / 100
			tm = fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
		}
	}
	c := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	return []string{uid, strconv.Itoa(pid), ppid, "0", "-", "?", tm, c}
}
