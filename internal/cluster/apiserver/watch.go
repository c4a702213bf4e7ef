package apiserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

type watchEvent struct {
	Type   string `json:"type"`
	Object any    `json:"object"`
}

// watch streams events after a resourceVersion (or the current state as
// ADDED events first, for resourceVersion 0/unset and for the WatchList
// protocol, sendInitialEvents=true, which ends the initial state with an
// "initial-events-end" bookmark). Bookmarks come from etcd progress
// notifications. A compacted resourceVersion gives a 410 ERROR event.
func (s *Server) watch(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	q := req.URL.Query()
	match, err := selectors(req)
	if err != nil {
		return err
	}
	if ri.name != "" {
		name := ri.name
		inner := match
		match = func(o runtime.Object) bool {
			return accessor(o).GetName() == name && (inner == nil || inner(o))
		}
	}
	bookmarks := isTrue(q.Get("allowWatchBookmarks"))
	sendInitial := q.Get("sendInitialEvents")
	rvParam := q.Get("resourceVersion")
	timeout := 30 * time.Minute
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return errBadRequest("timeoutSeconds %q: want a non-negative integer", t)
		}
		if n > 0 && n < 3600 {
			timeout = time.Duration(n) * time.Second
		}
	}
	var startRev int64
	initial := false
	switch {
	case sendInitial == "true":
		if !bookmarks {
			return newStatus(422, metav1.StatusReasonInvalid, nil, "sendInitialEvents requires allowWatchBookmarks=true")
		}
		if q.Get("resourceVersionMatch") != "NotOlderThan" {
			return newStatus(422, metav1.StatusReasonInvalid, nil, "sendInitialEvents requires resourceVersionMatch=NotOlderThan")
		}
		initial = true
	case sendInitial == "false" || rvParam == "" || rvParam == "0":
		initial = sendInitial != "false" && (rvParam == "" || rvParam == "0")
		if !initial && rvParam != "" && rvParam != "0" {
			n, err := strconv.ParseInt(rvParam, 10, 64)
			if err != nil || n < 0 {
				return errBadRequest("resourceVersion %q: want a non-negative integer", rvParam)
			}
			startRev = n + 1
		}
	default:
		n, err := strconv.ParseInt(rvParam, 10, 64)
		if err != nil || n < 0 {
			return errBadRequest("resourceVersion %q: want a non-negative integer", rvParam)
		}
		startRev = n + 1
	}
	table := wantsTable(req)
	ctx := req.Context()
	var cancel func()
	ctx, cancel = contextWithTimeout(ctx, timeout)
	defer cancel()

	var page *listPage
	if initial {
		page, err = s.st.list(ctx, ri.r, ri.ns, 0, "", 0, match)
		if err != nil {
			return err
		}
		startRev = page.rev + 1
	}
	if startRev == 0 {
		cur, err := s.st.currentRev(ctx)
		if err != nil {
			return err
		}
		startRev = cur + 1
	}
	prefix := ri.r.nsPrefix(ri.ns)
	wch := s.cfg.Client.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(startRev), clientv3.WithPrevKV(), clientv3.WithProgressNotify())

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(typ string, obj runtime.Object) error {
		var o any = obj
		if table != "" && typ != "BOOKMARK" && typ != "ERROR" {
			o = s.table(ri.r, []runtime.Object{obj}, accessor(obj).GetResourceVersion(), "", table, q.Get("includeObject"))
		}
		if err := enc.Encode(watchEvent{Type: typ, Object: o}); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		return nil
	}
	bookmark := func(rev int64, end bool) error {
		obj := ri.r.newObj()
		setTypeMeta(ri.r, obj)
		a := accessor(obj)
		a.SetResourceVersion(strconv.FormatInt(rev, 10))
		if end {
			a.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
		return send("BOOKMARK", obj)
	}
	if page != nil {
		for _, it := range page.items {
			if err := send("ADDED", it); err != nil {
				return nil
			}
		}
		if sendInitial == "true" {
			if err := bookmark(page.rev, true); err != nil {
				return nil
			}
		}
	}
	if fl != nil {
		fl.Flush() // send the headers now: clients wait for them before acting
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case resp, ok := <-wch:
			if !ok {
				return nil
			}
			if resp.CompactRevision != 0 {
				st := errGone("too old resource version: %d (%d)", startRev-1, resp.CompactRevision)
				_ = enc.Encode(watchEvent{Type: "ERROR", Object: &st.status})
				return nil
			}
			if err := resp.Err(); err != nil {
				st := toStatus(unavailable(err))
				_ = enc.Encode(watchEvent{Type: "ERROR", Object: &st.status})
				return nil
			}
			if resp.IsProgressNotify() {
				if bookmarks {
					if err := bookmark(resp.Header.Revision, false); err != nil {
						return nil
					}
				}
				continue
			}
			for _, ev := range resp.Events {
				var typ string
				var obj runtime.Object
				switch ev.Type {
				case clientv3.EventTypePut:
					cur, err := decodeStored(ri.r, ev.Kv.Value, ev.Kv.ModRevision)
					if err != nil {
						continue
					}
					curMatch := match == nil || match(cur)
					var prevMatch bool
					if ev.PrevKv != nil {
						if prev, err := decodeStored(ri.r, ev.PrevKv.Value, ev.PrevKv.ModRevision); err == nil {
							prevMatch = match == nil || match(prev)
						}
					}
					obj = cur
					switch {
					case ev.IsCreate() || ev.PrevKv == nil:
						if curMatch {
							typ = "ADDED"
						}
					case curMatch && prevMatch:
						typ = "MODIFIED"
					case curMatch:
						typ = "ADDED"
					case prevMatch:
						typ = "DELETED"
					}
				case clientv3.EventTypeDelete:
					if ev.PrevKv == nil {
						continue
					}
					prev, err := decodeStored(ri.r, ev.PrevKv.Value, ev.Kv.ModRevision)
					if err != nil {
						continue
					}
					if match == nil || match(prev) {
						typ, obj = "DELETED", prev
					}
				}
				if typ == "" {
					continue
				}
				if err := send(typ, obj); err != nil {
					return nil
				}
			}
		}
	}
}

var _ = fields.Everything
