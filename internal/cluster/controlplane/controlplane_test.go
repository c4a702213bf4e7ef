package controlplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/errdefs"
)

func TestOptionsValidation(t *testing.T) {
	good := func() Options {
		return Options{DataDir: t.TempDir(), Port: 6443, EtcdClientPort: 2379, EtcdPeerPort: 2380}
	}
	cases := []struct {
		name   string
		mod    func(*Options)
		want   error
		naming string
	}{
		{"ok", func(o *Options) {}, nil, ""},
		{"no data dir", func(o *Options) { o.DataDir = "" }, errdefs.ErrInvalidArgument, "--data-dir"},
		{"bad bind", func(o *Options) { o.BindAddress = "localhost" }, errdefs.ErrInvalidArgument, "--bind-address"},
		{"bad port", func(o *Options) { o.Port = 70000 }, errdefs.ErrInvalidArgument, "--port"},
		{"bad etcd port", func(o *Options) { o.EtcdPeerPort = 0 }, errdefs.ErrInvalidArgument, "--etcd-peer-port"},
		{"join without token", func(o *Options) { o.Join = "https://a:1" }, errdefs.ErrInvalidArgument, "--token"},
		{"bad service cidr", func(o *Options) { o.ServiceCIDR = "10.0.0.0/30" }, errdefs.ErrInvalidArgument, "--service-cidr"},
		{"join over http", func(o *Options) { o.Join, o.Token = "http://a:1", "K0123456789abcdef.x" }, errdefs.ErrInvalidArgument, "--join"},
		{"grace shorter than renewals", func(o *Options) { o.NodeMonitorGracePeriod = time.Second }, errdefs.ErrInvalidArgument, "--node-monitor-grace-period"},
		{"negative toleration", func(o *Options) { o.DefaultUnreachableTolerationSeconds = ptr(int64(-1)) }, errdefs.ErrInvalidArgument, "--default-unreachable-toleration-seconds"},
		{"negative hpa sync period", func(o *Options) { o.HPASyncPeriod = -time.Second }, errdefs.ErrInvalidArgument, "--horizontal-pod-autoscaler-sync-period"},
		{"zero toleration is fine", func(o *Options) { o.DefaultUnreachableTolerationSeconds = ptr(int64(0)) }, nil, ""},
	}
	for _, tc := range cases {
		o := good()
		tc.mod(&o)
		err := o.defaults()
		if !errors.Is(err, tc.want) || (err != nil && !strings.Contains(err.Error(), tc.naming)) {
			t.Errorf("%s: got %v, want %v naming %q", tc.name, err, tc.want, tc.naming)
		}
	}
	o := good()
	_ = o.defaults()
	if o.AdvertiseAddress != "127.0.0.1" || o.Name == "" {
		t.Errorf("defaults: got advertise %q name %q, want 127.0.0.1 and a name", o.AdvertiseAddress, o.Name)
	}
	if *o.DefaultUnreachableTolerationSeconds != 2 || *o.DefaultNotReadyTolerationSeconds != 10 {
		t.Errorf("default tolerations: got unreachable %d not-ready %d, want 2 and 10", *o.DefaultUnreachableTolerationSeconds, *o.DefaultNotReadyTolerationSeconds)
	}
}

func TestJoinTokenFormat(t *testing.T) {
	for _, tok := range []string{"berth-abc", "Kshort.x", "K0123456789abcdefx"} {
		_, err := joinCluster(context.Background(), "https://127.0.0.1:1", tok, "n", "https://127.0.0.1:2")
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("token %q: got %v, want invalid argument", tok, err)
		}
	}
	if fp := caFingerprint([]byte("x")); len(fp) != 16 {
		t.Errorf("fingerprint length: got %d, want 16", len(fp))
	}
}

func ptr[T any](v T) *T { return &v }
