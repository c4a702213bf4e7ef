package streaming

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/engine/client"
)

// logOptions are the kubelet's containerLogs parameters.
type logOptions struct {
	follow, previous, timestamps bool
	tail                         int64 // -1: all
	since                        time.Time
	limitBytes                   int64 // 0: no limit
}

func parseLogOptions(q url.Values) (logOptions, error) {
	o := logOptions{tail: -1}
	var err error
	if o.follow, err = boolParam(q, "follow"); err != nil {
		return o, err
	}
	if o.previous, err = boolParam(q, "previous"); err != nil {
		return o, err
	}
	if o.timestamps, err = boolParam(q, "timestamps"); err != nil {
		return o, err
	}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("invalid tailLines %q: want a number of lines >= 0", v)
		}
		o.tail = n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("invalid limitBytes %q: want a number of bytes >= 1", v)
		}
		o.limitBytes = n
	}
	sinceSeconds, sinceTime := q.Get("sinceSeconds"), q.Get("sinceTime")
	switch {
	case sinceSeconds != "" && sinceTime != "":
		return o, fmt.Errorf("sinceSeconds and sinceTime cannot both be set")
	case sinceSeconds != "":
		n, err := strconv.ParseInt(sinceSeconds, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("invalid sinceSeconds %q: want a number of seconds >= 1", sinceSeconds)
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	case sinceTime != "":
		t, err := time.Parse(time.RFC3339, sinceTime)
		if err != nil {
			return o, fmt.Errorf("invalid sinceTime %q: want an RFC 3339 time such as 2024-01-02T15:04:05Z", sinceTime)
		}
		o.since = t
	}
	return o, nil
}

// boolParam reads a query flag: absent is false, present without a value
// is true, otherwise strconv.ParseBool.
func boolParam(q url.Values, name string) (bool, error) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return false, nil
	}
	if vs[0] == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return false, fmt.Errorf("invalid %s=%q: want true or false", name, vs[0])
	}
	return b, nil
}

// serveLogs streams a container's log as plain text, stdout and stderr
// merged, as the kubelet does.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	p, container := refOf(r), r.PathValue("container")
	o, err := parseLogOptions(r.URL.Query())
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
		return
	}
	ins, err := s.instances(r.Context(), p, container)
	if err != nil {
		writeError(w, err)
		return
	}
	var target instance
	switch {
	case o.previous && len(ins) < 2:
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("previous terminated container %q in pod %q not found", container, p.name))
		return
	case o.previous:
		target = ins[1]
	case len(ins) == 0:
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("container %q in pod %q is waiting to start: no container has been created on this node yet", container, p.name))
		return
	default:
		target = ins[0]
	}
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}}
	if o.follow {
		q.Set("follow", "1")
	}
	if o.timestamps {
		q.Set("timestamps", "1")
	}
	if o.tail >= 0 {
		q.Set("tail", strconv.FormatInt(o.tail, 10))
	}
	if !o.since.IsZero() {
		q.Set("since", fmt.Sprintf("%d.%09d", o.since.Unix(), o.since.Nanosecond()))
	}
	resp, err := s.eng.Do(r.Context(), http.MethodGet, "/containers/"+url.PathEscape(target.ID)+"/logs", q, nil, "")
	if err != nil {
		writeError(w, fmt.Errorf("logs of container %q in pod %q: %w", container, p, err))
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	var out io.Writer = w
	if o.follow && fl != nil {
		out = flushWriter{w: w, f: fl}
	}
	if o.limitBytes > 0 {
		out = &limitWriter{w: out, n: o.limitBytes}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/vnd.docker.multiplexed-stream") {
		err = client.Demux(resp.Body, out, out)
	} else {
		_, err = io.Copy(out, resp.Body)
	}
	if err != nil && err != errLimit && r.Context().Err() == nil {
		s.log.Debug("streaming logs", "pod", p.String(), "container", container, "err", err)
	}
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.f.Flush()
	return n, err
}

var errLimit = fmt.Errorf("limitBytes reached")

// limitWriter passes the first n bytes, then fails so the copy stops.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.n {
		n, err := l.w.Write(p[:l.n])
		l.n -= int64(n)
		if err == nil {
			err = errLimit
		}
		return n, err
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}
