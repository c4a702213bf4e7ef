package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/engine/network"
	"github.com/berth/berth/internal/engine/volume"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

// createFlags are the flags shared by run and create, named as Docker's.
type createFlags struct {
	name, workdir, user, entrypoint, hostname string
	entrypointSet                             bool
	env, envFiles, labels, capAdd, capDrop    []string
	securityOpt, logOpts, tmpfs, sysctls      []string
	volumes, mounts                           []string
	publish, expose, dns, dnsSearch, dnsOpts  []string
	addHosts, aliases                         []string
	ip                                        string
	publishAll                                bool
	interactive, tty, readOnly, privileged    bool
	memory, memorySwap, memoryReservation     string
	cpus                                      float64
	cpuShares, cpuQuota, cpuPeriod, pidsLimit int64
	cpusetCpus, restart, runtime, network     string
	stopSignal                                string
	stopTimeout                               int
	rm                                        bool
	ipc, pid, uts, shmSize                    string
	groupAdd                                  []string
	oomScoreAdj                               int
}

func addCreateFlags(fs *pflag.FlagSet, f *createFlags) {
	fs.SetInterspersed(false) // flags after the image belong to the command
	fs.StringVar(&f.name, "name", "", "Assign a name to the container")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "Set environment variables (KEY=VALUE, or KEY to copy it from this shell)")
	fs.StringArrayVar(&f.envFiles, "env-file", nil, "Read in a file of environment variables")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "Working directory inside the container")
	fs.StringVarP(&f.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	fs.StringVarP(&f.hostname, "hostname", "h", "", "Container host name")
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	fs.BoolVarP(&f.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	fs.StringVarP(&f.memory, "memory", "m", "", "Memory limit (e.g. 64m, 1g)")
	fs.StringVar(&f.memorySwap, "memory-swap", "", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	fs.StringVar(&f.memoryReservation, "memory-reservation", "", "Memory soft limit")
	fs.Float64Var(&f.cpus, "cpus", 0, "Number of CPUs (e.g. 0.5)")
	fs.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fs.Int64Var(&f.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	fs.Int64Var(&f.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	fs.StringVar(&f.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fs.Int64Var(&f.pidsLimit, "pids-limit", 0, "Tune container pids limit (-1 for unlimited)")
	fs.BoolVar(&f.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	fs.StringVar(&f.restart, "restart", "no", "Restart policy: no, on-failure[:max-retries], always, unless-stopped")
	fs.StringArrayVarP(&f.labels, "label", "l", nil, "Set meta data on a container (KEY=VALUE)")
	fs.StringVar(&f.runtime, "runtime", "", "OCI runtime to use for this container (crun, runc, or one from daemon.json)")
	fs.StringVar(&f.network, "network", "bridge", "Connect a container to a network (bridge, none, host, or a user network)")
	fs.StringVar(&f.ip, "ip", "", "IPv4 address (e.g., 172.30.0.10) on a user network")
	fs.StringArrayVar(&f.aliases, "network-alias", nil, "Add network-scoped alias for the container")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil, "Publish a container's port(s) to the host ([hostip:]hostport:containerport[/proto], or containerport)")
	fs.BoolVarP(&f.publishAll, "publish-all", "P", false, "Publish all exposed ports to random ports")
	fs.StringArrayVar(&f.expose, "expose", nil, "Expose a port or a range of ports")
	fs.StringArrayVar(&f.dns, "dns", nil, "Set custom DNS servers")
	fs.StringArrayVar(&f.dnsSearch, "dns-search", nil, "Set custom DNS search domains")
	fs.StringArrayVar(&f.dnsOpts, "dns-option", nil, "Set DNS options")
	fs.StringArrayVar(&f.addHosts, "add-host", nil, "Add a custom host-to-IP mapping (host:ip)")
	fs.BoolVar(&f.privileged, "privileged", false, "Give extended privileges to this container")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "Add Linux capabilities")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "Drop Linux capabilities")
	fs.StringArrayVar(&f.securityOpt, "security-opt", nil, "Security options (seccomp=unconfined, no-new-privileges)")
	fs.StringArrayVar(&f.logOpts, "log-opt", nil, "Log driver options (max-size=10m, max-file=3)")
	fs.StringArrayVar(&f.tmpfs, "tmpfs", nil, "Mount a tmpfs directory (/path[:options])")
	fs.StringArrayVarP(&f.volumes, "volume", "v", nil, "Bind mount a volume (NAME:/path[:ro], /host/path:/path[:ro], or /path for an anonymous volume)")
	fs.StringArrayVar(&f.mounts, "mount", nil, "Attach a filesystem mount (type=volume|bind|tmpfs,source=…,target=…,readonly,…)")
	fs.StringArrayVar(&f.sysctls, "sysctl", nil, "Sysctl options")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "Signal to stop the container")
	fs.IntVar(&f.stopTimeout, "stop-timeout", -1, "Timeout (in seconds) to stop a container")
	fs.StringVar(&f.ipc, "ipc", "", "IPC mode: private, shareable, none, host or container:<name|id>")
	fs.StringVar(&f.pid, "pid", "", "PID namespace: host or container:<name|id>")
	fs.StringVar(&f.uts, "uts", "", "UTS namespace: host")
	fs.StringVar(&f.shmSize, "shm-size", "", "Size of /dev/shm (e.g. 64m)")
	fs.StringArrayVar(&f.groupAdd, "group-add", nil, "Add additional groups to join")
	fs.IntVar(&f.oomScoreAdj, "oom-score-adj", 0, "Tune host's OOM preferences (-1000 to 1000)")
	fs.Bool("help", false, "Print usage")
}

// request turns the flags into a create request.
func (f *createFlags) request(fs *pflag.FlagSet, image string, cmd []string) (api.CreateRequest, error) {
	bad := func(flag, val, want string) error {
		return &flagError{cmd: "run", err: fmt.Errorf("invalid argument %q for %q flag: %s", val, flag, want)}
	}
	req := api.CreateRequest{Config: api.Config{Image: image, Cmd: cmd, Hostname: f.hostname, User: f.user,
		WorkingDir: f.workdir, Tty: f.tty, OpenStdin: f.interactive, StdinOnce: f.interactive,
		AttachStdin: f.interactive, AttachStdout: true, AttachStderr: true, StopSignal: f.stopSignal}}
	if fs.Changed("entrypoint") {
		req.Entrypoint = []string{}
		if f.entrypoint != "" {
			req.Entrypoint = []string{f.entrypoint}
		}
	}
	if fs.Changed("stop-timeout") {
		t := f.stopTimeout
		req.StopTimeout = &t
	}
	env, err := readEnv(f.envFiles, f.env)
	if err != nil {
		return req, err
	}
	req.Env = env
	if len(f.labels) > 0 {
		req.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			if k == "" {
				return req, bad("-l, --label", l, "want KEY=VALUE")
			}
			req.Labels[k] = v
		}
	}
	hc := &api.HostConfig{AutoRemove: f.rm, ReadonlyRootfs: f.readOnly, Runtime: f.runtime, NetworkMode: f.network,
		Privileged: f.privileged, CapAdd: f.capAdd, CapDrop: f.capDrop, SecurityOpt: f.securityOpt,
		IpcMode: f.ipc, PidMode: f.pid, UTSMode: f.uts, GroupAdd: f.groupAdd, OomScoreAdj: f.oomScoreAdj}
	if f.shmSize != "" {
		n, err := units.RAMInBytes(f.shmSize)
		if err != nil || n <= 0 {
			return req, bad("--shm-size", f.shmSize, "want a size such as 64m")
		}
		hc.ShmSize = n
	}
	for flag, dst := range map[string]*int64{"memory": &hc.Memory, "memory-swap": &hc.MemorySwap, "memory-reservation": &hc.MemoryReservation} {
		v, _ := fs.GetString(flag)
		if v == "" {
			continue
		}
		if flag == "memory-swap" && v == "-1" {
			*dst = -1
			continue
		}
		n, err := units.RAMInBytes(v)
		if err != nil {
			name := "--" + flag
			if flag == "memory" {
				name = "-m, --memory"
			}
			return req, bad(name, v, "want a size such as 64m or 1g")
		}
		*dst = n
	}
	if f.cpus < 0 {
		return req, bad("--cpus", fmt.Sprint(f.cpus), "want a positive number of CPUs")
	}
	hc.NanoCPUs = int64(f.cpus * 1e9)
	hc.CPUShares, hc.CPUQuota, hc.CPUPeriod, hc.CpusetCpus = f.cpuShares, f.cpuQuota, f.cpuPeriod, f.cpusetCpus
	if fs.Changed("pids-limit") {
		p := f.pidsLimit
		hc.PidsLimit = &p
	}
	name, max, hasMax := strings.Cut(f.restart, ":")
	hc.RestartPolicy.Name = name
	if hasMax {
		n, err := strconv.Atoi(max)
		if err != nil || name != "on-failure" {
			return req, bad("--restart", f.restart, "want no, always, unless-stopped or on-failure[:max-retries]")
		}
		hc.RestartPolicy.MaximumRetryCount = n
	}
	if len(f.logOpts) > 0 {
		hc.LogConfig.Config = map[string]string{}
		for _, o := range f.logOpts {
			k, v, ok := strings.Cut(o, "=")
			if !ok {
				return req, bad("--log-opt", o, "want KEY=VALUE, such as max-size=10m")
			}
			hc.LogConfig.Config[k] = v
		}
	}
	for _, v := range f.volumes {
		// Docker's CLI makes a relative bind source absolute.
		if strings.HasPrefix(v, ".") {
			if src, rest, ok := strings.Cut(v, ":"); ok {
				if abs, err := filepath.Abs(src); err == nil {
					v = abs + ":" + rest
				}
			}
		}
		if _, err := volume.ParseVolumeSpec(v); err != nil {
			return req, &flagError{cmd: "run", err: fmt.Errorf("invalid argument %q for \"-v, --volume\" flag: %v", v, err)}
		}
		hc.Binds = append(hc.Binds, v)
	}
	for _, m := range f.mounts {
		ms, err := volume.ParseMountSpec(m)
		if err != nil {
			return req, &flagError{cmd: "run", err: fmt.Errorf("invalid argument %q for \"--mount\" flag: %v", m, err)}
		}
		am := api.Mount{Type: string(ms.Type), Source: ms.Source, Target: ms.Target, ReadOnly: ms.ReadOnly}
		switch ms.Type {
		case volume.TypeBind:
			am.BindOptions = &api.BindOptions{Propagation: ms.Propagation, NonRecursive: ms.NonRecursive}
		case volume.TypeVolume:
			am.VolumeOptions = &api.VolumeOptions{NoCopy: ms.NoCopy, Labels: ms.VolumeLabels}
		case volume.TypeTmpfs:
			am.TmpfsOptions = &api.TmpfsOptions{SizeBytes: ms.TmpfsSize, Mode: ms.TmpfsMode}
		}
		hc.Mounts = append(hc.Mounts, am)
	}
	if len(f.tmpfs) > 0 {
		hc.Tmpfs = map[string]string{}
		for _, t := range f.tmpfs {
			p, o, _ := strings.Cut(t, ":")
			hc.Tmpfs[p] = o
		}
	}
	if len(f.sysctls) > 0 {
		hc.Sysctls = map[string]string{}
		for _, s := range f.sysctls {
			k, v, ok := strings.Cut(s, "=")
			if !ok {
				return req, bad("--sysctl", s, "want KEY=VALUE")
			}
			hc.Sysctls[k] = v
		}
	}
	hc.DNS, hc.DNSSearch, hc.DNSOptions, hc.ExtraHosts, hc.PublishAllPorts = f.dns, f.dnsSearch, f.dnsOpts, f.addHosts, f.publishAll
	for _, h := range f.addHosts {
		if _, err := network.ParseAddHost(h); err != nil {
			return req, bad("--add-host", h, "want HOST:IP")
		}
	}
	for _, e := range f.expose {
		p := e
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if req.ExposedPorts == nil {
			req.ExposedPorts = map[string]struct{}{}
		}
		req.ExposedPorts[p] = struct{}{}
	}
	for _, p := range f.publish {
		ms, err := network.ParsePortSpec(p)
		if err != nil {
			return req, bad("-p, --publish", p, err.Error())
		}
		if hc.PortBindings == nil {
			hc.PortBindings = map[string][]api.PortBinding{}
		}
		for _, m := range ms {
			k := fmt.Sprintf("%d/%s", m.ContainerPort, m.Proto)
			hp := ""
			if m.HostPort != 0 {
				hp = strconv.Itoa(int(m.HostPort))
			}
			hc.PortBindings[k] = append(hc.PortBindings[k], api.PortBinding{HostIP: m.HostIP, HostPort: hp})
			if req.ExposedPorts == nil {
				req.ExposedPorts = map[string]struct{}{}
			}
			req.ExposedPorts[k] = struct{}{}
		}
	}
	if f.ip != "" || len(f.aliases) > 0 {
		req.NetworkingConfig = &api.NetworkingConfig{EndpointsConfig: map[string]*api.EndpointConfigRequest{
			f.network: {Aliases: f.aliases, IPAMConfig: &api.EndpointIPAMConfig{IPv4Address: f.ip}}}}
	}
	req.HostConfig = hc
	return req, nil
}

// readEnv merges --env-file files and -e values, in Docker's order.
func readEnv(files, vals []string) ([]string, error) {
	var env []string
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			return nil, &flagError{cmd: "run", err: fmt.Errorf("--env-file %s: %v", path, err)}
		}
		s := bufio.NewScanner(fh)
		for n := 1; s.Scan(); n++ {
			l := strings.TrimSpace(s.Text())
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if strings.ContainsAny(strings.SplitN(l, "=", 2)[0], " \t") {
				fh.Close()
				return nil, &flagError{cmd: "run", err: fmt.Errorf("--env-file %s line %d: variable name %q contains white space", path, n, strings.SplitN(l, "=", 2)[0])}
			}
			env = append(env, expandEnv(l)...)
		}
		fh.Close()
	}
	for _, v := range vals {
		env = append(env, expandEnv(v)...)
	}
	return env, nil
}

// expandEnv turns "KEY" into "KEY=value from this shell" (dropped if unset).
func expandEnv(v string) []string {
	if strings.Contains(v, "=") {
		return []string{v}
	}
	if val, ok := os.LookupEnv(v); ok {
		return []string{v + "=" + val}
	}
	return nil
}

func containerCreate(ctx context.Context, cl *client.Client, name string, req api.CreateRequest) (string, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	var resp api.CreateResponse
	err := cl.JSON(ctx, http.MethodPost, "/containers/create", q, req, &resp)
	if errdefs.Is(err, errdefs.ErrNotFound) && strings.Contains(err.Error(), "No such image") {
		// Pull it, as docker run does, then create again.
		if perr := pullMissing(ctx, cl, req.Image, os.Stderr); perr != nil {
			return "", perr
		}
		err = cl.JSON(ctx, http.MethodPost, "/containers/create", q, req, &resp)
	}
	if err != nil {
		return "", err
	}
	return resp.ID, nil
}

func newCreateCmd(g *globals) *cobra.Command {
	f := &createFlags{}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd.Flags(), args[0], args[1:])
			if err != nil {
				return err
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			id, err := containerCreate(cmd.Context(), cl, f.name, req)
			if err != nil {
				return &StatusError{Status: 125, Err: err}
			}
			fmt.Fprintln(g.out, id)
			return nil
		},
	}
	addCreateFlags(cmd.Flags(), f)
	return cmd
}

func newRunCmd(g *globals) *cobra.Command {
	f := &createFlags{}
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Long: `Create and run a new container from an image.

The exit status is the container's, or 125 when berth itself fails, 126 when
the command cannot be run and 127 when it cannot be found.`,
		Example: `  berth run --rm busybox echo hello
  berth run -d --name web --restart always -m 64m busybox httpd -f
  berth run -it busybox sh`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd.Flags(), args[0], args[1:])
			if err != nil {
				return err
			}
			if detach {
				// As docker run -d: nobody is attached, so stdin stays
				// open when a later attach ends (berth attach, detach keys).
				req.AttachStdin, req.AttachStdout, req.AttachStderr = false, false, false
				req.StdinOnce = false
			}
			cl, err := g.client()
			if err != nil {
				return &StatusError{Status: 125, Err: err}
			}
			return runContainer(cmd.Context(), g, cl, f, req, detach)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Run container in background and print container ID")
	cmd.Flags().BoolVar(&f.rm, "rm", false, "Automatically remove the container when it exits")
	addCreateFlags(cmd.Flags(), f)
	return cmd
}

func runContainer(ctx context.Context, g *globals, cl *client.Client, f *createFlags, req api.CreateRequest, detach bool) error {
	if f.tty && !detach && !term.IsTerminal(int(os.Stdin.Fd())) && f.interactive {
		return &StatusError{Status: 1, Err: errors.New("the input device is not a TTY (drop -t, or run from a terminal)")}
	}
	id, err := containerCreate(ctx, cl, f.name, req)
	if err != nil {
		return &StatusError{Status: 125, Err: err}
	}
	if detach {
		if err := cl.JSON(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
			return &StatusError{Status: startFailureStatus(err), Err: err}
		}
		fmt.Fprintln(g.out, id)
		return nil
	}
	cond := "next-exit"
	if f.rm {
		cond = "removed"
	}
	fail := func(err error) error { return &StatusError{Status: 125, Err: err} }
	startFail := func(err error) error {
		if f.rm {
			cl.JSON(context.Background(), http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}}, nil, nil)
		}
		return &StatusError{Status: startFailureStatus(err), Err: err}
	}
	return attachStartWait(ctx, g, cl, id, f.tty, f.interactive, cond, fail, startFail)
}

// attachStartWait is Docker's attached start: attach before the start so
// no output is lost, ask for the exit before the start so a fast exit is
// not missed, then copy the streams and return the container's status.
// fail wraps errors of the attach and wait requests, startFail the start's.
func attachStartWait(ctx context.Context, g *globals, cl *client.Client, id string, tty, stdin bool, cond string, fail, startFail func(error) error) error {
	q := url.Values{"stream": {"1"}, "stdout": {"1"}, "stderr": {"1"}}
	if stdin {
		q.Set("stdin", "1")
	}
	stream, err := cl.Hijack(ctx, http.MethodPost, "/containers/"+id+"/attach", q, nil)
	if err != nil {
		return fail(err)
	}
	defer stream.Close()
	waitResp, err := cl.Do(ctx, http.MethodPost, "/containers/"+id+"/wait", url.Values{"condition": {cond}}, nil, "")
	if err != nil {
		return fail(err)
	}
	defer waitResp.Body.Close()

	var restore func()
	if tty && term.IsTerminal(int(os.Stdin.Fd())) {
		if st, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
			restore = func() { term.Restore(int(os.Stdin.Fd()), st) }
			defer restore()
		}
	}
	if err := cl.JSON(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		if restore != nil {
			restore()
		}
		return startFail(err)
	}
	if tty {
		resizeLoop(ctx, cl, "/containers/"+id+"/resize")
	}
	<-pumpStreams(g, stream, tty, stdin)
	var wr api.WaitResponse
	if err := json.NewDecoder(waitResp.Body).Decode(&wr); err != nil {
		return fail(fmt.Errorf("waiting for container %s: %v", id[:12], err))
	}
	if wr.StatusCode != 0 {
		return &StatusError{Status: wr.StatusCode}
	}
	return nil
}

// startFailureStatus is Docker's exit status for a failed start.
func startFailureStatus(err error) int {
	switch {
	case errdefs.Is(err, errdefs.ErrCommandNotFound):
		return 127
	case errdefs.Is(err, errdefs.ErrCommandNotExecutable):
		return 126
	}
	return 125
}

// pumpStreams copies stdin to the stream and the stream to stdout/stderr;
// the returned channel closes when the output ends.
func pumpStreams(g *globals, s *client.Stream, tty, stdin bool) <-chan struct{} {
	done := make(chan struct{})
	if stdin {
		go func() {
			io.Copy(s, g.in)
			s.CloseWrite()
		}()
	}
	go func() {
		defer close(done)
		if tty {
			io.Copy(g.out, s)
			return
		}
		if err := client.Demux(s, g.out, g.err); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			fmt.Fprintln(g.err, "berth: reading container output:", err)
		}
	}()
	return done
}

// resizeLoop sends the terminal size now and on every SIGWINCH.
func resizeLoop(ctx context.Context, cl *client.Client, path string) {
	send := func() {
		w, h, err := term.GetSize(int(os.Stdout.Fd()))
		if err != nil {
			return
		}
		cl.JSON(ctx, http.MethodPost, path, url.Values{"h": {strconv.Itoa(h)}, "w": {strconv.Itoa(w)}}, nil, nil)
	}
	send()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	go func() {
		for {
			select {
			case <-ch:
				send()
			case <-ctx.Done():
				signal.Stop(ch)
				return
			}
		}
	}()
}
