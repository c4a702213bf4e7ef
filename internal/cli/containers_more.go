package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/units"
)

func newPortCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Example: `  berth port web
  berth port web 80/tcp`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return &flagError{cmd: "port", err: fmt.Errorf("%q requires at least 1 and at most 2 arguments\nUsage: %s", cmd.CommandPath(), cmd.UseLine())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			want := ""
			if len(args) == 2 {
				p, err := normalizePort(args[1])
				if err != nil {
					return &flagError{cmd: "port", err: err}
				}
				want = p
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			var j api.ContainerJSON
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(args[0])+"/json", nil, nil, &j); err != nil {
				return err
			}
			var ports map[string][]api.PortBinding
			if j.NetworkSettings != nil {
				ports = j.NetworkSettings.Ports
			}
			lines, ok := portLines(ports, want)
			if !ok {
				return fmt.Errorf("Error: No public port '%s' published for %s", want, args[0])
			}
			for _, l := range lines {
				fmt.Fprintln(g.out, l)
			}
			return nil
		},
	}
}

// normalizePort checks a PRIVATE_PORT[/PROTO] argument and gives it as
// the API keys ports ("80/tcp").
func normalizePort(s string) (string, error) {
	port, proto, hasProto := strings.Cut(s, "/")
	if !hasProto {
		proto = "tcp"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("invalid port %q: want PRIVATE_PORT[/PROTO], such as 80 or 53/udp", s)
	}
	switch proto = strings.ToLower(proto); proto {
	case "tcp", "udp", "sctp":
	default:
		return "", fmt.Errorf("invalid protocol %q in %q: want tcp, udp or sctp", proto, s)
	}
	return fmt.Sprintf("%d/%s", n, proto), nil
}

// portLines is docker port's output: with want "" every published
// binding as "80/tcp -> 0.0.0.0:8080" in port order, else want's host
// addresses alone. ok is false when want is not published.
func portLines(ports map[string][]api.PortBinding, want string) (lines []string, ok bool) {
	hostAddr := func(b api.PortBinding) string {
		ip := b.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		return net.JoinHostPort(ip, b.HostPort)
	}
	if want != "" {
		for _, b := range ports[want] {
			lines = append(lines, hostAddr(b))
		}
		return lines, len(lines) > 0
	}
	keys := make([]string, 0, len(ports))
	for k := range ports {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		pa, qa, _ := strings.Cut(keys[a], "/")
		pb, qb, _ := strings.Cut(keys[b], "/")
		na, _ := strconv.Atoi(pa)
		nb, _ := strconv.Atoi(pb)
		if na != nb {
			return na < nb
		}
		return qa < qb
	})
	for _, k := range keys {
		for _, b := range ports[k] {
			lines = append(lines, k+" -> "+hostAddr(b))
		}
	}
	return lines, true
}

func newEventsCmd(g *globals) *cobra.Command {
	var since, until, format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Long: `Get real time events from the server: one line per event, as they happen.
With --since, past events the daemon still holds come first; with --until
the stream ends at that time. Times are Unix timestamps, RFC 3339 dates or
durations before now (10m, 1h30m).`,
		Example: `  berth events --filter type=container --filter event=die
  berth events --since 10m --until 0s --format '{{json .}}'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for flag, v := range map[string]string{"since": since, "until": until} {
				if v == "" {
					continue
				}
				ts, err := eventTime(v, time.Now())
				if err != nil {
					return &flagError{cmd: "events", err: fmt.Errorf("invalid argument %q for \"--%s\" flag: %v", v, flag, err)}
				}
				q.Set(flag, ts)
			}
			fj, err := filtersJSON(filters)
			if err != nil {
				return forCmd("events", err)
			}
			if fj != "" {
				q.Set("filters", fj)
			}
			var tmpl func(api.Event) (string, error)
			if format != "" {
				t, err := parseTemplate(format)
				if err != nil {
					return forCmd("events", err)
				}
				tmpl = func(e api.Event) (string, error) {
					var b strings.Builder
					err := t.Execute(&b, e)
					return b.String(), err
				}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			resp, err := cl.Do(cmd.Context(), http.MethodGet, "/events", q, nil, "")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			out := bufio.NewWriter(g.out)
			dec := json.NewDecoder(resp.Body)
			for {
				var e api.Event
				if err := dec.Decode(&e); err != nil {
					if errors.Is(err, io.EOF) || cmd.Context().Err() != nil {
						return nil
					}
					return fmt.Errorf("reading events: %v", err)
				}
				line := eventLine(e)
				if tmpl != nil {
					if line, err = tmpl(e); err != nil {
						return fmt.Errorf("template: %v", err)
					}
				}
				fmt.Fprintln(out, line)
				if err := out.Flush(); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "Show all events created since timestamp")
	f.StringVar(&until, "until", "", "Stream events until this timestamp")
	f.StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided (type, event, container, image, label, network, volume)")
	f.StringVar(&format, "format", "", "Format output using a Go template ('{{json .}}' for JSON)")
	return cmd
}

// eventTime is Docker's reading of --since/--until: a duration is that
// long before now, anything else (Unix seconds, RFC 3339) goes to the
// daemon as given, which checks it.
func eventTime(s string, now time.Time) (string, error) {
	if d, err := time.ParseDuration(s); err == nil {
		t := now.Add(-d)
		return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()), nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()), nil
		}
	}
	return "", errors.New("want a Unix timestamp, an RFC 3339 date or a duration such as 10m")
}

// eventLine is docker events' default line: the time, type, action and
// object, then the attributes sorted by key.
func eventLine(e api.Event) string {
	var b strings.Builder
	const rfc3339NanoFixed = "2006-01-02T15:04:05.000000000Z07:00"
	if e.TimeNano != 0 {
		b.WriteString(time.Unix(0, e.TimeNano).Format(rfc3339NanoFixed) + " ")
	} else if e.Time != 0 {
		b.WriteString(time.Unix(e.Time, 0).Format(rfc3339NanoFixed) + " ")
	}
	fmt.Fprintf(&b, "%s %s %s", e.Type, e.Action, e.Actor.ID)
	if len(e.Actor.Attributes) > 0 {
		keys := make([]string, 0, len(e.Actor.Attributes))
		for k := range e.Actor.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			keys[i] = k + "=" + e.Actor.Attributes[k]
		}
		b.WriteString(" (" + strings.Join(keys, ", ") + ")")
	}
	return b.String()
}

func newExportCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Example: `  berth export web > web.tar
  berth export -o web.tar web`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tty, _ := isTerminal(g.out); output == "" && tty {
				return &flagError{cmd: "export", err: errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			resp, err := cl.Do(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(args[0])+"/export", nil, nil, "")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if output == "" {
				_, err := copyOut(g.out, resp.Body)
				return err
			}
			return writeFileAtomic(output, resp.Body)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// writeFileAtomic writes r to path through a temporary file next to it,
// so a failed transfer leaves no partial file behind.
func writeFileAtomic(path string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("failed to export container: %v", err)
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("failed to export container: %v", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	os.Chmod(tmp.Name(), 0o644)
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

func newUpdateCmd(g *globals) *cobra.Command {
	var memory, memorySwap, memoryReservation, restart string
	var cpus float64
	var cpuShares, cpuPeriod, cpuQuota, pidsLimit int64
	var blkioWeight uint16
	var cpusetCpus string
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Long: `Update the resource limits and restart policy of one or more containers.
A running container gets the new limits at once, a stopped one at its next
start. Values not given stay as they are.`,
		Example: `  berth update --cpus 0.5 -m 128m --memory-swap 256m web
  berth update --restart on-failure:3 web worker`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			any := false
			for _, n := range updateFlags {
				any = any || fs.Changed(n)
			}
			if !any {
				return &flagError{cmd: "update", err: errors.New("you must provide one or more flags when using this command")}
			}
			bad := func(flag, val, want string) error {
				return &flagError{cmd: "update", err: fmt.Errorf("invalid argument %q for %q flag: %s", val, flag, want)}
			}
			var u api.UpdateConfig
			for flag, dst := range map[string]*int64{"memory": &u.Memory, "memory-swap": &u.MemorySwap, "memory-reservation": &u.MemoryReservation} {
				v, _ := fs.GetString(flag)
				if !fs.Changed(flag) {
					continue
				}
				if flag == "memory-swap" && v == "-1" {
					*dst = -1
					continue
				}
				n, err := units.RAMInBytes(v)
				if err != nil || n <= 0 {
					name := "--" + flag
					if flag == "memory" {
						name = "-m, --memory"
					}
					return bad(name, v, "want a size such as 64m or 1g")
				}
				*dst = n
			}
			if fs.Changed("cpus") {
				if cpus <= 0 {
					return bad("--cpus", fs.Lookup("cpus").Value.String(), "want a positive number of CPUs")
				}
				u.NanoCPUs = int64(cpus * 1e9)
			}
			u.CPUShares, u.CPUPeriod, u.CPUQuota, u.CpusetCpus, u.BlkioWeight = cpuShares, cpuPeriod, cpuQuota, cpusetCpus, blkioWeight
			if fs.Changed("pids-limit") {
				p := pidsLimit
				u.PidsLimit = &p
			}
			if fs.Changed("restart") {
				rp, err := parseRestart(restart)
				if err != nil {
					return bad("--restart", restart, err.Error())
				}
				u.RestartPolicy = rp
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			return forEach(g, args, func(id string) error {
				var r api.UpdateResponse
				if err := cl.JSON(cmd.Context(), http.MethodPost, "/containers/"+url.PathEscape(id)+"/update", nil, u, &r); err != nil {
					return err
				}
				for _, w := range r.Warnings {
					fmt.Fprintln(g.err, "WARNING:", w)
				}
				fmt.Fprintln(g.out, id)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.Float64Var(&cpus, "cpus", 0, "Number of CPUs")
	f.Int64VarP(&cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	f.Int64Var(&cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	f.Int64Var(&cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	f.StringVar(&cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	f.Uint16Var(&blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)")
	f.StringVarP(&memory, "memory", "m", "", "Memory limit")
	f.StringVar(&memorySwap, "memory-swap", "", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	f.StringVar(&memoryReservation, "memory-reservation", "", "Memory soft limit")
	f.Int64Var(&pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	f.StringVar(&restart, "restart", "", "Restart policy to apply when a container exits (no, on-failure[:max-retries], always, unless-stopped)")
	return cmd
}

// updateFlags are the flags of update that change something.
var updateFlags = []string{"cpus", "cpu-shares", "cpu-period", "cpu-quota", "cpuset-cpus", "blkio-weight",
	"memory", "memory-swap", "memory-reservation", "pids-limit", "restart"}

// forCmd names cmd in a usage error made by a shared helper.
func forCmd(cmd string, err error) error {
	var fe *flagError
	if errors.As(err, &fe) {
		fe.cmd = cmd
	}
	return err
}

// parseRestart reads a --restart value: no, always, unless-stopped or
// on-failure[:max-retries].
func parseRestart(s string) (api.RestartPolicy, error) {
	name, max, hasMax := strings.Cut(s, ":")
	rp := api.RestartPolicy{Name: name}
	switch name {
	case "no", "always", "unless-stopped", "on-failure":
	default:
		return rp, errors.New("want no, always, unless-stopped or on-failure[:max-retries]")
	}
	if hasMax {
		n, err := strconv.Atoi(max)
		if err != nil || n < 0 || name != "on-failure" {
			return rp, errors.New("want no, always, unless-stopped or on-failure[:max-retries]")
		}
		rp.MaximumRetryCount = n
	}
	return rp, nil
}
