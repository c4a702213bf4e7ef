package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/errdefs"
)

// BuildVersion is set at link time (-X) to berth's version.
var BuildVersion = "dev"

// router maps the engine API. Every route is served both unversioned and
// under /vX.Y/, as the Docker Engine API is.
func (d *Daemon) router() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /_ping", d.ping)
	m.HandleFunc("HEAD /_ping", d.ping)
	m.HandleFunc("GET /version", d.version)
	m.HandleFunc("GET /info", d.info)
	m.HandleFunc("GET /events", d.eventsHandler)
	m.HandleFunc("POST /auth", d.postAuth)

	m.HandleFunc("POST /containers/create", d.postContainersCreate)
	m.HandleFunc("GET /containers/json", d.getContainersJSON)
	m.HandleFunc("POST /containers/prune", d.postContainersPrune)
	m.HandleFunc("GET /containers/{id}/json", d.getContainerJSON)
	m.HandleFunc("POST /containers/{id}/start", d.postContainerStart)
	m.HandleFunc("POST /containers/{id}/stop", d.postContainerStop)
	m.HandleFunc("POST /containers/{id}/restart", d.postContainerRestart)
	m.HandleFunc("POST /containers/{id}/kill", d.postContainerKill)
	m.HandleFunc("POST /containers/{id}/pause", d.postContainerPause)
	m.HandleFunc("POST /containers/{id}/unpause", d.postContainerUnpause)
	m.HandleFunc("POST /containers/{id}/wait", d.postContainerWait)
	m.HandleFunc("POST /containers/{id}/rename", d.postContainerRename)
	m.HandleFunc("POST /containers/{id}/resize", d.postContainerResize)
	m.HandleFunc("POST /containers/{id}/attach", d.postContainerAttach)
	m.HandleFunc("GET /containers/{id}/logs", d.getContainerLogs)
	m.HandleFunc("GET /containers/{id}/stats", d.getContainerStats)
	m.HandleFunc("GET /containers/{id}/top", d.getContainerTop)
	m.HandleFunc("GET /containers/{id}/archive", d.getContainerArchive)
	m.HandleFunc("HEAD /containers/{id}/archive", d.getContainerArchive)
	m.HandleFunc("PUT /containers/{id}/archive", d.putContainerArchive)
	m.HandleFunc("GET /containers/{id}/export", d.getContainerExport)
	m.HandleFunc("GET /containers/{id}/changes", d.getContainerChanges)
	m.HandleFunc("POST /commit", d.postCommit)
	m.HandleFunc("POST /containers/{id}/update", d.postContainerUpdate)
	m.HandleFunc("DELETE /containers/{id}", d.deleteContainer)
	m.HandleFunc("POST /containers/{id}/exec", d.postContainerExec)
	m.HandleFunc("POST /exec/{id}/start", d.postExecStart)
	m.HandleFunc("POST /exec/{id}/resize", d.postExecResize)
	m.HandleFunc("GET /exec/{id}/json", d.getExecJSON)

	m.HandleFunc("GET /volumes", d.getVolumes)
	m.HandleFunc("POST /volumes/create", d.postVolumesCreate)
	m.HandleFunc("POST /volumes/prune", d.postVolumesPrune)
	m.HandleFunc("GET /volumes/{name}", d.getVolume)
	m.HandleFunc("DELETE /volumes/{name}", d.deleteVolume)

	m.HandleFunc("GET /networks", d.getNetworks)
	m.HandleFunc("POST /networks/create", d.postNetworksCreate)
	m.HandleFunc("POST /networks/prune", d.postNetworksPrune)
	m.HandleFunc("GET /networks/{id}", d.getNetwork)
	m.HandleFunc("DELETE /networks/{id}", d.deleteNetwork)
	m.HandleFunc("POST /networks/{id}/connect", d.postNetworkConnect)
	m.HandleFunc("POST /networks/{id}/disconnect", d.postNetworkDisconnect)

	m.HandleFunc("GET /images/json", d.getImagesJSON)
	m.HandleFunc("POST /images/load", d.postImagesLoad)
	m.HandleFunc("GET /images/get", d.getImagesGet)
	m.HandleFunc("POST /images/create", d.postImagesCreate)
	m.HandleFunc("POST /images/prune", d.postImagesPrune)
	m.HandleFunc("GET /images/search", d.getImagesSearch)
	m.HandleFunc("POST /build", d.postBuild)
	m.HandleFunc("POST /build/prune", d.postBuildPrune)
	// Image names contain slashes, so /images/{name}/... is routed by hand.
	m.HandleFunc("/images/", d.imagesByName)

	m.HandleFunc("GET /system/df", d.getSystemDF)
	return versionPrefix(jsonNotFound(m))
}

// jsonNotFound answers unknown routes with Docker's JSON error body
// instead of the mux's plain text.
func jsonNotFound(m *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, p := m.Handler(r); p == "" {
			notFound(w, r)
			return
		}
		m.ServeHTTP(w, r)
	})
}

// versionPrefix strips /vX.Y from the path and refuses versions berth
// does not speak.
func versionPrefix(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", api.Version)
		w.Header().Set("Server", "Berth/"+BuildVersion+" (linux)")
		w.Header().Set("Ostype", "linux")
		if strings.HasPrefix(r.URL.Path, "/v") {
			rest := r.URL.Path[2:]
			if i := strings.IndexByte(rest, '/'); i > 0 {
				v := rest[:i]
				if _, err := strconv.ParseFloat(v, 64); err == nil {
					if versionLess(v, api.MinVersion) {
						writeError(w, fmt.Errorf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version: %w", v, api.MinVersion, errdefs.ErrInvalidArgument))
						return
					}
					r.URL.Path = rest[i:]
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func versionLess(a, b string) bool {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	ma, _ := strconv.Atoi(pa[0])
	mb, _ := strconv.Atoi(pb[0])
	if ma != mb {
		return ma < mb
	}
	na, nb := 0, 0
	if len(pa) > 1 {
		na, _ = strconv.Atoi(pa[1])
	}
	if len(pb) > 1 {
		nb, _ = strconv.Atoi(pb[1])
	}
	return na < nb
}

func writeJSONResponse(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError translates an error class to Docker's status code and body.
func writeError(w http.ResponseWriter, err error) {
	writeJSONResponse(w, errdefs.HTTPStatus(err), api.ErrorResponse{Message: errorMessage(err), Kind: errdefs.Kind(err)})
}

// errorMessage is err's text without the trailing class names that %w
// wrapping leaves ("…: not found").
func errorMessage(err error) string {
	msg := err.Error()
	for {
		trimmed := false
		for _, k := range []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
			errdefs.ErrConflict, errdefs.ErrUnavailable, errdefs.ErrNotImplemented, errdefs.ErrForbidden,
			errdefs.ErrUnauthorized, errdefs.ErrCommandNotFound, errdefs.ErrCommandNotExecutable} {
			if errors.Is(err, k) && strings.HasSuffix(msg, ": "+k.Error()) &&
				k != errdefs.ErrCommandNotFound && k != errdefs.ErrCommandNotExecutable {
				msg = strings.TrimSuffix(msg, ": "+k.Error())
				trimmed = true
			}
		}
		if !trimmed {
			return msg
		}
	}
}

func decodeBody(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	if err := dec.Decode(v); err != nil && err != io.EOF {
		return fmt.Errorf("invalid JSON body: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func boolParam(r *http.Request, name string) bool {
	v := strings.ToLower(r.URL.Query().Get(name))
	return v == "1" || v == "true" || v == "yes"
}

func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("invalid value for %s: %q is not a number: %w", name, v, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

func (d *Daemon) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Docker-Experimental", "false")
	w.Header().Set("Builder-Version", "1") // the legacy /build API; no BuildKit session
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.WriteString(w, "OK")
	}
}

func kernelVersion() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func (d *Daemon) version(w http.ResponseWriter, r *http.Request) {
	v := api.VersionResponse{Version: BuildVersion, APIVersion: api.Version, MinAPIVersion: api.MinVersion,
		GoVersion: goruntime.Version(), Os: goruntime.GOOS, Arch: goruntime.GOARCH, KernelVersion: kernelVersion()}
	v.Platform.Name = "berth"
	v.GitCommit = BuildVersion
	v.Components = []api.VersionComponent{{Name: "Engine", Version: BuildVersion, Details: map[string]string{
		"ApiVersion": v.APIVersion, "MinAPIVersion": v.MinAPIVersion, "GitCommit": v.GitCommit, "GoVersion": v.GoVersion,
		"Os": v.Os, "Arch": v.Arch, "KernelVersion": v.KernelVersion, "Experimental": "false"}}}
	writeJSONResponse(w, 200, v)
}

func (d *Daemon) info(w http.ResponseWriter, r *http.Request) {
	in := api.Info{ID: "berth", Driver: "overlay2", MemoryLimit: true, SwapLimit: true, CPUCfsPeriod: true,
		CPUCfsQuota: true, PidsLimit: true, KernelVersion: kernelVersion(), OperatingSystem: osName(),
		OSType: "linux", Architecture: goruntime.GOARCH, NCPU: goruntime.NumCPU(), MemTotal: memTotal(),
		DockerRootDir: d.cfg.Root, ServerVersion: BuildVersion, CgroupDriver: "cgroupfs",
		DefaultRuntime: d.cfg.DefaultRuntime, Runtimes: map[string]api.RuntimeInfo{},
		SecurityOptions: []string{"name=seccomp,profile=builtin", "name=no-new-privileges"}}
	in.Name, _ = os.Hostname()
	in.Labels, in.Warnings = []string{}, []string{}
	in.LoggingDriver = "json-file"
	in.LiveRestoreEnabled = true // containers outlive the daemon
	in.Swarm.LocalNodeState = "inactive"
	in.Plugins = api.PluginsInfo{Volume: []string{"local"}, Network: []string{"bridge", "host", "null"}, Log: []string{"json-file", "local"}}
	in.IndexServerAddress = "https://index.docker.io/v1/"
	in.SystemTime = time.Now().Format(time.RFC3339Nano)
	in.NGoroutines = goruntime.NumGoroutine()
	in.CgroupVersion = "1"
	if d.cgroupV2 {
		in.CgroupVersion = "2"
	}
	for _, n := range []string{"crun", "runc"} {
		if rt, err := d.runtimeFor(n); err == nil {
			in.Runtimes[n] = api.RuntimeInfo{Path: rt.Path}
		}
	}
	for n, rc := range d.cfg.Runtimes {
		in.Runtimes[n] = api.RuntimeInfo{Path: rc.Path}
	}
	for _, c := range d.ctrs.List() {
		c.Mu.Lock()
		in.Containers++
		switch {
		case c.State.Paused:
			in.ContainersPaused++
		case c.State.Running:
			in.ContainersRunning++
		default:
			in.ContainersStopped++
		}
		c.Mu.Unlock()
	}
	in.Images = len(d.images.List())
	writeJSONResponse(w, 200, in)
}

func osName() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
	return kb << 10
}

func (d *Daemon) eventsHandler(w http.ResponseWriter, r *http.Request) {
	filters, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = filters.validate(eventFilters...)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	var since, until time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		if since, err = parseTimeParam(s); err != nil {
			writeError(w, err)
			return
		}
	}
	if s := r.URL.Query().Get("until"); s != "" {
		if until, err = parseTimeParam(s); err != nil {
			writeError(w, err)
			return
		}
	}
	past, ch, cancel := d.events.subscribe(since)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	send := func(e Event) bool {
		if !until.IsZero() && e.at.After(until) {
			return false
		}
		if filters.matchEvent(e) {
			if enc.Encode(e) != nil {
				return false
			}
			if fl != nil {
				fl.Flush()
			}
		}
		return true
	}
	for _, e := range past {
		if !send(e) {
			return
		}
	}
	var deadline <-chan time.Time
	if !until.IsZero() {
		deadline = time.After(time.Until(until))
	}
	for {
		select {
		case e := <-ch:
			if !send(e) {
				return
			}
		case <-deadline:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// hijack takes over the connection for a raw stream, answering 101 when the
// client asked for an upgrade and 200 otherwise, as dockerd does.
func hijack(w http.ResponseWriter, r *http.Request, contentType string) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("connection cannot be hijacked: %w", errdefs.ErrInvalidArgument)
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	conn.SetDeadline(time.Time{})
	if r.Header.Get("Upgrade") != "" {
		fmt.Fprintf(rw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", contentType)
	} else {
		fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n\r\n", contentType)
	}
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, rw, nil
}

// streamDelay is how long output is held back after the 101 response for
// clients that read a hijacked stream below their HTTP buffer.
const streamDelay = 100 * time.Millisecond

// hijackedOutput is the writer for a hijacked stream's output. docker-py
// (and so docker-compose v1) reads the response head through Python's
// buffered reader and then the raw socket beneath it, so bytes that arrive
// together with the head are lost; dockerd never notices because starting
// a process takes it longer than that. For those clients the first output
// is held until streamDelay after the head; the Go clients read the
// stream through the same buffer and get everything at once.
func hijackedOutput(w io.Writer, r *http.Request) io.Writer {
	// docker-py: "docker-sdk-python/7.1.0"; docker-compose v1:
	// "docker-compose/1.29.2 docker-py/5.0.3 Linux/…".
	ua := strings.ToLower(r.Header.Get("User-Agent"))
	if !strings.Contains(ua, "python") && !strings.Contains(ua, "docker-py/") {
		return w
	}
	return &delayedWriter{w: w, until: time.Now().Add(streamDelay)}
}

type delayedWriter struct {
	w     io.Writer
	once  sync.Once
	until time.Time
}

func (d *delayedWriter) Write(p []byte) (int, error) {
	d.once.Do(func() { time.Sleep(time.Until(d.until)) })
	return d.w.Write(p)
}

// closeWriter half-closes a hijacked connection so the client sees EOF.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
