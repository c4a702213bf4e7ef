package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/berth/berth/internal/errdefs"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// maxObjectBytes is etcd's request limit: larger objects get 413.
const maxObjectBytes = 1536 * 1024

// storage keeps typed objects as JSON in etcd. The stored form has no
// resourceVersion: it is the key's mod revision, set on every read.
type storage struct{ cli *clientv3.Client }

func setTypeMeta(r *resource, obj runtime.Object) {
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: r.group, Version: r.version, Kind: r.kind})
}

func accessor(obj runtime.Object) metav1.Object {
	a, err := meta.Accessor(obj)
	if err != nil {
		panic(fmt.Sprintf("object %T has no metadata: %v", obj, err))
	}
	return a
}

func encodeStored(r *resource, obj runtime.Object) ([]byte, error) {
	if c := r.conv(); c != nil {
		obj, r = c.toStorage(obj), c.storage()
	}
	a := accessor(obj)
	rv := a.GetResourceVersion()
	a.SetResourceVersion("")
	setTypeMeta(r, obj)
	b, err := json.Marshal(obj)
	a.SetResourceVersion(rv)
	if err != nil {
		return nil, err
	}
	if len(b) > maxObjectBytes {
		return nil, errTooLarge("%s %q is %d bytes: the limit is %d bytes (1.5 MiB)", r.groupResource(), a.GetName(), len(b), maxObjectBytes)
	}
	return b, nil
}

func decodeStored(r *resource, data []byte, rev int64) (runtime.Object, error) {
	sr := r.storageRes()
	obj := sr.newObj()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("stored %s: %w", r.groupResource(), err)
	}
	if c := r.conv(); c != nil {
		obj = c.fromStorage(obj)
	}
	setTypeMeta(r, obj)
	accessor(obj).SetResourceVersion(strconv.FormatInt(rev, 10))
	return obj, nil
}

func (s *storage) get(ctx context.Context, r *resource, ns, name string) (runtime.Object, error) {
	return s.getOpts(ctx, r, ns, name)
}

// getSerializable reads from the local member without a quorum round trip
// (possibly slightly stale, like an informer cache).
func (s *storage) getSerializable(ctx context.Context, r *resource, ns, name string) (runtime.Object, error) {
	return s.getOpts(ctx, r, ns, name, clientv3.WithSerializable())
}

func (s *storage) getOpts(ctx context.Context, r *resource, ns, name string, opts ...clientv3.OpOption) (runtime.Object, error) {
	resp, err := s.cli.Get(ctx, r.key(ns, name), opts...)
	if err != nil {
		return nil, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errNotFound(r, name)
	}
	return decodeStored(r, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

func unavailable(err error) error {
	if err == rpctypes.ErrCompacted || err == rpctypes.ErrGRPCCompacted {
		return errGone("the requested resourceVersion is too old (compacted): %v", err)
	}
	if ae, ok := err.(*apiError); ok {
		return ae
	}
	return fmt.Errorf("etcd: %v: %w", err, errdefs.ErrUnavailable)
}

// create stores obj if its key is free and returns it with its resourceVersion.
func (s *storage) create(ctx context.Context, r *resource, obj runtime.Object) (runtime.Object, error) {
	a := accessor(obj)
	data, err := encodeStored(r, obj)
	if err != nil {
		return nil, err
	}
	key := r.key(a.GetNamespace(), a.GetName())
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return nil, unavailable(err)
	}
	if !resp.Succeeded {
		return nil, errAlreadyExists(r, a.GetName())
	}
	a.SetResourceVersion(strconv.FormatInt(resp.Header.Revision, 10))
	setTypeMeta(r, obj)
	return obj, nil
}

// update replaces obj if its stored revision is still rev.
func (s *storage) update(ctx context.Context, r *resource, obj runtime.Object, rev int64) (runtime.Object, error) {
	a := accessor(obj)
	data, err := encodeStored(r, obj)
	if err != nil {
		return nil, err
	}
	key := r.key(a.GetNamespace(), a.GetName())
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return nil, unavailable(err)
	}
	if !resp.Succeeded {
		return nil, errConflict(r, a.GetName(), "the object has been modified; please apply your changes to the latest version and try again")
	}
	a.SetResourceVersion(strconv.FormatInt(resp.Header.Revision, 10))
	setTypeMeta(r, obj)
	return obj, nil
}

// remove deletes the object if its stored revision is still rev.
func (s *storage) remove(ctx context.Context, r *resource, ns, name string, rev int64) error {
	key := r.key(ns, name)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return unavailable(err)
	}
	if !resp.Succeeded {
		return errConflict(r, name, "the object has been modified; please apply your changes to the latest version and try again")
	}
	return nil
}

func revOf(obj runtime.Object) int64 {
	n, _ := strconv.ParseInt(accessor(obj).GetResourceVersion(), 10, 64)
	return n
}

// guaranteedUpdate reads, applies fn and writes, retrying on conflicts.
// fn returning (nil, nil) means "no change".
func (s *storage) guaranteedUpdate(ctx context.Context, r *resource, ns, name string, fn func(cur runtime.Object) (runtime.Object, error)) (runtime.Object, error) {
	for i := 0; ; i++ {
		cur, err := s.get(ctx, r, ns, name)
		if err != nil {
			return nil, err
		}
		rev := revOf(cur)
		next, err := fn(cur.DeepCopyObject())
		if err != nil {
			return nil, err
		}
		if next == nil {
			return cur, nil
		}
		out, err := s.update(ctx, r, next, rev)
		if err == nil || i > 20 || toStatus(err).status.Reason != metav1.StatusReasonConflict {
			return out, err
		}
	}
}

// listPage is one page of a list.
type listPage struct {
	items     []runtime.Object
	raw       [][]byte // with rawItems: stored JSON with the resourceVersion injected
	rev       int64
	continue_ string
}

type continueToken struct {
	Rev int64  `json:"rv"`
	Key string `json:"start"`
}

// list reads the objects under ns (all when empty), filtered by match,
// at most limit (0: all), starting from a continue token.
func (s *storage) list(ctx context.Context, r *resource, ns string, limit int64, cont string, atRev int64, match func(runtime.Object) bool) (*listPage, error) {
	return s.listMode(ctx, r, ns, limit, cont, atRev, match, false)
}

// injectRV returns stored JSON with metadata.resourceVersion set, without
// decoding it. The stored form is json.Marshal of a typed object, whose
// first "metadata":{ is the object's own (kind and apiVersion come first
// and cannot contain an unescaped quote).
func injectRV(data []byte, rev int64) ([]byte, bool) {
	i := bytes.Index(data, []byte(`"metadata":{`))
	if i < 0 {
		return nil, false
	}
	i += len(`"metadata":{`)
	out := make([]byte, 0, len(data)+32)
	out = append(out, data[:i]...)
	out = append(out, `"resourceVersion":"`...)
	out = strconv.AppendInt(out, rev, 10)
	out = append(out, '"')
	if data[i] != '}' {
		out = append(out, ',')
	}
	return append(out, data[i:]...), true
}

func (s *storage) listMode(ctx context.Context, r *resource, ns string, limit int64, cont string, atRev int64, match func(runtime.Object) bool, rawItems bool) (*listPage, error) {
	prefix := r.nsPrefix(ns)
	start := prefix
	rev := atRev
	if cont != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cont)
		var tok continueToken
		if err == nil {
			err = json.Unmarshal(raw, &tok)
		}
		if err != nil || len(tok.Key) < len(prefix) || tok.Key[:len(prefix)] != prefix {
			return nil, errBadRequest("continue token %q: not valid for this list", cont)
		}
		start, rev = tok.Key, tok.Rev
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	page := &listPage{}
	batch := int64(500)
	if limit > 0 && limit+1 < batch {
		batch = limit + 1
	}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(batch)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, unavailable(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if limit > 0 && int64(len(page.items)+len(page.raw)) == limit {
				b, _ := json.Marshal(continueToken{Rev: rev, Key: string(kv.Key)})
				page.continue_ = base64.RawURLEncoding.EncodeToString(b)
				page.rev = rev
				return page, nil
			}
			if rawItems && match == nil && r.conv() == nil {
				if b, ok := injectRV(kv.Value, kv.ModRevision); ok {
					page.raw = append(page.raw, b)
					continue
				}
			}
			obj, err := decodeStored(r, kv.Value, kv.ModRevision)
			if err != nil {
				continue
			}
			if match == nil || match(obj) {
				page.items = append(page.items, obj)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	page.rev = rev
	return page, nil
}

// currentRev returns etcd's current revision.
func (s *storage) currentRev(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, "/registry-rev-probe")
	if err != nil {
		return 0, unavailable(err)
	}
	return resp.Header.Revision, nil
}
