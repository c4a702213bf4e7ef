package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

func containerCommands(g *globals) []*cobra.Command {
	cmds := []*cobra.Command{
		newRunCmd(g), newCreateCmd(g), newStartCmd(g), newStopCmd(g), newKillCmd(g), newRestartCmd(g),
		newRmCmd(g), newPsCmd(g), newLogsCmd(g), newExecCmd(g), newInspectCmd(g), newWaitCmd(g),
		newStatsCmd(g), newPauseCmd(g, "pause"), newPauseCmd(g, "unpause"), newRenameCmd(g), newTopCmd(g),
		newAttachCmd(g), newCpCmd(g), newPortCmd(g), newExportCmd(g), newUpdateCmd(g), newCommitCmd(g), newDiffCmd(g),
	}
	// `berth container ls|rm|…` mirrors `docker container …`.
	group := &cobra.Command{Use: "container", Short: "Manage containers"}
	for _, c := range []*cobra.Command{newRunCmd(g), newCreateCmd(g), newStartCmd(g), newStopCmd(g), newKillCmd(g),
		newRestartCmd(g), newRmCmd(g), newPsCmd(g), newLogsCmd(g), newExecCmd(g), newContainerInspectCmd(g),
		newWaitCmd(g), newStatsCmd(g), newPauseCmd(g, "pause"), newPauseCmd(g, "unpause"), newRenameCmd(g),
		newTopCmd(g), newContainerPruneCmd(g), newAttachCmd(g), newCpCmd(g), newPortCmd(g), newExportCmd(g),
		newUpdateCmd(g), newCommitCmd(g), newDiffCmd(g)} {
		if c.Name() == "ps" {
			c.Use = "ls [OPTIONS]"
			c.Aliases = []string{"ps", "list"}
		}
		group.AddCommand(c)
	}
	return append(cmds, group)
}

func newStartCmd(g *globals) *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if attach || interactive {
				if len(args) > 1 {
					return &flagError{cmd: "start", err: fmt.Errorf("you cannot start and attach multiple containers at once")}
				}
				return startAttached(ctx, g, cl, args[0], interactive)
			}
			return actOnEach(ctx, g, cl, args, http.MethodPost, "start", nil)
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Attach container's STDIN")
	return cmd
}

func startAttached(ctx context.Context, g *globals, cl *client.Client, id string, interactive bool) error {
	var j api.ContainerJSON
	if err := cl.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &j); err != nil {
		return err
	}
	tty := j.Config != nil && j.Config.Tty
	same := func(err error) error { return err }
	return attachStartWait(ctx, g, cl, j.ID, tty, interactive, "next-exit", same, same)
}

func newStopCmd(g *globals) *cobra.Command {
	var t int
	var sig string
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if cmd.Flags().Changed("time") {
				q.Set("t", strconv.Itoa(t))
			}
			if sig != "" {
				q.Set("signal", sig)
			}
			return actOnEach(cmd.Context(), g, cl, args, http.MethodPost, "stop", q)
		},
	}
	cmd.Flags().IntVarP(&t, "time", "t", 10, "Seconds to wait before killing the container")
	cmd.Flags().StringVarP(&sig, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func newRestartCmd(g *globals) *cobra.Command {
	var t int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if cmd.Flags().Changed("time") {
				q.Set("t", strconv.Itoa(t))
			}
			return actOnEach(cmd.Context(), g, cl, args, http.MethodPost, "restart", q)
		},
	}
	cmd.Flags().IntVarP(&t, "time", "t", 10, "Seconds to wait before killing the container")
	return cmd
}

func newKillCmd(g *globals) *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return actOnEach(cmd.Context(), g, cl, args, http.MethodPost, "kill", url.Values{"signal": {sig}})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "Signal to send to the container")
	return cmd
}

func newRmCmd(g *globals) *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if force {
				q.Set("force", "1")
			}
			if volumes {
				q.Set("v", "1")
			}
			return actOnEach(cmd.Context(), g, cl, args, http.MethodDelete, "", q)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "Remove anonymous volumes associated with the container")
	return cmd
}

func newPauseCmd(g *globals, action string) *cobra.Command {
	short := map[string]string{"pause": "Pause all processes within one or more containers",
		"unpause": "Unpause all processes within one or more containers"}[action]
	return &cobra.Command{
		Use:   action + " CONTAINER [CONTAINER...]",
		Short: short,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return actOnEach(cmd.Context(), g, cl, args, http.MethodPost, action, nil)
		},
	}
}

func newRenameCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return cl.JSON(cmd.Context(), http.MethodPost, "/containers/"+url.PathEscape(args[0])+"/rename", url.Values{"name": {args[1]}}, nil, nil)
		},
	}
}

func newWaitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return forEach(g, args, func(id string) error {
				var w api.WaitResponse
				if err := cl.JSON(cmd.Context(), http.MethodPost, "/containers/"+url.PathEscape(id)+"/wait", nil, nil, &w); err != nil {
					return err
				}
				fmt.Fprintln(g.out, w.StatusCode)
				return nil
			})
		},
	}
}

func newTopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER",
		Short: "Display the running processes of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var t api.TopResponse
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(args[0])+"/top", nil, nil, &t); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, strings.Join(t.Titles, "\t"))
			for _, p := range t.Processes {
				fmt.Fprintln(tw, strings.Join(p, "\t"))
			}
			return tw.Flush()
		},
	}
}

func newPsCmd(g *globals) *cobra.Command {
	var all, quiet, noTrunc, latest bool
	var filters []string
	var format string
	var last int
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Example: `  berth ps -a
  berth ps --filter status=exited --filter label=app=web
  berth ps --format '{{.ID}} {{.Names}} {{.Status}}'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if all || latest || last > 0 {
				q.Set("all", "1")
			}
			if latest {
				last = 1
			}
			if last > 0 {
				q.Set("limit", strconv.Itoa(last))
			}
			fj, err := filtersJSON(filters)
			if err != nil {
				return err
			}
			if fj != "" {
				q.Set("filters", fj)
			}
			var list []api.ContainerSummary
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/containers/json", q, nil, &list); err != nil {
				return err
			}
			if quiet {
				for _, c := range list {
					if noTrunc {
						fmt.Fprintln(g.out, c.ID)
					} else {
						fmt.Fprintln(g.out, c.ID[:12])
					}
				}
				return nil
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
			}
			rows := make([]any, len(list))
			for i, c := range list {
				rows[i] = psRow{c: c, trunc: !noTrunc}
			}
			return render(g.out, format, rows, map[string]string{"ID": "CONTAINER ID", "CreatedAt": "CREATED", "RunningFor": "CREATED"})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	f.BoolVarP(&quiet, "quiet", "q", false, "Only display container IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	f.BoolVarP(&latest, "latest", "l", false, "Show the latest created container (includes all states)")
	f.IntVarP(&last, "last", "n", -1, "Show n last created containers (includes all states)")
	f.StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided (id, name, label, status, exited, ancestor)")
	f.StringVar(&format, "format", "", "Format output using a Go template ('table …' for columns, 'json' for JSON)")
	return cmd
}

// filterQuery is the query of a list or prune request with --filter flags.
func filterQuery(fs []string) (url.Values, error) {
	q := url.Values{}
	fj, err := filtersJSON(fs)
	if err != nil {
		return nil, err
	}
	if fj != "" {
		q.Set("filters", fj)
	}
	return q, nil
}

// filtersJSON encodes repeated --filter k=v flags as the API wants them.
func filtersJSON(fs []string) (string, error) {
	if len(fs) == 0 {
		return "", nil
	}
	m := map[string]map[string]bool{}
	for _, f := range fs {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return "", &flagError{cmd: "ps", err: fmt.Errorf("bad format of filter %q (expected name=value)", f)}
		}
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][v] = true
	}
	b, _ := json.Marshal(m)
	return string(b), nil
}

// psRow is what `ps --format` templates see, with Docker's field names.
type psRow struct {
	c     api.ContainerSummary
	trunc bool
}

func (r psRow) ID() string {
	if r.trunc {
		return r.c.ID[:12]
	}
	return r.c.ID
}
func (r psRow) Image() string { return r.c.Image }
func (r psRow) Command() string {
	c := r.c.Command
	if r.trunc && len(c) > 20 {
		c = c[:19] + "…"
	}
	return strconv.Quote(c)
}
func (r psRow) CreatedAt() string {
	return units.HumanDuration(time.Since(time.Unix(r.c.Created, 0))) + " ago"
}
func (r psRow) RunningFor() string { return r.CreatedAt() }
func (r psRow) Status() string     { return r.c.Status }
func (r psRow) State() string      { return r.c.State }
func (r psRow) Ports() string {
	var ps []string
	for _, p := range r.c.Ports {
		if p.PublicPort != 0 {
			ps = append(ps, fmt.Sprintf("%s:%d->%d/%s", p.IP, p.PublicPort, p.PrivatePort, p.Type))
		} else {
			ps = append(ps, fmt.Sprintf("%d/%s", p.PrivatePort, p.Type))
		}
	}
	return strings.Join(ps, ", ")
}
func (r psRow) Names() string {
	var ns []string
	for _, n := range r.c.Names {
		ns = append(ns, strings.TrimPrefix(n, "/"))
	}
	return strings.Join(ns, ",")
}
func (r psRow) Labels() string {
	var ls []string
	for k, v := range r.c.Labels {
		ls = append(ls, k+"="+v)
	}
	return strings.Join(ls, ",")
}
func (r psRow) Label(k string) string { return r.c.Labels[k] }
func (r psRow) Networks() string      { return r.c.HostConfig.NetworkMode }
func (r psRow) Mounts() string        { return "" }
func (r psRow) Size() string          { return "" }
func (r psRow) JSON() any             { return r.c }

func newLogsCmd(g *globals) *cobra.Command {
	var follow, timestamps bool
	var tail, since, until string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var j api.ContainerJSON
			if err := cl.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(args[0])+"/json", nil, nil, &j); err != nil {
				return err
			}
			q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {tail}}
			if follow {
				q.Set("follow", "1")
			}
			if timestamps {
				q.Set("timestamps", "1")
			}
			if since != "" {
				q.Set("since", since)
			}
			if until != "" {
				q.Set("until", until)
			}
			resp, err := cl.Do(ctx, http.MethodGet, "/containers/"+j.ID+"/logs", q, nil, "")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if j.Config != nil && j.Config.Tty {
				_, err = copyOut(g.out, resp.Body)
				return err
			}
			// Write through buffers (a big log is many small frames);
			// a follower's lines go out as they come.
			stdout, stderr := bufio.NewWriterSize(g.out, 64<<10), bufio.NewWriterSize(g.err, 4<<10)
			var o, e io.Writer = stdout, stderr
			if follow {
				o, e = flushing{stdout}, flushing{stderr}
			}
			err = client.Demux(resp.Body, o, e)
			stdout.Flush()
			stderr.Flush()
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "Follow log output")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "Show timestamps")
	f.StringVarP(&tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	f.StringVar(&since, "since", "", "Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	f.StringVar(&until, "until", "", "Show logs before a timestamp or relative time")
	return cmd
}

// flushing flushes its buffer after every write.
type flushing struct{ w *bufio.Writer }

func (f flushing) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

func newExecCmd(g *globals) *cobra.Command {
	var interactive, tty, detach, privileged bool
	var env []string
	var workdir, user string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if tty && interactive && !term.IsTerminal(int(os.Stdin.Fd())) {
				return &StatusError{Status: 1, Err: fmt.Errorf("the input device is not a TTY (drop -t, or run from a terminal)")}
			}
			cfg := api.ExecConfig{Cmd: args[1:], Tty: tty, AttachStdin: interactive, AttachStdout: !detach,
				AttachStderr: !detach, Env: env, WorkingDir: workdir, User: user, Privileged: privileged, Detach: detach}
			var idr api.IDResponse
			if err := cl.JSON(ctx, http.MethodPost, "/containers/"+url.PathEscape(args[0])+"/exec", nil, cfg, &idr); err != nil {
				return &StatusError{Status: 1, Err: err}
			}
			if detach {
				return cl.JSON(ctx, http.MethodPost, "/exec/"+idr.ID+"/start", nil, api.ExecStartConfig{Detach: true}, nil)
			}
			s, err := cl.Hijack(ctx, http.MethodPost, "/exec/"+idr.ID+"/start", nil, api.ExecStartConfig{Tty: tty})
			if err != nil {
				return &StatusError{Status: startFailureStatus(err), Err: err}
			}
			defer s.Close()
			if tty && term.IsTerminal(int(os.Stdin.Fd())) {
				if st, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
					defer term.Restore(int(os.Stdin.Fd()), st)
				}
				resizeLoop(ctx, cl, "/exec/"+idr.ID+"/resize")
			}
			<-pumpStreams(g, s, tty, interactive)
			var in api.ExecInspect
			for i := 0; i < 100; i++ {
				if err := cl.JSON(ctx, http.MethodGet, "/exec/"+idr.ID+"/json", nil, nil, &in); err != nil {
					return err
				}
				if !in.Running {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if in.ExitCode != nil && *in.ExitCode != 0 {
				return &StatusError{Status: *in.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	f.BoolVarP(&tty, "tty", "t", false, "Allocate a pseudo-TTY")
	f.BoolVarP(&detach, "detach", "d", false, "Detached mode: run command in the background")
	f.BoolVar(&privileged, "privileged", false, "Give extended privileges to the command")
	f.StringArrayVarP(&env, "env", "e", nil, "Set environment variables")
	f.StringVarP(&workdir, "workdir", "w", "", "Working directory inside the container")
	f.StringVarP(&user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	return cmd
}

func newInspectCmd(g *globals) *cobra.Command {
	var format, typ string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on containers or images",
		Example: `  berth inspect -f '{{.State.Pid}} {{.State.ExitCode}}' web
  berth inspect -f '{{json .Config.Env}}' web`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return inspectObjects(cmd.Context(), g, cl, args, format, typ)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a Go template")
	cmd.Flags().StringVar(&typ, "type", "", "Only inspect objects of the given type (container, image)")
	return cmd
}

func newContainerInspectCmd(g *globals) *cobra.Command {
	c := newInspectCmd(g)
	c.Short = "Display detailed information on one or more containers"
	c.Flags().Set("type", "container")
	return c
}

func inspectObjects(ctx context.Context, g *globals, cl *client.Client, args []string, format, typ string) error {
	var objs []any
	failed := false
	for _, a := range args {
		var raw json.RawMessage
		var err error
		if typ == "" || typ == "container" {
			err = cl.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(a)+"/json", nil, nil, &raw)
		}
		if (typ == "" && errdefs.Is(err, errdefs.ErrNotFound)) || typ == "image" {
			err = cl.JSON(ctx, http.MethodGet, "/images/"+a+"/json", nil, nil, &raw)
		}
		if err != nil {
			if errdefs.Is(err, errdefs.ErrNotFound) {
				err = fmt.Errorf("Error: No such object: %s", a)
			}
			fmt.Fprintln(g.err, err)
			failed = true
			continue
		}
		var v any
		json.Unmarshal(raw, &v)
		objs = append(objs, v)
	}
	return printInspected(g, objs, format, failed)
}

// actOnEach sends one request per container argument and prints each
// argument that succeeded, as Docker's multi-container commands do.
func actOnEach(ctx context.Context, g *globals, cl *client.Client, args []string, method, action string, q url.Values) error {
	return forEach(g, args, func(id string) error {
		path := "/containers/" + url.PathEscape(id)
		if action != "" {
			path += "/" + action
		}
		if err := cl.JSON(ctx, method, path, q, nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(g.out, id)
		return nil
	})
}

// printInspected prints inspected objects as a JSON array (indented like
// Docker's) or through a template; failed makes the status 1.
func printInspected(g *globals, objs []any, format string, failed bool) error {
	if format == "" {
		if objs == nil {
			objs = []any{}
		}
		b, _ := json.MarshalIndent(objs, "", "    ")
		fmt.Fprintln(g.out, string(b))
	} else if err := renderEach(g.out, format, objs); err != nil {
		return &StatusError{Status: 1, Err: err}
	}
	if failed {
		return &StatusError{Status: 1}
	}
	return nil
}

// inspectRaw prints the JSON of objects at pathOf(name), or a template of
// each, as `volume inspect` and `network inspect` do.
func inspectRaw(cmd *cobra.Command, g *globals, cl *client.Client, names []string, format string, pathOf func(string) string) error {
	var objs []any
	failed := false
	for _, n := range names {
		var v any
		if err := cl.JSON(cmd.Context(), http.MethodGet, pathOf(n), nil, nil, &v); err != nil {
			fmt.Fprintln(g.err, err)
			failed = true
			continue
		}
		objs = append(objs, v)
	}
	return printInspected(g, objs, format, failed)
}

func newStatsCmd(g *globals) *cobra.Command {
	var all, noStream, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if len(args) == 0 {
				q := url.Values{}
				if all {
					q.Set("all", "1")
				}
				var list []api.ContainerSummary
				if err := cl.JSON(ctx, http.MethodGet, "/containers/json", q, nil, &list); err != nil {
					return err
				}
				for _, c := range list {
					args = append(args, c.ID)
				}
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
			}
			for {
				rows := []any{}
				for _, id := range args {
					var s api.Stats
					if err := cl.JSON(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/stats", url.Values{"stream": {"0"}}, nil, &s); err != nil {
						return err
					}
					rows = append(rows, statsRow{s: s, trunc: !noTrunc})
				}
				if !noStream {
					fmt.Fprint(g.out, "\033[2J\033[H")
				}
				if err := render(g.out, format, rows, map[string]string{"ID": "CONTAINER ID", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O"}); err != nil {
					return err
				}
				if noStream {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "Disable streaming stats and only pull the first result")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Do not truncate output")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a Go template")
	return cmd
}

type statsRow struct {
	s     api.Stats
	trunc bool
}

func (r statsRow) ID() string {
	if r.trunc && len(r.s.ID) > 12 {
		return r.s.ID[:12]
	}
	return r.s.ID
}
func (r statsRow) Container() string { return r.ID() }
func (r statsRow) Name() string      { return strings.TrimPrefix(r.s.Name, "/") }
func (r statsRow) CPUPerc() string {
	cpu := float64(r.s.CPUStats.CPUUsage.TotalUsage) - float64(r.s.PreCPUStats.CPUUsage.TotalUsage)
	sys := float64(r.s.CPUStats.SystemUsage) - float64(r.s.PreCPUStats.SystemUsage)
	p := 0.0
	if sys > 0 && cpu > 0 {
		p = cpu / sys * float64(r.s.CPUStats.OnlineCPUs) * 100
	}
	return fmt.Sprintf("%.2f%%", p)
}
func (r statsRow) memUsed() float64 {
	u := float64(r.s.MemoryStats.Usage) - float64(r.s.MemoryStats.Stats["inactive_file"])
	if u < 0 {
		u = float64(r.s.MemoryStats.Usage)
	}
	return u
}
func (r statsRow) MemUsage() string {
	return units.BytesSize(r.memUsed()) + " / " + units.BytesSize(float64(r.s.MemoryStats.Limit))
}
func (r statsRow) MemPerc() string {
	if r.s.MemoryStats.Limit == 0 {
		return "0.00%"
	}
	return fmt.Sprintf("%.2f%%", r.memUsed()/float64(r.s.MemoryStats.Limit)*100)
}
func (r statsRow) NetIO() string { return "0B / 0B" }
func (r statsRow) BlockIO() string {
	var rd, wr uint64
	for _, e := range r.s.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			rd += e.Value
		case "write":
			wr += e.Value
		}
	}
	return units.HumanSize(int64(rd)) + " / " + units.HumanSize(int64(wr))
}
func (r statsRow) PIDs() string { return strconv.FormatUint(r.s.PidsStats.Current, 10) }
func (r statsRow) JSON() any    { return r.s }

func newContainerPruneCmd(g *globals) *cobra.Command {
	var force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force && !confirm(g, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ") {
				return nil
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			rep, err := pruneContainers(cmd.Context(), cl, filters)
			if err != nil {
				return err
			}
			if len(rep.ContainersDeleted) > 0 {
				fmt.Fprintln(g.out, "Deleted Containers:")
				for _, id := range rep.ContainersDeleted {
					fmt.Fprintln(g.out, id)
				}
				fmt.Fprintln(g.out)
			}
			fmt.Fprintf(g.out, "Total reclaimed space: %s\n", units.HumanSize(int64(rep.SpaceReclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "Provide filter values (e.g. 'until=<timestamp>', 'label=k=v')")
	return cmd
}

func pruneContainers(ctx context.Context, cl *client.Client, filters []string) (api.PruneReport, error) {
	q, err := filterQuery(filters)
	if err != nil {
		return api.PruneReport{}, err
	}
	var rep api.PruneReport
	err = cl.JSON(ctx, http.MethodPost, "/containers/prune", q, nil, &rep)
	return rep, err
}
