package envvars

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

type flakySource struct {
	*fakeSource
	fail bool
}

func (f *flakySource) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if f.fail {
		f.reads++
		return nil, errors.New("connection refused")
	}
	return f.fakeSource.ConfigMap(ctx, ns, name)
}

func TestCachingSource(t *testing.T) {
	src := &flakySource{fakeSource: newSource()}
	now := time.Unix(1000, 0)
	c := CachingSource(src, time.Minute).(*cachingSource)
	c.now = func() time.Time { return now }
	ctx := context.Background()

	for range 3 {
		if cm, err := c.ConfigMap(ctx, "ns1", "cfg"); err != nil || cm.Data["A"] != "a" {
			t.Fatalf("got %v, %v", cm, err)
		}
		if _, err := c.Secret(ctx, "ns1", "absent"); !isNotFound(err) {
			t.Fatalf("absent secret: got %v, want not found", err)
		}
	}
	if src.reads != 2 {
		t.Errorf("%d reads within the ttl, want 2 (one per object, not-found included)", src.reads)
	}

	now = now.Add(2 * time.Minute)
	src.fail = true
	if _, err := c.ConfigMap(ctx, "ns1", "cfg"); err == nil || isNotFound(err) {
		t.Fatalf("expired entry with a failing source: got %v, want the source's error", err)
	}
	src.fail = false
	if _, err := c.ConfigMap(ctx, "ns1", "cfg"); err != nil {
		t.Fatalf("transient error was cached: %v", err)
	}
	if src.reads != 4 {
		t.Errorf("%d reads, want 4", src.reads)
	}
}
